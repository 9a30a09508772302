"""The Embeddings page's 2-D map: item neighbourhoods, with users placed among their items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import ITEM_IDX, TITLE_COL, USER_IDX, Dataset


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of ``x`` ``[n, d]`` via SVD (deterministic signs)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return np.zeros((len(x), 2))
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    # Fix the sign of each component so the picture does not flip between runs.
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    coords = centred @ (comps * signs[:, None]).T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords


def history_means(item_vectors: np.ndarray, train: pd.DataFrame, num_users: int) -> np.ndarray:
    """``[num_users, d]``: each user's mean over the items of their training history (zeros
    for users without one).

    Args:
        item_vectors (numpy.ndarray): ``[num_items, d]`` one vector per item.
        train (pandas.DataFrame): Training interactions (``user_idx``, ``item_idx``).
        num_users (int): Number of users.
    """
    item_vectors = np.asarray(item_vectors, dtype=np.float64)
    users = train[USER_IDX].to_numpy()
    sums = np.zeros((num_users, item_vectors.shape[1]))
    np.add.at(sums, users, item_vectors[train[ITEM_IDX].to_numpy()])
    counts = np.bincount(users, minlength=num_users)[:, None]
    return sums / np.maximum(counts, 1)


def item_colours(dataset: Dataset, column: str) -> np.ndarray:
    """Each item's first value of attribute ``column`` (``"(none)"`` without one; ``"all"``
    when ``column`` is not an attribute column)."""
    if column not in dataset.attribute_columns:
        return np.array(["all"] * dataset.num_items, dtype=object)
    return np.array([str(v[0]) if isinstance(v, (list, tuple)) and len(v) else "(none)"
                     for v in dataset.items[column]], dtype=object)


def user_colours(train: pd.DataFrame, num_users: int, colours: np.ndarray) -> np.ndarray:
    """Each user's most frequent item colour in their training history (``"(no history)"``
    for users without one).

    Args:
        train (pandas.DataFrame): Training interactions.
        num_users (int): Number of users.
        colours (numpy.ndarray): ``[num_items]`` item colours (see :func:`item_colours`).
    """
    values, codes = np.unique(colours.astype(str), return_inverse=True)
    counts = np.zeros((num_users, len(values)), dtype=np.int64)
    np.add.at(counts, (train[USER_IDX].to_numpy(), codes[train[ITEM_IDX].to_numpy()]), 1)
    out = values[counts.argmax(axis=1)].astype(object)
    out[counts.sum(axis=1) == 0] = "(no history)"
    return out


def embedding_map(
    item_vectors: np.ndarray,
    dataset: Dataset,
    train: pd.DataFrame,
    colour_by: str,
) -> pd.DataFrame:
    """Points of the 2-D map: items on the first two principal components of the item
    vectors, each user at the mean position of the items in their training history.

    Projecting users and items together would spend the first component on the offset
    between the two types (two blobs, no structure); here the map shows which items sit
    together, and a user appears inside the neighbourhoods they interacted with. Users
    without training history are left out.

    Args:
        item_vectors (numpy.ndarray): ``[num_items, d]`` item embeddings (model or text).
        dataset (Dataset): Ids, titles and attributes.
        train (pandas.DataFrame): Training interactions (the users' histories).
        colour_by (str): Attribute column to colour by.

    Returns:
        pandas.DataFrame: ``x``, ``y``, ``kind`` (``item``/``user``), ``key``
        (``item:<idx>`` / ``user:<idx>``), ``label`` and ``color``.
    """
    item_xy = pca_2d(np.asarray(item_vectors, dtype=np.float64))
    user_xy = history_means(item_xy, train, dataset.num_users)
    has_history = np.bincount(train[USER_IDX].to_numpy(), minlength=dataset.num_users) > 0
    colours = item_colours(dataset, colour_by)
    users = np.flatnonzero(has_history)
    return pd.DataFrame({
        "x": np.concatenate([item_xy[:, 0], user_xy[users, 0]]),
        "y": np.concatenate([item_xy[:, 1], user_xy[users, 1]]),
        "kind": ["item"] * dataset.num_items + ["user"] * len(users),
        "key": [f"item:{i}" for i in range(dataset.num_items)] + [f"user:{u}" for u in users],
        "label": list(dataset.items[TITLE_COL].astype(str))
        + [f"user {dataset.user_ids[u]}" for u in users],
        "color": np.concatenate([colours,
                                 user_colours(train, dataset.num_users, colours)[users]]),
    })


def selected_keys(selection_points: list[dict], customdata: list) -> list[str]:
    """Point keys of a plotly selection, read back by trace and point index.

    Args:
        selection_points (list): The selection's points (``curve_number`` and
            ``point_index`` / ``point_number``).
        customdata (list): Per trace, its points' customdata (first field: the key).
    """
    keys = []
    for p in selection_points or []:
        curve, index = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if curve is None or index is None or not 0 <= curve < len(customdata):
            continue
        data = customdata[curve]
        if data is not None and 0 <= index < len(data):
            keys.append(str(data[index][0]))
    return keys


def central_items(points: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` items closest to the centre of the map's most common colour (what the page
    lists before anything is selected)."""
    items = points[points["kind"] == "item"]
    if items.empty:
        return items
    top = items["color"].value_counts().index[0]
    part = items[items["color"] == top]
    centre = part[["x", "y"]].mean().to_numpy()
    distance = np.hypot(part["x"] - centre[0], part["y"] - centre[1])
    return part.assign(_d=distance.to_numpy()).nsmallest(n, "_d").drop(columns="_d")


def listed_items(dataset: Dataset, item_counts: np.ndarray, points: pd.DataFrame) -> pd.DataFrame:
    """The items among ``points``: ``item_id``, ``title``, attribute values (joined with
    ", ") and training ``interactions``."""
    items = points[points["kind"] == "item"]
    idx = items["key"].str.removeprefix("item:").astype(int).to_numpy()
    table = pd.DataFrame({
        "item_id": dataset.item_ids[idx],
        "title": dataset.items[TITLE_COL].to_numpy()[idx],
        **{c: [_joined(values) for values in dataset.items[c].to_numpy()[idx]]
           for c in dataset.attribute_columns},
        "interactions": np.asarray(item_counts)[idx],
    })
    return table


def _joined(values) -> str:
    if isinstance(values, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in values)
    return "" if values is None or (isinstance(values, float) and np.isnan(values)) \
        else str(values)


__all__ = ["central_items", "embedding_map", "history_means", "item_colours", "listed_items",
           "selected_keys", "user_colours"]
