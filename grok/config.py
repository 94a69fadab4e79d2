"""Typed settings for one training run, experiment files, dotted overrides and validation.

Defaults are the recipe of Power et al. 2022 (appendix A.1.2). Every user mistake becomes a
`ConfigError` whose message names the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from grok.metrics import OBJECTIVE, SEARCH_METRICS, THRESHOLDS


class ConfigError(ValueError):
    """A setting, experiment file or command-line value that cannot be used."""


def _range(lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
    return {"range": (lo, hi, lo_open, hi_open)}


@dataclass
class TaskConfig:
    kind: Literal["modular", "text", "lines"] = "modular"
    op: Literal["+", "-", "/"] = "/"
    p: int = field(default=97, metadata=_range(2))
    train_fraction: float = field(default=0.5, metadata=_range(0, 1, lo_open=True))
    val_fraction: float = field(default=0.1, metadata=_range(0, 1, hi_open=True))
    data_seed: int = field(default=0, metadata=_range(0))
    tokenizer: Literal["number", "char"] = "number"
    text: str | None = None  # kind=text: the one string to learn
    path: str | None = None  # kind=lines: a file, one example per line
    separator: str | None = None  # kind=lines: loss only on the part after it
    mask_first: int = field(default=0, metadata=_range(0))  # tokens excluded from the loss


@dataclass
class ModelConfig:
    n_layer: int = field(default=2, metadata=_range(1))
    d_model: int = field(default=128, metadata=_range(1))
    n_head: int = field(default=4, metadata=_range(1))
    d_ff: int = field(default=512, metadata=_range(1))
    dropout: float = field(default=0.0, metadata=_range(0, 1, hi_open=True))
    max_len: int = field(default=64, metadata=_range(2))  # learned positions available
    # Every initial parameter times this factor (Liu et al. 2022, Omnigrok: a large initial
    # norm delays generalization, a small one hastens it).
    init_scale: float = field(default=1.0, metadata=_range(0, None, lo_open=True))


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata=_range(0, None, lo_open=True))
    beta1: float = field(default=0.9, metadata=_range(0, 1, hi_open=True))
    beta2: float = field(default=0.98, metadata=_range(0, 1, hi_open=True))
    eps: float = field(default=1e-8, metadata=_range(0, None, lo_open=True))
    weight_decay: float = field(default=1.0, metadata=_range(0))
    momentum: float = field(default=0.0, metadata=_range(0, 1, hi_open=True))  # sgd only
    warmup_steps: int = field(default=10, metadata=_range(0))
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = field(default=0.0, metadata=_range(0, 1))  # cosine floor, times lr
    # Weight decay pulls toward zero, or toward the initial weights (decay_target: init).
    # adamw decays decoupled from the gradient; adam and sgd add it to the gradient (L2).
    decay_target: Literal["zero", "init"] = "zero"


@dataclass
class GrokfastConfig:
    """Grokfast (Lee et al. 2024): add lamb x a low-pass filter of past gradients to each one."""

    kind: Literal["none", "ema", "ma"] = "none"
    alpha: float = field(default=0.98, metadata=_range(0, 1, hi_open=True))  # ema momentum
    window: int = field(default=100, metadata=_range(1))  # ma: gradients averaged
    lamb: float | None = field(default=None, metadata=_range(0))  # None: 2 for ema, 5 for ma


@dataclass
class TrainConfig:
    steps: int = field(default=100_000, metadata=_range(1))
    # An int is capped at half the training split (the paper's rule); "full" is the whole split.
    batch_size: int | Literal["full"] = 512
    checkpoint_every: int = field(default=5_000, metadata=_range(1))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = field(default=None, metadata=_range(1))  # torch threads; None: keep


@dataclass
class EvalConfig:
    # Full evaluations at step 0, then every clamp(rel_every * step, min_every, max_every)
    # steps, at every checkpoint and at the last step. Between them the weights are kept every
    # refine_every * step steps (at least 1); when an evaluation finds that an accuracy first
    # reached a threshold, those snapshots locate the step, so crossings are timed to about
    # refine_every of the step while full evaluations stay rare. refine_every 0: no snapshots.
    min_every: int = field(default=20, metadata=_range(1))
    max_every: int = field(default=1000, metadata=_range(1))
    rel_every: float = field(default=0.1, metadata=_range(0))
    refine_every: float = field(default=0.01, metadata=_range(0, 1))
    batch_size: int = field(default=4096, metadata=_range(1))


@dataclass
class StopConfig:
    threshold: float = field(default=0.99, metadata=_range(0, 1, lo_open=True))
    # Stop this many steps after test accuracy first reaches `threshold`; None: never.
    after_grok_steps: int | None = field(default=None, metadata=_range(0))
    # Stop only at an evaluation where train and test accuracy are both at `threshold`: a run in
    # a loss spike when its steps are up goes on until it has recovered (or its budget ends).
    settled: bool = False


@dataclass
class Config:
    seed: int = field(default=0, metadata=_range(0))
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stop: StopConfig = field(default_factory=StopConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        cfg = _build(cls, data, source, prefix="")
        validate(cfg, source)
        return cfg


# ---------------------------------------------------------------- conversion and checking


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _allowed(tp: Any) -> str:
    """Human description of what a type annotation accepts."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_allowed(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def _coerce(tp: Any, value: Any) -> Any:
    """Return `value` as type `tp`, or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        for allowed in typing.get_args(tp):
            if value == allowed and type(value) is type(allowed):
                return value
        raise TypeError
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(option, value)
            except TypeError:
                continue
        raise TypeError
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1e5 written in YAML
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                raise TypeError from None
            return _coerce(int, as_float)
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _check_range(value: Any, spec: tuple, where: str) -> None:
    lo, hi, lo_open, hi_open = spec
    if value is None or isinstance(value, str):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not finite")
    bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
    bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(
            f"{where}: {value!r} is out of range; allowed: {left}{lo_s}, {hi_s}{right}"
        )


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + str(unknown[0])
        allowed = ", ".join(prefix + name for name in fields)
        raise ConfigError(f"{source}: unknown key {key!r}; allowed: {allowed}")
    values = {}
    for name, value in data.items():
        tp = hints[name]
        key = prefix + name
        if _is_section(tp):
            values[name] = _build(tp, value, source, key + ".")
            continue
        try:
            coerced = _coerce(tp, value)
        except TypeError:
            raise ConfigError(
                f"{source}: {key} = {value!r} has the wrong type; allowed: {_allowed(tp)}"
            ) from None
        spec = fields[name].metadata.get("range")
        if spec:
            _check_range(coerced, spec, f"{source}: {key}")
        values[name] = coerced
    return cls(**values)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


def validate(cfg: Config, source: str = "config") -> None:
    """Refuse combinations of settings that cannot work together."""
    t, m = cfg.task, cfg.model

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{source}: {key}: {msg}")

    if m.d_model % m.n_head:
        fail("model.n_head", f"d_model {m.d_model} is not divisible by n_head {m.n_head}")
    if t.kind == "modular":
        if t.op == "/" and not _is_prime(t.p):
            fail("task.p", f"{t.p} is not prime; division mod p needs a prime p")
        if t.train_fraction + t.val_fraction >= 1:
            fail(
                "task.train_fraction",
                f"train_fraction + val_fraction = {t.train_fraction + t.val_fraction:g} "
                "leaves no test split; allowed: a sum below 1",
            )
        for key in ("text", "path", "separator"):
            if getattr(t, key) is not None:
                fail(f"task.{key}", "only used with task.kind 'text' or 'lines'")
        if t.mask_first:
            fail("task.mask_first", "only used with task.kind 'text' or 'lines'")
    else:
        if t.tokenizer != "char":
            fail("task.tokenizer", f"task.kind {t.kind!r} needs the 'char' tokenizer")
        if t.train_fraction + t.val_fraction > 1:
            fail("task.val_fraction", "train_fraction + val_fraction must be at most 1")
    if t.kind == "text":
        if not t.text:
            fail("task.text", "task.kind 'text' needs a non-empty string")
        if t.path is not None or t.separator is not None:
            fail("task.path", "task.kind 'text' takes task.text, not task.path or task.separator")
    if t.kind == "lines":
        if not t.path:
            fail("task.path", "task.kind 'lines' needs the path of a file of lines")
        if t.text is not None:
            fail("task.text", "task.kind 'lines' takes task.path, not task.text")
        if t.separator == "":
            fail("task.separator", "must be a non-empty string or null")
    if cfg.eval.min_every > cfg.eval.max_every:
        fail("eval.min_every", f"{cfg.eval.min_every} exceeds eval.max_every {cfg.eval.max_every}")
    if cfg.stop.settled and cfg.stop.after_grok_steps is None:
        fail("stop.settled", "only used with stop.after_grok_steps (a number of steps)")


# ---------------------------------------------------------------- overrides


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c = value` in a nested dict, creating sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key}: {part!r} is a setting, not a section")
        node = child
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `--set dotted.key=value`; the value is read as YAML (`1e-3`, `null`, `[1, 2]`)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str) -> Config:
    """A new config with dotted `overrides` applied and checked."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        set_dotted(data, key, value, source)
    return Config.from_dict(data, source)


# ---------------------------------------------------------------- experiment files


@dataclass
class Experiment:
    name: str
    description: str
    base: Config  # defaults <- config section <- --set overrides
    grid: dict[str, list[Any]]  # dotted key -> values; trials are the product
    resources: dict[str, float]
    source: str
    tune: dict[str, Any] = field(default_factory=dict)
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
OP_NAMES = {"+": "add", "-": "sub", "/": "div"}


def trial_name(values: dict[str, Any], default: str = "run") -> str:
    """A short, file-safe name made of a trial's varying values."""
    lasts = [k.rsplit(".", 1)[-1] for k in values]
    parts = []
    for key, value in values.items():
        short = SHORT_NAMES.get(key) or key.rsplit(".", 1)[-1]
        if lasts.count(key.rsplit(".", 1)[-1]) > 1 and key not in SHORT_NAMES:
            short = key
        text = OP_NAMES.get(value, value) if key == "task.op" else value
        text = f"{text:g}" if isinstance(text, float) else str(text)
        parts.append(f"{short}={text}")
    name = ",".join(parts) or default
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in name)


EXPERIMENT_KEYS = ("name", "description", "config", "grid", "search", "resources", "tune")
TUNE_KEYS = {"num_to_keep": int, "max_failures": int, "max_concurrent": int}


def load_experiment(path: str | Path, sets: list[str] | None = None) -> Experiment:
    """Read, merge and check an experiment file; raises ConfigError with one clear line."""
    source = str(path)
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
    unknown = sorted(set(raw) - set(EXPERIMENT_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(EXPERIMENT_KEYS)}"
        )
    name = raw.get("name") or p.stem
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{source}: name {name!r}: use letters, digits, '_' and '-' only")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description must be a string")

    config_data = raw.get("config") or {}
    if not isinstance(config_data, dict):
        raise ConfigError(f"{source}: config must be a mapping of settings")
    data: dict[str, Any] = {}
    for key, value in flatten(config_data).items():
        set_dotted(data, key, value, source)
    for item in sets or []:
        key, value = parse_set(item)
        set_dotted(data, key, value, source)
    base = Config.from_dict(data, source)

    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, dict):
        raise ConfigError(f"{source}: grid must map dotted keys to lists of values")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid.{key} must be a non-empty list of values")
        if len({repr(v) for v in values}) != len(values):
            raise ConfigError(f"{source}: grid.{key} lists a value twice")
        set_keys = {parse_set(s)[0] for s in sets or []}
        if key in set_keys:
            raise ConfigError(f"{source}: --set {key} would override the grid axis grid.{key}")
        for value in values:  # each value checked alone, with the base
            apply_overrides(base, {key: value}, f"{source}: grid")
        grid[str(key)] = values

    resources = raw.get("resources") or {"cpu": 1, "gpu": 0}
    # Keys other than cpu and gpu are custom Ray resources, which the cluster's nodes declare
    # (`ray start --resources`); tune_main.py checks that some node does.
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and k and k not in ("CPU", "GPU") for k in resources
    ):
        raise ConfigError(
            f"{source}: resources maps cpu, gpu and custom Ray resources to numbers, "
            "e.g. {cpu: 1, gpu: 0} or {cpu: 1, slot: 1}"
        )
    res: dict[str, float] = {"cpu": 1.0, "gpu": 0.0}
    for key, value in resources.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{source}: resources.{key} = {value!r}; allowed: a number >= 0")
        res[key] = float(value)
    if res["cpu"] <= 0 and res["gpu"] <= 0:
        raise ConfigError(f"{source}: resources: a trial needs some cpu or gpu")

    tune_raw = raw.get("tune") or {}
    if not isinstance(tune_raw, dict):
        raise ConfigError(f"{source}: tune must be a mapping; allowed keys: {', '.join(TUNE_KEYS)}")
    for key, value in tune_raw.items():
        if key not in TUNE_KEYS:
            raise ConfigError(
                f"{source}: unknown key 'tune.{key}'; allowed: {', '.join(TUNE_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{source}: tune.{key} = {value!r}; allowed: an integer >= 1")

    search = None
    if raw.get("search") is not None:
        search = _search(raw["search"], base, grid, sets or [], source)
    exp = Experiment(name, description, base, grid, res, source, dict(tune_raw), search)
    exp.edges()  # every combination must be valid too
    return exp


