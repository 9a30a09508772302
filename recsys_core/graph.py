"""Heterogeneous graph construction (PyG :class:`~torch_geometric.data.HeteroData`).

Node types: ``user``, ``item``, one per categorical item attribute (``genre``, ``category``,
``tag`` ...) and one per user attribute (``user_age``, ``user_gender`` ...). Edge types (every
relation has its reverse so messages flow both ways):

* ``(user, rates, item)`` / ``(item, rated_by, user)`` with ``edge_attr`` = ``[rating, time]``
  (time in days since the earliest interaction, 0 when unknown);
* ``(item, has_<attr>, <attr>)`` / ``(<attr>, <attr>_of, item)``;
* ``(user, has_user_<attr>, user_<attr>)`` / ``(user_<attr>, user_<attr>_of, user)`` when the
  dataset has user attributes (:attr:`~recsys_core.dataset.Dataset.users`);
* ``(user, follows, user)`` / ``(user, followed_by, user)`` when user-user edges are given;
* ``(item, similar_to, item)`` text-similarity kNN edges (symmetric) when requested.
"""

from __future__ import annotations

import re

import networkx as nx
import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from .dataset import ITEM_IDX, RATING_COL, TIME_COL, USER_COL, USER_IDX, Dataset

RATES = ("user", "rates", "item")
RATED_BY = ("item", "rated_by", "user")
FOLLOWS = ("user", "follows", "user")
FOLLOWED_BY = ("user", "followed_by", "user")
SIMILAR = ("item", "similar_to", "item")


def attribute_node_type(column: str) -> str:
    """Node-type name for an attribute column (lower-case identifier, never user/item)."""
    name = re.sub(r"\W+", "_", column.strip().lower()).strip("_") or "attr"
    if name[0].isdigit() or name in {"user", "item"}:
        name = f"attr_{name}"
    return name


def attribute_edge_types(node_type: str) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    return ("item", f"has_{node_type}", node_type), (node_type, f"{node_type}_of", "item")


def user_attribute_node_type(column: str) -> str:
    """Node-type name for a user attribute column: ``user_`` and a lower-case identifier
    (``Age`` -> ``user_age``), so it never meets an item attribute's type by accident."""
    return "user_" + (re.sub(r"\W+", "_", column.strip().lower()).strip("_") or "attr")


def user_attribute_edge_types(node_type: str
                              ) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """``(user, has_<type>, <type>)`` and its reverse ``(<type>, <type>_of, user)``."""
    return ("user", f"has_{node_type}", node_type), (node_type, f"{node_type}_of", "user")


