"""What a sweep will run, before it runs: the trials --dry-run lists, the time estimate, and the
refusal of a sweep estimated at over a day without --yes-large. No Ray, no torch.
"""

from __future__ import annotations

from grok.experiment import TRIAL_STEPS_PER_S, Experiment, trial_name
from grok.metrics import TEST_METRICS, objective_split

DAY = 24 * 3600.0
LISTED = 20  # a grid of at most this many points is listed whole by --dry-run
SAMPLES = 3  # else its first and last few points


def duration(seconds: float) -> str:
    for unit, size in (("years", 365 * DAY), ("days", DAY), ("hours", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 60:.2g} minutes"


def estimate(exp: Experiment, at_once: int, where: str) -> tuple[float, str]:
    """The sweep's estimated time, and a line that says how it was reckoned."""
    seconds = exp.estimated_seconds(at_once)
    return seconds, (
        f"{exp.num_trials} trials x up to {exp.steps_per_trial()} steps at "
        f"~{TRIAL_STEPS_PER_S:g} steps/s per trial, {at_once} at once {where}: "
        f"about {duration(seconds)}"
    )


def dry_run(exp: Experiment, at_once: int) -> None:
    """The trials a sweep would run, without running them: at any grid size, the count, each
    key's values and the first and last few points (nothing is built per point)."""
    n = exp.num_trials
    print(
        f"{exp.name}: {n} trial{'s' * (n != 1)}"
        f" ({exp.resources.cpu:g} cpu, {exp.resources.gpu:g} gpu each)"
    )
    seconds, how = estimate(exp, at_once, "on this machine")
    large = " (over a day: starting it needs --yes-large)" if seconds > DAY else ""
    print(f"  estimate: {how}{large}")
    if exp.search:
        describe_search(exp)
        return
    points = exp.num_points
    if points > LISTED:
        print(f"  grid: {len(exp.grid)} keys, {points} points")
        width = max(len(k) for k in exp.grid)
        for key, values in exp.grid.items():
            print(f"    {key.ljust(width)}  {len(values)} values: {', '.join(map(str, values))}")
        print(f"  the first {SAMPLES} and the last {SAMPLES} points:")
    for index in sample_indices(points):
        if index is None:
            print(f"  ... {points - 2 * SAMPLES} more")
            continue
        values = exp.point(index)
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "(no varying values)"
        print(f"  {trial_name(values)}: {shown}")


def sample_indices(points: int) -> list[int | None]:
    """Every index of a small grid; of a large one the first and last few (None between)."""
    if points <= LISTED:
        return list(range(points))
    return [*range(SAMPLES), None, *range(points - SAMPLES, points)]


def too_large(
    exp: Experiment,
    cpus: float,
    gpus: float,
    max_concurrent: int | None,
    yes_large: bool,
    where: str,
) -> str | None:
    """Why a sweep may not start without --yes-large: more than a day's work for the cluster."""
    seconds, how = estimate(exp, exp.parallel_trials(cpus, gpus, max_concurrent), where)
    if seconds <= DAY or yes_large:
        return None
    return f"{exp.source}: {how}, over a day; pass --yes-large to start it anyway"


def describe_search(exp: Experiment) -> None:
    """What --dry-run prints for a search: the space, the trials, the searcher and the stops."""
    s = exp.search
    points = exp.num_points
    grid = ", ".join(f"{k}={v}" for k, v in exp.grid.items()) or "none"
    budget = exp.base.train.steps
    print(f"  {s.num_samples} sampled points x {points} grid point(s) ({grid}) = {exp.num_trials}")
    seeded = "TPE, seed" if s.algorithm == "optuna" else "Tune's random search, seed"
    at_once = exp.tune.max_concurrent
    at_once = f", at most {at_once} trials at once" if at_once else ""
    print(f"  algorithm: {s.algorithm} ({seeded} {s.seed}){at_once}")
    print(f"  metric: {s.metric} ({s.mode}), each point's mean over its grid points")
    split = objective_split(s.metric)
    if split:
        print(
            f"    the step at which {split} accuracy first reaches 99%; a run that never does is "
            f"censored at its budget, train.steps = {budget}"
        )
    own_stop = exp.base.stop
    stops_on_test = own_stop.after_grok_steps is not None and own_stop.split == "test"
    if s.metric in TEST_METRICS or stops_on_test:  # parse_search allowed it: allow_test
        print("    chooses on the test split (search.allow_test: true): no held-out test")
    else:
        print("    the test split is held out: nothing chooses on it")
    print("  space:")
    width = max(len(key) for key in s.space)
    for key, domain in s.space.items():
        print(f"    {key.ljust(width)}  {domain}")
    if s.scheduler:
        rungs = ", ".join(map(str, s.scheduler.rungs(budget)))
        print(
            f"  scheduler: asha on {s.metric}: at steps {rungs} all but the best "
            f"1/{s.scheduler.reduction_factor} of trials stop (risky for grokking: see "
            "docs/search.md)"
        )
    else:
        print("  scheduler: none (every trial runs to its own stop)")
    if s.stop_if_train_below:
        stop = s.stop_if_train_below
        print(
            f"  stopper: a trial whose train accuracy has not reached {stop.acc:.0%} by step "
            f"{stop.step} is stopped"
        )
    after = exp.base.stop.after_grok_steps
    threshold = f"{exp.base.stop.threshold:.0%}"
    watched = f"{exp.base.stop.split} accuracy"
    own = "none" if after is None else f"{after} steps after {watched} reaches {threshold}"
    print(f"  each trial's own stop (stop.after_grok_steps): {own}; budget {budget} steps")
