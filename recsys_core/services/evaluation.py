"""Offline evaluation of a fitted model on the workspace's test split, and what a model chose on
its validation split, in words."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..dataset import ITEM_COL, USER_COL
from .jobs import JobContext, JobTarget, is_number

if TYPE_CHECKING:
    from .runs import Run
    from .workspace import Workspace

#: Cut-offs of the Recall/NDCG@K curves.
DEFAULT_KS = (1, 5, 10, 20, 50)
#: Cut-off of the headline metrics.
HEADLINE_K = 20


def evaluate_model(
    model: Any,
    ws: Workspace,
    ks: Sequence[int] = DEFAULT_KS,
    head_share: float = 0.8,
    k: int = HEADLINE_K,
) -> dict[str, Any]:
    """Offline metrics of a fitted model on the workspace's test split.

    Args:
        model (Recommender): A fitted model.
        ws (Workspace): Its data and split (``ws.train`` fitted on, ``ws.test`` held out).
        ks (sequence of int): Cut-offs of the ``at_k`` curves. (default: :data:`DEFAULT_KS`)
        head_share (float): Share of training interactions held by the head items (the long
            tail is the rest). (default: :obj:`0.8`)
        k (int): Cut-off of the summary, the slices and ``per_user``.
            (default: :data:`HEADLINE_K`)

    Returns:
        dict with ``k``, ``summary`` (:func:`recsys_core.metrics.evaluate_recommendations` at
        ``k``), ``at_k`` (long DataFrame ``k, metric, value``), ``per_user``
        (:func:`recsys_core.metrics.per_user_metrics` at ``k``), ``warm_items``,
        ``cold_items`` and ``long_tail`` (slice metrics where only warm / cold / long-tail items
        are ranked and only their test interactions count; warm items are those with
        training interactions, so ``warm_items`` and ``cold_items`` are the headline pair) and
        ``seconds``.
    """
    from ..metrics import RANKING_METRICS, evaluate_recommendations, per_user_metrics, slice_metrics

    _check_k(k)
    started = time.perf_counter()
    ds = ws.dataset
    test = ws.test
    users = pd.unique(test[USER_COL])
    k_max = max(max(ks), k)
    recs = model.recommend(users=users, k=k_max)
    top = recs[recs["rank"] <= k]
    summary = evaluate_recommendations(
        test, top, train=ws.train, k=k, num_items=ds.num_items, head_share=head_share
    )
    rows = []
    for cut in ks:
        per_k = per_user_metrics(test, recs, k=cut)
        for name, column in RANKING_METRICS.items():
            rows.append({"k": int(cut), "metric": name, "value": float(per_k[column].mean())})
    per_user = per_user_metrics(test, recs, k=k)
    train_items = set(ws.train[ITEM_COL])
    warm = [i for i in ds.item_ids if i in train_items]
    cold = [i for i in ds.item_ids if i not in train_items]
    tail = [i for i in ds.item_ids if i in train_items and i not in ws.head_items(head_share)]
    slices = {}
    for name, candidates in (("warm_items", warm), ("cold_items", cold), ("long_tail", tail)):
        if candidates:
            slice_recs = model.recommend(users=users, k=k, candidates=candidates)
            slices[name] = slice_metrics(test, slice_recs, k=k, items=candidates)
        else:
            slices[name] = {"n_users": 0, "n_items": 0, **dict.fromkeys(RANKING_METRICS)}
    return {
        "k": k,
        "summary": summary,
        "at_k": pd.DataFrame(rows),
        "per_user": per_user,
        "warm_items": slices["warm_items"],
        "cold_items": slices["cold_items"],
        "long_tail": slices["long_tail"],
        "seconds": time.perf_counter() - started,
    }


def chosen_on_validation(model: Any) -> str:
    """What a model chose on its validation split, in words (the flagship's graph filter and
    item-item path, a tuned peer's grid choice); empty when nothing was chosen."""
    from ..models.graph_filter import describe_selection

    record = getattr(model, "tuning", None)
    if record is not None:
        return record.describe()
    result = getattr(model, "train_result", None)
    return describe_selection(getattr(result, "selected", None) or {})


def validation_choice(model: Any) -> dict[str, Any]:
    """``chosen on validation``, ``how`` and ``valid ndcg@20`` of one fitted model (see
    :meth:`RunRegistry.validation_choices`)."""
    valid_ndcg = f"valid ndcg@{HEADLINE_K}"
    record = getattr(model, "tuning", None)
    if record is not None:  # a peer tuned by recsys_core.tuning
        settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in record.chosen.items())
        return {"chosen on validation": settings or "defaults (nothing to tune)",
                "how": (f"grid of {len(record.points)} on the validation split "
                        f"({record.valid_fraction:.0%} of each user's training interactions, "
                        f"seed {record.seed}), best {record.metric}, then refit on all"),
                valid_ndcg: record.best.ndcg if record.best is not None else None}
    result = getattr(model, "train_result", None)
    if result is not None:  # trained with early stopping on a carved validation split
        parts = [f"{result.best_epoch} epochs (early stopping)"]
        chosen = chosen_on_validation(model)
        if chosen:
            parts.append(chosen)
        ndcg = result.best_valid_ndcg
        return {"chosen on validation": "; ".join(parts),
                "how": "early stopping on the validation split carved from the training "
                       "interactions" + (", then refit on all" if result.refit_epochs else ""),
                valid_ndcg: float(ndcg) if is_number(ndcg) else None}
    weight = (getattr(model, "validation", None) or {}).get("popularity_weight")
    if weight is not None:  # text-pop's pseudo-cold choice
        recall = model.validation["recall_by_weight"][str(weight)]
        return {"chosen on validation": f"popularity weight {weight:g}",
                "how": (f"pseudo-cold validation: {model.validation['held_out_items']} items "
                        f"held out, Recall@{model.valid_k} {recall:.4f}"),
                valid_ndcg: None}
    return {"chosen on validation": "constructor settings (nothing chosen on validation)",
            "how": "", valid_ndcg: None}


