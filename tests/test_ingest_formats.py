"""Every supported input format, encoding, column alias and metadata layout."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_core.dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from recsys_core.errors import DataError
from recsys_core.ingest import load_dataset, parse_timestamps
from recsys_core.ingest.readers import NULL_TOKENS

ML_GENRES = 19


def pairs(ds) -> list[tuple[str, str]]:
    return list(zip(ds.interactions[USER_COL], ds.interactions[ITEM_COL], strict=True))


# ---------------------------------------------------------------------- interactions formats
def test_csv_with_header(tiny_files):
    ds = load_dataset(tiny_files["interactions"])
    f = ds.report.file("interactions")
    assert (f.format, f.delimiter, f.header, f.encoding) == ("csv", ",", True, "utf-8")
    assert f.mapping == {"user": "user_id", "item": "item_id", "rating": "rating",
                         "timestamp": "timestamp"}
    assert len(ds.interactions) == 49 and ds.num_users == 8 and ds.num_items == 10
    assert ds.interactions[RATING_COL].dtype == np.float64
    assert ds.interactions[TIME_COL].min() == 1_600_000_000 + 36000
    assert ds.report.counts["rows_read"] == ds.report.counts["rows_kept"] == 49


def test_movielens_u_data(write_file):
    path = write_file("ml/u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                   "196\t377\t1\t878887116\n")
    ds = load_dataset(path)
    f = ds.report.file("interactions")
    assert f.format == "movielens u.data" and f.header is False and f.delimiter == "\t"
    assert pairs(ds) == [("196", "242"), ("186", "302"), ("196", "377")]
    assert ds.interactions[RATING_COL].tolist() == [3.0, 3.0, 1.0]
    assert ds.interactions[TIME_COL].iloc[0] == 881250949.0
    assert ds.name == "ml"  # generic file name -> folder name


def test_movielens_ratings_csv(write_file):
    path = write_file("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                                     "1,3,4.5,964981247\n2,1,5.0,964982224\n")
    ds = load_dataset(path)
    f = ds.report.file("interactions")
    assert f.format == "movielens ratings.csv"
    assert f.mapping["user"] == "userId" and f.mapping["item"] == "movieId"
    assert ds.interactions[RATING_COL].tolist() == [4.0, 4.5, 5.0]


def test_movielens_ratings_dat(write_file):
    path = write_file("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
                                     "2::1193::4::978298413\n")
    ds = load_dataset(path)
    f = ds.report.file("interactions")
    assert f.format == "movielens ratings.dat" and f.delimiter == "::"
    assert pairs(ds) == [("1", "1193"), ("1", "661"), ("2", "1193")]
    assert ds.interactions[TIME_COL].tolist() == [978300760.0, 978302109.0, 978298413.0]


@pytest.mark.parametrize("sep,name,expected", [
    ("\t", "events.tsv", "tsv"), (";", "events.csv", "csv (;)"), ("|", "events.txt",
                                                                  "pipe-separated")])
def test_other_delimiters(write_file, sep, name, expected):
    rows = [["user_id", "item_id", "rating"], ["a", "x", "1"], ["b", "y", "2"], ["a", "y", "3"]]
    path = write_file(name, "\n".join(sep.join(r) for r in rows) + "\n")
    ds = load_dataset(path)
    assert ds.report.file("interactions").format == expected
    assert pairs(ds) == [("a", "x"), ("b", "y"), ("a", "y")]


def test_whitespace_separated_and_crlf(write_file):
    ds = load_dataset(write_file("w.txt", "u1  i1   5\r\nu2 i1 3\r\nu1 i2 4\r\n"))
    assert ds.report.file("interactions").delimiter == " "
    assert pairs(ds) == [("u1", "i1"), ("u2", "i1"), ("u1", "i2")]
    ds = load_dataset(write_file("c.csv", "user_id,item_id\r\nu1,i1\r\nu2,i2\r\n"))
    assert pairs(ds) == [("u1", "i1"), ("u2", "i2")]


def test_semicolon_csv_with_decimal_commas(write_file):
    """European spreadsheet exports: ';' between fields, ',' as decimal mark."""
    lines = ["user;item;rating"] + [f"u{k};i{k % 3};{k % 5},5" for k in range(12)]
    ds = load_dataset(write_file("eu.csv", "\n".join(lines) + "\n"))
    assert ds.report.file("interactions").delimiter == ";"
    assert ds.interactions[RATING_COL].tolist()[:3] == [0.5, 1.5, 2.5]
    assert "invalid_ratings" not in ds.report.problem_counts()


def test_boolean_ratings(write_file):
    ds = load_dataset(write_file("b.csv", "user_id,item_id,rating\nu1,i1,True\nu2,i1,false\n"))
    assert ds.interactions[RATING_COL].tolist() == [1.0, 0.0]


def test_quoted_fields_with_delimiters(write_file):
    path = write_file("q.csv", 'user_id,item_id,rating\n"Smith, J",x,1\n"Doe, A","y,z",2\n')
    ds = load_dataset(path)
    assert pairs(ds) == [("Smith, J", "x"), ("Doe, A", "y,z")]


def test_ids_keep_leading_zeros_and_exact_strings(write_file):
    path = write_file("z.csv", "user_id,item_id\n007,01\n7,1\n 007 ,1.0\n")
    ds = load_dataset(path)
    assert pairs(ds) == [("007", "01"), ("7", "1"), ("007", "1.0")]
    assert ds.interactions[RATING_COL].tolist() == [1.0, 1.0, 1.0]  # implicit
    assert "implicit" in ds.report.file("interactions").details["ratings"]


_ID = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                     blacklist_characters=',"\ufeff'),
              min_size=1, max_size=6).filter(lambda s: s.strip() == s and s.lower() not in NULL_TOKENS)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_ID, _ID), min_size=1, max_size=20))
def test_ids_round_trip_exactly(rows, tmp_path_factory):
    """Any id without delimiters survives as the same string; duplicates keep the last row."""
    path = tmp_path_factory.mktemp("rt") / "r.csv"
    body = "".join(f"{u},{i},{k}\n" for k, (u, i) in enumerate(rows))
    path.write_text("user_id,item_id,rating\n" + body, encoding="utf-8")
    ds = load_dataset(path)
    last = {}
    for k, pair in enumerate(rows):
        last[pair] = k
    expected = sorted(last.items(), key=lambda kv: kv[1])
    assert pairs(ds) == [p for p, _ in expected]
    assert ds.interactions[RATING_COL].tolist() == [float(k) for _, k in expected]


def test_headerless_string_ids(write_file):
    path = write_file("plays.tsv", "alice\tmatrix\t5\nbob\tmatrix\t3\nalice\talien\t4\n")
    ds = load_dataset(path)
    assert ds.report.file("interactions").header is False
    assert pairs(ds) == [("alice", "matrix"), ("bob", "matrix"), ("alice", "alien")]


def test_parquet_interactions_and_items(tmp_path):
    inter = pd.DataFrame({"customer_id": [10, 11, 10], "asin": ["B1", "B2", "B2"],
                          "stars": [5.0, np.nan, 3.0],
                          "date": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03"])})
    items = pd.DataFrame({"asin": ["B1", "B2"], "title": ["Kettle", "Mug"],
                          "categories": [["Kitchen", "Tea"], ["Kitchen"]]})
    inter.to_parquet(tmp_path / "i.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    ds = load_dataset(tmp_path / "i.parquet", tmp_path / "items.parquet")
    assert ds.report.file("interactions").format == "parquet"
    assert pairs(ds) == [("10", "B1"), ("11", "B2"), ("10", "B2")]
    assert ds.interactions[RATING_COL].tolist() == [5.0, 1.0, 3.0]  # NaN -> implicit, counted
    assert ds.report.problem_counts()["invalid_ratings"] == 1
    assert ds.interactions[TIME_COL].iloc[0] == pd.Timestamp("2021-01-01", tz="UTC").timestamp()
    assert ds.attribute_columns == ["categories"]
    assert ds.items.set_index(ITEM_COL)["categories"].to_dict() == {
        "B1": ["Kitchen", "Tea"], "B2": ["Kitchen"]}


def test_parquet_float_ids_become_integer_strings(tmp_path):
    pd.DataFrame({"user_id": [1.0, 2.0], "item_id": [3.0, 4.0]}).to_parquet(tmp_path / "f.parquet")
    ds = load_dataset(tmp_path / "f.parquet")
    assert pairs(ds) == [("1", "3"), ("2", "4")]


# ---------------------------------------------------------------------- encodings and uploads
def test_utf8_bom(write_file):
    path = write_file("bom.csv", "\ufeffuserId,itemId\nü1,é\nu2,x\n".encode())
    ds = load_dataset(path)
    f = ds.report.file("interactions")
    assert f.encoding == "utf-8-sig" and f.mapping["user"] == "userId"
    assert pairs(ds)[0] == ("ü1", "é")


def test_latin1_fallback_is_reported(write_file):
    path = write_file("l1.csv", "user_id,item_id\nJosé,Amélie\nZoë,Léon\n".encode("latin-1"))
    ds = load_dataset(path)
    assert ds.report.file("interactions").encoding == "latin-1"
    assert pairs(ds) == [("José", "Amélie"), ("Zoë", "Léon")]
    assert any("not valid UTF-8" in w and "line 2" in w for w in ds.report.warnings)


def test_cp1252_fallback(write_file):
    path = write_file("w.csv", "user_id,item_id\nu1,\u201cQuoted\u201d\n".encode("cp1252"))
    ds = load_dataset(path)
    assert ds.report.file("interactions").encoding == "cp1252"
    assert pairs(ds) == [("u1", "\u201cQuoted\u201d")]


def test_utf16_with_bom(write_file):
    path = write_file("excel.txt", "user_id\titem_id\nu1\ti1\nu2\ti2\n".encode("utf-16"))
    ds = load_dataset(path)
    assert ds.report.file("interactions").encoding == "utf-16"
    assert pairs(ds) == [("u1", "i1"), ("u2", "i2")]


@pytest.mark.parametrize("wrap", [bytes, io.BytesIO, lambda b: io.StringIO(b.decode())])
def test_upload_pairs_are_never_opened_as_paths(wrap):
    data = b"user_id,item_id\nu1,i1\nu2,i1\n"
    ds = load_dataset(("/definitely/not/a/file.csv", wrap(data)))
    assert pairs(ds) == [("u1", "i1"), ("u2", "i1")]
    assert ds.report.file("interactions").name == "/definitely/not/a/file.csv"
    assert ds.name == "file"


def test_upload_file_like_is_read_from_start():
    buf = io.BytesIO(b"user_id,item_id\nu1,i1\n")
    buf.read()  # e.g. already consumed by a preview
    assert len(load_dataset(("up.csv", buf)).interactions) == 1


# ---------------------------------------------------------------------- column mapping
@pytest.mark.parametrize("header,expected", [
    ("customer_id,product_id,stars,date", ("customer_id", "product_id", "stars", "date")),
    ("uid,asin,score,datetime", ("uid", "asin", "score", "datetime")),
    ("User,Track_ID,Rating,ts", ("User", "Track_ID", "Rating", "ts")),
    ("USER ID,book_id,overall,time", ("USER ID", "book_id", "overall", "time")),
    ("user,item,rating,timestamp", ("user", "item", "rating", "timestamp")),
    ("reviewerID,movie,score,unixReviewTime", ("reviewerID", "movie", "score", "unixReviewTime")),
])
def test_column_aliases(write_file, header, expected):
    path = write_file("a.csv", header + "\nu1,i1,4,2020-01-01\nu2,i2,5,2020-01-02\n")
    mapping = load_dataset(path).report.file("interactions").mapping
    assert (mapping["user"], mapping["item"], mapping["rating"], mapping["timestamp"]) == expected


def test_pattern_fallback_for_id_names(write_file):
    path = write_file("p.csv", "shopper_user_uuid_id,sold_article_id\na,b\n")
    mapping = load_dataset(path).report.file("interactions").mapping
    assert mapping["user"] == "shopper_user_uuid_id" and mapping["item"] == "sold_article_id"


def test_explicit_column_overrides(write_file):
    path = write_file("o.csv", "who,what,how_much,when,user_id\nu1,i1,2,1600000000,zzz\n")
    ds = load_dataset(path, user_col="who", item_col="What", rating_col="how_much",
                      time_col="when")
    assert pairs(ds) == [("u1", "i1")]
    assert ds.interactions[RATING_COL].iloc[0] == 2.0
    assert ds.interactions[TIME_COL].iloc[0] == 1_600_000_000.0
    assert ds.report.file("interactions").ignored_columns == {
        "user_id": "not a user/item/rating/timestamp column"}


def test_override_of_headerless_column(write_file):
    path = write_file("h.tsv", "5\tu1\ti1\n4\tu2\ti1\n")
    ds = load_dataset(path, user_col="column_2", item_col="column_3", rating_col="column_1")
    assert pairs(ds) == [("u1", "i1"), ("u2", "i1")]
    assert ds.interactions[RATING_COL].tolist() == [5.0, 4.0]


def test_one_column_for_two_roles_is_refused(write_file):
    path = write_file("o.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match="same column is given for two roles"):
        load_dataset(path, user_col="a", item_col="a")


def test_unknown_override_lists_columns(write_file):
    path = write_file("o.csv", "a,b\n1,2\n")
    with pytest.raises(DataError, match=r"'usr' given by --user-col.*Columns found: 'a', 'b'"):
        load_dataset(path, user_col="usr")


# ---------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("values,kind,first", [
    (["978300760", "978300761"], "epoch seconds", 978300760.0),
    (["1600000000000", "1600000000500"], "epoch milliseconds", 1_600_000_000.0),
    (["1600000000000000", "1600000000000001"], "epoch microseconds", 1_600_000_000.0),
    (["2020-01-02", "2020-01-03T10:00:00Z"], "date ISO8601", 1577923200.0),
    (["2020-01-02 10:00:00+02:00", "2020-01-03"], "date ISO8601", 1577952000.0),
    (["31/12/2020", "01/02/2021"], "date %d/%m/%Y", 1609372800.0),
    (["12/31/2020", "02/01/2021"], "date %m/%d/%Y", 1609372800.0),
    (["01-Jan-1995", "05-Feb-1996"], "date %d-%b-%Y", 788918400.0),
    (["Jan 5, 2020", "Feb 10, 2021"], "date %b %d, %Y", 1578182400.0),
    (["20200131", "20201231"], "date %Y%m%d", 1580428800.0),
])
def test_timestamp_formats(values, kind, first):
    parsed = parse_timestamps(pd.Series(values, dtype="string"))
    assert parsed.kind == kind
    assert parsed.seconds[0] == pytest.approx(first)
    assert parsed.unparsed == 0 and np.isfinite(parsed.seconds).all()


def test_timestamp_unparsed_and_missing_are_counted():
    parsed = parse_timestamps(["2020-01-01", "not a date", "", "2020-01-05", "NaN"])
    assert parsed.unparsed == 1 and parsed.missing == 2
    assert parsed.examples == ["not a date"]
    assert np.isnan(parsed.seconds[[1, 2, 4]]).all()


def test_numeric_epoch_milliseconds_column():
    parsed = parse_timestamps(np.array([1.6e12, np.nan, 1.7e12]))
    assert parsed.kind == "epoch milliseconds" and parsed.missing == 1
    assert parsed.seconds[0] == 1.6e9


def test_interaction_timestamps_iso(write_file):
    path = write_file("t.csv", "user_id,item_id,date\nu1,i1,2021-03-04\nu1,i2,garbage\n")
    ds = load_dataset(path)
    t = ds.interactions[TIME_COL].tolist()
    assert t[0] == pd.Timestamp("2021-03-04", tz="UTC").timestamp() and math.isnan(t[1])
    assert ds.report.problem_counts()["unparsed_timestamps"] == 1
    assert ds.report.file("interactions").details["timestamp format"] == "date ISO8601"


# ---------------------------------------------------------------------- item metadata
def u_item_line(item_id: int, title: str, genres: set[int]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in range(ML_GENRES))
    return f"{item_id}|{title}|01-Jan-1995||http://us.imdb.com/M/title?{item_id}|{flags}"


def test_movielens_u_item_latin1(write_file):
    inter = write_file("u.data", "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n")
    text = "\n".join([u_item_line(1, "Toy Story (1995)", {3, 4, 5}),
                      u_item_line(2, "Amélie (2001)", {5, 14}),
                      u_item_line(3, "Unknown Film (1996)", set())]) + "\n"
    items = write_file("u.item", text.encode("latin-1"))
    ds = load_dataset(inter, items)
    f = ds.report.file("items")
    assert f.format == "movielens u.item" and f.encoding == "latin-1"
    assert ds.attribute_columns == ["genre"]
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["1", "title"] == "Toy Story (1995)"
    assert by_id.loc["2", "title"] == "Amélie (2001)"
    assert by_id.loc["1", "genre"] == ["Animation", "Children's", "Comedy"]
    assert by_id.loc["2", "genre"] == ["Comedy", "Romance"]
    assert by_id.loc["3", "genre"] == []
    assert set(f.ignored_columns) == {"release_date", "video_release_date", "imdb_url"}
    assert ds.report.counts["cold_items"] == 1


MOVIES_CSV = {
    "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4,964982703\n",
    "movies.csv": 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
                  '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n'
                  "7,Sabrina (1995),(no genres listed)\n",
}
MOVIES_DAT = {
    "ratings.dat": "1::1193::5::978300760\n",
    "movies.dat": "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                  "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n",
}


@pytest.mark.parametrize("files, expected", [
    (MOVIES_CSV, {("1", "genres"): ["Adventure", "Animation", "Children"],
                  ("3", "title"): "Grumpier Old Men, The (1995)",
                  ("7", "genres"): []}),
    (MOVIES_DAT, {("661", "genres"): ["Animation", "Children's", "Musical"],
                  ("1193", "title"): "One Flew Over the Cuckoo's Nest (1975)"}),
], ids=["movies.csv genres", "movies.dat"])
def test_movielens_movies_files(write_file, files, expected):
    inter, items = (write_file(name, text) for name, text in files.items())
    ds = load_dataset(inter, items)
    assert ds.report.file("items").format == f"movielens {list(files)[1]}"
    by_id = ds.items.set_index(ITEM_COL)
    for (item, column), value in expected.items():
        assert by_id.loc[item, column] == value


def test_tiny_items_detection(tiny_dataset):
    f = tiny_dataset.report.file("items")
    assert f.mapping["item id"] == "item_id" and f.mapping["title"] == "title"
    assert f.mapping["text"] == ["description"]
    assert tiny_dataset.attribute_columns == ["genres", "category"]
    by_id = tiny_dataset.items.set_index(ITEM_COL)
    assert by_id.loc["i1", "genres"] == ["Action", "Comedy"]
    assert by_id.loc["i4", "category"] == ["documentary"]
    assert by_id.loc["i2", "description"] == "A story about a quiet family story."
    assert tiny_dataset.report.counts["attribute_values"] == {"genres": 6, "category": 3}


def test_items_text_columns_joined_and_detection(write_file):
    inter = write_file("i.csv", "user_id,product_id\nu1,p1\nu2,p2\n")
    rows = ["product_id,name,overview,plot,tags,brand,price,url,blurb_free"]
    for k in range(1, 7):
        rows.append(f"p{k},Product {k},Great thing {k}.,  It does stuff.  ,"
                    f"\"red; {'big' if k % 2 else 'small'}\",{'acme' if k < 4 else 'zen'},"
                    f"{k * 1.5},http://x/{k},"
                    f"this is a long free text number {k} about many things")
    items = write_file("items.csv", "\n".join(rows) + "\n")
    ds = load_dataset(inter, items)
    f = ds.report.file("items")
    assert f.mapping["item id"] == "product_id" and f.mapping["title"] == "name"
    assert f.mapping["text"] == ["overview", "plot", "blurb_free"]
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["p1", "description"].startswith("Great thing 1. It does stuff. this is")
    assert by_id.loc["p1", "tags"] == ["red", "big"]
    assert by_id.loc["p5", "brand"] == ["zen"]
    assert set(ds.attribute_columns) == {"tags", "brand"}
    assert f.ignored_columns["price"].startswith("numeric")
    assert "identifier" in f.ignored_columns["url"]


def test_items_comma_multivalued_needs_clear_evidence(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\n")
    rows = ["item_id,title,labels,motto"]
    for k in range(12):
        rows.append(f'{"abcdefghijkl"[k]},T{k},"x, y{k % 2}","Hello, world number {k} here"')
    ds = load_dataset(inter, write_file("items.csv", "\n".join(rows) + "\n"))
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["a", "labels"] == ["x", "y0"]
    assert "motto" not in ds.attribute_columns  # prose with commas is not a list


def test_items_explicit_overrides(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\nu2,b\n")
    items = write_file("items.csv", "item_id,title,description,kind,year,notes\n"
                       "a,A,desc a,x|y,1999,n1\nb,B,desc b,y,2001,n2\n")
    ds = load_dataset(inter, items, text_cols=["notes"], categorical_cols=["year", "kind"])
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["a", "description"] == "n1"
    assert by_id.loc["a", "year"] == ["1999"] and by_id.loc["a", "kind"] == ["x", "y"]
    assert ds.attribute_columns == ["year", "kind"]
    f = ds.report.file("items")
    assert "description" in f.ignored_columns
    none = load_dataset(inter, items, text_cols=[], categorical_cols=[])
    assert none.attribute_columns == [] and (none.items["description"] == "").all()
    with pytest.raises(DataError, match="--categorical-cols"):
        load_dataset(inter, items, categorical_cols=["nope"])


def test_items_id_matches_interaction_column_name(write_file):
    inter = write_file("i.csv", "user_id,movieId\nu1,10\n")
    items = write_file("m.csv", "id,movieId,title\n1,10,Heat\n")
    ds = load_dataset(inter, items)
    assert ds.report.file("items").mapping["item id"] == "movieId"
    assert ds.items.set_index(ITEM_COL).loc["10", "title"] == "Heat"


def test_items_explicit_id_and_title(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,10\n")
    items = write_file("m.csv", "code,label,item_id\n10,Heat,zzz\n")
    ds = load_dataset(inter, items, items_id_col="code", title_col="label")
    assert ds.items.set_index(ITEM_COL).loc["10", "title"] == "Heat"


def test_attribute_names_never_clash(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\n")
    items = write_file("m.csv", "item_id,title,Genre,genre\na,A,x,y\nb,B,x,y\nc,C,z,y2\n")
    ds = load_dataset(inter, items, categorical_cols=["Genre", "genre"])
    from recsys_core.graph import attribute_node_type
    types = [attribute_node_type(c) for c in ds.attribute_columns]
    assert len(set(types)) == 2


def test_binary_flag_columns_group(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\n")
    items = write_file("m.csv", "item_id,title,Action,Comedy,Drama\na,A,1,0,1\nb,B,0,0,0\n")
    ds = load_dataset(inter, items)
    by_id = ds.items.set_index(ITEM_COL)
    assert by_id.loc["a", "flags"] == ["Action", "Drama"] and by_id.loc["b", "flags"] == []


# ---------------------------------------------------------------------- users and edges
def test_users_and_user_edges(tiny_dataset):
    ds = tiny_dataset
    assert list(ds.users.columns) == ["user_id", "age_group", "country"]
    assert len(ds.users) == 8
    assert ds.user_edges.values.tolist()[0] == ["u1", "u2"]
    assert ds.report.counts["user_edges"] == 6
    assert ds.report.file("user_edges").mapping == {"source user": "user_id",
                                                    "target user": "friend_id"}


def test_edges_edge_only_users_self_loops_duplicates(write_file):
    inter = write_file("i.csv", "user_id,item_id\nu1,a\nu2,a\n")
    edges = write_file("e.tsv", "u1\tu2\nu1\tu2\nu2\tu2\nu1\tu9\n\tu1\n")
    ds = load_dataset(inter, user_edges=edges)
    counts = ds.report.problem_counts()
    assert counts["duplicate_edges"] == 1 and counts["self_loop_edges"] == 1
    assert counts["edge_only_users"] == 1 and counts["empty_edge_ids"] == 1
    assert ds.user_edges.values.tolist() == [["u1", "u2"], ["u1", "u9"]]
    assert "u9" in set(ds.user_ids) and ds.num_users == 3


def test_movielens_u_user(write_file):
    inter = write_file("u.data", "1\t1\t5\t881250949\n")
    users = write_file("u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    ds = load_dataset(inter, users=users)
    assert ds.report.file("users").format == "movielens u.user"
    assert list(ds.users.columns) == ["user_id", "age", "gender", "occupation"]
    assert "zip_code" in ds.report.file("users").ignored_columns  # an identifier
    assert ds.report.problem_counts()["metadata_only_users"] == 1


def test_report_is_json_serialisable(tiny_dataset):
    d = tiny_dataset.report.to_dict()
    assert json.loads(json.dumps(d))["counts"]["interactions"] == 49
    assert d["problem_counts"] == {"cold_items": 2}
