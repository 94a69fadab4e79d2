"""The results folder of a sweep: its record, its trial folders, and the best trial and checkpoint.

`results/<name>/` holds `experiment.yaml` (the record: the resolved experiment and the command
that ran it, written before the first trial starts) and one folder per trial with Tune's
`params.json` (the trial's grid and sampled values, dotted keys), `result.json` (one JSON report
per line) and `checkpoint_*/` folders (grok/checkpoint.py). Only these files are read: no Ray and
no torch, so a finished or running sweep can be queried from any machine that has the folder.
See docs/architecture.md.
"""

from __future__ import annotations

import gzip
import json
import math
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from grok.checkpoint import is_checkpoint
from grok.config import Config
from grok.experiment import Experiment, trial_name
from grok.metrics import direction, score_metric
from grok.reuse import TRAINING_CODE, code_fingerprint
from grok.schema import ConfigError, parse_mapping, read_mapping
from grok.storage import Location, at

EXPERIMENT_FILE = "experiment.yaml"  # the record, beside a sweep's trial folders
REPORTS = "result.json"  # a trial's reports, one JSON object per line (Tune writes it)
REPORTS_ARCHIVED = "result.json.gz"  # the same in an archive (grok/archive.py)
# Tune's bookkeeping in each report: not metrics of the run (and left out of archives).
BOOKKEEPING = (
    "config",
    "timestamp",
    "date",
    "done",
    "should_checkpoint",
    "trial_id",
    "pid",
    "hostname",
    "node_ip",
    "time_this_iter_s",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    "node_id",  # the Ray node that ran the report (grok/tune.py)
)
ARCHIVED_FROM = "archived_from"  # in an archive's record: the results folder it was made of
RECORD_KEYS = ("grid", "search", "config")  # what must match for --resume
# A trial's last status once it has ended (grok/train.py): ran its steps, met its stop rule, or
# was stopped by Tune; "running" as the last one means it was interrupted.
ENDED = ("finished", "grokked", "stopped")


class SelectionError(ValueError):
    """A path that holds no usable checkpoint, or a metric no trial reported."""


# ---------------------------------------------------------------- the record


def portable_command(command: str) -> str:
    """A recorded command as another user would type it: a `--storage` that names a folder of
    the machine it ran on (an absolute path) is left out, so results go to the default
    `results/`; an object-store URI or a relative folder stays."""
    words, out, i = shlex.split(command), [], 0
    while i < len(words):
        word = words[i]
        if word == "--storage" and i + 1 < len(words):
            pair, value = words[i : i + 2], words[i + 1]
        elif word.startswith("--storage="):
            pair, value = [word], word.partition("=")[2]
        else:
            pair, value = [word], None
        if value is None or not Path(value).is_absolute():
            out += pair
        i += len(pair)
    return command if len(out) == len(words) else shlex.join(out)


