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
        other (dict, optional): Evidence grouped into one feature (e.g. the history items
            outside SHAP's cap) as ``{"label", "weight", "ids"}``; ``None`` when nothing was
            grouped.
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
    other: dict[str, Any] | None = None
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
        """JSON-ready form: ``score``, ``base_value``, ``contributions`` (``kind``, ``id``,
        ``label``, ``weight``), ``other`` when evidence was grouped, and ``rationale``."""
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
        if self.other is not None:
            out["other"] = {"label": self.other["label"], "weight": float(self.other["weight"]),
                            "count": len(self.other.get("ids", []))}
        out["rationale"] = rationale if rationale is not None else ""
        return out


def contribution_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A contributions table from row dicts, typed and sorted by decreasing weight."""
    frame = pd.DataFrame(rows, columns=CONTRIBUTION_COLUMNS)
    if len(frame):
        frame["weight"] = frame["weight"].astype(np.float64)
        frame["index"] = frame["index"].astype(np.int64)
        frame = frame.sort_values("weight", ascending=False, kind="stable")
    else:
        frame = frame.astype({"weight": np.float64, "index": np.int64})
    return frame.reset_index(drop=True)
