"""Privacy mode: salted pseudonyms for user ids and suppression of small groups.

A :class:`Pseudonymizer` replaces each user id with ``"u_"`` followed by the first 16 hex digits
of ``HMAC-SHA256(salt, id)``. The same salt gives the same pseudonym for the same id, so files
written in one session still join on the user column; without the salt, a pseudonym cannot be
mapped back by hashing candidate ids (user ids are guessable, the salt is not).

The salt lives in memory only: one per app session (kept in the session's workspace) and one
per CLI process, unless the user passes :data:`PRIVACY_SALT_ENV` in the environment to get the
same pseudonyms across several commands. Nothing in this module writes it anywhere, and the
pseudonymizer's ``repr`` does not show it.

:func:`suppress_small_groups` drops (or masks) the rows of a per-group table whose groups hold
fewer than :data:`DEFAULT_MIN_GROUP_USERS` users, so a report cannot disclose a figure computed
on one or two people.

What this does and does not protect is written in ``docs/SECURITY.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from .dataset import USER_COL
from .errors import DataError, RecScopeError

#: Groups (slices, segments) with fewer users than this are suppressed in reports.
DEFAULT_MIN_GROUP_USERS = 5

#: Environment variable holding a salt to reuse across CLI commands (stable pseudonyms).
PRIVACY_SALT_ENV = "RECSCOPE_PRIVACY_SALT"

#: Shortest salt accepted (bytes). A short salt can be guessed along with the ids.
MIN_SALT_BYTES = 16

#: Hex digits of the HMAC kept in a pseudonym (64 bits: collisions are negligible for
#: millions of users).
PSEUDONYM_HEX_DIGITS = 16

#: Prefix of every pseudonym.
PSEUDONYM_PREFIX = "u_"


class PrivacyError(RecScopeError):
    """Privacy mode cannot be set up (e.g. the salt given in the environment is too short)."""


class Pseudonymizer:
    r"""Keyed pseudonyms for user ids:
    :math:`\text{pseudonym}(u) = \texttt{"u\_"} \Vert \text{hex}(\text{HMAC-SHA256}(s, u))_{:16}`.

    Args:
        salt (bytes): The secret key :math:`s`, at least :data:`MIN_SALT_BYTES` bytes. Keep it
            in memory only; :meth:`random` makes a fresh one.
    """

    __slots__ = ("_salt", "_cache")

    def __init__(self, salt: bytes) -> None:
        if not isinstance(salt, (bytes, bytearray)):
            raise PrivacyError("The privacy salt must be bytes; use Pseudonymizer.random() for "
                               "a fresh one.")
        if len(salt) < MIN_SALT_BYTES:
            raise PrivacyError(
                f"The privacy salt is {len(salt)} bytes long; use at least {MIN_SALT_BYTES} "
                f"random bytes (for {PRIVACY_SALT_ENV}, at least {MIN_SALT_BYTES} characters), "
                "or leave it unset for a fresh salt per process.")
        self._salt = bytes(salt)
        self._cache: dict[str, str] = {}

    @classmethod
    def random(cls) -> Pseudonymizer:
        """A pseudonymizer with a fresh 32-byte salt from :func:`secrets.token_bytes`."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Pseudonymizer:
        """The salt in :data:`PRIVACY_SALT_ENV` when set (stable pseudonyms across commands),
        else a fresh random one (pseudonyms valid for this process only).

        Args:
            environ (Mapping[str, str], optional): Where to look. (default: :obj:`os.environ`)
        """
        value = (os.environ if environ is None else environ).get(PRIVACY_SALT_ENV)
        if value:
            return cls(value.encode("utf-8"))
        return cls.random()

    def __repr__(self) -> str:  # never show the salt
        return f"{type(self).__name__}(salt=<hidden>)"

    def __reduce__(self):  # never pickle (nor copy to disk) the salt by accident
        raise TypeError("A Pseudonymizer holds a secret salt and cannot be pickled.")

    def __copy__(self) -> Pseudonymizer:  # immutable: copies are the same object
        return self

    def __deepcopy__(self, memo: dict) -> Pseudonymizer:
        return self

    def pseudonym(self, user_id: object) -> str:
        """The pseudonym of one user id (compared as text, so ``7`` and ``"7"`` agree).

        Args:
            user_id (object): A raw user id.
        """
        key = str(user_id)
        out = self._cache.get(key)
        if out is None:
            digest = hmac.new(self._salt, key.encode("utf-8"), hashlib.sha256).hexdigest()
            out = PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]
            if len(self._cache) < 1_000_000:
                self._cache[key] = out
        return out

    def pseudonyms(self, user_ids: Iterable[object]) -> list[str]:
        """:meth:`pseudonym` of each id, in order."""
        return [self.pseudonym(u) for u in user_ids]

    def apply(self, frame: pd.DataFrame,
              columns: Sequence[str] = (USER_COL,)) -> pd.DataFrame:
        """A copy of ``frame`` whose ``columns`` hold pseudonyms instead of user ids; missing
        values stay missing, every other column is unchanged.

        Args:
            frame (pandas.DataFrame): Rows to write or show.
            columns (Sequence[str]): Columns holding user ids. (default: :obj:`("user_id",)`)

        Raises:
            DataError: A named column is not in ``frame`` (a silently skipped column would
                leak raw ids).
        """
        columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(
                "cannot pseudonymize: no such column. Pass the names of the columns that hold "
                f"user ids (the table has {', '.join(map(str, frame.columns[:20]))}).",
                column=str(missing[0]))
        out = frame.copy()
        for col in columns:
            series = out[col]
            present = series.notna()
            uniques = pd.unique(series[present])
            mapping = {u: self.pseudonym(u) for u in uniques}
            mapped = series.astype(object).where(~present, series.map(mapping))
            out[col] = mapped.astype(object)
        return out


