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

import copy
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .dataset import USER_COL, Dataset
from .errors import DataError, RecScopeError

if TYPE_CHECKING:  # explanations import models; keep this module light
    from .explain.evidence import Explanation

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


#: Node type of users in graphs and explanations.
USER_NODE = "user"
#: Columns that name a node's type in typed node tables (graph views).
NODE_TYPE_COLUMNS = ("node_type", "type")


def user_label(pseudonym: str) -> str:
    """How explanations label a user node (``"user <id>"``), here with its pseudonym."""
    return f"user {pseudonym}"


def pseudonymize_explanation(explanation: Explanation,
                             pseudonymizer: Pseudonymizer) -> Explanation:
    """A copy of an explanation whose user ids are pseudonyms; item ids, titles, attribute
    values and weights are unchanged.

    Replaced: the explained ``user_id``; contributions on user nodes (``node_type == "user"``:
    ``id`` and ``label``); grouped neighbours in ``other``; in ``details``, the feature table's
    neighbour rows (SHAP / LIME features of kind ``neighbour`` are users), the chart's feature
    names and the ``source_id`` / ``target_id`` of user endpoints in edge tables.

    Args:
        explanation (Explanation): Any method's explanation.
        pseudonymizer (Pseudonymizer): The session's or process's pseudonymizer.
    """
    from .explain.evidence import NEIGHBOUR

    relabel: dict[str, str] = {}
    frame = explanation.contributions.copy()
    if len(frame) and "node_type" in frame:
        users = frame["node_type"].astype(str) == USER_NODE
        for row in frame.index[users]:
            fake = pseudonymizer.pseudonym(frame.at[row, "id"])
            relabel[str(frame.at[row, "label"])] = user_label(fake)
            frame.at[row, "id"] = fake
            frame.at[row, "label"] = user_label(fake)
    other = None
    if explanation.other:
        other = [dict(group, ids=pseudonymizer.pseudonyms(group.get("ids", [])))
                 if group.get("kind") == NEIGHBOUR else dict(group)
                 for group in explanation.other]
    details = dict(explanation.details)
    features = details.get("features")
    if isinstance(features, pd.DataFrame) and len(features) and "kind" in features:
        features = features.copy()
        for row in features.index[features["kind"] == NEIGHBOUR]:
            raw = str(features.at[row, "id"])
            fake = "|".join(pseudonymizer.pseudonym(u) for u in raw.split("|")) if raw else raw
            features.at[row, "id"] = fake
            grouped = bool(features.at[row, "group"]) if "group" in features else False
            if not grouped:  # a group's label is a count ("3 other neighbours")
                old = str(features.at[row, "label"])
                relabel.setdefault(old, user_label(fake))
                features.at[row, "label"] = relabel[old]
        details["features"] = features
    values = details.get("shap")
    names = getattr(values, "feature_names", None)
    if names is not None and relabel:
        values = copy.copy(values)
        values.feature_names = [relabel.get(str(n), n) for n in names]
        details["shap"] = values
    for key, table in list(details.items()):
        if isinstance(table, pd.DataFrame) and key != "features":
            details[key] = _pseudonymize_endpoints(table, pseudonymizer)
    return dataclasses.replace(explanation, user_id=pseudonymizer.pseudonym(explanation.user_id),
                               contributions=frame, other=other, details=details)


def _pseudonymize_endpoints(table: pd.DataFrame, pseudonymizer: Pseudonymizer) -> pd.DataFrame:
    """``source_id`` / ``target_id`` of rows whose endpoint type is ``user``."""
    out = None
    for side in ("source", "target"):
        kind, ident = f"{side}_type", f"{side}_id"
        if kind in table and ident in table:
            users = table[kind].astype(str) == USER_NODE
            if users.any():
                out = table.copy() if out is None else out
                out[ident] = out[ident].astype(object)
                out.loc[users, ident] = pseudonymizer.pseudonyms(out.loc[users, ident])
    return table if out is None else out


