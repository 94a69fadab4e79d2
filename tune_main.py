"""Run an experiment file as a Ray Tune sweep: `python tune_main.py EXPERIMENT.yaml ...`, the
same command as `grok-sweep` once the package is installed (the code: grok/commands/sweep.py).
"""

from __future__ import annotations

import sys

from grok.commands.sweep import SCRIPT, cli, main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(cli(SCRIPT))
