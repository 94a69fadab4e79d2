"""What the progress measures (analysis.progress, grok/fourier.py) add to a run's time.

`python -m benchmarks.bench --progress-cost` prints it as a row of the benchmark's table.
"""

from __future__ import annotations

import statistics
import time

import torch

from grok.config import Config
from grok.fourier import progress_metrics
from grok.overrides import apply_overrides
from grok.train import Trainer, next_eval_step


def measure_cost(overrides: dict | None = None, repeats: int = 5) -> dict[str, float]:
    """Seconds per training step, per full evaluation without the measures and per computation
    of the measures, on the defaults (x/y mod 97, 2 layers, d_model 128) with `overrides`, one
    torch thread as a Tune trial with one CPU has; and the share of a whole run's time (its
    steps and its evaluation schedule) that the measures add. Medians over `repeats` rounds."""
    cfg = apply_overrides(Config(), {"analysis.progress": True, **(overrides or {})}, "cost")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.threads or 1)
    try:
        trainer = Trainer(cfg, device="cpu")
        for _ in range(20):  # past the warm-up, into the constant-rate regime
            trainer.train_step()

        def seconds(fn, n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - start) / n

        rounds: dict[str, list[float]] = {"step": [], "evaluation": [], "measures": []}
        for _ in range(repeats):
            rounds["step"].append(seconds(trainer.train_step, 20))
            rounds["evaluation"].append(seconds(trainer.evaluate, 1))
            rounds["measures"].append(
                seconds(lambda: progress_metrics(trainer.model, trainer.splits, cfg), 1)
            )
    finally:
        torch.set_num_threads(threads)
    out = {k: statistics.median(v) for k, v in rounds.items()}
    step, evaluations = 0, 1
    while step < cfg.train.steps:
        step = next_eval_step(cfg, step)
        evaluations += 1
    run = cfg.train.steps * out["step"] + evaluations * out["evaluation"]
    out.update(steps=cfg.train.steps, evaluations=evaluations)
    out["share_of_run"] = evaluations * out["measures"] / run
    return out