def pseudonymize_dataset(dataset: Dataset, pseudonymizer: Pseudonymizer) -> Dataset:
    """A view of ``dataset`` whose user ids are pseudonyms everywhere (interactions, user
    edges, user attributes, id maps), sharing the item metadata; for text built from the data
    (rationales) in privacy mode. Row order and user indices are unchanged.

    Args:
        dataset (Dataset): The data.
        pseudonymizer (Pseudonymizer): The pseudonymizer.
    """
    clone = object.__new__(Dataset)
    clone.__dict__.update(dataset.__dict__)
    clone.interactions = pseudonymizer.apply(dataset.interactions, (USER_COL,))
    if dataset.user_edges is not None:
        clone.user_edges = pseudonymizer.apply(dataset.user_edges, ("src", "dst"))
    if dataset.users is not None:
        clone.users = pseudonymizer.apply(dataset.users, (USER_COL,))
    clone.user_ids = np.asarray(pseudonymizer.pseudonyms(dataset.user_ids), dtype=object)
    clone.user_index = {u: i for i, u in enumerate(clone.user_ids)}
    return clone


def pseudonymize_user_table(frame: pd.DataFrame, pseudonymizer: Pseudonymizer,
                            known_users: Mapping[str, object] | set[str] | None = None,
                            ) -> pd.DataFrame:
    """A copy of a table about to be shown or downloaded with every user id it is known to
    hold replaced by its pseudonym: the ``user_id`` column; ``src`` / ``dst`` when every value
    is a known user (a user-edge table); ``id`` and ``label`` of rows whose ``node_type`` /
    ``type`` is ``user`` (typed node tables); and ``source_id`` / ``target_id`` of user
    endpoints. Other columns (item ids, titles) are unchanged.

    Args:
        frame (pandas.DataFrame): The table.
        pseudonymizer (Pseudonymizer): The pseudonymizer.
        known_users (set or mapping, optional): Raw user ids of the data (to recognise a
            user-edge table); without it ``src`` / ``dst`` are left alone. (default: :obj:`None`)
    """
    columns = [c for c in (USER_COL,) if c in frame.columns]
    if known_users is not None:
        for col in ("src", "dst"):
            if col in frame.columns:
                values = frame[col].dropna().astype(str)
                if len(values) and values.isin(list(known_users)).all():
                    columns.append(col)
    out = pseudonymizer.apply(frame, columns) if columns else frame.copy()
    for type_col in NODE_TYPE_COLUMNS:
        if type_col in out.columns and "id" in out.columns:
            users = out[type_col].astype(str) == USER_NODE
            if users.any():
                fakes = pseudonymizer.pseudonyms(out.loc[users, "id"])
                out["id"] = out["id"].astype(object)
                out.loc[users, "id"] = fakes
                if "label" in out.columns:
                    out["label"] = out["label"].astype(object)
                    out.loc[users, "label"] = [user_label(f) for f in fakes]
            break
    return _pseudonymize_endpoints(out, pseudonymizer)


def pseudonymize_file_name(name: str, pseudonymizer: Pseudonymizer,
                           known_users: Mapping[str, object] | set[str]) -> str:
    """``name`` with every ``_``/``-``/``.``-separated part that is a known user id replaced
    by its pseudonym (``history_u42.csv`` -> ``history_u_3f9c….csv``).

    Args:
        name (str): A download's file name.
        pseudonymizer (Pseudonymizer): The pseudonymizer.
        known_users (set or mapping): Raw user ids of the data.
    """
    parts = re.split(r"([_.\-])", name)
    return "".join(pseudonymizer.pseudonym(p) if p and p in known_users else p for p in parts)


__all__ = ["DEFAULT_MIN_GROUP_USERS", "MIN_SALT_BYTES", "PRIVACY_SALT_ENV", "PSEUDONYM_PREFIX",
           "PrivacyError", "Pseudonymizer", "privacy_pseudonymizer", "pseudonymize_dataset",
           "pseudonymize_explanation", "pseudonymize_file_name", "pseudonymize_user_table",
           "suppress_small_groups", "user_label"]
