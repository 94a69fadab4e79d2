"""The `search` section of an experiment file: a sampled space of settings and how to search it.

Every distribution is checked against the declaration of the setting it samples before anything
runs: its type, its bounds and choices (each is a value the setting must accept) and the keys the
grid and `--set` already own; grok/experiment.py then runs the cross-field rules over its edges.
grok/tune.py turns a `Search` into Tune's searcher and scheduler.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from grok.config import Config
from grok.metrics import (
    SEARCH_METRICS,
    TEST_METRICS,
    THRESHOLDS,
    VAL_OBJECTIVE,
    direction,
)
from grok.overrides import parse_set, setting
from grok.schema import ConfigError, allowed, check_int, check_keys, coerce

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
ALGORITHMS = ("optuna", "random")
SEARCH_KEYS = (
    "space",
    "num_samples",
    "algorithm",
    "metric",
    "mode",
    "seed",
    "scheduler",
    "stop_if_train_below",
    "allow_test",
)


@dataclass
class Domain:
    """One sampled setting: loguniform/uniform/randint over [lo, hi] (both ends included), or
    a choice among values."""

    kind: str  # one of DISTRIBUTIONS
    args: list[Any]  # [lo, hi], or the choices

    def __str__(self) -> str:
        shown = (f"{a:g}" if isinstance(a, float) else str(a) for a in self.args)
        return f"{self.kind} [{', '.join(shown)}]"


@dataclass
class Asha:
    """ASHA early stopping: at steps grace_period * reduction_factor**k, all but the best
    1/reduction_factor of the trials that reached the step stop there."""

    name: str = "asha"
    grace_period: int = 1000  # at most: it is lowered to train.steps when that is smaller
    reduction_factor: int = 3

    def rungs(self, budget: int) -> list[int]:
        """The steps at which trials are compared, below the step budget."""
        out, step = [], self.grace_period
        while step < budget:
            out.append(step)
            step *= self.reduction_factor
        return out


@dataclass
class TrainStop:
    """Stop a trial whose train accuracy has not reached `acc` by `step`."""

    step: int
    acc: float = 0.99


@dataclass
class Search:
    """The `search` section of an experiment file: a sampled space, and how to search it."""

    space: dict[str, Domain]  # dotted key -> distribution
    num_samples: int = 10  # sampled points; each runs once per grid point
    algorithm: str = "optuna"  # optuna (TPE) or random
    metric: str = VAL_OBJECTIVE
    mode: str = "min"
    seed: int = 0  # the searcher's, apart from the trials' seeds
    scheduler: Asha | None = None
    stop_if_train_below: TrainStop | None = None
    # Choosing on the test split is refused unless the file says so; the report then says it did.
    allow_test: bool = False

    def to_record(self) -> dict[str, Any]:
        """The section as written in experiment files (what experiment.yaml records)."""
        record = dataclasses.asdict(self)
        record["space"] = {k: {d.kind: list(d.args)} for k, d in self.space.items()}
        return record


def _takes(tp: Any, wanted: type) -> bool:
    """Whether a setting of type `tp` accepts every value of type `wanted` (int or float)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_takes(a, wanted) for a in typing.get_args(tp))
    return tp is wanted or (tp is float and wanted is int)


def _domain(key: str, value: Any, source: str) -> Domain:
    where = f"{source}: search.space.{key}"
    declared = setting(key, f"{source}: search.space")
    tp = declared.type
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
        raise ConfigError(
            f"{where}: {value!r} is not a distribution; allowed: one of "
            f"{', '.join(DISTRIBUTIONS)} with a list, e.g. {{loguniform: [1.0e-4, 1.0e-2]}}"
        )
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice takes a non-empty list of values")
        checked = [declared.check(v, f"{source}: search.space") for v in args]
        if len({(type(v), v) for v in checked}) != len(checked):
            raise ConfigError(f"{where}: choice lists a value twice")
        return Domain(kind, checked)
    wanted = int if kind == "randint" else float
    what = "integers" if wanted is int else "numbers"
    try:
        lo, hi = (coerce(wanted, v) for v in args)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {kind} takes two {what} [lo, hi], got {args!r}") from None
    if not _takes(tp, wanted):
        raise ConfigError(f"{where}: {kind} draws {what}, but {key} takes {allowed(tp)}")
    if lo >= hi:
        raise ConfigError(f"{where}: {kind} bounds [{lo:g}, {hi:g}] are inverted; allowed: lo < hi")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs lo > 0, got {lo:g}")
    for bound in (lo, hi):  # the bounds are values the setting must accept
        declared.check(bound, f"{source}: search.space")
    return Domain(kind, [lo, hi])


def _space(raw: Any, grid: dict, sets: list[str], source: str) -> dict:
    where = f"{source}: search.space"
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{where} must map dotted keys to distributions, "
            "e.g. optim.lr: {loguniform: [1.0e-4, 1.0e-2]}"
        )
    set_keys = {parse_set(s)[0] for s in sets}
    space = {}
    for key, value in raw.items():
        key = str(key)
        if key == "seed":
            raise ConfigError(
                f"{where}.seed: seeds belong in grid (each sampled point runs once per seed)"
            )
        if key == "train.steps":
            raise ConfigError(
                f"{where}.train.steps: the budget is the value of runs that never grok, "
                "so sampling it would favour short budgets; set it in config"
            )
        if key in grid:
            raise ConfigError(f"{where}.{key} is also a grid axis; a key is one or the other")
        if key in set_keys:
            raise ConfigError(f"{source}: --set {key} would override search.space.{key}")
        space[key] = _domain(key, value, source)
    return space


