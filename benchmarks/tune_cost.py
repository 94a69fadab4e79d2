"""What Ray Tune costs a trial: the same run bare and as a Tune trial, trials sharing a machine,
and the memory of a trial process. Part of `python -m benchmarks.bench` (left out by --skip-tune).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from grok.config import Config
from grok.overrides import apply_overrides
from grok.train import Trainer

Row = tuple[str, str, str]  # what, value, note


def peak_rss_mb(cfg_overrides: list[str], steps: int) -> float:
    """Peak resident memory of a bare trial process training `steps` steps."""
    code = (
        "import sys; from grok.config import Config, apply_overrides; from grok.train import "
        "Trainer; cfg = apply_overrides(Config(), dict(a.split('=', 1) for a in sys.argv[1:]), "
        "'bench'); Trainer(cfg, 'cpu').fit()"
    )
    args = [f"train.steps={steps}", "train.threads=1", *cfg_overrides]
    subprocess.run(
        [sys.executable, "-c", code, *args], check=True, cwd=Path(__file__).resolve().parents[1]
    )
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _tune_sweep(
    base: Config, seeds: list[int], cpus: int, storage: str, gpus: float = 0
) -> tuple[float, float]:
    """Steps/s of a sweep over `seeds` (trial start included), and the first trial's steady
    rate: from its step-0 report to its last, as Tune timed them."""
    from ray import tune

    from grok.tune import train_trial

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base=base.to_dict()), {"cpu": cpus, "gpu": gpus}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"seed": tune.grid_search(seeds)},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.errors:
        raise RuntimeError(f"benchmark trial failed: {grid.errors[0]}")
    df = grid[0].metrics_dataframe
    steady = (df["step"].iloc[-1] - df["step"].iloc[0]) / (
        df["time_total_s"].iloc[-1] - df["time_total_s"].iloc[0]
    )
    return len(seeds) * base.train.steps / wall, float(steady)


def _bare_trial(base: Config, device: torch.device, threads: int) -> tuple[float, float]:
    """Steps/s from building the trainer to the end, and from its step-0 report to its last."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    trainer = Trainer(base, device)
    seen: list[tuple[int, float]] = []
    trainer.fit(lambda event: seen.append((event.step, time.perf_counter())))
    whole = base.train.steps / (time.perf_counter() - start)
    (s0, t0), (s1, t1) = seen[0], seen[-1]
    return whole, (s1 - s0) / (t1 - t0)


def tune_figures(steps: int, device: torch.device, sharing: int) -> dict[str, float]:
    """Tune's overhead on one trial; on a CPU, 2 x 1-CPU trials against 1 x 2-CPU trial; on a
    GPU, `sharing` trials with 1/sharing of the GPU each against 1 trial with all of it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    cuda = device.type == "cuda"
    base = apply_overrides(
        Config(),
        {"train.steps": steps, "train.checkpoint_every": steps, "train.device": device.type},
        "bench",
    )
    ray.init(
        address="local",
        num_cpus=max(2, sharing) if cuda else 2,
        num_gpus=1 if cuda else 0,
        include_dashboard=False,
        log_to_driver=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        bare_1, bare_steady = _bare_trial(base, device, 1)
        if cuda:
            tune_1, tune_steady = _tune_sweep(base, [0], 1, tmp, gpus=1)
            together, _ = _tune_sweep(base, list(range(sharing)), 1, tmp, gpus=1 / sharing)
            alone = tune_1
        else:
            tune_1, tune_steady = _tune_sweep(base, [0], 1, tmp)
            together, _ = _tune_sweep(base, [0, 1], 1, tmp)
            alone, _ = _tune_sweep(base, [0], 2, tmp)
    ray.shutdown()
    return {
        "bare": bare_1,
        "bare_steady": bare_steady,
        "tune": tune_1,
        "tune_steady": tune_steady,
        "together": together,
        "alone": alone,
    }


def tune_rows(steps: int, device: torch.device, sharing: int) -> list[Row]:
    """The table's rows of Tune's cost (see `tune_figures`)."""
    tf = tune_figures(steps, device, sharing)
    where = "1 GPU" if device.type == "cuda" else "1 CPU"
    extra_s = steps / tf["tune"] - steps / tf["bare"]
    rows = [
        (
            f"bare trial, {where}, {steps} steps, start to end",
            f"{tf['bare']:.1f} steps/s",
            "data, model and evaluations included",
        ),
        (
            "the same trial under Ray Tune, start to end",
            f"{tf['tune']:.1f} steps/s",
            f"overhead {1 - tf['tune'] / tf['bare']:.1%}: {extra_s:.1f} s "
            "more, mostly the trial's process and imports",
        ),
        (
            "bare trial, step 0 to the end",
            f"{tf['bare_steady']:.1f} steps/s",
            "evaluations and checkpoints included",
        ),
        (
            "the same under Ray Tune (reports, checkpoints)",
            f"{tf['tune_steady']:.1f} steps/s",
            f"overhead {1 - tf['tune_steady'] / tf['bare_steady']:.1%} once running",
        ),
    ]
    if device.type == "cuda":
        together = f"{sharing} trials sharing the GPU (gpu 1/{sharing}), total"
        than, alone = "one trial with the whole GPU", "1 trial with the whole GPU"
    else:
        together, than, alone = (
            "2 concurrent 1-CPU trials, total",
            "one 2-CPU trial",
            "1 trial with 2 CPUs",
        )
    rows += [
        (together, f"{tf['together']:.1f} steps/s", f"{tf['together'] / tf['alone']:.2f}x {than}"),
        (alone, f"{tf['alone']:.1f} steps/s", ""),
        ("peak memory of a trial process", f"{peak_rss_mb([], 200):.0f} MB", ""),
    ]
    return rows
