"""The common result type of every explanation method.

An :class:`Explanation` holds the explained score, an optional base value and a tidy table of
contributions, one row per piece of evidence: a history item of the user, an attribute value
of the item, a sentence of the item's description, or a neighbouring node. ``weight`` is
signed (positive pushes the score up) and in the method's own unit (SHAP values are in score
units; attention and GNNExplainer weights are relative importances).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import TITLE_COL, Dataset

HISTORY_ITEM = "history_item"
ATTRIBUTE = "attribute"
TEXT = "text"
NEIGHBOUR = "neighbour"
#: The kinds of evidence a contribution can be.
KINDS = (HISTORY_ITEM, ATTRIBUTE, TEXT, NEIGHBOUR)

#: Columns of :attr:`Explanation.contributions`. ``node_type``/``index`` locate the evidence in
#: the graph (``index`` is -1 for text sentences).
CONTRIBUTION_COLUMNS = ["kind", "id", "label", "weight", "node_type", "index"]


@dataclass
class Explanation:
    """Why a model gives ``item_id`` the score it does for ``user_id``.

    Args:
        method (str): ``"attention"``, ``"shap"`` or ``"gnnexplainer"``.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        score (float): The model's score for the pair on the unedited data.
        base_value (float, optional): The score with every feature absent (SHAP's expected
            value); ``None`` for methods without one.
        contributions (pandas.DataFrame): One row per piece of evidence with columns
            :data:`CONTRIBUTION_COLUMNS`, sorted by decreasing ``weight``.
        other (list[dict], optional): Evidence grouped into single features (e.g. the
            history items outside SHAP's cap), each ``{"kind", "label", "weight", "ids"}``;
            ``None`` when nothing was grouped.
        details (dict): Method-specific raw data, e.g. per-edge attention weights
            (``details["edges"]``), the ``shap.Explanation`` (``details["shap"]``) or the
            GNNExplainer edge masks.
    """

    method: str
    user_id: str
    item_id: str
    score: float
    base_value: float | None
    contributions: pd.DataFrame
    other: list[dict[str, Any]] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def top(self, n: int | None = None, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
        """The ``n`` largest contributions by absolute weight (all when ``n`` is ``None``)."""
        frame = self.contributions
        if kinds is not None:
            frame = frame[frame["kind"].isin(kinds)]
        order = frame["weight"].abs().sort_values(ascending=False, kind="stable").index
        frame = frame.loc[order]
        return (frame if n is None else frame.head(n)).reset_index(drop=True)

    def to_dict(self, top: int | None = None, rationale: str | None = None) -> dict[str, Any]:
        """JSON-ready form: ``method``, ``user``, ``item``, ``score``, ``base_value``,
        ``contributions`` (``kind``, ``id``, ``label``, ``weight``; the ``top`` largest by
        absolute weight), ``other`` when evidence was grouped (``kind``, ``label``,
        ``weight``, ``count``) and ``rationale``."""
        rows = [
            {"kind": str(r.kind), "id": str(r.id), "label": str(r.label), "weight": float(r.weight)}
            for r in self.top(top).itertuples(index=False)
        ]
        out: dict[str, Any] = {
            "method": self.method,
            "user": self.user_id,
            "item": self.item_id,
            "score": float(self.score),
            "base_value": None if self.base_value is None else float(self.base_value),
            "contributions": rows,
        }
        if self.other:
            out["other"] = [{"kind": str(group["kind"]), "label": str(group["label"]),
                             "weight": float(group["weight"]), "count": len(group.get("ids", []))}
                            for group in self.other]
        out["rationale"] = rationale if rationale is not None else ""
        return out


def contribution_frame(rows: list[dict[str, Any]],
                       extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A contributions table from row dicts, typed and sorted by decreasing weight."""
    frame = pd.DataFrame(rows, columns=CONTRIBUTION_COLUMNS + list(extra_columns))
    if len(frame):
        frame["weight"] = frame["weight"].astype(np.float64)
        frame["index"] = frame["index"].astype(np.int64)
        frame = frame.sort_values("weight", ascending=False, kind="stable")
    else:
        frame = frame.astype({"weight": np.float64, "index": np.int64})
    return frame.reset_index(drop=True)


def node_evidence(
    dataset: Dataset,
    attribute_nodes: dict[str, tuple[str, list[str]]],
    node_type: str,
    index: int,
    history: set[int] | frozenset[int],
) -> tuple[str, str, str]:
    """``(kind, id, label)`` of a graph node as evidence for a user.

    Items the user interacted with are ``history_item`` (id = raw item id, label = title);
    other items and users are ``neighbour``; attribute nodes are ``attribute`` with id
    ``"<node_type>:<value>"`` and label ``"<column>: <value>"``.

    Args:
        dataset (Dataset): Source of raw ids and titles.
        attribute_nodes (dict): Attribute node type -> ``(column, values)`` (see
            :attr:`FlagshipEngine.attribute_nodes`).
        node_type (str): ``"user"``, ``"item"`` or an attribute node type.
        index (int): Node index within its type.
        history (set[int]): The user's item indices.
    """
    index = int(index)
    if node_type == "item":
        title = str(dataset.items[TITLE_COL].iat[index])
        kind = HISTORY_ITEM if index in history else NEIGHBOUR
        return kind, str(dataset.item_ids[index]), title
    if node_type == "user":
        user_id = str(dataset.user_ids[index])
        return NEIGHBOUR, user_id, f"user {user_id}"
    column, values = attribute_nodes.get(node_type, (node_type, []))
    value = values[index] if index < len(values) else str(index)
    return ATTRIBUTE, f"{node_type}:{value}", f"{column}: {value}"