def privacy_pseudonymizer(enabled: bool,
                          environ: Mapping[str, str] | None = None) -> Pseudonymizer | None:
    """The CLI's pseudonymizer for ``--privacy``: :meth:`Pseudonymizer.from_environment` when
    ``enabled``, else ``None``.

    Args:
        enabled (bool): Whether ``--privacy`` was given.
        environ (Mapping[str, str], optional): Where to look for :data:`PRIVACY_SALT_ENV`.
            (default: :obj:`os.environ`)
    """
    return Pseudonymizer.from_environment(environ) if enabled else None


def suppress_small_groups(frame: pd.DataFrame, users_column: str,
                          min_users: int = DEFAULT_MIN_GROUP_USERS, how: str = "drop",
                          keep: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """Suppress the rows of a per-group table (one row per slice or segment) whose group holds
    fewer than ``min_users`` users: ``(table, number of groups suppressed)``.

    A group with an unknown (missing) user count is suppressed too.

    Args:
        frame (pandas.DataFrame): One row per group.
        users_column (str): Column with the number of distinct users in each group.
        min_users (int): Smallest group shown (k). (default: :obj:`5`)
        how (str): ``"drop"`` removes the rows; ``"mask"`` keeps them with every column except
            ``keep`` set to missing (the user count too). (default: :obj:`"drop"`)
        keep (Sequence[str]): Columns left as they are when masking, such as the group's name.
            (default: :obj:`()`)

    Raises:
        DataError: ``users_column`` or a ``keep`` column is missing, or not numeric.
        ValueError: ``min_users`` below 1 or an unknown ``how``.
    """
    if int(min_users) != min_users or min_users < 1:
        raise ValueError(f"min_users must be a whole number of at least 1, got {min_users!r}")
    if how not in ("drop", "mask"):
        raise ValueError(f"how must be 'drop' or 'mask', got {how!r}")
    for col in [users_column, *keep]:
        if col not in frame.columns:
            raise DataError("no such column in the group table; name the column that counts "
                            "the users of each group.", column=str(col))
    counts = pd.to_numeric(frame[users_column], errors="coerce")
    if frame[users_column].notna().any() and counts.isna().all():
        raise DataError("the user counts are not numbers.", column=str(users_column))
    small = ~(counts >= min_users)  # NaN counts are small too
    n_small = int(small.sum())
    if how == "drop":
        return frame.loc[~small].copy(), n_small
    out = frame.copy()
    masked = [c for c in out.columns if c not in set(keep)]
    for col in masked:
        out[col] = out[col].astype(object)
        out.loc[small, col] = None
    return out, n_small


__all__ = ["DEFAULT_MIN_GROUP_USERS", "MIN_SALT_BYTES", "PRIVACY_SALT_ENV", "PSEUDONYM_PREFIX",
           "PrivacyError", "Pseudonymizer", "privacy_pseudonymizer", "suppress_small_groups"]
