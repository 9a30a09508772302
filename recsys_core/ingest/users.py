"""Reading a user attributes file (a user id column plus per-user attributes).

Every column other than the id is classified once, and the result is stated in the report:

* identifiers (a name like ``zip_code``, ``email`` or ``phone``; fixed-width digit codes
  such as zip codes; text with mostly unique values) cannot group users and are ignored;
* numbers (95% or more of the present values parse; a majority for quantity names such as
  ``age``) with at most
  :data:`MAX_NUMERIC_CODES` distinct values and a name that is not a quantity (``age``,
  ``income`` ...) are codes, one attribute value per code (MovieLens-1M occupations);
* other numbers become :data:`NUMERIC_BINS` quantile bins labelled by the range of values
  they hold (``18-24``); values that do not parse are counted and left without a value;
* short repeated strings are single-valued categories (``gender``, ``occupation``).

MovieLens ``u.user`` (``user id|age|gender|occupation|zip code``, no header) and ``users.dat``
are recognised by their shape (:mod:`.movielens`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import USER_COL
from ..errors import DataError
from .columns import USER_ALIASES, find_column, format_columns, normalize_name
from .interactions import clean_ids
from .readers import NULL_TOKENS, Source, describe_format, read_table, sniff_table
from .report import FileReport, IngestionReport

#: Quantile bins a numeric user column is grouped into (fewer when values repeat).
NUMERIC_BINS = 5
#: Numeric columns with at most this many distinct values are codes (one value per code),
#: unless their name is a quantity (see :data:`QUANTITY_NAMES`).
MAX_NUMERIC_CODES = 32
#: Share of present values that must parse as numbers for a column to be numeric.
NUMERIC_SHARE = 0.95
#: Names of numeric columns that always hold quantities (binned, never codes).
QUANTITY_NAMES = frozenset(normalize_name(n) for n in (
    "age", "age_years", "income", "salary", "year_of_birth", "birth_year", "birthyear", "height",
    "weight", "tenure", "days_since_signup", "account_age"))
#: Names of columns that identify a person or place rather than group users.
IDENTIFIER_NAMES = frozenset(normalize_name(n) for n in (
    "zip", "zip_code", "zipcode", "postcode", "post_code", "postal_code", "email", "e_mail",
    "phone", "phone_number", "address", "street", "name", "first_name", "last_name",
    "full_name", "username", "user_name", "login", "ip", "ip_address", "password"))


def read_users(source: Source, report: IngestionReport, *, interaction_user_col: str | None,
               max_rows: int) -> pd.DataFrame:
    """Read a user attributes file.

    Args:
        source (Source): Path or ``(display_name, bytes | file-like)``.
        report (IngestionReport): Receives the file report and the counted problems
            (``ragged_rows``, ``empty_user_ids``, ``duplicate_user_rows``,
            ``invalid_user_values``).
        interaction_user_col (str, optional): User column name in the interactions file,
            tried first when looking for the id column.
        max_rows (int): Row limit.

    Returns:
        One row per user: ``user_id`` (str) and one column per attribute holding a ``str``
        value or :obj:`None` (missing).

    Raises:
        DataError: No user id column, or no row with an id.
    """
    sniffed = sniff_table(source, role="users", max_rows=max_rows)
    name, columns = sniffed.name, sniffed.columns
    if sniffed.header:
        aliases = ((normalize_name(interaction_user_col),) if interaction_user_col else ()) \
            + USER_ALIASES + ("id",)
        id_col = find_column(columns, aliases)
    else:
        id_col = columns[0]
    if id_col is None:
        raise DataError(f"no user id column found. Columns found: {format_columns(columns)}. "
                        "Call it user_id (or the same name as in the interactions file).",
                        file=name)
    table = read_table(sniffed, string_columns=[id_col])
    frame = table.frame.reset_index(drop=True)
    file_report = FileReport(role="users", name=name, format=describe_format(sniffed),
                             encoding=sniffed.encoding, delimiter=sniffed.delimiter,
                             header=sniffed.header, columns=list(columns),
                             rows_read=table.rows_read)
    report.files.append(file_report)
    report.warnings += [f"{name}: {n}" for n in sniffed.notes]
    report.add_problem("ragged_rows", name, len(table.ragged_lines),
                       [f"line {n}" for n in table.ragged_lines])

    ids, empty = clean_ids(frame[id_col])
    users = pd.DataFrame({USER_COL: ids.to_numpy(object)})
    sources: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for column in columns:
        if column == id_col:
            continue
        kind, detail = classify_user_column(column, frame[column])
        if kind == "ignored":
            ignored[column] = detail
            continue
        attribute = _attribute_name(column, set(users.columns))
        if kind == "numeric":
            values, how, invalid = bin_numeric(frame[column])
            rows = np.flatnonzero(invalid)
            report.add_problem("invalid_user_values", name, len(rows),
                               [f"line {r + 1 + sniffed.header}, column '{column}': "
                                f"{frame[column].iloc[r]!r}" for r in rows[:5]])
        else:
            values, how = category_values(frame[column]), detail
        users[attribute] = values
        sources[attribute] = how if attribute == column else f"column '{column}', {how}"

    report.add_problem("empty_user_ids", name, int(empty.sum()),
                       [f"line {i + 1 + sniffed.header}" for i in np.flatnonzero(empty)[:5]])
    users = users[~empty]
    dup = users[USER_COL].duplicated().to_numpy()
    report.add_problem("duplicate_user_rows", name, int(dup.sum()),
                       users[USER_COL][dup].head(5).tolist())
    users = users[~dup].reset_index(drop=True)
    if users.empty:
        raise DataError(f"no user rows with an id remain (id column '{id_col}' is empty). "
                        "Check that the users file has a user id column (user_id, or the "
                        "first column of a file without a header).", file=name, column=id_col)
    file_report.mapping = {"user id": id_col, "attributes": sources}
    file_report.ignored_columns = ignored
    file_report.rows_kept = len(users)
    if sources:
        file_report.details["user attribute values"] = {
            c: int(users[c].nunique()) for c in sources}
    return users


def classify_user_column(column: str, values: pd.Series) -> tuple[str, str]:
    """What a user column is good for.

    Args:
        column (str): The column name (identifier and quantity names are recognised).
        values (pandas.Series): Its values.

    Returns:
        ``("numeric", "")`` (binned or codes, see :func:`bin_numeric`),
        ``("categorical", how)`` or ``("ignored", reason)``.
    """
    present = _present(values)
    if present.empty:
        return "ignored", "empty"
    if normalize_name(column) in IDENTIFIER_NAMES:
        return "ignored", "an identifier (zip code, e-mail, name ...): it cannot group users"
    unique = present.nunique()
    numbers = pd.to_numeric(present, errors="coerce")
    share = numbers.notna().mean()
    if share >= NUMERIC_SHARE or (share > 0.5 and normalize_name(column) in QUANTITY_NAMES):
        digits = present[numbers.notna()]
        widths = digits.str.len()
        if (len(digits) >= 10 and widths.nunique() == 1 and widths.iloc[0] >= 4
                and digits.str.fullmatch(r"\d+").all() and unique > 0.2 * len(present)):
            return "ignored", "fixed-width digit codes with many distinct values (an identifier)"
        if unique == 1:
            return "ignored", "a single value for every user"
        return "numeric", ""
    if unique == 1:
        return "ignored", "a single value for every user"
    if unique <= max(2, 0.5 * len(present)) and present.str.len().mean() <= 60:
        return "categorical", "one value per user"
    return "ignored", "mostly unique values (an identifier, zip code or name): it cannot " \
                      "group users"


def bin_numeric(values: pd.Series, bins: int = NUMERIC_BINS,
                max_codes: int = MAX_NUMERIC_CODES, name: str | None = None
                ) -> tuple[list[str | None], str, np.ndarray]:
    """Attribute values of a numeric column: codes kept as they are, quantities binned.

    A column with at most ``max_codes`` distinct numbers (and not named like a quantity,
    see :data:`QUANTITY_NAMES`), or with no more distinct numbers than ``bins``, keeps one
    value per number; any other becomes up to ``bins`` quantile bins labelled by the smallest
    and largest value they hold (``"18-24"``).

    Args:
        values (pandas.Series): The column.
        bins (int): Quantile bins. (default: :obj:`NUMERIC_BINS`)
        max_codes (int): Most distinct numbers read as codes. (default: :obj:`MAX_NUMERIC_CODES`)
        name (str, optional): Column name; quantity names are always binned.
            (default: ``values.name``)

    Returns:
        ``(values, how, invalid)``: one label or :obj:`None` per row, a sentence for the
        report, and a mask of present values that are not numbers (left without a value).
    """
    name = values.name if name is None else name
    text = values.astype("string").str.strip()
    missing = (text.isna() | text.str.lower().isin(NULL_TOKENS)).to_numpy(bool)
    numbers = pd.to_numeric(text.where(~pd.Series(missing, index=text.index)),
                            errors="coerce").to_numpy(np.float64)
    valid = np.isfinite(numbers)
    invalid = ~valid & ~missing
    distinct = np.unique(numbers[valid])
    quantity = normalize_name(str(name)) in QUANTITY_NAMES
    labels: list[str | None] = [None] * len(numbers)
    if len(distinct) <= bins or (len(distinct) <= max_codes and not quantity):
        for row in np.flatnonzero(valid):
            labels[row] = _number(numbers[row])
        return labels, f"numeric codes, one value per number ({len(distinct)})", invalid
    codes = pd.qcut(numbers[valid], q=bins, labels=False, duplicates="drop")
    edges = []
    for code in range(int(codes.max()) + 1):
        members = numbers[valid][codes == code]
        low, high = _number(members.min()), _number(members.max())
        edges.append(low if low == high else f"{low}-{high}")
    for row, code in zip(np.flatnonzero(valid), codes, strict=True):
        labels[row] = edges[int(code)]
    return labels, f"numeric, {len(edges)} quantile bins: {', '.join(edges)}", invalid


def category_values(values: pd.Series) -> list[str | None]:
    """One stripped string per row, :obj:`None` for missing or null-like values."""
    text = values.astype("string").str.strip()
    missing = text.isna() | text.str.lower().isin(NULL_TOKENS) | (text == "")
    return [None if m else str(v) for v, m in zip(text.tolist(), missing.tolist(), strict=True)]


def _present(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text[text.notna() & (text != "") & ~text.str.lower().isin(NULL_TOKENS)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _attribute_name(column: str, taken: set[str]) -> str:
    name, k = str(column), 2
    while name in taken:  # e.g. a second user_id column when the id came from userId
        name, k = f"{column}_{k}", k + 1
    return name
