"""``python -m recsys_core evaluate``: offline metrics of a saved run on held-out interactions."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, RATING_COL, TIME_COL, USER_COL
from ..errors import DataError, TrainingError
from ..models import MODEL_REGISTRY
from ..significance import PAIRED_METHODS
from ..splits import DEFAULT_TIME_CUT_QUANTILE, SPLIT_METHODS
from .options import (
    add_column_options,
    add_ingest_options,
    add_input_files,
    aligned_test,
    load_inputs,
    read_test,
)
from .train import add_tuning_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="offline metrics of saved runs, or of models fitted on a split (JSON)",
        description="Rank all items for every test user (excluding the training "
                    "interactions), compare the top K with the test interactions and print "
                    "the metrics as JSON. Either saved runs on a held-out file (--run DIR "
                    "--test FILE), or models fitted here on a split of one file "
                    "(--interactions FILE --split ... --model NAME). --ci adds per-user "
                    "bootstrap confidence intervals; --compare tests the first model against "
                    "each other one on the same users.")
    source = parser.add_argument_group("saved runs on a held-out file")
    source.add_argument("--run", dest="run_dir", action="append", metavar="DIR",
                        help="run directory from `train` (repeat to evaluate several runs on "
                             "the same test file)")
    source.add_argument("--test", metavar="FILE",
                        help="held-out interactions (same formats/column detection as train)")
    fitted = parser.add_argument_group("models fitted on a split of one file")
    add_input_files(fitted, "all interactions, split here into train and test",
                    required=False)
    add_ingest_options(fitted)
    fitted.add_argument("--split", choices=list(SPLIT_METHODS), default="random",
                        help="random: a share of each user's interactions (seed); temporal: "
                             "each user's latest interaction; time-cut: every interaction "
                             "after a global time cut (default: random)")
    fitted.add_argument("--test-ratio", type=float, default=0.1, metavar="R",
                        help="random split: share of each user's interactions held out "
                             "(default: 0.1)")
    fitted.add_argument("--time-cut", metavar="DATE",
                        help="time-cut split: the cut, a date/time (UTC) or epoch seconds")
    fitted.add_argument("--time-quantile", type=float, default=DEFAULT_TIME_CUT_QUANTILE,
                        metavar="Q", help="time-cut split without --time-cut: the share of "
                        "timestamps before the cut (default: 0.9, the latest 10%% are test)")
    fitted.add_argument("--model", dest="models", action="append", metavar="NAME",
                        choices=list(MODEL_REGISTRY),
                        help="model to fit on the training part (repeatable)")
    fitted.add_argument("--epochs", type=int, metavar="N", help="epochs of iterative models")
    fitted.add_argument("--seed", type=int, default=42, metavar="S",
                        help="seed of the random split, the models and the bootstrap "
                             "(default: 42)")
    fitted.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    fitted.add_argument("--text-model", metavar="NAME_OR_PATH",
                        help="text encoder for item texts (as for train)")
    add_tuning_options(fitted, default=True)
    parser.add_argument("--k", type=int, default=20, metavar="K",
                        help="list length for the @K metrics (default: 20)")
    parser.add_argument("--ci", action="store_true",
                        help="per-user bootstrap confidence interval of every metric")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="C",
                        help="coverage of the intervals (default: 0.95)")
    parser.add_argument("--resamples", type=int, default=1000, metavar="B",
                        help="bootstrap resamples (default: 1000)")
    parser.add_argument("--compare", action="store_true",
                        help="paired test of the first model against each other one")
    parser.add_argument("--compare-method", choices=list(PAIRED_METHODS), default="bootstrap",
                        help="paired bootstrap or Wilcoxon signed-rank (default: bootstrap)")
    add_column_options(parser, of="the input file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.run_dir:
        evaluated = _evaluate_runs(args)
        split = None
    else:
        evaluated, split = _evaluate_on_split(args)
    failed = [entry["result"]["model"] for entry in evaluated if "error" in entry["result"]]
    fitted = [entry for entry in evaluated if "error" not in entry["result"]]
    comparisons = _comparisons(fitted, args) if args.compare and len(fitted) > 1 else []
    if args.ci:
        for entry in fitted:
            _print_intervals(entry, args.k)
    for row in comparisons:
        _print_comparison(row, args.k)
    results = [entry["result"] for entry in evaluated]
    if len(results) == 1 and split is None and not comparisons:
        output = results[0]  # one run: the JSON shape of earlier versions (plus "intervals")
    else:
        output = {"k": args.k, "split": split, "models": results,
                  "comparisons": comparisons}
    print(json.dumps(_jsonable(output), indent=2))
    if failed:  # the figures of the others are printed; the exit status says not all fitted
        print(f"error: {', '.join(failed)} could not be fitted (see above and \"error\" in "
              "the JSON).", file=sys.stderr)
        return 1
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if args.k < 1:
        raise DataError(f"--k must be at least 1, got {args.k}.")
    if args.run_dir and args.interactions:
        raise DataError("give either saved runs (--run DIR --test FILE) or a file to split "
                        "(--interactions FILE --split ... --model NAME), not both.")
    if args.run_dir:
        if not args.test:
            raise DataError("--run needs --test FILE: the held-out interactions to evaluate "
                            "on (or use --interactions FILE --split ... to split one file).")
        if args.models:
            raise DataError("--model fits a model on --interactions; with --run the model is "
                            "the saved run's.")
    elif args.interactions:
        if not args.models:
            raise DataError("--interactions needs at least one --model NAME to fit on the "
                            "training part of the split.")
        if args.test:
            raise DataError("--test is for saved runs; with --interactions the test part "
                            "comes from --split.")
    else:
        raise DataError("nothing to evaluate: give --run DIR --test FILE, or --interactions "
                        "FILE --split {random,temporal,time-cut} --model NAME.")
    if not 0 < args.confidence < 1:
        raise DataError(f"--confidence must be between 0 and 1 (e.g. 0.95), got "
                        f"{args.confidence}.")
    if args.resamples < 1:
        raise DataError(f"--resamples must be at least 1, got {args.resamples}.")
    if args.grid and not args.tune:
        raise DataError("--grid sets the values --tune tries: drop --no-tune.")
    if args.compare and len(args.run_dir or args.models or []) < 2:
        raise DataError("--compare needs at least two models: repeat --run DIR (or --model "
                        "NAME).")


def _evaluate_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every saved run on the test file; each keeps the JSON of a single-run evaluation."""
    from ..run import load_run

    test_file = read_test(args)
    evaluated = []
    for run_dir in args.run_dir:
        model, dataset, info = load_run(run_dir)
        test, skipped = aligned_test(test_file, dataset, args.test, label=str(run_dir))
        users = pd.unique(test[USER_COL]).tolist()
        per_user, metrics = _per_user_and_metrics(model, dataset, test, users, args.k)
        result = {"model": info["model"], "run": str(run_dir), "k": args.k,
                  "num_test_users": len(users), "num_test_interactions": int(len(test)),
                  "skipped_test_rows": skipped, "metrics": metrics}
        evaluated.append(_with_intervals(str(run_dir), result, per_user, args))
    return evaluated


