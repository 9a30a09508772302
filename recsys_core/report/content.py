"""What a report says: every number and table of :func:`report_content`, computed from a
saved (or session) run and held-out interactions. Rendering is :mod:`.render`'s job.

The run is compared with baselines fitted on the same training interactions, every metric
with a per-user bootstrap confidence interval (:mod:`recsys_core.significance`); beyond
accuracy: catalogue coverage, novelty and popularity bias; the cold-item and long-tail slices;
the deletion test of the explanation methods; and three example users with their
recommendations and explanations. With a :class:`~recsys_core.privacy.Pseudonymizer`, every
user id is replaced by its pseudonym and any group of fewer than ``min_group_users`` users is
suppressed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, USER_COL, Dataset
from ..errors import RecScopeError

#: Baselines fitted next to the run (fast, and the ones every model must beat).
DEFAULT_BASELINES = ("pop", "ease")
#: EASE inverts an items x items matrix: left out above this many items.
EASE_MAX_ITEMS = 20_000
#: Metrics of the headline table, in order (columns of ``significance.per_user_metrics``).
REPORT_METRICS = ("recall", "ndcg", "precision", "map", "hit")
#: Slices reported, with their titles.
SLICES = {"cold_items": "cold items", "long_tail": "long tail"}
#: What a report says for a slice nobody is in.
EMPTY_SLICE_TEXT = "no users in this slice"
ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class ReportOptions:
    """Settings of a report.

    Args:
        k (int): Cut-off of the top-K metrics. (default: :obj:`20`)
        baselines (sequence of str): Models fitted on the run's training data for comparison
            (the run's own model is left out). (default: :data:`DEFAULT_BASELINES`)
        n_examples (int): Example users. (default: :obj:`3`)
        n_recommendations (int): Recommendations listed per example user. (default: :obj:`10`)
        faithfulness_users (int): Users of the deletion test. (default: :obj:`5`)
        faithfulness_k (int): History items removed by the deletion test. (default: :obj:`3`)
        shap_permutations (int): Permutations of SHAP's permutation explainer.
            (default: :obj:`1`)
        confidence (float): Coverage of the confidence intervals. (default: :obj:`0.95`)
        n_resamples (int): Bootstrap resamples. (default: :obj:`1000`)
        seed (int): Seed of the bootstrap, the example and deletion-test users.
            (default: :obj:`0`)
        min_group_users (int): In privacy mode, groups with fewer users are suppressed.
            (default: :obj:`5`)
    """

    k: int = 20
    baselines: Sequence[str] = DEFAULT_BASELINES
    n_examples: int = 3
    n_recommendations: int = 10
    faithfulness_users: int = 5
    faithfulness_k: int = 3
    shap_permutations: int = 1
    confidence: float = 0.95
    n_resamples: int = 1000
    seed: int = 0
    min_group_users: int = 5


@dataclass
class ModelResult:
    """One model's numbers in the report.

    Args:
        name (str): Display name (the run's id, or the baseline's model name).
        role (str): ``"run"`` or ``"baseline"``.
        metrics (pandas.DataFrame): ``metric, value, low, high, confidence, n_users``.
        beyond (dict): ``coverage``, ``novelty``, ``popularity percentile``.
        slices (dict): Slice key -> ``n_users, n_items, recall, ndcg, ...`` (``None``
            values when nobody is in it).
        fit_seconds (float, optional): Fit time (baselines; the run's is in the model
            section).
    """

    name: str
    role: str
    metrics: pd.DataFrame
    beyond: dict[str, Any]
    slices: dict[str, dict[str, Any]]
    fit_seconds: float | None = None


@dataclass
class ExampleUser:
    """An example user with recommendations and explanations of the first one."""

    shown_id: str
    history_size: int
    history: pd.DataFrame
    recommendations: pd.DataFrame
    item_title: str
    rationale: str | None
    explanations: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportContent:
    """Everything a report shows (see :func:`report_content`)."""

    title: str
    generated: str
    privacy: bool
    min_group_users: int
    k: int
    confidence: float
    data: list[tuple[str, Any]]
    skipped: dict[str, int]
    model: dict[str, Any]
    results: list[ModelResult]
    faithfulness: dict[str, dict[str, Any]]
    faithfulness_note: str
    examples: list[ExampleUser]
    notes: list[str]


def report_content(
    model: Any,
    dataset: Dataset,
    info: dict[str, Any],
    test: pd.DataFrame,
    test_name: str = "test split",
    skipped: dict[str, int] | None = None,
    pseudonymizer: Any = None,
    options: ReportOptions | None = None,
    on_progress: ProgressCallback | None = None,
) -> ReportContent:
    """Compute a report's content.

    Args:
        model (Recommender): The run's fitted model.
        dataset (Dataset): Its dataset (interactions = its training split).
        info (dict): The run's ``run.json`` (model, config, data, versions, extra).
        test (pandas.DataFrame): Held-out interactions of known users and items, none of them
            training interactions (see :func:`recsys_core.cli.evaluate.align_test`).
        test_name (str): Where the test interactions came from (shown). (default:
            :obj:`"test split"`)
        skipped (dict, optional): Test rows left out, by reason (shown as counts).
        pseudonymizer (Pseudonymizer, optional): Privacy mode: user ids become its
            pseudonyms and small groups are suppressed. (default: :obj:`None`)
        options (ReportOptions, optional): Settings. (default: :class:`ReportOptions`)
        on_progress (callable, optional): Called with ``{"stage", "fraction"}`` dicts.

    Raises:
        RecScopeError: No test interaction to evaluate, or bad options.
    """
    options = options or ReportOptions()
    if options.k < 1:
        raise RecScopeError(f"The report's k must be at least 1, got {options.k}.")
    if test is None or not len(test):
        raise RecScopeError(f"'{test_name}' has no interaction the run can be evaluated on; "
                            "give held-out interactions of the run's users and items.")
    progress = on_progress or (lambda event: None)
    train = dataset.interactions
    notes: list[str] = []

    progress({"stage": "evaluate the run", "fraction": 0.0})
    run_name = str((info.get("extra") or {}).get("run_id") or info["model"])
    results = [_evaluate(model, run_name, "run", dataset, train, test, options)]
    baselines = [b for b in options.baselines if b != info["model"]]
    for j, name in enumerate(baselines):
        progress({"stage": f"fit and evaluate the {name} baseline",
                  "fraction": 0.1 + 0.2 * j / max(len(baselines), 1)})
        fitted = _fit_baseline(name, dataset, train, notes)
        if fitted is not None:
            baseline, seconds = fitted
            result = _evaluate(baseline, name, "baseline", dataset, train, test, options)
            result.fit_seconds = seconds
            results.append(result)

    progress({"stage": "deletion test", "fraction": 0.35})
    examples_users = _example_users(train, test, options)
    faith, faith_note = _faithfulness(model, dataset, examples_users, options)
    progress({"stage": "example users", "fraction": 0.7})
    examples = []
    for j, user in enumerate(examples_users):
        examples.append(_example(model, dataset, user, pseudonymizer, options))
        progress({"stage": "example users",
                  "fraction": 0.7 + 0.3 * (j + 1) / max(len(examples_users), 1)})
    progress({"stage": "done", "fraction": 1.0})

    data = info.get("data") or {}
    test_users = int(pd.unique(test[USER_COL]).size)
    return ReportContent(
        title=f"{info['model']} on {data.get('name') or dataset.name}",
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        privacy=pseudonymizer is not None,
        min_group_users=int(options.min_group_users),
        k=int(options.k),
        confidence=float(options.confidence),
        data=[
            ("data set", data.get("name") or dataset.name),
            ("users", f"{dataset.num_users:,}"),
            ("items", f"{dataset.num_items:,}"),
            ("training interactions", f"{len(train):,}"),
            ("items without training interactions (cold)",
             f"{int(dataset.num_items - np.unique(train[ITEM_COL]).size):,}"),
            ("item attributes", ", ".join(map(str, dataset.attribute_columns)) or "none"),
            ("user-user edges", f"{0 if dataset.user_edges is None else len(dataset.user_edges):,}"),
            ("test interactions", f"{len(test):,} from {test_name}"),
            ("test users", f"{test_users:,}"),
        ],
        skipped={k: int(v) for k, v in (skipped or {}).items()},
        model=_model_section(info),
        results=results,
        faithfulness=faith,
        faithfulness_note=faith_note,
        examples=examples,
        notes=notes,
    )


# ---------------------------------------------------------------------------- evaluation
def _fit_baseline(name: str, dataset: Dataset, train: pd.DataFrame,
                  notes: list[str]) -> tuple[Any, float] | None:
    from ..models import available_models, create_model

    if name not in available_models():
        notes.append(f"The {name} baseline is not available in this installation.")
        return None
    if name == "ease" and dataset.num_items > EASE_MAX_ITEMS:
        notes.append(f"EASE is left out: {dataset.num_items:,} items is more than "
                     f"{EASE_MAX_ITEMS:,} (it inverts an items x items matrix).")
        return None
    started = time.perf_counter()
    model = create_model(name).fit(dataset, train)
    return model, time.perf_counter() - started


def _evaluate(model: Any, name: str, role: str, dataset: Dataset, train: pd.DataFrame,
              test: pd.DataFrame, options: ReportOptions) -> ModelResult:
    """Headline metrics with bootstrap intervals, beyond-accuracy measures and slices."""
    from ..metrics import RANKING_METRICS, evaluate_recommendations, head_items, slice_metrics
    from ..significance import metrics_with_ci, per_user_metrics

    k = int(options.k)
    users = pd.unique(test[USER_COL])
    recs = model.recommend(users=users, k=k)
    per_user = per_user_metrics(test, recs, k=k)
    metrics = metrics_with_ci(per_user, list(REPORT_METRICS), options.confidence,
                              options.n_resamples, options.seed)
    summary = evaluate_recommendations(test, recs, train=train, k=k, num_items=dataset.num_items)
    beyond = {"coverage": summary.get("catalog_coverage"), "novelty": summary.get("novelty"),
              "popularity percentile": summary.get("popularity_bias")}
    train_items = set(train[ITEM_COL])
    head = set(map(str, head_items(train, 0.8)))
    candidates = {
        "cold_items": [i for i in dataset.item_ids if i not in train_items],
        "long_tail": [i for i in dataset.item_ids if i in train_items and i not in head],
    }
    slices = {}
    for key, items in candidates.items():
        in_slice = test[test[ITEM_COL].isin(set(items))]
        if not items or not len(in_slice):
            slices[key] = {"n_users": 0, "n_items": len(items), **dict.fromkeys(RANKING_METRICS)}
            continue
        slice_recs = model.recommend(users=pd.unique(in_slice[USER_COL]), k=k, candidates=items)
        slices[key] = slice_metrics(test, slice_recs, k=k, items=items)
    return ModelResult(name=name, role=role, metrics=metrics, beyond=beyond, slices=slices)


# ---------------------------------------------------------------------------- explanations
def _example_users(train: pd.DataFrame, test: pd.DataFrame, options: ReportOptions) -> list[str]:
    """Test users at the quartiles of training activity (light, typical, heavy), each with
    more history items than the deletion test removes."""
    counts = train[USER_COL].value_counts()
    tested = pd.unique(test[USER_COL])
    pool = counts.reindex(tested).dropna()
    pool = pool[pool > options.faithfulness_k].sort_values(kind="stable")
    if not len(pool):
        return []
    n = min(options.n_examples, len(pool))
    positions = sorted({int(round(q * (len(pool) - 1)))
                        for q in np.linspace(0.25, 0.75, n)} if n > 1 else {len(pool) // 2})
    picked = [str(pool.index[p]) for p in positions]
    rest = [str(u) for u in pool.index if str(u) not in picked]
    return picked + rest[: n - len(picked)]


def _methods(model: Any) -> list[str]:
    from ..explain.engine import is_flagship
    from ..explain.history import HistoryEditError, history_scorer

    if is_flagship(model):
        return ["attention", "shap"]
    try:
        history_scorer(model)
    except HistoryEditError:
        return []
    return ["shap"]


def _options(method: str, options: ReportOptions) -> dict[str, Any]:
    return {"max_text": 0, "npermutations": options.shap_permutations} if method == "shap" else {}


def _faithfulness(model: Any, dataset: Dataset, examples: list[str],
                  options: ReportOptions) -> tuple[dict[str, dict[str, Any]], str]:
    from ..explain import faithfulness
    from ..views.explain import faithfulness_users

    methods = _methods(model)
    if not methods:
        return {}, (f"The {getattr(model, 'name', 'model')} model cannot rescore an edited "
                    "history without retraining, so its explanations cannot be tested by "
                    "deletion.")
    if not examples:
        return {}, (f"No test user has more than {options.faithfulness_k} training "
                    "interactions: the deletion test needs some left after removing them.")
    users = faithfulness_users(dataset.interactions, examples[0], options.faithfulness_users,
                               options.faithfulness_k, seed=options.seed)
    out = {}
    for method in methods:
        result = faithfulness(model, dataset, method, users, k=options.faithfulness_k,
                              n_random=3, seed=options.seed, curves=True,
                              explain_options=_options(method, options))
        out[method] = {key: result.get(key) for key in (
            "users", "skipped", "mean_drop_top", "mean_drop_random", "ratio",
            "top_beats_random", "deletion", "insertion")}
    return out, (f"Deletion test on {len(users)} users' top recommendation: the "
                 f"{options.faithfulness_k} history items each method ranks highest are "
                 f"removed, against {options.faithfulness_k} random ones (3 draws); a faithful "
                 "explanation lowers the score much more. Nothing is retrained.")


def _example(model: Any, dataset: Dataset, user: str, pseudonymizer: Any,
             options: ReportOptions) -> ExampleUser:
    from ..explain import explain
    from ..explain.evidence import NEIGHBOUR
    from ..explain.rationale import rationale

    titles = dataset.items["title"].astype(str).to_numpy()
    train = dataset.interactions
    rows = train[train[USER_COL] == user].sort_values("timestamp", ascending=False,
                                                      na_position="last", kind="stable")
    history = pd.DataFrame({"title": titles[rows["item_idx"].to_numpy()],
                            "rating": rows["rating"].to_numpy()}).head(8)
    recs = model.recommend(users=[user], k=options.n_recommendations)
    counts = np.bincount(train["item_idx"].to_numpy(), minlength=dataset.num_items)
    rec_idx = dataset.item_idx(recs[ITEM_COL]) if len(recs) else np.array([], dtype=int)
    recommendations = pd.DataFrame({
        "rank": recs["rank"].to_numpy() if len(recs) else [],
        "title": titles[rec_idx],
        "score": recs["score"].to_numpy() if len(recs) else [],
        "cold": counts[rec_idx] == 0,
    })
    shown = pseudonymizer.pseudonym(user) if pseudonymizer is not None else user
    example = ExampleUser(shown_id=str(shown), history_size=len(rows), history=history,
                          recommendations=recommendations,
                          item_title=str(titles[rec_idx[0]]) if len(rec_idx) else "",
                          rationale=None)
    if not len(recs):
        example.notes.append("The model has nothing left to recommend to this user.")
        return example
    item = str(recs[ITEM_COL].iloc[0])
    methods = _methods(model)
    if not methods:
        example.notes.append(f"The {getattr(model, 'name', 'model')} model cannot be explained "
                             "(it cannot rescore an edited history).")
    for method in methods:
        try:
            exp = explain(model, dataset, user, item, method, **_options(method, options))
        except RecScopeError as exc:
            example.notes.append(f"{method}: {exc}")
            continue
        contributions = exp.contributions
        if pseudonymizer is not None:  # other users: pseudonyms, never named in the rationale
            is_user = contributions.get("node_type", pd.Series(dtype=str)).astype(str) == "user"
            named = contributions[~(is_user & (contributions["kind"] == NEIGHBOUR))]
            contributions = contributions.copy()
            contributions.loc[is_user, "label"] = [
                f"user {pseudonymizer.pseudonym(i)}" for i in contributions.loc[is_user, "id"]]
            exp_for_text = _with_contributions(exp, named)
        else:
            exp_for_text = exp
        if example.rationale is None:
            example.rationale = rationale(exp_for_text, dataset)
        example.explanations[method] = contributions[["kind", "label", "weight"]].copy()
    return example


def _with_contributions(exp: Any, contributions: pd.DataFrame) -> Any:
    from dataclasses import replace

    return replace(exp, contributions=contributions.reset_index(drop=True), other=None)


# ---------------------------------------------------------------------------- model section
def _model_section(info: dict[str, Any]) -> dict[str, Any]:
    extra = info.get("extra") or {}
    settings = []
    for key, value in sorted((info.get("config") or {}).items()):
        settings.append((str(key), _short(value)))
    fit = extra.get("fit_seconds")
    return {
        "name": info.get("model"),
        "seed": info.get("seed"),
        "created": info.get("created"),
        "device": extra.get("device"),
        "fit_seconds": float(fit) if isinstance(fit, (int, float)) else None,
        "settings": settings,
        "versions": sorted((str(k), str(v)) for k, v in (info.get("versions") or {}).items()),
    }


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{len(value)} values]"
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_missing(value: Any) -> bool:
    """``None`` or a NaN: shown as text in a report, never as ``NaN``."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


__all__ = ["DEFAULT_BASELINES", "EMPTY_SLICE_TEXT", "ExampleUser", "ModelResult",
           "ReportContent", "ReportOptions", "SLICES", "is_missing", "report_content"]
