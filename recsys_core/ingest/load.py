"""The public entry point: raw files in, a validated :class:`~recsys_core.dataset.Dataset` out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

import numpy as np
import pandas as pd

from ..dataset import ITEM_COL, USER_COL, Dataset
from ..errors import DataError
from .columns import (
    EDGE_DST_ALIASES,
    EDGE_SRC_ALIASES,
    find_column,
    shorten,
)
from .interactions import check_id_limit, clean_ids, read_interactions
from .items import read_items
from .readers import (
    CHUNK_ROWS,
    Source,
    describe_format,
    read_table,
    sniff_table,
    source_name,
)
from .report import FileReport, IngestionReport
from .users import read_users

#: Default limit on data rows per file, checked before parsing.
DEFAULT_MAX_ROWS = 20_000_000
#: Default limit on distinct users and on distinct items.
DEFAULT_MAX_IDS = 5_000_000

_GENERIC_STEMS = {"u", "ratings", "rating", "interactions", "data", "train", "events", "clicks"}
_GENERIC_FOLDERS = {".", "..", "data", "datasets", "input", "inputs", "uploads", "tmp", "files"}


def load_dataset(
    interactions: Source,
    items: Source | None = None,
    user_edges: Source | None = None,
    users: Source | None = None,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    items_id_col: str | None = None,
    title_col: str | None = None,
    text_cols: Sequence[str] | None = None,
    categorical_cols: Sequence[str] | None = None,
    invalid_ratings: str = "implicit",
    name: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_ids: int = DEFAULT_MAX_IDS,
    chunk_rows: int = CHUNK_ROWS,
) -> Dataset:
    """Read, validate and clean input files into a :class:`~recsys_core.dataset.Dataset`.

    Each source is a filesystem path or a ``(display_name, bytes | file-like)`` pair (an
    upload; its name is only displayed). Formats: CSV, TSV, ``;``/``|``/``::``-separated text
    (UTF-8, UTF-8 with BOM, UTF-16 with BOM, else cp1252/latin-1, reported), Parquet, and the
    MovieLens files ``u.data``, ``ratings.csv``, ``ratings.dat``, ``u.item``, ``movies.csv``,
    ``movies.dat``. Soft problems are fixed by a stated policy and counted in ``dataset.report``
    (an :class:`~recsys_core.ingest.report.IngestionReport`).

    Args:
        interactions (Source): One row per user-item interaction.
        items (Source, optional): Item metadata. (default: :obj:`None`)
        user_edges (Source, optional): Two columns of user ids (e.g. ``user_id,friend_id``).
            (default: :obj:`None`)
        users (Source, optional): User attributes: a user id column plus categorical
            columns (age, gender, occupation ...; MovieLens ``u.user`` as it is). Numbers
            become quantile bins, identifiers (zip codes) are ignored; see
            :mod:`recsys_core.ingest.users`. (default: :obj:`None`)
        user_col, item_col, rating_col, time_col (str, optional): Interaction column names
            when they are not detected; ``column_<n>`` names columns of header-less files.
        items_id_col (str, optional): Id column of the items file. (default: detected)
        title_col (str, optional): Title column of the items file. (default: detected)
        text_cols (Sequence[str], optional): Free-text item columns joined into the
            description; ``[]`` for none. (default: detected)
        categorical_cols (Sequence[str], optional): Item attribute columns (each becomes a
            node type); ``[]`` for none. (default: detected)
        invalid_ratings (str): ``"implicit"`` keeps interactions whose rating is missing,
            non-numeric or non-finite with rating 1.0; ``"drop"`` drops them. Counted either
            way. (default: :obj:`"implicit"`)
        name (str, optional): Dataset name. (default: from the interactions file name)
        max_rows (int): Refuse files with more data rows. (default: :obj:`20_000_000`)
        max_ids (int): Refuse more distinct users or items. (default: :obj:`5_000_000`)
        chunk_rows (int): Interaction rows parsed at a time; memory grows by one chunk of
            parsed text plus a few bytes per row (codes, ratings, times), and the report is
            the same for every chunk size. (default: :obj:`1_000_000`)

    Raises:
        DataError: A file is unreadable, binary, empty, header-only, lacks id columns, exceeds
            the limits, or its ids match nothing in the interactions.
    """
    report = IngestionReport(name=name or dataset_name(interactions))
    inter, known_users, interacted = read_interactions(
        interactions, report, user_col=user_col, item_col=item_col, rating_col=rating_col,
        time_col=time_col, invalid_ratings=invalid_ratings, max_rows=max_rows, max_ids=max_ids,
        chunk_rows=chunk_rows)
    inter_name = report.files[0].name
    attribute_columns: list[str] = []
    if items is not None:
        item_frame, attribute_columns = read_items(
            items, report, interaction_item_col=report.files[0].mapping.get("item"),
            id_col=items_id_col, title_col=title_col, text_cols=text_cols,
            categorical_cols=categorical_cols, max_rows=max_rows)
        _check_overlap(item_frame[ITEM_COL], interacted, report.file("items").name)
        check_id_limit(len(item_frame), "items", report.file("items").name, max_ids)
    else:
        item_frame = pd.DataFrame({ITEM_COL: pd.Series([], dtype=object),
                                   "title": pd.Series([], dtype=object),
                                   "description": pd.Series([], dtype=object)})
    edge_frame = _read_user_edges(user_edges, report, max_rows) if user_edges is not None else None
    user_frame = (read_users(users, report, interaction_user_col=report.files[0].mapping.get(
        "user"), max_rows=max_rows) if users is not None else None)

    if edge_frame is not None:
        ends = pd.unique(np.concatenate([edge_frame["src"].to_numpy(object),
                                         edge_frame["dst"].to_numpy(object)]))
        check_id_limit(len(ends), "users", report.file("user_edges").name, max_ids)
    if user_frame is not None:
        check_id_limit(len(user_frame), "users", report.file("users").name, max_ids)
    _count_cross_file(report, known_users, interacted,
                      item_frame if items is not None else None, edge_frame, user_frame,
                      inter_name)
    dataset = Dataset(interactions=inter, items=item_frame, attribute_columns=attribute_columns,
                      user_edges=edge_frame, users=user_frame, report=report, name=report.name)
    report.counts = {
        "rows_read": report.files[0].rows_read,
        "rows_kept": report.files[0].rows_kept,
        "interactions": len(dataset.interactions),
        "users": dataset.num_users,
        "items": dataset.num_items,
        "items_with_metadata": len(item_frame),
        "cold_items": dataset.num_items - len(interacted),
        "user_edges": 0 if edge_frame is None else len(edge_frame),
        "attribute_values": {c: int(pd.Series(dataset.items[c].explode()).nunique())
                             for c in attribute_columns},
    }
    if user_frame is not None:
        report.counts["users_with_attributes"] = len(user_frame)
        report.counts["user_attribute_values"] = {
            c: int(user_frame[c].nunique()) for c in dataset.user_attribute_columns}
    density = len(dataset.interactions) / max(dataset.num_users * dataset.num_items, 1)
    # Tiny samples are legitimately dense; on real data this usually means a mis-mapped column.
    if density > 0.5 and dataset.num_users * dataset.num_items >= 1000:
        report.warnings.append(
            f"{inter_name}: {density:.0%} of all user-item pairs are interactions; check that "
            "the user and item columns are mapped correctly.")
    return dataset


def dataset_name(source: Source) -> str:
    """A readable name: the file stem, or its folder for generic names like ``u.data``."""
    path = PurePath(source_name(source).replace("\\", "/"))
    stem = path.name.split(".")[0] or "dataset"
    folder = path.parent.name
    if stem.lower() in _GENERIC_STEMS and folder and folder.lower() not in _GENERIC_FOLDERS:
        return folder
    return stem


def _count_cross_file(report: IngestionReport, known_users: pd.Index, interacted: pd.Index,
                      items: pd.DataFrame | None, edges: pd.DataFrame | None,
                      users: pd.DataFrame | None, inter_name: str) -> None:
    """Count ids that occur in one file but not in another (kept, per the policies)."""
    if items is not None:
        with_metadata = pd.Index(items[ITEM_COL].to_numpy(object), dtype=object)
        missing = interacted[~interacted.isin(with_metadata)]
        report.add_problem("items_missing_metadata", inter_name, len(missing),
                           missing[:5].tolist())
        cold = with_metadata[~with_metadata.isin(interacted)]
        report.add_problem("cold_items", report.file("items").name, len(cold), cold[:5].tolist())
    if edges is not None:
        ends = pd.Index(pd.unique(np.concatenate([edges["src"].to_numpy(object),
                                                  edges["dst"].to_numpy(object)])))
        only = ends[~ends.isin(known_users)]
        report.add_problem("edge_only_users", report.file("user_edges").name, len(only),
                           only[:5].tolist())
        if len(ends) and len(only) == len(ends):
            report.warnings.append(
                f"{report.file('user_edges').name}: no user in the edges file has interactions; "
                "check that both files use the same user ids.")
    if users is not None:
        only = pd.Index(users[USER_COL].to_numpy(object), dtype=object)
        only = only[~only.isin(known_users)]
        report.add_problem("metadata_only_users", report.file("users").name, len(only),
                           only[:5].tolist())
        if len(only) == len(users):
            report.warnings.append(
                f"{report.file('users').name}: no user in the users file has interactions; "
                "check that both files use the same user ids.")


def _check_overlap(item_ids: pd.Series, interacted: pd.Index, name: str) -> None:
    """An items file sharing no id with the interactions is a mapping mistake, not data."""
    meta = pd.Index(item_ids.to_numpy(object), dtype=object)
    if len(meta) and not meta.isin(interacted).any():
        raise DataError(
            f"none of the {len(meta):,} item ids in this file occurs in the interactions "
            f"(e.g. {', '.join(repr(shorten(x)) for x in meta[:3])} here vs "
            f"{', '.join(repr(shorten(x)) for x in interacted[:3])} in the interactions). Check that "
            "the right id column is used (--items-id-col).", file=name)


def _read_user_edges(source: Source, report: IngestionReport, max_rows: int) -> pd.DataFrame:
    sniffed = sniff_table(source, role="user-edges", max_rows=max_rows)
    name, columns = sniffed.name, sniffed.columns
    if len(columns) < 2:
        raise DataError("a user-edges file needs two columns of user ids (e.g. "
                        "user_id,friend_id); only one column was found.", file=name)
    src_col = dst_col = None
    if sniffed.header:
        src_col = find_column(columns, EDGE_SRC_ALIASES)
        dst_col = find_column(columns, EDGE_DST_ALIASES, taken=[src_col] if src_col else [])
    src_col = src_col or next(c for c in columns if c != dst_col)
    dst_col = dst_col or next(c for c in columns if c != src_col)
    table = read_table(sniffed, string_columns=[src_col, dst_col])
    src, empty_s = clean_ids(table.frame[src_col])
    dst, empty_d = clean_ids(table.frame[dst_col])
    file_report = FileReport(role="user_edges", name=name,
                             format=describe_format(sniffed),
                             encoding=sniffed.encoding, delimiter=sniffed.delimiter,
                             header=sniffed.header, columns=list(columns),
                             mapping={"source user": src_col, "target user": dst_col},
                             rows_read=table.rows_read)
    file_report.ignored_columns = {c: "only the first two user columns are used"
                                   for c in columns if c not in (src_col, dst_col)}
    report.files.append(file_report)
    report.warnings += [f"{name}: {n}" for n in sniffed.notes]
    report.add_problem("ragged_rows", name, len(table.ragged_lines),
                       [f"line {n}" for n in table.ragged_lines])
    empty = empty_s | empty_d
    report.add_problem("empty_edge_ids", name, int(empty.sum()),
                       [f"line {i + 1 + sniffed.header}" for i in np.flatnonzero(empty)[:5]])
    edges = pd.DataFrame({"src": src.to_numpy(object), "dst": dst.to_numpy(object)})[~empty]
    loops = (edges["src"] == edges["dst"]).to_numpy()
    report.add_problem("self_loop_edges", name, int(loops.sum()),
                       edges["src"][loops].head(5).tolist())
    edges = edges[~loops]
    dup = edges.duplicated().to_numpy()
    report.add_problem("duplicate_edges", name, int(dup.sum()),
                       [f"{s} -> {d}" for s, d in edges[dup].head(5).itertuples(index=False)])
    edges = edges[~dup].reset_index(drop=True)
    file_report.rows_kept = len(edges)
    return edges
