"""The interface every recommender implements.

A model is fitted on a :class:`~recsys_core.dataset.Dataset` and a frame of training
interactions (a subset of ``dataset.interactions``), scores (user, item) pairs by contiguous
indices, and recommends by raw ids. Subclasses implement :meth:`fit` and :meth:`score` (models computed in
one pass, :meth:`OnePassRecommender.fit_bound` and :meth:`score`); they may override :meth:`state_tensors` / :meth:`load_state_tensors` / :meth:`config` to be saved.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from ..dataset import ITEM_IDX, USER_IDX, Dataset, UnknownIdError

ProgressCallback = Callable[[dict[str, Any]], None]
"""Called with a dict such as ``{"stage": "train", "epoch": 3, "epochs": 50, "loss": 0.41,
"valid_ndcg": 0.12, "fraction": 0.06}``. ``fraction`` in [0, 1] drives progress bars."""

RECOMMEND_COLUMNS = ["user_id", "item_id", "rank", "score"]
#: Memory of one block of float64 scores in :meth:`Recommender.iter_recommend`.
SCORE_BLOCK_BYTES = 128 * 2**20


class Recommender(abc.ABC):
    """Base class: fit on interactions, score by index, recommend by raw id."""

    #: Registry name used by the CLI (``--model``).
    name: ClassVar[str] = "base"

    def __init__(self) -> None:
        self.dataset: Dataset | None = None
        self.train_matrix: sp.csr_matrix | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every ``score`` implementation gets the same index check, so a bad index is an
        # UnknownIdError instead of an IndexError (too large) or a silently wrong row (negative).
        super().__init_subclass__(**kwargs)
        score = cls.__dict__.get("score")
        if score is not None and not getattr(score, "__isabstractmethod__", False) \
                and not getattr(score, "_checks_indices", False):
            @functools.wraps(score)
            def checked_score(self, users, items=None, *args, **kwargs):
                if self.dataset is not None:
                    users = check_indices(users, self.dataset.num_users, "user")
                    if items is not None:
                        items = check_indices(items, self.dataset.num_items, "item")
                return score(self, users, items, *args, **kwargs)

            checked_score._checks_indices = True
            cls.score = checked_score

    # ----------------------------------------------------------------- to implement
    @abc.abstractmethod
    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        valid: pd.DataFrame | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Recommender:
        """Fit on ``train`` (rows of ``dataset.interactions``); ``valid`` for early stopping."""

    @abc.abstractmethod
    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[len(users), len(items)]`` (all items when ``items`` is ``None``)."""

    def check_fit(self, dataset: Dataset, train: pd.DataFrame) -> None:  # noqa: B027 (a hook)
        """Refuse, before any work, a fit this model cannot do on ``train`` (rows of
        ``dataset.interactions``), with a :class:`~recsys_core.errors.RecScopeError` saying
        what to do; nothing by default. Tuning calls it before its grid, so a setting that
        would fit on the carved part cannot fail only at the refit on everything."""

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (so the model can be rebuilt)."""
        return {}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned, as named tensors (saved with safetensors)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_tensors`; must be strict about names and shapes."""
        if tensors:
            raise ValueError(f"{self.name} stores no tensors, got {sorted(tensors)}")

    def restore(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        tensors: dict[str, torch.Tensor],
    ) -> Recommender:
        """Rebuild a fitted model from a saved run without training.

        Binds the model to ``dataset`` and its training interactions, then loads the saved
        tensors. Models that need more than :meth:`load_state_tensors` to score (a graph, cached
        propagation) override this and call ``super().restore(...)`` first or rebuild here.
        """
        self._bind(dataset, train)
        self.load_state_tensors(tensors)
        return self

    # ----------------------------------------------------------------- shared
    def _bind(self, dataset: Dataset, train: pd.DataFrame) -> None:
        """Remember the dataset and the (binary) training matrix used to exclude seen items."""
        self.dataset = dataset
        self.train_matrix = interaction_matrix(train, dataset.num_users, dataset.num_items)

    def recommend(
        self,
        users: Iterable[str] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Iterable[str] | None = None,
        batch_size: int = 1024,
    ) -> pd.DataFrame:
        """Top-``k`` items per user as ``user_id, item_id, rank, score``.

        The blocks of :meth:`iter_recommend`, concatenated (rows by user, then rank).

        Args:
            users (iterable of str, optional): Raw user ids (default: every user).
            k (int): List length. (default: :obj:`10`)
            exclude_seen (bool): Drop the user's training interactions. (default: :obj:`True`)
            candidates (iterable of str, optional): Rank only these raw item ids (they may be
                cold items with no interactions). (default: all items)
            batch_size (int): Most users scored per block. (default: :obj:`1024`)
        """
        frames = list(self.iter_recommend(users, k, exclude_seen, candidates, batch_size))
        if not frames:
            return pd.DataFrame(columns=RECOMMEND_COLUMNS)
        return pd.concat(frames, ignore_index=True)[RECOMMEND_COLUMNS]

    def iter_recommend(
        self,
        users: Iterable[str] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Iterable[str] | None = None,
        batch_size: int = 1024,
        block_bytes: int = SCORE_BLOCK_BYTES,
    ) -> Iterator[pd.DataFrame]:
        """Top-``k`` lists streamed a block of users at a time.

        Users go through in blocks; each block is scored (``[block, candidates]``, never
        users x items), its training interactions are masked from the CSR rows of
        :attr:`train_matrix`, and only its top-``k`` is kept (:func:`top_k_rows`: score
        descending, ties to the lower item index, so the lists do not depend on the block
        size). Memory is bounded by one block.

        Args:
            users (iterable of str, optional): Raw user ids (default: every user).
            k (int): List length. (default: :obj:`10`)
            exclude_seen (bool): Drop the user's training interactions. (default: :obj:`True`)
            candidates (iterable of str, optional): Rank only these raw item ids.
                (default: all items)
            batch_size (int): Most users scored per block. (default: :obj:`1024`)
            block_bytes (int): Memory of one block's float64 scores; fewer users go in a
                block when the catalogue is large. (default: 128 MiB)

        Yields:
            pandas.DataFrame: ``user_id, item_id, rank, score`` of one block of users (a
            block whose users have nothing left to recommend yields nothing; ``k < 1``
            yields nothing).
        """
        if self.dataset is None:
            raise RuntimeError("Model is not fitted.")
        ds = self.dataset
        user_idx = (np.arange(ds.num_users) if users is None else ds.user_idx(list(users)))
        cand_idx = None if candidates is None else np.unique(ds.item_idx(list(candidates)))
        num_cand = ds.num_items if cand_idx is None else len(cand_idx)
        if num_cand == 0 or k < 1:
            return
        kk = min(k, num_cand)
        rows_per_block = max(1, min(int(batch_size), block_bytes // (8 * num_cand)))
        cand_pos = None
        if cand_idx is not None:  # item index -> position among the candidates, -1 if none
            cand_pos = np.full(ds.num_items, -1, dtype=np.int64)
            cand_pos[cand_idx] = np.arange(len(cand_idx))
        for start in range(0, len(user_idx), rows_per_block):
            block = user_idx[start:start + rows_per_block]
            scores = torch.as_tensor(np.asarray(self.score(block, cand_idx), dtype=np.float64))
            scores = scores.nan_to_num(nan=float("-inf"))
            if exclude_seen and self.train_matrix is not None:
                mask_seen(scores, self.train_matrix, block, cand_pos)
            values, top = top_k_rows(scores, kk)
            valid = torch.isfinite(values).numpy()
            rr, cc = np.nonzero(valid)
            if not len(rr):
                continue
            top = top.numpy()
            item_idx = top if cand_idx is None else cand_idx[top]
            yield pd.DataFrame({
                "user_id": ds.user_ids[block[rr]],
                "item_id": ds.item_ids[item_idx[rr, cc]],
                "rank": cc + 1,
                "score": values.numpy()[rr, cc],
            })[RECOMMEND_COLUMNS]


def mask_seen(scores: Tensor, train_matrix: sp.csr_matrix, users: np.ndarray,
              cand_pos: np.ndarray | None = None) -> None:
    """Set ``scores[r, c]`` to ``-inf`` (in place) where user ``users[r]`` interacted with
    item ``c`` in ``train_matrix`` (read from its CSR rows, one block at a time).

    Args:
        scores (Tensor): ``[len(users), columns]`` block of scores.
        train_matrix (scipy.sparse.csr_matrix): ``[num_users, num_items]`` interactions.
        users (numpy.ndarray): The block's user indices.
        cand_pos (numpy.ndarray, optional): Item index -> column of ``scores`` (``-1``: not a
            column); ``None`` when the columns are all items in order.
    """
    indptr, indices = train_matrix.indptr, train_matrix.indices
    starts, ends = indptr[users], indptr[users + 1]
    lengths = (ends - starts).astype(np.int64)
    if not lengths.sum():
        return
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = indices[np.repeat(starts, lengths) + offsets].astype(np.int64)
    if cand_pos is not None:
        cols = cand_pos[cols]
        rows, cols = rows[cols >= 0], cols[cols >= 0]
    scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")


def top_k_rows(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each row's ``k`` largest entries, score descending, ties to the lower column.

    :func:`torch.topk` finds each row's ``k``-th value; the entries above it and, among
    those equal to it, the lowest columns make up the ``k`` (``torch.topk`` alone may pick
    any of tied columns). The result is the same as a stable sort of the whole row.

    Args:
        scores (Tensor): ``[rows, n]`` scores (``-inf`` for excluded entries; no NaN).
        k (int): Entries kept, ``1 <= k <= n``.

    Returns:
        ``(values [rows, k], columns [rows, k])``.
    """
    rows = scores.size(0)
    if rows == 0:
        return scores.new_zeros(0, k), torch.zeros(0, k, dtype=torch.int64)
    kth = torch.topk(scores, k, dim=1, sorted=True).values[:, -1:]
    above = scores > kth
    ties = scores == kth
    room = k - above.sum(1, keepdim=True)
    keep = above | ties
    # Only rows with more tied entries than room need the lowest-columns rule (a cumulative
    # count over the row); with distinct scores that is none of them.
    crowded = (ties.sum(1, keepdim=True) > room).squeeze(1).nonzero().squeeze(1)
    if crowded.numel():
        ties = ties[crowded]
        keep[crowded] = above[crowded] | (ties & (ties.cumsum(1) <= room[crowded]))
    columns = keep.nonzero()[:, 1].view(rows, k)  # row-major: ascending columns per row
    values = scores.gather(1, columns)
    values, order = torch.sort(values, dim=1, descending=True, stable=True)
    return values, columns.gather(1, order)


class OnePassRecommender(Recommender):
    """A model computed in one pass over its training data (no epochs, no early stopping).

    :meth:`fit` binds the data (:attr:`dataset`, :attr:`train_matrix`), calls
    :meth:`fit_bound` and reports the fit as done; subclasses implement :meth:`fit_bound` and
    :meth:`score`.
    """

    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        valid: pd.DataFrame | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> OnePassRecommender:
        """Fit on ``train`` (rows of ``dataset.interactions``); ``valid`` is not used."""
        self._bind(dataset, train)
        self.fit_bound(dataset, on_progress)
        if on_progress is not None:
            on_progress({"stage": "fit", "fraction": 1.0})
        return self

    @abc.abstractmethod
    def fit_bound(self, dataset: Dataset, on_progress: ProgressCallback | None) -> None:
        """Compute the model from the bound :attr:`train_matrix` (and ``dataset``)."""


class UnknownIndexError(UnknownIdError):
    """A user or item index outside ``[0, num_users)`` / ``[0, num_items)`` was scored."""

    def __init__(self, kind: str, indices: list[int], size: int):
        super().__init__(kind, [str(i) for i in indices])
        shown = ", ".join(str(i) for i in indices[:5])
        more = f" (and {len(indices) - 5} more)" if len(indices) > 5 else ""
        self.args = (f"{kind} index(es) out of range: {shown}{more}. This model knows {size:,} "
                     f"{kind}s (indices 0 to {size - 1:,}); map raw ids with "
                     f"dataset.{kind}_idx() or use recommend() with raw ids.",)


def check_indices(values, size: int, kind: str) -> np.ndarray:
    """``values`` as an int64 index array, all in ``[0, size)``.

    Raises:
        UnknownIndexError: Some index is negative or not below ``size``.
        TypeError: The values are not integers (e.g. raw string ids).
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.int64)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"score() takes integer {kind} indices, got {array.dtype} values; map "
                        f"raw ids with dataset.{kind}_idx().")
    bad = (array < 0) | (array >= size)
    if bad.any():
        raise UnknownIndexError(kind, np.unique(array[bad]).tolist(), size)
    return array.astype(np.int64, copy=False)


def interaction_matrix(frame: pd.DataFrame, num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary user x item CSR matrix of the interactions in ``frame`` (duplicates collapse)."""
    rows = frame[USER_IDX].to_numpy(np.int64)
    cols = frame[ITEM_IDX].to_numpy(np.int64)
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                      shape=(num_users, num_items))
    m.data[:] = 1.0
    return m


def check_state_tensors(
    model_name: str,
    tensors: dict[str, torch.Tensor],
    expected: dict[str, tuple[int | None, ...]],
) -> None:
    """Strict check for :meth:`Recommender.load_state_tensors`: exact names, then shapes.

    Args:
        model_name (str): Shown in the error.
        tensors (dict): The tensors to load.
        expected (dict): Name -> shape; ``None`` in a shape accepts any size on that axis.

    Raises:
        ValueError: Naming the missing / unexpected tensors or the mismatched shape.
    """
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{model_name}: state tensors do not match the model "
                         f"(missing {missing}, unexpected {unexpected}).")
    for key, shape in expected.items():
        got = tuple(tensors[key].shape)
        if len(got) != len(shape) or any(
                s is not None and s != g for s, g in zip(shape, got, strict=True)):
            want = tuple("*" if s is None else s for s in shape)
            raise ValueError(f"{model_name}: tensor '{key}' has shape {got}, expected {want}.")
