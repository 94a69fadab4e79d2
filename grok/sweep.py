"""One sweep, start to end: the results folder's policy, Ray, and the Tuner built or restored.

A sweep writes into `<storage>/<experiment name>/`, where storage is a folder or an object-store
URI (grok/storage.py). A new sweep needs that folder empty or absent; `--fresh` moves an earlier
one aside (`<name>.old-<time>`), once the cluster has been joined; `--resume` continues it, if
its record (grok/results.py) says it is this experiment and Tune's saved state is whole
(grok/resume.py). The cluster is joined (`--address`, else RAY_ADDRESS) or started as a new
local one (grok/cluster.py), and must have the custom resources the trials ask for; the Tuner
comes from grok/tune.py, with the trackers of grok/tracking.py. tune_main.py parses the command
line, checks the storage and the cluster's address before this module (and Ray) is imported,
and prints around these functions.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
from pathlib import Path

from ray import tune

from grok import callbacks, cluster
from grok import tune as gtune
from grok.experiment import Experiment
from grok.results import read_record, same_experiment, write_record
from grok.resume import repair_state
from grok.storage import Location, at
from grok.tracking import Tracking


class SweepError(ValueError):
    """A results folder this sweep cannot start or continue in, or a cluster it cannot run on;
    the message says what to do."""


def prepare_folder(
    folder: Path | Location,
    exp: Experiment,
    resume: bool,
    fresh: bool,
    max_concurrent: int | None = None,
) -> bool:
    """Check that the sweep may start or continue in `folder`, or refuse; nothing is written
    (a --resume may repair Tune's saved state). Returns whether `folder` holds an earlier sweep
    that --fresh moves aside (`move_aside`, once the cluster has been joined). A resumed sweep
    keeps the trial limit it started with (Tune restores it with its search state), so a
    --max-concurrent that differs from the starting command's is refused, not ignored."""
    folder = at(folder)
    existing = folder.holds_anything()
    if resume:
        if not existing:
            raise SweepError(f"--resume: {folder} does not exist; run without --resume to start it")
        differs = same_experiment(folder, exp)
        if differs:
            raise SweepError(
                f"--resume: {folder} is not this experiment ({differs}); "
                "use --fresh to start it anew"
            )
        started = started_limit(read_record(folder) or {})
        if max_concurrent is not None and max_concurrent != started:
            raise SweepError(
                f"--resume: the sweep started with --max-concurrent {started or 'unset'} and keeps "
                f"that limit, so --max-concurrent {max_concurrent} cannot apply; resume without "
                "it, or use --fresh to start anew (with --reuse, finished runs are not retrained)"
            )
        unresumable = repair_state(folder)
        if unresumable:
            raise SweepError(f"--resume: {unresumable}; use --fresh to start it anew")
        return False
    if existing and not fresh:
        raise SweepError(
            f"{folder} already holds results; --resume continues them, "
            "--fresh moves them aside and starts again"
        )
    return existing


def started_limit(record: dict) -> int | None:
    """The --max-concurrent of the command that started a sweep (its record's `command`)."""
    words = shlex.split(str(record.get("command", "")))
    for i, word in enumerate(words):
        value = word.partition("=")[2] if word.startswith("--max-concurrent=") else None
        if word == "--max-concurrent" and i + 1 < len(words):
            value = words[i + 1]
        if value is not None:
            return int(value) if value.isdigit() else None
    return None


def move_aside(storage: Path | Location, name: str) -> str:
    """Move the earlier sweep `<storage>/<name>` to `<name>.old-<time>` beside it (on an object
    store, a copy and a delete); a line for people."""
    storage = at(storage)
    aside = storage / f"{name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    (storage / name).move_to(aside)
    return f"moved the earlier results to {aside}"


def start_ray(address: str | None, dashboard_host: str, exp: Experiment) -> cluster.Joined:
    """Join the cluster at `address` (None: start a new local one with a dashboard) and check
    that it has the custom resources a trial of `exp` asks for; raises SweepError."""
    try:
        joined = cluster.join(address, dashboard_host)
    except cluster.ClusterError as err:
        raise SweepError(str(err)) from None
    missing = cluster.missing_resources(exp.resources.as_dict(), joined)
    if missing:
        have = ", ".join(cluster.declared(joined)) or "none"
        raise SweepError(
            f"{exp.source}: resources.{missing[0]}: no node of this cluster has enough of it "
            f"(it has: {have}); declare it with `ray start --resources`"
        )
    return joined


def run(
    exp: Experiment,
    storage: Path | Location,
    resume: bool,
    command: str,
    max_concurrent: int | None = None,
    tracking: Tracking | None = None,
    reuse: str | None = None,
    skip: list[str] | tuple[str, ...] = (),
) -> tune.ResultGrid:
    """Run (or continue) the sweep to its end: a new one records itself in its folder first.
    `tracking` names the trackers a new sweep logs to besides TensorBoard; a continued one logs
    to those it started with (Tune restores its callbacks with its state). `reuse`: a run
    store (grok/reuse.py) whose runs are replayed instead of trained, and which gets the new.
    `skip`: trials (by name) a new sweep leaves out, kept from an earlier run of it."""
    storage = at(storage)
    folder = storage / exp.name
    if resume:
        tuner = gtune.restore_tuner(exp, folder, reuse)
    else:
        write_record(exp, folder, command)
        tuner = gtune.build_tuner(
            exp, storage, max_concurrent, tracking=tracking, reuse=reuse, skip=skip
        )
    # A trial's failure is one line (grok.callbacks.TrialErrors); its traceback is in its error.txt.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    skip_callback_census()
    for handler in logging.getLogger("ray").handlers:
        handler.addFilter(full_disk_in_one_line)
    try:
        results = tuner.fit()
    except Exception:  # on a full disk, Tune may fail to read back what it could not write
        if callbacks.FULL:
            raise callbacks.FULL.pop() from None
        raise
    if callbacks.FULL:  # stopped for want of space (grok.callbacks.stop_for_space)
        raise callbacks.FULL.pop()
    return results


def skip_callback_census() -> None:
    """Tune counts the kinds of callback a sweep passes, for Ray's usage statistics, by importing
    its W&B, MLflow, Comet and Aim integrations to compare them with: W&B and MLflow themselves
    load, about 2 s of every sweep's start before a trial runs (a third of a small sweep's driver
    time). The sweep always passes callbacks (grok/callbacks.py), and those trackers only when
    asked (grok/trackers.py): that count is skipped, Ray's other usage records are not."""
    try:
        from ray.air._internal import usage
    except ImportError:  # a Ray that counts them elsewhere, or not at all
        return
    if hasattr(usage, "tag_callbacks"):
        usage.tag_callbacks = lambda callbacks: False


def full_disk_in_one_line(record: logging.LogRecord) -> bool:
    """Ray's log records of a write that failed for want of space, without their traceback: the
    sweep stops and says so itself (grok.callbacks.stop_for_space)."""
    error = record.exc_info[1] if record.exc_info else None
    if error is not None and "No space left on device" in f"{error!r} {error.__cause__!r}":
        record.msg = f"{record.getMessage().rstrip(': ')}: {str(error).splitlines()[0]}"
        record.args, record.exc_info, record.exc_text = (), None, None
    return True


class Signals:
    """Ctrl-C (SIGINT) and SIGTERM end a sweep as Tune ends it on SIGUSR1: the trials stop, the
    experiment's state is saved one last time, and `fit` returns; `received` then names the
    signal. A second signal, or one that comes before Tune listens, stops at once
    (KeyboardInterrupt). Tune's own SIGINT handler is turned off while this is in force, so
    that the signal is known and the sweep's own --resume line can be the last word."""

    def __enter__(self) -> Signals:
        self.received: int | None = None
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self.before = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, number: int, frame) -> None:
        first = self.received is None
        self.received = number
        if first and signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.raise_signal(signal.SIGUSR1)  # Tune's handler: stop and save
        else:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for number, handler in self.before.items():
            signal.signal(number, handler)
        os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
