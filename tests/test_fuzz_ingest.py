"""Property-based fuzzing of ingestion (:func:`recsys_core.ingest.load_dataset`).

Every input is an upload-style ``(display_name, bytes)`` source. The property, checked on each
call by :func:`ingest`: the call either returns a :class:`~recsys_core.dataset.Dataset` whose
report adds up (per file, rows read = rows kept + every dropped count; the dataset holds exactly
the kept rows, all clean) or raises :class:`~recsys_core.errors.DataError` whose message names
the file and says what to do. Any other exception fails the test with the generated input.

Generated cases per run (``max_examples``; hypothesis runs with ``derandomize=True`` so CI sees
the same cases every time):

* ``test_random_bytes``: 40 (random bytes, alone or behind a file magic / byte-order mark),
* ``test_generated_tables``: 200 (delimiters ``, ; \\t | ::``, encodings utf-8 / utf-8-sig /
  latin-1 / cp1252 / utf-16 with and without BOM, ragged rows, duplicate headers, one column,
  no header, CR/CRLF line ends, BOMs, NUL bytes, binary junk, truncation, unbalanced quotes,
  1 MB cells, non-finite ratings, odd timestamps, tiny row/id limits, column overrides),
* ``test_counts_match_an_oracle``: 80 (exact drop counts against an independent recount),
* ``test_metadata_files``: 80 (hostile items / user-edges / users files next to good
  interactions),
* ``test_parquet_files``: 40 (Parquet with odd types: nulls, bytes, lists, timestamps, ...),

440 generated files in all (each a full ``load_dataset`` call), plus 27 hand-written hostile
files (each tried as interactions and as items: 54 calls) and 3 runs of the CLI. Set
``RECSCOPE_FUZZ_SCALE=10`` for a ten times longer, randomised campaign.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from recsys_core.dataset import Dataset
from recsys_core.errors import DataError
from recsys_core.ingest import POLICIES, load_dataset
from recsys_core.ingest.readers import NULL_TOKENS

ROOT = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("RECSCOPE_FUZZ_SCALE", "1"))


#: Shrinking 1 MB inputs can take many minutes; by default a failure is reported as found
#: (with a reproduce blob). RECSCOPE_FUZZ_SHRINK=1 asks hypothesis for a minimal example.
PHASES = [Phase.explicit, Phase.generate] + (
    [Phase.shrink] if os.environ.get("RECSCOPE_FUZZ_SHRINK") == "1" else [])


def fuzz_settings(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    derandomize=SCALE <= 1, database=None, print_blob=True, phases=PHASES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


# ------------------------------------------------------------------------------ the property
#: Problem codes that remove rows, per file role (everything else keeps the row).
DROP_CODES = {
    "interactions": ("ragged_rows", "empty_ids", "duplicate_pairs"),
    "items": ("ragged_rows", "empty_item_ids", "merged_item_rows"),
    "user_edges": ("ragged_rows", "empty_edge_ids", "self_loop_edges", "duplicate_edges"),
    "users": ("ragged_rows", "empty_user_ids", "duplicate_user_rows"),
}
#: A DataError must tell the user what to do; these are the ways our messages say it.
ADVICE = re.compile(
    r"\b(check|use|upload|add|name (it|the)|re-save|re-export|export|decompress|filter|sample|"
    r"raise the limit|must be|needs|call it|pass|columns found)\b", re.IGNORECASE)
#: Times ingestion accepts: 0001-01-01 to 9999-12-31 (epoch seconds).
TIME_RANGE = (-62135596800.0, 253402300799.0)


def ingest(sources: dict, **options) -> Dataset | DataError:
    """``load_dataset(**sources, **options)`` with the property checked on the outcome."""
    names = [s[0] for s in sources.values() if s is not None]
    try:
        dataset = load_dataset(**sources, **options)
    except DataError as exc:
        check_data_error(exc, names)
        return exc
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} escaped load_dataset (only DataError "
                             f"may): {exc}") from exc
    check_dataset(dataset, options.get("invalid_ratings", "implicit"))
    return dataset


def check_data_error(exc: DataError, names: list[str]) -> None:
    message = str(exc)
    assert exc.file in names, f"DataError does not name one of {names}: {message}"
    assert f"'{exc.file}'" in message, message
    assert ADVICE.search(message), f"DataError does not say what to do: {message}"
    assert "Traceback" not in message and len(message) < 2000, message


def check_dataset(ds: Dataset, invalid_ratings: str) -> None:
    report = ds.report
    assert len({f.name for f in report.files}) == len(report.files), "file names must differ"
    for problem in report.problems:
        assert isinstance(problem.count, int) and problem.count > 0, problem
        assert problem.policy and (problem.code in POLICIES
                                   or problem.code == "invalid_ratings"), problem
    for file in report.files:
        counts = {p.code: p.count for p in report.problems if p.file == file.name}
        drops = list(DROP_CODES[file.role])
        if file.role == "interactions" and invalid_ratings == "drop":
            drops.append("invalid_ratings")
        dropped = sum(counts.get(code, 0) for code in drops)
        assert file.rows_read == file.rows_kept + dropped, (
            f"{file.role} '{file.name}': {file.rows_read} rows read != {file.rows_kept} kept + "
            f"{dropped} dropped {counts}")
        assert file.rows_read >= 1 and file.rows_kept >= (1 if file.role == "interactions" else 0)

    inter = ds.interactions
    counts = report.counts
    first = report.files[0]
    assert first.role == "interactions"
    assert counts["rows_read"] == first.rows_read
    assert counts["rows_kept"] == first.rows_kept == counts["interactions"] == len(inter)
    assert counts["users"] == ds.num_users and counts["items"] == ds.num_items
    assert counts["cold_items"] == ds.num_items - inter["item_id"].nunique()

    # The kept rows are clean.
    for col in ("user_id", "item_id"):
        ids = inter[col].tolist()
        assert all(isinstance(v, str) and v == v.strip() and v.lower() not in NULL_TOKENS
                   for v in ids), col
    assert inter["rating"].dtype == np.float64 and np.isfinite(inter["rating"]).all()
    times = inter["timestamp"].to_numpy(np.float64)
    known = times[~np.isnan(times)]
    assert ((known >= TIME_RANGE[0]) & (known <= TIME_RANGE[1])).all()
    assert not inter.duplicated(["user_id", "item_id"]).any()
    np.testing.assert_array_equal(ds.user_ids[inter["user_idx"]], inter["user_id"])
    np.testing.assert_array_equal(ds.item_ids[inter["item_idx"]], inter["item_id"])
    assert len(set(ds.user_ids)) == ds.num_users and len(set(ds.item_ids)) == ds.num_items

    # What the CLI prints and the app shows renders for any input.
    assert report.to_text() and report.to_markdown()
    json.dumps(report.to_dict())


# ------------------------------------------------------------------------------ strategies
class Upload(tuple):
    """A ``(display_name, bytes)`` source whose repr stays short in hypothesis reports."""

    def __new__(cls, name: str, data: bytes):
        return super().__new__(cls, (name, data))

    def __repr__(self) -> str:
        name, data = self
        more = f"... ({len(data):,} bytes)" if len(data) > 300 else ""
        return f"Upload({name!r}, {data[:300]!r}{more})"


DELIMITERS = [",", ";", "\t", "|", "::"]
#: UTF-8 dominates (as in real uploads) so most files get past decoding and exercise the
#: counting; the others (UTF-16 without BOM is refused as binary) still come up often.
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16",
             "utf-16-le"]
NEWLINES = ["\n", "\r\n", "\r"]
PLAIN_CELLS = ["u1", "u2", "u3", "u4", "i1", "i2", "i3", "i4", "1", "2", "3", "4", "5", "3.5",
               "0", "1577836800", "2020-01-01", "Drama", "Action|Comedy", "a film"]
HOSTILE_CELLS = [
    # ids and nulls
    "01", "1.0", "-3", "", " ", "  u1  ", "NA", "null", "None", "nan", "NaN", "N/A", "<NA>",
    "nil", "(no genres listed)",
    # ratings: non-finite, huge, text, decimal comma, booleans
    "-1", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-400", "abc", "4,5", "true",
    "FALSE", "1_000", "0x10", "१२",
    # timestamps in many shapes
    "-5", "1e20", "-1e300", "1577836800000", "1577836800000000000", "20200131", "20201345",
    "1999", "2020-01-01T12:30:00Z", "2020-01-01 12:30:00+05:30", "9999-12-31", "0001-01-01",
    "1677-09-21", "2262-04-12", "01/02/2020", "31/12/1999 23:59", "12/31/1999", "31.12.1999",
    "5-Jan-2020", "Jan 5, 2020", "Mon, 01 Jan 2001 00:00:00 +0000", "2020-02-30", "yesterday",
    "0000-00-00",
    # quoting, separators and markup inside cells
    '"quoted, with comma"', '"unbalanced', 'say "hi"', '""', "a|b|c", "a;b", "x::y", "a\tb",
    '=HYPERLINK("http://x")', "@SUM(A1)", "<script>alert(1)</script>", "é", "Ünïcödé",
    "日本語", "€", "\u2028", "\u00a0", "\ufeff", "\x85",
]
#: Control characters make a file look binary; they come in through the "nul"/"junk"
#: mutations so that most generated files are text.
printable_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)
cells = st.one_of(st.sampled_from(PLAIN_CELLS), st.sampled_from(PLAIN_CELLS),
                  st.sampled_from(HOSTILE_CELLS), printable_text)
HEADER_NAMES = {
    "interactions": ["user_id", "item_id", "rating", "timestamp", "userId", "movieId", "user",
                     "item", "score", "time", "date", "uid", "iid", "stars", "", "x", "title",
                     "user_id", "item_id"],
    "items": ["item_id", "movieId", "title", "description", "genres", "category", "tags", "year",
              "url", "id", "", "name", "overview", "brand", "item_id", "genres"],
    "user_edges": ["user_id", "friend_id", "src", "dst", "follower", "followee", "weight", "",
                   "user_id"],
    "users": ["user_id", "userId", "age", "gender", "country", "id", "", "zip", "user_id"],
}
FILE_NAMES = {
    "interactions": ["ratings.csv", "u.data", "ratings.dat", "events.tsv", "clicks.txt",
                     "../../etc/passwd", "/etc/shadow", "C:\\Users\\me\\data.psv",
                     "<img src=x onerror=alert(1)>.csv", "noextension"],
    "items": ["items.csv", "u.item", "movies.dat", "movies.csv", "meta.tsv", "../items.txt"],
    "user_edges": ["edges.csv", "friends.tsv", "trust.txt"],
    "users": ["users.csv", "u.user", "people.tsv"],
}
#: Mostly well-formed rows; a few are short or long (ragged).
width_change = st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1, 2, -2])
MUTATIONS = ["bom", "nul", "junk", "huge", "quote", "truncate", "blank_lines", "crlf_mix"]
mutation = st.sampled_from(MUTATIONS + [None] * 16)
#: The columns a file of each role usually has, in order.
ROLE_COLUMNS = {"interactions": ["user_id", "item_id", "rating", "timestamp"],
                "items": ["item_id", "title", "description", "genres", "category"],
                "user_edges": ["user_id", "friend_id", "weight"],
                "users": ["user_id", "age", "country"]}


@st.composite
def delimited_file(draw, role: str, id_cells=None) -> Upload:
    """A text table for ``role`` with hostile structure, content and encoding."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    newline = draw(st.sampled_from(NEWLINES))
    width = draw(st.sampled_from([1, 2, 2, 3, 3, 4, 4, 5, 6]))
    cell = cells if id_cells is None else st.one_of(st.sampled_from(id_cells), cells)
    lines: list[list[str]] = []
    header = draw(st.sampled_from(["usual", "usual", "random", None]))
    if header == "usual":  # the usual columns in some order, padded with odd names
        usual = draw(st.permutations(ROLE_COLUMNS[role]))[:width]
        pad = st.sampled_from(HEADER_NAMES[role])
        lines.append(usual + draw(st.lists(pad, min_size=width - len(usual),
                                           max_size=width - len(usual))))
    elif header == "random":
        names = st.one_of(st.sampled_from(HEADER_NAMES[role]), printable_text)
        lines.append(draw(st.lists(names, min_size=width, max_size=width)))
    for _ in range(draw(st.integers(0, 12))):
        size = max(width + draw(width_change), 0)
        lines.append(draw(st.lists(cell, min_size=size, max_size=size)))
    mutations = {draw(mutation), draw(mutation)} - {None}
    if "huge" in mutations:  # one 1 MB cell (text, digits or a quoted field with delimiters)
        token = draw(st.sampled_from(["x", "7", '"a,b;c|d', "1/2 3:4 ", "2020-01-01 "]))
        filler = token * ((1 << 20) // len(token))
        target = draw(st.integers(0, max(len(lines) - 1, 0)))
        lines = lines or [[]]
        lines[target] = [*lines[target], filler]
    if "quote" in mutations and lines:
        target = draw(st.integers(0, len(lines) - 1))
        lines[target] = ['"' + (lines[target][0] if lines[target] else "")] + lines[target][1:]
    text = newline.join(delimiter.join(row) for row in lines)
    if draw(st.booleans()):
        text += newline
    if "blank_lines" in mutations:
        text = text.replace(newline, newline + newline + " " + newline, 2)
    if "crlf_mix" in mutations:
        text = text.replace(newline, "\r\n", 1).replace(newline, "\r", 1)
    if "bom" in mutations:
        text = "\ufeff" + text
    if "nul" in mutations:
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + "\x00" + text[pos:]
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    if "junk" in mutations:
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=24)) + data[pos:]
    if "truncate" in mutations and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    return Upload(draw(st.sampled_from(FILE_NAMES[role])), data)


