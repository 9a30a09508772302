"""Everything one browser session works on: the data, its train/test split, the item text
embeddings, the runs and at most one running job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..dataset import DEFAULT_TEXT_TEMPLATE, ITEM_COL, ITEM_IDX, USER_COL, Dataset
from ..errors import RecScopeError
from ..privacy import Pseudonymizer
from .jobs import FAILED, JobContext, TrainingJob
from .runs import Run, RunRegistry, TrainedModel


@dataclass
class Workspace:
    """Everything one browser session works on.

    Args:
        dataset (Dataset): The loaded data.
        train (pandas.DataFrame): Interactions models are fitted on (models that stop early
            carve their own validation split out of it).
        test (pandas.DataFrame): Held-out interactions for the offline metrics.
        source (str): Where the data came from (shown in the sidebar).
        item_text (numpy.ndarray, optional): ``[num_items, d]`` item text embeddings, filled by
            the first job that needs them.
        pseudonymizer (Pseudonymizer): This workspace's privacy-mode pseudonyms; its salt is
            fresh per workspace, kept in memory only and never written out.
            (default: :meth:`Pseudonymizer.random`)
    """

    dataset: Dataset
    train: pd.DataFrame
    test: pd.DataFrame
    source: str = "demo data"
    item_text: np.ndarray | None = None
    runs: RunRegistry = field(default_factory=RunRegistry)
    job: TrainingJob | None = None
    finished_jobs: list[TrainingJob] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)
    pseudonymizer: Pseudonymizer = field(default_factory=Pseudonymizer.random, repr=False)

    @property
    def training(self) -> bool:
        return self.job is not None and not self.job.finished

    def start_job(self, job: TrainingJob) -> TrainingJob:
        """Attach and start a job; refuses while another one runs (one trainer per session
        keeps a shared CPU responsive)."""
        if self.training:
            raise RecScopeError(
                f"'{self.job.label}' is still training. Wait for it to finish or press Stop."
            )
        if self.job is not None:
            self.collect()
        self.job = job
        job.start()
        return job

    def collect(self) -> list[Run]:
        """Register models the job published since the last call; retire a finished job.

        Call on every rerun. A failed job stays in :attr:`finished_jobs` with its message.
        """
        job = self.job
        if job is None:
            return []
        job.poll()
        new_runs = [
            self.runs.add_trained(r) for r in job.take_results() if isinstance(r, TrainedModel)
        ]
        if job.finished:
            new_runs += [
                self.runs.add_trained(r) for r in job.take_results() if isinstance(r, TrainedModel)
            ]
            self.job = None
            self.finished_jobs.append(job)
        return new_runs

    @property
    def last_error(self) -> str | None:
        """Message of the most recent job if it failed."""
        if self.finished_jobs and self.finished_jobs[-1].status == FAILED:
            return self.finished_jobs[-1].error
        return None

    def graph(self):
        """Heterogeneous graph of all interactions (built once, for the Graph page)."""
        if "graph" not in self.cache:
            from ..graph import build_hetero_graph

            self.cache["graph"] = build_hetero_graph(self.dataset)
        return self.cache["graph"]

    # --------------------------------------------------------------- lookups the pages share
    def item_counts(self) -> np.ndarray:
        """Training interactions per item (index order)."""
        if "item_counts" not in self.cache:
            self.cache["item_counts"] = np.bincount(
                self.train[ITEM_IDX].to_numpy(), minlength=self.dataset.num_items
            )
        return self.cache["item_counts"]

    def head_items(self, head_share: float = 0.8) -> set[str]:
        """Most popular training items that together hold ``head_share`` of the interactions."""
        key = ("head_items", head_share)
        if key not in self.cache:
            from ..metrics import head_items

            self.cache[key] = set(map(str, head_items(self.train, head_share)))
        return self.cache[key]

    def user_history(self, user_id: str) -> pd.DataFrame:
        """The user's training interactions joined with item metadata, newest first."""
        ds = self.dataset
        rows = self.train[self.train[USER_COL] == str(user_id)]
        cols = ["title", *ds.attribute_columns]
        meta = ds.items.iloc[rows[ITEM_IDX].to_numpy()][cols].reset_index(drop=True)
        out = pd.concat(
            [rows[[ITEM_COL, "rating", "timestamp"]].reset_index(drop=True), meta], axis=1
        )
        return out.sort_values("timestamp", ascending=False, na_position="last", kind="stable")

    def test_items(self, user_id: str) -> set[str]:
        return set(self.test.loc[self.test[USER_COL] == str(user_id), ITEM_COL])


def split_for_evaluation(
    dataset: Dataset,
    test_fraction: float = 0.1,
    cold_item_fraction: float = 0.05,
    seed: int = 42,
    cold_seed: int = 7,
    min_interactions: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test split for the app's offline metrics: ``(train, test)``.

    First ``cold_item_fraction`` of the interacted items (random, ``cold_seed``) are held out
    entirely: all their interactions go to the test split, so the cold-item slice measures
    recommending items known only by their text and attributes. Of the rest, users with at
    least ``min_interactions`` interactions give ``round(test_fraction * n)`` (at least one) to
    the test split (per-user random, ``seed``); lighter users keep everything for training.

    Args:
        dataset (Dataset): The data.
        test_fraction (float): Per-user test share. (default: :obj:`0.1`)
        cold_item_fraction (float): Share of interacted items held out completely; 0 disables.
            (default: :obj:`0.05`)
        seed (int): Seed of the per-user split. (default: :obj:`42`)
        cold_seed (int): Seed of the cold-item choice. (default: :obj:`7`)
        min_interactions (int): Lighter users are never held out from. (default: :obj:`5`)
    """
    from ..training import split_validation

    inter = dataset.interactions
    interacted = np.unique(inter[ITEM_IDX].to_numpy())
    n_cold = int(round(cold_item_fraction * len(interacted)))
    # Keep at least a few warm items: a catalogue this small cannot spare cold ones.
    if n_cold and len(interacted) - n_cold >= 10:
        cold = np.random.default_rng(cold_seed).permutation(interacted)[:n_cold]
        is_cold = np.isin(inter[ITEM_IDX].to_numpy(), cold)
    else:
        is_cold = np.zeros(len(inter), dtype=bool)
    train, test = split_validation(inter[~is_cold], test_fraction, seed, min_interactions)
    test = pd.concat([test, inter[is_cold]]).sort_index()
    return train, test


def prepare_workspace(dataset: Dataset, source: str = "uploaded data", seed: int = 42) -> Workspace:
    """A fresh :class:`Workspace` with a train/test split of ``dataset``."""
    train, test = split_for_evaluation(dataset, seed=seed)
    return Workspace(
        dataset=dataset,
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        source=source,
    )


def ensure_item_text(
    ws: Workspace, encoder_factory: Callable[[], Any] | None, ctx: JobContext | None = None
) -> np.ndarray:
    """Encode the item texts once per workspace (reusing the encoder's on-disk cache)."""
    if ws.item_text is None:
        from ..text import encode_items

        encoder = encoder_factory() if encoder_factory is not None else None

        def report(event: dict[str, Any]) -> None:
            if ctx is not None:
                ctx.check_stop()
                ctx.progress({**event, "stage": "encode item texts"})

        # Runs in a job thread: the process's thread count (set once at start-up) stays as is.
        emb = encode_items(ws.dataset, template=DEFAULT_TEXT_TEMPLATE, encoder=encoder,
                           on_progress=report)
        ws.item_text = np.asarray(emb, dtype=np.float32)
        ws.cache["item_text_encoded"] = True  # from the shared encoder (not user-supplied)
    return ws.item_text
