"""``python -m recsys_core recommend``: top-K lists from a saved run, as a safe CSV file."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from ..errors import DataError, RecScopeError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recommend", help="write top-K recommendations of a saved run to CSV",
        description="Rank items for users with a saved run and write user_id,item_id,rank,score "
                    "(training interactions are excluded; formula-like cells are neutralised).")
    parser.add_argument("--run", dest="run_dir", required=True, metavar="DIR", help="run directory from `train`")
    parser.add_argument("--k", type=int, default=10, metavar="K",
                        help="recommendations per user (default: 10)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="CSV file to write ('-' for standard output)")
    parser.add_argument("--users", metavar="FILE",
                        help="user ids to recommend for: one per line, or a CSV with a user id "
                             "column (default: every user)")
    parser.add_argument("--candidates", metavar="FILE",
                        help="item ids to rank (one per line, or a CSV with an item id "
                             "column); may include items without interactions (default: all)")
    parser.add_argument("--privacy", action="store_true",
                        help="write salted pseudonyms instead of user ids (salt: "
                             "RECSCOPE_PRIVACY_SALT if set, else fresh for this run; see "
                             "docs/SECURITY.md)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..dataset import UnknownIdError
    from ..run import load_run

    if args.k < 1:
        raise DataError(f"--k must be at least 1, got {args.k}.")
    model, dataset, _ = load_run(args.run_dir)
    users = candidates = None
    if args.users:
        users = read_id_list(args.users, "user", dataset.user_index.__contains__)
        _check_known(users, dataset.user_idx, args.users, UnknownIdError)
    if args.candidates:
        candidates = read_id_list(args.candidates, "item", dataset.item_index.__contains__)
        _check_known(candidates, dataset.item_idx, args.candidates, UnknownIdError)
    n_users = dataset.num_users if users is None else len(users)
    blocks = model.iter_recommend(users=users, k=args.k, exclude_seen=True,
                                  candidates=candidates)
    if getattr(args, "privacy", False):
        from ..privacy import Pseudonymizer

        pseudonymizer = Pseudonymizer.from_environment()
        blocks = (pseudonymizer.apply(block) for block in blocks)
    if args.out == "-":
        rows = write_blocks(blocks, sys.stdout, n_users)
    else:
        try:
            rows = write_blocks_to_file(blocks, args.out, n_users)
        except OSError as exc:
            raise RecScopeError(f"cannot write '{args.out}' ({exc.strerror or exc}); choose "
                                f"another --out.") from exc
    where = "standard output" if args.out == "-" else args.out
    print(f"Wrote {rows:,} recommendations for {n_users:,} users (top {args.k}) to {where}",
          file=sys.stderr)
    return 0


def write_blocks(blocks: Iterable[pd.DataFrame], handle: IO[str], num_users: int,
                 progress: bool | None = None) -> int:
    """Write streamed top-K blocks as one neutralised CSV table, each block as it finishes.

    The text is the same as :func:`recsys_core.csv_safety.to_csv_string` of the blocks
    concatenated (one header row, every text cell neutralised and quoted).

    Args:
        blocks (iterable of pandas.DataFrame): ``user_id, item_id, rank, score`` blocks
            (:meth:`~recsys_core.models.base.Recommender.iter_recommend`).
        handle (file-like): Open text handle.
        num_users (int): Users in all blocks (the progress bar's total).
        progress (bool, optional): Show a tqdm bar on standard error; ``None`` shows it on
            terminals only. (default: :obj:`None`)

    Returns:
        Rows written.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..csv_safety import to_csv_string
    from ..models.base import RECOMMEND_COLUMNS

    rows = 0
    header = True
    with tqdm(total=num_users, desc="Recommending", unit="user", file=sys.stderr,
              disable=None if progress is None else not progress) as bar:
        for block in blocks:
            text = to_csv_string(block)
            handle.write(text if header else text.partition("\n")[2])
            header = False
            rows += len(block)
            bar.update(int(block["user_id"].nunique()))
            bar.set_postfix(rows=f"{rows:,}", refresh=False)
        if header:  # nothing to recommend: the header row alone
            handle.write(to_csv_string(pd.DataFrame(columns=RECOMMEND_COLUMNS)))
        bar.update(num_users - bar.n)
    return rows


def write_blocks_to_file(blocks: Iterable[pd.DataFrame], path: str, num_users: int) -> int:
    """:func:`write_blocks` into ``path`` atomically: a temporary file beside it, renamed
    when every block is written (an interrupted run leaves no half-written file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as handle:
            rows = write_blocks(blocks, handle, num_users)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _check_known(ids: list[str], lookup: Callable, file: str, unknown_error: type) -> None:
    try:
        lookup(ids)
    except unknown_error as exc:
        raise DataError(f"{exc} The run knows only the ids of the data it was trained on "
                        f"(plus items from its item metadata).", file=file) from exc


def read_id_list(path: str, kind: str, is_known: Callable[[str], bool]) -> list[str]:
    """Ids from a file holding one id per line, or a delimited table with an id column.

    A single-column file may start with a header line (e.g. ``user_id``): it is skipped when
    it looks like a column name and is not itself a known id. A table must have a header
    row; the id column is found by name (``user_id``, ``userId``, ``item_id``, ``movieId``
    ...). Blank lines are skipped and repeated ids kept once, in first-seen order.

    Args:
        path (str): The file.
        kind (str): ``"user"`` or ``"item"``.
        is_known (callable): Whether a string is an id of the run (for header detection).

    Raises:
        DataError: Unreadable file, no id column, or no ids.
    """
    from ..ingest.columns import (
        ITEM_ALIASES,
        USER_ALIASES,
        find_column,
        format_columns,
        is_known_column_name,
    )
    from ..ingest.readers import sniff_delimiter

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the {kind} id list ({exc.strerror or exc}).",
                        file=path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"the {kind} id list is not UTF-8 text (byte {exc.start}). Save it as "
                        f"UTF-8 CSV or plain text, one id per line.", file=path) from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"the {kind} id list is empty; put one {kind} id per line.", file=path)
    delimiter = sniff_delimiter(lines[:200], path)
    if delimiter in (None, " "):  # one id per line (ids may contain spaces)
        values = [line.strip() for line in lines]
        first = values[0]
        if is_known_column_name(first) and not is_known(first):
            values = values[1:]
    else:
        rows = ([line.split(delimiter) for line in lines] if len(delimiter) > 1
                else list(csv.reader(lines, delimiter=delimiter)))
        header = [cell.strip() for cell in rows[0]]
        aliases = USER_ALIASES if kind == "user" else ITEM_ALIASES
        column = find_column(header, aliases) or find_column(header, ("id",))
        if column is None:
            raise DataError(f"no {kind} id column found in the header row. Columns found: "
                            f"{format_columns(header)}. Name the column {kind}_id, or give one "
                            f"id per line.", file=path)
        j = header.index(column)
        values = [row[j].strip() for row in rows[1:] if len(row) > j and row[j].strip()]
    ids = list(dict.fromkeys(values))
    if not ids:
        raise DataError(f"the {kind} id list holds no ids.", file=path)
    return ids
