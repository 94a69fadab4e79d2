"""The training loop: one config in, metrics at each evaluation, checkpoints that resume exactly.

The `Trainer` knows nothing of Ray: the Tune adapter (grok/tune.py) and the run without Ray
(grok/run.py, `python -m grok.train EXPERIMENT.yaml`) pass a callback to `fit`. Its parts live in
their own homes: the optimizer and schedule in grok/optimizers.py, the crossings between
evaluations in grok/crossings.py, the checkpoint folder's format in grok/checkpoint.py.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from grok.checkpoint import CHECKPOINT_FILES, CheckpointError, publish, read_checkpoint
from grok.config import Config
from grok.crossings import Snapshots, snapshot_gap
from grok.data import IGNORE, SPLITS, Split, build_data
from grok.fourier import progress_metrics
from grok.grokfast import make_filter
from grok.llc import llc_metrics
from grok.losses import loss_function
from grok.metrics import CrossingTracker, grok_objectives, reached
from grok.model import build_model
from grok.optimizers import (
    OrthogonalGrad,
    lr_at,
    make_decay_toward_init,
    make_fixed_norm,
    make_optimizer,
    set_lr,
)
from grok.overrides import dump_config
from grok.schema import ConfigError
from grok.stability import stability_metrics
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
        settled = all(reached(metrics[k], s.threshold) for k in ("train/acc", f"{s.split}/acc"))
        if step >= grok_step + s.after_grok_steps and (settled or not s.settled):
            return "grokked"
    return "finished" if step >= cfg.train.steps else "running"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def answer_positions(cols: torch.Tensor) -> slice | torch.Tensor:
    """`cols` as a slice when they are one run of positions (an answer is), so that the model
    takes views of its activations instead of gathering them (and scattering their gradients)."""
    c = cols.tolist()
    if c and c == list(range(c[0], c[-1] + 1)):
        return slice(c[0], c[-1] + 1)
    return cols


def param_norm(params: list[torch.Tensor]) -> float:
    """The L2 norm of all the parameters together."""
    with torch.no_grad():
        return float(torch.sqrt(sum(p.pow(2).sum() for p in params)))


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
        self.model = build_model(cfg.model, self.tokenizer.vocab_size).to(self.device)
        self.params = list(self.model.parameters())
        self.loss = loss_function(cfg.train)
        self.fixed_norm = make_fixed_norm(cfg, self.params)  # rescales the initial weights too
        self.optimizer = make_optimizer(cfg, self.model)
        self.orthogonal_grad = OrthogonalGrad(self.params) if cfg.optim.orthogonal_grad else None
        self.grad_filter = make_filter(cfg.grokfast)
        self.decay_to_init = make_decay_toward_init(cfg, self.params)
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.status = "running"
        self.tracker = CrossingTracker()
        self.grok_step: int | None = None  # stop.split's accuracy first reached stop.threshold
        sizes = {name: len(split) for name, split in self.splits.items()}
        right = lambda split, rows: self.score_rows(split, rows.to(self.device))[2]
        self.snapshots = Snapshots(self.params, sizes, cfg.eval.batch_size, right)
        self._clock = (0, time.perf_counter())

    @property
    def batch_size(self) -> int:
        n = len(self.splits["train"])
        b = self.cfg.train.batch_size
        if b == "full" or self.cfg.train.full_batch:
            return n
        return max(1, min(b, n // 2))  # the paper: at most half the split

    def loss_on(self, split: Split, rows: torch.Tensor | slice | None = None):
        """The run's loss (train.loss, grok/losses.py), the mean over the answer tokens of `rows`,
        with logits (B, K, V) and targets (B, K)."""
        x, y, pad = split.x, split.y, split.pad_mask
        if rows is not None:
            x, y = x[rows], y[rows]
            pad = None if pad is None else pad[rows]
        cols = self.cols[split.name]
        logits = self.model(x, cols=cols, pad_mask=pad)
        targets = y[:, cols]
        return self.loss(logits, targets), logits, targets

    def train_step(self) -> None:
        train = self.splits["train"]
        rows = torch.randperm(len(train), generator=self.batch_rng)[: self.batch_size]
        lr = lr_at(self.cfg, self.step)
        set_lr(self.optimizer, lr)
        if not self.model.training:  # the first step after an evaluation
            self.model.train()
        loss, _, _ = self.loss_on(train, rows.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params]
        if self.orthogonal_grad is not None:
            self.orthogonal_grad.apply(grads)
        if self.grad_filter is not None:
            self.grad_filter.apply(grads)
        if self.decay_to_init is not None:
            self.decay_to_init.apply(grads, lr)
        self.optimizer.step()
        if self.fixed_norm is not None:
            self.fixed_norm.apply()
        self.step += 1

    @torch.inference_mode()
    def score_rows(self, name: str, rows: slice | torch.Tensor) -> tuple[float, int, torch.Tensor]:
        """(summed loss over the answer tokens, their number, each row's exact match) of some
        rows of a split."""
        self.model.eval()
        _, logits, targets = self.loss_on(self.splits[name], rows)
        scored = targets != IGNORE
        loss_sum = self.loss(logits, targets, "sum").item()
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
        wrong_rows = torch.cat(wrong) if wrong else torch.zeros(0, dtype=torch.long)
        self.snapshots.evaluated(name, wrong_rows)
        return (loss_sum / tokens if tokens else math.nan), (
            (n - len(wrong_rows)) / n if n else math.nan
        )

    def evaluate(self) -> dict[str, float]:
        """Loss and exact-match accuracy over each whole split, accuracies first (progress
        tables show the first few metrics)."""
        results = {name: self.evaluate_split(name) for name in SPLITS}
        out = {f"{name}/acc": acc for name, (_, acc) in results.items()}
        out.update({f"{name}/loss": loss for name, (loss, _) in results.items()})
        return out

    def _evaluate_and_report(self, callback: Callable[[EvalEvent], None] | None) -> dict:
        metrics = {"step": self.step, **self.evaluate()}
        metrics["lr"] = lr_at(self.cfg, max(0, self.step - 1))
        metrics["param_norm"] = param_norm(self.params)
        if self.cfg.analysis.progress:
            metrics.update(progress_metrics(self.model, self.splits, self.cfg))
        if self.cfg.analysis.stability:
            train, size = self.splits["train"], self.cfg.eval.batch_size
            metrics.update(stability_metrics(self.model, train, self.loss, size))
        last_step, last_time = self._clock
        self._clock = (self.step, time.perf_counter())
        elapsed = self._clock[1] - last_time
        metrics["steps_per_s"] = (self.step - last_step) / elapsed if self.step else 0.0
        located = lambda metric, threshold: self.snapshots.first_reached(
            metric, threshold, self.step
        )
        metrics.update(self.tracker.update(self.step, metrics, located))
        metrics.update(grok_objectives(metrics, self.cfg.train.steps))
        watched = f"{self.cfg.stop.split}/acc"
        if self.grok_step is None and reached(metrics[watched], self.cfg.stop.threshold):
            self.grok_step = located(watched, self.cfg.stop.threshold)
        self.snapshots.next_interval()
        self.status = metrics["status"] = stop_status(self.cfg, self.step, self.grok_step, metrics)
        if self.status == "diverged":
            log.warning(
                "training loss is %s at step %d: stopping", metrics["train/loss"], self.step
            )
        final = self.status != "running"
        due = final or (self.step > 0 and self.step % self.cfg.train.checkpoint_every == 0)
        if due and self.cfg.analysis.llc:
            train, cols = self.splits["train"], self.cols["train"]
            metrics.update(llc_metrics(self.model, train, cols, self.cfg))
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
        step (the benchmark times the loop through it). Between evaluations the weights are
        snapshotted now and then, to time the crossings that the next evaluation finds."""
        self._clock = (self.step, time.perf_counter())
        metrics = self._evaluate_and_report(callback) if self.step == 0 else {}
        while self.status == "running":
            target = next_eval_step(self.cfg, self.step, self.grok_step)
            gap = snapshot_gap(self.cfg, self.step)
            next_snapshot = self.step + gap if gap else target
            while self.step < target:
                self.train_step()
                if next_snapshot <= self.step < target:
                    self.snapshots.take(self.step)
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
        if self.decay_to_init is not None:
            state.update(self.decay_to_init.state_dict())
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
        if self.decay_to_init is not None:
            self.decay_to_init.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        self.batch_rng.set_state(state["batch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


if __name__ == "__main__":  # `python -m grok.train`: the command line of grok/run.py
    import sys

    from grok.run import main

    sys.exit(main())
