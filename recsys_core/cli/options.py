"""Options the sub-commands share, defined once: the input files and their columns, a saved
run and a user, and a held-out test file (read, aligned with a run, its skipped rows
reported)."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

#: ``(option suffix, what the column holds)`` of the column overrides, see
#: :func:`add_column_options`.
_COLUMNS = (("user", "user id"), ("item", "item id"), ("rating", "rating"),
            ("time", "timestamp"))


def add_input_files(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                    interactions_help: str, required: bool = True) -> None:
    """``--interactions`` (``required`` or not), ``--items``, ``--user-edges`` and ``--users``.

    Args:
        parser (ArgumentParser or argument group): Where the options go.
        interactions_help (str): What ``--interactions`` holds for this command.
        required (bool): Whether ``--interactions`` must be given. (default: :obj:`True`)
    """
    parser.add_argument("--interactions", required=required, metavar="FILE",
                        help=interactions_help)
    parser.add_argument("--items", metavar="FILE",
                        help="item metadata: id, title, description, categories/tags")
    parser.add_argument("--user-edges", metavar="FILE",
                        help="user-user edges (two user id columns: src, dst)")
    parser.add_argument("--users", metavar="FILE",
                        help="user attributes: a user id column plus categorical columns "
                             "(age, gender, occupation ...; MovieLens u.user works as it is)")


def add_run_and_user(parser: argparse.ArgumentParser) -> None:
    """``--run DIR`` (a run directory from ``train``) and ``--user U`` (a raw user id), both
    required: the saved run and the user a command scores or explains for."""
    parser.add_argument("--run", dest="run_dir", required=True, metavar="DIR",
                        help="run directory from `train`")
    parser.add_argument("--user", required=True, metavar="U", help="raw user id")


def add_column_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                       of: str) -> None:
    """``--user-col``, ``--item-col``, ``--rating-col`` and ``--time-col``: column names that
    override the detection in the file named by ``of`` (e.g. ``"--interactions"``)."""
    for name, what in _COLUMNS:
        parser.add_argument(f"--{name}-col", metavar="NAME", help=f"{what} column of {of}")


def column_options(args: argparse.Namespace) -> dict[str, str | None]:
    """The :func:`~recsys_core.ingest.load_dataset` keywords of :func:`add_column_options`."""
    return {f"{name}_col": getattr(args, f"{name}_col") for name, _ in _COLUMNS}


def add_ingest_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The item-file columns (``--items-id-col``, ``--title-col``, ``--text-cols``,
    ``--categorical-cols``), ``--invalid-ratings`` and the size limits (``--max-rows``,
    ``--max-ids``): the rest of what :func:`~recsys_core.ingest.load_dataset` takes, so that
    every command reading :func:`add_input_files`' files reads them alike (the ingestion
    messages name these options)."""
    from ..ingest import DEFAULT_MAX_IDS, DEFAULT_MAX_ROWS

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


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def load_inputs(args: argparse.Namespace):
    """The :class:`~recsys_core.dataset.Dataset` of :func:`add_input_files`' files read with
    :func:`add_column_options`' columns and :func:`add_ingest_options`' settings."""
    from ..ingest import load_dataset

    return load_dataset(args.interactions, args.items, args.user_edges, args.users,
                        **column_options(args), items_id_col=args.items_id_col,
                        title_col=args.title_col, text_cols=args.text_cols,
                        categorical_cols=args.categorical_cols,
                        invalid_ratings=args.invalid_ratings, max_rows=args.max_rows,
                        max_ids=args.max_ids)


def read_test(args: argparse.Namespace) -> pd.DataFrame:
    """The interactions of ``args.test``, read with :func:`add_column_options`' columns."""
    from ..ingest import load_dataset

    return load_dataset(args.test, **column_options(args)).interactions


def aligned_test(test: pd.DataFrame, dataset, file: str, label: str = ""
                 ) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`~recsys_core.cli.evaluate.align_test`, with a note on stderr for every kind of
    row left out (``label``, e.g. the run, starts each note)."""
    from .evaluate import align_test

    frame, skipped = align_test(test, dataset, file)
    for reason, count in skipped.items():
        if count:
            print(f"note: {label + ': ' if label else ''}skipped {count:,} test row(s): "
                  f"{reason.replace('_', ' ')}.", file=sys.stderr)
    return frame, skipped
