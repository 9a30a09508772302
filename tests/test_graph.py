"""Invariants of :mod:`recsys_core.graph` on tiny and random datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_core.dataset import (
    ITEM_COL,
    ITEM_IDX,
    RATING_COL,
    TIME_COL,
    USER_COL,
    USER_IDX,
    Dataset,
)
from recsys_core.graph import (
    FOLLOWED_BY,
    FOLLOWS,
    RATED_BY,
    RATES,
    SIMILAR,
    attribute_edge_types,
    attribute_node_type,
    build_hetero_graph,
    graph_summary,
    k_hop_networkx,
    text_knn_edges,
)


def random_dataset(seed: int, users: int, items: int, rows: int, with_edges: bool = True,
                   list_type=list) -> Dataset:
    rng = np.random.default_rng(seed)
    inter = pd.DataFrame({USER_COL: [f"u{k}" for k in rng.integers(0, users, rows)],
                          ITEM_COL: [f"i{k}" for k in rng.integers(0, items, rows)],
                          RATING_COL: rng.integers(1, 6, rows).astype(float),
                          TIME_COL: rng.integers(0, 10**6, rows).astype(float)})
    inter = inter.drop_duplicates([USER_COL, ITEM_COL]).reset_index(drop=True)
    tags = ["a", "b", "c", "d", "e"]
    meta = pd.DataFrame({ITEM_COL: [f"i{k}" for k in range(items)],
                         "title": [f"T{k}" for k in range(items)], "description": ""})
    meta["genre"] = [list_type(rng.choice(tags, size=rng.integers(0, 3), replace=False).tolist())
                     for _ in range(items)]
    meta["kind"] = [list_type([["x", "y"][k % 2]]) for k in range(items)]
    edges = None
    if with_edges:
        src = [f"u{k}" for k in rng.integers(0, users, 2 * users)]
        dst = [f"u{k}" for k in rng.integers(0, users, 2 * users)]
        edges = pd.DataFrame({"src": src, "dst": dst})
    return Dataset(inter, meta, attribute_columns=["genre", "kind"], user_edges=edges)


DATASETS = [(0, 5, 7, 20), (1, 30, 40, 300), (2, 100, 15, 800)]


@pytest.fixture(params=DATASETS, ids=lambda p: f"seed{p[0]}-{p[1]}u-{p[2]}i")
def dataset(request):
    return random_dataset(*request.param)


def test_node_and_edge_counts(dataset):
    data = build_hetero_graph(dataset)
    assert data["user"].num_nodes == dataset.num_users
    assert data["item"].num_nodes == dataset.num_items
    n = len(dataset.interactions)
    assert data[RATES].edge_index.shape == (2, n)
    assert data[RATES].edge_attr.shape == (n, 2)
    assert data[RATES].edge_index[0].max() < dataset.num_users
    assert data[RATES].edge_index[1].max() < dataset.num_items
    data.validate(raise_on_error=True)


def test_reverse_edges_are_exact_flips(dataset):
    data = build_hetero_graph(dataset)
    assert torch.equal(data[RATED_BY].edge_index, data[RATES].edge_index.flip(0))
    assert torch.equal(data[RATED_BY].edge_attr, data[RATES].edge_attr)
    for column in dataset.attribute_columns:
        fwd, rev = attribute_edge_types(attribute_node_type(column))
        assert torch.equal(data[rev].edge_index, data[fwd].edge_index.flip(0))
    assert torch.equal(data[FOLLOWED_BY].edge_index, data[FOLLOWS].edge_index.flip(0))


def test_id_round_trip(dataset):
    data = build_hetero_graph(dataset)
    user_ids = np.asarray(data["user"].node_ids, dtype=object)
    item_ids = np.asarray(data["item"].node_ids, dtype=object)
    src, dst = data[RATES].edge_index.numpy()
    inter = dataset.interactions
    assert (user_ids[src] == inter[USER_COL].to_numpy()).all()
    assert (item_ids[dst] == inter[ITEM_COL].to_numpy()).all()
    assert (dataset.user_idx(user_ids) == np.arange(len(user_ids))).all()
    assert (dataset.item_idx(item_ids) == np.arange(len(item_ids))).all()
    assert data[RATES].edge_attr[:, 0].tolist() == inter[RATING_COL].tolist()


def test_time_feature_in_days(dataset):
    data = build_hetero_graph(dataset)
    t = dataset.interactions[TIME_COL].to_numpy()
    expected = (t - t.min()) / 86400.0
    assert np.allclose(data[RATES].edge_attr[:, 1].numpy(), expected, atol=1e-3)


def test_attribute_nodes_and_edges(dataset):
    data = build_hetero_graph(dataset)
    for column in dataset.attribute_columns:
        nt = attribute_node_type(column)
        values = dataset.items[column]
        distinct = sorted({v for lst in values for v in lst})
        assert data[nt].num_nodes == len(distinct)
        assert sorted(data[nt].node_ids) == distinct
        fwd, _ = attribute_edge_types(nt)
        ei = data[fwd].edge_index
        assert ei.size(1) == sum(len(set(lst)) for lst in values)
        ids = np.asarray(data[nt].node_ids, dtype=object)
        got = {(int(i), ids[a]) for i, a in ei.t().tolist()}
        want = {(i, v) for i, lst in enumerate(values) for v in lst}
        assert got == want
    assert data.attr_columns == {attribute_node_type(c): c for c in dataset.attribute_columns}


def test_attribute_lists_as_numpy_arrays():
    """Parquet round trips give numpy arrays instead of lists; edges must not vanish."""
    as_lists = build_hetero_graph(random_dataset(1, 30, 40, 300))
    as_arrays = build_hetero_graph(random_dataset(1, 30, 40, 300, list_type=np.array))
    fwd, _ = attribute_edge_types("genre")
    assert as_lists[fwd].edge_index.size(1) > 0
    assert torch.equal(as_lists[fwd].edge_index, as_arrays[fwd].edge_index)


def test_user_edges(dataset):
    data = build_hetero_graph(dataset)
    ei = data[FOLLOWS].edge_index
    ids = np.asarray(data["user"].node_ids, dtype=object)
    got = {(ids[s], ids[d]) for s, d in ei.t().tolist()}
    assert got == set(zip(dataset.user_edges["src"], dataset.user_edges["dst"], strict=True))
    assert ei.size(1) == len(got)  # no duplicate edges
    no_edges = build_hetero_graph(dataset, include_user_edges=False)
    assert FOLLOWS not in no_edges.edge_types


def test_train_subset_graph_keeps_all_nodes(dataset):
    train = dataset.interactions.iloc[: len(dataset.interactions) // 2]
    data = build_hetero_graph(dataset, interactions=train)
    assert data["item"].num_nodes == dataset.num_items
    assert data[RATES].edge_index.size(1) == len(train)
    assert torch.equal(data[RATES].edge_index[0], torch.as_tensor(train[USER_IDX].to_numpy()))
    assert torch.equal(data[RATES].edge_index[1], torch.as_tensor(train[ITEM_IDX].to_numpy()))


def test_unknown_timestamps_give_zero_time():
    ds = random_dataset(0, 5, 7, 20)
    ds.interactions[TIME_COL] = np.nan
    data = build_hetero_graph(ds)
    assert (data[RATES].edge_attr[:, 1] == 0).all()


def test_text_knn_edges_symmetric_without_self_loops():
    emb = torch.randn(25, 8, generator=torch.Generator().manual_seed(0))
    ei, w = text_knn_edges(emb, k=3, chunk=7)
    pairs = set(map(tuple, ei.t().tolist()))
    assert all((b, a) in pairs for a, b in pairs)
    assert all(a != b for a, b in pairs)
    assert len(pairs) == ei.size(1) and w.shape == (ei.size(1),)
    deg = torch.bincount(ei[0], minlength=25)
    assert (deg >= 3).all()
    norm = torch.nn.functional.normalize(emb, dim=1)
    assert torch.allclose(w, (norm[ei[0]] * norm[ei[1]]).sum(1), atol=1e-5)


def test_graph_with_text_embeddings(dataset):
    emb = torch.randn(dataset.num_items, 4, generator=torch.Generator().manual_seed(1))
    data = build_hetero_graph(dataset, item_text_embeddings=emb, text_knn_k=2)
    assert data["item"].text.shape == (dataset.num_items, 4)
    assert data[SIMILAR].edge_index.size(1) >= 2 * dataset.num_items


def test_graph_summary(dataset):
    data = build_hetero_graph(dataset)
    summary = graph_summary(data)
    nodes = summary["nodes"].set_index("node_type")
    edges = summary["edges"].set_index("edge_type")
    assert nodes.loc["user", "nodes"] == dataset.num_users
    assert edges.loc["user -rates-> item", "edges"] == len(dataset.interactions)
    degree = sum(np.bincount(data[et].edge_index[0].numpy(), minlength=dataset.num_items)
                 for et in data.edge_types if et[0] == "item")
    assert nodes.loc["item", "isolated"] == int((degree == 0).sum())
    assert nodes.loc["item", "max_out_degree"] == int(degree.max())
    assert set(summary["edges"]["relation"]) >= {"rates", "rated_by", "follows"}


@pytest.mark.parametrize("max_nodes", [1, 5, 12, 1000])
@pytest.mark.parametrize("hops", [1, 2, 3])
def test_k_hop_networkx_caps_and_centre(max_nodes, hops):
    ds = random_dataset(2, 100, 15, 800)
    data = build_hetero_graph(ds)
    for node_type, index in [("user", 0), ("item", 3), ("genre", 0)]:
        g = k_hop_networkx(data, node_type, index, num_hops=hops, max_nodes=max_nodes, seed=1)
        assert f"{node_type}:{index}" in g
        assert g.number_of_nodes() <= max(max_nodes, 1)
        centre = g.nodes[f"{node_type}:{index}"]
        assert centre["label"] == str(data[node_type].node_ids[index])
        for u, v in g.edges:
            assert g.nodes[u]["node_type"] and g.nodes[v]["node_type"]
        again = k_hop_networkx(data, node_type, index, num_hops=hops, max_nodes=max_nodes, seed=1)
        assert sorted(again.nodes) == sorted(g.nodes)


def test_k_hop_networkx_one_hop_is_exact_neighbourhood():
    ds = random_dataset(1, 30, 40, 300)
    data = build_hetero_graph(ds)
    g = k_hop_networkx(data, "user", 0, num_hops=1, max_nodes=10_000)
    rated = set(ds.interactions[ITEM_IDX][ds.interactions[USER_IDX] == 0])
    items = {g.nodes[n]["index"] for n in g if g.nodes[n]["node_type"] == "item"}
    assert items == rated
    for n in g:
        if g.nodes[n]["node_type"] == "item":
            assert g.has_edge("user:0", n) or g.has_edge(n, "user:0")
            rel = (g.edges["user:0", n] if g.has_edge("user:0", n) else g.edges[n, "user:0"])
            row = ds.interactions[(ds.interactions[USER_IDX] == 0)
                                  & (ds.interactions[ITEM_IDX] == g.nodes[n]["index"])]
            assert rel["weight"] == row[RATING_COL].iloc[0]


def test_k_hop_networkx_keeps_mutual_follows():
    inter = pd.DataFrame({USER_COL: ["a", "b"], ITEM_COL: ["x", "x"]})
    items = pd.DataFrame({ITEM_COL: ["x"], "title": ["X"], "description": [""]})
    edges = pd.DataFrame({"src": ["a", "b"], "dst": ["b", "a"]})
    data = build_hetero_graph(Dataset(inter, items, user_edges=edges))
    g = k_hop_networkx(data, "user", 0, num_hops=1)
    assert g.has_edge("user:0", "user:1") and g.has_edge("user:1", "user:0")


def test_k_hop_networkx_shares_the_cap_between_node_types():
    # One item rated by 50 users and tagged with one genre: a cap of 11 must keep the genre.
    inter = pd.DataFrame({USER_COL: [f"u{k}" for k in range(50)], ITEM_COL: "x"})
    items = pd.DataFrame({ITEM_COL: ["x"], "title": ["X"], "description": [""],
                          "genre": [["drama"]]})
    data = build_hetero_graph(Dataset(inter, items, attribute_columns=["genre"]))
    g = k_hop_networkx(data, "item", 0, num_hops=1, max_nodes=11)
    types = [g.nodes[n]["node_type"] for n in g]
    assert g.number_of_nodes() == 11
    assert types.count("genre") == 1 and types.count("user") == 9


def test_tiny_dataset_graph(tiny_dataset):
    data = build_hetero_graph(tiny_dataset)
    assert data["user"].num_nodes == 8 and data["item"].num_nodes == 12
    assert data["genres"].num_nodes == 6 and data["category"].num_nodes == 3
    assert data[FOLLOWS].edge_index.size(1) == 6
    isolated = graph_summary(data)["nodes"].set_index("node_type").loc["item", "isolated"]
    assert isolated == 0  # cold items still link to their attributes