def parse_search(
    raw: Any, base: Config, grid: dict[str, list[Any]], sets: list[str], source: str
) -> Search:
    """Check the `search` section against the settings, the grid and --set."""
    where = f"{source}: search"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(SEARCH_KEYS)}")
    check_keys(raw, SEARCH_KEYS, source, "search.")
    search = Search(_space(raw.get("space"), grid, sets, source))
    for key, low in (("num_samples", 1), ("seed", 0)):
        value = raw.get(key, getattr(search, key))
        setattr(search, key, check_int(value, low, f"{where}.{key}"))
    search.algorithm = raw.get("algorithm", search.algorithm)
    if search.algorithm not in ALGORITHMS:
        raise ConfigError(
            f"{where}.algorithm = {search.algorithm!r}; allowed: {', '.join(ALGORITHMS)}"
        )
    search.metric = raw.get("metric", search.metric)
    if search.metric not in SEARCH_METRICS:
        hint = f" (None until reached; use {VAL_OBJECTIVE}, its censored form)"
        raise ConfigError(
            f"{where}.metric = {search.metric!r} is not a reported number"
            f"{hint if str(search.metric).startswith('grok/') else ''}; "
            f"allowed: {', '.join(SEARCH_METRICS)}"
        )
    search.allow_test = raw.get("allow_test", search.allow_test)
    if not isinstance(search.allow_test, bool):
        raise ConfigError(f"{where}.allow_test = {search.allow_test!r}; allowed: true, false")
    _check_holdout(search, base, grid, where)
    uses_val = search.metric.startswith("val/") or search.metric == VAL_OBJECTIVE
    if uses_val and base.task.val_fraction == 0:
        raise ConfigError(f"{where}.metric = {search.metric!r}, but there is no val split")
    search.mode = raw.get("mode", direction(search.metric))
    if search.mode not in ("min", "max"):
        raise ConfigError(f"{where}.mode = {search.mode!r}; allowed: min, max")
    search.scheduler = _scheduler(raw.get("scheduler"), base, where)
    search.stop_if_train_below = _train_stop(raw.get("stop_if_train_below"), base, where)
    return search


def _check_holdout(search: Search, base: Config, grid: dict[str, list[Any]], where: str) -> None:
    """A search chooses on the val split: its metric, and the stop that ends its trials, may read
    the test split only when the file says `allow_test: true`."""
    if search.allow_test:
        return
    if search.metric in TEST_METRICS:
        raise ConfigError(
            f"{where}.metric = {search.metric!r} chooses on the test split; allowed: "
            f"{', '.join(m for m in SEARCH_METRICS if m not in TEST_METRICS)} "
            "(or say search.allow_test: true)"
        )
    splits = grid.get("stop.split", [base.stop.split])
    if base.stop.after_grok_steps is not None and "test" in splits:
        raise ConfigError(
            f"{where}: stop.after_grok_steps watches the test split, so the test split would end "
            "the trials the search compares; set stop.split: val (or search.allow_test: true)"
        )


def _scheduler(raw: Any, base: Config, where: str) -> Asha | None:
    """null, `asha`, or {name: asha, grace_period: steps, reduction_factor: n}."""
    where += ".scheduler"
    if raw is None:
        return None
    options = {"name": raw} if isinstance(raw, str) else raw
    keys = [f.name for f in dataclasses.fields(Asha)]
    if not isinstance(options, dict) or options.get("name") != "asha" or set(options) - set(keys):
        raise ConfigError(
            f"{where} = {raw!r}; allowed: null, asha, or "
            "{name: asha, grace_period: STEPS, reduction_factor: N}"
        )
    default = Asha()
    grace = options.get("grace_period", min(default.grace_period, base.train.steps))
    factor = options.get("reduction_factor", default.reduction_factor)
    asha = Asha(
        grace_period=check_int(grace, 1, f"{where}.grace_period"),
        reduction_factor=check_int(factor, 2, f"{where}.reduction_factor"),
    )
    if asha.grace_period >= base.train.steps:
        raise ConfigError(f"{where}.grace_period = {asha.grace_period} is not below train.steps")
    return asha


def _train_stop(raw: Any, base: Config, where: str) -> TrainStop | None:
    """null, or {step: S, acc: 0.99 or 1.0}: stop a trial whose train accuracy has not reached
    acc by step S."""
    where += ".stop_if_train_below"
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"step", "acc"} or "step" not in raw:
        raise ConfigError(f"{where} = {raw!r}; allowed: null or {{step: STEPS, acc: 0.99}}")
    step = check_int(raw["step"], 1, f"{where}.step")
    if step >= base.train.steps:
        raise ConfigError(f"{where}.step = {step} is not below train.steps {base.train.steps}")
    acc = raw.get("acc", TrainStop.acc)
    if acc not in THRESHOLDS or isinstance(acc, bool):
        raise ConfigError(
            f"{where}.acc = {acc!r}; allowed: {', '.join(f'{t:g}' for t in THRESHOLDS)} "
            "(the tracked crossings)"
        )
    return TrainStop(step, float(acc))
