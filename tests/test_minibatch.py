"""Mini-batch training: the neighbour sampler, the full / mini-batch rule and its report, the
flagship, LightGCN and MF trained on sampled subgraphs, explanations of such a model,
determinism, in-epoch progress and the AMP guard."""

from __future__ import annotations

import pytest
import torch
from test_explain import explain_dataset, private_encoder

from recsys_core.explain import attention_explanation, explain
from recsys_core.graph import RATED_BY, RATES
from recsys_core.models.gnn_llm import GNNLLMRecommender
from recsys_core.models.lightgcn import LightGCNRecommender
from recsys_core.models.mf import MFRecommender
from recsys_core.sampling import (
    FULL_GRAPH_HARD_LIMIT,
    FULL_GRAPH_MAX_INTERACTIONS,
    NeighborSampler,
    SamplingPlan,
    choose_training_mode,
)
from recsys_core.training import (
    CSRHistory,
    TrainConfig,
    _EpochProgress,
    amp_settings,
    masked_softmax_loss,
    unique_pairs,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

TEXT_DIM = 12
FAST = dict(epochs=12, batch_size=32, device="cpu", show_progress=False, seed=0)


@pytest.fixture(scope="module")
def ds():
    return explain_dataset()


def text(ds) -> torch.Tensor:
    return torch.randn(ds.num_items, TEXT_DIM, generator=torch.Generator().manual_seed(0))


def flagship(ds, **options) -> GNNLLMRecommender:
    base = dict(embedding_dim=16, heads=2, num_negatives=16, item_text_embeddings=text(ds),
                item_item=False, graph_filter=False, **FAST)
    return GNNLLMRecommender(**{**base, **options})


def fitted_module(model, ds):
    """A fitted model's module, propagating over every training pair, in eval mode."""
    module = model.module
    module.set_interactions(*unique_pairs(ds.interactions))
    return module.eval()


# ---------------------------------------------------------------------------------- loss
def whole_matrix_softmax_loss(user_emb, item_emb, users, items, candidates, seen, temperature):
    """The sampled softmax written out over the whole ``[users, candidates]`` matrix, the
    ``seen`` (user, item) pairs masked, with autograd: the block-wise loss's reference."""
    batch_users, row_of = torch.unique(users, return_inverse=True)
    mask = torch.tensor([[(int(u), int(c)) in seen for c in candidates] for u in batch_users])
    logits = user_emb[batch_users] @ item_emb[candidates].T / temperature
    lse = torch.logsumexp(logits.masked_fill(mask, float("-inf")), dim=1)
    pos = (user_emb[users] * item_emb[items]).sum(-1) / temperature
    return (torch.logaddexp(lse[row_of], pos) - pos).mean()


@pytest.mark.parametrize("block", [1, 3, 256, 1000])
def test_blockwise_softmax_loss_matches_the_whole_matrix(block):
    """The block-by-block log-sum-exp and its same-pass gradients: the loss and both
    gradients of the whole-matrix form with autograd, a user who has seen every candidate (a
    fully masked row) included."""
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 7, 9
    users = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 6] + [5] * 4)
    items = torch.tensor([1, 2, 0, 3, 4, 5, 6, 7, 8, 0, 1] + [2, 3, 4, 5])
    batch = torch.tensor([0, 2, 3, 5, 6, 7, 8, 9, 11])
    candidates = torch.tensor([2, 3, 4, 5, 7])  # user 5 has seen four of them
    all_users = torch.cat([users, torch.full((5,), 1)])  # user 1: every candidate
    all_items = torch.cat([items, candidates])
    for hist_users, hist_items in ((users, items), (all_users, all_items)):
        hist = CSRHistory(hist_users, hist_items, num_users)
        seen = set(zip(hist_users.tolist(), hist_items.tolist(), strict=True))
        tables = [torch.randn(n, 4, generator=gen) for n in (num_users, num_items)]
        wu, wi = (t.clone().requires_grad_() for t in tables)
        whole = whole_matrix_softmax_loss(wu, wi, users[batch], items[batch], candidates,
                                          seen, 0.5)
        whole.backward()
        bu, bi = (t.clone().requires_grad_() for t in tables)
        blocked = masked_softmax_loss(bu, bi, users[batch], items[batch], candidates, hist,
                                      0.5, block_rows=block)
        blocked.backward()
        assert torch.isfinite(blocked)
        assert torch.allclose(whole, blocked, atol=1e-6)
        assert torch.allclose(wu.grad, bu.grad, atol=1e-6)
        assert torch.allclose(wi.grad, bi.grad, atol=1e-6)


