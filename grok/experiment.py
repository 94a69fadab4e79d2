"""Experiment files: a base config, a grid of trials, an optional search, and how Tune runs them.

An experiment file has the keys of `EXPERIMENT_KEYS`; `load_experiment` merges its `config`
over the defaults, applies `--set` overrides, and checks every grid point (and every edge of a
search space) before anything runs. Each varying value is checked once against its setting's
declaration, and each cross-field rule (grok/config.py) once per combination of the varying
values of the keys it reads: the same outcome as building every point, at any grid size. Trials
are named from their varying values (`trial_name`). The file format is described in
docs/experiments.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grok.config import Config
from grok.metrics import score_metric
from grok.operations import OPERATIONS
from grok.overrides import (
    apply_overrides,
    check_setting,
    flatten,
    parse_set,
    set_dotted,
    with_values,
)
from grok.schema import (
    RULES,
    ConfigError,
    bounds,
    build,
    check_keys,
    get_dotted,
    read_mapping,
    shown,
)
from grok.search import Search, parse_search

EXPERIMENT_KEYS = (
    "name",
    "description",
    "config",
    "grid",
    "search",
    "resources",
    "tune",
    "tracking",  # read by grok/tracking.py
)
# A conservative training speed of one trial, for estimating how long a sweep takes: a 1-CPU
# trial of the default model makes 12.7 steps/s on the benchmark machine (benchmarks/, see
# docs/speed.md); smaller models and GPUs are faster.
TRIAL_STEPS_PER_S = 10.0


@dataclass
class Resources:
    """What one trial asks Ray for: CPUs, GPUs, and custom Ray resources, which the cluster's
    nodes declare (`ray start --resources`; grok/cluster.py checks that some node does)."""

    cpu: float = field(default=1.0, metadata=bounds(0))
    gpu: float = field(default=0.0, metadata=bounds(0))
    # Custom Ray resources by name (the cluster's nodes declare them); their names are free, so
    # they are checked where the section is read, not declared as settings.
    custom: dict[str, float] = field(default_factory=dict, metadata={"free_form": True})

    def as_dict(self) -> dict[str, float]:
        """The flat mapping of the experiment file (and of Tune's `with_resources`)."""
        return {"cpu": self.cpu, "gpu": self.gpu, **self.custom}


@dataclass
class TuneOptions:
    """The `tune` section: how Tune keeps checkpoints, retries and paces the trials."""

    # checkpoints kept per trial, the best by the score metric
    num_to_keep: int = field(default=2, metadata=bounds(1))
    # retries of a trial that raised, from its last checkpoint
    max_failures: int = field(default=2, metadata=bounds(1))
    # trials at once; None: as many as resources allow
    max_concurrent: int | None = field(default=None, metadata=bounds(1))


@dataclass
class Experiment:
    name: str
    description: str
    base: Config  # defaults <- config section <- --set overrides
    grid: dict[str, list[Any]]  # dotted key -> values; trials are the product
    resources: Resources
    source: str
    tune: TuneOptions = field(default_factory=TuneOptions)
    search: Search | None = None  # sampled settings; each point is repeated over the grid

    def points(self) -> Iterator[dict[str, Any]]:
        """Each grid point's varying values, in the product order of `grid`, one at a time."""
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)):
            yield dict(zip(keys, values))

    def point(self, index: int) -> dict[str, Any]:
        """The grid point at `index` of the order of `points`, computed, not enumerated."""
        values = {}
        for key in reversed(list(self.grid)):
            index, i = divmod(index, len(self.grid[key]))
            values[key] = self.grid[key][i]
        return dict(reversed(list(values.items())))

    def config(self, point: dict[str, Any]) -> Config:
        """The full config of one grid point."""
        return apply_overrides(self.base, point, self.source)

    def trials(self) -> list[tuple[dict[str, Any], Config]]:
        """Each grid point: its varying values and its full config (for small grids)."""
        return [(point, self.config(point)) for point in self.points()]

    @property
    def num_points(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    @property
    def num_trials(self) -> int:
        """Grid points, times the sampled points of a search."""
        return self.num_points * (self.search.num_samples if self.search else 1)

    def steps_per_trial(self) -> int:
        """The most steps a trial may run: train.steps, or its largest grid value."""
        if "train.steps" in self.grid:
            return max(self.axes()["train.steps"])
        return self.base.train.steps

    def parallel_trials(self, cpus: float, gpus: float, max_concurrent: int | None) -> int:
        """How many trials a cluster with `cpus` and `gpus` runs at once (at least 1)."""
        fits = []
        if self.resources.cpu > 0:
            fits.append(int(cpus // self.resources.cpu))
        if self.resources.gpu > 0:
            fits.append(int(gpus // self.resources.gpu))
        limit = max_concurrent or self.tune.max_concurrent
        return max(1, min(fits + ([limit] if limit else [])))

    def estimated_seconds(self, at_once: int) -> float:
        """A sweep's time at TRIAL_STEPS_PER_S with `at_once` trials running together, every
        trial running its whole budget (stop rules and schedulers only shorten it)."""
        waves = math.ceil(self.num_trials / at_once)
        return waves * self.steps_per_trial() / TRIAL_STEPS_PER_S

    @property
    def score_metric(self) -> str:
        """What ranks this experiment's checkpoints and trials."""
        return score_metric(self.base.task.val_fraction > 0)

    def axes(self) -> dict[str, list[Any]]:
        """Every value each varying setting takes, as the setting holds it: the grid's values,
        and a search's bounds or choices (what can be checked before any point is sampled)."""
        out = {
            key: [check_setting(key, v, f"{self.source}: grid") for v in values]
            for key, values in self.grid.items()
        }
        for key, domain in (self.search.space if self.search else {}).items():
            out[key] = list(domain.args)
        return out

    def combinations(self, keys: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Each combination of the values the axes among `keys` take (others stay at base)."""
        axes = self.axes()
        varying = [k for k in keys if k in axes]
        for values in itertools.product(*(axes[k] for k in varying)):
            yield dict(zip(varying, values))

    def configs(self, keys: Iterable[str]) -> Iterator[Config]:
        """A config for each combination of the values of `keys` (see `combinations`)."""
        for values in self.combinations(keys):
            yield with_values(self.base, values)

    def check_rules(self) -> None:
        """Run each cross-field rule over the combinations of its keys' varying values: every
        grid point and search edge is then valid, without building one config per point."""
        for rule in RULES:
            if not any(
                k in self.grid or (self.search and k in self.search.space) for k in rule.keys
            ):
                continue  # the base config passed it
            for values in self.combinations(rule.keys):
                args = [values[k] if k in values else get_dotted(self.base, k) for k in rule.keys]
                found = rule.check(*args)
                if found:
                    at = ", ".join(f"{k}={shown(v)}" for k, v in values.items())
                    raise ConfigError(f"{self.source}: {found[0]}: {found[1]} (at {at})")


# ---------------------------------------------------------------- trial names

# Short names for the settings most often varied, used in trial folder names (`wd=0.3,seed=1`).
SHORT_NAMES = {
    "optim.weight_decay": "wd",
    "optim.lr": "lr",
    "task.train_fraction": "frac",
    "task.op": "op",
    "task.p": "p",
    "task.tokenizer": "tok",
    "model.n_layer": "layers",
    "model.dropout": "dropout",
    "train.batch_size": "bs",
    "seed": "seed",
}
OP_NAMES = {op.name: op.slug for op in OPERATIONS.values()}


def short(key: str) -> str:
    """'model.n_layer' -> 'layers': the name used in trial folders and table headers."""
    return SHORT_NAMES.get(key) or key.rsplit(".", 1)[-1]


def trial_name(values: dict[str, Any], default: str = "run") -> str:
    """A short, file-safe name made of a trial's varying values."""
    lasts = [k.rsplit(".", 1)[-1] for k in values]
    parts = []
    for key, value in values.items():
        name = short(key)
        if lasts.count(key.rsplit(".", 1)[-1]) > 1 and key not in SHORT_NAMES:
            name = key
        text = OP_NAMES.get(value, value) if key == "task.op" else value
        text = f"{text:g}" if isinstance(text, float) else str(text)
        parts.append(f"{name}={text}")
    joined = ",".join(parts) or default
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in joined)


# ---------------------------------------------------------------- reading a file


def _read(path: str | Path, source: str) -> dict[str, Any]:
    raw = read_mapping(path, "experiment file")
    check_keys(raw, EXPERIMENT_KEYS, source)
    return raw


def _base(raw: Any, sets: list[str], source: str) -> Config:
    """The defaults, then the file's config section, then --set."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: config must be a mapping of settings")
    data: dict[str, Any] = {}
    for key, value in flatten(raw).items():
        set_dotted(data, key, value, source)
    for item in sets:
        key, value = parse_set(item)
        set_dotted(data, key, value, source)
    return Config.from_dict(data, source)


def _grid(raw: Any, base: Config, sets: list[str], source: str) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: grid must map dotted keys to lists of values")
    set_keys = {parse_set(s)[0] for s in sets}
    grid: dict[str, list[Any]] = {}
    for key, values in raw.items():
        key = str(key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid.{key} must be a non-empty list of values")
        if key in set_keys:
            raise ConfigError(f"{source}: --set {key} would override the grid axis grid.{key}")
        # each value checked once, against its setting's declaration
        checked = [check_setting(key, value, f"{source}: grid") for value in values]
        if len({(type(v), v) for v in checked}) != len(checked):
            raise ConfigError(f"{source}: grid.{key} lists a value twice")
        grid[key] = values
    return grid


def _resources(raw: Any, source: str) -> Resources:
    # Keys other than cpu and gpu are custom Ray resources, which the cluster's nodes declare;
    # Ray's own spellings CPU and GPU would bypass the cpu and gpu checks, so they are refused.
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and k and k not in ("CPU", "GPU", "custom") for k in raw
    ):
        raise ConfigError(
            f"{source}: resources maps cpu, gpu and custom Ray resources to numbers, "
            "e.g. {cpu: 1, gpu: 0} or {cpu: 1, slot: 1}"
        )
    custom = {k: v for k, v in raw.items() if k not in ("cpu", "gpu")}
    for key, value in custom.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"{source}: resources.{key} = {shown(value)}; allowed: a number >= 0")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: resources.{key} = {value}; allowed: a finite number")
    standard = {k: v for k, v in raw.items() if k in ("cpu", "gpu")}
    res = build(Resources, standard, source, "resources.")
    res.custom = {k: float(v) for k, v in custom.items()}
    if res.cpu <= 0 and res.gpu <= 0:
        raise ConfigError(f"{source}: resources: a trial needs some cpu or gpu")
    return res


def load_experiment(path: str | Path, sets: list[str] | None = None) -> Experiment:
    """Read, merge and check an experiment file; raises ConfigError with one clear line."""
    source, sets = str(path), sets or []
    raw = _read(path, source)
    name = raw.get("name") or Path(path).stem
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{source}: name {name!r}: use letters, digits, '_' and '-' only")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string")
    base = _base(raw.get("config") or {}, sets, source)
    grid = _grid(raw.get("grid") or {}, base, sets, source)
    resources = _resources(raw.get("resources") or {}, source)
    tune = build(TuneOptions, raw.get("tune") or {}, source, "tune.")
    search = None
    if raw.get("search") is not None:
        search = parse_search(raw["search"], base, grid, sets, source)
    exp = Experiment(name, description, base, grid, resources, source, tune, search)
    exp.check_rules()  # every combination must be valid too
    return exp
