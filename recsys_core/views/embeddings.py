"""The Embeddings page's 2-D map: item neighbourhoods, with users placed among their items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import ITEM_IDX, TITLE_COL, USER_IDX, Dataset
from ..rng import numpy_generator


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


#: Most items and users the map draws (a browser slows down past tens of thousands of
#: points); above, a uniform sample is drawn and :func:`sampling_note` says so.
MAP_MAX_ITEMS = 20_000
MAP_MAX_USERS = 5_000


def map_sample(num_items: int, users: np.ndarray, max_items: int | None = None,
               max_users: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The items and users the map draws: all of them up to the limits, else a uniform
    sample (sorted indices, the same for the same ``seed``).

    Args:
        num_items (int): Catalogue size.
        users (numpy.ndarray): Candidate user indices (those with a training history).
        max_items (int, optional): Item limit. (default: :data:`MAP_MAX_ITEMS`)
        max_users (int, optional): User limit. (default: :data:`MAP_MAX_USERS`)
        seed (int): Seed of the sample. (default: :obj:`0`)
    """
    max_items = MAP_MAX_ITEMS if max_items is None else int(max_items)
    max_users = MAP_MAX_USERS if max_users is None else int(max_users)
    rng = numpy_generator(seed)
    items = np.arange(num_items)
    if num_items > max_items:
        items = np.sort(rng.choice(num_items, size=max_items, replace=False))
    users = np.asarray(users, dtype=np.int64)
    if len(users) > max_users:
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return items, users


def embedding_map(
    item_vectors: np.ndarray,
    dataset: Dataset,
    train: pd.DataFrame,
    colour_by: str,
    max_items: int | None = None,
    max_users: int | None = None,
) -> pd.DataFrame:
    """Points of the 2-D map: items on the first two principal components of the item
    vectors, each user at the mean position of the items in their training history.

    Projecting users and items together would spend the first component on the offset
    between the two types (two blobs, no structure); here the map shows which items sit
    together, and a user appears inside the neighbourhoods they interacted with. Users
    without training history are left out. On large data the points are a uniform sample
    (:func:`map_sample`); the components come from every item and each sampled user sits at
    the mean of their whole history.

    Args:
        item_vectors (numpy.ndarray): ``[num_items, d]`` item embeddings (model or text).
        dataset (Dataset): Ids, titles and attributes.
        train (pandas.DataFrame): Training interactions (the users' histories).
        colour_by (str): Attribute column to colour by.
        max_items (int, optional): Items drawn at most. (default: :data:`MAP_MAX_ITEMS`)
        max_users (int, optional): Users drawn at most. (default: :data:`MAP_MAX_USERS`)

    Returns:
        pandas.DataFrame: ``x``, ``y``, ``kind`` (``item``/``user``), ``key``
        (``item:<idx>`` / ``user:<idx>``), ``label`` and ``color``.
    """
    item_xy = pca_2d(np.asarray(item_vectors, dtype=np.float64))
    has_history = np.bincount(train[USER_IDX].to_numpy(), minlength=dataset.num_users) > 0
    items, users = map_sample(dataset.num_items, np.flatnonzero(has_history), max_items,
                              max_users)
    # Only the sampled users' rows, their indices renumbered 0..len(users)-1.
    rows = train[train[USER_IDX].isin(users)]
    local = pd.DataFrame({USER_IDX: np.searchsorted(users, rows[USER_IDX].to_numpy()),
                          ITEM_IDX: rows[ITEM_IDX].to_numpy()})
    user_xy = history_means(item_xy, local, len(users))
    colours = item_colours(dataset, colour_by)
    titles = dataset.items[TITLE_COL].astype(str).to_numpy()
    return pd.DataFrame({
        "x": np.concatenate([item_xy[items, 0], user_xy[:, 0]]),
        "y": np.concatenate([item_xy[items, 1], user_xy[:, 1]]),
        "kind": ["item"] * len(items) + ["user"] * len(users),
        "key": [f"item:{i}" for i in items] + [f"user:{u}" for u in users],
        "label": list(titles[items]) + [f"user {dataset.user_ids[u]}" for u in users],
        "color": np.concatenate([colours[items],
                                 user_colours(local, len(users), colours)]).astype(object),
    })


def sampling_note(points: pd.DataFrame, dataset: Dataset, train: pd.DataFrame) -> str | None:
    """What the map leaves out, in words (``None`` when it draws every item and user)."""
    items = int((points["kind"] == "item").sum())
    users = int((points["kind"] == "user").sum())
    with_history = int(np.count_nonzero(np.bincount(train[USER_IDX].to_numpy(),
                                                    minlength=dataset.num_users)))
    if items >= dataset.num_items and users >= with_history:
        return None
    return (f"Sampled: the map draws {items:,} of {dataset.num_items:,} items and {users:,} "
            f"of {with_history:,} users (a uniform sample, the same every time); the axes "
            "come from every item, and each user sits at the mean of their whole history.")


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


__all__ = ["MAP_MAX_ITEMS", "MAP_MAX_USERS", "central_items", "embedding_map",
           "history_means", "item_colours", "listed_items", "map_sample", "sampling_note",
           "selected_keys", "user_colours"]
