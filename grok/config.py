"""The settings of one training run: typed sections, their checks, dotted overrides, config files.

Defaults are the recipe of Power et al. 2022 (appendix A.1.2). Every user mistake becomes a
`ConfigError` whose message names the file, the key and what is allowed (grok/schema.py reads
and checks the YAML; this module says what the settings are).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from grok.operations import OPERATIONS, OpName, is_prime
from grok.schema import ConfigError, bounds, build, is_section

# Operations whose table is a cyclic group's (a op b = x +- y in natural coordinates): where the
# progress measures of grok/progress.py apply.
GROUP_OPS = ("+", "-", "*", "/")


@dataclass
class TaskConfig:
    kind: Literal["modular", "text", "lines"] = "modular"
    op: OpName = "/"  # the operations of grok/operations.py
    p: int = field(default=97, metadata=bounds(2))
    train_fraction: float = field(default=0.5, metadata=bounds(0, 1, lo_open=True))
    val_fraction: float = field(default=0.1, metadata=bounds(0, 1, hi_open=True))
    data_seed: int = field(default=0, metadata=bounds(0))
    tokenizer: Literal["number", "char"] = "number"
    text: str | None = None  # kind=text: the one string to learn
    path: str | None = None  # kind=lines: a file, one example per line
    separator: str | None = None  # kind=lines: loss only on the part after it
    mask_first: int = field(default=0, metadata=bounds(0))  # tokens excluded from the loss


@dataclass
class ModelConfig:
    n_layer: int = field(default=2, metadata=bounds(1))
    d_model: int = field(default=128, metadata=bounds(1))
    n_head: int = field(default=4, metadata=bounds(1))
    d_ff: int = field(default=512, metadata=bounds(1))
    dropout: float = field(default=0.0, metadata=bounds(0, 1, hi_open=True))
    max_len: int = field(default=64, metadata=bounds(2))  # learned positions available
    # Every initial parameter times this factor (Liu et al. 2022, Omnigrok: a large initial
    # norm delays generalization, a small one hastens it).
    init_scale: float = field(default=1.0, metadata=bounds(0, None, lo_open=True))


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata=bounds(0, None, lo_open=True))
    beta1: float = field(default=0.9, metadata=bounds(0, 1, hi_open=True))
    beta2: float = field(default=0.98, metadata=bounds(0, 1, hi_open=True))
    eps: float = field(default=1e-8, metadata=bounds(0, None, lo_open=True))
    weight_decay: float = field(default=1.0, metadata=bounds(0))
    momentum: float = field(default=0.0, metadata=bounds(0, 1, hi_open=True))  # sgd only
    warmup_steps: int = field(default=10, metadata=bounds(0))
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = field(default=0.0, metadata=bounds(0, 1))  # cosine floor, times lr
    # Weight decay pulls toward zero, or toward the initial weights (decay_target: init).
    # adamw decays decoupled from the gradient; adam and sgd add it to the gradient (L2).
    decay_target: Literal["zero", "init"] = "zero"


@dataclass
class GrokfastConfig:
    """Grokfast (Lee et al. 2024): add lamb x a low-pass filter of past gradients to each one."""

    kind: Literal["none", "ema", "ma"] = "none"
    alpha: float = field(default=0.98, metadata=bounds(0, 1, hi_open=True))  # ema momentum
    window: int = field(default=100, metadata=bounds(1))  # ma: gradients averaged
    lamb: float | None = field(default=None, metadata=bounds(0))  # None: 2 for ema, 5 for ma


@dataclass
class TrainConfig:
    steps: int = field(default=100_000, metadata=bounds(1))
    # An int is capped at half the training split (the paper's rule); "full" is the whole split.
    batch_size: int | Literal["full"] = 512
    checkpoint_every: int = field(default=5_000, metadata=bounds(1))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = field(default=None, metadata=bounds(1))  # torch threads; None: keep


@dataclass
class EvalConfig:
    # Full evaluations at step 0, then every clamp(rel_every * step, min_every, max_every)
    # steps, at every checkpoint and at the last step. Between them the weights are kept every
    # refine_every * step steps (at least 1); when an evaluation finds that an accuracy first
    # reached a threshold, those snapshots locate the step, so crossings are timed to about
    # refine_every of the step while full evaluations stay rare. refine_every 0: no snapshots.
    # Each evaluation costs about six training steps (docs/speed.md): the defaults keep them
    # under 5% of a short run, the snapshots keep the crossings' timing.
    min_every: int = field(default=50, metadata=bounds(1))
    max_every: int = field(default=1000, metadata=bounds(1))
    rel_every: float = field(default=0.25, metadata=bounds(0))
    refine_every: float = field(default=0.01, metadata=bounds(0, 1))
    batch_size: int = field(default=1024, metadata=bounds(1))  # rows that stay in cache


@dataclass
class StopConfig:
    threshold: float = field(default=0.99, metadata=bounds(0, 1, lo_open=True))
    # Stop this many steps after test accuracy first reaches `threshold`; None: never.
    after_grok_steps: int | None = field(default=None, metadata=bounds(0))
    # Stop only at an evaluation where train and test accuracy are both at `threshold`: a run in
    # a loss spike when its steps are up goes on until it has recovered (or its budget ends).
    settled: bool = False


@dataclass
class AnalysisConfig:
    # Progress measures of the Fourier algorithm (Nanda et al. 2023) at each full evaluation, for
    # modular tasks whose table is a cyclic group's (grok/progress.py, docs/progress.md).
    progress: bool = False
    top_k: int = field(default=5, metadata=bounds(1))  # key frequencies


@dataclass
class Config:
    seed: int = field(default=0, metadata=bounds(0))
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        cfg = build(cls, data, source)
        validate(cfg, source)
        return cfg


def validate(cfg: Config, source: str = "config") -> None:
    """Refuse combinations of settings that cannot work together."""
    t, m = cfg.task, cfg.model

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{source}: {key}: {msg}")

    if m.d_model % m.n_head:
        fail("model.n_head", f"d_model {m.d_model} is not divisible by n_head {m.n_head}")
    if t.kind == "modular":
        problem = OPERATIONS[t.op].check_p(t.p, TaskConfig.p)
        if problem:
            fail("task.p", problem)
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
    if cfg.analysis.progress:
        if t.kind != "modular" or t.tokenizer != "number" or t.op not in GROUP_OPS:
            fail(
                "analysis.progress",
                "applies to modular tasks with op " + ", ".join(GROUP_OPS) + " and the number "
                f"tokenizer; got kind {t.kind!r}, op {t.op!r}, tokenizer {t.tokenizer!r}",
            )
        if t.op in ("*", "/") and not is_prime(t.p):
            fail("analysis.progress", f"{t.op} mod p is a cyclic group only for a prime p")
        freqs = (t.p - 1 if t.op in ("*", "/") else t.p) // 2
        if cfg.analysis.top_k > freqs:
            fail(
                "analysis.top_k",
                f"{cfg.analysis.top_k} exceeds the {freqs} frequencies of {t.op} mod {t.p}; "
                f"allowed: 1 to {freqs}",
            )


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


def setting_type(key: str, source: str) -> Any:
    """The type annotation of a dotted setting; a ConfigError naming the key if it is none."""
    node: Any = Config
    prefix = ""
    for part in key.split("."):
        if not is_section(node):
            raise ConfigError(f"{source}: {prefix.rstrip('.')} is a setting, not a section")
        hints = typing.get_type_hints(node)
        if part not in hints:
            allowed = ", ".join(prefix + name for name in hints)
            raise ConfigError(f"{source}: unknown key {prefix + part!r}; allowed: {allowed}")
        node, prefix = hints[part], prefix + part + "."
    if is_section(node):
        raise ConfigError(f"{source}: {key} is a section, not a setting")
    return node


def setting_value(base: Config, key: str, value: Any, source: str) -> Any:
    """`value` as the setting `key` holds it (coerced), checked with the base config."""
    node: Any = apply_overrides(base, {key: value}, source)
    for part in key.split("."):
        node = getattr(node, part)
    return node


# ---------------------------------------------------------------- files


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
