"""Bad input: hard errors with clear messages, soft problems counted with a policy, the CLI."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recsys_core.cli import main
from recsys_core.dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from recsys_core.errors import DataError
from recsys_core.ingest import POLICIES, load_dataset


def pairs(ds) -> list[tuple[str, str]]:
    return list(zip(ds.interactions[USER_COL], ds.interactions[ITEM_COL], strict=True))


# ---------------------------------------------------------------------- hard errors
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        load_dataset(tmp_path / "nope.csv")
    assert err.value.file.endswith("nope.csv")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="directory"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("content,what", [
    (b"\x00\x01\x02binary\x00stuff" * 10, "binary"),
    (b"PK\x03\x04" + b"\x00" * 50, "Excel"),
    (gzip.compress(b"user_id,item_id\nu1,i1\n"), "gzip"),
    (b"%PDF-1.4 whatever", "PDF"),
])
def test_binary_files_are_refused(write_file, content, what):
    path = write_file("data.csv", content)
    with pytest.raises(DataError, match=what) as err:
        load_dataset(path)
    assert "data.csv" in str(err.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(write_file, content):
    with pytest.raises(DataError, match="empty"):
        load_dataset(write_file("e.csv", content))


def test_header_only(write_file):
    with pytest.raises(DataError, match="header row but no data rows"):
        load_dataset(write_file("h.csv", "user_id,item_id,rating\n"))


def test_missing_id_columns_lists_columns_and_hint(write_file):
    path = write_file("m.csv", "foo,bar,rating\na,b,1\n")
    with pytest.raises(DataError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert "m.csv" in msg and "no user id and item id column" in msg
    assert "'foo', 'bar', 'rating'" in msg and "--user-col" in msg and "--item-col" in msg


def test_missing_item_column_only(write_file):
    with pytest.raises(DataError, match="no item id column found"):
        load_dataset(write_file("m.csv", "user_id,stuff\na,b\n"))


def test_single_column(write_file):
    with pytest.raises(DataError, match="only one column"):
        load_dataset(write_file("one.csv", "user_id\nu1\nu2\n"))


def test_all_ids_empty(write_file):
    with pytest.raises(DataError, match="no usable interactions"):
        load_dataset(write_file("e.csv", "user_id,item_id\n,i1\nNA,i2\n"))


def test_max_rows_refused_up_front(write_file):
    path = write_file("big.csv", "user_id,item_id\n" + "u,i\n" * 101)
    with pytest.raises(DataError, match=r"101 rows, more than the limit of 100"):
        load_dataset(path, max_rows=100)
    with pytest.raises(DataError, match="limit of 100"):
        load_dataset(("big.csv", path.read_bytes()), max_rows=100)
    assert len(load_dataset(path, max_rows=101).interactions) == 1


def test_max_rows_parquet(tmp_path):
    pd.DataFrame({"user_id": ["a"] * 5, "item_id": list("abcde")}).to_parquet(tmp_path / "p.pq")
    with pytest.raises(DataError, match="limit of 4"):
        load_dataset(tmp_path / "p.pq", max_rows=4)


def test_max_ids(write_file):
    path = write_file("ids.csv", "user_id,item_id\n" + "".join(f"u{k},i\n" for k in range(6)))
    with pytest.raises(DataError, match=r"6 distinct users, more than the limit of 5"):
        load_dataset(path, max_ids=5)


def test_max_ids_in_metadata_files(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,i1\nu2,i2\n")
    items = write_file("items.csv", "item_id,title\n" + "".join(f"i{k},t\n" for k in range(4)))
    with pytest.raises(DataError, match="items.csv.*4 distinct items, more than the limit of 3"):
        load_dataset(inter, items, max_ids=3)
    edges = write_file("e.csv", "user_id,friend_id\nu1,u2\nu3,u4\n")
    with pytest.raises(DataError, match="e.csv.*4 distinct users, more than the limit of 3"):
        load_dataset(inter, user_edges=edges, max_ids=3)


def test_corrupt_parquet(write_file):
    with pytest.raises(DataError, match="Parquet"):
        load_dataset(write_file("x.parquet", b"PAR1garbagegarbage"))


def load_with_items(write_file, interactions: str, items: str):
    """:func:`load_dataset` of an interactions and an items CSV text (``i.csv``, ``items.csv``)."""
    return load_dataset(write_file("i.csv", interactions), write_file("items.csv", items))


def test_items_file_matching_no_interaction(write_file):
    with pytest.raises(DataError, match="none of the 2 item ids.*--items-id-col") as err:
        load_with_items(write_file, "user_id,item_id\nu1,i1\n", "item_id,title\n1,One\n2,Two\n")
    assert "items.csv" in str(err.value)


def test_items_file_without_id_column(write_file):
    with pytest.raises(DataError, match="no item id column.*'title', 'genre'"):
        load_with_items(write_file, "user_id,item_id\nu1,i1\n", "title,genre\nOne,x\n")


def test_user_edges_with_one_column(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,i1\n")
    with pytest.raises(DataError, match="two columns"):
        load_dataset(inter, user_edges=write_file("e.csv", "user_id\nu1\n"))


def test_error_is_one_paragraph(write_file):
    with pytest.raises(DataError) as err:
        load_dataset(write_file("h.csv", "user_id,item_id\n"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------- soft problems
def test_duplicates_keep_latest_by_timestamp(write_file):
    path = write_file("d.csv", "user_id,item_id,rating,timestamp\n"
                               "u1,i1,5,300\nu1,i1,2,100\nu2,i1,4,10\nu1,i1,3,200\n")
    ds = load_dataset(path)
    assert pairs(ds) == [("u1", "i1"), ("u2", "i1")]
    assert ds.interactions[RATING_COL].tolist() == [5.0, 4.0]  # the t=300 row's rating
    assert ds.interactions[TIME_COL].tolist() == [300.0, 10.0]
    (problem,) = [p for p in ds.report.problems if p.code == "duplicate_pairs"]
    assert problem.count == 2 and problem.policy == POLICIES["duplicate_pairs"]
    assert problem.examples[0] == "(u1, i1)"


def test_duplicates_without_timestamps_keep_last_in_file_order(write_file):
    ds = load_dataset(write_file("d.csv", "user_id,item_id,rating\nu1,i1,5\nu1,i1,2\n"))
    assert ds.interactions[RATING_COL].tolist() == [2.0]
    assert ds.report.problem_counts()["duplicate_pairs"] == 1


def test_duplicates_with_unknown_time_lose_to_known_time(write_file):
    path = write_file("d.csv", "user_id,item_id,rating,timestamp\nu1,i1,5,100\nu1,i1,1,\n")
    ds = load_dataset(path)
    assert ds.interactions[RATING_COL].tolist() == [5.0]


BAD_RATINGS = "user_id,item_id,rating\nu1,i1,4\nu1,i2,\nu1,i3,abc\nu2,i1,inf\nu2,i2,NaN\nu2,i3,3.5\n"


def test_invalid_ratings_implicit_policy(write_file):
    ds = load_dataset(write_file("r.csv", BAD_RATINGS))
    assert ds.interactions[RATING_COL].tolist() == [4.0, 1.0, 1.0, 1.0, 1.0, 3.5]
    (problem,) = [p for p in ds.report.problems if p.code == "invalid_ratings"]
    assert problem.count == 4 and "implicit" in problem.policy
    assert problem.examples[0] == "line 3: ''" and problem.examples[1] == "line 4: 'abc'"


def test_invalid_ratings_drop_policy(write_file):
    ds = load_dataset(write_file("r.csv", BAD_RATINGS), invalid_ratings="drop")
    assert ds.interactions[RATING_COL].tolist() == [4.0, 3.5]
    report = ds.report
    assert report.problem_counts()["invalid_ratings"] == 4 and "dropped" in report.problems[0].policy
    assert report.counts["rows_read"] - report.counts["rows_kept"] == 4


def test_mostly_non_numeric_ratings_warn(write_file):
    ds = load_dataset(write_file("r.csv", "user_id,item_id,rating\nu1,i1,good\nu1,i2,bad\n"))
    assert any("not numbers" in w and "--rating-col" in w for w in ds.report.warnings)


def test_empty_and_null_ids_dropped_with_count(write_file):
    path = write_file("e.csv", "user_id,item_id\nu1,i1\n,i2\nu2,\n  ,i3\nnull,i4\nu3,i5\n")
    ds = load_dataset(path)
    assert pairs(ds) == [("u1", "i1"), ("u3", "i5")]
    (problem,) = [p for p in ds.report.problems if p.code == "empty_ids"]
    assert problem.count == 4 and problem.examples == ["line 3", "line 4", "line 5", "line 6"]


def test_ragged_rows_skipped_with_count(write_file):
    path = write_file("r.csv", "user_id,item_id,rating\nu1,i1,4\nu2,i2,5,extra\nu3,i3\n"
                               "u4,i4,1,2,3\n")
    ds = load_dataset(path)
    assert pairs(ds) == [("u1", "i1"), ("u3", "i3")]
    counts = ds.report.problem_counts()
    assert counts["ragged_rows"] == 2 and counts["invalid_ratings"] == 1  # the short row
    (problem,) = [p for p in ds.report.problems if p.code == "ragged_rows"]
    assert problem.examples == ["line 3", "line 5"]
    assert ds.report.counts["rows_read"] == 4 and ds.report.counts["rows_kept"] == 2


def test_unparseable_timestamps_counted(write_file):
    path = write_file("t.csv", "user_id,item_id,timestamp\nu1,i1,1600000000\nu1,i2,soon\n"
                               "u1,i3,\nu2,i1,1600000100\n")
    ds = load_dataset(path)
    t = ds.interactions[TIME_COL].to_numpy()
    assert t[0] == 1.6e9 and math.isnan(t[1]) and math.isnan(t[2])
    counts = ds.report.problem_counts()
    assert counts["unparsed_timestamps"] == 1 and counts["missing_timestamps"] == 1
    assert len(ds.interactions) == 4


def test_items_missing_cold_and_without_text(write_file):
    ds = load_with_items(write_file, "user_id,item_id\nu1,a\nu2,b\nu2,zz\n",
                         "item_id,title,description\na,Alpha,first\nb,,\nc,Gamma,\n")
    counts = ds.report.problem_counts()
    assert counts["items_missing_metadata"] == 1 and counts["cold_items"] == 1
    assert counts["items_without_text"] == 1
    assert ds.report.counts["items"] == 4 and ds.report.counts["cold_items"] == 1
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["zz", "title"] == "zz"  # added without metadata, kept
    assert set(pairs(ds)) == {("u1", "a"), ("u2", "b"), ("u2", "zz")}


def test_duplicate_and_empty_item_rows(write_file):
    ds = load_with_items(write_file, "user_id,item_id\nu1,a\n",
                         "item_id,title\na,First\na,Second\n,Orphan\nb,B\n")
    counts = ds.report.problem_counts()
    assert counts["merged_item_rows"] == 1 and counts["empty_item_ids"] == 1
    assert ds.items.set_index(ITEM_COL).loc["a", "title"] == "First"


def test_long_tag_table_merges_into_one_item_per_id(write_file):
    """A long table (one (item, tag) row each, LastFM's artist tags joined to their names)
    becomes one item per id with every tag, the title from the item's first row that has one;
    the merged rows are counted, nothing is lost."""
    ds = load_with_items(
        write_file, "user_id,item_id\nu1,a\nu2,b\nu2,c\n",
        "item_id,name,tag\na,,rock\na,Alpha,indie\na,Other title,rock\nb,Beta,jazz\n"
        "c,Gamma,\nb,,rock\n")
    by_id = ds.items.set_index(ITEM_COL)
    assert list(by_id.index) == ["a", "b", "c"]
    assert by_id.loc["a", "title"] == "Alpha" and by_id.loc["b", "title"] == "Beta"
    assert by_id.loc["a", "tag"] == ["rock", "indie"] and by_id.loc["b", "tag"] == ["jazz", "rock"]
    assert by_id.loc["c", "tag"] == []
    assert ds.report.problem_counts()["merged_item_rows"] == 3
    items_file = ds.report.file("items")
    assert items_file.rows_read == 6 and items_file.rows_kept == 3
    assert "an item's rows joined" in items_file.mapping["attributes"]["tag"]
    assert ds.report.counts["attribute_values"] == {"tag": 3}


def test_single_interaction_users_counted(tiny_files, write_file):
    ds = load_dataset(write_file("s.csv", "user_id,item_id\nu1,a\nu1,b\nu2,a\nu3,c\n"))
    (problem,) = [p for p in ds.report.problems if p.code == "single_interaction_users"]
    assert problem.count == 2 and problem.examples == ["u2", "u3"]


def test_nothing_dropped_without_a_count(write_file):
    path = write_file("mix.csv", "user_id,item_id,rating,timestamp\n"
                                 "u1,i1,5,100\nu1,i1,4,200\n,i2,3,1\nu2,i2,x,5\n"
                                 "u3,i3,1,2,9\nu4,i4,2,soon\n")
    for policy in ("implicit", "drop"):
        report = load_dataset(path, invalid_ratings=policy).report
        counts = report.problem_counts()
        dropped = (counts.get("duplicate_pairs", 0) + counts.get("empty_ids", 0)
                   + counts.get("ragged_rows", 0)
                   + (counts.get("invalid_ratings", 0) if policy == "drop" else 0))
        assert report.counts["rows_read"] - report.counts["rows_kept"] == dropped


# ---------------------------------------------------------------------- report rendering
def test_markdown_escapes_user_supplied_column_names(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\n")
    items = write_file("m.csv", "item_id,title,[x](javascript:alert)\na,A,p\nb,B,p\nc,C,q\n")
    md = load_dataset(inter, items).report.to_markdown()
    assert "[x](javascript" not in md and "\\[x\\](javascript:alert)" in md


def test_report_renderings(write_file):
    inter = write_file("we|ird_<b>.csv", "user_id,item_id,rating\nu1,i1,5\nu1,i1,4\nu1,i2,x\n")
    report = load_dataset(inter).report
    md = report.to_markdown()
    assert "we\\|ird\\_\\<b\\>.csv" in md and "<b>" not in md
    assert POLICIES["duplicate_pairs"] in md
    text = report.to_text()
    assert "duplicate pairs" in text and "Policy:" in text and "rows read" in text
    assert "problems handled: invalid ratings 1, duplicate pairs 1" in report.summary()
    d = report.to_dict()
    assert d["problem_counts"] == {"invalid_ratings": 1, "duplicate_pairs": 1}
    assert d["files"][0]["mapping"]["user"] == "user_id"


# ---------------------------------------------------------------------- CLI
def test_cli_validate_ok(tiny_files, capsys):
    code = main(["validate", "--interactions", str(tiny_files["interactions"]),
                 "--items", str(tiny_files["items"]), "--user-edges",
                 str(tiny_files["user_edges"])])
    out = capsys.readouterr().out
    assert code == 0
    assert "Ingestion report" in out and "cold items" in out and "user edges" in out


def test_cli_validate_json_and_overrides(write_file, capsys):
    path = write_file("o.csv", "who,what,score\na,x,1\nb,y,2\n")
    code = main(["validate", "--interactions", str(path), "--user-col", "who",
                 "--item-col", "what", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["counts"]["interactions"] == 2
    assert data["files"][0]["mapping"] == {"user": "who", "item": "what", "rating": "score",
                                           "timestamp": None}


def test_cli_validate_error_exit_2(write_file, capsys):
    code = main(["validate", "--interactions", str(write_file("h.csv", "a,b\n"))])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err


def test_cli_subprocess_no_traceback(write_file):
    path = write_file("bin.csv", b"\x00\x01\x02" * 100)
    proc = subprocess.run([sys.executable, "-m", "recsys_core", "validate", "--interactions",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "binary" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_policies_are_stated_for_every_problem_code(tiny_dataset):
    from recsys_core.ingest.report import IngestionReport

    report = IngestionReport(name="x")
    for code in POLICIES:
        if code.startswith("invalid_ratings_"):
            continue
        report.add_problem(code, "f", 1)
    assert all(p.policy for p in report.problems)
    report.add_problem("empty_ids", "f", 0)
    assert len(report.problems) == len(POLICIES) - 2  # zero counts are not recorded
    assert np.isfinite(len(tiny_dataset.report.to_markdown()))
