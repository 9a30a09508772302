"""SHAP explanations of one (user, item) score over interpretable, removable evidence.

The explained function is the removable-evidence game of
:mod:`~recsys_core.explain.removal` (history items, attribute values, user-user neighbours
and description chunks, with their caps): a binary vector over features maps to the model's
score with the features that are 0 taken away, by a real forward pass (nothing is
retrained). SHAP values come from the estimator of :class:`shap.PermutationExplainer`
(:func:`permutation_shap_values`, its permutations drawn from the explanation's own
:class:`numpy.random.Generator`, not NumPy's global one) (antithetic permutations), whose
values add up exactly to ``score - base_value``, where ``base_value`` is the score with every
feature removed.
"""

from __future__ import annotations

import sys
import time
from typing import Unpack

import numpy as np

from ..dataset import Dataset
from ..rng import numpy_generator
from .evidence import Explanation
from .removal import EvidenceOptions, feature_explanation, removal_game


def import_shap():
    """Import :mod:`shap`, with numba's JIT off while its modules load (if not loaded yet).

    shap compiles a few numba helpers on first use, 10-20 s per process on a 2-core CPU,
    although here they only loop over a few hundred evaluations; as plain Python they cost
    milliseconds (``numba.config.DISABLE_JIT`` is read when the functions are decorated).
    """
    if "shap" in sys.modules:
        return sys.modules["shap"]
    import numba

    previous = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        import shap
    finally:
        numba.config.DISABLE_JIT = previous
    return shap


def shap_explanation(
    model,
    dataset: Dataset,
    user_id: str,
    item_id: str,
    npermutations: int = 3,
    seed: int = 0,
    **evidence: Unpack[EvidenceOptions],
) -> Explanation:
    """SHAP values of ``score(user, item)`` over removable evidence (see module docstring).

    Args:
        model (Recommender): A fitted ``gnn-llm`` (all feature kinds) or ``ease`` /
            ``text-knn`` / ``lightgcn`` model (history items only).
        dataset (Dataset): Its dataset.
        user_id (str): Raw user id.
        item_id (str): Raw item id.
        npermutations (int): Antithetic permutations of the permutation explainer; the cost
            is ``npermutations * (2 * features + 1)`` forward passes. (default: :obj:`3`)
        seed (int): Seed of the permutations. (default: :obj:`0`)
        **evidence: The features' caps and text encoder
            (:class:`~recsys_core.explain.removal.EvidenceOptions`, each documented on
            :func:`~recsys_core.explain.removal.removal_game`).

    Returns:
        Explanation: ``contributions`` of the individual features, ``other`` the grouped ones
        (``[{"kind", "label", "weight", "ids"}]``), ``details["shap"]`` the
        :class:`shap.Explanation` (for :mod:`~recsys_core.explain.plots`),
        ``details["features"]`` the feature table, ``details["evaluations"]`` and
        ``details["seconds"]``.

    Raises:
        UnknownIdError: Unknown user or item id.
        HistoryEditError: The model cannot rescore edited interactions (``mf``, ``pop``).
    """
    shap = import_shap()
    start = time.perf_counter()
    game = removal_game(model, dataset, user_id, item_id, **evidence)
    num = len(game.feature_list)
    score = game.score()
    if num == 0:
        return feature_explanation("shap", user_id, item_id, game, score, np.zeros(0),
                                   "shap_value", {"shap": None}, start)
    values, base = permutation_shap_values(game, num, max(1, npermutations),
                                           numpy_generator(seed))
    explained = shap.Explanation(values=values, base_values=base, data=np.ones(num),
                                 feature_names=[f.label for f in game.feature_list])
    return feature_explanation("shap", user_id, item_id, game, base, values, "shap_value",
                               {"shap": explained}, start)


def permutation_shap_values(
    game, num: int, npermutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Antithetic permutation estimate of the SHAP values of ``game`` (as
    :class:`shap.PermutationExplainer` computes them, with permutations drawn from ``rng``).

    For each random order of the features, the features are switched on one by one from
    all off to all on, then off again in the same order; each feature's value is the mean of
    the score changes it causes. The values add up exactly to ``game(all on) - game(all off)``.

    Args:
        game (callable): ``[n, num]`` binary masks -> ``[n]`` scores.
        num (int): Number of features (at least 1).
        npermutations (int): Random orders (each costs ``2 * num + 1`` evaluations).
        rng (numpy.random.Generator): Source of the orders.

    Returns:
        ``(values [num], base)``: the SHAP values and the all-off score.
    """
    values = np.zeros(num)
    base = 0.0
    for _ in range(npermutations):
        order = rng.permutation(num)
        masks = np.zeros((2 * num + 1, num))
        for step, feature in enumerate(order, start=1):
            masks[step:step + num, feature] = 1.0  # on from ``step``, off again num rows later
        outputs = np.asarray(game(masks), dtype=np.float64)
        changes = np.diff(outputs)
        values[order] += changes[:num] - changes[num:]
        base = float(outputs[0])
    return values / (2 * npermutations), base


__all__ = ["import_shap", "permutation_shap_values", "shap_explanation"]
