"""The shared training loop: splitting, sampling, losses, metrics, early stopping, checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_resumed_like_straight
from torch import nn

from recsys_core.dataset import ITEM_IDX, USER_IDX, Dataset
from recsys_core.errors import ModelLoadError, TrainingError
from recsys_core.models.mf import MFModule
from recsys_core.training import (
    CSRHistory,
    PairIndex,
    TrainConfig,
    masked_softmax_loss,
    ndcg_at_k,
    sample_negatives,
    split_validation,
    train_model,
    unique_pairs,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


def tiny_dataset(num_users: int = 20, num_items: int = 25, per_user: int = 8,
                 seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        for i in rng.choice(num_items, size=per_user, replace=False):
            rows.append((f"u{u}", f"i{i}", 1.0 + float(rng.integers(5)), 1e9 + len(rows)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "title": [f"Item {i}" for i in range(num_items)],
                          "description": "",
                          "genre": [[["a", "b", "c"][i % 3]] for i in range(num_items)]})
    return Dataset(inter, items, attribute_columns=["genre"])


def config(**changes) -> TrainConfig:
    base = dict(epochs=3, batch_size=64, lr=0.01, seed=0, device="cpu", show_progress=False)
    return TrainConfig(**{**base, **changes})


# ---------------------------------------------------------------------------------- pieces
def test_split_validation_is_per_user_seeded_and_keeps_small_users():
    ds = tiny_dataset()
    inter = ds.interactions
    small = inter[inter[USER_IDX] == 0].iloc[:2]  # a user with 2 interactions keeps both
    frame = pd.concat([small, inter[inter[USER_IDX] != 0]], ignore_index=True)
    train, valid = split_validation(frame, fraction=0.25, seed=3)
    assert len(train) + len(valid) == len(frame)
    assert 0 not in set(valid[USER_IDX])
    per_user = valid.groupby(USER_IDX).size()
    assert (per_user == 2).all()  # round(0.25 * 8) for every other user
    again_train, again_valid = split_validation(frame, fraction=0.25, seed=3)
    pd.testing.assert_frame_equal(valid, again_valid)
    _, other = split_validation(frame, fraction=0.25, seed=4)
    assert not valid.index.equals(other.index)


def test_pair_index_and_negative_sampling_avoid_seen_items():
    ds = tiny_dataset()
    users, items = unique_pairs(ds.interactions)
    seen = PairIndex(users, items, ds.num_items)
    assert seen.contains(users, items).all()
    key = set(zip(users.tolist(), items.tolist(), strict=True))
    probe_u = torch.arange(ds.num_users).repeat_interleave(ds.num_items)
    probe_i = torch.arange(ds.num_items).repeat(ds.num_users)
    pairs = zip(probe_u.tolist(), probe_i.tolist(), strict=True)
    expected = torch.tensor([pair in key for pair in pairs])
    assert torch.equal(seen.contains(probe_u, probe_i), expected)

    pool = torch.arange(ds.num_items)
    negs = sample_negatives(users, 4, pool, seen, torch.Generator().manual_seed(0))
    assert negs.shape == (users.numel(), 4)
    assert not seen.contains(users.view(-1, 1).expand_as(negs), negs).any()
    again = sample_negatives(users, 4, pool, seen, torch.Generator().manual_seed(0))
    assert torch.equal(negs, again)


def test_masked_softmax_loss_matches_brute_force():
    torch.manual_seed(0)
    ds = tiny_dataset()
    users, items = unique_pairs(ds.interactions)
    history = CSRHistory(users, items, ds.num_users)
    user_emb, item_emb = torch.randn(ds.num_users, 8), torch.randn(ds.num_items, 8)
    batch = torch.arange(0, users.numel(), 3)
    candidates = torch.tensor([0, 2, 3, 5, 7, 11, 13, 17, 19, 23])
    loss = masked_softmax_loss(user_emb, item_emb, users[batch], items[batch], candidates,
                               history, temperature=0.5)
    seen = {(u, i) for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    terms = []
    for u, i in zip(users[batch].tolist(), items[batch].tolist(), strict=True):
        neg = [j for j in candidates.tolist() if (u, j) not in seen]
        logits = torch.stack([user_emb[u] @ item_emb[j] for j in [i] + neg]) / 0.5
        terms.append(torch.logsumexp(logits, 0) - logits[0])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)


def test_ndcg_matches_reference():
    torch.manual_seed(1)
    ds = tiny_dataset()
    train, valid = split_validation(ds.interactions, fraction=0.25, seed=0)
    tu, ti = unique_pairs(train)
    vu, vi = unique_pairs(valid)
    user_emb, item_emb = torch.randn(ds.num_users, 4), torch.randn(ds.num_items, 4)
    k = 5
    got = ndcg_at_k(user_emb, item_emb, torch.unique(vu), PairIndex(vu, vi, ds.num_items),
                    torch.bincount(vu, minlength=ds.num_users), CSRHistory(tu, ti, ds.num_users), k)
    scores = (user_emb @ item_emb.T).numpy()
    scores[tu.numpy(), ti.numpy()] = -np.inf
    values = []
    for u in torch.unique(vu).tolist():
        truth = set(vi[vu == u].tolist())
        top = np.argsort(-scores[u], kind="stable")[:k]
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in truth)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
        values.append(dcg / idcg)
    assert got == pytest.approx(float(np.mean(values)), abs=1e-6)


# ---------------------------------------------------------------------------------- the loop
def test_train_model_early_stops_restores_best_and_reports_progress():
    ds = tiny_dataset()
    module = MFModule(ds.num_users, ds.num_items, 8)
    events = []
    result = train_model(module, ds, ds.interactions, None,
                         config(epochs=40, patience=2, lr=0.05), on_progress=events.append)
    assert result.stop_reason in {"patience", "epochs"}
    assert [h["epoch"] for h in result.history] == list(range(1, len(result.history) + 1))
    assert {"stage", "epoch", "epochs", "loss", "valid_ndcg", "fraction"} <= set(events[0])
    assert events[-1]["epoch"] == len(result.history)
    best = max(h["valid_ndcg"] for h in result.history)
    assert result.best_valid_ndcg >= best - 1e-12
    # The restored weights are those of the best epoch: re-evaluating gives the best score.
    if result.best_epoch:
        assert result.history[result.best_epoch - 1]["valid_ndcg"] == pytest.approx(
            result.best_valid_ndcg)


def test_should_stop_hook_ends_training():
    ds = tiny_dataset()
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    result = train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions, None,
                         config(epochs=50, batch_size=32), should_stop=should_stop)
    assert result.stop_reason == "stopped"
    assert len(result.history) < 50


def test_stop_before_an_epochs_first_step_is_a_clean_stop_not_divergence():
    ds = tiny_dataset()
    batches_per_epoch = math.ceil(len(split_validation(ds.interactions, 0.1, 0)[0]) / 32)
    calls = []

    def should_stop() -> bool:  # fires exactly at the first step of the second epoch
        calls.append(1)
        return len(calls) > batches_per_epoch

    result = train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions, None,
                         config(epochs=50, batch_size=32), should_stop=should_stop)
    assert result.stop_reason == "stopped"
    assert len(result.history) == 1
    assert all(math.isfinite(r["loss"]) for r in result.history)


def test_time_limit_ends_an_epoch_part_way():
    ds = tiny_dataset(num_users=60, per_user=10)

    class SlowModule(MFModule):
        def forward(self, hidden=None):
            import time

            time.sleep(0.05)
            return super().forward(hidden)

    # Six steps per epoch at >= 50 ms each: a 0.12 s limit ends the first epoch part-way.
    result = train_model(SlowModule(ds.num_users, ds.num_items, 8), ds, ds.interactions, None,
                         config(epochs=50, batch_size=100, time_limit=0.12))
    assert result.stop_reason == "time_limit"
    assert len(result.history) == 1
    assert math.isfinite(result.history[0]["loss"])


class ExplodingModule(MFModule):
    """Returns NaN embeddings from the second epoch on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, hidden=None):
        self.calls += 1
        user, item = super().forward(hidden)
        if self.training and self.calls > 3:
            return user * float("nan"), item
        return user, item