# ---------------------------------------------------------------------------------- trust
#: Split choices of the Metrics page: the workspace's own split (models as trained) and the
#: time-aware ones of :func:`recsys_core.splits.split_interactions` (models refitted).
WORKSPACE_SPLIT = "random"
#: Cache key prefix of refitted models in ``Workspace.cache``.
_SPLIT_CACHE = "split-evaluation"


def _check_k(k: Any) -> None:
    from ..metrics import MetricInputError

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MetricInputError(f"K must be a positive integer, got {k!r}.")


def run_metrics(run: Run, ws: Workspace, k: int = HEADLINE_K) -> dict[str, Any]:
    """:func:`evaluate_model` of a run at cut-off ``k``, computed once per ``k`` and kept in
    the run's cache (``run.cache["metrics"]`` holds the :data:`HEADLINE_K` one, as the
    sidebar and the reports read it).

    Args:
        run (Run): A run of ``ws``.
        ws (Workspace): The session's workspace.
        k (int): Cut-off. (default: :data:`HEADLINE_K`)
    """
    key = "metrics" if k == HEADLINE_K else f"metrics@{k}"
    if run.cache.get(key) is None:
        run.cache[key] = evaluate_model(run.model, ws, k=k)
    return run.cache[key]


def significance_frame(per_user: pd.DataFrame) -> pd.DataFrame:
    """The per-user table of :func:`evaluate_model` in the column names of
    :func:`recsys_core.significance.per_user_metrics` (``average_precision`` -> ``map``)."""
    from ..significance import metric_columns

    return metric_columns(per_user, col_user=USER_COL)


