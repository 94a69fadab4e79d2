"""Tune's logger callbacks, set to the project's x-axis: the training step, not the report count.

Tune logs each result at `timesteps_total`, or at `training_iteration` (the count of reports)
when that is unset or 0; on this project's uneven evaluation schedule the count distorts every
curve, and the step-0 evaluation would land at 1. Each callback here is Tune's own with that one
choice changed; the W&B and MLflow ones also name each run by its trial (its varying values),
group the runs by experiment, and record the trial's full resolved config (dotted keys).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict

from grok.config import Config
from grok.overrides import apply_overrides, flatten
from grok.tracking import Tracking

STEP = "step"  # the metric that holds the training step


def trial_params(base: dict[str, Any], trial_config: dict[str, Any]) -> dict[str, Any]:
    """A trial's full config as flat dotted keys: the base with the trial's values on top."""
    cfg = apply_overrides(Config.from_dict(base, "experiment"), trial_config, "trial")
    return flatten(cfg.to_dict())


class StepTBXLoggerCallback(TBXLoggerCallback):
    """TensorBoard event files with every metric at its training step."""

    def log_trial_result(self, iteration: int, trial, result: dict):
        # Tune's writer takes its global step from training_iteration when timesteps_total is
        # unset, and drops training_iteration from what it writes: hand it the step there.
        super().log_trial_result(iteration, trial, {**result, "training_iteration": result[STEP]})


class _StepWandbActor(_WandbLoggingActor):
    """The process that writes one trial's W&B run; every metric is plotted against `step`."""

    def _handle_result(self, result: dict):
        if not getattr(self, "_axis_set", False):  # wandb.init has run by the first result
            self._wandb.define_metric("*", step_metric=STEP)
            self._axis_set = True
        return super()._handle_result(result)

    def run(self):
        super().run()
        # wandb.finish returns before W&B's service process has written the run's last records
        # (all of them, offline); Tune kills this actor as soon as run returns: wait for it.
        self._wandb.teardown()


class StepWandbLoggerCallback(WandbLoggerCallback):
    """One W&B run per trial, named by its values, in a group named after the experiment."""

    _logger_actor_cls = _StepWandbActor

    def __init__(self, base: dict[str, Any], mode: str, **kwargs):
        super().__init__(mode=mode, **kwargs)
        self.base = base
        self.mode = mode

    def __del__(self, finalizing=sys.is_finalizing):  # bound now: `sys` is gone at exit
        if not finalizing():  # Tune's clean-up needs Ray's modules, emptied by then
            super().__del__()

    def setup(self, *args, **kwargs):
        os.environ["WANDB_MODE"] = self.mode  # offline and disabled runs need no API key
        super().setup(*args, **kwargs)

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        wandb_init_kwargs["config"] = trial_params(self.base, trial.config)
        folder = Path(trial.path)  # the trial's results folder, when the storage is local
        if folder.is_absolute() and folder.parent.is_dir():
            # W&B writes its run files there, not in the staging folder Tune copies from: the
            # last copy is taken when a trial ends, before W&B has written its final records.
            folder.mkdir(exist_ok=True)
            wandb_init_kwargs["dir"] = str(folder)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)


class StepMLflowLoggerCallback(MLflowLoggerCallback):
    """One MLflow run per trial, named by its values, in an experiment named after the sweep;
    its parameters are the full config, its metrics logged at the training step."""

    def __init__(self, base: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def log_trial_start(self, trial):
        if trial not in self._trial_runs:
            run = self.mlflow_util.start_run(tags={"trial_name": str(trial)}, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
            params = trial_params(self.base, trial.config)
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=params)

    def log_trial_result(self, iteration: int, trial, result: dict):
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        # One request per report, not one per metric as Tune's does: a report holds ~25 numbers.
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, result[STEP])
            for key, value in flatten_dict(result, delimiter="/").items()
            if isinstance(value, (int, float)) and not key.startswith("config/")
        ]
        MlflowClient(self.tracking_uri).log_batch(self._trial_runs[trial], metrics=metrics)


def logger_callbacks(name: str, base: dict[str, Any], tracking: Tracking) -> list[tune.Callback]:
    """TensorBoard always (in place of Tune's default one), W&B and MLflow when asked for."""
    callbacks: list[tune.Callback] = [StepTBXLoggerCallback()]
    if tracking.wandb:
        w = tracking.wandb
        callbacks.append(
            StepWandbLoggerCallback(base, w.mode, project=w.project, entity=w.entity, group=name)
        )
    if tracking.mlflow:
        callbacks.append(
            StepMLflowLoggerCallback(
                base, tracking_uri=tracking.mlflow.tracking_uri, experiment_name=name
            )
        )
    return callbacks