def _evaluate_on_split(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict]:
    """Split one file, fit every ``--model`` on the training part, evaluate on the test part."""
    from ..splits import describe_split, split_interactions
    from .train import ProgressBar, _model_kwargs, fit_model, tuning_grid

    dataset = load_inputs(args)
    try:
        parts = split_interactions(dataset.interactions, args.split, seed=args.seed,
                                   test_ratio=args.test_ratio, quantile=args.time_quantile,
                                   cut=args.time_cut)
    except ValueError as exc:  # a ratio or quantile out of range
        raise DataError(f"cannot make the {args.split} split: {exc}.",
                        file=args.interactions) from None
    train = parts.train
    test, skipped = align_test(parts.test, dataset.subset_interactions(train),
                               args.interactions)
    description = describe_split(args.split, quantile=args.time_quantile, cut=args.time_cut,
                                 test_ratio=args.test_ratio, seed=args.seed)
    excluded = len(dataset.interactions) - len(train) - len(parts.valid) - len(parts.test)
    split = {"method": args.split, "description": description,
             "num_train_interactions": int(len(train)),
             "num_test_interactions": int(len(test)),
             "num_left_out_interactions": int(excluded), "skipped_test_rows": skipped}
    print(f"Split: {description}; {len(train):,} training and {len(test):,} test "
          "interactions.", file=sys.stderr)
    users = pd.unique(test[USER_COL]).tolist()
    unused = [g for g in args.grid if not any(g in _grid_for(name, [g]) for name in args.models)]
    if unused:
        raise DataError(f"--grid {unused[0]}: no --model given takes that argument.")
    fits = [argparse.Namespace(model=name, epochs=args.epochs, seed=args.seed,
                               device=args.device, k=args.k, text_model=args.text_model,
                               param=[], tune=args.tune, grid=_grid_for(name, args.grid))
            for name in args.models]
    for options in fits if args.tune else []:  # a bad --grid value fails before any fit
        tuning_grid(options, {})
    evaluated = []
    for options in fits:
        name = options.model
        print(f"Fitting {name} on the training part...", file=sys.stderr)
        try:
            with ProgressBar() as progress:
                model, tuning = fit_model(options, _model_kwargs(options), {}, dataset, train,
                                          progress)
        except TrainingError as exc:  # this model only (memory, divergence): the others go on
            print(f"error: {name}: {exc} The other models go on.", file=sys.stderr)
            evaluated.append({"label": name, "result": {"model": name, "error": str(exc)}})
            continue
        per_user, metrics = _per_user_and_metrics(model, dataset, test, users, args.k,
                                                  train=train)
        result = {"model": name, "k": args.k, "num_test_users": len(users),
                  "num_test_interactions": int(len(test)), "metrics": metrics,
                  "tuning": None if tuning is None else _tuning_summary(tuning)}
        evaluated.append(_with_intervals(name, result, per_user, args))
    return evaluated, split