# ---------------------------------------------------------------------------------- sampler
def star_plan(num_users: int = 6, num_items: int = 4) -> SamplingPlan:
    """Every user rates every item (degree num_users per item, num_items per user)."""
    users = torch.arange(num_users).repeat_interleave(num_items)
    items = torch.arange(num_items).repeat(num_users)
    rates = torch.stack([users, items])
    return SamplingPlan({RATES: rates, RATED_BY: rates.flip(0)},
                        {"user": num_users, "item": num_items},
                        [[RATES, RATED_BY]] * 2, (RATES, RATED_BY))


def test_sampler_caps_fanout_keeps_seeds_first_and_hides_targets():
    plan = star_plan()
    sampler = NeighborSampler(plan, num_neighbors=2, generator=torch.Generator().manual_seed(1))
    seeds = {"user": torch.tensor([1, 4]), "item": torch.tensor([2])}
    hidden = torch.tensor([1 * 4 + 2])  # the pair (user 1, item 2)
    batch = sampler.subgraph(seeds, hidden=hidden)
    assert batch["user"].n_id[:2].tolist() == [1, 4] and batch["user"].batch_size == 2
    assert batch["item"].n_id[:1].tolist() == [2] and batch["item"].batch_size == 1
    for et in (RATES, RATED_BY):
        dst = batch[et].edge_index[1]
        assert torch.bincount(dst).max() <= 2  # at most k neighbours per node and relation
        assert 1 * 4 + 2 not in batch[et].e_id.tolist()  # the hidden target carries nothing
        src_type, _, dst_type = et
        ids = plan.edge_index_dict[et][:, batch[et].e_id]  # local edges map to real edges
        assert torch.equal(batch[src_type].n_id[batch[et].edge_index[0]], ids[0])
        assert torch.equal(batch[dst_type].n_id[batch[et].edge_index[1]], ids[1])
    again = NeighborSampler(plan, 2, torch.Generator().manual_seed(1)).subgraph(seeds, hidden)
    assert torch.equal(again[RATES].e_id, batch[RATES].e_id)  # same generator, same sample
    # The buffers are clean afterwards: the same call without hiding samples the target too.
    full = NeighborSampler(plan, 10).subgraph(seeds)
    assert 1 * 4 + 2 in full[RATES].e_id.tolist()


