"""Ray Tune adapter: the trainable, and an experiment file turned into a Tuner.

With grok/sweep.py (which starts Ray), grok/cluster.py (which joins it, importing Ray inside
`join`) and grok/loggers.py (Tune's logger callbacks, imported by build_tuner alone), the only
module of the library that imports Ray. Results go to any filesystem pyarrow reaches
(grok/storage.py); each report names the node that made it (`node_id`). A trial's Tune config
holds just its varying values (dotted keys, as in the experiment's grid and search space); the
experiment's base config travels with the trainable (`tune.with_parameters`) so each trial
rebuilds its full `Config` and checks it. A search samples its space with Tune's random search
or Optuna's TPE, repeating each point over the grid (the seeds).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator, Repeater
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.repeater import TRIAL_INDEX
from ray.tune.stopper import Stopper

from grok.cli import out_of_space
from grok.config import Config, apply_overrides
from grok.experiment import Experiment, trial_name
from grok.metrics import crossing_key
from grok.resume import (
    EXPERIMENT_STATE,
    HISTORY,
    back_up_state,
    checkpoint_history,
    cut_reports,
    newest_state_files,
    repair_trial,
)
from grok.reuse import REUSED_FROM, RunStore, StoredRun, code_fingerprint, run_key
from grok.search import Domain
from grok.storage import Location, at, resolve
from grok.tracking import Tracking
from grok.train import EvalEvent, Trainer, resolve_device

NODE = "node_id"  # reported with every result: the Ray node the trial ran on


def trial_threads(cpus: float) -> int:
    """Torch threads for a trial with `cpus` CPUs (Ray sets OMP_NUM_THREADS, not torch)."""
    return max(1, int(cpus))


def trial_device(wanted: str, gpus: float) -> torch.device:
    """'auto' uses the GPU when the trial was given one; 'cuda' insists on it."""
    if wanted == "auto":
        wanted = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    return resolve_device(wanted)


def train_trial(config: dict[str, Any], base: dict[str, Any], reuse: str | None = None) -> None:
    """The trainable: one grid point, reporting at each evaluation, resuming from checkpoints.
    With `reuse` (a run store, grok/reuse.py), a run already stored is replayed, not trained,
    and a run trained here is stored once it ends."""
    cfg = apply_overrides(Config.from_dict(base, "experiment"), config, "trial")
    # Which node ran each report (None when called outside Ray, where asking would start it).
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    store = RunStore(resolve(reuse)) if reuse else None
    key = run_key(cfg.to_dict()) if store else ""
    checkpoint = tune.get_checkpoint()
    if store and not checkpoint:
        stored = store.find(key)
        if stored:
            replay(stored, store, node)
            return
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(cfg.train.threads or trial_threads(resources.get("CPU", 1)))
    trainer = Trainer(cfg, device=trial_device(cfg.train.device, resources.get("GPU", 0)))
    history: list[dict[str, Any]] = []  # every report so far, kept in each checkpoint
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_checkpoint(d)
            if (Path(d) / HISTORY).is_file():
                history = json.loads((Path(d) / HISTORY).read_text())

    def report(event: EvalEvent) -> None:
        metrics = {**event.metrics, NODE: node}
        history.append(event.metrics)
        if not event.checkpoint_due:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            folder = event.trainer.save_checkpoint(Path(tmp) / "checkpoint")
            if store and event.final and history[0]["step"] == 0:  # the whole run, not a part
                context = tune.get_context()
                origin = {
                    "experiment": context.get_experiment_name(),
                    "trial": context.get_trial_name(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "config": cfg.to_dict(),
                    "code": code_fingerprint(),
                }
                store.put(key, history, folder, origin)  # the store keeps reports apart
            # The reports so far: a resumed trial carries them on, and its result.json is made
            # whole from them where a kill left it behind (grok/resume.py).
            (folder / HISTORY).write_text(json.dumps(history))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trainer.fit(report)


def replay(stored: StoredRun, store: RunStore, node: str | None) -> None:
    """Report a stored run's reports as this trial's, the last with its checkpoint."""
    *reports, last = stored.reports
    for metrics in reports:
        tune.report({**metrics, NODE: node, REUSED_FROM: stored.source})
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.fetch_checkpoint(stored, Path(tmp) / "checkpoint")
        final = {**last, NODE: node, REUSED_FROM: stored.source}
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder))


def make_trainable(exp: Experiment, reuse: str | None = None):
    trainable = tune.with_parameters(train_trial, base=exp.base.to_dict(), reuse=reuse)
    return tune.with_resources(trainable, exp.resources.as_dict())  # cpu, gpu and custom ones


def _dirname_creator(exp: Experiment):
    """Grid trials are named by their values (`wd=0.3,seed=1`); sampled ones by the order the
    search made them in, then their grid values (`t007,seed=1`)."""
    keys = list(exp.grid)

    def name(trial) -> str:
        values = trial_name({k: trial.config[k] for k in keys}, default="")
        if exp.search is None:
            return values or "run"
        index = int(trial.experiment_tag.split("_", 1)[0])  # Tune's count of trials made
        return ",".join(filter(None, [f"t{index:03d}", values]))

    return name


def tune_domain(domain: Domain):
    """A sampled setting as a Tune domain (randint's hi is included, as in experiment files)."""
    lo, hi = domain.args[0], domain.args[-1]
    if domain.kind == "loguniform":
        return tune.loguniform(lo, hi)
    if domain.kind == "uniform":
        return tune.uniform(lo, hi)
    if domain.kind == "randint":
        return tune.randint(lo, hi + 1)  # Tune's excludes hi
    return tune.choice(domain.args)


class GridRepeater(Repeater):
    """Runs each point the searcher suggests once per grid point (the seeds) and tells the
    searcher their mean: Tune's Repeater, with the grid's values in place of its repeat index."""

    def __init__(self, searcher, points: list[dict[str, Any]]):
        super().__init__(searcher, repeat=len(points), set_index=True)
        self.points = points

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config.update(self.points[config.pop(TRIAL_INDEX)])
        return config


class TrainAccStopper(Stopper):
    """Stops a trial whose train accuracy has not reached `acc` by `step`.

    Grokking comes after memorization, so such a trial is not about to grok; a flat test
    accuracy, by contrast, says nothing (it is flat until it is not).
    """

    def __init__(self, step: int, acc: float):
        self.step = step
        self.crossing = crossing_key("train/acc", acc)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get("step", 0) >= self.step and result.get(self.crossing) is None

    def stop_all(self) -> bool:
        return False


class MarkStopped(tune.Callback):
    """Records `stopped` as the status of a trial Tune stops (a scheduler or a stopper) in place
    of its last report's `running`, before the loggers write it to result.json."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("done") and result.get("status") == "running":
            result["status"] = "stopped"


class BackUpState(tune.Callback):
    """After each save of Tune's experiment state, keeps a whole copy of it in
    `<experiment>/.resume-state/`, so that a driver killed while Tune copies its state into the
    results folder leaves a sweep `--resume` can still continue (see grok/resume.py)."""

    def __init__(self):
        self._saved = None  # (mtime, size) of the state last copied

    def on_step_end(self, iteration, trials, **info):
        if not trials:
            return
        storage = trials[0].storage
        staging = Path(storage.experiment_driver_staging_path)
        state = newest_state_files(staging).get(EXPERIMENT_STATE)
        if state is None:
            return
        stat = Path(state.path).stat()
        experiment = Location(storage.storage_filesystem, storage.experiment_fs_path, "")
        if (stat.st_mtime_ns, stat.st_size) == self._saved:
            return
        try:
            if back_up_state(staging, experiment):
                self._saved = (stat.st_mtime_ns, stat.st_size)
        except OSError as err:  # the last whole backup stays; a full disk stops the sweep
            if not out_of_space(err):
                raise
            stop_for_space(err)


class RepairResumePoint(tune.Callback):
    """Before a trial that has run starts again (--resume, or a retry), makes the checkpoint it
    resumes from one storage holds whole (grok/resume.py `repair_trial`): Tune's saved state may
    name one pruned after the save. Runs before Tune starts the trial's worker, which numbers
    its next checkpoint after the trial's `current_checkpoint_index`; reaches into Tune's
    bookkeeping of the trial's checkpoints (Ray 2.60)."""

    def __init__(self):
        self._settled: set[tuple[str, str | None]] = set()  # (trial id, checkpoint) checked

    def on_step_begin(self, iteration, trials, **info):
        for trial in trials:
            if trial.status != "PENDING" or not trial.storage.trial_dir_name:
                continue  # running or done, or new: nothing to resume
            manager = trial.run_metadata.checkpoint_manager
            latest = manager.latest_checkpoint_result
            named = Path(latest.checkpoint.path).name if latest else None
            if (trial.trial_id, named) in self._settled:
                continue
            folder = Location(trial.storage.storage_filesystem, trial.storage.trial_fs_path, "")
            point = repair_trial(folder, named)
            self._settled.add((trial.trial_id, point.name))
            known = manager._checkpoint_results
            kept = [r for r in known if Path(r.checkpoint.path).name in point.kept]
            if point.name == named and len(kept) == len(known):
                continue  # Tune's bookkeeping holds: only folders it never knew were deleted
            manager._checkpoint_results = kept
            if point.name is None:
                manager._latest_checkpoint_result = None
            elif point.name != named:
                where = folder / point.name
                same = [r for r in kept if Path(r.checkpoint.path).name == point.name]
                if same:
                    manager._latest_checkpoint_result = same[0]
                else:  # newer than the saved state: Tune learns of it, scored by its report
                    reports = [r for r in checkpoint_history(where) if r.get("step") == point.step]
                    metrics = reports[-1] if reports else {"step": point.step}
                    checkpoint = tune.Checkpoint(where.path, folder.fs)
                    manager.register_checkpoint(_TrainingResult(checkpoint, dict(metrics)))
            trial.storage.current_checkpoint_index = point.index
            trial.invalidate_json_state()
            trial.run_metadata.invalidate_cache()


class _ReportsFromResumePoint:
    """A trial's reports file as a (re)started trial goes on with it: Tune copies it back from
    storage, where a kill may have left it behind the checkpoint or ahead of it; it is cut back
    to the checkpoint the trial resumes from, one report per step (grok/resume.py)."""

    def _restore_from_remote(self, file_name: str, trial) -> None:
        super()._restore_from_remote(file_name, trial)
        point = trial.latest_checkpoint_result
        step, history = None, []
        if point:
            checkpoint = point.checkpoint
            history = checkpoint_history(Location(checkpoint.filesystem, checkpoint.path, ""))
            step = point.metrics.get("step", history[-1]["step"] if history else None)
        cut_reports(Path(trial.local_path, file_name), step, history)


class JsonLogger(_ReportsFromResumePoint, JsonLoggerCallback):
    """Tune's result.json, one report per step across restarts."""


class CSVLogger(_ReportsFromResumePoint, CSVLoggerCallback):
    """Tune's progress.csv, one row per step across restarts; set up as the trial starts (Tune
    waits for its first report, by when a new checkpoint may be the trial's latest)."""

    def log_trial_start(self, trial) -> None:
        self._setup_trial(trial)


def _search_config(exp: Experiment, max_concurrent: int | None) -> tuple[dict, dict]:
    """The param space and the TuneConfig arguments of a search."""
    s = exp.search
    space = {k: tune_domain(d) for k, d in s.space.items()}
    points = list(exp.points())
    args: dict[str, Any] = {"metric": s.metric, "mode": s.mode}
    if s.algorithm == "random":
        # constant_grid_search: each sample is drawn once and run at every grid point.
        args["search_alg"] = BasicVariantGenerator(
            max_concurrent=max_concurrent or 0, constant_grid_search=True, random_state=s.seed
        )
        args["num_samples"] = s.num_samples  # the grid multiplies it
        space.update({k: tune.grid_search(v) for k, v in exp.grid.items()})
    else:
        args["search_alg"] = GridRepeater(OptunaSearch(seed=s.seed), points)
        args["num_samples"] = s.num_samples * len(points)  # Repeater counts every trial
        args["max_concurrent_trials"] = max_concurrent
    if s.scheduler:
        args["scheduler"] = ASHAScheduler(
            time_attr="step",
            max_t=exp.base.train.steps,
            grace_period=s.scheduler.grace_period,
            reduction_factor=s.scheduler.reduction_factor,
        )
    return space, args


def build_tuner(
    exp: Experiment,
    storage: Path | Location,
    max_concurrent: int | None = None,
    verbose: int = 1,
    tracking: Tracking | None = None,
    reuse: str | None = None,
) -> tune.Tuner:
    """The sweep's Tuner; results go to `<storage>/<name>`, on any filesystem pyarrow reaches."""
    from grok.loggers import logger_callbacks  # the driver's alone: trials need no trackers

    storage = at(storage)
    max_concurrent = max_concurrent or exp.tune.max_concurrent
    stop = exp.search.stop_if_train_below if exp.search else None
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=storage.path,
        storage_filesystem=storage.fs,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=exp.tune.num_to_keep,
            checkpoint_score_attribute=exp.score_metric,
            checkpoint_score_order="max",
        ),
        failure_config=tune.FailureConfig(max_failures=exp.tune.max_failures),
        stop=TrainAccStopper(stop.step, stop.acc) if stop else None,
        # MarkStopped first: the loggers write the status it sets.
        callbacks=[
            MarkStopped(),
            RepairResumePoint(),
            BackUpState(),
            TrialErrors(),
            *logger_callbacks(exp.name, exp.base.to_dict(), tracking or Tracking()),
            CSVLogger(),
            JsonLogger(),
        ],
        verbose=verbose,
    )
    if exp.search:
        param_space, args = _search_config(exp, max_concurrent)
    else:
        param_space, args = _grid_config(exp, max_concurrent)
    tune_config = tune.TuneConfig(
        trial_dirname_creator=_dirname_creator(exp),
        trial_name_creator=_dirname_creator(exp),
        **args,
    )
    return tune.Tuner(
        make_trainable(exp, reuse),
        param_space=param_space,
        tune_config=tune_config,
        run_config=run_config,
    )