def _tuning_summary(record) -> dict[str, Any]:
    """What ``--tune`` chose and on what (the JSON output; every point is in the record)."""
    best = record.best
    return {"chosen": record.chosen, "settings_tried": len(record.points),
            f"valid_{record.metric}": None if best is None else best.ndcg,
            "valid_interactions": record.valid_interactions,
            "tune_seconds": record.tune_seconds, "describe": record.describe()}


def _grid_for(name: str, grid: list[str]) -> list[str]:
    """The ``--grid`` assignments whose key is a constructor argument of ``name`` (evaluate's
    grid is shared by every ``--model``)."""
    from ..models import model_arguments

    accepted = set(model_arguments(name))
    return [g for g in grid if g.partition("=")[0].strip().replace("-", "_") in accepted]


def _per_user_and_metrics(model, dataset, test, users, k, train=None):
    from ..significance import per_user_metrics

    metrics = evaluate_run(model, dataset, test, users, k, train=train)
    top = model.recommend(users=users, k=k, exclude_seen=True)
    return per_user_metrics(test, top, k=k), metrics


def _with_intervals(label: str, result: dict[str, Any], per_user: pd.DataFrame,
                    args: argparse.Namespace) -> dict[str, Any]:
    if args.ci:
        from ..significance import metrics_with_ci

        table = metrics_with_ci(per_user, confidence=args.confidence,
                                n_resamples=args.resamples, seed=args.seed)
        result["intervals"] = {
            row.metric: {"value": row.value, "low": row.low, "high": row.high}
            for row in table.itertuples()}
        result["confidence"] = args.confidence
    return {"label": label, "result": result, "per_user": per_user}