def test_non_finite_loss_raises_training_error_and_keeps_checkpoint(tmp_path):
    ds = tiny_dataset()
    module = ExplodingModule(ds.num_users, ds.num_items, 8)
    with pytest.raises(TrainingError, match="diverged"):
        train_model(module, ds, ds.interactions, ds.interactions.iloc[:0],
                    config(epochs=5, batch_size=1000, checkpoint_dir=str(tmp_path)))
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    assert meta["epoch"] == 3  # the fourth training pass produced NaN
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_resume_continues_exactly_where_the_checkpoint_left_off(tmp_path):
    ds = tiny_dataset()
    train = ds.interactions
    no_valid = train.iloc[:0]  # no validation: every epoch is checkpointed
    straight = MFModule(ds.num_users, ds.num_items, 8)
    full = train_model(straight, ds, train, no_valid, config(epochs=4))

    first = MFModule(ds.num_users, ds.num_items, 8)
    train_model(first, ds, train, no_valid, config(epochs=2, checkpoint_dir=str(tmp_path)))
    resumed = MFModule(ds.num_users, ds.num_items, 8)
    result = train_model(resumed, ds, train, no_valid,
                         config(epochs=4, checkpoint_dir=str(tmp_path), resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert_resumed_like_straight(result, full, resumed, straight)


def test_resume_rejects_a_checkpoint_of_another_shape(tmp_path):
    ds = tiny_dataset()
    train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions,
                ds.interactions.iloc[:0], config(epochs=1, checkpoint_dir=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="does not fit"):
        train_model(MFModule(ds.num_users, ds.num_items, 4), ds, ds.interactions, None,
                    config(epochs=2, checkpoint_dir=str(tmp_path), resume=True))


def test_truncated_checkpoint_is_reported(tmp_path):
    ds = tiny_dataset()
    train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions,
                ds.interactions.iloc[:0], config(epochs=1, checkpoint_dir=str(tmp_path)))
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions, None,
                    config(epochs=2, checkpoint_dir=str(tmp_path), resume=True))