MAGIC = [b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"PK\x03\x04", b"\x1f\x8b",
         b"%PDF-1.4", b"PAR1", b"SQLite format 3\x00", b"\x89PNG\r\n\x1a\n", b"\xd0\xcf\x11\xe0",
         b"user_id,item_id\n", b"a\tb\n1\t"]


# ------------------------------------------------------------------------------ generated
@fuzz_settings(40)
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=400),
       name=st.sampled_from(FILE_NAMES["interactions"]))
def test_random_bytes(magic, body, name):
    ingest({"interactions": (name, magic + body)})


@fuzz_settings(200)
@given(source=delimited_file("interactions"),
       invalid_ratings=st.sampled_from(["implicit", "drop"]),
       max_rows=st.sampled_from([20_000_000, 20_000_000, 20_000_000, 3]),
       max_ids=st.sampled_from([5_000_000, 5_000_000, 5_000_000, 2]),
       user_col=st.sampled_from([None] * 12 + ["user_id", "column_1", "no_such"]))
def test_generated_tables(source, invalid_ratings, max_rows, max_ids, user_col):
    ingest({"interactions": source}, invalid_ratings=invalid_ratings, max_rows=max_rows,
           max_ids=max_ids, user_col=user_col)


# Cells for the oracle: no separators, quotes, colons or control characters, so the row and
# field structure is exactly what was generated.
ORACLE_IDS = ["u1", "u2", "u3", "7", " 7 ", "x y", "", " ", "NA", "null", "None", "nan", "N/A"]
ORACLE_RATINGS = ["1", "4.5", " 3 ", "-2", "0", "", "nan", "inf", "-inf", "1e309", "abc", "NaN",
                  "true", "false"]
