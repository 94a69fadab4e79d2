"""The W&B and MLflow logger callbacks of a sweep, each Tune's own set to the training step: one
run per trial, named by its varying values, grouped by experiment, with the trial's full resolved
config (dotted keys). Imported only by a sweep that asks for them (grok/loggers.py): wandb and
mlflow take seconds to import.
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
from ray.tune.utils import flatten_dict

from grok.loggers import STEP, trial_params
from grok.tracking import Tracking


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


def tracker_callbacks(name: str, base: dict[str, Any], tracking: Tracking) -> list[tune.Callback]:
    """The W&B and MLflow callbacks `tracking` asks for."""
    callbacks: list[tune.Callback] = []
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
