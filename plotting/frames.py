"""Load a Tune experiment folder (finished, running or partly errored) into tidy pandas frames.

The folder's files and how they are read are grok/results.py's (no Ray, no torch); this module
turns them into one frame per report and one per trial.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grok.cli import Parser, fail, pipe_safe
from grok.config import Config, ConfigError, TaskConfig
from grok.experiment import trial_name
from grok.overrides import apply_overrides, flatten
from grok.results import (
    ARCHIVED_FROM,
    BOOKKEEPING,
    EXPERIMENT_FILE,
    is_experiment,
    is_trial,
    portable_command,
    read_params,
    read_record,
    read_reports,
)
from grok.reuse import REUSED_FROM
from grok.storage import local_view

SEED = "seed"
MAX_PANELS = 24  # groups a figure draws one panel row (or column) each for; more: a map
TEXT_COLUMNS = ("status", "checkpoint_dir_name", REUSED_FROM)


class NotAnExperiment(ValueError):
    """A folder that holds no Tune experiment."""


@dataclass
class Results:
    """One experiment folder as frames: `frame` per trial and step, `trials` per trial."""

    name: str
    folder: Path
    meta: dict[str, Any]  # experiment.yaml; {} when absent
    keys: list[str]  # the grid's keys (dotted), seed included
    frame: pd.DataFrame  # trial, keys..., status, step, every metric
    trials: pd.DataFrame  # trial, keys..., status, reports, last_step, budget, searched...
    searched: list[str] = field(default_factory=list)  # a search's sampled keys

    @property
    def groups(self) -> list[str]:
        """The varying keys other than the seed: what a figure's panels and a table's rows are."""
        return [k for k in self.keys if k != SEED]

    @property
    def source(self) -> str:
        return self.meta.get("source") or f"experiments/{self.name}.yaml"

    @property
    def command(self) -> str:
        return portable_command(self.meta.get("command") or f"python tune_main.py {self.source}")

    @property
    def origin(self) -> str:
        """Where the results were made: an archive's source folder, else this folder."""
        return str(self.meta.get(ARCHIVED_FROM) or self.folder)

    @property
    def archived(self) -> bool:
        """An archive (grok/archive.py): reports and parameters, no checkpoints."""
        return ARCHIVED_FROM in self.meta

    @property
    def settings(self) -> int:
        """The groups of the grid the record lists (a sweep part-way has them all), else of the
        trials."""
        grid = self.meta.get("grid") or {}
        if self.groups and all(k in grid for k in self.groups):
            return math.prod(len(grid[k]) for k in self.groups)
        return len(self.trials.drop_duplicates(self.groups)) if self.groups else 1

    @property
    def crowded(self) -> bool:
        """More groups than a figure with a panel (or a column) per group can show legibly."""
        return self.settings > MAX_PANELS

    def has(self, metric: str) -> bool:
        """Whether any trial reported a value of `metric` (sanity runs have no test split)."""
        return metric in self.frame and self.frame[metric].notna().any()


def trial_task(res: Results, values: dict[str, Any]) -> TaskConfig | None:
    """A trial's task: the record's config with the trial's task.* values; None without one."""
    try:
        base = Config.from_dict(res.meta["config"], str(res.folder))
        task = {k: v for k, v in values.items() if k.startswith("task.") and v is not None}
        return apply_overrides(base, task, str(res.folder)).task
    except (KeyError, TypeError, ConfigError):
        return None


def group_label(values: dict[str, Any]) -> str:
    """A group's name from its varying values, as in trial folder names: 'wd=0.3', or 'all'."""
    return trial_name(values, default="all")


def read_trial(folder: Path) -> tuple[dict[str, Any], pd.DataFrame, str]:
    """A trial's grid values, its reports (one row per step, last report kept) and its status."""
    reports = read_reports(folder)
    params = read_params(folder, reports)
    curve = pd.DataFrame(reports)
    if "step" in curve:
        # A trial resumed from a checkpoint re-reports the steps after it: keep the last.
        curve = curve.dropna(subset=["step"]).drop_duplicates("step", keep="last")
        curve = curve.sort_values("step", kind="stable").reset_index(drop=True)
        curve = curve.drop(columns=[c for c in BOOKKEEPING if c in curve])
        for col in curve.columns.difference(TEXT_COLUMNS):
            curve[col] = pd.to_numeric(curve[col], errors="coerce")
    else:
        curve = pd.DataFrame({"step": pd.Series(dtype=float)})
    last = curve["status"].iloc[-1] if "status" in curve and len(curve) else None
    if isinstance(last, str) and last != "running":
        # Ended by its own stop rule; an error.txt beside it is from an attempt Tune retried.
        status = last
    elif (folder / "error.txt").exists():
        status = "errored"
    else:
        status = "running"  # still going, no report yet, or reports without a status
    return flatten(params), curve.drop(columns=["status"], errors="ignore"), status