def _comparisons(evaluated: list[dict[str, Any]], args: argparse.Namespace) -> list[dict]:
    """The first model against each other one, every metric, on their common users."""
    from ..significance import paired_tests

    first = evaluated[0]
    rows = []
    for other in evaluated[1:]:
        table = paired_tests(first["per_user"], other["per_user"], method=args.compare_method,
                             confidence=args.confidence, n_resamples=args.resamples,
                             seed=args.seed)
        for row in table.to_dict(orient="records"):
            rows.append({"a": first["label"], "b": other["label"], **row})
    return rows


def _print_intervals(entry: dict[str, Any], k: int) -> None:
    intervals = entry["result"].get("intervals") or {}
    confidence = entry["result"].get("confidence", 0.95)
    users = entry["result"].get("num_test_users")
    print(f"{entry['label']}: {confidence:.0%} bootstrap intervals over {users:,} test users",
          file=sys.stderr)
    for metric, ci in intervals.items():
        print(f"  {metric + '@' + str(k):<14} {ci['value']:.4f}  [{ci['low']:.4f}, "
              f"{ci['high']:.4f}]", file=sys.stderr)


def _print_comparison(row: dict[str, Any], k: int) -> None:
    dropped = row["n_dropped_a"] + row["n_dropped_b"]
    note = f", {dropped} user(s) in only one run left out" if dropped else ""
    print(f"{row['a']} vs {row['b']}: {row['metric']}@{k} {row['mean_a']:.4f} vs "
          f"{row['mean_b']:.4f}, difference {row['difference']:+.4f} [{row['low']:+.4f}, "
          f"{row['high']:+.4f}], p = {row['p_value']:.4g} ({row['method']}, "
          f"{row['n_users']:,} users{note})", file=sys.stderr)


#: Most (user, item) scores held at once while the full-ranking AUC streams over users.
FULL_SCORE_ROWS = 4_000_000


def evaluate_run(model, dataset, test: pd.DataFrame, users: list[str], k: int,
                 train: pd.DataFrame | None = None) -> dict[str, Any]:
    """:func:`~recsys_core.metrics.evaluate_recommendations` over a full ranking.

    The top-``k`` metrics, coverage, novelty, popularity and the light-user slice come from
    every user's top-``k`` list. The item slices re-rank each user's items among the slice
    only (``recommend`` with the slice as candidates: the cold items, the long tail outside
    the popular head), and AUC compares each test item with every unseen item
    (:func:`full_ranking_auc`), so no users x items frame is ever built. ``train`` (default:
    every interaction of ``dataset``, as in a saved run) is what the model was fitted on.
    """
    from ..metrics import (
        DEFAULT_HEAD_SHARE,
        cold_item_metrics,
        evaluate_recommendations,
        head_items,
        long_tail_metrics,
    )

    train = dataset.interactions if train is None else train
    top = model.recommend(users=users, k=k, exclude_seen=True)
    metrics = evaluate_recommendations(test, top, train=train, k=k, num_items=dataset.num_items)
    metrics["auc"] = full_ranking_auc(model, dataset, test, users, FULL_SCORE_ROWS)
    trained = pd.Index(pd.unique(train[ITEM_COL]))
    head = pd.Index(head_items(train, DEFAULT_HEAD_SHARE, col_item=ITEM_COL))
    catalogue = pd.Index(dataset.item_ids)
    for name, candidates, slice_metrics in (
            ("cold_items", catalogue[~catalogue.isin(trained)], cold_item_metrics),
            ("long_tail", catalogue[~catalogue.isin(head)], long_tail_metrics)):
        if not len(candidates):  # no such item: no test interaction in the slice either
            continue
        ranked = model.recommend(users=users, k=k, exclude_seen=True, candidates=candidates)
        if not ranked.empty:
            metrics["slices"][name] = slice_metrics(test, ranked, train, k=k)
    return metrics


