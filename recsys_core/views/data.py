"""What the Data page shows beyond the dataset itself."""

from __future__ import annotations

import numpy as np

from ..dataset import ITEM_IDX, USER_IDX, Dataset


def interaction_counts(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Interactions per user and per item (index order)."""
    inter = dataset.interactions
    return (
        np.bincount(inter[USER_IDX].to_numpy(), minlength=dataset.num_users),
        np.bincount(inter[ITEM_IDX].to_numpy(), minlength=dataset.num_items),
    )
