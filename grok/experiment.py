"""Experiment files: a base config, a grid of trials, an optional search, and how Tune runs them.

An experiment file has the keys of `EXPERIMENT_KEYS`; `load_experiment` merges its `config`
over the defaults, applies `--set` overrides, and checks every grid point (and every edge of a
search space) before anything runs. Trials are named from their varying values (`trial_name`).
The file format is described in docs/experiments.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grok.config import Config, apply_overrides, flatten, parse_set, set_dotted
from grok.metrics import score_metric
from grok.operations import OPERATIONS
from grok.schema import ConfigError, check_int, check_keys
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
MAX_EDGES = 1000  # edge configs checked before a search starts


@dataclass
class Resources:
    """What one trial asks Ray for: CPUs, GPUs, and custom Ray resources, which the cluster's
    nodes declare (`ray start --resources`; grok/cluster.py checks that some node does)."""

    cpu: float = 1.0
    gpu: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The flat mapping of the experiment file (and of Tune's `with_resources`)."""
        return {"cpu": self.cpu, "gpu": self.gpu, **self.custom}


@dataclass
class TuneOptions:
    """The `tune` section: how Tune keeps checkpoints, retries and paces the trials."""

    num_to_keep: int = 2  # checkpoints kept per trial, the best by the score metric
    max_failures: int = 2  # retries of a trial that raised, from its last checkpoint
    max_concurrent: int | None = None  # trials at once; None: as many as resources allow


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

    def trials(self) -> list[tuple[dict[str, Any], Config]]:
        """Each grid point: its varying values and its full config (product order of `grid`)."""
        keys = list(self.grid)
        points = itertools.product(*(self.grid[k] for k in keys))
        return [
            (
                dict(zip(keys, values)),
                apply_overrides(self.base, dict(zip(keys, values)), self.source),
            )
            for values in points
        ]

    @property
    def num_trials(self) -> int:
        """Grid points, times the sampled points of a search."""
        return math.prod(len(v) for v in self.grid.values()) * (
            self.search.num_samples if self.search else 1
        )

    @property
    def score_metric(self) -> str:
        """What ranks this experiment's checkpoints and trials."""
        return score_metric(self.base.task.val_fraction > 0)

    def edges(self) -> list[Config]:
        """The configs at the edges of the search space (each bound, every choice) with each
        grid point: what can be checked before any point is sampled (at most MAX_EDGES)."""
        if self.search is None:
            return [cfg for _, cfg in self.trials()]
        keys = list(self.search.space)
        corners = itertools.product(*(self.search.space[k].args for k in keys))
        combos = itertools.product((values for values, _ in self.trials()), corners)
        return [
            apply_overrides(self.base, {**point, **dict(zip(keys, corner))}, self.source)
            for point, corner in itertools.islice(combos, MAX_EDGES)
        ]


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
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{source}: no such experiment file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{at}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: an experiment file is a mapping with keys {EXPERIMENT_KEYS}")
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
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid.{key} must be a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{source}: grid.{key} lists a value twice")
        if key in set_keys:
            raise ConfigError(f"{source}: --set {key} would override the grid axis grid.{key}")
        for value in values:  # each value checked alone, with the base
            apply_overrides(base, {key: value}, f"{source}: grid")
        grid[str(key)] = values
    return grid


def _resources(raw: Any, source: str) -> Resources:
    # Keys other than cpu and gpu are custom Ray resources, which the cluster's nodes declare;
    # Ray's own spellings CPU and GPU would bypass the cpu and gpu checks, so they are refused.
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and k and k not in ("CPU", "GPU") for k in raw
    ):
        raise ConfigError(
            f"{source}: resources maps cpu, gpu and custom Ray resources to numbers, "
            "e.g. {cpu: 1, gpu: 0} or {cpu: 1, slot: 1}"
        )
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{source}: resources.{key} = {value!r}; allowed: a number >= 0")
    values = {k: float(v) for k, v in raw.items()}
    cpu, gpu = values.pop("cpu", 1.0), values.pop("gpu", 0.0)
    res = Resources(cpu, gpu, values)
    if res.cpu <= 0 and res.gpu <= 0:
        raise ConfigError(f"{source}: resources: a trial needs some cpu or gpu")
    return res


def _tune_options(raw: Any, source: str) -> TuneOptions:
    keys = [f.name for f in dataclasses.fields(TuneOptions)]
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: tune must be a mapping; allowed keys: {', '.join(keys)}")
    check_keys(raw, keys, source, "tune.")
    return TuneOptions(**{k: check_int(v, 1, f"{source}: tune.{k}") for k, v in raw.items()})


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
    tune = _tune_options(raw.get("tune") or {}, source)
    search = None
    if raw.get("search") is not None:
        search = parse_search(raw["search"], base, grid, sets, source)
    exp = Experiment(name, description, base, grid, resources, source, tune, search)
    exp.edges()  # every combination must be valid too
    return exp