def build_hetero_graph(
    dataset: Dataset,
    interactions: pd.DataFrame | None = None,
    item_text_embeddings: torch.Tensor | np.ndarray | None = None,
    text_knn_k: int = 0,
    include_user_edges: bool = True,
    include_user_attributes: bool = True,
) -> HeteroData:
    """Build the heterogeneous graph of a dataset.

    Args:
        dataset (Dataset): Source of nodes, metadata and id maps.
        interactions (pandas.DataFrame, optional): The interactions that become user-item
            edges, e.g. only the training split (default: all of ``dataset.interactions``).
        item_text_embeddings (Tensor, optional): ``[num_items, d]`` text embeddings; stored as
            ``data['item'].text`` and used for kNN edges. (default: :obj:`None`)
        text_knn_k (int): Neighbours per item for ``similar_to`` edges; 0 disables them.
            (default: :obj:`0`)
        include_user_edges (bool): Add user-user edges when the dataset has them.
            (default: :obj:`True`)
        include_user_attributes (bool): Add user attribute nodes when the dataset has user
            attributes. (default: :obj:`True`)

    Returns:
        HeteroData with ``node_ids`` (raw ids) per node type, ``attr_columns`` mapping item
        attribute node types to source columns and ``user_attr_columns`` mapping user
        attribute node types to columns of ``dataset.users``.
    """
    inter = dataset.interactions if interactions is None else interactions
    data = HeteroData()
    data["user"].num_nodes = dataset.num_users
    data["item"].num_nodes = dataset.num_items
    data["user"].node_ids = list(dataset.user_ids)
    data["item"].node_ids = list(dataset.item_ids)

    src = torch.from_numpy(inter[USER_IDX].to_numpy(np.int64, copy=True))
    dst = torch.from_numpy(inter[ITEM_IDX].to_numpy(np.int64, copy=True))
    rating = torch.from_numpy(inter[RATING_COL].to_numpy(np.float32, copy=True))
    time = inter[TIME_COL].to_numpy(np.float64)
    if len(time) and np.isfinite(time).any():
        time = np.where(np.isfinite(time), (time - np.nanmin(time)) / 86400.0, 0.0)
    else:
        time = np.zeros(len(inter))
    edge_attr = torch.stack([rating, torch.from_numpy(time.astype(np.float32))], dim=1)
    data[RATES].edge_index = torch.stack([src, dst])
    data[RATES].edge_attr = edge_attr
    data[RATED_BY].edge_index = torch.stack([dst, src])
    data[RATED_BY].edge_attr = edge_attr.clone()

    attr_columns = {}
    for column in dataset.attribute_columns:
        node_type = attribute_node_type(column)
        # Lists may arrive as numpy arrays (e.g. after a Parquet round trip); both count.
        lists = [v if isinstance(v, (list, tuple, np.ndarray)) else ()
                 for v in dataset.items[column].tolist()]
        lengths = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
        flat = [str(x) for v in lists for x in v]
        codes, values = pd.factorize(pd.Series(flat, dtype=object))
        item_idx = np.repeat(np.arange(len(lists)), lengths)
        pairs = np.unique(np.stack([item_idx, codes]), axis=1) if len(flat) else np.zeros((2, 0), dtype=np.int64)
        data[node_type].num_nodes = len(values)
        data[node_type].node_ids = [str(v) for v in values]
        fwd, rev = attribute_edge_types(node_type)
        ei = torch.from_numpy(pairs.astype(np.int64))
        data[fwd].edge_index = ei
        data[rev].edge_index = ei.flip(0)
        attr_columns[node_type] = column
    data.attr_columns = attr_columns
    data.user_attr_columns = (_add_user_attributes(data, dataset, set(attr_columns))
                              if include_user_attributes else {})

    if include_user_edges and dataset.user_edges is not None and len(dataset.user_edges):
        s = dataset.user_idx(dataset.user_edges["src"].astype(str))
        d = dataset.user_idx(dataset.user_edges["dst"].astype(str))
        ei = torch.from_numpy(np.unique(np.stack([s, d]), axis=1))
        data[FOLLOWS].edge_index = ei
        data[FOLLOWED_BY].edge_index = ei.flip(0)

    if item_text_embeddings is not None:
        emb = torch.as_tensor(item_text_embeddings, dtype=torch.float32)
        data["item"].text = emb
        if text_knn_k > 0:
            data[SIMILAR].edge_index, data[SIMILAR].edge_weight = text_knn_edges(emb, text_knn_k)
    return data


def _add_user_attributes(data: HeteroData, dataset: Dataset, taken: set[str]) -> dict[str, str]:
    """One node type per user attribute column, edges user -> value and back; missing values
    get no edge. Returns node type -> column."""
    columns: dict[str, str] = {}
    if not dataset.user_attribute_columns:
        return columns
    users = dataset.users
    rows = dataset.user_idx(users[USER_COL].astype(str))
    for column in dataset.user_attribute_columns:
        node_type, k = user_attribute_node_type(column), 2
        while node_type in taken or node_type in columns:
            node_type, k = f"{user_attribute_node_type(column)}_{k}", k + 1
        codes, values = pd.factorize(users[column].astype(object), use_na_sentinel=True)
        present = codes >= 0
        pairs = np.stack([rows[present], codes[present]]).astype(np.int64)
        data[node_type].num_nodes = len(values)
        data[node_type].node_ids = [str(v) for v in values]
        fwd, rev = user_attribute_edge_types(node_type)
        ei = torch.from_numpy(np.unique(pairs, axis=1) if pairs.size else pairs.reshape(2, 0))
        data[fwd].edge_index = ei
        data[rev].edge_index = ei.flip(0)
        columns[node_type] = column
    return columns


