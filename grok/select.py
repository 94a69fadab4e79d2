"""Find the checkpoint a path means: a checkpoint folder, a run folder, or a sweep's best trial.

Reads the files Ray Tune writes (`<trial>/result.json`, one JSON object per report) without
Ray, so a finished or running sweep can be queried from any machine that has the folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from grok.train import MANIFEST

EXPERIMENT_FILE = "experiment.yaml"  # the resolved experiment, beside a sweep's trial folders


class SelectionError(ValueError):
    """A path that holds no usable checkpoint, or a metric no trial reported."""


@dataclass
class Found:
    checkpoint: Path
    note: str = ""  # what was chosen and why, for people


def read_reports(trial_dir: Path) -> list[dict]:
    """Every report a trial made, in order; a line cut short by a running writer is skipped."""
    path = trial_dir / "result.json"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def trial_dirs(experiment_dir: Path) -> list[Path]:
    return sorted(
        d for d in experiment_dir.iterdir() if d.is_dir() and (d / "result.json").exists()
    )


def _score(value, mode: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) if mode == "max" else -float(value)


def best_checkpoint(trial_dir: Path, metric: str, mode: str) -> tuple[Path, dict] | None:
    """The trial's kept checkpoint with the best `metric` (the latest among equals)."""
    best = None
    for row in read_reports(trial_dir):
        name = row.get("checkpoint_dir_name")
        if not name or not (trial_dir / name / MANIFEST).is_file():
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


def default_metric(experiment_dir: Path) -> str:
    """The metric the sweep ranked its checkpoints by (val/acc unless it had no val split)."""
    path = experiment_dir / EXPERIMENT_FILE
    record = yaml.safe_load(path.read_text()) if path.is_file() else None
    return (record or {}).get("metric") or "val/acc"


def find_checkpoint(
    path: str | Path, metric: str | None = None, mode: str | None = None, trial: str | None = None
) -> Found:
    p = Path(path)
    if (p / MANIFEST).is_file():
        return Found(p)
    if (p / "checkpoint" / MANIFEST).is_file():
        return Found(p / "checkpoint")
    if not p.is_dir():
        raise SelectionError(f"{p}: no such folder")
    for folder in (p, p / "checkpoint"):
        if (folder / "model.pt").is_file() or (folder / "state.pt").is_file():
            return Found(folder)  # a checkpoint cut short: loading it says what is missing
    if not trial_dirs(p):
        if (p / "result.json").exists():  # a trial folder itself
            trial, p = p.name, p.parent
        else:
            raise SelectionError(
                f"{p}: neither a checkpoint, a run folder (with checkpoint/) "
                "nor a sweep's results folder"
            )
    metric = metric or default_metric(p)
    mode = mode or ("max" if metric.endswith("acc") else "min")
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
