"""Recommenders whose scores are dot products of user and item embeddings trained by
:func:`recsys_core.training.train_model` (MF, LightGCN and the flagship build on
:class:`EmbeddingRecommender`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar, Unpack

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .. import distributed
from ..dataset import Dataset
from ..rng import private_draws
from ..training import (
    TrainConfig,
    TrainOptions,
    TrainResult,
    clone_config,
    split_validation,
    train_model,
)
from .base import ProgressCallback, Recommender


def dot_scores(user_emb: Tensor, item_emb: Tensor, users: np.ndarray,
               items: np.ndarray | None = None) -> np.ndarray:
    """``[len(users), len(items)]`` dot products (all items when ``items`` is ``None``)."""
    u = user_emb.index_select(0, torch.as_tensor(np.asarray(users, dtype=np.int64)))
    i = item_emb if items is None else item_emb.index_select(
        0, torch.as_tensor(np.asarray(items, dtype=np.int64)))
    return (u @ i.T).numpy()


class EmbeddingRecommender(Recommender):
    """A :class:`Recommender` whose scores are dot products of embeddings trained by
    :func:`train_model`.

    Subclasses implement :meth:`build_module` (and :meth:`model_config` for their own
    constructor arguments); fitting, scoring, saving and restoring are shared. A subclass's
    constructor takes its own arguments, explicit and typed, then
    ``**train_options: Unpack[TrainOptions]``, which it passes on here: the training settings
    (the fields of :class:`TrainConfig`) are typed and documented once, and each model states
    only where its defaults differ (:attr:`train_defaults`).
    :func:`~recsys_core.models.params.constructor_parameters` lists them with the model's
    defaults for the CLI, the app and tuning.

    Args:
        **train_options: Fields of :class:`TrainConfig`; those not given take
            :attr:`train_defaults`, then :class:`TrainConfig`'s defaults.
    """

    #: This model's training defaults where they differ from :class:`TrainConfig`'s.
    train_defaults: ClassVar[TrainOptions] = {}

    def __init__(self, **train_options: Unpack[TrainOptions]) -> None:
        super().__init__()
        self.train_config = TrainConfig(**{**self.train_defaults, **train_options})
        self.module: nn.Module | None = None
        self.train_result: TrainResult | None = None
        self._user_emb: Tensor | None = None
        self._item_emb: Tensor | None = None

    @classmethod
    def train_option_defaults(cls) -> dict[str, Any]:
        """Every training option with this model's default (:attr:`train_defaults` over
        :class:`TrainConfig`'s)."""
        return asdict(TrainConfig(**cls.train_defaults))

    # --------------------------------------------------------------- to implement
    def build_module(self, dataset: Dataset) -> nn.Module:
        """A fresh module (an :class:`EmbeddingModule`) for ``dataset``'s users and items."""
        raise NotImplementedError

    def model_config(self) -> dict[str, Any]:
        """The subclass's own JSON-serialisable constructor arguments."""
        return {}

    # --------------------------------------------------------------- fitting
    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        valid: pd.DataFrame | None = None,
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EmbeddingRecommender:
        """Train with early stopping on ``valid`` (carved from ``train`` when ``None``).

        After training, the model propagates over all of ``train`` (carved validation
        interactions included) to score.

        Args:
            dataset (Dataset): The dataset.
            train (pandas.DataFrame): Training interactions.
            valid (pandas.DataFrame, optional): Validation interactions for early stopping.
            on_progress (callable, optional): Progress callback (see :func:`train_model`).
            should_stop (callable, optional): Polled during training; ``True`` stops it.
        """
        self._bind(dataset, train)
        config = self.train_config
        if valid is None:
            train_part, valid = split_validation(train, config.valid_fraction, config.seed)
        else:
            train_part = train
        self.module = self._fresh_module(dataset)
        result = train_model(self.module, dataset, train_part, valid, config,
                             on_progress=on_progress, should_stop=should_stop)
        # Data-parallel (torchrun): the closed-form choices run once, on rank 0, and every rank
        # gets the same record of them (only rank 0 builds the final paths and writes the run).
        if distributed.is_main():
            self.select_on_validation(dataset, train_part, valid, result, on_progress,
                                      should_stop)
        result.selected = distributed.broadcast_object(result.selected)
        refit = self._refit_config(result, carved=train_part is not train)
        if refit is not None:
            # Same seed and epochs on every interaction; the validation run chose the epochs.
            def refit_progress(event: dict[str, Any]) -> None:
                if on_progress is not None:
                    on_progress({**event, "stage": "refit"})

            validated = self.module
            self.module = self._fresh_module(dataset)
            again = train_model(self.module, dataset, train, train.iloc[:0], refit,
                                on_progress=refit_progress, should_stop=should_stop)
            if again.stop_reason == "epochs" and again.best_epoch == refit.epochs:
                result.refit_epochs = again.best_epoch
                result.history += [{**r, "stage": "refit"} for r in again.history]
            else:  # interrupted: keep the validated weights
                self.module = validated
            result.seconds += again.seconds
            result.device, result.batch_size = again.device, again.batch_size
        self.train_result = result
        self.after_training()
        self._finalize()
        return self

    def _refit_config(self, result: TrainResult, carved: bool) -> TrainConfig | None:
        """Settings of the refit on all interactions, or ``None`` when there is none."""
        config = self.train_config
        if not (config.refit and carved and result.best_epoch > 0
                and result.stop_reason in ("patience", "epochs")):
            return None
        seconds_to_best = result.history[result.best_epoch - 1]["seconds"]
        time_limit = None
        if config.time_limit is not None:
            time_limit = config.time_limit - result.seconds
            if time_limit < 1.2 * seconds_to_best:  # it would not finish: keep the first run
                return None
        return clone_config(config, epochs=result.best_epoch, time_limit=time_limit,
                            checkpoint_dir=None, resume=False, refit=False)

    def select_on_validation(
        self,
        dataset: Dataset,
        train: pd.DataFrame,
        valid: pd.DataFrame,
        result: TrainResult,
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Hook after early stopping, before the refit: the module holds the weights chosen
        on ``valid`` and was trained on ``train`` only, so further settings can be chosen on
        ``valid`` without leakage (record them in ``result.selected``)."""

    def after_training(self) -> None:
        """Hook between training (best weights restored) and caching the final embeddings."""

    def _inference_pairs(self) -> tuple[Tensor, Tensor]:
        """Every training pair, sorted by (user, item): the same graph at fit and restore."""
        coo = self.train_matrix.tocoo()
        order = np.lexsort((coo.col, coo.row))
        return (torch.from_numpy(coo.row[order].astype(np.int64)),
                torch.from_numpy(coo.col[order].astype(np.int64)))

    def _finalize(self) -> None:
        """Propagate over all training interactions and cache the final embeddings (CPU)."""
        module = self.module
        device = next(iter(module.parameters())).device
        module.set_interactions(*self._inference_pairs())
        module.to(device)
        module.eval()
        with torch.no_grad():
            user_emb, item_emb = module()
        self._user_emb = user_emb.detach().float().cpu()
        self._item_emb = item_emb.detach().float().cpu()
        module.to("cpu")

    # --------------------------------------------------------------- scoring
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final ``(user_emb [num_users, d], item_emb [num_items, d])`` on the CPU."""
        if self._user_emb is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted.")
        return self._user_emb, self._item_emb

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        return dot_scores(*self.embeddings(), users, items)

    # --------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        return {**self.model_config(), **asdict(self.train_config)}

    def state_tensors(self) -> dict[str, Tensor]:
        if self.module is None:
            return {}
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Load saved tensors into a module built for the bound dataset (strict names/shapes).

        The model must be bound to its dataset and training interactions first (see
        :meth:`Recommender.restore`).
        """
        from .base import check_state_tensors

        if self.dataset is None:
            raise ValueError(f"{self.name}: bind a dataset first, e.g. with restore(dataset, "
                             "train, tensors).")
        module = self.module if self.module is not None else self._module_for_restore(tensors)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        check_state_tensors(self.name, tensors, expected)
        module.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                                for k, v in tensors.items()}, strict=True)
        self.module = module
        self._finalize()

    def _module_for_restore(self, tensors: dict[str, Tensor]) -> nn.Module:
        return self._fresh_module(self.dataset)

    def _fresh_module(self, dataset: Dataset) -> nn.Module:
        """:meth:`build_module` without touching the global generator (the initial weights are
        re-drawn by :func:`train_model` or loaded)."""
        with private_draws(self.train_config.seed):
            return self.build_module(dataset)