@pytest.mark.parametrize("layers", [1, 2])
def test_flagship_on_a_complete_sample_matches_the_full_graph(ds, layers):
    model = flagship(ds, epochs=1, num_layers=layers).fit(ds, ds.interactions)
    module = fitted_module(model, ds)
    sampler = NeighborSampler(module.sampling_plan(), num_neighbors=1000)
    sampler.training = False
    seeds = {"user": torch.tensor([0, 5, 19]), "item": torch.tensor([1, 7, 25])}
    with torch.no_grad():
        user_rows, item_rows = module(sampled=sampler.subgraph(seeds))
        user_emb, item_emb = module()
    torch.testing.assert_close(user_rows, user_emb[seeds["user"]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(item_rows, item_emb[seeds["item"]], atol=1e-5, rtol=1e-4)


def test_lightgcn_on_a_complete_sample_matches_the_full_graph(ds):
    model = LightGCNRecommender(embedding_dim=8, num_layers=2, **{**FAST, "epochs": 1})
    model.fit(ds, ds.interactions)
    module = fitted_module(model, ds)
    sampler = NeighborSampler(module.sampling_plan(), num_neighbors=1000)
    seeds = {"user": torch.tensor([2, 3]), "item": torch.tensor([0, 10, 24])}
    with torch.no_grad():
        user_rows, item_rows = module(sampled=sampler.subgraph(seeds))
        user_emb, item_emb = module()
    torch.testing.assert_close(user_rows, user_emb[seeds["user"]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(item_rows, item_emb[seeds["item"]], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------- the rule
def test_automatic_mode_follows_graph_size_and_options_override_it():
    small = choose_training_mode("auto", 100_000)
    assert small.mode == "full" and "100,000" in small.reason
    large = choose_training_mode("auto", FULL_GRAPH_MAX_INTERACTIONS + 1, num_neighbors=7)
    assert large.mode == "minibatch" and large.num_neighbors == 7
    assert choose_training_mode("auto", 10**8, has_graph=False).mode == "full"  # MF
    assert choose_training_mode("minibatch", 10).mode == "minibatch"
    assert choose_training_mode("full", 10**6).mode == "full"
    with pytest.raises(ValueError, match="training_mode=minibatch"):
        choose_training_mode("full", FULL_GRAPH_HARD_LIMIT + 1)
    with pytest.raises(ValueError, match="training_mode must be one of"):
        TrainConfig(training_mode="sometimes")


def test_training_reports_the_chosen_mode(ds):
    auto = MFRecommender(embedding_dim=8, **{**FAST, "epochs": 1}).fit(ds, ds.interactions)
    assert auto.train_result.training_mode == "full"
    assert "no message passing" in auto.train_result.mode_reason
    forced = LightGCNRecommender(embedding_dim=8, training_mode="minibatch", num_neighbors=3,
                                 **{**FAST, "epochs": 1}).fit(ds, ds.interactions)
    assert forced.train_result.training_mode == "minibatch"
    assert forced.train_result.num_neighbors == 3
    assert forced.config()["training_mode"] == "minibatch"  # kept in the run's config


# ---------------------------------------------------------------------------------- training
def test_flagship_minibatch_training_reaches_the_full_graph_figure(ds):
    full = flagship(ds, training_mode="full").fit(ds, ds.interactions)
    mini = flagship(ds, training_mode="minibatch", num_neighbors=4).fit(ds, ds.interactions)
    assert mini.train_result.training_mode == "minibatch"
    first = mini.train_result.history[0]["valid_ndcg"]
    assert mini.train_result.best_valid_ndcg > first  # it learns
    # Tiny data, few epochs: within 0.1 NDCG of the full-graph run (same split and seed).
    assert mini.train_result.best_valid_ndcg >= full.train_result.best_valid_ndcg - 0.1
    recs = mini.recommend(["u00"], k=5)
    assert len(recs) == 5


def test_lightgcn_and_mf_minibatch_training(ds):
    full = LightGCNRecommender(embedding_dim=16, training_mode="full", **FAST)
    mini = LightGCNRecommender(embedding_dim=16, training_mode="minibatch", num_neighbors=4,
                               **FAST)
    full.fit(ds, ds.interactions)
    mini.fit(ds, ds.interactions)
    assert mini.train_result.best_valid_ndcg >= full.train_result.best_valid_ndcg - 0.1
    # MF has no graph: a mini-batch is its rows, so both modes train identically.
    mf = [MFRecommender(embedding_dim=8, training_mode=m, **FAST).fit(ds, ds.interactions)
          for m in ("full", "minibatch")]
    torch.testing.assert_close(mf[0].embeddings()[0], mf[1].embeddings()[0])


def test_minibatch_training_is_deterministic_under_a_seed(ds):
    runs = [flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3,
                     edge_dropout=0.3).fit(ds, ds.interactions) for _ in range(2)]
    for a, b in zip(runs[0].module.state_dict().values(), runs[1].module.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    other = flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3, seed=1)
    other.fit(ds, ds.interactions)
    assert not torch.equal(other.embeddings()[1], runs[0].embeddings()[1])


def test_explanations_of_a_minibatch_trained_flagship(ds):
    model = flagship(ds, epochs=3, training_mode="minibatch", num_neighbors=3,
                     item_text_embeddings=private_encoder().encode(ds.item_texts()))
    model.fit(ds, ds.interactions)
    item = str(model.recommend(["u00"], k=1)["item_id"].iloc[0])
    result = attention_explanation(model, ds, "u00", item)
    score = float(model.score(ds.user_idx("u00"), ds.item_idx(item))[0, 0])
    assert result.score == pytest.approx(score, abs=1e-5)  # exact on the full graph
    assert result.base_value + result.contributions["weight"].sum() == pytest.approx(score,
                                                                                   abs=1e-4)
    shap = explain(model, ds, "u00", item, method="shap")
    assert shap.base_value + shap.contributions["weight"].sum() == pytest.approx(score,
                                                                               abs=1e-4)
    # Attention on a sampled subgraph: each target's weights sum to 1 per head.
    module = fitted_module(model, ds)
    batch = NeighborSampler(module.sampling_plan(), 3).subgraph(
        {"user": torch.tensor([0, 1]), "item": torch.tensor([3])})
    nodes = {nt: batch[nt].n_id for nt in batch.node_types}
    edges = {et: batch[et].edge_index for et in batch.edge_types}
    with torch.no_grad():
        _, _, attention = module.propagate(edges, return_attention=True, nodes=nodes)
    ei, alpha = attention[(0, RATES)]
    sums = torch.zeros(nodes["item"].numel(), alpha.size(1)).index_add_(0, ei[1], alpha)
    has_edges = torch.bincount(ei[1], minlength=nodes["item"].numel()) > 0
    torch.testing.assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))


# ---------------------------------------------------------------------------------- trimmed pass
@pytest.mark.parametrize("conv,layers", [("gat", 1), ("gat", 2), ("gatv2", 2), ("sage", 1)])
def test_seed_rows_of_a_trimmed_pass_match_the_whole_subgraph_pass(ds, conv, layers):
    """``propagate(num_seeds=...)`` runs each stage only for the rows read later: on an
    incomplete sample (3 neighbours) the seeds' rows, the loss and every parameter's gradient
    are those of the pass over every node of the subgraph."""
    model = flagship(ds, epochs=1, num_layers=layers, conv=conv, relation_selection=False)
    model.fit(ds, ds.interactions)
    module = fitted_module(model, ds)
    batch = NeighborSampler(module.sampling_plan(), 3,
                            torch.Generator().manual_seed(2)).subgraph(
        {"user": torch.tensor([0, 5, 19, 3]), "item": torch.tensor([1, 7, 25, 2, 11])})
    nodes = {nt: batch[nt].n_id for nt in batch.node_types}
    edges = {et: batch[et].edge_index for et in batch.edge_types}
    seeds = {"user": 4, "item": 5}
    assert nodes["item"].numel() > seeds["item"]  # there are outer nodes to leave out
    results = []
    for trimmed in (False, True):
        module.zero_grad(set_to_none=True)
        user_emb, item_emb, _ = module.propagate(edges, nodes=nodes,
                                                 num_seeds=seeds if trimmed else None)
        user_emb, item_emb = user_emb[:4], item_emb[:5]
        loss = (user_emb @ item_emb.T).logsumexp(1).sum()
        loss.backward()
        grads = {name: p.grad.clone() for name, p in module.named_parameters()
                 if p.grad is not None}
        results.append((user_emb.detach(), item_emb.detach(), loss.detach(), grads))
    (u0, i0, l0, g0), (u1, i1, l1, g1) = results
    torch.testing.assert_close(u1, u0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(i1, i0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=1e-4)
    assert g1.keys() <= g0.keys()  # skipped stages (attributes from items) get no gradient
    for name, grad in g0.items():
        torch.testing.assert_close(g1.get(name, torch.zeros_like(grad)), grad,
                                   atol=1e-5, rtol=1e-4, msg=name)


def test_stage_rows_skip_stages_nobody_reads(ds):
    """One layer: the attribute nodes' own update (attributes from items) is read by no
    later stage and not by the readout, and item stages run for the seed items only."""
    model = flagship(ds, epochs=1, relation_selection=False).fit(ds, ds.interactions)
    module = fitted_module(model, ds)
    batch = NeighborSampler(module.sampling_plan(), 3).subgraph(
        {"user": torch.tensor([0, 1]), "item": torch.tensor([3, 4, 5])})
    edges = {et: batch[et].edge_index for et in batch.edge_types}
    sizes = {nt: batch[nt].num_nodes for nt in batch.node_types}
    program = module.stage_program(list(edges))
    rows = module.stage_rows(program, edges, {"user": 2, "item": 3}, sizes)
    by_dst = {stage.dst: n for stage, (n, _, _) in zip(program.stages, rows, strict=True)}
    attribute_types = [nt for nt in sizes if nt not in ("user", "item")]
    assert attribute_types and all(by_dst[nt] == 0 for nt in attribute_types)
    assert by_dst["item"] == 3  # only the seeds' item rows
    assert by_dst["user"] >= 2  # the seed users and the users the seed items read


def test_minibatch_validation_ranks_a_fixed_sample_of_users(ds, monkeypatch):
    """Mini-batch mode ranks at most MINIBATCH_VALID_USERS validation users per pass, the
    same sample in every run with the same seed; full-graph mode ranks every one."""
    import recsys_core.training as training

    monkeypatch.setattr(training, "MINIBATCH_VALID_USERS", 5)
    runs = [flagship(ds, epochs=2, training_mode="minibatch", num_neighbors=3)
            .fit(ds, ds.interactions) for _ in range(2)]
    assert runs[0].train_result.valid_users == 5
    assert [r["valid_ndcg"] for r in runs[0].train_result.history] == \
        [r["valid_ndcg"] for r in runs[1].train_result.history]
    full = flagship(ds, epochs=1, training_mode="full").fit(ds, ds.interactions)
    assert full.train_result.valid_users > 5


# ---------------------------------------------------------------------------------- progress, AMP
def test_progress_inside_an_epoch_reports_batches_rate_and_time_left():
    events = []
    report = _EpochProgress(events.append, epoch=2, epochs=4, mode="minibatch", interval=0.0)
    for done in range(1, 5):
        report(done, 4, 0.5)
    assert [e["batch"] for e in events] == [1, 2, 3]  # the last batch: the epoch event follows
    last = events[-1]
    assert last["batches"] == 4 and last["training_mode"] == "minibatch"
    assert last["batches_per_second"] > 0 and last["epoch_seconds_left"] >= 0
    assert last["fraction"] == pytest.approx((1 + 3 / 4) / 4)
    assert "loss" not in last  # the curves plot epoch losses only


def test_amp_is_off_on_the_cpu():
    use, _ = amp_settings(TrainConfig(amp=True), torch.device("cpu"))
    assert use is False
    if torch.cuda.is_available():  # pragma: no cover - the GPU machine
        assert amp_settings(TrainConfig(amp=True), torch.device("cuda"))[0] is True
        assert amp_settings(TrainConfig(amp=False), torch.device("cuda"))[0] is False


def test_the_apps_job_line_shows_batches_and_mode():
    from recsys_core.services.jobs import TrainingJob

    job = TrainingJob(lambda ctx: None, "gnn-llm")
    job.history.append({"stage": "train", "epoch": 2, "epochs": 4, "batch": 30, "batches": 120,
                        "epoch_seconds_left": 41.6, "training_mode": "minibatch",
                        "fraction": 0.31})
    line = job.describe()
    assert "epoch 2/4" in line and "batch 30/120" in line and "42 s left" in line
    assert "mini-batch" in line and job.fraction == pytest.approx(0.31)
