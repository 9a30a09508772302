"""Size and time of the HTML report (``recsys_core.report``) on MovieLens-100K.

Target: one self-contained file under 10 MB for ml-100k (plotly.js, about 4.6 MB, is inlined
once; every figure carries only its own data).

The data (``../shared/data/ml-100k``; never copied into the repository) is split as the app
splits it (``split_for_evaluation``: 5% of items held out cold, 10% of each user's
interactions held out), the model is trained on the training split and saved with its test
split under ``--runs-dir`` (reused on later runs), then the report is built from the saved run
exactly as ``python -m recsys_core report`` does, and its size and time are printed.

Usage::

    python benchmarks/bench_report.py                         # the flagship, 60 s budget
    python benchmarks/bench_report.py --model ease            # a closed-form model (seconds)
    python benchmarks/bench_report.py --privacy --out /tmp/report.html
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from recsys_core.ingest import load_dataset
from recsys_core.models import create_model
from recsys_core.privacy import Pseudonymizer
from recsys_core.report import ReportOptions, build_report, write_report
from recsys_core.run import read_run, save_run
from recsys_core.services.workspace import split_for_evaluation

ROOT = Path(__file__).resolve().parents[1]
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"
LIMIT_MB = 10.0


def saved_run(model_name: str, runs_dir: Path, time_limit: float):
    """The ml-100k run of ``model_name``: read from ``runs_dir`` or trained and saved."""
    path = runs_dir / f"ml100k-{model_name}"
    if not (path / "run.json").is_file():
        dataset = load_dataset(ML100K / "u.data", ML100K / "u.item", name="ml-100k")
        train, test = split_for_evaluation(dataset)
        params = {"time_limit": time_limit, "show_progress": True} if model_name == "gnn-llm" \
            else {}
        model = create_model(model_name, **params)
        started = time.perf_counter()
        model.fit(dataset, train)
        fit = time.perf_counter() - started
        print(f"trained {model_name} in {fit:.0f} s", file=sys.stderr)
        save_run(path, model, dataset, train, test=test,
                 extra={"run_id": f"{model_name} (ml-100k)", "fit_seconds": fit})
    return read_run(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gnn-llm", help="model of the run (default: gnn-llm)")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "bench",
                        help="where the trained run is kept (default: runs/bench)")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="flagship training budget in seconds (default: 60)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the report here (default: not kept)")
    parser.add_argument("--privacy", action="store_true", help="privacy-mode report")
    args = parser.parse_args()
    if not (ML100K / "u.data").is_file():
        print(f"MovieLens-100K not found at {ML100K}", file=sys.stderr)
        return 2
    saved = saved_run(args.model, args.runs_dir, args.time_limit)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    last = [started, "start"]

    def progress(event: dict) -> None:
        now = time.perf_counter()
        stages[last[1]] = stages.get(last[1], 0.0) + now - last[0]
        last[:] = [now, str(event.get("stage"))]

    html = build_report(saved.model, saved.dataset, saved.info, saved.test,
                        test_name="ml-100k test split",
                        pseudonymizer=Pseudonymizer.random() if args.privacy else None,
                        options=ReportOptions(), on_progress=progress)
    seconds = time.perf_counter() - started
    size_mb = len(html.encode("utf-8")) / 2**20
    if args.out is not None:
        write_report(args.out, html)
    print(f"model {args.model}: report {size_mb:.2f} MB (limit {LIMIT_MB:.0f} MB) in "
          f"{seconds:.1f} s; {html.count('Plotly.newPlot(')} figures")
    for stage, spent in stages.items():
        if stage != "start":
            print(f"  {stage}: {spent:.1f} s")
    return 0 if size_mb < LIMIT_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
