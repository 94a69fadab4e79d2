"""The settings of one training run: typed sections, their checks, dotted overrides, config files.

Defaults are the recipe of Power et al. 2022 (appendix A.1.2). Every user mistake becomes a
`ConfigError` whose message names the file, the key and what is allowed (grok/schema.py reads
and checks the YAML; this module says what the settings are).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

from grok.operations import OPERATIONS, OpName, is_prime
from grok.schema import ConfigError as ConfigError  # the error every setting raises
from grok.schema import (
    Setting,
    bounds,
    build,
    rule,
    settings,
    validate,
)

SEED_MAX = 2**32 - 1  # the largest seed every generator in use (torch, numpy) takes
P_MAX = 2003  # the largest modulus: 4 million equations
# Operations whose table is a cyclic group's (a op b = x +- y in natural coordinates): where the
# progress measures of grok/fourier.py apply.
GROUP_OPS = ("+", "-", "*", "/")


@dataclass
class TaskConfig:
    kind: Literal["modular", "text", "lines"] = "modular"
    op: OpName = "/"  # the operations of grok/operations.py
    # residues 0..p-1; every one of the p * p equations is kept on the training device
    p: int = field(default=97, metadata=bounds(2, P_MAX))
    train_fraction: float = field(default=0.5, metadata=bounds(0, 1, lo_open=True))
    val_fraction: float = field(default=0.1, metadata=bounds(0, 1, hi_open=True))
    data_seed: int = field(default=0, metadata=bounds(0, SEED_MAX))
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
    # pytorch: each layer's default (embeddings N(0, 1)). nanda: Nanda et al. 2023's code, every
    # weight matrix N(0, 1/d_model), the read-out N(0, 1/vocab), biases 0 (the transformer's).
    init: Literal["pytorch", "nanda"] = "pytorch"
    # transformer: grok/model.py. mlp: the two operand tokens embedded (d_model wide),
    # concatenated, one hidden layer of d_ff units (Gromov 2023; grok/model.py).
    kind: Literal["transformer", "mlp"] = "transformer"
    activation: Literal["gelu", "relu", "quadratic"] = "gelu"  # the hidden layer's; x^2 Gromov's
    layer_norm: bool = True  # false: the transformer without LayerNorm (Nanda et al. 2023)


@dataclass
class OptimConfig:
    # muon: Muon on the 2-D weight matrices inside the blocks at muon_lr, AdamW at lr on the rest
    name: Literal["adamw", "adam", "sgd", "muon"] = "adamw"
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
    muon_lr: float = field(default=0.02, metadata=bounds(0, None, lo_open=True))  # muon only
    # Prieto et al. 2025 (⊥Grad): each parameter's gradient made orthogonal to it, norm kept.
    orthogonal_grad: bool = False
    # Liu et al. 2022 (Omnigrok): all the parameters held at this L2 norm, from the start.
    fixed_norm: float | None = field(default=None, metadata=bounds(0, None, lo_open=True))


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
    batch_size: int | Literal["full"] = field(default=512, metadata=bounds(1))
    full_batch: bool = False  # true: every step the whole split, whatever batch_size says
    checkpoint_every: int = field(default=5_000, metadata=bounds(1))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch threads; None: keep
    threads: int | None = field(default=None, metadata=bounds(1, 1024))
    # What the logits are scored with (grok/losses.py), and the precision they are scored in.
    loss: Literal["cross_entropy", "stablemax", "mse"] = "cross_entropy"
    loss_dtype: Literal["float32", "float64"] = "float32"


@dataclass
class EvalConfig:
    # Full evaluations at step 0, then every clamp(rel_every * step, min_every, max_every)
    # steps, at every checkpoint and at the last step. Between them the weights are kept every
    # refine_every * step steps (at least 1); when an evaluation finds that an accuracy first
    # reached a threshold, those snapshots locate the step, so crossings are timed to about
    # refine_every of the step while full evaluations stay rare. refine_every 0: no snapshots.
    # What an evaluation costs in training steps is measured in docs/speed.md: the defaults
    # keep evaluation a small share of a short run, the snapshots keep the crossings' timing.
    min_every: int = field(default=50, metadata=bounds(1))
    max_every: int = field(default=1000, metadata=bounds(1))
    rel_every: float = field(default=0.25, metadata=bounds(0))
    refine_every: float = field(default=0.01, metadata=bounds(0, 1))
    batch_size: int = field(default=1024, metadata=bounds(1))  # rows that stay in cache


@dataclass
class StopConfig:
    threshold: float = field(default=0.99, metadata=bounds(0, 1, lo_open=True))
    # Stop this many steps after `split`'s accuracy first reaches `threshold`; None: never.
    after_grok_steps: int | None = field(default=None, metadata=bounds(0))
    # Stop only at an evaluation where train and `split` accuracy are both at `threshold`: a run
    # in a loss spike when its steps are up goes on until it has recovered (or its budget ends).
    settled: bool = False
    # The split whose accuracy the stop watches. A search stops on val (grok/search.py): a stop
    # on test would let the test split decide what the searcher sees.
    split: Literal["test", "val"] = "test"


@dataclass
class AnalysisConfig:
    # Progress measures of the Fourier algorithm (Nanda et al. 2023) at each full evaluation, for
    # modular tasks whose table is a cyclic group's (grok/fourier.py, docs/progress.md).
    progress: bool = False
    top_k: int = field(default=5, metadata=bounds(1))  # key frequencies
    # Softmax Collapse, the naive-loss-minimization direction and each layer's weight norm
    # (Prieto et al. 2025) at each full evaluation (grok/stability.py).
    stability: bool = False
    # The local learning coefficient (Lau et al. 2023) at each checkpoint, by devinterp's SGLD
    # estimator (grok/llc.py, docs/lab.md); the defaults are devinterp's grokking example's.
    llc: bool = False
    llc_lr: float = field(default=3e-3, metadata=bounds(0, None, lo_open=True))  # epsilon
    llc_n_beta: float = field(default=2.0, metadata=bounds(0, None, lo_open=True))  # n * beta
    llc_gamma: float = field(default=5.0, metadata=bounds(0))  # localization
    llc_chains: int = field(default=2, metadata=bounds(1))
    llc_draws: int = field(default=500, metadata=bounds(1))
    llc_batch_size: int = field(default=128, metadata=bounds(1))
    llc_seed: int = field(default=0, metadata=bounds(0, SEED_MAX))


@dataclass
class Config:
    seed: int = field(default=0, metadata=bounds(0, SEED_MAX))
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


SETTINGS: dict[str, Setting] = settings(Config)  # every leaf setting, by dotted key


# ---------------------------------------------------------------- cross-field rules


@rule("model.kind", "model.d_model", "model.n_head")
def _heads_divide(kind: str, d_model: int, n_head: int):
    if kind == "transformer" and d_model % n_head:
        return "model.n_head", f"d_model {d_model} is not divisible by n_head {n_head}"
    return None


@rule("model.kind", "model.init")
def _nanda_init_is_the_transformers(kind: str, init: str):
    if kind != "transformer" and init != "pytorch":
        return "model.init", f"'{init}' is the transformer's; with model.kind {kind}: pytorch"
    return None


@rule("task.kind", "task.op", "task.p")
def _p_fits_the_operation(kind: str, op: str, p: int):
    problem = OPERATIONS[op].check_p(p, TaskConfig.p) if kind == "modular" else None
    return ("task.p", problem) if problem else None


@rule("task.kind", "task.train_fraction", "task.val_fraction")
def _splits_fit(kind: str, train: float, val: float):
    if kind == "modular" and train + val >= 1:
        return (
            "task.train_fraction",
            f"train_fraction + val_fraction = {train + val:g} leaves no test split; "
            "allowed: a sum below 1",
        )
    if kind != "modular" and train + val > 1:
        return "task.val_fraction", "train_fraction + val_fraction must be at most 1"
    return None


@rule("task.kind", "task.tokenizer")
def _text_needs_chars(kind: str, tokenizer: str):
    if kind != "modular" and tokenizer != "char":
        return "task.tokenizer", f"task.kind {kind!r} needs the 'char' tokenizer"
    return None


@rule("task.kind", "task.text", "task.path", "task.separator", "task.mask_first")
def _text_settings(kind: str, text, path, separator, mask_first: int):
    given = {"task.text": text, "task.path": path, "task.separator": separator}
    if kind == "modular":
        for key, value in given.items():
            if value is not None:
                return key, "only used with task.kind 'text' or 'lines'"
        if mask_first:
            return "task.mask_first", "only used with task.kind 'text' or 'lines'"
    if kind == "text":
        if not text:
            return "task.text", "task.kind 'text' needs a non-empty string"
        if path is not None or separator is not None:
            return "task.path", "task.kind 'text' takes task.text, not task.path or task.separator"
    if kind == "lines":
        if not path:
            return "task.path", "task.kind 'lines' needs the path of a file of lines"
        if text is not None:
            return "task.text", "task.kind 'lines' takes task.path, not task.text"
        if separator == "":
            return "task.separator", "must be a non-empty string or null"
    return None


@rule("analysis.progress", "analysis.top_k", "task.kind", "task.tokenizer", "task.op", "task.p")
def _progress_applies(progress: bool, top_k: int, kind: str, tokenizer: str, op: str, p: int):
    if not progress:
        return None
    if kind != "modular" or tokenizer != "number" or op not in GROUP_OPS:
        return (
            "analysis.progress",
            "applies to modular tasks with op " + ", ".join(GROUP_OPS) + " and the number "
            f"tokenizer; got kind {kind!r}, op {op!r}, tokenizer {tokenizer!r}",
        )
    if op in ("*", "/") and not is_prime(p):
        return "analysis.progress", f"{op} mod p is a cyclic group only for a prime p"
    freqs = (p - 1 if op in ("*", "/") else p) // 2
    if top_k > freqs:
        return (
            "analysis.top_k",
            f"{top_k} exceeds the {freqs} frequencies of {op} mod {p}; allowed: 1 to {freqs}",
        )
    return None


def _one_answer_token(kind: str, tokenizer: str) -> bool:
    """Whether every answer is one token: a modular task's residue, with the number tokenizer."""
    return kind == "modular" and tokenizer == "number"


