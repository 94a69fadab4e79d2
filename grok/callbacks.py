"""The sweep's own Tune callbacks, which keep what it writes true and resumable: a stopped
trial's status, a whole backup of Tune's state (grok/resume.py), the checkpoint and reports a
restarted trial goes on from, a trial's failure in one line, and the stop of the whole sweep when
its results' disk is full. grok/tune.py puts them in every sweep's RunConfig; Tune saves them
with its state and restores them on --resume.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from grok.cli import out_of_space
from grok.resume import (
    EXPERIMENT_STATE,
    back_up_state,
    checkpoint_history,
    cut_reports,
    newest_state_files,
    repair_trial,
)
from grok.storage import Location

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