ORACLE_TIMES = ["1577836800", "", "-5", "1e20", "2020-01-01", "9999-12-31", "soon"]


def _oracle_rating(token: str) -> float:
    token = token.strip()
    if token.lower() in ("true", "false"):
        return float(token.lower() == "true")
    try:
        return float(token)
    except ValueError:
        return math.nan


@fuzz_settings(80)
@given(rows=st.lists(st.tuples(st.sampled_from(ORACLE_IDS), st.sampled_from(ORACLE_IDS),
                               st.sampled_from(ORACLE_RATINGS), st.sampled_from(ORACLE_TIMES)),
                     min_size=1, max_size=25),
       delimiter=st.sampled_from(DELIMITERS), encoding=st.sampled_from(ENCODINGS[:5]),
       newline=st.sampled_from(NEWLINES), invalid_ratings=st.sampled_from(["implicit", "drop"]))
def test_counts_match_an_oracle(rows, delimiter, encoding, newline, invalid_ratings):
    """Exact counts of dropped and kept rows against a plain-Python recount."""
    lines = [delimiter.join(("user_id", "item_id", "rating", "timestamp"))]
    lines += [delimiter.join(row) for row in rows]
    data = (newline.join(lines) + newline).encode(encoding)
    outcome = ingest({"interactions": ("oracle.csv", data)}, invalid_ratings=invalid_ratings)

    def empty(token: str) -> bool:
        return token.strip().lower() in NULL_TOKENS

    with_ids = [r for r in rows if not empty(r[0]) and not empty(r[1])]
    invalid = [r for r in with_ids if not math.isfinite(_oracle_rating(r[2]))]
    usable = with_ids if invalid_ratings == "implicit" else [
        r for r in with_ids if math.isfinite(_oracle_rating(r[2]))]
    distinct = {(u.strip(), i.strip()) for u, i, _, _ in usable}
    if not distinct:
        assert isinstance(outcome, DataError)
        return
    assert isinstance(outcome, Dataset), outcome
    problems = outcome.report.problem_counts()
    assert problems.get("empty_ids", 0) == len(rows) - len(with_ids)
    assert problems.get("invalid_ratings", 0) == len(invalid)
    assert problems.get("duplicate_pairs", 0) == len(usable) - len(distinct)
    assert problems.get("ragged_rows", 0) == 0
    assert outcome.report.counts["rows_read"] == len(rows)
    assert len(outcome.interactions) == len(distinct)
    assert set(zip(outcome.interactions["user_id"], outcome.interactions["item_id"],
                   strict=True)) == distinct


