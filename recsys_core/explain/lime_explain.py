"""LIME explanations of one (user, item) score over the same removable evidence as SHAP.

The interpretable features and the function explained are exactly SHAP's, the game of
:mod:`~recsys_core.explain.removal`: one binary feature per history item, attribute
value of the item, user-user neighbour and description chunk (the flagship; history items only
for ``ease``, ``text-knn`` and ``lightgcn``), with the same caps and groups; switching a feature
off removes that evidence and the model is re-run on the edited graph (nothing is retrained).

LIME (Ribeiro et al., 2016) fits a weighted linear surrogate around the unedited pair. The
neighbourhood is drawn as :class:`lime.lime_text.LimeTextExplainer` draws it for the words of a
document: the first sample keeps everything; each other sample removes a number of features
drawn uniformly from ``1..d``, then which ones, uniformly. Each sample is weighted by the
exponential kernel :math:`\\sqrt{\\exp(-D^2 / w^2)}` of its cosine distance :math:`D` (times
100) to the all-on vector, and :class:`lime.lime_base.LimeBase` fits its ridge regression
(``alpha = 1``) on all the features. A feature's LIME weight is its coefficient: the score the
surrogate gains when that evidence is present, in score units. Every draw comes from the
explanation's own :class:`numpy.random.Generator` (and LimeBase's own ``RandomState``), never
from NumPy's global generator, so the same seed gives the same weights.
"""

from __future__ import annotations

import time
from typing import Unpack

import numpy as np

from ..dataset import Dataset
from ..rng import numpy_generator
from .evidence import Explanation
from .removal import EvidenceOptions, feature_explanation, removal_game
from .shap_explain import import_shap

#: Kernel width of :class:`lime.lime_text.LimeTextExplainer` (distances are cosine x 100).
DEFAULT_KERNEL_WIDTH = 25.0

#: Neighbourhood samples (forward passes at most; repeated masks are scored once).
DEFAULT_NUM_SAMPLES = 200


