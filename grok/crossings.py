"""When an accuracy first reached a threshold, between two full evaluations.

Full evaluations are rare late in a run (grok/config.py's `eval` section), so a crossing found at
one is located more finely: between evaluations the trainer keeps weight snapshots, every
`eval.refine_every * step` steps, and `Snapshots.first_reached` bisects over them (below the
threshold at the last evaluation, reached at this one), evaluating a snapshot only as far as
needed. A probe evaluates first the rows that were wrong at the last evaluation: a snapshot still
below the threshold usually shows enough wrong rows among those, and once the wrong rows exceed
what the threshold allows the answer is certain (the count cannot come back), so the rest of the
split is skipped.

Plain PyTorch: the trainer hands over its parameters and a function that scores rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from grok.config import Config
from grok.metrics import reached

# Which rows of a split are right (a bool per row) under the current weights.
Score = Callable[[str, torch.Tensor], torch.Tensor]
NO_ROWS = torch.zeros(0, dtype=torch.long)


def snapshot_gap(cfg: Config, step: int) -> int:
    """Steps between weight snapshots after `step` (0: none are kept)."""
    r = cfg.eval.refine_every
    return max(1, int(r * step)) if r > 0 else 0


class Snapshots:
    """The weights since the last evaluation, and the bisection that finds a crossing in them."""

    def __init__(self, params: list[torch.Tensor], sizes: dict[str, int], chunk: int, score: Score):
        self.params = params
        self.sizes = sizes  # rows per split
        self.chunk = chunk  # rows per forward pass
        self.score = score
        self.taken: list[tuple[int, list[torch.Tensor]]] = []  # (step, parameters)
        # What is known of each snapshot's accuracy: (index, split) -> (wrong rows, rows seen).
        self.wrong: dict[tuple[int, str], tuple[int, int]] = {}
        # Rows of each split wrong at the last evaluation (probed first), and at this one.
        self.wrong_before: dict[str, torch.Tensor] = {}
        self.wrong_now: dict[str, torch.Tensor] = {}

    def take(self, step: int) -> None:
        self.taken.append((step, [p.detach().clone() for p in self.params]))

    def evaluated(self, split: str, wrong_rows: torch.Tensor) -> None:
        """The rows of `split` that the evaluation now under way found wrong (CPU row numbers)."""
        self.wrong_now[split] = wrong_rows

    def next_interval(self) -> None:
        """After an evaluation: forget the snapshots; its wrong rows are the next probes' first."""
        self.taken, self.wrong = [], {}
        self.wrong_before, self.wrong_now = self.wrong_now, {}

    def first_reached(self, metric: str, threshold: float, now: int) -> int:
        """The step since the last evaluation at which `metric` rose to `threshold` (it had not
        at the last evaluation and has at `now`). If the accuracy dipped back in between, this
        is one such step, not necessarily the first; a crossing costs log2(snapshots) probes."""
        split = metric.split("/")[0]
        lo, hi = -1, len(self.taken)  # index hi reached (len: the step `now`); lo did not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.reached(mid, split, threshold):
                hi = mid
            else:
                lo = mid
        return self.taken[hi][0] if hi < len(self.taken) else now

    def probe_chunks(self, split: str) -> list[torch.Tensor]:
        """A split's rows in the order a probe evaluates them: those wrong at the last
        evaluation first (in their own chunks), then the rest."""
        hard = self.wrong_before.get(split, NO_ROWS)
        rest = torch.ones(self.sizes[split], dtype=torch.bool)
        rest[hard] = False
        rest = torch.nonzero(rest)[:, 0]
        return [rows for rows in (*hard.split(self.chunk), *rest.split(self.chunk)) if len(rows)]

    @torch.no_grad()
    def reached(self, index: int, split: str, threshold: float) -> bool:
        """Whether snapshot `index` reaches `threshold` on `split`, its rows counted until the
        answer is certain. The current weights are put back afterwards."""
        n = self.sizes[split]
        wrong, seen = self.wrong.get((index, split), (0, 0))
        if seen == n or not reached((n - wrong) / n, threshold):
            return reached((n - wrong) / n, threshold)  # exact, or below whatever the rest holds
        current = [p.detach().clone() for p in self.params]
        for p, w in zip(self.params, self.taken[index][1]):
            p.copy_(w)
        wrong, seen = 0, 0
        for rows in self.probe_chunks(split):
            wrong, seen = wrong + int((~self.score(split, rows)).sum()), seen + len(rows)
            if not reached((n - wrong) / n, threshold):
                break
        for p, w in zip(self.params, current):
            p.copy_(w)
        self.wrong[(index, split)] = (wrong, seen)
        return reached((n - wrong) / n, threshold)
