"""Chunked ingestion (recsys_core.ingest.readers.iter_table, read_interactions' chunk_rows)
reads the same dataset and writes the same report as reading the file whole."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from recsys_core.ingest import load_dataset
from recsys_core.ingest.readers import iter_table, read_table, sniff_table

WHOLE = 10**9  # one chunk


def messy_interactions() -> str:
    """Every soft problem more than five times, spread over the file."""
    lines = ["user_id,item_id,rating,timestamp"]
    for n in range(80):
        user, item = f"u{n % 13}", f"i{(n * 7) % 23}"
        rating = ["4", "5", "3.5", "x", "", "4,5"][n % 6]
        ts = ["1600000000", "2020-01-02T03:04:05", "", "not a time",
              str(1600000000 + n)][n % 5]
        if n % 7 == 3:
            user = ""  # empty id
        if n % 9 == 4:
            lines.append(f"{user},{item},{rating},{ts},extra")  # ragged row
            continue
        lines.append(f"{user},{item},{rating},{ts}")
        if n % 8 == 0:
            lines.append(f"{user},{item},2,{1600000500 + n}")  # a later duplicate
    lines.append("single,i1,5,1600000000")
    return "\n".join(lines) + "\n"


def load(path, chunk_rows, **options):
    return load_dataset(path, chunk_rows=chunk_rows, **options)


@pytest.mark.parametrize("chunk_rows", [1, 3, 17])
@pytest.mark.parametrize("policy", ["implicit", "drop"])
def test_chunked_ingestion_equals_whole_file_ingestion(write_file, chunk_rows, policy):
    path = write_file("messy.csv", messy_interactions())
    whole = load(path, WHOLE, invalid_ratings=policy)
    chunked = load(path, chunk_rows, invalid_ratings=policy)
    pd.testing.assert_frame_equal(chunked.interactions, whole.interactions)
    assert list(chunked.user_ids) == list(whole.user_ids)
    assert list(chunked.item_ids) == list(whole.item_ids)
    assert chunked.report.to_dict() == whole.report.to_dict()
    assert chunked.report.to_text() == whole.report.to_text()
    counts = whole.report.problem_counts()
    for code in ("ragged_rows", "empty_ids", "invalid_ratings", "duplicate_pairs",
                 "unparsed_timestamps", "missing_timestamps"):
        assert counts[code] > 5, code  # the examples come from several chunks


@pytest.mark.parametrize("chunk_rows", [2, 5])
def test_chunked_ingestion_with_items_and_numeric_times(tiny_files, chunk_rows):
    whole = load(tiny_files["interactions"], WHOLE, items=tiny_files["items"])
    chunked = load(tiny_files["interactions"], chunk_rows, items=tiny_files["items"])
    pd.testing.assert_frame_equal(chunked.interactions, whole.interactions)
    assert chunked.report.to_dict() == whole.report.to_dict()


def test_chunked_parquet_equals_whole(tmp_path):
    frame = pd.DataFrame({"user_id": [f"u{n % 7}" for n in range(50)],
                          "item_id": [f"i{n % 11}" for n in range(50)],
                          "rating": np.arange(50) % 5 + 1.0,
                          "timestamp": 1_600_000_000 + np.arange(50)})
    path = tmp_path / "inter.parquet"
    frame.to_parquet(path, row_group_size=9)
    whole, chunked = load(path, WHOLE), load(path, 4)
    pd.testing.assert_frame_equal(chunked.interactions, whole.interactions)
    assert chunked.report.to_dict() == whole.report.to_dict()


def test_iter_table_chunks_concatenate_to_read_table():
    data = b"a,b,c\n1,x,2\n3,y,4,5\n\n6,z,7\n8,w\n9,v,10\n"
    sniffed = sniff_table(("t.csv", io.BytesIO(data)), role="interactions", max_rows=100)
    whole = read_table(sniffed, string_columns=["a", "b", "c"])
    chunks = list(iter_table(sniffed, ["a", "b", "c"], chunk_rows=2))
    assert [c.start for c in chunks] == [0, 2]
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(frame, whole.frame)
    assert [n for c in chunks for n in c.ragged_lines] == whole.ragged_lines == [3]
