"""``python -m recsys_core validate``: ingest files and print the ingestion report."""

from __future__ import annotations

import argparse
import json
import sys

from .options import add_column_options, add_ingest_options, add_input_files, load_inputs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check input files and print the ingestion report",
        description="Read interactions (and optional item metadata, users, user-user edges) "
                    "exactly as training would, then print what was detected, every problem "
                    "found with its count and the policy applied. Exit code 0 when the files "
                    "can be used, 2 (with the reason) when they cannot.")
    add_input_files(parser, "user-item interactions (CSV/TSV/Parquet/MovieLens)")
    add_column_options(parser, of="--interactions")
    add_ingest_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_inputs(args)
    report = dataset.report
    text = json.dumps(report.to_dict(), indent=2) + "\n" if args.json else report.to_text()
    sys.stdout.write(text)
    return 0