def code_version() -> dict[str, Any]:
    """The code a sweep starts with: the training code's fingerprint (grok/reuse.py: its source
    and torch's version) and, in a git checkout, the commit and whether the training code
    differs from it (`changed`)."""
    here = Path(__file__).parent
    version: dict[str, Any] = {"fingerprint": code_fingerprint()[:16]}
    git = ["git", "-C", str(here.parent)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            files = [str(here / name) for name in TRAINING_CODE]
            diff = subprocess.run(
                [*git, "diff", "--quiet", "HEAD", "--", *files], capture_output=True, timeout=10
            )
            version["commit"] = commit.stdout.strip()
            version["changed"] = diff.returncode != 0
    except (OSError, subprocess.SubprocessError):
        pass  # no git here: the fingerprint alone says which code it was
    return version


def experiment_record(exp: Experiment, command: str = "") -> dict[str, Any]:
    """What experiment.yaml holds: enough to tell whether a folder is this experiment."""
    return {
        "name": exp.name,
        "command": command,
        "metric": exp.score_metric,  # what ranks checkpoints and trials
        "description": exp.description,
        "source": exp.source,
        "grid": exp.grid,
        "resources": exp.resources.as_dict(),
        "tune": asdict(exp.tune),
        "search": exp.search.to_record() if exp.search else None,
        "config": exp.base.to_dict(),
    }


def write_record(exp: Experiment, folder: Path | Location, command: str) -> None:
    """Write the record into `folder` (a path, or a Location in any storage), made if need be."""
    record = {**experiment_record(exp, command), "code": code_version()}  # git only when written
    (at(folder) / EXPERIMENT_FILE).write_text(yaml.safe_dump(record, sort_keys=False))


def read_record(folder: Path | Location) -> dict[str, Any] | None:
    """A folder's record; None when it has none. ConfigError (a ValueError) if it cannot be
    read as a mapping."""
    path = at(folder) / EXPERIMENT_FILE
    if not path.is_file():
        return None
    if path.local is not None:
        return read_mapping(path.local, "experiment record")
    return parse_mapping(path.read_bytes(), str(path), "experiment record")


def same_experiment(folder: Path | Location, exp: Experiment) -> str | None:
    """None if `folder` was made by `exp`; else what differs."""
    try:
        old = read_record(folder)
    except ValueError as err:
        return str(err)
    if old is None:
        return f"{folder} has no {EXPERIMENT_FILE}"
    key = differing_key(old, experiment_record(exp), str(folder))
    return f"its {key} differs from {exp.source}'s" if key else None


def differing_key(old: dict, new: dict, where: str) -> str | None:
    """The first of RECORD_KEYS in which two records differ, None if none; a setting added since
    a record was written takes its default there."""
    try:
        old = {**old, "config": Config.from_dict(old.get("config") or {}, where).to_dict()}
        new = {**new, "config": Config.from_dict(new.get("config") or {}, where).to_dict()}
    except ConfigError:
        return "config"
    return next((key for key in RECORD_KEYS if old.get(key) != new.get(key)), None)


def default_metric(experiment_dir: Path) -> str:
    """The metric the sweep ranked its checkpoints by (val/acc unless it had no val split)."""
    try:
        record = read_record(experiment_dir) or {}
    except ValueError:
        record = {}
    return record.get("metric") or score_metric(True)


# ---------------------------------------------------------------- trial folders


def has_reports(folder: Path) -> bool:
    return (folder / REPORTS).exists() or (folder / REPORTS_ARCHIVED).is_file()


def is_trial(folder: Path) -> bool:
    return folder.is_dir() and ((folder / "params.json").is_file() or has_reports(folder))


def is_experiment(folder: Path) -> bool:
    return folder.is_dir() and (
        (folder / EXPERIMENT_FILE).is_file() or any(is_trial(d) for d in folder.iterdir())
    )


def trial_dirs(experiment_dir: Path) -> list[Path]:
    """The trials that have reported (or are about to: result.json exists)."""
    return sorted(d for d in experiment_dir.iterdir() if d.is_dir() and has_reports(d))


def trials_to_keep(experiment_dir: Path, interrupted: bool = False) -> list[str]:
    """The trials of a results folder or archive that ran to their end (finished, grokked or
    stopped), and with `interrupted` those cut off too; never one that errored (an errored
    trial's last status may still read "running"; it is run again)."""
    kept = []
    for d in trial_dirs(experiment_dir):
        reports = [] if (d / "error.txt").is_file() else read_reports(d)
        if reports and (interrupted or reports[-1].get("status") in ENDED):
            kept.append(d.name)
    return kept


def skipped(exp: Experiment, done: str | None, reported: str | None) -> tuple[list[str], str]:
    """The trials of `exp` a sweep leaves out, and where they are: those that ended in `done`,
    or that reported in `reported` (an interrupted one kept as it is, censored at its last
    step), an earlier run of `exp` (its results folder or archive); an errored one is never
    left out. ConfigError if that folder is not one."""
    flag, folder = ("--skip-done", done) if done else ("--skip-reported", reported)
    if folder is None:
        return [], ""
    path = Path(folder)
    if exp.search:
        raise ConfigError(f"{flag}: {exp.source} is a search; only a grid's trials are known")
    if not is_experiment(path):
        raise ConfigError(f"{flag}: {folder} is not an experiment's results folder or archive")
    if differs := same_experiment(path, exp):
        raise ConfigError(f"{flag}: {folder} is not a run of this experiment: {differs}")
    names = {trial_name(point, default="run") for point in exp.points()}
    there = trials_to_keep(path, interrupted=not done)
    return [n for n in there if n in names], f"{'ended' if done else 'reported'} in {folder}"


def read_reports(trial_dir: Path) -> list[dict]:
    """Every report a trial made, in order; a line cut short by a running writer is skipped."""
    path, archived = trial_dir / REPORTS, trial_dir / REPORTS_ARCHIVED
    if path.is_file():
        text = path.read_text()
    elif archived.is_file():
        text = gzip.decompress(archived.read_bytes()).decode()
    else:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def read_params(trial_dir: Path, reports: list[dict]) -> dict[str, Any]:
    """A trial's grid and sampled values: params.json, else the config of its first report."""
    try:
        return json.loads((trial_dir / "params.json").read_text())
    except (OSError, ValueError):
        return reports[0].get("config", {}) if reports else {}


# ---------------------------------------------------------------- choosing a checkpoint


@dataclass
class Found:
    checkpoint: Path
    note: str = ""  # what was chosen and why, for people


def _score(value, mode: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) if mode == "max" else -float(value)


def best_checkpoint(trial_dir: Path, metric: str, mode: str) -> tuple[Path, dict] | None:
    """The trial's kept checkpoint with the best `metric` (the latest among equals)."""
    best = None
    for row in read_reports(trial_dir):
        name = row.get("checkpoint_dir_name")
        if not name or not is_checkpoint(trial_dir / name):
            continue
        score = _score(row.get(metric), mode)
        key = (score is not None, score if score is not None else 0.0, row.get("step", 0))
        if best is None or key >= best[0]:
            best = (key, trial_dir / name, row)
    return None if best is None else (best[1], best[2])


def best_trial(
    experiment_dir: Path, metric: str, mode: str, trial: str | None = None
) -> tuple[Path, dict]:
    """The trial whose last report is best in `metric` (ties: the first by name)."""
    trials = trial_dirs(experiment_dir)
    if trial is not None:
        chosen = [t for t in trials if t.name == trial]
        if not chosen:
            names = ", ".join(t.name for t in trials)
            raise SelectionError(f"{experiment_dir}: no trial {trial!r}; trials: {names}")
        trials = chosen
    ranked = []
    for t in trials:
        reports = read_reports(t)
        if not reports:
            continue
        last = reports[-1]
        if metric not in last:
            raise SelectionError(
                f"{experiment_dir}: trials do not report {metric!r}; "
                f"reported: {', '.join(k for k in last if '/' in k)}"
            )
        score = _score(last.get(metric), mode)
        if score is not None:
            ranked.append((-score, t.name, t, last))
    if not ranked:
        raise SelectionError(f"{experiment_dir}: no trial has reported {metric!r} yet")
    ranked.sort(key=lambda r: (r[0], r[1]))
    return ranked[0][2], ranked[0][3]


def find_checkpoint(
    path: str | Path, metric: str | None = None, mode: str | None = None, trial: str | None = None
) -> Found:
    """The checkpoint a path means: a checkpoint folder, a run folder (with checkpoint/), a trial
    folder (its best checkpoint), or a sweep's results folder (the best trial's best)."""
    p = Path(path)
    if is_checkpoint(p):
        return Found(p)
    if is_checkpoint(p / "checkpoint"):
        return Found(p / "checkpoint")
    if not p.is_dir():
        raise SelectionError(f"{p}: no such folder")
    for folder in (p, p / "checkpoint"):
        if (folder / "model.pt").is_file() or (folder / "state.pt").is_file():
            return Found(folder)  # a checkpoint cut short: loading it says what is missing
    if not trial_dirs(p):
        if has_reports(p):  # a trial folder itself
            trial, p = p.name, p.parent
        else:
            raise SelectionError(
                f"{p}: neither a checkpoint, a run folder (with checkpoint/) "
                "nor a sweep's results folder"
            )
    metric = metric or default_metric(p)
    mode = mode or direction(metric)
    tdir, last = best_trial(p, metric, mode, trial)
    found = best_checkpoint(tdir, metric, mode)
    if found is None:
        raise SelectionError(f"{tdir}: this trial has no complete checkpoint")
    ckpt, row = found
    how = "chosen" if trial else f"best by {metric} ({mode})"
    note = (
        f"trial {tdir.name} ({how}: last {metric} = {last.get(metric)}); checkpoint "
        f"{ckpt.name} at step {row.get('step')} with {metric} = {row.get(metric)}"
    )
    return Found(ckpt, note)
