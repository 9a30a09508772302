"""``python -m recsys_core train``: ingest files, fit a model, save a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Any

from .. import distributed
from ..device import describe_device, pick_device
from ..errors import RecScopeError
from ..models import DEFAULT_MODEL, MODEL_REGISTRY, create_model, model_arguments
from ..models.params import ModelParamError, parse_model_params
from .options import add_column_options, add_ingest_options, add_input_files, load_inputs

#: CLI option -> constructor argument names it may go by, in preference order.
_OPTION_ARGUMENTS = {
    "epochs": ("epochs", "max_epochs"),
    "seed": ("seed",),
    "device": ("device",),
    "k": ("eval_k", "valid_k", "k"),
    "text_model": ("text_model", "text_model_name_or_path"),
    "checkpoint_dir": ("checkpoint_dir",),
    "resume": ("resume",),
}
#: Constructor arguments this command sets itself, never through --param.
_COMMAND_ARGUMENTS = {"show_progress": "the command draws its own progress bar"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a recommender and save it as a run directory",
        description="Read interactions (and optional item metadata / user-user edges), fit a "
                    "model on all of them (models with early stopping carve their own "
                    "validation split) and save a run directory for `recommend` / `evaluate`.")
    add_input_files(parser, "user-item interactions (CSV/TSV/Parquet; columns auto-detected)")
    parser.add_argument("--model", choices=list(MODEL_REGISTRY), default=DEFAULT_MODEL,
                        help=f"model to train (default: {DEFAULT_MODEL})")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="maximum training epochs (iterative models; default: the model's)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed (default: 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    add_column_options(parser, of="--interactions")
    add_ingest_options(parser)
    parser.add_argument("--device", default="auto",
                        help="auto (cuda > mps > cpu), cpu, cuda or mps (default: auto)")
    parser.add_argument("--k", type=int, default=20, metavar="K",
                        help="cut-off of the validation NDCG used for early stopping "
                             "(default: 20)")
    parser.add_argument("--text-model", metavar="NAME_OR_PATH",
                        help="text encoder for item texts: a local model folder or a model id "
                             "already in the local Hugging Face cache (default: bundled "
                             "all-MiniLM-L6-v2)")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="keep a checkpoint of the best epoch in DIR (weights, optimiser and "
                             "sampler state; safetensors + JSON, replaced atomically each time "
                             "validation improves; written by rank 0 under torchrun), so that a "
                             "failed, killed or stopped job can continue with --resume "
                             "(iterative models; default: no checkpoint)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --checkpoint-dir, with the same "
                             "data and settings (under torchrun, rank 0 reads it and every rank "
                             "starts from the same state); starts from the first epoch when "
                             "the folder holds none yet")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set any constructor argument of the model, parsed by its type "
                             "(bool: true/false; none where optional); repeatable, e.g. "
                             "--param item_item=false --param embedding_dim=128")
    add_tuning_options(parser, default=False)
    parser.set_defaults(run=run)


def add_tuning_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                       default: bool) -> None:
    """``--tune`` / ``--no-tune`` and ``--grid KEY=V1,V2`` (see :func:`fit_model`)."""
    parser.add_argument("--tune", action=argparse.BooleanOptionalAction, default=default,
                        help="choose a peer's settings on a validation split carved from its "
                             "training data (10%% of each user's interactions, seed 0: the "
                             "flagship's own), then refit on all of it; the grid is the "
                             "model's default (recsys_core.tuning.DEFAULT_GRIDS) or --grid. "
                             "The flagship always chooses its settings on validation itself "
                             f"(default: {'on' if default else 'off'})")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="with --tune: the values to try for one constructor argument "
                             "(repeatable; replaces the default grid's values of that key), "
                             "e.g. --grid reg_lambda=100,300,1000")


def run(args: argparse.Namespace) -> int:
    """Train and save; under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains its shard
    and rank 0 alone prints and writes the run (see :mod:`recsys_core.distributed`)."""
    params = _checked_params(args)  # a bad --param fails before any file is read
    if args.grid and not args.tune:
        raise ModelParamError("--grid sets the values --tune tries: add --tune.")
    if args.tune:
        tuning_grid(args, params)  # so does a bad --grid
    if args.resume and not args.checkpoint_dir:
        raise RecScopeError("--resume needs --checkpoint-dir DIR: the folder the interrupted "
                            "job wrote its checkpoint to.")
    try:
        ctx = distributed.init_from_env()
    except (RuntimeError, ValueError) as exc:
        raise RecScopeError(f"cannot join the torchrun process group ({exc}); check "
                            "--rdzv-endpoint / MASTER_ADDR and that every node can reach it."
                            ) from None
    try:
        with distributed.terminate_raises():
            return _train(args, params, ctx)
    except RecScopeError as exc:
        if ctx is not None:  # torchrun's summary shows the message, not "no error file"
            distributed.record_failure(f"rank {ctx.rank}: {exc}")
        raise
    except Exception as exc:
        if ctx is None:
            raise
        # A rank of a torchrun job: say what happened, where the last checkpoint is and how to
        # continue, exit non-zero; torchrun then stops the other ranks and names the first to
        # fail in its summary.
        message = _fault_report(args, exc, ctx.rank)
        # Rank 0 draws the progress bar: its last line may be left open when it died.
        start = "" if ctx.is_main else "\n"
        print(f"{start}error: {message}", file=sys.stderr)
        distributed.record_failure(message, exc)
        return 1
    finally:
        distributed.shutdown()


def _resume_note(folder: str) -> str:
    """Where ``--resume`` continues from (a bad checkpoint raises, with what to do)."""
    from ..training import load_checkpoint

    loaded = load_checkpoint(folder)
    if loaded is None:
        return f"note: no checkpoint in '{folder}' yet; training starts from the first epoch."
    return f"Resuming from the checkpoint in '{folder}' ({_checkpoint_summary(loaded[1])})."


def _checkpoint_summary(meta: dict[str, Any]) -> str:
    ndcg = float(meta.get("best_valid_ndcg", float("nan")))
    return f"epoch {meta['epoch']}" + (f", validation NDCG {ndcg:.4f}" if math.isfinite(ndcg)
                                       else "")


def _fault_report(args: argparse.Namespace, exc: BaseException, rank: int) -> str:
    """What stopped this rank, where the last good checkpoint is and the command that
    continues (see :func:`~recsys_core.distributed.resume_command`)."""
    from ..training import load_checkpoint

    what = distributed.describe_failure(exc, rank)
    folder = args.checkpoint_dir
    if not folder:
        where = ("Training was not checkpointed (give --checkpoint-dir DIR to keep the best "
                 "epoch for a restart). To start again:")
    else:
        try:
            loaded = load_checkpoint(folder)
        except RecScopeError as bad:
            loaded, where = None, f"{bad} To start again:"
        else:
            where = f"No checkpoint was written to '{folder}' yet. To start again:"
        if loaded is not None:
            where = (f"The last good checkpoint ({_checkpoint_summary(loaded[1])}) is in "
                     f"'{folder}'. To resume from it:")
    return f"{what}. The job stopped. {where} {distributed.resume_command(sys.argv[1:], folder)}"


def _train(args: argparse.Namespace, params: dict[str, Any],
           ctx: distributed.DistContext | None) -> int:
    from ..run import save_run

    main = ctx is None or ctx.is_main
    if ctx is not None and args.tune:
        raise RecScopeError("--tune runs in one process: tune without torchrun, then train "
                            "the chosen settings under torchrun with --param.")
    dataset = load_inputs(args)
    if main:
        _print_ingest_report(dataset)
    kwargs = _model_kwargs(args, params)
    try:
        model = create_model(args.model, **kwargs)
    except (TypeError, ValueError) as exc:  # the model refuses a value (e.g. conv=foo)
        given = ", ".join(args.param) or "the options given"
        raise ModelParamError(f"the {args.model} model refuses {given}: {exc}") from None
    device = describe_device(pick_device(args.device)) if "device" in kwargs else "CPU"
    if ctx is not None:
        device += f" x {ctx.world_size} processes ({ctx.backend}, data-parallel)"
    if main:
        print(f"Training {args.model} on {dataset.num_users:,} users x {dataset.num_items:,} "
              f"items ({len(dataset.interactions):,} interactions), device {device}",
              file=sys.stderr)
    if main and kwargs.get("resume"):
        print(_resume_note(args.checkpoint_dir), file=sys.stderr)
    train = dataset.interactions
    start = time.perf_counter()
    with ProgressBar(enabled=main) as progress:
        model, tuning = fit_model(args, kwargs, params, dataset, train, progress, model=model)
    fit_seconds = time.perf_counter() - start
    if not main:  # rank 0 writes the one run of the job
        return 0
    extra = {"fit_seconds": round(fit_seconds, 3), "device": device,
             "command": ["python", "-m", "recsys_core", *sys.argv[1:]],
             "inputs": {"interactions": str(args.interactions), "items": args.items,
                        "user_edges": args.user_edges, "users": args.users},
             "params": list(args.param)}
    if tuning is not None:
        extra["tuning"] = tuning.to_dict()
    metrics = None
    result = getattr(model, "train_result", None)  # iterative models report their training
    if dataclasses.is_dataclass(result):
        extra["train_result"] = dataclasses.asdict(result)
        if getattr(result, "training_mode", None):
            extra["training"] = {"mode": result.training_mode, "reason": result.mode_reason,
                                 "num_neighbors": result.num_neighbors,
                                 "world_size": result.world_size}
            print(f"Training mode: {result.training_mode} ({result.mode_reason})"
                  + (f"; {result.world_size} processes" if result.world_size > 1 else ""),
                  file=sys.stderr)
        best = getattr(result, "best_valid_ndcg", None)
        if isinstance(best, float) and math.isfinite(best):
            metrics = {f"valid_ndcg@{args.k}": best}
    try:
        out = save_run(args.out, model, dataset, train, metrics=metrics, extra=extra)
    except OSError as exc:
        raise RecScopeError(f"cannot write the run directory '{args.out}' "
                            f"({exc.strerror or exc}); choose another --out.") from exc
    print(f"Trained {args.model} in {fit_seconds:.1f} s; run saved to {out}")
    print(f"Next: python -m recsys_core recommend --run {out} --k 10 --out recommendations.csv")
    return 0


def fit_model(args: argparse.Namespace, kwargs: dict[str, Any], params: dict[str, Any],
              dataset, train, progress, model=None):
    """Fit ``args.model`` on ``train``, choosing its settings on validation with ``--tune``.

    With ``--tune`` a model that has a grid (:data:`recsys_core.tuning.DEFAULT_GRIDS`, each
    ``--grid`` key replacing that key's values; keys fixed by ``--param`` or an option are left
    out of it) is tuned by :func:`recsys_core.tuning.tune_model` on the flagship's validation
    split and refitted on all of ``train``; the choice is printed. Otherwise, or for a model
    with nothing to choose, ``model`` (or a new one from ``kwargs``) is fitted as given.

    Returns:
        ``(model, record)``: the fitted model and the
        :class:`~recsys_core.tuning.TuningResult` (``None`` when nothing was tuned).

    Raises:
        ModelParamError: ``--grid`` without ``--tune``, or a bad ``--grid`` key or value.
    """
    from ..tuning import DEFAULT_BASE_PARAMS, tune_model

    grid = tuning_grid(args, params) if args.tune else None
    if not grid:
        if args.tune:
            print(f"note: {args.model} has no settings for --tune to choose"
                  + (" (it chooses its own on validation)" if args.model == DEFAULT_MODEL
                     else "") + "; fitted as given.", file=sys.stderr)
        model = model if model is not None else create_model(args.model, **kwargs)
        model.fit(dataset, train, on_progress=progress)
        from ..models.graph_filter import describe_selection

        result = getattr(model, "train_result", None)  # the flagship's own choices
        chosen = describe_selection(getattr(result, "selected", None) or {})
        if chosen:
            progress.note(f"Chosen on validation: {chosen}")
        return model, None
    points = math.prod(len(values) for values in grid.values())
    print(f"Tuning {args.model}: {points} setting(s) of "
          + ", ".join(f"{key} in {{{', '.join(map(str, values))}}}" for key, values in grid.items())
          + " on validation (10% of each user's interactions, seed 0), then a refit on all "
          "of them", file=sys.stderr)
    base = {**DEFAULT_BASE_PARAMS.get(args.model, {}), **kwargs}
    model, record = tune_model(args.model, dataset, train, grid, base_params=base,
                               on_progress=progress)
    progress.note(f"Chosen on validation: {record.describe()}")
    return model, record


def tuning_grid(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid ``--tune`` searches for ``args.model``: the default grid with each ``--grid``
    key's values replaced, without the keys ``--param`` (or a dedicated option) fixes."""
    from ..tuning import DEFAULT_GRIDS

    grid = {key: list(values) for key, values in DEFAULT_GRIDS.get(args.model, {}).items()}
    for assignment in args.grid:
        key, sep, text = str(assignment).partition("=")
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not sep or not values:
            raise ModelParamError(f"--grid '{assignment}' is not KEY=V1,V2 (e.g. --grid "
                                  "reg_lambda=100,300,1000).")
        key = key.strip().replace("-", "_")
        try:
            grid[key] = [parse_model_params(args.model, [f"{key}={v}"])[key] for v in values]
        except ModelParamError as exc:
            raise ModelParamError(str(exc).replace("--param", "--grid", 1)) from None
    return {key: values for key, values in grid.items() if key not in params}