GOOD_INTERACTIONS = ("interactions.csv",
                     b"user_id,item_id,rating\nu1,i1,5\nu1,i2,3\nu2,i1,4\nu3,i3,1\n")


@fuzz_settings(80)
@given(role=st.sampled_from(["items", "user_edges", "users"]), data=st.data())
def test_metadata_files(role, data):
    ids = ["i1", "i2", "i3", "i9"] if role == "items" else ["u1", "u2", "u3", "u9"]
    source = data.draw(delimited_file(role, id_cells=ids))
    ingest({"interactions": GOOD_INTERACTIONS, role: source})


ARROW_COLUMNS = {
    "text": st.lists(st.one_of(st.none(), st.sampled_from(HOSTILE_CELLS)), min_size=3,
                     max_size=3).map(lambda v: pa.array(v, pa.string())),
    "int": st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), min_size=3,
                    max_size=3).map(lambda v: pa.array(v, pa.int64())),
    "float": st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                      min_size=3, max_size=3).map(lambda v: pa.array(v, pa.float64())),
    "bool": st.lists(st.one_of(st.none(), st.booleans()), min_size=3,
                     max_size=3).map(lambda v: pa.array(v, pa.bool_())),
    "bytes": st.lists(st.binary(max_size=6), min_size=3, max_size=3).map(
        lambda v: pa.array(v, pa.binary())),
    "list": st.lists(st.lists(st.sampled_from(["a", "b", ""]), max_size=3), min_size=3,
                     max_size=3).map(lambda v: pa.array(v, pa.list_(pa.string()))),
    "timestamp": st.lists(st.one_of(st.none(), st.integers(-10**15, 10**15)), min_size=3,
                          max_size=3).map(lambda v: pa.array(v, pa.timestamp("s"))),
    "date": st.lists(st.integers(-10**6, 2_900_000), min_size=3, max_size=3).map(
        lambda v: pa.array(v, pa.date32())),
    "null": st.just(pa.nulls(3)),
}