@rule("model.kind", "task.kind", "task.tokenizer")
def _mlp_reads_two_operands(model: str, kind: str, tokenizer: str):
    if model == "mlp" and not _one_answer_token(kind, tokenizer):
        return (
            "model.kind",
            "'mlp' reads two operand tokens and answers one: it needs task.kind 'modular' and "
            f"the number tokenizer; got kind {kind!r}, tokenizer {tokenizer!r}",
        )
    return None


@rule("analysis.llc")
def _llc_needs_devinterp(llc: bool):
    if llc and importlib.util.find_spec("devinterp") is None:
        return "analysis.llc", 'needs devinterp, not installed: pip install ".[interp]"'
    return None


@rule("eval.min_every", "eval.max_every")
def _eval_interval(min_every: int, max_every: int):
    if min_every > max_every:
        return "eval.min_every", f"{min_every} exceeds eval.max_every {max_every}"
    return None


@rule("stop.settled", "stop.after_grok_steps")
def _settled_needs_a_stop(settled: bool, after_grok_steps):
    if settled and after_grok_steps is None:
        return "stop.settled", "only used with stop.after_grok_steps (a number of steps)"
    return None


@rule("stop.split", "task.val_fraction")
def _stop_on_a_split_that_exists(split: str, val_fraction: float):
    if split == "val" and val_fraction == 0:
        return "stop.split", "'val', but task.val_fraction is 0 (no val split); allowed: test"
    return None


@rule("train.loss", "task.kind", "task.tokenizer")
def _mse_needs_one_answer_token(loss: str, kind: str, tokenizer: str):
    if loss == "mse" and not _one_answer_token(kind, tokenizer):
        return (
            "train.loss",
            "'mse' regresses each answer onto the one-hot vector of one token (Gromov 2023), "
            f"a residue of the number tokenizer; task.kind {kind!r} with the {tokenizer!r} "
            "tokenizer answers with a sequence of characters",
        )
    return None


@rule("optim.name", "optim.decay_target")
def _muon_decays_toward_zero(name: str, target: str):
    if name == "muon" and target == "init":
        return "optim.decay_target", "'init' is not available with optim.name 'muon'; allowed: zero"
    return None


@rule("optim.fixed_norm", "model.init_scale")
def _fixed_norm_sets_the_initial_norm(fixed_norm: float | None, init_scale: float):
    if fixed_norm is not None and init_scale != 1.0:
        return "model.init_scale", f"{init_scale:g} is undone by optim.fixed_norm; allowed: 1"
    return None
