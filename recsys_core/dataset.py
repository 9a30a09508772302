"""The in-memory dataset every other module works on.

A :class:`Dataset` holds clean, typed frames plus contiguous integer ids for users and items.
Ingestion (:mod:`recsys_core.ingest`) turns raw files into one; graph building, splitting,
training and explanation all consume it. Raw ids are always strings so that ``"01"`` and ``"1"``
stay distinct and ids round-trip exactly as they appear in the input files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import RecScopeError

USER_COL = "user_id"
ITEM_COL = "item_id"
RATING_COL = "rating"
TIME_COL = "timestamp"
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
TITLE_COL = "title"
DESCRIPTION_COL = "description"

DEFAULT_TEXT_TEMPLATE = "{title}. {description} {attributes}"


class UnknownIdError(RecScopeError, KeyError):
    """Raised when a user or item id is not part of the dataset."""

    def __init__(self, kind: str, ids: list[str]):
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" (and {len(self.ids) - 5} more)" if len(self.ids) > 5 else ""
        super().__init__(
            f"Unknown {kind} id(s): {shown}{more}. Use ids exactly as they appear in the "
            f"{kind} column of the input data."
        )

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


@dataclass
class Dataset:
    """Clean interactions, item metadata and id maps.

    Args:
        interactions (pandas.DataFrame): One row per (user, item) interaction with columns
            ``user_id`` (str), ``item_id`` (str), ``rating`` (float64), ``timestamp``
            (float64 epoch seconds, ``NaN`` when unknown).
        items (pandas.DataFrame): One row per item with ``item_id`` (str), ``title`` (str),
            ``description`` (str, may be empty) and one column per categorical attribute holding
            a ``list[str]`` per item. Items that only appear in ``items`` are cold items.
        attribute_columns (list[str]): Names of the categorical attribute columns in ``items``
            (each becomes a node type in the graph). (default: :obj:`[]`)
        user_edges (pandas.DataFrame, optional): Directed user-user edges with columns ``src``
            and ``dst`` (raw user ids). (default: :obj:`None`)
        users (pandas.DataFrame, optional): User attributes: ``user_id`` plus one column per
            categorical attribute (a ``str`` or :obj:`None` per user; each column becomes a
            node type in the graph, see :attr:`user_attribute_columns`). (default: :obj:`None`)
        report (Any, optional): The ingestion report that produced this dataset.
        name (str): A display name. (default: :obj:`"dataset"`)
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    attribute_columns: list[str] = field(default_factory=list)
    user_edges: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    report: Any = None
    name: str = "dataset"

    def __post_init__(self) -> None:
        inter = self.interactions
        items = self.items
        # Item universe: every item with metadata plus any interacted item (kept, never dropped).
        known = pd.Index(items[ITEM_COL].astype(str))
        extra = pd.Index(inter[ITEM_COL].astype(str).unique()).difference(known)
        if len(extra):
            filler = pd.DataFrame({ITEM_COL: extra.astype(str), TITLE_COL: extra.astype(str),
                                   DESCRIPTION_COL: ""})
            for col in self.attribute_columns:
                filler[col] = [[] for _ in range(len(filler))]
            items = pd.concat([items, filler], ignore_index=True)
        items = items.reset_index(drop=True)
        user_universe = pd.Index(pd.unique(inter[USER_COL].astype(str)))
        if self.users is not None and len(self.users):
            user_universe = user_universe.append(
                pd.Index(self.users[USER_COL].astype(str)).difference(user_universe))
        if self.user_edges is not None and len(self.user_edges):
            ends = pd.Index(pd.unique(np.concatenate([self.user_edges["src"].astype(str).values,
                                                      self.user_edges["dst"].astype(str).values])))
            user_universe = user_universe.append(ends.difference(user_universe))
        self.items = items
        self.user_ids = np.asarray(user_universe, dtype=object)
        self.item_ids = np.asarray(items[ITEM_COL].astype(str).values, dtype=object)
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        inter = inter.copy()
        inter[USER_COL] = inter[USER_COL].astype(str)
        inter[ITEM_COL] = inter[ITEM_COL].astype(str)
        inter[USER_IDX] = pd.Index(self.user_ids).get_indexer(inter[USER_COL]).astype(np.int64)
        inter[ITEM_IDX] = pd.Index(self.item_ids).get_indexer(inter[ITEM_COL]).astype(np.int64)
        if RATING_COL not in inter:
            inter[RATING_COL] = 1.0
        if TIME_COL not in inter:
            inter[TIME_COL] = np.nan
        inter[RATING_COL] = inter[RATING_COL].astype(np.float64)
        inter[TIME_COL] = inter[TIME_COL].astype(np.float64)
        self.interactions = inter.reset_index(drop=True)

    # ------------------------------------------------------------------ sizes
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_attribute_columns(self) -> list[str]:
        """Names of the user attribute columns of :attr:`users` (``[]`` without users)."""
        if self.users is None:
            return []
        return [c for c in self.users.columns if c != USER_COL]

    # ------------------------------------------------------------------ id maps
    def user_idx(self, ids) -> np.ndarray:
        """Map raw user ids to contiguous indices; raises :class:`UnknownIdError`."""
        return _lookup(self.user_ids, ids, "user")

    def item_idx(self, ids) -> np.ndarray:
        """Map raw item ids to contiguous indices; raises :class:`UnknownIdError`."""
        return _lookup(self.item_ids, ids, "item")

    # ------------------------------------------------------------------ text
    def item_texts(self, template: str = DEFAULT_TEXT_TEMPLATE) -> list[str]:
        """One text per item (in index order) from ``template``.

        The template may use ``{title}``, ``{description}``, ``{attributes}`` (all attribute
        values as "Column: a, b." sentences) and any attribute column name.
        """
        cols = self.attribute_columns
        titles = self.items[TITLE_COL].fillna("").astype(str).tolist()
        descs = (self.items[DESCRIPTION_COL].fillna("").astype(str).tolist()
                 if DESCRIPTION_COL in self.items else [""] * self.num_items)
        attr_values = {c: self.items[c].tolist() for c in cols}
        return [self._compose_text(template, titles[i], descs[i],
                                   {c: attr_values[c][i] for c in cols})
                for i in range(self.num_items)]

    def new_item_text(
        self,
        title: str,
        description: str = "",
        attributes: dict[str, list[str]] | None = None,
        template: str = DEFAULT_TEXT_TEMPLATE,
    ) -> str:
        """The text of an item that is not in the catalogue, built exactly as
        :meth:`item_texts` builds a catalogue item's (every attribute column, same template).

        Args:
            title (str): The new item's title.
            description (str): Its description. (default: :obj:`""`)
            attributes (dict, optional): Attribute column -> values; columns the dataset does
                not have are ignored. (default: :obj:`None`)
            template (str): Item text template, the one the catalogue was encoded with.
                (default: :obj:`DEFAULT_TEXT_TEMPLATE`)
        """
        attributes = attributes or {}
        return self._compose_text(template, str(title or ""), str(description or ""),
                                  {c: attributes.get(c) for c in self.attribute_columns})

    @staticmethod
    def _compose_text(template: str, title: str, description: str,
                      attribute_values: dict[str, list[str] | None]) -> str:
        """One item's text from ``template`` (see :meth:`item_texts`), whitespace collapsed."""
        parts = {c: ", ".join(str(v) for v in (values or [])) for c, values in
                 attribute_values.items()}
        attributes = " ".join(f"{c.replace('_', ' ').capitalize()}: {v}."
                              for c, v in parts.items() if v)
        text = template.format_map(_Default(title=title, description=description,
                                            attributes=attributes, **parts))
        return " ".join(text.split())

    def interacted_items(self) -> np.ndarray:
        """Boolean mask over items: ``True`` where the item has at least one interaction."""
        mask = np.zeros(self.num_items, dtype=bool)
        mask[self.interactions[ITEM_IDX].values] = True
        return mask

    def subset_interactions(self, frame: pd.DataFrame) -> Dataset:
        """A dataset sharing this one's id maps and metadata but with other interactions."""
        clone = object.__new__(Dataset)
        clone.__dict__.update(self.__dict__)
        clone.interactions = frame.reset_index(drop=True)
        return clone


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _lookup(universe: np.ndarray, ids, kind: str) -> np.ndarray:
    scalar = isinstance(ids, (str, int, np.integer))
    values = [str(ids)] if scalar else [str(x) for x in ids]
    index = pd.Index(universe).get_indexer(values)
    if (index < 0).any():
        raise UnknownIdError(kind, [v for v, j in zip(values, index, strict=True) if j < 0])
    return index.astype(np.int64)
