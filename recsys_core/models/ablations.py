"""The flagship's parts and how to switch each off: one definition for the ablation benchmark
(``benchmarks/bench_ablations.py``), the app's "what each part contributes" view and the
docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ablation:
    """One variant of the flagship.

    Attributes:
        key (str): Short identifier (``"no-text"``).
        label (str): What it is, in words.
        params (dict): ``gnn-llm`` arguments that make it (on top of the run's own).
        needs (str, optional): What the data must have for the variant to differ from the
            full model: ``"user_edges"``, ``"user_attributes"`` or ``"attributes"``.
    """

    key: str
    label: str
    params: dict[str, Any]
    needs: str | None = None


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("full", "full flagship", {}),
    Ablation("no-item-item", "no item-item path (graph network alone)", {"item_item": False}),
    Ablation("learned-only", "learned graph attention alone",
             {"item_item": False, "graph_filter": False, "popularity_prior": False}),
    Ablation("no-graph-filter", "no graph filter", {"graph_filter": False}),
    Ablation("no-text", "no text", {"use_text": False}),
    Ablation("no-attributes", "no attribute nodes", {"use_attributes": False}, "attributes"),
    Ablation("no-user-edges", "no user-user edges", {"use_user_edges": False}, "user_edges"),
    Ablation("no-user-attributes", "no user attributes", {"use_user_features": False},
             "user_attributes"),
)
ABLATIONS_BY_KEY = {a.key: a for a in ABLATIONS}


def applicable_ablations(dataset) -> list[Ablation]:
    """The variants that change something on ``dataset`` (a data set without user-user edges
    has no "no user-user edges" variant, and so on)."""
    has = {
        "attributes": bool(getattr(dataset, "attribute_columns", None)),
        "user_edges": getattr(dataset, "user_edges", None) is not None
        and len(dataset.user_edges) > 0,
        "user_attributes": getattr(dataset, "users", None) is not None
        and len(dataset.users.columns) > 1,
    }
    return [a for a in ABLATIONS if a.needs is None or has[a.needs]]