@fuzz_settings(40)
@given(kinds=st.lists(st.sampled_from(["text", "text", *sorted(ARROW_COLUMNS)]), min_size=2,
                      max_size=4),
       names=st.lists(st.sampled_from(["user_id", "item_id", "rating", "timestamp", "x"]),
                      min_size=4, max_size=4, unique=True), data=st.data())
def test_parquet_files(kinds, names, data):
    arrays = [data.draw(ARROW_COLUMNS[kind]) for kind in kinds]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names[:len(arrays)]), buffer)
    ingest({"interactions": ("upload.parquet", buffer.getvalue())})


# ------------------------------------------------------------------------------ hand-written
HEADER = b"user_id,item_id,rating,timestamp\n"
HAND_WRITTEN = {
    "empty": b"",
    "only whitespace": b" \r\n\t\r\n",
    "header only": HEADER,
    "bom only": b"\xef\xbb\xbf",
    "utf-16 bom only": b"\xff\xfe",
    "odd utf-16": b"\xff\xfeu\x00s\x00e",
    "bad utf-8 after bom": b"\xef\xbb\xbfuser_id,item_id\n\xff\xfe,\x80\n",
    "utf-16 without bom": "user_id,item_id\nu1,i1\n".encode("utf-16-le"),
    "one column": b"user_id\nu1\nu2\n",
    "duplicate headers": b"user_id,user_id,item_id,item_id\n1,2,3,4\n5,6,7,8\n",
    "unbalanced quote": HEADER + b'"u1,i1,3,0\nu2,i2,4,0\n',
    "nul byte": HEADER + b"u1,i\x001,3,0\n",
    "non-finite ratings": HEADER + b"u1,i1,nan,0\nu2,i2,inf,0\nu3,i3,-inf,0\nu4,i4,1e309,0\n"
                                   b"u5,i5,text,0\n",
    "odd timestamps": HEADER + b"u1,i1,1,-1e300\nu2,i2,1,1e20\nu3,i3,1,9999-12-31\n"
                               b"u4,i4,1,0001-01-01\nu5,i5,1,\nu6,i6,1,2020-02-30\n",
    "ragged": HEADER + b"u1,i1\nu2,i2,3,4,5,6\nu3\n,,,,\n",
    "only separators": b",,,\n;;;\n|||\n",
    "one 1 MB cell": HEADER + b"u1,i1,3," + b"9" * (1 << 20) + b"\nu2," + b"i" * (1 << 20) + b",1,0\n",
    "1 MB header": b"x" * (1 << 20) + b",item_id\nu1,i1\n",
    "cr line ends": HEADER.replace(b"\n", b"\r") + b"u1,i1,5,0\ru2,i2,4,0\r",
    "binary junk": HEADER + bytes(range(256)),
    "zip magic": b"PK\x03\x04" + HEADER,
    "parquet magic junk": b"PAR1" + HEADER + b"PAR1",
    "double-colon no header": b"1::2::3::4\n5::6::7::8\n",
    "all ids empty": HEADER + b",,1,0\nNA,null,1,0\n",
    "1 MB date-like cell": HEADER + b"u1,i1,1," + b"1/2 3:4 " * (1 << 17)
                           + b"\nu2,i2,1,1/2/2020 3:4\n",
    "20,000 columns": b",".join(b"c%d" % k for k in range(20_000)) + b"\n" + b"1," * 19_999
                      + b"1\n",
    "empty category column": b"item_id\tgenres\tcategory\ni1\t\tNA\ni2\tnull\t\n",
}