def full_ranking_auc(model, dataset, test: pd.DataFrame, users: list[str],
                     block_rows: int | None = None) -> float | None:
    """Mean per-user AUC of each test item against every item the user has not interacted
    with (:func:`~recsys_core.tensor_metrics.auc_rows`, the statistic of
    :func:`recsys_core.metrics.auc` on full score vectors), streamed over blocks of users of
    at most ``block_rows`` scores (default: :data:`FULL_SCORE_ROWS`); ``None`` when no user
    has a negative."""
    import torch

    from ..models.base import mask_seen
    from ..tensor_metrics import auc_rows

    user_idx = dataset.user_idx(list(users))
    truth = test[[USER_COL, ITEM_COL]].drop_duplicates()
    rows = dataset.user_idx(truth[USER_COL].tolist())
    cols = dataset.item_idx(truth[ITEM_COL].tolist())
    # Each test pair's row among ``users`` (-1: not one of them), found once for all blocks.
    at_all = pd.Series(np.arange(len(user_idx)), index=user_idx).reindex(rows).to_numpy()
    at_all = np.nan_to_num(at_all, nan=-1).astype(np.int64)
    block = max(1, (block_rows or FULL_SCORE_ROWS) // max(dataset.num_items, 1))
    total, count = 0.0, 0
    for start in range(0, len(user_idx), block):
        chunk = user_idx[start:start + block]
        scores = torch.as_tensor(np.asarray(model.score(chunk), dtype=np.float64))
        if model.train_matrix is not None:
            mask_seen(scores, model.train_matrix, chunk)
        positives = torch.zeros(scores.shape, dtype=torch.bool)
        keep = (at_all >= start) & (at_all < start + len(chunk))
        positives[torch.from_numpy(at_all[keep] - start),
                  torch.from_numpy(cols[keep].astype(np.int64))] = True
        auc, defined = auc_rows(scores, positives)
        total += float(auc[defined].sum())
        count += int(defined.sum())
    return total / count if count else None


def align_test(test: pd.DataFrame, dataset, file: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the test rows that can be scored, counting every row left out and why.

    Rows whose user or item the run does not know cannot be ranked; rows that are training
    interactions can never be recommended (training items are excluded from the ranking).

    Raises:
        DataError: No test row is left.
    """
    frame = test[[USER_COL, ITEM_COL, RATING_COL, TIME_COL]].copy()
    frame[USER_COL] = frame[USER_COL].astype(str)
    frame[ITEM_COL] = frame[ITEM_COL].astype(str)
    known_user = frame[USER_COL].map(dataset.user_index.__contains__).astype(bool).to_numpy()
    known_item = frame[ITEM_COL].map(dataset.item_index.__contains__).astype(bool).to_numpy()
    skipped = {"unknown_user": int((~known_user).sum()),
               "unknown_item": int((known_user & ~known_item).sum())}
    frame = frame[known_user & known_item]
    users = dataset.user_idx(frame[USER_COL])
    items = dataset.item_idx(frame[ITEM_COL])
    seen = np.zeros(len(frame), dtype=bool)
    if len(frame):
        matrix = dataset.interactions
        train_pairs = pd.MultiIndex.from_arrays([matrix["user_idx"].to_numpy(),
                                                 matrix["item_idx"].to_numpy()])
        seen = pd.MultiIndex.from_arrays([users, items]).isin(train_pairs)
    skipped["in_training_data"] = int(seen.sum())
    frame = frame[~seen].reset_index(drop=True)
    if frame.empty:
        raise DataError("no test interaction can be evaluated: every row has an unknown user or "
                        "item or is already in the run's training data "
                        f"({skipped}). Evaluate on held-out interactions of the trained users.",
                        file=file)
    return frame, skipped


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value
