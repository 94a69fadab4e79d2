"""The training loop: one config in, metrics at each evaluation, checkpoints that resume exactly.

The `Trainer` knows nothing of Ray: the Tune adapter (grok/tune.py) and the run without Ray
(grok/run.py, `python -m grok.train EXPERIMENT.yaml`) pass a callback to `fit`. The checkpoint
folder's format is grok/checkpoint.py's.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from grok.checkpoint import CHECKPOINT_FILES, CheckpointError, publish, read_checkpoint
from grok.config import SETTINGS, Config, dump_config, get_dotted
from grok.data import IGNORE, SPLITS, Split, build_examples, build_splits
from grok.grokfast import make_filter
from grok.metrics import CrossingTracker, crossing_key, grok_objective, reached
from grok.model import GPT
from grok.progress import progress_metrics
from grok.schema import ConfigError
from grok.tokenizer import build_tokenizer

log = logging.getLogger(__name__)


@dataclass
class EvalEvent:
    """What the trainer hands its callback at each evaluation."""

    step: int
    metrics: dict  # the metric names of docs/architecture.md
    checkpoint_due: bool  # every train.checkpoint_every steps, and at the end
    final: bool
    trainer: Trainer

    def save(self, directory: str | Path) -> None:
        self.trainer.save_checkpoint(directory)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no GPU is available")
    return torch.device(name)


def check_length(cfg: Config, longest: int) -> None:
    """Examples must fit the model's positions: `longest` inputs (a sequence less its last)."""
    if longest > cfg.model.max_len:
        raise ConfigError(f"model.max_len: examples need {longest} positions; raise it")


def build_data(cfg: Config, tokenizer=None) -> dict[str, Split]:
    """The splits of a config, checked against the model: examples must fit its positions."""
    splits = build_splits(cfg.task, tokenizer)
    check_length(cfg, max(s.x.shape[1] for s in splits.values()))
    return splits


# The settings a dataset's examples depend on (how they are split does not change them): an
# experiment checks each combination of their values once.
SPLIT_KEYS = ("task.train_fraction", "task.val_fraction", "task.data_seed")
DATA_KEYS = tuple(k for k in SETTINGS if k.startswith("task.") and k not in SPLIT_KEYS)


def check_data(configs: Iterable[Config]) -> None:
    """Make each distinct set of examples once, so that a bad data file fails here and not in a
    trial, and check that every config's model fits them."""
    longest: dict[str, int] = {}
    for cfg in configs:
        key = repr([get_dotted(cfg, k) for k in DATA_KEYS])
        if key not in longest:
            examples = build_examples(cfg.task, build_tokenizer(cfg.task))
            longest[key] = max(len(e.prompt_ids) + len(e.answer_ids) for e in examples) - 1
        check_length(cfg, longest[key])


