"""Isolation between sessions: every job and explanation draws from its own generators.

Two sessions (threads) train small models and explain a pair (SHAP and GNNExplainer) at the
same time, while a third thread draws from and reseeds torch's and NumPy's global generators;
each session's results must match its single-session results bit for bit on CPU. Nothing may
draw from, seed or rewind the global generators, or change the thread count from a job.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_core.dataset import Dataset
from recsys_core.explain import gnn_explainer_explanation, shap_explanation
from recsys_core.explain.shap_explain import import_shap, permutation_shap_values
from recsys_core.models.gnn_llm import GNNLLMRecommender
from recsys_core.models.lightgcn import LightGCNRecommender
from recsys_core.models.mf import MFRecommender
from recsys_core.rng import (
    attach_generator,
    draws_from,
    draws_without_generator,
    masked_dropout,
    torch_generator,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

FAST = dict(epochs=3, batch_size=32, device="cpu", show_progress=False)
PAIR = ("u0", "i5")


def session_dataset() -> Dataset:
    """20 users, 24 items with two genres each, a few user-user edges."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 4.0, 1e9 + 10 * u + n)
            for u in range(20) for n, i in enumerate(rng.choice(24, size=6, replace=False))]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"Item {i}" for i in range(24)],
                          "description": "",
                          "genre": [[["drama", "comedy", "horror"][i % 3], f"g{i % 4}"]
                                    for i in range(24)]})
    edges = pd.DataFrame({"src": ["u0", "u1", "u2"], "dst": ["u3", "u4", "u5"]})
    return Dataset(pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
                   items, attribute_columns=["genre"], user_edges=edges)


DATASET = session_dataset()
TEXT = torch.nn.functional.normalize(
    torch.randn(24, 32, generator=torch.Generator().manual_seed(0)), dim=1)


def train_and_explain(seed: int) -> dict[str, np.ndarray]:
    """One session's work: MF, LightGCN and the flagship (every kind of dropout on) trained
    with ``seed``, then SHAP and GNNExplainer on the flagship."""
    ds = DATASET
    users = np.arange(ds.num_users)
    out = {
        "mf": MFRecommender(embedding_dim=8, seed=seed, **FAST).fit(ds, ds.interactions)
        .score(users),
        "lightgcn": LightGCNRecommender(embedding_dim=8, num_layers=2, seed=seed, **FAST)
        .fit(ds, ds.interactions).score(users),
    }
    flagship = GNNLLMRecommender(embedding_dim=8, heads=2, num_negatives=4, seed=seed,
                                 attention_dropout=0.2, edge_dropout=0.3, id_dropout=0.2,
                                 item_text_embeddings=TEXT, **FAST).fit(ds, ds.interactions)
    out["flagship"] = flagship.score(users)
    shap = shap_explanation(flagship, ds, *PAIR, max_text=0, seed=seed)
    out["shap"] = np.asarray(shap.details["shap"].values)
    gnn = gnn_explainer_explanation(flagship, ds, *PAIR, epochs=10, seed=seed)
    out["gnnexplainer"] = np.concatenate(
        [mask.numpy() for _, mask in gnn.details["edge_masks"].values()])
    return out


