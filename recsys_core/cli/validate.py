"""``python -m recsys_core validate``: ingest files and print the ingestion report."""

from __future__ import annotations

import argparse
import json
import sys

from ..ingest import DEFAULT_MAX_IDS, DEFAULT_MAX_ROWS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="check input files and print the ingestion report",
        description="Read interactions (and optional item metadata, users, user-user edges) "
                    "exactly as training would, then print what was detected, every problem "
                    "found with its count and the policy applied. Exit code 0 when the files "
                    "can be used, 2 (with the reason) when they cannot.")
    parser.add_argument("--interactions", required=True, metavar="FILE",
                        help="user-item interactions (CSV/TSV/Parquet/MovieLens)")
    parser.add_argument("--items", metavar="FILE", help="item metadata")
    parser.add_argument("--user-edges", metavar="FILE", help="user-user edges (two id columns)")
    parser.add_argument("--users", metavar="FILE", help="user metadata")
    parser.add_argument("--user-col", metavar="NAME", help="user id column of --interactions")
    parser.add_argument("--item-col", metavar="NAME", help="item id column of --interactions")
    parser.add_argument("--rating-col", metavar="NAME", help="rating column of --interactions")
    parser.add_argument("--time-col", metavar="NAME", help="timestamp column of --interactions")
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
    from ..ingest import load_dataset

    dataset = load_dataset(
        args.interactions, args.items, args.user_edges, args.users,
        user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
        time_col=args.time_col, items_id_col=args.items_id_col, title_col=args.title_col,
        text_cols=args.text_cols, categorical_cols=args.categorical_cols,
        invalid_ratings=args.invalid_ratings, max_rows=args.max_rows, max_ids=args.max_ids)
    report = dataset.report
    text = json.dumps(report.to_dict(), indent=2) + "\n" if args.json else report.to_text()
    sys.stdout.write(text)
    return 0


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
