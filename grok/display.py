"""What a run without Ray shows while it trains: one bar redrawn in place on a terminal, plain
lines every few seconds when the output is a file or a pipe (logs, CI).

Each evaluation updates it with the step, the train and test accuracy, the speed since the run
(or its resume) began, and the time the rest of the budget (train.steps) would take at that
speed: an upper bound when a stop rule ends the run early.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 20
LINE_EVERY_S = 2.0  # plain lines: at most one per this many seconds (and the first and last)
REDRAW_EVERY_S = 0.1  # the bar: at most this often


def clock_text(seconds: float) -> str:
    """1:05 or 2:03:04."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def bar(done: float) -> str:
    """[=======>            ] for a fraction `done` of the budget."""
    full = min(BAR_WIDTH, int(done * BAR_WIDTH))
    head = ">" if full < BAR_WIDTH else ""
    return "[" + ("=" * full + head).ljust(BAR_WIDTH) + "]"


class ProgressDisplay:
    """Shows a run's progress on `stream`: a bar if it is a terminal, else periodic lines."""

    def __init__(
        self,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.start: tuple[int, float] | None = None  # (step, time) of the first update
        self.last_shown = -float("inf")

    def text(self, step: int, metrics: dict, budget: int) -> str:
        """step 1200/6000 20%  train acc 1.000  test acc 0.412  85.3 steps/s  0:56 left."""
        start_step, start_time = self.start or (step, self.clock())
        elapsed = self.clock() - start_time
        rate = (step - start_step) / elapsed if elapsed > 0 and step > start_step else None
        left = clock_text((budget - step) / rate) if rate else "-:--"
        speed = f"{rate:.1f}" if rate else "-"
        return (
            f"step {step:>{len(str(budget))}d}/{budget} {step / budget:4.0%}"
            f"  train acc {metrics['train/acc']:.3f}  test acc {metrics['test/acc']:.3f}"
            f"  {speed} steps/s  {left} left  {metrics['status']}"
        )

    def update(self, step: int, metrics: dict, budget: int, final: bool = False) -> None:
        """Show the evaluation at `step`; `final` ends the display (a newline after the bar)."""
        now = self.clock()
        if self.start is None:
            self.start = (step, now)
        due = REDRAW_EVERY_S if self.tty else LINE_EVERY_S
        if not final and now - self.last_shown < due and step != self.start[0]:
            return
        self.last_shown = now
        line = self.text(step, metrics, budget)
        if self.tty:
            width = shutil.get_terminal_size().columns
            line = f"{bar(step / budget)} {line}"[: width - 1]
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
