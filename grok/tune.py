"""Ray Tune adapter: the trainable, and an experiment file turned into a Tuner.

The only module of the library that imports Ray. A trial's Tune config holds just its varying
values (dotted keys, as in the experiment's grid); the experiment's base config travels with the
trainable (`tune.with_parameters`) so each trial rebuilds its full `Config` and checks it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from ray import tune

from grok.config import Config, Experiment, apply_overrides, trial_name
from grok.select import EXPERIMENT_FILE
from grok.train import EvalEvent, Trainer, resolve_device


def trial_threads(cpus: float) -> int:
    """Torch threads for a trial with `cpus` CPUs (Ray sets OMP_NUM_THREADS, not torch)."""
    return max(1, int(cpus))


def trial_device(wanted: str, gpus: float) -> torch.device:
    """'auto' uses the GPU when the trial was given one; 'cuda' insists on it."""
    if wanted == "auto":
        wanted = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    return resolve_device(wanted)


def train_trial(config: dict[str, Any], base: dict[str, Any]) -> None:
    """The trainable: one grid point, reporting at each evaluation, resuming from checkpoints."""
    cfg = apply_overrides(Config.from_dict(base, "experiment"), config, "trial")
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(cfg.train.threads or trial_threads(resources.get("CPU", 1)))
    trainer = Trainer(cfg, device=trial_device(cfg.train.device, resources.get("GPU", 0)))
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_checkpoint(d)

    def report(event: EvalEvent) -> None:
        if not event.checkpoint_due:
            tune.report(event.metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            folder = event.trainer.save_checkpoint(Path(tmp) / "checkpoint")
            tune.report(event.metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trainer.fit(report)


def score_metric(exp: Experiment) -> str:
    """What ranks checkpoints and trials: val/acc, or train/acc when there is no val split."""
    return "val/acc" if exp.base.task.val_fraction > 0 else "train/acc"


def experiment_record(exp: Experiment, command: str = "") -> dict[str, Any]:
    """What experiment.yaml holds: enough to tell whether a folder is this experiment."""
    return {
        "name": exp.name,
        "command": command,
        "metric": score_metric(exp),  # what ranks checkpoints and trials
        "description": exp.description,
        "source": exp.source,
        "grid": exp.grid,
        "resources": exp.resources,
        "tune": exp.tune,
        "config": exp.base.to_dict(),
    }


def same_experiment(folder: Path, exp: Experiment) -> str | None:
    """None if `folder` was made by `exp`; else what differs."""
    path = folder / EXPERIMENT_FILE
    if not path.is_file():
        return f"{folder} has no {EXPERIMENT_FILE}"
    old = yaml.safe_load(path.read_text()) or {}
    new = experiment_record(exp)
    for key in ("grid", "config"):
        if old.get(key) != new[key]:
            return f"its {key} differs from {exp.source}'s"
    return None


def make_trainable(exp: Experiment):
    trainable = tune.with_parameters(train_trial, base=exp.base.to_dict())
    return tune.with_resources(
        trainable, {"cpu": exp.resources["cpu"], "gpu": exp.resources["gpu"]}
    )


def _dirname_creator(grid_keys: list[str]):
    def name(trial) -> str:
        return trial_name({k: trial.config[k] for k in grid_keys})

    return name


def build_tuner(
    exp: Experiment, storage: Path, max_concurrent: int | None = None, verbose: int = 1
) -> tune.Tuner:
    metric = score_metric(exp)
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=str(storage.resolve()),
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=exp.tune.get("num_to_keep", 2),
            checkpoint_score_attribute=metric,
            checkpoint_score_order="max",
        ),
        failure_config=tune.FailureConfig(max_failures=exp.tune.get("max_failures", 2)),
        verbose=verbose,
    )
    tune_config = tune.TuneConfig(
        trial_dirname_creator=_dirname_creator(list(exp.grid)),
        trial_name_creator=_dirname_creator(list(exp.grid)),
        max_concurrent_trials=max_concurrent or exp.tune.get("max_concurrent"),
    )
    param_space = {k: tune.grid_search(v) for k, v in exp.grid.items()}
    return tune.Tuner(
        make_trainable(exp), param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def restore_tuner(exp: Experiment, folder: Path) -> tune.Tuner:
    """Continue a sweep: unfinished and errored trials resume from their last checkpoints."""
    return tune.Tuner.restore(
        str(folder.resolve()),
        trainable=make_trainable(exp),
        resume_unfinished=True,
        resume_errored=True,
    )


def write_record(exp: Experiment, folder: Path, command: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = experiment_record(exp, command)
    (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