def next_eval_step(cfg: Config, step: int, grok_step: int | None = None) -> int:
    """Dense early, sparse later; always at checkpoints, the stop step and the budget. Past the
    stop step (a `stop.settled` run waiting for a spike to pass), every `eval.min_every` steps."""
    e = cfg.eval
    interval = min(e.max_every, max(e.min_every, int(e.rel_every * step)))
    every = cfg.train.checkpoint_every
    candidates = [(step // every + 1) * every, cfg.train.steps]
    if grok_step is not None and cfg.stop.after_grok_steps is not None:
        stop_at = grok_step + cfg.stop.after_grok_steps
        if stop_at > step:
            candidates.append(stop_at)
        else:
            interval = e.min_every
    return max(step + 1, min(step + interval, *candidates))


def stop_status(cfg: Config, step: int, grok_step: int | None, metrics: dict) -> str:
    """A run's status after the evaluation at `step`: `running` unless a stop applies."""
    s = cfg.stop
    if not math.isfinite(metrics["train/loss"]):
        return "diverged"
    if s.after_grok_steps is not None and grok_step is not None:
        settled = all(reached(metrics[k], s.threshold) for k in ("train/acc", "test/acc"))
        if step >= grok_step + s.after_grok_steps and (settled or not s.settled):
            return "grokked"
    return "finished" if step >= cfg.train.steps else "running"


def snapshot_gap(cfg: Config, step: int) -> int:
    """Steps between weight snapshots after `step` (0: none are kept)."""
    r = cfg.eval.refine_every
    return max(1, int(r * step)) if r > 0 else 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """The optimizer; its own weight decay is off when the trainer decays toward init. Fused:
    one kernel updates every parameter, where `foreach` runs a dozen small ops per tensor."""
    o = cfg.optim
    wd = o.weight_decay if o.decay_target == "zero" else 0.0
    if o.name == "adamw":
        return torch.optim.AdamW(
            params,
            lr=o.lr,
            betas=(o.beta1, o.beta2),
            eps=o.eps,
            weight_decay=wd,
            fused=True,
        )
    if o.name == "adam":  # Adam's weight_decay is coupled: L2 added to the gradient
        return torch.optim.Adam(
            params,
            lr=o.lr,
            betas=(o.beta1, o.beta2),
            eps=o.eps,
            weight_decay=wd,
            fused=True,
        )
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=wd, fused=True)


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine down to min_lr_ratio * lr."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    span = max(1, cfg.train.steps - o.warmup_steps)
    progress = min(1.0, (step - o.warmup_steps) / span)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def answer_positions(cols: torch.Tensor) -> slice | torch.Tensor:
    """`cols` as a slice when they are one run of positions (an answer is), so that the model
    takes views of its activations instead of gathering them (and scattering their gradients)."""
    c = cols.tolist()
    if c and c == list(range(c[0], c[-1] + 1)):
        return slice(c[0], c[-1] + 1)
    return cols


def _to(value, device: torch.device):
    """Tensors (also inside lists) moved to `device`; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


class Trainer:
    def __init__(self, cfg: Config, device: str | torch.device | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device else resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.tokenizer = build_tokenizer(cfg.task)
        splits = build_data(cfg, self.tokenizer)
        self.cols = {k: answer_positions(v.cols) for k, v in splits.items()}
        self.splits = {k: v.to(self.device) for k, v in splits.items()}
        self.model = GPT(cfg.model, self.tokenizer.vocab_size).to(self.device)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(cfg, self.params)
        self.grad_filter = make_filter(cfg.grokfast)
        # Decay toward the initial weights needs them; decay toward zero does not.
        self.init_params = (
            [p.detach().clone() for p in self.params]
            if cfg.optim.decay_target == "init" and cfg.optim.weight_decay > 0
            else None
        )
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.status = "running"
        self.tracker = CrossingTracker()
        self.grok_step: int | None = None  # test accuracy first reached stop.threshold
        # Weights since the last evaluation, (step, parameters), and what is known of their
        # accuracies: (snapshot, split) -> (wrong rows found, rows evaluated).
        self._snapshots: list[tuple[int, list[torch.Tensor]]] = []
        self._snapshot_wrong: dict[tuple[int, str], tuple[int, int]] = {}
        # Rows of each split that were wrong at the last evaluation and at this one (the
        # bisections evaluate them first: a snapshot still below a threshold is found wrong
        # there, and its evaluation can stop).
        self._wrong_before: dict[str, torch.Tensor] = {}
        self._wrong_now: dict[str, torch.Tensor] = {}
        self._clock = (0, time.perf_counter())

    # ------------------------------------------------------------ training

    @property
    def batch_size(self) -> int:
        n = len(self.splits["train"])
        b = self.cfg.train.batch_size
        return n if b == "full" else max(1, min(b, n // 2))  # the paper: at most half the split

    def loss_on(self, split: Split, rows: torch.Tensor | slice | None = None):
        """Mean loss over the answer tokens of `rows`, with logits (B, K, V) and targets (B, K)."""
        x, y, pad = split.x, split.y, split.pad_mask
        if rows is not None:
            x, y = x[rows], y[rows]
            pad = None if pad is None else pad[rows]
        cols = self.cols[split.name]
        logits = self.model(x, cols=cols, pad_mask=pad)
        targets = y[:, cols]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        return loss, logits, targets

    def train_step(self) -> None:
        train = self.splits["train"]
        rows = torch.randperm(len(train), generator=self.batch_rng)[: self.batch_size]
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        if not self.model.training:  # the first step after an evaluation
            self.model.train()
        loss, _, _ = self.loss_on(train, rows.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params]
        if self.grad_filter is not None:
            self.grad_filter.apply(grads)
        if self.init_params is not None:
            self._decay_toward_init(grads)
        self.optimizer.step()
        self.step += 1

    def _decay_toward_init(self, grads: list[torch.Tensor]) -> None:
        """Weight decay with the initial weights as its centre: w - w0 shrinks, not w."""
        o = self.cfg.optim
        offsets = torch._foreach_sub(self.params, self.init_params)
        if o.name == "adamw":  # decoupled, applied before the step as AdamW does
            lr = self.optimizer.param_groups[0]["lr"]
            with torch.no_grad():
                torch._foreach_add_(self.params, offsets, alpha=-lr * o.weight_decay)
        else:  # coupled: the gradient of (wd / 2) * |w - w0|^2
            torch._foreach_add_(grads, offsets, alpha=o.weight_decay)

    @torch.inference_mode()
    def score_rows(self, name: str, rows: slice | torch.Tensor) -> tuple[float, int, torch.Tensor]:
        """(summed loss over the answer tokens, their number, each row's exact match) of some
        rows of a split."""
        self.model.eval()
        _, logits, targets = self.loss_on(self.splits[name], rows)
        scored = targets != IGNORE
        loss_sum = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
        ).item()
        right = (logits.argmax(-1) == targets) | ~scored
        return loss_sum, int(scored.sum()), right.all(1)

    def evaluate_split(self, name: str) -> tuple[float, float]:
        """(loss over the answer tokens, exact-match accuracy) of one whole split."""
        n, size = len(self.splits[name]), self.cfg.eval.batch_size
        loss_sum, tokens, wrong = 0.0, 0, []
        for start in range(0, n, size):
            part_loss, part_tokens, right = self.score_rows(name, slice(start, start + size))
            loss_sum, tokens = loss_sum + part_loss, tokens + part_tokens
            wrong.append(start + torch.nonzero(~right)[:, 0].cpu())  # row numbers, on the CPU
        self._wrong_now[name] = torch.cat(wrong) if wrong else torch.zeros(0, dtype=torch.long)
        correct = n - len(self._wrong_now[name])
        return (loss_sum / tokens if tokens else math.nan), (correct / n if n else math.nan)

    def evaluate(self) -> dict[str, float]:
        """Loss and exact-match accuracy over each whole split, accuracies first (progress
        tables show the first few metrics)."""
        results = {name: self.evaluate_split(name) for name in SPLITS}
        out = {f"{name}/acc": acc for name, (_, acc) in results.items()}
        out.update({f"{name}/loss": loss for name, (loss, _) in results.items()})
        return out

    # ------------------------------------------------------------ crossings between evaluations

    def _snapshot(self) -> None:
        self._snapshots.append((self.step, [p.detach().clone() for p in self.params]))

    def _probe_chunks(self, split: str) -> list[torch.Tensor]:
        """A split's rows in the order a bisection evaluates them: those wrong at the last
        evaluation first (in their own chunks), then the rest."""
        n, size = len(self.splits[split]), self.cfg.eval.batch_size
        hard = self._wrong_before.get(split, torch.zeros(0, dtype=torch.long))
        rest = torch.ones(n, dtype=torch.bool)
        rest[hard] = False
        rest = torch.nonzero(rest)[:, 0]
        return [rows for rows in (*hard.split(size), *rest.split(size)) if len(rows)]

    @torch.no_grad()
    def _snapshot_reached(self, index: int, split: str, threshold: float) -> bool:
        """Whether a snapshot's accuracy on `split` reaches `threshold`. The rows are counted
        until the answer is certain: a snapshot below the threshold usually shows enough wrong
        rows among those wrong at the last evaluation, and the rest need not be evaluated."""
        n = len(self.splits[split])
        wrong, seen = self._snapshot_wrong.get((index, split), (0, 0))
        if seen == n or not reached((n - wrong) / n, threshold):
            return reached((n - wrong) / n, threshold)  # exact, or below whatever the rest holds
        current = [p.detach().clone() for p in self.params]
        for p, w in zip(self.params, self._snapshots[index][1]):
            p.copy_(w)
        wrong, seen = 0, 0
        for rows in self._probe_chunks(split):
            right = self.score_rows(split, rows.to(self.device))[2]
            wrong, seen = wrong + int((~right).sum()), seen + len(rows)
            if not reached((n - wrong) / n, threshold):
                break
        for p, w in zip(self.params, current):
            p.copy_(w)
        self._snapshot_wrong[(index, split)] = (wrong, seen)
        return reached((n - wrong) / n, threshold)

    def first_reached(self, metric: str, threshold: float) -> int:
        """The step since the last evaluation at which `metric` rose to `threshold`, located
        by bisection over the weight snapshots (below it at the last evaluation, reached at
        this one). If the accuracy dipped back in between, this is one such step, not
        necessarily the first; evaluations stay at log2(snapshots) per crossing."""
        split = metric.split("/")[0]
        lo, hi = -1, len(self._snapshots)  # index hi reached (len: the current step); lo not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._snapshot_reached(mid, split, threshold):
                hi = mid
            else:
                lo = mid
        return self._snapshots[hi][0] if hi < len(self._snapshots) else self.step

    def param_norm(self) -> float:
        with torch.no_grad():
            return float(torch.sqrt(sum(p.pow(2).sum() for p in self.model.parameters())))

    def next_eval_step(self) -> int:
        return next_eval_step(self.cfg, self.step, self.grok_step)

    def _evaluate_and_report(self, callback: Callable[[EvalEvent], None] | None) -> dict:
        metrics = {"step": self.step, **self.evaluate()}
        metrics["lr"] = lr_at(self.cfg, max(0, self.step - 1))
        metrics["param_norm"] = self.param_norm()
        if self.cfg.analysis.progress:
            metrics.update(progress_metrics(self.model, self.splits, self.cfg))
        last_step, last_time = self._clock
        now = time.perf_counter()
        metrics["steps_per_s"] = (self.step - last_step) / (now - last_time) if self.step else 0.0
        self._clock = (self.step, now)
        metrics.update(self.tracker.update(self.step, metrics, self.first_reached))
        test_step = metrics[crossing_key("test/acc", 0.99)]
        metrics.update(grok_objective(test_step, self.cfg.train.steps))
        if self.grok_step is None and reached(metrics["test/acc"], self.cfg.stop.threshold):
            self.grok_step = self.first_reached("test/acc", self.cfg.stop.threshold)
        self._snapshots, self._snapshot_wrong = [], {}
        self._wrong_before, self._wrong_now = self._wrong_now, {}
        self.status = stop_status(self.cfg, self.step, self.grok_step, metrics)
        if self.status == "diverged":
            log.warning(
                "training loss is %s at step %d: stopping", metrics["train/loss"], self.step
            )
        metrics["status"] = self.status
        final = self.status != "running"
        due = final or (self.step > 0 and self.step % self.cfg.train.checkpoint_every == 0)
        if callback:
            callback(EvalEvent(self.step, metrics, due, final, self))
        return metrics

    def fit(
        self,
        callback: Callable[[EvalEvent], None] | None = None,
        after_step: Callable[[Trainer], None] | None = None,
    ) -> dict:
        """Train to the end (budget, stop rule or divergence); returns the last metrics.
        `callback` gets each evaluation; `after_step`, if given, is called after every training
        step (the benchmark times the loop through it)."""
        self._clock = (self.step, time.perf_counter())
        metrics = self._evaluate_and_report(callback) if self.step == 0 else {}
        while self.status == "running":
            target = self.next_eval_step()
            gap = snapshot_gap(self.cfg, self.step)
            next_snapshot = self.step + gap if gap else target
            while self.step < target:
                self.train_step()
                if next_snapshot <= self.step < target:
                    self._snapshot()
                    next_snapshot = self.step + snapshot_gap(self.cfg, self.step)
                if after_step:
                    after_step(self)
            metrics = self._evaluate_and_report(callback)
        return metrics

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "status": self.status,
            "grok_step": self.grok_step,
            "crossings": dict(self.tracker.first),
            "torch_rng": torch.get_rng_state(),
            "batch_rng": self.batch_rng.get_state(),
        }
        if self.grad_filter is not None:
            state["grad_filter"] = self.grad_filter.state_dict()
        if self.init_params is not None:
            state["init_params"] = self.init_params
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_checkpoint(self, directory: str | Path) -> Path:
        """Write a complete checkpoint folder; it appears whole (written aside, then moved)."""

        def write(tmp: Path) -> None:
            torch.save(self.model.state_dict(), tmp / "model.pt")
            torch.save(self.state_dict(), tmp / "state.pt")
            (tmp / "config.yaml").write_text(dump_config(self.cfg))

        return publish(Path(directory), CHECKPOINT_FILES, self.step, write)

    def load_checkpoint(self, directory: str | Path) -> None:
        """Continue from a checkpoint of the same config: the run goes on as if never stopped."""
        cfg, weights, state = read_checkpoint(directory)
        if state is None:
            raise CheckpointError(f"{directory}: weights-only checkpoint; it cannot resume")
        if cfg.to_dict() != self.cfg.to_dict():
            raise CheckpointError(f"{directory}: checkpoint was made with a different config")
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.status = state["status"]
        self.grok_step = state["grok_step"]
        self.tracker = CrossingTracker(state["crossings"])
        if self.grad_filter is not None:
            self.grad_filter.load_state_dict(
                {k: _to(v, self.device) for k, v in state["grad_filter"].items()}
            )
        if self.init_params is not None:
            self.init_params = [p.to(self.device) for p in state["init_params"]]
        torch.set_rng_state(state["torch_rng"])
        self.batch_rng.set_state(state["batch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


if __name__ == "__main__":  # `python -m grok.train`: the command line of grok/run.py
    from grok.run import main

    sys.exit(main())
