"""Streaming top-K (models.base.iter_recommend / top_k_rows) equals the dense top-K; the CLI
writes the same lists block by block."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_core.cli import main
from recsys_core.cli.recommend import write_blocks
from recsys_core.csv_safety import to_csv_string
from recsys_core.dataset import Dataset
from recsys_core.models.base import Recommender, mask_seen, top_k_rows

NUM_USERS, NUM_ITEMS = 37, 23


class FixedScores(Recommender):
    """Scores read from a fixed matrix (small integers: many ties)."""

    name = "fixed"

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = table

    def fit(self, dataset, train, valid=None, on_progress=None):
        self._bind(dataset, train)
        return self

    def score(self, users, items=None):
        block = self.table[np.asarray(users)]
        return block if items is None else block[:, np.asarray(items)]


@pytest.fixture
def fitted():
    rng = np.random.default_rng(3)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, NUM_USERS, 300),
                                               rng.integers(0, NUM_ITEMS, 300), strict=True)}
    # user 0 has seen every item but one, user 1 every item: fewer than k left
    pairs |= {(0, i) for i in range(NUM_ITEMS - 1)} | {(1, i) for i in range(NUM_ITEMS)}
    frame = pd.DataFrame(sorted(pairs), columns=["u", "i"])
    inter = pd.DataFrame({"user_id": "u" + frame["u"].astype(str),
                          "item_id": "i" + frame["i"].astype(str)})
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(NUM_ITEMS)],
                          "title": [f"t{j}" for j in range(NUM_ITEMS)], "description": ""})
    ds = Dataset(interactions=inter, items=items)
    table = rng.integers(0, 4, size=(ds.num_users, ds.num_items)).astype(np.float32)
    table[5, :] = 1.0  # every item tied
    table[6, 3] = np.nan  # NaN is never recommended
    return FixedScores(table).fit(ds, ds.interactions), ds


def dense_reference(model: FixedScores, ds: Dataset, k: int, users=None,
                    candidates=None) -> pd.DataFrame:
    """The whole users x items matrix, seen items masked, a stable sort per row."""
    user_idx = np.arange(ds.num_users) if users is None else ds.user_idx(users)
    cand = np.arange(ds.num_items) if candidates is None else np.unique(ds.item_idx(candidates))
    scores = model.table[user_idx][:, cand].astype(np.float64)
    seen = model.train_matrix[user_idx][:, cand].toarray() > 0
    scores[seen | np.isnan(scores)] = -np.inf
    rows = []
    for r, u in enumerate(user_idx):
        order = sorted(range(len(cand)), key=lambda c: (-scores[r, c], c))[:k]
        rows += [(ds.user_ids[u], ds.item_ids[cand[c]], rank + 1, scores[r, c])
                 for rank, c in enumerate(order) if np.isfinite(scores[r, c])]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


@pytest.mark.parametrize("batch_size", [1, 4, 7, 1024])
@pytest.mark.parametrize("k", [1, 5, NUM_ITEMS + 3])
def test_streaming_equals_dense_top_k(fitted, batch_size, k):
    model, ds = fitted
    expected = dense_reference(model, ds, k)
    got = model.recommend(k=k, batch_size=batch_size)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    blocks = list(model.iter_recommend(k=k, batch_size=batch_size))
    assert max(b["user_id"].nunique() for b in blocks) <= batch_size
    user_of = {u: n for n, u in enumerate(ds.user_ids)}
    assert got.loc[got["user_id"] == "u1"].empty  # has seen everything
    assert (got.loc[got["user_id"] == "u0", "rank"].tolist() == [1])
    assert list(got["user_id"].map(user_of)) == sorted(got["user_id"].map(user_of))


def test_block_bytes_bounds_the_block_and_not_the_result(fitted):
    model, ds = fitted
    # 8 bytes x 23 items x 2 users: two users per block whatever batch_size says
    blocks = list(model.iter_recommend(k=4, batch_size=1024, block_bytes=8 * NUM_ITEMS * 2))
    assert max(b["user_id"].nunique() for b in blocks) <= 2
    pd.testing.assert_frame_equal(pd.concat(blocks, ignore_index=True),
                                  dense_reference(model, ds, 4), check_dtype=False)


def test_streaming_with_candidates_and_a_user_list(fitted):
    model, ds = fitted
    users = ["u9", "u2", "u5", "u0"]
    candidates = ["i7", "i1", "i3", "i22", "i1"]
    for batch_size in (1, 3):
        got = model.recommend(users=users, k=3, candidates=candidates, batch_size=batch_size)
        pd.testing.assert_frame_equal(got, dense_reference(model, ds, 3, users, candidates),
                                      check_dtype=False)
    # without excluding the history, every candidate is rankable
    assert len(model.recommend(users=["u1"], k=3, exclude_seen=False)) == 3


def test_ties_go_to_the_lower_index_in_every_block_size(fitted):
    model, ds = fitted
    for batch_size in (1, 2, 64):
        recs = model.recommend(users=["u5"], k=ds.num_items, batch_size=batch_size)
        idx = ds.item_idx(recs["item_id"].tolist())
        assert list(idx) == sorted(idx)  # all tied at 1.0: ascending item index


def test_top_k_rows_matches_a_stable_sort():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (50, 40), generator=gen).double()
    scores[::7, ::3] = float("-inf")
    scores[1::2] = torch.randn(25, 40, generator=gen, dtype=torch.float64)  # distinct rows
    scores[5, 10:] = scores[5, 3]  # a distinct row whose k-th value is tied many times
    for k in (1, 3, 40):
        values, columns = top_k_rows(scores, k)
        ref_values, ref_columns = torch.sort(scores, dim=1, descending=True, stable=True)
        assert torch.equal(values, ref_values[:, :k])
        assert torch.equal(columns, ref_columns[:, :k])


def test_mask_seen_reads_csr_rows(fitted):
    model, ds = fitted
    users = np.array([3, 0, 7])
    scores = torch.zeros(3, ds.num_items, dtype=torch.float64)
    mask_seen(scores, model.train_matrix, users)
    dense = model.train_matrix[users].toarray() > 0
    assert torch.equal(torch.isinf(scores), torch.from_numpy(dense))


def test_write_blocks_equals_one_csv_of_the_whole(fitted):
    model, ds = fitted
    buffer = io.StringIO()
    rows = write_blocks(model.iter_recommend(k=3, batch_size=5), buffer, ds.num_users,
                        progress=False)
    whole = model.recommend(k=3)
    assert rows == len(whole)
    assert buffer.getvalue() == to_csv_string(whole)


def test_cli_recommend_streams_the_same_lists(tiny_files, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--interactions", str(tiny_files["interactions"]), "--items",
                 str(tiny_files["items"]), "--model", "pop", "--out", str(run_dir)]) == 0
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--run", str(run_dir), "--k", "4", "--out", str(out)]) == 0
    from recsys_core.run import load_run

    model, _, _ = load_run(run_dir)
    assert out.read_text(encoding="utf-8") == to_csv_string(model.recommend(k=4))
    assert not list(tmp_path.glob(".recs.csv.*.tmp"))  # the temporary file was renamed