def lime_explanation(
    model,
    dataset: Dataset,
    user_id: str,
    item_id: str,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    kernel_width: float = DEFAULT_KERNEL_WIDTH,
    seed: int = 0,
    **evidence: Unpack[EvidenceOptions],
) -> Explanation:
    """LIME weights of ``score(user, item)`` over removable evidence (see module docstring).

    Args:
        model (Recommender): A fitted ``gnn-llm`` (all feature kinds) or ``ease`` /
            ``text-knn`` / ``lightgcn`` model (history items only).
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        num_samples (int): Neighbourhood size, the unedited pair included; each distinct
            sample costs one forward pass. (default: :obj:`200`)
        kernel_width (float): Width :math:`w` of the exponential kernel over cosine distances
            times 100. (default: :obj:`25.0`)
        seed (int): Seed of the neighbourhood. (default: :obj:`0`)
        **evidence: The features' caps and text encoder
            (:class:`~recsys_core.explain.removal.EvidenceOptions`, each documented on
            :func:`~recsys_core.explain.removal.removal_game`).

    Returns:
        Explanation: ``method="lime"``; ``contributions`` the individual features' weights,
        ``other`` the grouped ones (``[{"kind", "label", "weight", "ids"}]``), ``base_value``
        the surrogate's intercept (its prediction with everything removed);
        ``details["lime"]`` holds ``intercept``, ``r2`` (weighted fit of the surrogate),
        ``local_prediction`` (the surrogate at the unedited pair), ``num_samples`` and
        ``kernel_width``; ``details["shap"]`` the weights as a :class:`shap.Explanation`
        from the intercept to the local prediction (for the waterfall chart SHAP uses);
        ``details["features"]``, ``details["evaluations"]`` and ``details["seconds"]``.

    Raises:
        UnknownIdError: Unknown user or item id.
        HistoryEditError: The model cannot rescore edited interactions (``mf``, ``pop``).
        ValueError: ``num_samples`` below 2 or a non-positive ``kernel_width``.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    if not kernel_width > 0:
        raise ValueError(f"kernel_width must be positive, got {kernel_width}")
    start = time.perf_counter()
    game = removal_game(model, dataset, user_id, item_id, **evidence)
    num = len(game.feature_list)
    score = game.score()
    if num == 0:
        fit = {"intercept": score, "r2": float("nan"), "local_prediction": score,
               "num_samples": 1, "kernel_width": float(kernel_width)}
        return feature_explanation("lime", user_id, item_id, game, score, np.zeros(0),
                                   "lime_weight", {"lime": fit, "shap": None}, start)
    masks = lime_neighbourhood(num, num_samples, numpy_generator(seed))
    scores = np.asarray(game(masks), dtype=np.float64)
    weights, fit = lime_surrogate(masks, scores, kernel_width, seed)
    shap = import_shap()
    values = shap.Explanation(values=weights, base_values=fit["intercept"], data=np.ones(num),
                              feature_names=[f.label for f in game.feature_list])
    fit.update(num_samples=int(num_samples), kernel_width=float(kernel_width))
    return feature_explanation("lime", user_id, item_id, game, fit["intercept"], weights,
                               "lime_weight", {"lime": fit, "shap": values}, start)


def lime_neighbourhood(num: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """LIME's binary neighbourhood of the all-on instance, drawn as
    :class:`lime.lime_text.LimeTextExplainer` perturbs a document: row 0 keeps every feature;
    each other row removes ``s ~ U{1..num}`` features chosen uniformly without replacement.

    Args:
        num (int): Number of features (at least 1).
        num_samples (int): Rows, the all-on row included.
        rng (numpy.random.Generator): Source of the draws.

    Returns:
        numpy.ndarray: ``[num_samples, num]`` masks of 0.0 / 1.0.
    """
    masks = np.ones((num_samples, num))
    sizes = rng.integers(1, num + 1, size=num_samples - 1)
    for row, size in enumerate(sizes, start=1):
        masks[row, rng.choice(num, size=int(size), replace=False)] = 0.0
    return masks


def lime_surrogate(masks: np.ndarray, scores: np.ndarray, kernel_width: float = 25.0,
                   seed: int = 0) -> tuple[np.ndarray, dict]:
    """Fit LIME's weighted linear surrogate with :class:`lime.lime_base.LimeBase`.

    Args:
        masks (numpy.ndarray): ``[n, d]`` binary neighbourhood; row 0 is the explained
            instance (all ones).
        scores (numpy.ndarray): ``[n]`` model scores of the rows.
        kernel_width (float): Kernel width over cosine distances times 100.
            (default: :obj:`25.0`)
        seed (int): Seed of LimeBase's own ``RandomState`` (handed to its ridge regression).
            (default: :obj:`0`)

    Returns:
        ``(weights [d], fit)``: the surrogate's coefficients in feature order, and ``fit`` with
        ``intercept``, ``r2`` and ``local_prediction``.
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    masks = np.asarray(masks, dtype=np.float64)
    distances = pairwise_distances(masks, masks[:1], metric="cosine").ravel() * 100

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))

    base = LimeBase(kernel, verbose=False, random_state=np.random.RandomState(seed))
    intercept, ranked, r2, local = base.explain_instance_with_data(
        masks, np.asarray(scores, dtype=np.float64)[:, None], distances, label=0,
        num_features=masks.shape[1], feature_selection="none")
    weights = np.zeros(masks.shape[1])
    for feature, weight in ranked:
        weights[int(feature)] = float(weight)
    return weights, {"intercept": float(intercept), "r2": float(r2),
                     "local_prediction": float(np.ravel(local)[0])}


__all__ = ["DEFAULT_KERNEL_WIDTH", "DEFAULT_NUM_SAMPLES", "lime_explanation",
           "lime_neighbourhood", "lime_surrogate"]
