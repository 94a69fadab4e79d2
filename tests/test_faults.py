"""Faults met with one line: a sweep stopped by Ctrl-C or SIGTERM, and results on a full disk.

Each ends with a line that names what happened and the command that continues the sweep, an
exit status that says it (128 + the signal; 1 for a full disk), no traceback, and a sweep that
`--resume` then takes to its end.
"""

from __future__ import annotations

import csv
import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, run_cli, write_experiment

from grok import run
from grok.checkpoint import read_checkpoint
from grok.results import read_reports, trial_dirs

# Long enough that a signal lands mid-way; an evaluation (a report to Tune) per checkpoint.
LONG = {
    **TINY,
    "train": {**TINY["train"], "steps": 3000, "checkpoint_every": 100},
    "eval": {"min_every": 100, "max_every": 100},
}
# The same run with a report and a checkpoint every 500 steps: a signal still lands mid-way
# (after each trial's first checkpoint, 2500 steps before its end), and the resume that goes on
# to the end has 6 reports a trial for Tune to write, not 30.
SPARSE = {
    **LONG,
    "train": {**LONG["train"], "checkpoint_every": 500},
    "eval": {"min_every": 500, "max_every": 500},
}


def start_sweep(path: Path, storage: Path, address: str) -> tuple[subprocess.Popen, list[str]]:
    """A sweep as a user starts it, its output (stdout and stderr, in order) to a pipe."""
    words = [str(path), "--storage", str(storage), "--address", address]
    proc = subprocess.Popen(
        [sys.executable, "tune_main.py", *words],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, words


def wait_for_checkpoints(proc: subprocess.Popen, folder: Path, trials: int) -> None:
    """Until every trial has reported a checkpoint (a condition, not a time)."""
    deadline = time.monotonic() + 300
    while True:
        done = (
            [
                t
                for t in trial_dirs(folder)
                if any(r.get("checkpoint_dir_name") for r in read_reports(t))
            ]
            if folder.is_dir()
            else []
        )
        if len(done) == trials:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                f"the sweep ended or stalled before its trials checkpointed:\n{proc.stdout.read()}"
            )
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_sweep_exits_128_plus_the_signal_with_its_resume_command_last(
    tmp_path, ray_address, number
):
    path = write_experiment(tmp_path / "stopped.yaml", "stopped", SPARSE, {"seed": [0]})
    storage = tmp_path / "results"
    proc, words = start_sweep(path, storage, ray_address)
    wait_for_checkpoints(proc, storage / "stopped", 1)
    proc.send_signal(number)
    output, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 128 + number, output[-3000:]
    assert "Traceback" not in output
    resume = shlex.join(["python", "tune_main.py", *words, "--resume"])
    name = signal.Signals(number).name
    assert output.strip().splitlines()[-1] == f"interrupted by {name}; continue with: {resume}"
    statuses = {t.name: read_reports(t)[-1]["status"] for t in trial_dirs(storage / "stopped")}
    assert "running" in statuses.values(), statuses  # stopped mid-way, not at the end
    if number == signal.SIGTERM:  # the printed command continues it to the end
        again = run_cli(*shlex.split(resume)[1:])
        assert again.returncode == 0, again.stderr[-3000:]
        ended = {t.name: read_reports(t)[-1] for t in trial_dirs(storage / "stopped")}
        assert {r["status"] for r in ended.values()} == {"finished"}
        assert {r["step"] for r in ended.values()} == {3000}


def metrics_rows(out: Path) -> list[dict]:
    """metrics.csv of a run without Ray, less its timing column."""
    with open(out / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "steps_per_s"} for row in csv.DictReader(f)]


def test_a_run_without_ray_on_a_full_disk_stops_in_one_line_and_resumes_once_freed(
    tmp_path, monkeypatch, capsys
):
    config = {**TINY, "train": {**TINY["train"], "steps": 100}}  # checkpoints every 20 steps
    path = write_experiment(tmp_path / "full.yaml", "full", config)
    assert run.main([str(path), "--out", str(tmp_path / "whole")]) == 0
    saves, save = [], torch.save

    def fills_up(obj, f, *args, **kwargs):  # the disk is full from the third checkpoint on
        saves.append(f)
        if len(saves) > 4:  # two files a checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fills_up)
    out = tmp_path / "disk"
    capsys.readouterr()
    assert run.main([str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    again = shlex.join(["python", "-m", "grok.train", str(path), "--out", str(out), "--resume"])
    full = f"error: {out}: out of space (No space left on device); free some, then continue"
    assert err == f"{full} with: {again}\n"
    assert read_checkpoint(out / "checkpoint")[2]["step"] == 40  # what was written is whole
    assert not list(out.glob(".ckpt-*"))  # and nothing half-written lies beside it
    assert [int(r["step"]) for r in metrics_rows(out)][-1] == 60
    monkeypatch.setattr(torch, "save", save)  # space freed
    assert run.main(shlex.split(again)[3:]) == 0
    assert metrics_rows(out) == metrics_rows(tmp_path / "whole")  # one row per evaluation


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB file system (tmpfs), mounted for the test; `grow()` frees space by resizing it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    grow = lambda: subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)
    yield disk, grow
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_sweep_on_a_full_disk_stops_in_one_line_and_resumes_once_space_is_freed(
    tmp_path, ray_address, small_disk
):
    disk, grow = small_disk
    # The disk is full by each trial's third checkpoint (step 300): 1000 steps are enough.
    config = {**LONG, "train": {**LONG["train"], "steps": 1000}}
    path = write_experiment(tmp_path / "full.yaml", "full", config, {"seed": [0, 1]})
    proc, words = start_sweep(path, disk, ray_address)
    output, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "retried" not in output, output[-3000:]
    resume = shlex.join(["python", "tune_main.py", *words, "--resume"])
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {disk / 'full'}: out of space (No space left on device)")
    assert last.endswith(f"; free some, then continue with: {resume}"), last
    # What was written stays readable. Under load one trial can fill the disk before the other
    # has reported at all: that one has no reports yet, and the resume starts it from step 0.
    written = {t.name: read_reports(t) for t in trial_dirs(disk / "full")}
    assert any(written.values()), written
    grow()
    again = run_cli(*shlex.split(resume)[1:])
    assert again.returncode == 0, again.stderr[-3000:]
    reports = {t.name: read_reports(t) for t in trial_dirs(disk / "full")}
    assert {r[-1]["status"] for r in reports.values()} == {"finished"}, reports
    for rows in reports.values():  # one report per step across the stop and the resume
        assert len({r["step"] for r in rows}) == len(rows)


def test_output_into_a_closed_pipe_ends_quietly_with_status_141(tmp_path):
    """`tune_main.py FILE --dry-run | head -1`, or a plotting command's table read the same way:
    the reader goes away, the command stops as a shell tool does, with no traceback."""
    from test_plotting import wd_experiment

    folder = wd_experiment(tmp_path / "results")
    commands = [
        ("tune_main.py", str(ROOT / "experiments" / "ablation_wd.yaml"), "--dry-run"),
        ("-m", "plotting.tables", str(folder), "-o", str(tmp_path / "out")),
    ]
    for command in commands:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line is written
        try:
            proc = subprocess.run(
                [sys.executable, *command],
                cwd=ROOT,
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=600,
            )
        finally:
            os.close(write)
        assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
        assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr
