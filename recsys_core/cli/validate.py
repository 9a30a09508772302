"""``python -m recsys_core validate``: ingest files and print the ingestion report."""

from __future__ import annotations

import argparse
import json
import sys

from ..ingest import DEFAULT_MAX_IDS, DEFAULT_MAX_ROWS
from .options import add_column_options, add_input_files, load_inputs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check input files and print the ingestion report",
        description="Read interactions (and optional item metadata, users, user-user edges) "
                    "exactly as training would, then print what was detected, every problem "
                    "found with its count and the policy applied. Exit code 0 when the files "
                    "can be used, 2 (with the reason) when they cannot.")
    add_input_files(parser, "user-item interactions (CSV/TSV/Parquet/MovieLens)")
    add_column_options(parser, of="--interactions")
    parser.add_argument("--items-id-col", metavar="NAME", help="id column of --items")
    parser.add_argument("--title-col", metavar="NAME", help="title column of --items")
    parser.add_argument("--text-cols", metavar="A,B", type=_names,
                        help="free-text columns of --items, comma-separated ('' for none; "
                             "default: detected)")
    parser.add_argument("--categorical-cols", metavar="A,B", type=_names,
                        help="categorical columns of --items, comma-separated ('' for none; "
                             "default: detected)")
    parser.add_argument("--invalid-ratings", choices=["implicit", "drop"], default="implicit",
                        help="missing/non-numeric ratings: keep as implicit 1.0 or drop "
                             "(default: implicit)")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                        help=f"refuse files with more rows (default: {DEFAULT_MAX_ROWS:,})")
    parser.add_argument("--max-ids", type=int, default=DEFAULT_MAX_IDS, metavar="N",
                        help=f"refuse more distinct users or items (default: {DEFAULT_MAX_IDS:,})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_inputs(
        args, items_id_col=args.items_id_col, title_col=args.title_col,
        text_cols=args.text_cols, categorical_cols=args.categorical_cols,
        invalid_ratings=args.invalid_ratings, max_rows=args.max_rows, max_ids=args.max_ids)
    report = dataset.report
    text = json.dumps(report.to_dict(), indent=2) + "\n" if args.json else report.to_text()
    sys.stdout.write(text)
    return 0


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