@pytest.mark.parametrize("data", HAND_WRITTEN.values(), ids=HAND_WRITTEN.keys())
def test_hand_written_hostile_files(data):
    ingest({"interactions": ("hostile.csv", data)})
    ingest({"interactions": GOOD_INTERACTIONS, "items": ("items.csv", data)})


def test_timestamps_outside_years_1_to_9999_are_counted_not_kept():
    outcome = ingest({"interactions": ("t.csv", HAND_WRITTEN["odd timestamps"])})
    assert isinstance(outcome, Dataset)
    seconds = dict(zip(outcome.interactions["user_id"], outcome.interactions["timestamp"],
                       strict=True))
    assert math.isnan(seconds["u1"])  # -1e300
    assert seconds["u3"] == 253402214400.0  # 9999-12-31 (beyond pandas' nanosecond range)
    assert seconds["u4"] == -62135596800.0  # 0001-01-01
    problems = outcome.report.problem_counts()
    assert problems["unparsed_timestamps"] >= 2 and problems["missing_timestamps"] == 1


# ------------------------------------------------------------------------------ the CLI
def test_cli_validate_refuses_hostile_files_with_exit_2_and_no_traceback(tmp_path):
    cases = {
        "unbalanced.csv": (HAND_WRITTEN["unbalanced quote"], "opening quote"),
        "junk.csv": (HAND_WRITTEN["binary junk"], "binary"),
        "onecol.csv": (HAND_WRITTEN["one column"], "only one column"),
    }
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {}
    for name, (data, _) in cases.items():  # started together: the CLI's startup dominates
        path = tmp_path / name
        path.write_bytes(data)
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "recsys_core", "validate", "--interactions", str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 2, stdout + stderr
        assert "Traceback" not in stdout + stderr
        assert name in stderr and cases[name][1] in stderr, stderr
