"""The interface every recommender implements.

A model is fitted on a :class:`~recsys_core.dataset.Dataset` and a frame of training
interactions (a subset of ``dataset.interactions``), scores (user, item) pairs by contiguous
indices, and recommends by raw ids. Subclasses implement :meth:`fit` and :meth:`score` (models computed in
one pass, :meth:`OnePassRecommender.fit_bound` and :meth:`score`); they may override :meth:`state_tensors` / :meth:`load_state_tensors` / :meth:`config` to be saved.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..dataset import ITEM_IDX, USER_IDX, Dataset, UnknownIdError

ProgressCallback = Callable[[dict[str, Any]], None]
"""Called with a dict such as ``{"stage": "train", "epoch": 3, "epochs": 50, "loss": 0.41,
"valid_ndcg": 0.12, "fraction": 0.06}``. ``fraction`` in [0, 1] drives progress bars."""

RECOMMEND_COLUMNS = ["user_id", "item_id", "rank", "score"]


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

        Args:
            users (iterable of str, optional): Raw user ids (default: every user).
            k (int): List length. (default: :obj:`10`)
            exclude_seen (bool): Drop the user's training interactions. (default: :obj:`True`)
            candidates (iterable of str, optional): Rank only these raw item ids (they may be
                cold items with no interactions). (default: all items)
            batch_size (int): Users scored per block. (default: :obj:`1024`)
        """
        if self.dataset is None:
            raise RuntimeError("Model is not fitted.")
        ds = self.dataset
        user_idx = (np.arange(ds.num_users) if users is None else ds.user_idx(list(users)))
        cand_idx = None if candidates is None else np.unique(ds.item_idx(list(candidates)))
        frames = []
        for start in range(0, len(user_idx), batch_size):
            block = user_idx[start:start + batch_size]
            scores = np.asarray(self.score(block, cand_idx), dtype=np.float64)
            if exclude_seen and self.train_matrix is not None:
                seen = self.train_matrix[block]
                if cand_idx is not None:
                    seen = seen[:, cand_idx]
                rows, cols = seen.nonzero()
                scores[rows, cols] = -np.inf
            kk = min(k, scores.shape[1])
            if kk == 0:
                continue
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=-1)  # score desc, ties by index
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            valid = np.isfinite(top_scores)
            item_idx = top if cand_idx is None else cand_idx[top]
            rr, cc = np.nonzero(valid)
            frames.append(pd.DataFrame({
                "user_id": ds.user_ids[block[rr]],
                "item_id": ds.item_ids[item_idx[rr, cc]],
                "rank": cc + 1,
                "score": top_scores[rr, cc],
            }))
        if not frames:
            return pd.DataFrame(columns=RECOMMEND_COLUMNS)
        return pd.concat(frames, ignore_index=True)[RECOMMEND_COLUMNS]


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
