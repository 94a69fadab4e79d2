"""What the command-line tools share: one-line errors with exit status 2, plain tables, and the
end of a process that ran a sweep."""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable
from functools import wraps


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def pipe_safe(main: Callable[..., int]) -> Callable[..., int]:
    """A command's main that ends quietly when whoever reads its output stops reading
    (`tune_main.py FILE --dry-run | head`): exit status 141, as a shell reports a process that
    SIGPIPE ended, and no traceback. (Python ignores SIGPIPE so that a socket's closed peer is
    an error, not death; Ray's connections rely on that, so it stays ignored.)"""

    @wraps(main)
    def guarded(*args, **kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            # Python flushes stdout again at exit: into nothing, not into the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE

    return guarded


def add_experiment(ap: argparse.ArgumentParser, experiment_help: str, set_help: str) -> None:
    """The arguments every command that reads an experiment file takes: the file, and --set."""
    ap.add_argument("experiment", help=experiment_help)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a setting{set_help}, e.g. --set train.steps=5000 (repeatable)",
    )


def fail(message: object) -> int:
    """Print a user's mistake as one line (a line break in it, e.g. from a key the user wrote,
    is shown escaped); the exit status to return."""
    text = str(message).replace("\r", "\\r").replace("\n", "\\n")
    print(f"error: {text}", file=sys.stderr)
    return 2


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(header, rows) -> None:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def resume_command(command: list[str], words: list[str], *extra: str) -> str:
    """The command line that continues a run or sweep: `command` (e.g. python tune_main.py) and
    its arguments `words` as given, less --fresh, plus `extra` and --resume."""
    kept = [w for w in words if w not in ("--fresh", "--resume")]
    return shlex.join([*command, *kept, *extra, "--resume"])


def out_of_space(err: OSError) -> bool:
    """Whether a write failed because the disk (or the user's quota) is full."""
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def full_disk(where: object, err: OSError, again: str) -> int:
    """A write that failed for want of space, as one line naming `where` and the command that
    continues (`again`); the exit status 1. Any other OSError is raised again."""
    if not out_of_space(err):
        raise err
    print(
        f"error: {where}: out of space ({os.strerror(err.errno)}); free some, then {again}",
        file=sys.stderr,
    )
    return 1


def joined() -> bool:
    """Whether this process is connected to a Ray cluster."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def end(code: int) -> None:
    """Leave the cluster and end the process with `code`, once the sweep and what it prints are
    done. Python's own teardown of Ray's core worker and of what the sweep imported (Tune,
    pandas, matplotlib) takes 1.5-2.5 s more and does nothing a user needs: the results are
    written, the trackers closed (at the end of `fit`) and the output flushed here."""
    import ray

    ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
