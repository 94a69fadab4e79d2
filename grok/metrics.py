"""Threshold crossings and steps-to-grok, shared by the trainer and the plotting.

Steps-to-grok (the assignment's definition) is the number of steps between the first evaluation
at which train accuracy reaches a threshold and the first at which test accuracy does. Both the
99% threshold (the field's usual one) and 100% (the assignment's words) are tracked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

THRESHOLDS = (0.99, 1.0)
TRACKED = ("train/acc", "val/acc", "test/acc")

# The objectives of a search for fast grokking, reported at every evaluation: the step at which a
# split's accuracy first reached 99%, or, for a run that has not (yet), its step budget. A
# censored value is a lower bound on the true one; its `censored` key says which it is. A search
# chooses on the val split: the test one is held out to judge what it chose (grok/search.py
# refuses a test metric unless the experiment file says `search.allow_test: true`).
VAL_OBJECTIVE = "objective/val_grok_step"
VAL_CENSORED = "objective/val_censored"
OBJECTIVE = "objective/grok_step"  # test accuracy's: kept for the runs that report it
CENSORED = "objective/censored"
OBJECTIVES = {VAL_OBJECTIVE: ("val/acc", VAL_CENSORED), OBJECTIVE: ("test/acc", CENSORED)}
# What a search may optimize: reported at every evaluation and always a number (the crossings
# grok/*_step are None until reached, so a searcher would get nothing from runs that never grok).
SEARCH_METRICS = (
    VAL_OBJECTIVE,
    "val/acc",
    "val/loss",
    "train/acc",
    "train/loss",
    OBJECTIVE,
    "test/acc",
    "test/loss",
)
# The metrics that read the test split: choosing on them tunes on test.
TEST_METRICS = (OBJECTIVE, "test/acc", "test/loss")


def censored_key(metric: str) -> str | None:
    """The key that says whether an objective's value is censored; None for other metrics."""
    return OBJECTIVES[metric][1] if metric in OBJECTIVES else None


def objective_split(metric: str) -> str | None:
    """The split whose 99% crossing an objective is ('val', 'test'); None for other metrics."""
    return OBJECTIVES[metric][0].split("/")[0] if metric in OBJECTIVES else None


def pct(threshold: float) -> int:
    return round(threshold * 100)


def crossing_key(metric: str, threshold: float) -> str:
    """'test/acc', 0.99 -> 'grok/test_acc_99_step'."""
    return f"grok/{metric.replace('/', '_')}_{pct(threshold)}_step"


def grok_key(threshold: float) -> str:
    return f"grok/steps_to_grok_{pct(threshold)}"


def reached(value: float, threshold: float) -> bool:
    # Accuracies are counts over a split: 1.0 means every example right. The small slack keeps
    # 0.99 reachable when correct / total is 0.98999... by float rounding only.
    return value is not None and not math.isnan(value) and value >= threshold - 1e-9


def first_crossing(steps: Iterable[int], values: Iterable[float], threshold: float) -> int | None:
    """The first step whose value reaches `threshold`, or None."""
    for step, value in zip(steps, values):
        if reached(value, threshold):
            return int(step)
    return None


def grok_objectives(crossings: dict[str, int | None], budget: int) -> dict[str, int | bool]:
    """The objectives of a fast-grokking search, from a run's crossings so far: each split's 99%
    crossing, else censored at `budget`."""
    out: dict[str, int | bool] = {}
    for objective, (metric, censored) in OBJECTIVES.items():
        step = crossings[crossing_key(metric, 0.99)]
        out[objective] = budget if step is None else step
        out[censored] = step is None
    return out


def steps_to_grok(train_step: int | None, test_step: int | None) -> int | None:
    if train_step is None or test_step is None:
        return None
    return test_step - train_step


class CrossingTracker:
    """Remembers the first step at which each tracked accuracy reached each threshold."""

    def __init__(self, state: dict[str, int | None] | None = None):
        self.first: dict[str, int | None] = {
            crossing_key(m, t): None for m in TRACKED for t in THRESHOLDS
        }
        if state:
            self.first.update(state)

    def update(
        self,
        step: int,
        metrics: dict[str, float],
        locate: Callable[[str, float], int] | None = None,
    ) -> dict[str, int | None]:
        """Record crossings in `metrics` at `step`; returns every grok/* value so far.

        locate(metric, threshold), if given, returns the first step since the previous update
        at which the metric reached the threshold (the trainer's snapshots know it).
        """
        for m in TRACKED:
            for t in THRESHOLDS:
                key = crossing_key(m, t)
                if self.first[key] is None and reached(metrics.get(m), t):
                    self.first[key] = locate(m, t) if locate else step
        out = dict(self.first)
        for t in THRESHOLDS:
            out[grok_key(t)] = steps_to_grok(
                self.first[crossing_key("train/acc", t)], self.first[crossing_key("test/acc", t)]
            )
        return out


def score_metric(has_val_split: bool) -> str:
    """What ranks a sweep's checkpoints and trials: val/acc, or train/acc without a val split."""
    return "val/acc" if has_val_split else "train/acc"


def direction(metric: str) -> str:
    """Whether a metric is better high ('max': accuracies) or low ('min': losses, steps)."""
    return "max" if metric.endswith("acc") else "min"