class OutOfMemoryOnce(MFModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.raised = False

    def forward(self, hidden=None):
        if self.training and not self.raised:
            self.raised = True
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(hidden)


def test_out_of_memory_retries_with_half_the_batch():
    ds = tiny_dataset()
    result = train_model(OutOfMemoryOnce(ds.num_users, ds.num_items, 8), ds, ds.interactions,
                         None, config(epochs=2, batch_size=1024))
    assert result.batch_size == 512
    assert len(result.history) == 2


@pytest.mark.parametrize("loss", ["bpr", "bce", "softmax"])
def test_every_loss_trains_and_lowers_the_loss(loss):
    ds = tiny_dataset()
    result = train_model(MFModule(ds.num_users, ds.num_items, 8), ds, ds.interactions,
                         ds.interactions.iloc[:0],
                         config(epochs=15, loss=loss, num_negatives=4, lr=0.05))
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_train_options_are_the_train_config_fields():
    """The keyword form the models' constructors take lists TrainConfig's fields, typed alike."""
    import dataclasses
    import typing

    from recsys_core.training import TrainOptions

    assert typing.get_type_hints(TrainOptions) == typing.get_type_hints(TrainConfig)
    assert list(TrainOptions.__annotations__) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_unique_pairs_drops_duplicates_in_first_seen_order():
    frame = pd.DataFrame({USER_IDX: [2, 0, 2, 1], ITEM_IDX: [5, 1, 5, 0]})
    users, items = unique_pairs(frame)
    assert users.tolist() == [2, 0, 1]
    assert items.tolist() == [5, 1, 0]


def test_modules_follow_the_protocol():
    from recsys_core.training import EmbeddingModule

    assert isinstance(MFModule(3, 4, 2), EmbeddingModule)
    assert not isinstance(nn.Linear(2, 2), EmbeddingModule)


def test_refit_retrains_on_all_interactions_for_the_chosen_epochs():
    from recsys_core.models import create_model

    ds = tiny_dataset(num_users=30, per_user=10)
    options = dict(embedding_dim=8, epochs=6, batch_size=64, lr=0.01, loss="softmax",
                   device="cpu", show_progress=False, patience=100)
    plain = create_model("mf", **options).fit(ds, ds.interactions)
    events = []
    refitted = create_model("mf", refit=True, **options).fit(ds, ds.interactions,
                                                              on_progress=events.append)
    result = refitted.train_result
    assert result.refit_epochs == result.best_epoch == plain.train_result.best_epoch > 0
    stages = [r.get("stage") for r in result.history]
    assert stages.count("refit") == result.refit_epochs
    assert [e["stage"] for e in events].count("refit") == result.refit_epochs
    # Different weights (more data), and deterministic.
    users = np.arange(ds.num_users)
    assert not np.allclose(plain.score(users), refitted.score(users))
    again = create_model("mf", refit=True, **options).fit(ds, ds.interactions)
    np.testing.assert_array_equal(again.score(users), refitted.score(users))


def test_refit_is_skipped_when_the_time_limit_leaves_no_room():
    from recsys_core.models import create_model

    ds = tiny_dataset()
    model = create_model("mf", refit=True, embedding_dim=8, epochs=3, device="cpu",
                         show_progress=False, time_limit=1e-9).fit(ds, ds.interactions)
    assert model.train_result.refit_epochs == 0
