"""A run without Ray shows its progress: a bar redrawn in place on a terminal, lines in a log."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

from conftest import ROOT, TINY, run_cli, write_experiment

from grok.display import ProgressDisplay, bar, clock_text

METRICS = {"train/acc": 0.5, "test/acc": 0.25, "status": "running"}
LONGER = {**TINY, "train": {**TINY["train"], "steps": 400, "checkpoint_every": 400}}


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_left_is_the_rest_of_the_budget_at_the_speed_so_far():
    clock, out = FakeClock(), io.StringIO()
    display = ProgressDisplay(out, tty=False, clock=clock)
    display.update(200, METRICS, budget=1200)  # a resumed run: the speed counts from here
    clock.now += 10
    display.update(300, METRICS, budget=1200)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step  200/1200  17%") and "-:-- left" in lines[0]
    assert "10.0 steps/s" in lines[1] and "1:30 left" in lines[1]  # 900 steps at 10 a second
    assert "train acc 0.500  test acc 0.250" in lines[1]


def test_plain_lines_come_at_most_every_two_seconds_and_always_at_the_end():
    clock, out = FakeClock(), io.StringIO()
    display = ProgressDisplay(out, tty=False, clock=clock)
    for step in range(0, 100, 10):
        display.update(step, METRICS, budget=100)
        clock.now += 0.5
    display.update(100, {**METRICS, "status": "finished"}, budget=100, final=True)
    steps = [int(line.split()[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert steps == [0, 40, 80, 100]  # the first, then one each 2 s, and the last
    assert "\r" not in out.getvalue()


def test_bar_and_clock():
    assert bar(0) == "[>" + " " * 19 + "]"
    assert bar(0.5) == "[" + "=" * 10 + ">" + " " * 9 + "]"
    assert bar(1) == "[" + "=" * 20 + "]"
    assert clock_text(65) == "1:05" and clock_text(7384) == "2:03:04"


def test_train_cli_prints_plain_lines_when_not_a_terminal(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e", LONGER)
    proc = run_cli("-m", "grok.train", str(path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step   0/400   0%") and lines[-1].startswith("step 400/400 100%")
    assert re.search(r"steps/s  0:00 left  finished$", lines[-1]), lines[-1]
    assert proc.stdout.splitlines()[-1].startswith("done: finished at step 400")


def test_train_cli_redraws_a_bar_on_a_terminal(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e", LONGER)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "grok.train", str(path), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the run is over
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=1800) == 0
    screen = b"".join(chunks).decode().replace("\r\n", "\n")  # the terminal's line ends
    draws = [d for d in screen.split("\r") if d.startswith("[")]
    assert len(draws) >= 2, screen  # drawn over itself, not line after line
    assert all("\n" not in d for d in draws[:-1])
    assert draws[-1].startswith("[" + "=" * 20 + "] step 400/400 100%")
    assert re.search(r"steps/s  0:00 left  finished\x1b\[K\n", draws[-1]), draws[-1]
    assert "done: finished at step 400" in screen