@pytest.fixture(scope="module")
def single_session() -> dict[int, dict[str, np.ndarray]]:
    """Each seed's results with nothing else running."""
    import_shap()
    return {seed: train_and_explain(seed) for seed in (0, 1)}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_session_neither_draws_from_nor_reseeds_the_global_generators(single_session):
    torch.manual_seed(1234)
    np.random.seed(1234)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    again = train_and_explain(0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    assert_same(again, single_session[0])
    assert not np.array_equal(single_session[0]["flagship"], single_session[1]["flagship"])


def test_two_sessions_at_once_match_their_single_session_results(single_session, monkeypatch):
    thread_changes = []
    real_set_num_threads = torch.set_num_threads

    def recording_set_num_threads(n: int) -> None:
        thread_changes.append(threading.current_thread().name)
        real_set_num_threads(n)

    monkeypatch.setattr(torch, "set_num_threads", recording_set_num_threads)
    results: dict[int, dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(3)
    done = threading.Event()

    def session(seed: int) -> None:
        try:
            start.wait()
            results[seed] = train_and_explain(seed)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def other_code() -> None:
        # Someone else in the process uses (and reseeds) the global generators meanwhile.
        start.wait()
        k = 0
        while not done.is_set():
            torch.manual_seed(k)
            np.random.seed(k)
            torch.rand(64)
            np.random.random(64)
            k += 1

    threads = [threading.Thread(target=session, args=(seed,), name=f"session-{seed}")
               for seed in (0, 1)]
    noise = threading.Thread(target=other_code, name="other-code")
    for thread in [*threads, noise]:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    done.set()
    noise.join(timeout=30)
    assert not errors, errors
    assert_same(results[0], single_session[0])
    assert_same(results[1], single_session[1])
    assert thread_changes == []


# ---------------------------------------------------------------------------------- rng helpers
def test_draws_from_routes_draws_to_the_generator_on_this_thread_only():
    layer, reference = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    with draws_from(torch_generator(5)):
        layer.reset_parameters()
        noise = torch.rand(3)
        dropped = torch.nn.functional.dropout(torch.ones(100), 0.5, training=True)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(5)  # the same draws as global seeding used to give
    reference.reset_parameters()
    assert torch.equal(layer.weight, reference.weight) and torch.equal(layer.bias, reference.bias)
    assert torch.equal(noise, torch.rand(3))
    assert set(dropped.tolist()) <= {0.0, 2.0} and 0 < int((dropped == 0).sum()) < 100

    seen = []
    with draws_from(torch_generator(5)):
        other = threading.Thread(target=lambda: seen.append(torch.initial_seed()))
        other.start()
        other.join()
    assert seen == [torch.initial_seed()]


def test_masked_dropout_draws_its_mask_from_the_generator():
    x = torch.ones(1000)
    a = masked_dropout(x, 0.3, True, torch_generator(1))
    b = masked_dropout(x, 0.3, True, torch_generator(1))
    assert torch.equal(a, b)
    assert a.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert 200 < int((a == 0).sum()) < 400
    assert masked_dropout(x, 0.3, False, torch_generator(1)) is x
    assert masked_dropout(x, 0.0, True, None) is x


def test_attach_generator_and_layers_that_need_draws_from():
    model = GNNLLMRecommender(embedding_dim=8, heads=2, item_text_embeddings=TEXT, **FAST)
    module = model.build_module(DATASET)
    generator = torch_generator(0)
    attach_generator(module, generator)
    holders = [m for m in module.modules() if hasattr(m, "generator")]
    assert holders and all(m.generator is generator for m in holders)
    attach_generator(module, None)
    assert all(m.generator is None for m in holders)
    assert not draws_without_generator(module)  # our layers take the generator
    assert draws_without_generator(torch.nn.Sequential(torch.nn.Dropout(0.1)))


def test_permutation_shap_values_match_shaps_permutation_explainer():
    shap = import_shap()
    weights = np.random.default_rng(1).normal(size=(5, 5))

    def game(masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=float)
        return np.einsum("ni,ij,nj->n", masks, weights, masks) + masks.sum(1) ** 2

    class ShapOrders:
        """The orders shap draws: successive in-place shuffles of one index array."""

        def __init__(self, num: int) -> None:
            self.inds = np.arange(num)

        def permutation(self, num: int) -> np.ndarray:
            np.random.shuffle(self.inds)
            return self.inds.copy()

    np.random.seed(3)
    values, base = permutation_shap_values(game, 5, 4, ShapOrders(5))
    explainer = shap.PermutationExplainer(game, np.zeros((1, 5)))
    np.random.seed(3)
    reference = explainer(np.ones((1, 5)), max_evals=4 * 11, silent=True)[0]
    np.testing.assert_allclose(values, reference.values)
    assert base == pytest.approx(float(reference.base_values))
    assert values.sum() == pytest.approx(game(np.ones((1, 5)))[0] - base)
