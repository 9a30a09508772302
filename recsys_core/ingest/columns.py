"""Column mapping: which source column plays which role.

Names are compared after normalisation (lower case, only letters and digits), so ``userId``,
``user_id``, ``User ID`` and ``USERID`` are the same name. An explicit override always wins; then
the first alias (in priority order) that matches a column; then a pattern such as
``<anything>user<anything>id``. Files without a header row are mapped by position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..errors import DataError


def normalize_name(name: str) -> str:
    """Lower-case ``name`` and keep only letters and digits."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _norm(*names: str) -> tuple[str, ...]:
    return tuple(normalize_name(n) for n in names)


USER_ALIASES = _norm(
    "user_id", "userId", "user", "uid", "customer_id", "customer", "reviewer_id", "member_id",
    "account_id", "visitor_id", "client_id", "profile_id", "listener_id", "reader_id",
    "player_id", "person_id", "u")
ITEM_ALIASES = _norm(
    "item_id", "itemId", "item", "iid", "movie_id", "movieId", "movie", "product_id", "product",
    "asin", "track_id", "track", "song_id", "song", "book_id", "isbn", "article_id", "sku",
    "business_id", "recipe_id", "anime_id", "game_id", "video_id", "artist_id", "course_id",
    "content_id", "app_id", "i")
RATING_ALIASES = _norm(
    "rating", "ratings", "stars", "star_rating", "score", "overall", "review_score", "rate",
    "preference", "value", "weight", "play_count", "plays", "listen_count", "clicks", "count",
    "quantity", "label")
TIME_ALIASES = _norm(
    "timestamp", "ts", "time", "datetime", "date", "unix_time", "unix_review_time",
    "event_time", "created_at", "rated_at", "review_time", "review_date", "time_stamp",
    "date_added", "event_date", "tstamp")
TITLE_ALIASES = _norm(
    "title", "name", "movie_title", "product_title", "item_name", "product_name", "track_name",
    "song_title", "book_title", "original_title", "primary_title", "display_name")
TEXT_ALIASES = _norm(
    "description", "overview", "summary", "plot", "synopsis", "abstract", "text", "content",
    "body", "details", "about", "tagline", "blurb", "storyline", "keywords_text")
#: Item columns that are categorical by name (still split on ``|``/``;``/``,`` when multi-valued).
CATEGORICAL_ALIASES = _norm(
    "genre", "genres", "category", "categories", "tags", "tag", "labels", "brand", "brands",
    "subgenre", "subgenres", "topics", "topic", "style", "styles", "keywords", "cuisine",
    "cuisines", "department", "section", "platform", "platforms", "language", "languages")
EDGE_SRC_ALIASES = _norm(
    "src", "source", "from", "user_id", "userId", "user", "follower", "follower_id", "user1",
    "user_a", "node1")
EDGE_DST_ALIASES = _norm(
    "dst", "target", "to", "friend_id", "friend", "followee", "followee_id", "following_id",
    "user2", "user_b", "node2", "neighbor", "neighbour")

_ALL_KNOWN = frozenset(USER_ALIASES + ITEM_ALIASES + RATING_ALIASES + TIME_ALIASES
                       + TITLE_ALIASES + TEXT_ALIASES + EDGE_SRC_ALIASES + EDGE_DST_ALIASES
                       + CATEGORICAL_ALIASES + _norm("id"))
_PATTERNS = {
    "user": re.compile(r"(user|customer|reviewer|member|client|visitor).*id$"),
    "item": re.compile(r"(item|movie|product|track|song|book|article|business|video).*id$"),
}


def is_known_column_name(value: str) -> bool:
    """Whether ``value`` looks like a column name (used to recognise header rows)."""
    return normalize_name(value) in _ALL_KNOWN