def _checked_params(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--param`` values, parsed by the model's constructor types.

    Raises:
        ModelParamError: An unknown key, a bad value, or a key that a dedicated option
            (``--epochs``, ``--seed`` ...) or the command itself sets.
    """
    accepted = set(model_arguments(args.model))
    params = parse_model_params(args.model, args.param)
    for key in params:
        flag = next(("--" + option.replace("_", "-") for option, names in _OPTION_ARGUMENTS.items()
                     if key in names and key in accepted), None)
        if flag is not None:
            raise ModelParamError(f"--param {key} conflicts with {flag}; set it with {flag} "
                                  "instead.")
        if key in _COMMAND_ARGUMENTS:
            raise ModelParamError(f"--param {key} cannot be set: {_COMMAND_ARGUMENTS[key]}.")
    return params


def _model_kwargs(args: argparse.Namespace, params: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Constructor arguments for the chosen model from the generic CLI options and the
    checked ``--param`` values (see :func:`_checked_params`)."""
    accepted = set(model_arguments(args.model))
    kwargs: dict[str, Any] = {}
    checkpoint_dir = getattr(args, "checkpoint_dir", None)  # train's options only
    resume = bool(getattr(args, "resume", False))
    given = {"epochs": args.epochs, "seed": args.seed, "device": args.device, "k": args.k,
             "text_model": args.text_model, "checkpoint_dir": checkpoint_dir,
             "resume": True if resume else None}
    explicit = {"epochs": args.epochs is not None, "text_model": args.text_model is not None,
                "checkpoint_dir": checkpoint_dir is not None, "resume": resume}
    for option, value in given.items():
        name = next((n for n in _OPTION_ARGUMENTS[option] if n in accepted), None)
        if name is not None and value is not None:
            kwargs[name] = value
        elif explicit.get(option):
            flag = "--" + option.replace("_", "-")
            print(f"note: {flag} does not apply to the {args.model} model and is ignored.",
                  file=sys.stderr)
    kwargs.update(params or {})
    if "show_progress" in accepted:
        kwargs["show_progress"] = False  # this command draws its own bar from on_progress
    if args.text_model is not None and "encoder" in accepted and "text_model" not in kwargs:
        from ..text import TextEncoder

        kwargs["encoder"] = TextEncoder(args.text_model, device=args.device)
    return kwargs


def _print_ingest_report(dataset) -> None:
    report = getattr(dataset, "report", None)
    if report is None:
        return
    summary = getattr(report, "summary", None)
    text = summary() if callable(summary) else None
    if text:
        print(text, file=sys.stderr)


class ProgressBar:
    """A tqdm bar on stderr driven by :data:`~recsys_core.models.base.ProgressCallback` dicts.

    The description follows ``stage``; the bar starts over when the fraction goes back (a new
    phase, e.g. ``encode`` then ``train``). Epoch, loss and validation NDCG are shown when the
    model reports them, and, inside a long epoch, the batch, batches per second and the
    epoch's time left. ``enabled=False`` draws nothing (torchrun's ranks other than 0).
    """

    _STEPS = 1000

    def __init__(self, enabled: bool = True) -> None:
        self._bar = None
        self.enabled = enabled

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def note(self, text: str) -> None:
        """Print ``text`` on its own line on stderr, above the bar (nothing where the bar is
        disabled)."""
        from tqdm.auto import tqdm

        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def __call__(self, event: dict[str, Any]) -> None:
        from tqdm.auto import tqdm

        if not self.enabled:
            return
        stage = str(event.get("stage", "fit"))
        if self._bar is None:
            self._bar = tqdm(total=self._STEPS, desc=stage, file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                                        "{postfix}")
        elif stage != self._bar.desc:
            self._bar.set_description_str(stage, refresh=False)
            self._bar.set_postfix_str("", refresh=False)  # the last stage's epoch/loss is stale
        fraction = event.get("fraction")
        if fraction is not None:
            target = int(round(min(max(float(fraction), 0.0), 1.0) * self._STEPS))
            if target < self._bar.n:
                self._bar.reset(total=self._STEPS)
            self._bar.update(target - self._bar.n)
        postfix = {}
        if event.get("epoch") is not None:
            epochs = event.get("epochs")
            postfix["epoch"] = f"{event['epoch']}/{epochs}" if epochs else str(event["epoch"])
        if event.get("batches"):
            postfix["batch"] = f"{event.get('batch', 0)}/{event['batches']}"
            rate = event.get("batches_per_second")
            if isinstance(rate, (int, float)) and math.isfinite(rate):
                postfix["rate"] = f"{rate:.1f} batch/s"
            left = event.get("epoch_seconds_left")
            if isinstance(left, (int, float)) and math.isfinite(left):
                postfix["epoch left"] = f"{left:.0f} s"
        for key in ("loss", "running_loss", "valid_ndcg"):
            if isinstance(event.get(key), (int, float)):
                postfix[key] = f"{event[key]:.4f}"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
