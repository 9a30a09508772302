"""``python -m recsys_core report``: one self-contained HTML report of a saved run."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import DataError, RecScopeError
from .options import add_column_options, aligned_test, read_test


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a saved run",
        description="Evaluate a saved run on held-out interactions against baselines (with "
                    "bootstrap confidence intervals), measure coverage, popularity bias, the "
                    "cold-item and long-tail slices and the explanations' faithfulness, "
                    "explain three example users, and write it all to one HTML file that "
                    "opens offline.")
    parser.add_argument("--run", dest="run_dir", required=True, metavar="DIR",
                        help="run directory from `train` (or the app's run download, unzipped)")
    parser.add_argument("--test", required=True, metavar="FILE",
                        help="held-out interactions (same formats/column detection as train)")
    parser.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    parser.add_argument("--k", type=int, default=20, metavar="K",
                        help="list length for the @K metrics (default: 20)")
    parser.add_argument("--baselines", default="pop,ease", metavar="NAMES",
                        help="comma-separated models fitted on the run's training data for "
                             "comparison (default: pop,ease; 'none' for none)")
    parser.add_argument("--privacy", action="store_true",
                        help="salted pseudonyms instead of user ids, groups of fewer than 5 "
                             "users suppressed (salt: RECSCOPE_PRIVACY_SALT if set, else fresh "
                             "for this run; see docs/SECURITY.md)")
    add_column_options(parser, of="--test")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..models import available_models
    from ..report import ReportOptions, build_report, write_report
    from ..run import load_run
    from .train import ProgressBar

    if args.k < 1:
        raise DataError(f"--k must be at least 1, got {args.k}.")
    baselines = [] if args.baselines.strip().lower() == "none" else [
        b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in available_models()]
    if unknown:
        raise RecScopeError(f"--baselines: unknown model(s) {unknown}; choose from "
                            f"{', '.join(available_models())} or 'none'.")
    started = time.perf_counter()
    model, dataset, info = load_run(args.run_dir)
    test, skipped = aligned_test(read_test(args), dataset, args.test)
    test = test.assign(user_idx=dataset.user_idx(test["user_id"]),
                       item_idx=dataset.item_idx(test["item_id"]))
    pseudonymizer = None
    if args.privacy:
        from ..privacy import Pseudonymizer

        pseudonymizer = Pseudonymizer.from_environment()
    with ProgressBar() as progress:
        html = build_report(model, dataset, info, test, test_name=_file_name(args.test),
                            skipped=skipped, pseudonymizer=pseudonymizer,
                            options=ReportOptions(k=args.k, baselines=baselines),
                            on_progress=progress)
    try:
        out = write_report(args.out, html)
    except OSError as exc:
        raise RecScopeError(f"cannot write '{args.out}' ({exc.strerror or exc}); choose "
                            f"another --out.") from exc
    print(f"Wrote {out} ({len(html.encode('utf-8')) / 2**20:.1f} MB) in "
          f"{time.perf_counter() - started:.0f} s; open it in any browser (no network needed).",
          file=sys.stderr)
    return 0


def _file_name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