# ---------------------------------------------------------------- search spaces


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
)
MAX_EDGES = 1000  # edge configs checked before a search starts


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
class Search:
    """The `search` section of an experiment file: a sampled space, and how to search it."""

    space: dict[str, Domain]  # dotted key -> distribution
    num_samples: int = 10  # sampled points; each runs once per grid point
    algorithm: str = "optuna"  # optuna (TPE) or random
    metric: str = OBJECTIVE
    mode: str = "min"
    seed: int = 0  # the searcher's, apart from the trials' seeds
    scheduler: dict[str, Any] | None = None  # {name: asha, grace_period, reduction_factor}
    stop_if_train_below: dict[str, Any] | None = None  # {step, acc}

    def to_record(self) -> dict[str, Any]:
        """The section as written in experiment files (what experiment.yaml records)."""
        record = dataclasses.asdict(self)
        record["space"] = {k: {d.kind: list(d.args)} for k, d in self.space.items()}
        return record


def _setting_type(key: str, source: str) -> Any:
    """The type annotation of a dotted setting; a ConfigError naming the key if it is none."""
    node: Any = Config
    prefix = ""
    for part in key.split("."):
        if not _is_section(node):
            raise ConfigError(f"{source}: {prefix.rstrip('.')} is a setting, not a section")
        hints = typing.get_type_hints(node)
        if part not in hints:
            allowed = ", ".join(prefix + name for name in hints)
            raise ConfigError(f"{source}: unknown key {prefix + part!r}; allowed: {allowed}")
        node, prefix = hints[part], prefix + part + "."
    if _is_section(node):
        raise ConfigError(f"{source}: {key} is a section, not a setting")
    return node


