"""Item metadata: id, title, free text and categorical attributes.

Columns are classified automatically (and every choice is reported): known text names
(``description``, ``overview``, ``plot`` ...) and long, mostly unique prose become the
description; columns whose values split into short repeated tokens on ``|``, ``;`` or (with
stricter evidence) ``,`` become multi-valued attributes; low-cardinality short strings become
single-valued attributes; numbers, dates, URLs and identifiers are ignored. Columns named like
``genres``, ``category`` or ``tags`` are categorical by name. Explicit lists of text/categorical
columns replace the detection. Groups of 0/1 flag columns (MovieLens ``u.item`` genres) become
one multi-valued attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..dataset import DESCRIPTION_COL, ITEM_COL, TITLE_COL
from ..errors import DataError
from .columns import (
    CATEGORICAL_ALIASES,
    ITEM_ALIASES,
    TEXT_ALIASES,
    TITLE_ALIASES,
    find_column,
    format_columns,
    normalize_name,
    resolve_override,
)
from .interactions import clean_ids
from .movielens import ML100K_GENRES
from .readers import NULL_TOKENS, Source, describe_format, read_table, sniff_table
from .report import FileReport, IngestionReport
from .timestamps import parse_timestamps

#: Name of the attribute built from a group of 0/1 flag columns with header names.
FLAGS_ATTRIBUTE = "flags"
#: Tokens that mean "no value" inside multi-valued cells (MovieLens writes "(no genres listed)").
EMPTY_TOKENS = NULL_TOKENS | {"(no genres listed)"}
_MULTI_SEPARATORS = (("|", 0.05), (";", 0.05), (",", 0.2))


def read_items(source: Source, report: IngestionReport, *, interaction_item_col: str | None,
               id_col: str | None = None, title_col: str | None = None,
               text_cols: Sequence[str] | None = None,
               categorical_cols: Sequence[str] | None = None,
               max_rows: int) -> tuple[pd.DataFrame, list[str]]:
    """Read an item metadata file.

    Args:
        source (Source): Path or ``(display_name, bytes | file-like)``.
        report (IngestionReport): Receives the file report and problems.
        interaction_item_col (str, optional): Item column name in the interactions file, tried
            first when looking for the id column.
        id_col, title_col (str, optional): Explicit column names.
        text_cols (Sequence[str], optional): Free-text columns joined into the description;
            ``None`` detects them, ``[]`` means none. (default: :obj:`None`)
        categorical_cols (Sequence[str], optional): Attribute columns; ``None`` detects them,
            ``[]`` means none. (default: :obj:`None`)
        max_rows (int): Row limit.

    Returns:
        ``(items, attribute_columns)``: items with ``item_id``, ``title``, ``description`` and one
        ``list[str]`` column per attribute.
    """
    sniffed = sniff_table(source, role="items", max_rows=max_rows)
    table = read_table(sniffed)
    name, frame = sniffed.name, table.frame
    fmt = describe_format(sniffed)
    flag_groups: dict[str, list[str]] = {}
    flag_labels: dict[str, list[str]] = {}
    columns = list(frame.columns)
    if fmt == "movielens u.item":
        flag_groups["genre"] = columns[-len(ML100K_GENRES):]
        flag_labels["genre"] = list(ML100K_GENRES)
    file_report = FileReport(role="items", name=name, format=fmt, encoding=sniffed.encoding,
                             delimiter=sniffed.delimiter, header=sniffed.header,
                             columns=columns, rows_read=table.rows_read)
    report.files.append(file_report)
    report.warnings += [f"{name}: {n}" for n in sniffed.notes]
    report.add_problem("ragged_rows", name, len(table.ragged_lines),
                       [f"line {n}" for n in table.ragged_lines])

    # -- id and title
    if id_col:
        id_col = resolve_override(columns, id_col, file=name, flag="--items-id-col")
    else:
        aliases = ((normalize_name(interaction_item_col),) if interaction_item_col else ()) \
            + ITEM_ALIASES + ("id",)
        id_col = find_column(columns, aliases) or (None if sniffed.header else columns[0])
    if id_col is None:
        raise DataError(
            f"no item id column found. Columns found: {format_columns(columns)}. Name it with "
            "--items-id-col (items_id_col= in Python) or call it item_id (or the same name "
            "as in the interactions file).", file=name)
    if title_col:
        title_col = resolve_override(columns, title_col, file=name, flag="--title-col")
    else:
        title_col = find_column(columns, TITLE_ALIASES, taken=[id_col])
        if title_col is None and not sniffed.header and len(columns) > 1 \
                and not _mostly_numeric(frame[columns[1]]):
            title_col = columns[1]
    used = {id_col, title_col} - {None}
    for group in flag_groups.values():
        used.update(group)

    # -- free text
    if text_cols is None:
        text_cols = [c for c in columns if c not in used and normalize_name(c) in TEXT_ALIASES]
        detect_text = True
    else:
        text_cols = [resolve_override(columns, c, file=name, flag="--text-cols") for c in text_cols]
        detect_text = False
    used.update(text_cols)
    named = [] if categorical_cols is not None else [
        c for c in columns if c not in used and normalize_name(c) in CATEGORICAL_ALIASES]

    # -- categorical attributes
    separators: dict[str, str | None] = {}
    ignored: dict[str, str] = {}
    if categorical_cols is not None:
        for col in categorical_cols:
            col = resolve_override(columns, col, file=name, flag="--categorical-cols")
            separators[col] = _explicit_separator(frame[col])
        for col in columns:
            if col not in used and col not in separators:
                ignored[col] = "not listed in the text or categorical columns"
    else:
        for col in named:
            separators[col] = _explicit_separator(frame[col])
        binary = []
        for col in columns:
            if col in used or col in separators:
                continue
            kind, detail = classify_column(frame[col])
            if kind == "categorical":
                separators[col] = detail
            elif kind == "text" and detect_text:
                text_cols.append(col)
            elif kind == "binary":
                binary.append(col)
            else:
                ignored[col] = detail if kind == "ignored" else "free text (text columns given)"
        if len(binary) >= 2 and sniffed.header:
            flag_groups[FLAGS_ATTRIBUTE] = binary
            flag_labels[FLAGS_ATTRIBUTE] = binary
        else:
            ignored.update({c: "a single 0/1 flag" for c in binary})

    # -- assemble
    ids, empty = clean_ids(frame[id_col])
    items = pd.DataFrame({ITEM_COL: ids.to_numpy(dtype=object)})
    items[TITLE_COL] = _clean_text(frame[title_col]) if title_col else ""
    items[DESCRIPTION_COL] = _join_text([frame[c] for c in text_cols], len(frame))
    attribute_columns: list[str] = []
    reserved = {ITEM_COL, TITLE_COL, DESCRIPTION_COL}
    node_types: set[str] = set()
    sources: dict[str, str] = {}
    for col, sep in separators.items():
        attr = _attribute_name(col, reserved, node_types)
        items[attr] = to_lists(frame[col], sep)
        attribute_columns.append(attr)
        if sep is not None:
            how = f"split on '{sep}'"
        else:
            how = "list values" if _is_list_column(frame[col]) else "one value per item"
        sources[attr] = how if attr == col else f"column '{col}', {how}"
    for group, cols in flag_groups.items():
        attr = _attribute_name(group, reserved, node_types)
        items[attr] = flags_to_lists(frame[cols], flag_labels[group])
        attribute_columns.append(attr)
        sources[attr] = f"{len(cols)} 0/1 flag columns"

    report.add_problem("empty_item_ids", name, int(empty.sum()),
                       [f"line {i + 1 + sniffed.header}" for i in np.flatnonzero(empty)[:5]])
    items = items[~empty].reset_index(drop=True)
    dup = items[ITEM_COL].duplicated(keep="first").to_numpy()
    report.add_problem("merged_item_rows", name, int(dup.sum()),
                       items[ITEM_COL][dup].drop_duplicates().head(5).tolist())
    if dup.any():
        items = merge_item_rows(items, attribute_columns)
        for attr in attribute_columns:
            sources[attr] = (sources[attr].replace("one value per item", "one value per row")
                             + ", an item's rows joined")
    if items.empty:
        raise DataError(f"no item rows with an id remain (id column '{id_col}' is empty). "
                        "Check the id column (--items-id-col).", file=name, column=id_col)
    no_text = (items[TITLE_COL] == "") & (items[DESCRIPTION_COL] == "")
    report.add_problem("items_without_text", name, int(no_text.sum()),
                       items[ITEM_COL][no_text].head(5).tolist())
    file_report.mapping = {"item id": id_col, "title": title_col, "text": list(text_cols),
                           "attributes": sources}
    file_report.ignored_columns = ignored
    file_report.rows_kept = len(items)
    return items, attribute_columns


def merge_item_rows(items: pd.DataFrame, attribute_columns: Sequence[str]) -> pd.DataFrame:
    """One row per item id (in order of first occurrence) from rows that repeat ids: a long
    table such as one ``(item, tag)`` pair per row. Attribute values are joined (distinct, in
    order of first occurrence); title and description come from the item's first row that
    has them."""
    codes, uniques = pd.factorize(items[ITEM_COL])
    merged = pd.DataFrame({ITEM_COL: np.asarray(uniques, dtype=object)})
    for col in (TITLE_COL, DESCRIPTION_COL):
        values = items[col].to_numpy(dtype=object)
        present = values != ""
        first = pd.Series(values[present]).groupby(codes[present], sort=False).first()
        out = np.full(len(uniques), "", dtype=object)
        out[first.index.to_numpy()] = first.to_numpy()
        merged[col] = out
    for col in attribute_columns:
        joined: list[dict[str, None]] = [{} for _ in range(len(uniques))]
        for code, values in zip(codes.tolist(), items[col].tolist(), strict=True):
            joined[code].update(dict.fromkeys(values))
        merged[col] = [list(values) for values in joined]
    return merged


def classify_column(values: pd.Series) -> tuple[str, str | None]:
    """Guess what a metadata column holds.

    Returns:
        ``("categorical", separator_or_None)``, ``("text", None)``, ``("binary", None)`` or
        ``("ignored", reason)``.
    """
    if _is_list_column(values):
        return "categorical", None  # native list column (Parquet)
    present = _present(values)
    if present.empty:
        return "ignored", "empty"
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().mean() >= 0.95:
        if numbers.dropna().isin([0, 1]).all():
            return "binary", None
        return "ignored", "numeric (list it in the categorical columns to use it)"
    sample = present.head(500)
    parsed = parse_timestamps(sample)
    if parsed.kind.startswith(("date", "datetime")) and parsed.unparsed <= 0.1 * len(sample):
        return "ignored", "dates"
    sep = multi_value_separator(present)
    if sep is not None:
        return "categorical", sep
    unique = present.nunique()
    if unique == 1:
        return "ignored", "a single value for every item"
    mean_len = present.str.len().mean()
    if unique <= max(2, 0.5 * len(present)) and mean_len <= 60:
        return "categorical", None
    if (present.str.count(r"\s+") + 1).mean() >= 5:
        return "text", None
    return "ignored", "mostly unique values (an identifier, URL or name)"


def multi_value_separator(present: pd.Series) -> str | None:
    """``|``, ``;`` or ``,`` when the column clearly holds lists of short repeated tokens."""
    if present.empty:  # every value missing: shares below would be NA
        return None
    for sep, min_share in _MULTI_SEPARATORS:
        share = present.str.contains(sep, regex=False).mean()
        if share < min_share:
            continue
        tokens = _tokens(present, sep)
        if tokens.empty:
            continue
        distinct = tokens.nunique()
        repeat = len(tokens) / distinct
        short = tokens.str.len().mean() <= 40 and (tokens.str.count(" ") + 1).mean() <= 4
        if sep == ",":
            # Commas also occur in prose and names: ask for short tokens that repeat often.
            ok = short and repeat >= 2 and (tokens.str.count(" ") + 1).mean() <= 3 \
                and tokens.str.len().mean() <= 25
        else:
            ok = short and (repeat >= 1.5 or share >= 0.3)
        if ok:
            return sep
    return None


def to_lists(values: pd.Series, sep: str | None) -> list[list[str]]:
    """One list of distinct, stripped, non-empty tokens per row (order of first occurrence).

    A plain loop over items: it builds the Python lists the dataset stores anyway, and beats
    explode/groupby round trips (items are far fewer than interactions).
    """
    out = []
    for value in values.tolist():
        if isinstance(value, (list, tuple, np.ndarray)):
            tokens = [str(t) for t in value if t is not None]
        elif value is None or value is pd.NA or (isinstance(value, float) and value != value):
            tokens = []
        else:
            tokens = str(value).split(sep) if sep else [str(value)]
        clean = {}
        for token in tokens:
            token = token.strip()
            if token.lower() not in EMPTY_TOKENS:
                clean[token] = None
        out.append(list(clean))
    return out


def flags_to_lists(flags: pd.DataFrame, labels: Sequence[str]) -> list[list[str]]:
    """Labels of the columns set to 1, per row."""
    matrix = flags.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    rows, cols = np.nonzero(matrix)
    out: list[list[str]] = [[] for _ in range(len(flags))]
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        out[r].append(str(labels[c]))
    return out


def _present(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text[text.notna() & ~text.str.lower().isin(NULL_TOKENS)]


def _mostly_numeric(values: pd.Series) -> bool:
    present = _present(values)
    return bool(len(present)) and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.95


def _tokens(present: pd.Series, sep: str) -> pd.Series:
    tokens = present.str.split(sep, regex=False).explode().str.strip()
    return tokens[tokens.notna() & (tokens != "")]


def _is_list_column(values: pd.Series) -> bool:
    first = values.dropna().head(1).tolist()
    return bool(first) and isinstance(first[0], (list, tuple, np.ndarray))


def _explicit_separator(values: pd.Series) -> str | None:
    """Separator of a column known to be categorical (``None``: one value, or native lists)."""
    if _is_list_column(values):
        return None
    present = _present(values)
    detected = multi_value_separator(present)
    if detected is not None:
        return detected
    for sep in ("|", ";"):
        if present.str.contains(sep, regex=False).any():
            return sep
    return None


def _clean_text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    text = text.where(~text.str.lower().isin(NULL_TOKENS), "")
    return text.fillna("").astype(object).reset_index(drop=True)


def _join_text(parts: list[pd.Series], length: int) -> pd.Series:
    if not parts:
        return pd.Series([""] * length, dtype=object)
    joined = _clean_text(parts[0]).astype("string")
    for part in parts[1:]:
        joined = joined.str.cat(_clean_text(part).astype("string"), sep=" ")
    return joined.str.replace(r"\s+", " ", regex=True).str.strip().astype(object)


def _attribute_name(column: str, reserved: set[str], node_types: set[str]) -> str:
    """A column name that clashes neither with item columns nor with other node types."""
    from ..graph import attribute_node_type  # lazy: keeps torch out of plain file reading

    name, k = column, 2
    while name in reserved or attribute_node_type(name) in node_types:
        name, k = f"{column}_{k}", k + 1
    reserved.add(name)
    node_types.add(attribute_node_type(name))
    return name
