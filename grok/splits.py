"""How a task's table of examples is split into train/val/test: sizes and indices (numpy only).

The sizes depend on the table's size and the two fractions alone, so the plotting can say how
many test equations a run got wrong without building the data (or importing torch).
"""

from __future__ import annotations

import numpy as np

from grok.config import TaskConfig
from grok.operations import operation


def split_sizes(n: int, train_fraction: float, val_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) sizes of a table of n examples."""
    n_train = max(1, round(train_fraction * n))
    n_val = min(round(val_fraction * n), n - n_train)
    return n_train, n_val, n - n_train - n_val


def split_indices(n: int, train_fraction: float, val_fraction: float, data_seed: int):
    """Disjoint train/val/test index arrays covering range(n), fixed by `data_seed` alone."""
    perm = np.random.default_rng(data_seed).permutation(n)
    n_train, n_val, _ = split_sizes(n, train_fraction, val_fraction)
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def n_test(task: TaskConfig) -> int | None:
    """Equations in the test split of a modular task; None for text tasks (sized by their file)."""
    if task.kind != "modular":
        return None
    n = operation(task.op).size(task.p)
    return split_sizes(n, task.train_fraction, task.val_fraction)[2]
