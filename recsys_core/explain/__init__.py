"""Explanations of recommendations: attention, SHAP, GNNExplainer, what-if, rationales.

Every method explains one (user, item) score of a fitted model and returns an
:class:`Explanation` (score, base value, a tidy ``kind / id / label / weight`` table and raw
details); figures come from :mod:`recsys_core.explain.plots`. Nothing here imports streamlit.

* :func:`attention_explanation` - the flagship's attention-weighted messages into the user and
  the item, an exact additive split of the score;
* :func:`shap_explanation` - SHAP values over removable evidence (history items, attribute
  values, neighbours, description sentences), by forward passes on edited graphs;
* :func:`lime_explanation` - LIME's weighted local linear surrogate over SHAP's features;
* :func:`gnn_explainer_explanation` - PyG's GNNExplainer edge masks on the pair's edges;
* :func:`what_if` - scores and top-K with interactions removed or added, no retraining;
* :func:`rationale` - a one-sentence reason grounded in an explanation's positive evidence;
* :func:`faithfulness` - the deletion test (top-k vs random-k history items).
* :func:`greedy_deletion` - the largest top-k drop the model's own scores find (the test's
  reference).

Which models: all methods work on the flagship ``gnn-llm``; ``shap``, ``lime``,
:func:`what_if` and the deletion test also on ``ease``, ``text-knn`` and ``lightgcn`` (history items only); ``mf`` and
``pop`` cannot rescore edited interactions without retraining
(:class:`HistoryEditError`).
"""

from __future__ import annotations

from ..dataset import Dataset
from .attention import ExplainUnsupportedError, attention_explanation
from .evidence import ATTRIBUTE, HISTORY_ITEM, KINDS, NEIGHBOUR, TEXT, Explanation
from .faithfulness import faithfulness, greedy_deletion, ranked_history
from .gnn_explainer import gnn_explainer_explanation
from .history import HistoryEditError, history_scorer
from .lime_explain import lime_explanation
from .rationale import rationale
from .shap_explain import shap_explanation
from .whatif import WhatIfResult, what_if

#: Explanation methods by name (the CLI's ``--method``).
METHODS = {
    "attention": attention_explanation,
    "shap": shap_explanation,
    "lime": lime_explanation,
    "gnnexplainer": gnn_explainer_explanation,
}


def explain(model, dataset: Dataset, user_id: str, item_id: str, method: str = "attention",
            **options) -> Explanation:
    """Explain ``score(user_id, item_id)`` with one of :data:`METHODS`.

    Args:
        model (Recommender): A fitted model.
        dataset (Dataset): Its dataset (interactions = training split).
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        method (str): ``"attention"``, ``"shap"``, ``"lime"`` or ``"gnnexplainer"``.
            (default: :obj:`"attention"`)
        **options: Keyword arguments of the method's function.

    Raises:
        UnknownIdError: Unknown user or item id.
        ExplainUnsupportedError: The method needs the flagship (attention, gnnexplainer).
        HistoryEditError: SHAP or LIME on a model that cannot rescore edited interactions.
    """
    if method not in METHODS:
        raise ExplainUnsupportedError(
            f"Unknown explanation method {method!r}; choose one of {', '.join(METHODS)}.")
    dataset.user_idx(str(user_id))  # unknown ids fail first, with the same clear error
    dataset.item_idx(str(item_id))
    return METHODS[method](model, dataset, str(user_id), str(item_id), **options)


__all__ = [
    "ATTRIBUTE",
    "HISTORY_ITEM",
    "KINDS",
    "METHODS",
    "NEIGHBOUR",
    "TEXT",
    "ExplainUnsupportedError",
    "Explanation",
    "HistoryEditError",
    "WhatIfResult",
    "attention_explanation",
    "explain",
    "faithfulness",
    "greedy_deletion",
    "gnn_explainer_explanation",
    "history_scorer",
    "lime_explanation",
    "ranked_history",
    "rationale",
    "shap_explanation",
    "what_if",
]