def find_column(columns: Sequence[str], aliases: Iterable[str], *, taken: Iterable[str] = (),
                pattern: re.Pattern | None = None) -> str | None:
    """The first column matching an alias (in alias order), else one matching ``pattern``.

    Args:
        columns (Sequence[str]): Column names as found in the file.
        aliases (Iterable[str]): Normalised names in priority order.
        taken (Iterable[str]): Columns already assigned to another role. (default: :obj:`()`)
        pattern (re.Pattern, optional): Fallback regex over normalised names.
            (default: :obj:`None`)
    """
    taken = set(taken)
    free = [c for c in columns if c not in taken]
    by_norm: dict[str, str] = {}
    for col in free:
        by_norm.setdefault(normalize_name(col), col)
    for alias in aliases:
        if alias in by_norm:
            return by_norm[alias]
    if pattern is not None:
        for col in free:
            if pattern.search(normalize_name(col)):
                return col
    return None


def resolve_override(columns: Sequence[str], requested: str, *, file: str, flag: str) -> str:
    """Find an explicitly requested column (exact, else case/punctuation-insensitive).

    Raises:
        DataError: No such column; the message lists the columns that exist.
    """
    if requested in columns:
        return requested
    matches = [c for c in columns if normalize_name(c) == normalize_name(requested)]
    if len(matches) == 1:
        return matches[0]
    raise DataError(f"the column '{requested}' given by {flag} is not in this file. Columns "
                    f"found: {format_columns(columns)}.", file=file, column=requested)


def map_interaction_columns(columns: Sequence[str], header: bool, *, file: str,
                            user_col: str | None = None, item_col: str | None = None,
                            rating_col: str | None = None,
                            time_col: str | None = None) -> dict[str, str | None]:
    """Map the roles ``user``, ``item``, ``rating``, ``timestamp`` to source columns.

    Files without a header row are read positionally as ``user, item[, rating[, timestamp]]``
    unless overrides (``column_1`` ...) say otherwise.

    Raises:
        DataError: A user or item column cannot be found; the message lists the columns found
            and the ``--user-col`` / ``--item-col`` options.
    """
    overrides = {"user": (user_col, "--user-col"), "item": (item_col, "--item-col"),
                 "rating": (rating_col, "--rating-col"), "timestamp": (time_col, "--time-col")}
    mapping: dict[str, str | None] = {}
    for role, (requested, flag) in overrides.items():
        if requested:
            mapping[role] = resolve_override(columns, requested, file=file, flag=flag)
    chosen = [c for c in mapping.values() if c]
    if len(chosen) != len(set(chosen)):
        raise DataError(f"the same column is given for two roles ({mapping}). Each of "
                        "--user-col, --item-col, --rating-col and --time-col needs its own "
                        "column.", file=file)
    if not header:
        for pos, role in enumerate(("user", "item", "rating", "timestamp")):
            if role not in mapping and pos < len(columns) and columns[pos] not in mapping.values():
                mapping[role] = columns[pos]
    aliases = {"user": USER_ALIASES, "item": ITEM_ALIASES, "rating": RATING_ALIASES,
               "timestamp": TIME_ALIASES}
    for role in ("user", "item", "rating", "timestamp"):
        if role not in mapping:
            mapping[role] = find_column(columns, aliases[role], taken=mapping.values(),
                                        pattern=_PATTERNS.get(role))
    missing = [r for r in ("user", "item") if not mapping.get(r)]
    if missing:
        what = " and ".join(f"{r} id" for r in missing)
        raise DataError(
            f"no {what} column found. Columns found: {format_columns(columns)}. Name the "
            "columns with --user-col and --item-col (user_col= / item_col= in Python), or use "
            "a common name such as user_id/userId and item_id/movieId/product_id. A file "
            "without a header row is read as user, item[, rating[, timestamp]].", file=file)
    return mapping


def format_columns(columns: Sequence[str], limit: int = 20) -> str:
    """``'a', 'b', 'c'`` (at most ``limit`` names, each cut to 60 characters)."""
    shown = ", ".join(f"'{shorten(c)}'" for c in list(columns)[:limit])
    more = f" and {len(columns) - limit} more" if len(columns) > limit else ""
    return (shown + more) or "(none)"


def shorten(value: object, limit: int = 60) -> str:
    """``str(value)`` cut to ``limit`` characters (a 1 MB header cell must not become a 1 MB
    message)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
