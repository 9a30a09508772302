"""Short natural-language rationales grounded in an explanation's evidence.

The sentence is assembled only from contributions that were computed for this (user, item)
pair, pushed the score *up*, and are checked against the data: history items the user really
interacted with, attribute values the recommended item (or the user's history) really has,
sentences of the item's own description, users who interacted with the item or are connected
to the user, similar items. Nothing else is mentioned.

History items are worded by the user's rating on the data set's scale (see
:func:`rating_scale`): "you liked" only for ratings above the middle of the scale, "you rated
... low" below it; implicit data (one rating value for everything) says "you interacted with".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, RATING_COL, USER_COL, Dataset
from ..graph import attribute_node_type
from .evidence import ATTRIBUTE, HISTORY_ITEM, NEIGHBOUR, TEXT, Explanation


def rationale(
    explanation: Explanation,
    dataset: Dataset,
    max_items: int = 2,
    max_attributes: int = 2,
    min_share: float = 0.05,
) -> str:
    """One sentence saying why the item was recommended.

    Only contributions with a positive weight of at least ``min_share`` of the largest
    positive weight count as evidence, so numerical noise never becomes a reason. History
    items must be in the user's interactions (worded by the user's rating, see
    :func:`rating_scale`) and attribute values on the item (``"it has the genre A"``) or,
    failing that, on the user's history items (``"you like the genre A"``). A sentence of the
    item's description is quoted only when it is one (SHAP's text features); the item's text
    as a whole (attention's text feature) is named, not quoted.

    Args:
        explanation (Explanation): Output of any explanation method.
        dataset (Dataset): The dataset the model was trained on (its interactions are the
            user's history).
        max_items (int): History items / neighbours to name at most. (default: :obj:`2`)
        max_attributes (int): Attribute values to name at most. (default: :obj:`2`)
        min_share (float): Smallest weight, relative to the top positive weight, that counts
            as evidence. (default: :obj:`0.05`)

    Returns:
        str: e.g. ``'Recommended because you liked "Dune" and "Hyperion"; it has the genres
        Sci-Fi and Space opera; its description says "A desert planet..."'``, or a sentence
        saying that no single piece of evidence raised the score.
    """
    frame = explanation.contributions
    positive = frame[frame["weight"] > 0]
    if len(positive):
        positive = positive[positive["weight"] >= min_share * float(positive["weight"].max())]
    history_ids = _history_ids(dataset, explanation.user_id)

    clauses = []
    history = positive[(positive["kind"] == HISTORY_ITEM)
                       & positive["id"].astype(str).isin(history_ids)].head(max_items)
    if len(history):
        clauses.extend(_history_clauses(history, dataset, str(explanation.user_id)))
    attribute_clause = _attribute_clause(positive[positive["kind"] == ATTRIBUTE], dataset,
                                         explanation.item_id, history_ids, max_attributes)
    if attribute_clause:
        clauses.append(attribute_clause)
    text = positive[positive["kind"] == TEXT].head(1)
    if len(text):
        if str(text["id"].iloc[0]).startswith("sentence:"):  # a real sentence of the description
            clauses.append(f'its description says "{_shorten(str(text["label"].iloc[0]))}"')
        else:  # the item's text features as a whole: nothing to quote
            clauses.append("its own text (title, description and attributes) fits")
    clauses.extend(_neighbour_clauses(positive[positive["kind"] == NEIGHBOUR], dataset,
                                      explanation, max_items))
    if not clauses:
        return (f"No single piece of evidence raised the score of item "
                f"{explanation.item_id!r}; it comes from the model's overall preferences.")
    return "Recommended because " + "; ".join(clauses) + "."


def rating_scale(dataset: Dataset) -> tuple[float, float] | None:
    """``(bottom, top)`` of the data set's rating scale, ``None`` for implicit data (a single
    rating value, e.g. 1.0 for every interaction).

    The top is the largest rating seen; the bottom the smallest, or 1 when every rating is
    non-negative and above 1 (a star scale whose low values nobody used still starts at 1).
    """
    ratings = pd.to_numeric(dataset.interactions[RATING_COL], errors="coerce").dropna()
    if ratings.nunique() < 2:
        return None
    low, high = float(ratings.min()), float(ratings.max())
    if low >= 0:
        low = min(low, 1.0)
    return low, high


def _history_clauses(rows: pd.DataFrame, dataset: Dataset, user_id: str) -> list[str]:
    """"you liked ...", "you rated ... low", "you gave ... a middling rating" (explicit
    ratings, by the user's mean rating of each item) or "you interacted with ..." (implicit)."""
    labels = [f'"{label}"' for label in rows["label"]]
    scale = rating_scale(dataset)
    if scale is None:
        return ["you interacted with " + _join(labels)]
    inter = dataset.interactions
    mine = inter[inter[USER_COL].astype(str) == user_id]
    ratings = mine.groupby(mine[ITEM_COL].astype(str))[RATING_COL].mean()
    middle = (scale[0] + scale[1]) / 2
    groups: dict[str, list[str]] = {"high": [], "low": [], "middle": []}
    for item_id, label in zip(rows["id"].astype(str), labels, strict=True):
        rating = float(ratings.get(item_id, np.nan))
        group = "high" if rating > middle else "low" if rating < middle else "middle"
        groups[group].append(label)
    clauses = []
    if groups["high"]:
        clauses.append("you liked " + _join(groups["high"]))
    if groups["low"]:
        clauses.append("you rated " + _join(groups["low"]) + " low")
    if groups["middle"]:
        clauses.append("you gave " + _join(groups["middle"]) + " a middling rating")
    return clauses


def _neighbour_clauses(rows: pd.DataFrame, dataset: Dataset, explanation: Explanation,
                       limit: int) -> list[str]:
    """Users who also interacted with the item, the user's own connections, and other items;
    a neighbour that is none of these is not named."""
    inter = dataset.interactions
    raters = set(inter.loc[inter[ITEM_COL] == str(explanation.item_id), USER_COL].astype(str))
    connected: set[str] = set()
    edges = dataset.user_edges
    if edges is not None and len(edges):
        src, dst = edges["src"].astype(str), edges["dst"].astype(str)
        user = str(explanation.user_id)
        connected = set(dst[src == user]) | set(src[dst == user])
    node_types = rows["node_type"] if "node_type" in rows else pd.Series("", index=rows.index)
    liked, friends, items = [], [], []
    for node_id, label, node_type in zip(rows["id"].astype(str), rows["label"].astype(str),
                                         node_types, strict=True):
        if node_type == "item":
            items.append(f'"{label}"')
        elif node_id in connected:
            friends.append(node_id)
        elif node_id in raters:
            liked.append(node_id)
    clauses = []
    if liked:
        verb = "rated" if rating_scale(dataset) is not None else "interacted with"
        clauses.append(f"user{'s' if len(liked[:limit]) > 1 else ''} {_join(liked[:limit])} "
                       f"also {verb} it")
    if friends:
        clauses.append(f"you are connected to {_join(friends[:limit])}")
    if items:
        clauses.append(f"it is similar to {_join(items[:limit])}")
    return clauses


def _history_ids(dataset: Dataset, user_id: str) -> set[str]:
    inter = dataset.interactions
    return set(inter.loc[inter[USER_COL] == str(user_id), ITEM_COL].astype(str))


def _attribute_clause(
    rows: pd.DataFrame,
    dataset: Dataset,
    item_id: str,
    history_ids: set[str],
    limit: int,
) -> str:
    columns = {attribute_node_type(c): c for c in dataset.attribute_columns}
    items = dataset.items.set_index(dataset.items[ITEM_COL].astype(str))
    own: dict[str, list[str]] = {}
    liked: dict[str, list[str]] = {}
    used = 0
    for attr_id in rows["id"].astype(str):
        if used >= limit:
            break
        node_type, _, value = attr_id.partition(":")
        column = columns.get(node_type)
        if column is None:
            continue
        if item_id in items.index and value in _values(items.at[item_id, column]):
            own.setdefault(column, []).append(value)
        elif any(value in _values(items.at[h, column]) for h in history_ids if h in items.index):
            liked.setdefault(column, []).append(value)
        else:
            continue  # neither on the item nor in the history: not a grounded reason
        used += 1
    pieces = []
    if own:
        pieces.append("it has " + " and ".join(_noun_phrase(c, v) for c, v in own.items()))
    if liked:
        pieces.append("you like " + " and ".join(_noun_phrase(c, v) for c, v in liked.items()))
    return "; ".join(pieces)


def _values(cell) -> list[str]:
    return [str(v) for v in cell] if isinstance(cell, (list, tuple)) else []


def _noun_phrase(column: str, values: list[str]) -> str:
    noun = column.replace("_", " ")
    return f"the {noun if len(values) == 1 else _plural(noun)} {_join(values)}"


def _plural(word: str) -> str:
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy", "uy")):
        return word[:-1] + "ies"
    return word if word.endswith("s") else word + "s"


def _join(values: list[str]) -> str:
    values = list(values)
    if len(values) <= 1:
        return "".join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def _shorten(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"
