"""The ingestion report: what was read, how it was mapped, what was fixed and how.

Every soft problem is a :class:`Problem` with a count, the policy applied and a few examples, so
nothing is dropped or altered without a trace. The report renders as JSON-able dict, Markdown
(for the app) and plain text (for the CLI).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Policy sentences, one per problem code; the single source of truth for docs and reports.
POLICIES = {
    "ragged_rows": "rows with more fields than the header are skipped (their columns cannot be "
                   "trusted); rows with fewer fields get empty values for the missing ones",
    "empty_ids": "rows with an empty or null-like (NA, null, none) user or item id are dropped",
    "invalid_ratings_implicit": "missing, non-numeric or non-finite ratings are kept as implicit "
                                "interactions with rating 1.0",
    "invalid_ratings_drop": "rows with a missing, non-numeric or non-finite rating are dropped",
    "unparsed_timestamps": "unreadable timestamps are kept as unknown (NaN); the interaction is "
                           "kept",
    "missing_timestamps": "empty timestamps are kept as unknown (NaN); the interaction is kept",
    "duplicate_pairs": "repeated (user, item) pairs keep only the latest by timestamp (the last "
                       "in file order on ties), with that row's rating",
    "items_missing_metadata": "items that occur in interactions but not in the items file are "
                              "kept and added without metadata (title = item id)",
    "items_without_text": "items with neither title nor description text are kept; their text "
                          "embedding comes from their id and attributes only",
    "cold_items": "items in the items file without interactions are kept as cold items",
    "single_interaction_users": "users with one interaction are kept; per-user splits can only "
                                "place them in train",
    "merged_item_rows": "rows that repeat an item id in the items file (a long table, e.g. one "
                        "(item, tag) pair per row) are merged into that item: attribute values "
                        "joined, title and description from the item's first row that has them",
    "empty_item_ids": "rows of the items file with an empty id are dropped",
    "duplicate_user_rows": "repeated user ids in the users file keep the first row",
    "empty_user_ids": "rows of the users file with an empty id are dropped",
    "invalid_user_values": "values of a numeric user column that are not numbers are left "
                           "empty (the user gets no value for that attribute); the user is kept",
    "empty_edge_ids": "edges with an empty endpoint are dropped",
    "self_loop_edges": "edges from a user to the same user are dropped",
    "duplicate_edges": "repeated edges are kept once",
    "edge_only_users": "users that occur only in the user-edges file are added without "
                       "interactions",
    "metadata_only_users": "users that occur only in the users file are added without "
                           "interactions",
}


@dataclass
class FileReport:
    """How one input file was read.

    Attributes:
        role (str): ``interactions``, ``items``, ``users`` or ``user_edges``.
        name (str): Display name.
        format (str): e.g. ``"delimited"``, ``"parquet"``, ``"movielens u.item"``.
        encoding (str, optional): Detected text encoding.
        delimiter (str, optional): Detected separator.
        header (bool): Whether a header row was found.
        columns (list[str]): Columns found.
        mapping (dict): Role -> source column(s) (``None`` when absent).
        ignored_columns (dict): Column -> why it was not used.
        rows_read (int): Data rows in the file.
        rows_kept (int): Rows that made it into the dataset.
        details (dict): Extra detection facts (timestamp format, rating range ...).
    """

    role: str
    name: str
    format: str
    encoding: str | None
    delimiter: str | None
    header: bool
    columns: list[str]
    mapping: dict[str, Any] = field(default_factory=dict)
    ignored_columns: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_kept: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    """A counted soft problem and the policy that handled it.

    Attributes:
        code (str): Key into :data:`POLICIES`.
        file (str): Display name of the file concerned.
        count (int): Rows/items/users affected.
        policy (str): What was done about it.
        examples (list[str]): A few concrete cases (row numbers, values, ids).
    """

    code: str
    file: str
    count: int
    policy: str
    examples: list[str] = field(default_factory=list)


@dataclass
class IngestionReport:
    """Everything :func:`~recsys_core.ingest.load_dataset` did.

    Attributes:
        name (str): Dataset name.
        files (list[FileReport]): One entry per input file.
        counts (dict[str, int]): ``rows_read``, ``rows_kept``, ``interactions``, ``users``,
            ``items``, ``items_with_metadata``, ``cold_items``, ``user_edges`` and
            ``attribute_values`` (per attribute column).
        problems (list[Problem]): Soft problems with non-zero counts.
        warnings (list[str]): Other facts that deserve attention.
    """

    name: str
    files: list[FileReport] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add_problem(self, code: str, file: str, count: int, examples=(),
                    policy: str | None = None) -> None:
        """Record a problem when ``count`` > 0 (policy text from :data:`POLICIES`)."""
        if count > 0:
            self.problems.append(Problem(code, file, int(count), policy or POLICIES[code],
                                         [_clip(str(e)) for e in list(examples)[:5]]))

    def problem_counts(self) -> dict[str, int]:
        """Total count per problem code."""
        totals: dict[str, int] = {}
        for p in self.problems:
            totals[p.code] = totals.get(p.code, 0) + p.count
        return totals

    @property
    def policies(self) -> dict[str, str]:
        """Problem code -> policy sentence, for the problems that occurred."""
        return {p.code: p.policy for p in self.problems}

    def file(self, role: str) -> FileReport | None:
        """The report of the file with this role, if it was given."""
        return next((f for f in self.files if f.role == role), None)

    def summary(self) -> str:
        """Two lines: what was kept, and the problems that were handled."""
        c = self.counts
        first = (f"{self.name}: {c.get('rows_read', 0):,} rows read, "
                 f"{c.get('interactions', 0):,} interactions kept, {c.get('users', 0):,} users, "
                 f"{c.get('items', 0):,} items ({c.get('cold_items', 0):,} without interactions)")
        problems = ", ".join(f"{k.replace('_', ' ')} {v:,}"
                             for k, v in self.problem_counts().items())
        return first + "\nproblems handled: " + (problems or "none")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary."""
        out = asdict(self)
        out["problem_counts"] = self.problem_counts()
        return _jsonable(out)

    def to_markdown(self) -> str:
        """Markdown rendering (tables and lists)."""
        lines = [f"### Ingestion report: {_md(self.name)}", "", "| count | value |", "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {_md(_fmt(v))} |" for k, v in self.counts.items()]
        lines += ["", "#### Files", "",
                  "| role | file | format | encoding | delimiter | header | rows read | rows kept "
                  "| columns used |", "|---|---|---|---|---|---|---|---|---|"]
        for f in self.files:
            lines.append(
                f"| {f.role} | {_md(f.name)} | {f.format} | {f.encoding or '-'} | "
                f"{_delim(f.delimiter)} | {'yes' if f.header else 'no'} | {f.rows_read:,} | "
                f"{f.rows_kept:,} | {_md(_mapping(f.mapping))} |")
        lines += ["", "#### Problems and policies", ""]
        if self.problems:
            lines += ["| problem | file | count | policy | examples |", "|---|---|---|---|---|"]
            lines += [f"| {p.code.replace('_', ' ')} | {_md(p.file)} | {p.count:,} | {p.policy} | "
                      f"{_md('; '.join(p.examples))} |" for p in self.problems]
        else:
            lines.append("No problems found.")
        if self.warnings:
            lines += ["", "#### Warnings", ""] + [f"- {_md(w)}" for w in self.warnings]
        details = [(f, k, v) for f in self.files for k, v in
                   [*f.details.items(), *(("ignored " + c, r) for c, r in f.ignored_columns.items())]]
        if details:
            lines += ["", "#### Detection details", ""]
            lines += [f"- {_md(f.name)}: {_md(k)}: {_md(_fmt(v))}" for f, k, v in details]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """Plain-text rendering for terminals."""
        lines = [f"Ingestion report: {self.name}", ""]
        width = max((len(k) for k in self.counts), default=0)
        lines += [f"  {k.replace('_', ' '):<{width}}  {_fmt(v)}" for k, v in self.counts.items()]
        lines += ["", "Files:"]
        for f in self.files:
            lines.append(f"  [{f.role}] {f.name}: {f.format}, encoding {f.encoding or '-'}, "
                         f"delimiter {_delim(f.delimiter)}, header {'yes' if f.header else 'no'}, "
                         f"{f.rows_read:,} rows read, {f.rows_kept:,} kept")
            lines.append(f"      columns: {_mapping(f.mapping)}")
            for k, v in f.details.items():
                lines.append(f"      {k}: {_fmt(v)}")
            for c, why in f.ignored_columns.items():
                lines.append(f"      ignored column '{c}': {why}")
        lines += ["", "Problems and policies:"]
        if not self.problems:
            lines.append("  none")
        for p in self.problems:
            lines.append(f"  {p.code.replace('_', ' ')} ({p.file}): {p.count:,}. Policy: {p.policy}.")
            if p.examples:
                lines.append(f"      e.g. {'; '.join(p.examples)}")
        if self.warnings:
            lines += ["", "Warnings:"] + [f"  - {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()


def _clip(text: str, limit: int = 100) -> str:
    """Examples are hints: a 1 MB cell is shown by its start."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()  # numpy scalar
    if isinstance(value, float) and value != value:
        return None
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _mapping(mapping: dict[str, Any]) -> str:
    parts = []
    for role, col in mapping.items():
        if col in (None, [], ()):
            continue
        if isinstance(col, dict):
            shown = ", ".join(f"{k} ({v})" for k, v in col.items())
        elif isinstance(col, (list, tuple)):
            shown = ", ".join(col)
        else:
            shown = col
        parts.append(f"{role} = {shown}")
    return "; ".join(parts) or "-"


def _delim(delimiter: str | None) -> str:
    return {None: "-", "\t": "tab", " ": "whitespace"}.get(delimiter, f"'{delimiter}'")


def _md(text: Any) -> str:
    """Neutralise Markdown/HTML control characters in user-supplied strings."""
    text = str(text)
    for ch in ("\\", "|", "`", "*", "_", "[", "]", "<", ">", "#"):
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")