def _takes(tp: Any, wanted: type) -> bool:
    """Whether a setting of type `tp` accepts every value of type `wanted` (int or float)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_takes(a, wanted) for a in typing.get_args(tp))
    return tp is wanted or (tp is float and wanted is int)


def _setting_value(base: Config, key: str, value: Any, source: str) -> Any:
    """`value` as the setting `key` holds it (coerced), checked with the base config."""
    node: Any = apply_overrides(base, {key: value}, source)
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _domain(base: Config, key: str, value: Any, source: str) -> Domain:
    where = f"{source}: search.space.{key}"
    tp = _setting_type(key, f"{source}: search.space")
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS):
        raise ConfigError(
            f"{where}: {value!r} is not a distribution; allowed: one of "
            f"{', '.join(DISTRIBUTIONS)} with a list, e.g. {{loguniform: [1.0e-4, 1.0e-2]}}"
        )
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice takes a non-empty list of values")
        if len({repr(v) for v in args}) != len(args):
            raise ConfigError(f"{where}: choice lists a value twice")
        return Domain(kind, [_setting_value(base, key, v, f"{source}: search.space") for v in args])
    wanted = int if kind == "randint" else float
    what = "integers" if wanted is int else "numbers"
    try:
        lo, hi = (_coerce(wanted, v) for v in args)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {kind} takes two {what} [lo, hi], got {args!r}") from None
    if not _takes(tp, wanted):
        raise ConfigError(f"{where}: {kind} draws {what}, but {key} takes {_allowed(tp)}")
    if lo >= hi:
        raise ConfigError(f"{where}: {kind} bounds [{lo:g}, {hi:g}] are inverted; allowed: lo < hi")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs lo > 0, got {lo:g}")
    for bound in (lo, hi):  # the bounds are values the setting must accept
        _setting_value(base, key, bound, f"{source}: search.space")
    return Domain(kind, [lo, hi])


def _search(
    raw: Any, base: Config, grid: dict[str, list[Any]], sets: list[str], source: str
) -> Search:
    """Check the `search` section against the settings, the grid and --set."""
    where = f"{source}: search"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(SEARCH_KEYS)}")
    unknown = sorted(set(raw) - set(SEARCH_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key 'search.{unknown[0]}'; allowed: {', '.join(SEARCH_KEYS)}"
        )
    space_raw = raw.get("space")
    if not isinstance(space_raw, dict) or not space_raw:
        raise ConfigError(
            f"{where}.space must map dotted keys to distributions, "
            "e.g. optim.lr: {loguniform: [1.0e-4, 1.0e-2]}"
        )
    set_keys = {parse_set(s)[0] for s in sets}
    space = {}
    for key, value in space_raw.items():
        key = str(key)
        if key == "seed":
            raise ConfigError(
                f"{where}.space.seed: seeds belong in grid (each sampled point runs once per seed)"
            )
        if key == "train.steps":
            raise ConfigError(
                f"{where}.space.train.steps: the budget is the value of runs that never grok, "
                "so sampling it would favour short budgets; set it in config"
            )
        if key in grid:
            raise ConfigError(f"{where}.space.{key} is also a grid axis; a key is one or the other")
        if key in set_keys:
            raise ConfigError(f"{source}: --set {key} would override search.space.{key}")
        space[key] = _domain(base, key, value, source)
    search = Search(space)
    for key in ("num_samples", "seed"):
        value = raw.get(key, getattr(search, key))
        low = 1 if key == "num_samples" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{where}.{key} = {value!r}; allowed: an integer >= {low}")
        setattr(search, key, value)
    search.algorithm = raw.get("algorithm", search.algorithm)
    if search.algorithm not in ALGORITHMS:
        raise ConfigError(
            f"{where}.algorithm = {search.algorithm!r}; allowed: {', '.join(ALGORITHMS)}"
        )
    search.metric = raw.get("metric", search.metric)
    if search.metric not in SEARCH_METRICS:
        hint = f" (None until reached; use {OBJECTIVE}, its censored form)"
        raise ConfigError(
            f"{where}.metric = {search.metric!r} is not a reported number"
            f"{hint if str(search.metric).startswith('grok/') else ''}; "
            f"allowed: {', '.join(SEARCH_METRICS)}"
        )
    if search.metric.startswith("val/") and base.task.val_fraction == 0:
        raise ConfigError(f"{where}.metric = {search.metric!r}, but there is no val split")
    search.mode = raw.get("mode", "max" if search.metric.endswith("acc") else "min")
    if search.mode not in ("min", "max"):
        raise ConfigError(f"{where}.mode = {search.mode!r}; allowed: min, max")
    search.scheduler = _scheduler(raw.get("scheduler"), base, where)
    search.stop_if_train_below = _train_stop(raw.get("stop_if_train_below"), base, where)
    return search


def _int_option(options: dict, key: str, default: int, low: int, where: str) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}.{key} = {value!r}; allowed: an integer >= {low}")
    return value


def _scheduler(raw: Any, base: Config, where: str) -> dict[str, Any] | None:
    """null, `asha`, or {name: asha, grace_period: steps, reduction_factor: n}."""
    where += ".scheduler"
    if raw is None:
        return None
    options = {"name": raw} if isinstance(raw, str) else raw
    allowed = ("name", "grace_period", "reduction_factor")
    if (
        not isinstance(options, dict)
        or options.get("name") != "asha"
        or set(options) - set(allowed)
    ):
        raise ConfigError(
            f"{where} = {raw!r}; allowed: null, asha, or "
            "{name: asha, grace_period: STEPS, reduction_factor: N}"
        )
    grace = _int_option(options, "grace_period", min(1000, base.train.steps), 1, where)
    factor = _int_option(options, "reduction_factor", 3, 2, where)
    if grace >= base.train.steps:
        raise ConfigError(f"{where}.grace_period = {grace} is not below train.steps")
    return {"name": "asha", "grace_period": grace, "reduction_factor": factor}


def _train_stop(raw: Any, base: Config, where: str) -> dict[str, Any] | None:
    """null, or {step: S, acc: 0.99 or 1.0}: stop a trial whose train accuracy has not reached
    acc by step S."""
    where += ".stop_if_train_below"
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"step", "acc"} or "step" not in raw:
        raise ConfigError(f"{where} = {raw!r}; allowed: null or {{step: STEPS, acc: 0.99}}")
    step = _int_option(raw, "step", 0, 1, where)
    if step >= base.train.steps:
        raise ConfigError(f"{where}.step = {step} is not below train.steps {base.train.steps}")
    acc = raw.get("acc", 0.99)
    if acc not in THRESHOLDS or isinstance(acc, bool):
        raise ConfigError(
            f"{where}.acc = {acc!r}; allowed: {', '.join(f'{t:g}' for t in THRESHOLDS)} "
            "(the tracked crossings)"
        )
    return {"step": step, "acc": float(acc)}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'task': {'op': '/'}, 'optim.lr': 1} -> {'task.op': '/', 'optim.lr': 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def load_config(path: str | Path) -> Config:
    """Read a resolved config YAML (as written beside checkpoints)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{p}: cannot read config: {err.__class__.__name__}") from None
    return Config.from_dict(data or {}, str(p))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