def confidence_table(
    results: Mapping[str, Mapping[str, Any]],
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every model's per-user metrics with bootstrap confidence intervals.

    Args:
        results (mapping): Model name -> :func:`evaluate_model` output.
        confidence (float): Coverage. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed (the same for every model). (default: :obj:`0`)

    Returns:
        pandas.DataFrame: ``model``, ``k``, then the columns of
        :func:`recsys_core.significance.metrics_with_ci` (``metric``, ``value``, ``low``,
        ``high``, ``confidence``, ``n_users``), one row per model and metric.
    """
    from ..significance import metrics_with_ci

    frames = []
    for name, m in results.items():
        table = metrics_with_ci(significance_frame(m["per_user"]), confidence=confidence,
                                n_resamples=n_resamples, seed=seed)
        table.insert(0, "k", int(m.get("k", HEADLINE_K)))
        table.insert(0, "model", name)
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["model", "k", "metric", "value", "low", "high", "confidence", "n_users"])


def compare_models(
    result_a: Mapping[str, Any],
    result_b: Mapping[str, Any],
    method: str = "bootstrap",
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired tests of two models evaluated on the same test users, every metric.

    Args:
        result_a (mapping): :func:`evaluate_model` output of model A.
        result_b (mapping): Of model B, at the same ``k`` on the same split.
        method (str): ``"bootstrap"`` or ``"wilcoxon"``. (default: :obj:`"bootstrap"`)
        confidence (float): Coverage of the difference's interval. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed. (default: :obj:`0`)

    Returns:
        pandas.DataFrame: :func:`recsys_core.significance.paired_tests`, one row per metric.
    """
    from ..significance import paired_tests

    return paired_tests(significance_frame(result_a["per_user"]),
                        significance_frame(result_b["per_user"]), method=method,
                        confidence=confidence, n_resamples=n_resamples, seed=seed)


@dataclass
class SplitEvaluation:
    """The session's models refitted on another split of the same data.

    Args:
        method (str): One of :data:`recsys_core.splits.SPLIT_METHODS`.
        description (str): What the split is, in words.
        workspace (Workspace): The data with that split's train and test frames.
        models (dict): Run id -> model refitted with the run's settings on that train frame.
        seconds (dict): Run id -> fit seconds.
        results (dict): ``(run id, k)`` -> :func:`evaluate_model` output (filled on demand).
    """

    method: str
    description: str
    workspace: Workspace
    models: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    results: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def metrics(self, run_id: str, k: int = HEADLINE_K) -> dict[str, Any]:
        """:func:`evaluate_model` of one refitted model at ``k`` (computed once)."""
        key = (run_id, int(k))
        if key not in self.results:
            self.results[key] = evaluate_model(self.models[run_id], self.workspace, k=k)
        return self.results[key]


def split_key(method: str, quantile: float | None = None, cut: Any = None) -> tuple:
    """Cache key of a split's refitted models in ``Workspace.cache``."""
    return (_SPLIT_CACHE, method, None if cut is not None else quantile,
            None if cut is None else str(cut))


def split_workspace(ws: Workspace, method: str, quantile: float | None = None,
                    cut: Any = None, seed: int = 42) -> tuple[Workspace, str]:
    """``ws``'s data with a :func:`recsys_core.splits.split_interactions` train/test split
    (and its item text embeddings, so nothing is encoded again), and the split in words.

    Raises:
        DataError: A time split on data without timestamps, or a cut outside the data.
    """
    from ..splits import DEFAULT_TIME_CUT_QUANTILE, describe_split, split_interactions
    from .workspace import Workspace

    quantile = DEFAULT_TIME_CUT_QUANTILE if quantile is None else quantile
    split = split_interactions(ws.dataset.interactions, method, seed=seed, quantile=quantile,
                               cut=cut)
    if split.test.empty:
        from ..errors import DataError

        raise DataError(f"the {method} split leaves no test interaction (users need more "
                        "interactions, or a different cut).")
    other = Workspace(dataset=ws.dataset, train=split.train.reset_index(drop=True),
                      test=split.test.reset_index(drop=True), source=ws.source,
                      item_text=ws.item_text)
    return other, describe_split(method, quantile=quantile, cut=cut, seed=seed)


def refit_on_split_target(
    ws: Workspace,
    run_ids: Sequence[str],
    method: str,
    quantile: float | None = None,
    cut: Any = None,
    encoder_factory: Callable[[], Any] | None = None,
) -> JobTarget:
    """A job target that refits the runs' models on another split of the workspace's data.

    Each run's model is remade with its settings
    (:func:`recsys_core.services.plans.run_settings`, no new tuning) and fitted on the split's
    training frame; the models land in ``ws.cache[split_key(...)]`` as a
    :class:`SplitEvaluation` (not as runs: the session's runs keep their own split). The split
    is made before the job starts, so a bad split fails at once with its message.

    Args:
        ws (Workspace): The session's workspace.
        run_ids (sequence of str): Runs to refit.
        method (str): ``"temporal"`` or ``"time-cut"`` (``"random"`` also works).
        quantile (float, optional): Time-cut quantile. (default: :obj:`None`: 0.9)
        cut (optional): Time-cut date or epoch seconds (overrides ``quantile``).
        encoder_factory (callable, optional): The shared text encoder.

    Raises:
        DataError: The split cannot be made.
    """
    from .fitting import fit_model
    from .plans import run_settings

    other, description = split_workspace(ws, method, quantile=quantile, cut=cut)
    plan = [(run_id, ws.runs.get(run_id)) for run_id in run_ids]
    key = split_key(method, quantile, cut)

    def target(ctx: JobContext) -> None:
        result = SplitEvaluation(method, description, other)
        for i, (run_id, run) in enumerate(plan):
            ctx.check_stop()
            trained = fit_model(other, run.model_name, run_settings(run), ctx, encoder_factory,
                                evaluate=False, activate=False, tune=False,
                                overall=(i / len(plan), (i + 1) / len(plan)))
            result.models[run_id] = trained.model
            result.seconds[run_id] = trained.seconds
        ctx.progress({"stage": "evaluate", "fraction": 1.0, "overall": 1.0})
        ws.cache[key] = result

    return target


def split_evaluation(ws: Workspace, method: str, quantile: float | None = None,
                     cut: Any = None) -> SplitEvaluation | None:
    """The refitted models of :func:`refit_on_split_target` for this split, if done."""
    return ws.cache.get(split_key(method, quantile, cut))