def _grid_config(exp: Experiment, max_concurrent: int | None) -> tuple[dict, dict]:
    """Every grid point as one of Tune's preset points, so trials run in the order the dry run
    lists them (the last grid key varying fastest). Tune's own grid_search would vary the
    alphabetically first key fastest, whatever order the file gives."""
    points = list(exp.points())
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent or 0)
    # Placeholders Tune needs to place each preset's keys; every trial takes a listed point.
    space = {k: tune.choice(v) for k, v in exp.grid.items()}
    return space, {"num_samples": len(points), "search_alg": generator}


def restore_tuner(exp: Experiment, folder: Path | Location, reuse: str | None = None) -> tune.Tuner:
    """Continue a sweep: unfinished and errored trials resume from their last checkpoints.
    The folder's Tune state must be whole (`grok.resume.repair_state` makes it so)."""
    folder = at(folder)
    return tune.Tuner.restore(
        folder.path,
        storage_filesystem=folder.fs,
        trainable=make_trainable(exp, reuse),
        resume_unfinished=True,
        resume_errored=True,
    )


# The error of a disk found full: the sweep then stops as on Ctrl-C (Tune saves its state, the
# trials stay resumable) and grok/sweep.py raises it once `fit` has returned.
FULL: list[OSError] = []


def stop_for_space(error: OSError) -> None:
    """Stop the sweep because its results' disk is full (Tune's SIGUSR1: stop, save, return)."""
    if not FULL:
        FULL.append(error)
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.raise_signal(signal.SIGUSR1)


class TrialErrors(tune.Callback):
    """A trial's failure in one line (its traceback is in its error.txt), in place of Tune's
    traceback in the driver's log; a failure for want of space stops the sweep (a retry would
    meet the same full disk)."""

    FULL = {os.strerror(errno.ENOSPC): errno.ENOSPC, os.strerror(errno.EDQUOT): errno.EDQUOT}

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._failed(trial, "retried from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._failed(trial, "errored")

    def _failed(self, trial, what: str) -> None:
        path = Path(trial.error_file) if trial.error_file else None
        text = path.read_text(errors="replace") if path and path.is_file() else ""
        full = [(reason, code) for reason, code in self.FULL.items() if reason in text]
        if full:
            stop_for_space(OSError(full[0][1], full[0][0], trial.path))
            return
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else "no error text"
        print(f"{trial}: {what}: {last} (see error.txt)", file=sys.stderr, flush=True)