def text_knn_edges(embeddings: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric k-nearest-neighbour edges by cosine similarity (self excluded).

    Args:
        embeddings (Tensor): ``[n, d]`` item embeddings.
        k (int): Neighbours per item.
        chunk (int): Rows per similarity block, bounding memory at ``chunk * n``.
            (default: :obj:`4096`)
    """
    emb = torch.nn.functional.normalize(embeddings.float(), dim=1)
    n = emb.size(0)
    k = min(k, n - 1)
    if k <= 0:
        return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0)
    rows, cols, weights = [], [], []
    for start in range(0, n, chunk):
        sim = emb[start:start + chunk] @ emb.T
        sim[torch.arange(sim.size(0)), torch.arange(start, start + sim.size(0))] = -2.0
        w, idx = sim.topk(k, dim=1)
        rows.append(torch.arange(start, start + sim.size(0)).repeat_interleave(k))
        cols.append(idx.reshape(-1))
        weights.append(w.reshape(-1))
    src, dst, w = torch.cat(rows), torch.cat(cols), torch.cat(weights)
    # Symmetrise, keeping one copy of each undirected pair.
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    w = torch.cat([w, w])
    key = ei[0] * n + ei[1]
    key, perm = torch.unique(key, return_inverse=True)
    first = torch.full((key.numel(),), w.numel(), dtype=torch.long).scatter_reduce(
        0, perm, torch.arange(w.numel()), reduce="amin")
    return torch.stack([key // n, key % n]), w[first]


def graph_summary(data: HeteroData) -> dict[str, pd.DataFrame]:
    """Per node type and per edge type statistics as two DataFrames."""
    nodes = []
    for nt in data.node_types:
        n = data[nt].num_nodes
        degree = np.zeros(n, dtype=np.int64)
        for et in data.edge_types:
            if et[0] == nt:
                degree += np.bincount(data[et].edge_index[0].numpy(), minlength=n)
        nodes.append({"node_type": nt, "nodes": n,
                      "isolated": int((degree == 0).sum()),
                      "mean_out_degree": float(degree.mean()) if n else 0.0,
                      "max_out_degree": int(degree.max()) if n else 0})
    edges = []
    for et in data.edge_types:
        ei = data[et].edge_index
        n_src = data[et[0]].num_nodes
        edges.append({"edge_type": f"{et[0]} -{et[1]}-> {et[2]}",
                      "source": et[0], "relation": et[1], "target": et[2],
                      "edges": int(ei.size(1)),
                      "mean_degree": float(ei.size(1) / max(n_src, 1))})
    return {"nodes": pd.DataFrame(nodes), "edges": pd.DataFrame(edges)}


def k_hop_networkx(
    data: HeteroData,
    node_type: str,
    node_index: int,
    num_hops: int = 2,
    max_nodes: int = 200,
    seed: int = 0,
) -> nx.DiGraph:
    """The ``num_hops`` neighbourhood of one node as a networkx graph (for visualisation).

    Nodes are keyed ``"<type>:<index>"`` and carry ``node_type``, ``index`` and ``label``
    (the raw id); edges carry ``relation`` and, for ratings, ``weight``. Reverse relations are
    folded into one edge. When the neighbourhood exceeds ``max_nodes``, each hop is sampled
    uniformly (deterministically by ``seed``) so the centre and closest nodes survive, with
    the room shared fairly between node types.

    Args:
        data (HeteroData): Graph from :func:`build_hetero_graph`.
        node_type (str): Type of the centre node.
        node_index (int): Index of the centre node.
        num_hops (int): Hops to expand. (default: :obj:`2`)
        max_nodes (int): Node cap. (default: :obj:`200`)
        seed (int): Sampling seed. (default: :obj:`0`)
    """
    rng = np.random.default_rng(seed)
    # Adjacency per edge type as CSR over source nodes, built once per call.
    adj = {}
    for et in data.edge_types:
        ei = data[et].edge_index.numpy()
        order = np.argsort(ei[0], kind="stable")
        ptr = np.searchsorted(ei[0][order], np.arange(data[et[0]].num_nodes + 1))
        adj[et] = (ptr, ei[1][order], order)
    keep: dict[str, set[int]] = {node_type: {int(node_index)}}
    frontier = {node_type: np.array([node_index])}
    total = 1
    for _ in range(num_hops):
        nxt: dict[str, list[np.ndarray]] = {}
        for et, (ptr, dst, _) in adj.items():
            if et[0] not in frontier:
                continue
            for s in frontier[et[0]]:
                nxt.setdefault(et[2], []).append(dst[ptr[s]:ptr[s + 1]])
        candidates = {}
        for nt in sorted(nxt):
            cand = np.setdiff1d(np.unique(np.concatenate(nxt[nt])),
                                np.fromiter(keep.get(nt, set()), dtype=np.int64))
            if len(cand):
                candidates[nt] = cand
        # Share the room fairly between node types (water-filling, smallest first), so a
        # hop with thousands of users cannot crowd out its handful of genres or friends.
        frontier = {}
        room = max_nodes - total
        for position, nt in enumerate(sorted(candidates, key=lambda t: len(candidates[t]))):
            if room <= 0:
                break
            cand = candidates[nt]
            share = room // (len(candidates) - position) or room
            if len(cand) > share:
                cand = np.sort(rng.choice(cand, size=share, replace=False))
            keep.setdefault(nt, set()).update(int(c) for c in cand)
            total += len(cand)
            room -= len(cand)
            frontier[nt] = cand
        if not frontier:
            break
    g = nx.DiGraph()
    for nt, idxs in keep.items():
        ids = data[nt].node_ids
        for i in sorted(idxs):
            g.add_node(f"{nt}:{i}", node_type=nt, index=i, label=str(ids[i]))
    # Reverse relation -> its forward relation, so an edge and its reverse fold into one while
    # two genuine edges between the same nodes (a follows b, b follows a) both stay.
    forward_of = {RATED_BY[1]: RATES[1], FOLLOWED_BY[1]: FOLLOWS[1]}
    for node_type_name in getattr(data, "attr_columns", {}) or {}:
        fwd, rev = attribute_edge_types(node_type_name)
        forward_of[rev[1]] = fwd[1]
    for node_type_name in getattr(data, "user_attr_columns", {}) or {}:
        fwd, rev = user_attribute_edge_types(node_type_name)
        forward_of[rev[1]] = fwd[1]
    seen = set()
    for et in data.edge_types:
        s_t, rel, d_t = et
        if s_t not in keep or d_t not in keep:
            continue
        ei = data[et].edge_index.numpy()
        mask = np.isin(ei[0], list(keep[s_t])) & np.isin(ei[1], list(keep[d_t]))
        attr = data[et].get("edge_attr")
        for j in np.nonzero(mask)[0]:
            u, v = f"{s_t}:{ei[0, j]}", f"{d_t}:{ei[1, j]}"
            if rel in forward_of:
                key = (v, u, forward_of[rel])
            elif rel == SIMILAR[1]:  # stored in both directions, symmetric by construction
                key = (min(u, v), max(u, v), rel)
            else:
                key = (u, v, rel)
            if key in seen:
                continue  # reverse relation of an edge already added
            seen.add(key)
            weight = float(attr[j, 0]) if attr is not None else 1.0
            g.add_edge(u, v, relation=rel, weight=weight)
    return g
