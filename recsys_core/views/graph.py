"""What the graph views show: node labels and tooltips, and an explanation's most important
edges as a small graph."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import networkx as nx
import numpy as np
import pandas as pd
import torch

from ..dataset import ITEM_IDX, USER_IDX, Dataset
from ..graph import RATED_BY, RATES
from ..rng import numpy_generator

#: Above this many interactions the Graph page draws neighbourhoods from a uniform sample of
#: them (building a view reads every edge of the graph it is given).
GRAPH_VIEW_MAX_INTERACTIONS = 2_000_000

#: What identifies an edge in an explanation's edge table (plus a weight column, see
#: :func:`explanation_subgraph`).
EDGE_COLUMNS = ("relation", "source_type", "source_index", "source_id", "target_type",
                "target_index", "target_id")


def graph_for_view(data, max_interactions: int | None = None,
                   seed: int = 0) -> tuple[object, str | None]:
    """The graph the Graph page draws neighbourhoods from, and what was sampled.

    Up to ``max_interactions`` user-item interactions the graph is returned as it is. Above,
    a uniform sample of that many interactions (drawn from ``seed``, the same every time)
    replaces the ``rates`` / ``rated_by`` edges of a shallow copy; the other relations
    (attributes, user-user edges) are kept whole.

    Args:
        data (HeteroData): Graph from :func:`recsys_core.graph.build_hetero_graph`.
        max_interactions (int, optional): The limit. (default:
            :data:`GRAPH_VIEW_MAX_INTERACTIONS`)
        seed (int): Seed of the sample. (default: :obj:`0`)

    Returns:
        ``(graph, note)``: ``note`` says what was sampled (``None`` when nothing was).
    """
    limit = GRAPH_VIEW_MAX_INTERACTIONS if max_interactions is None else int(max_interactions)
    if RATES not in data.edge_types:
        return data, None
    total = int(data[RATES].num_edges)
    if total <= limit:
        return data, None
    keep = np.sort(numpy_generator(seed).choice(total, size=limit, replace=False))
    index = torch.from_numpy(keep)
    view = copy.copy(data)
    for et in (RATES, RATED_BY):
        if et not in data.edge_types:
            continue
        store = view[et]
        for key in ("edge_index", "edge_attr"):
            value = getattr(data[et], key, None)
            if value is not None:
                store[key] = value.index_select(-1 if key == "edge_index" else 0, index)
    note = (f"Sampled: this data set has {total:,} interactions, more than the "
            f"{limit:,} a view draws from, so neighbourhoods come from a uniform sample of "
            f"{limit:,} of them (the same sample every time); the statistics below count "
            "every edge.")
    return view, note


def describe_nodes(graph: nx.DiGraph, dataset: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """Display labels and tooltip texts (both unescaped) for the nodes of a k-hop graph.

    Items are labelled by title, users by id; tooltips add the node type, raw id, interaction
    count and (for items) the attribute values.
    """
    counts_user = np.bincount(
        dataset.interactions[USER_IDX].to_numpy(), minlength=dataset.num_users
    )
    counts_item = np.bincount(
        dataset.interactions[ITEM_IDX].to_numpy(), minlength=dataset.num_items
    )
    items = dataset.items
    labels, titles = {}, {}
    for key, attrs in graph.nodes(data=True):
        node_type, idx, raw = (
            attrs.get("node_type"),
            int(attrs.get("index", 0)),
            attrs.get("label", key),
        )
        if node_type == "item":
            title = str(items.at[idx, "title"]) if "title" in items else str(raw)
            lines = [f"item {raw}", title, f"{int(counts_item[idx])} interactions"]
            for col in dataset.attribute_columns:
                values = items.at[idx, col]
                if isinstance(values, (list, tuple)) and values:
                    lines.append(f"{col}: {', '.join(map(str, values))}")
            labels[key] = title
            titles[key] = "\n".join(lines)
        elif node_type == "user":
            labels[key] = f"user {raw}"
            titles[key] = f"user {raw}\n{int(counts_user[idx])} interactions"
        else:
            labels[key] = str(raw)
            titles[key] = f"{node_type}: {raw}"
    return labels, titles


def labelled_graph_html(
    graph: nx.DiGraph,
    dataset: Dataset,
    center: str | None = None,
    edge_scores: Mapping[tuple[str, str], float] | None = None,
    height_px: int = 560,
    physics: bool = True,
) -> tuple[str, dict[str, str]]:
    """The interactive page of a graph of ``dataset``'s nodes, labelled and described by
    :func:`describe_nodes` (what the Graph and Explain pages draw).

    Args:
        graph (networkx.DiGraph): A k-hop graph or an explanation's subgraph (nodes with
            ``node_type``, ``index`` and ``label``).
        dataset (Dataset): The dataset its nodes index.
        center (str, optional): Key of the node to emphasise. (default: :obj:`None`)
        edge_scores (Mapping[tuple[str, str], float], optional): Importance in ``[0, 1]`` per
            edge, drawn red. (default: :obj:`None`)
        height_px (int): Canvas height. (default: :obj:`560`)
        physics (bool): Force-directed layout. (default: :obj:`True`)

    Returns:
        ``(html, labels)``: the page from :func:`recsys_core.viz.graph_html` and the display
        label (unescaped) per node key.
    """
    from ..viz.graph_html import graph_html

    labels, titles = describe_nodes(graph, dataset)
    html = graph_html(graph, center=center, labels=labels, titles=titles,
                      edge_scores=edge_scores, height_px=height_px, physics=physics)
    return html, labels


def explanation_subgraph(
    edges: pd.DataFrame,
    user: int,
    item: int,
    top: int = 25,
    weight_column: str = "contribution",
    user_id: str = "",
    item_id: str = "",
) -> tuple[nx.DiGraph, dict[tuple[str, str], float]]:
    """The pair's most important incoming edges as a small graph plus per-edge importances.

    Args:
        edges (pandas.DataFrame): One row per (edge, layer, head) with ``source_type``,
            ``source_index``, ``source_id``, ``target_type``, ``target_index``, ``target_id``,
            ``relation`` and ``weight_column`` (e.g. attention explanations'
            ``details["edges"]`` or GNNExplainer edge masks).
        user (int): User index of the pair.
        item (int): Item index of the pair.
        top (int): Edges kept, by absolute importance summed over layers and heads.
            (default: :obj:`25`)
        weight_column (str): Column holding the importance. (default: :obj:`"contribution"`)
        user_id (str): Raw id of the user (node label). (default: :obj:`""`)
        item_id (str): Raw id of the item (node label). (default: :obj:`""`)

    Returns:
        ``(graph, edge_scores)``: a graph for :func:`graph_html` (nodes keyed
        ``"<type>:<index>"``) always holding the user and the item, and importances scaled to
        ``[0, 1]`` for its ``edge_scores`` argument.
    """
    graph = nx.DiGraph()
    graph.add_node(f"user:{user}", node_type="user", index=int(user), label=str(user_id))
    graph.add_node(f"item:{item}", node_type="item", index=int(item), label=str(item_id))
    if edges is None or not len(edges):
        return graph, {}
    keys = ["source_type", "source_index", "target_type", "target_index"]
    grouped = (
        edges.assign(_abs=edges[weight_column].abs())
        .groupby(keys, sort=False)
        .agg(
            importance=("_abs", "sum"),
            relation=("relation", "first"),
            source_id=("source_id", "first"),
            target_id=("target_id", "first"),
        )
        .reset_index()
    )
    grouped = grouped[
        (grouped["source_type"] + ":" + grouped["source_index"].astype(str))
        != (grouped["target_type"] + ":" + grouped["target_index"].astype(str))
    ]
    grouped = grouped.nlargest(top, "importance")
    peak = float(grouped["importance"].max()) if len(grouped) else 1.0
    scores = {}
    for r in grouped.itertuples(index=False):
        u, v = f"{r.source_type}:{int(r.source_index)}", f"{r.target_type}:{int(r.target_index)}"
        for key, nt, idx, raw in (
            (u, r.source_type, r.source_index, r.source_id),
            (v, r.target_type, r.target_index, r.target_id),
        ):
            if key not in graph:
                graph.add_node(key, node_type=str(nt), index=int(idx), label=str(raw))
        graph.add_edge(u, v, relation=str(r.relation).split("__")[-1].split(",")[0], weight=1.0)
        scores[(u, v)] = float(r.importance) / peak if peak > 0 else 0.0
    return graph, scores


def edge_mask_frame(
    edge_masks: Mapping[tuple[str, str, str], tuple], dataset: Dataset
) -> pd.DataFrame:
    """GNNExplainer-style ``{edge_type: (edge_index [2, k], mask [k])}`` as one edge table.

    Returns:
        DataFrame with ``relation``, ``source_type``, ``source_index``, ``source_id``,
        ``target_type``, ``target_index``, ``target_id`` and ``mask`` (for
        :func:`explanation_subgraph` with ``weight_column="mask"``). Raw ids of attribute
        nodes are not known here and are left as their indices.
    """
    frames = []
    ids = {"user": dataset.user_ids, "item": dataset.item_ids}
    for (src, rel, dst), (edge_index, mask) in edge_masks.items():
        ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        values = np.asarray(mask, dtype=np.float64).reshape(-1)
        frames.append(
            pd.DataFrame(
                {
                    "relation": rel,
                    "source_type": src,
                    "source_index": ei[0],
                    "source_id": ids[src][ei[0]] if src in ids else ei[0].astype(str),
                    "target_type": dst,
                    "target_index": ei[1],
                    "target_id": ids[dst][ei[1]] if dst in ids else ei[1].astype(str),
                    "mask": values,
                }
            )
        )
    columns = [*EDGE_COLUMNS, "mask"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
