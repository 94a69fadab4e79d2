"""One sweep, start to end: the results folder's policy, Ray, and the Tuner built or restored.

A sweep writes into `<storage>/<experiment name>/`. A new sweep needs that folder empty or
absent; `--fresh` moves an earlier one aside (`<name>.old-<time>`); `--resume` continues it, if
its record (grok/results.py) says it is this experiment and Tune's saved state is whole
(grok/resume.py). Ray is joined (`--address`) or started as a new local cluster; the Tuner comes
from grok/tune.py, with the trackers of grok/tracking.py. tune_main.py parses the command line
and prints around these functions.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from grok import tune as gtune
from grok.experiment import Experiment
from grok.results import same_experiment, write_record
from grok.resume import repair_state
from grok.tracking import Tracking


class SweepError(ValueError):
    """A results folder this sweep cannot start or continue in; the message says what to do."""


@dataclass
class Cluster:
    dashboard_url: str | None
    cpus: float
    gpus: float


def prepare_folder(folder: Path, exp: Experiment, resume: bool, fresh: bool) -> str | None:
    """Make `folder` ready for the sweep, or refuse; a line for people when it moved one aside."""
    existing = folder.exists() and any(folder.iterdir())
    if resume:
        if not existing:
            raise SweepError(f"--resume: {folder} does not exist; run without --resume to start it")
        differs = same_experiment(folder, exp)
        if differs:
            raise SweepError(
                f"--resume: {folder} is not this experiment ({differs}); "
                "use --fresh to start it anew"
            )
        unresumable = repair_state(folder)
        if unresumable:
            raise SweepError(f"--resume: {unresumable}; use --fresh to start it anew")
        return None
    if not existing:
        return None
    if not fresh:
        raise SweepError(
            f"{folder} already holds results; --resume continues them, "
            "--fresh moves them aside and starts again"
        )
    aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(folder), aside)
    return f"moved the earlier results to {aside}"


def start_ray(address: str | None, dashboard_host: str) -> Cluster:
    """Join the cluster at `address`, or start a new local one with a dashboard."""
    # Trials print nothing of their own (their metrics reach Tune's table), so worker output
    # is not forwarded: it would only repeat Ray's checkpoint notices.
    if address:
        ctx = ray.init(address=address, log_to_driver=False)
    else:
        ctx = ray.init(
            address="local",  # a new local cluster, never one a `ray start` left running
            include_dashboard=True,
            dashboard_host=dashboard_host,
            log_to_driver=False,
        )
    size = ray.cluster_resources()
    return Cluster(ctx.dashboard_url, size.get("CPU", 0), size.get("GPU", 0))


def run(
    exp: Experiment,
    storage: Path,
    resume: bool,
    command: str,
    max_concurrent: int | None = None,
    tracking: Tracking | None = None,
) -> tune.ResultGrid:
    """Run (or continue) the sweep to its end: a new one records itself in its folder first.
    `tracking` names the trackers a new sweep logs to besides TensorBoard; a continued one logs
    to those it started with (Tune restores its callbacks with its state)."""
    folder = storage / exp.name
    if resume:
        tuner = gtune.restore_tuner(exp, folder)
    else:
        write_record(exp, folder, command)
        tuner = gtune.build_tuner(exp, storage, max_concurrent, tracking=tracking)
    return tuner.fit()