def _grid_order(grid: dict[str, list], keys: list[str], values: dict[str, Any]) -> tuple:
    """Sort key: a trial's place in the grid's product order (unknown values last, by text)."""
    order = []
    for key in keys:
        listed = grid.get(key, [])
        value = values.get(key)
        order.append((listed.index(value), "") if value in listed else (len(listed), str(value)))
    return tuple(order)


def _budget(meta: dict[str, Any], values: dict[str, Any]) -> float:
    """train.steps of the trial's config, or NaN without experiment.yaml."""
    if "train.steps" in values:
        return float(values["train.steps"])
    steps = meta.get("config", {}).get("train", {}).get("steps")
    return float(steps) if steps is not None else math.nan


def load(folder: str | Path) -> Results:
    """Read every trial of an experiment folder (a path, or a URI: read from a local mirror);
    raises NotAnExperiment for any other folder, or a location that cannot be read."""
    try:
        folder = local_view(folder)
    except (ValueError, OSError) as err:
        raise NotAnExperiment(str(err)) from None
    if not folder.is_dir():
        raise NotAnExperiment(f"{folder}: no such folder")
    if not is_experiment(folder):
        raise NotAnExperiment(
            f"{folder}: not a Tune experiment folder (no {EXPERIMENT_FILE} and no trial "
            "folders with params.json or result.json)"
        )
    try:
        meta: dict[str, Any] = read_record(folder) or {}
    except ValueError as err:
        raise NotAnExperiment(str(err)) from None
    grid = meta.get("grid") or {}
    searched = list((meta.get("search") or {}).get("space") or {})
    read = [(d.name, *read_trial(d)) for d in sorted(folder.iterdir()) if is_trial(d)]
    # A search's trials differ in sampled values too: its groups are still the grid's.
    keys = list(grid) if grid or searched else sorted({k for _, v, _, _ in read for k in v})
    if SEED in keys:  # the seed axis last: groups are what remains
        keys = [k for k in keys if k != SEED] + [SEED]
    read.sort(key=lambda t: _grid_order(grid, keys, t[1]))

    curves, rows = [], []
    for name, values, curve, status in read:
        if status == "running" and ARCHIVED_FROM in meta:
            status = "interrupted"  # nothing runs in an archive: it was stopped at its last step
        ident = {"trial": name, **{k: values.get(k) for k in keys}, "status": status}
        last = curve["step"].max() if len(curve) else math.nan
        rows.append({**ident, "reports": len(curve), "last_step": last})
        sources = curve[REUSED_FROM].dropna() if REUSED_FROM in curve else []
        rows[-1][REUSED_FROM] = sources.iloc[-1] if len(sources) else None
        rows[-1]["budget"] = _budget(meta, values)
        rows[-1].update({k: values.get(k) for k in searched})
        if len(curve):
            curves.append(curve.assign(**ident)[[*ident, *curve.columns]])
    id_cols = ["trial", *keys, "status"]
    frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=id_cols)
    columns = [*id_cols, "reports", "last_step", "budget", REUSED_FROM, *searched]
    trials = pd.DataFrame(rows, columns=columns)
    return Results(meta.get("name") or folder.name, folder, meta, keys, frame, trials, searched)


def group_rows(res: Results, table: pd.DataFrame):
    """(label, values, rows) for each group of `table` (rows of trials), in grid order."""
    if not res.groups:
        yield group_label({}), {}, table
        return
    for values, rows in table.groupby(res.groups, sort=False, dropna=False):
        values = dict(zip(res.groups, values if isinstance(values, tuple) else (values,)))
        yield group_label(values), values, rows


# What a plotting command makes of an experiment: (its results, the output folder, its options)
# -> the files written, by kind; an "md" file is a table, printed as well.
Make = Callable[[Results, Path, argparse.Namespace], dict[str, Path]]


@pipe_safe
def plot_command(
    argv: list[str] | None,
    module: str,
    doc: str,
    make: Make,
    options: Callable[[Parser], None] | None = None,
) -> int:
    """The main of every plotting command (`python -m MODULE`, described by the first line of
    its `doc`): FOLDER [-o DIR] and the command's own `options`; the folder's reports loaded,
    `make` run into DIR (default FOLDER/plots), its table and files printed. A folder it cannot
    draw (NotAnExperiment, from the loading or from `make`) is one line on stderr, exit 2."""
    ap = Parser(prog=f"python -m {module}", description=doc.strip().split("\n")[0])
    ap.add_argument("folder", help="an experiment's results folder, e.g. results/NAME")
    ap.add_argument("-o", "--out", help="output folder (default: FOLDER/plots)")
    if options:
        options(ap)
    args = ap.parse_args(argv)
    try:
        res = load_reported(args.folder)
        paths = make(res, Path(args.out) if args.out else res.folder / "plots", args)
    except NotAnExperiment as err:
        return fail(err)
    if "md" in paths:
        print(paths["md"].read_text())
    for path in paths.values():
        print(path)
    return 0


def load_reported(folder: str | Path) -> Results:
    """`load`, refusing a folder in which no trial has reported yet."""
    res = load(folder)
    if res.frame.empty:
        raise NotAnExperiment(f"{folder}: no trial has reported yet")
    return res
