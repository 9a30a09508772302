"""Historical embeddings in mini-batch training (GNNAutoScale-style, the flagship's
``historical_embeddings``): the sample stops at the batch's users, the other users' states
come from a table refreshed in earlier steps, exact when that table is fresh, constant (no
gradient), and training with them learns, is deterministic and leaves nothing behind."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from test_minibatch import flagship

from recsys_core.graph import FOLLOWS, RATED_BY
from recsys_core.run import load_run, save_run
from recsys_core.sampling import NeighborSampler, SamplingPlan
from recsys_core.training import unique_pairs

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py


@pytest.fixture(scope="module")
def ds(explain_ds):
    return explain_ds


@pytest.fixture(scope="module")
def trained(ds):
    """A flagship trained in mini-batches with historical embeddings (history cleared)."""
    return flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3,
                    historical_embeddings=True, relation_selection=False).fit(ds, ds.interactions)


def own_module(model):
    """A copy of the fitted model's module (over every training pair, eval mode), so a test
    may run passes on it without touching the shared model."""
    module = deepcopy(model.module)
    module.set_interactions(*unique_pairs(model.dataset.interactions))
    return module.eval()


def exact_training_pass(module) -> None:
    """Training mode without any random part, so a training pass is comparable with eval."""
    module.train()
    module.edge_dropout = module.id_dropout = module.relation_dropout = 0.0


def test_the_sample_stops_at_the_batch_users(trained):
    module = own_module(trained)
    plan = module.sampling_plan()
    assert plan.seeds_only == ("user",)
    seeds = {"user": torch.tensor([0, 4]), "item": torch.tensor([1, 9, 17])}
    stopped = NeighborSampler(plan, 1000).subgraph(seeds)
    plan_all = SamplingPlan(plan.edge_index_dict, plan.num_nodes, plan.hops,
                            plan.interaction_types, plan.edge_dropout)
    everything = NeighborSampler(plan_all, 1000).subgraph(seeds)
    for et in stopped.edge_types:
        if et[2] == "user":  # only the seed users read their neighbours
            assert bool((stopped[et].edge_index[1] < 2).all()), et
    # The raters of the seed items are still there (the items read them) ...
    assert stopped["user"].num_nodes > 2
    # ... but not their own items: the exact sample holds more edges into users.
    assert everything[RATED_BY].edge_index.size(1) > stopped[RATED_BY].edge_index.size(1)


def test_a_fresh_history_gives_the_exact_rows_and_no_gradient_to_other_users(trained):
    module = own_module(trained)
    with torch.no_grad():
        user_exact, item_exact = module()
    exact_training_pass(module)
    sampler = NeighborSampler(module.sampling_plan(), num_neighbors=1000)
    sampler.training = False
    seeds = {"user": torch.tensor([0, 5, 19]), "item": torch.tensor([1, 7, 25])}

    def seeded_pass():
        batch = sampler.subgraph(seeds)
        user_rows, item_rows = module(sampled=batch)
        return batch, user_rows, item_rows

    module._user_history = {}
    _, _, item_cold = seeded_pass()  # nothing recorded yet: the raters' layer-0 features
    assert not torch.allclose(item_cold, item_exact[seeds["item"]], atol=1e-4)

    module._user_history = {}
    with torch.no_grad():  # every user in one batch: the table holds exact states
        module(sampled=sampler.subgraph({"user": torch.arange(module.num_users),
                                         "item": seeds["item"]}))
    module.zero_grad(set_to_none=True)
    batch, user_rows, item_rows = seeded_pass()
    torch.testing.assert_close(user_rows, user_exact[seeds["user"]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(item_rows, item_exact[seeds["item"]], atol=1e-5, rtol=1e-4)
    (user_rows @ item_rows.T).logsumexp(1).sum().backward()
    grad = module.user_id.weight.grad
    others = batch["user"].n_id[batch["user"].batch_size:]
    assert others.numel() > 0  # the seed items' raters and the seed users' friends
    assert torch.count_nonzero(grad[others]) == 0  # historical rows are constants
    assert torch.count_nonzero(grad[seeds["user"]]) > 0
    assert FOLLOWS in module.edge_types  # the friends' stage ran through the table too


def test_training_with_historical_embeddings_learns_and_is_deterministic(ds, trained,
                                                                         tmp_path):
    result = trained.train_result
    assert result.training_mode == "minibatch"
    assert result.best_valid_ndcg > result.history[0]["valid_ndcg"] - 1e-9
    assert trained.module._user_history == {}  # nothing kept once trained
    again = flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3,
                     historical_embeddings=True, relation_selection=False)
    again.fit(ds, ds.interactions)
    for a, b in zip(trained.module.state_dict().values(), again.module.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    exact = flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3,
                     relation_selection=False).fit(ds, ds.interactions)
    assert not torch.equal(exact.embeddings()[1], trained.embeddings()[1])
    assert exact.train_result.best_valid_ndcg - result.best_valid_ndcg < 0.1

    loaded, _, _ = load_run(save_run(tmp_path / "run", trained, ds, ds.interactions))
    assert loaded.historical_embeddings is True
    assert len(loaded.recommend(["u00"], k=5)) == 5


def test_full_graph_training_ignores_the_option(ds):
    runs = [flagship(ds, epochs=1, training_mode="full", historical_embeddings=h,
                     relation_selection=False).fit(ds, ds.interactions) for h in (False, True)]
    torch.testing.assert_close(runs[0].embeddings()[1], runs[1].embeddings()[1])
