"""Keeping a sweep resumable when its driver dies mid-save.

Tune saves the experiment's state (the trial list and the searcher's state) in a local staging
folder and copies it into the results folder from a background thread, file by file, writing over
the previous copy in place. A driver killed during that copy leaves a truncated
`experiment_state-*.json` (or searcher file) behind, and Tune's restore, failing to read it,
silently starts a new, empty experiment in its place. So after each of Tune's saves the driver
copies the staging folder's state (whole: the driver's own thread has just written it) into
`<experiment>/.resume-state/`, each file by write-and-rename, and `--resume` puts that set back
when the folder's own copy is cut off or missing. `tuner.pkl` (the Tuner's own settings, which
`Tuner.restore` unpickles first) joins that set once a resume has run: the restored driver
downloads it into its staging folder and from then on copies it back with every sync, in place,
so a kill can cut it off too. Whole means: JSON that parses, or a pickle
stream whose opcodes run to its STOP at the file's end (checked with `pickletools`, which reads
opcodes and builds no objects).

Tune's state is saved now and then, and pruning (keep-N) deletes checkpoints at once, so the
state put back may name a checkpoint that is gone, or one a kill left half-deleted, while the
killed run may have left newer checkpoint folders, whole or cut off. Before a trial (re)starts,
`repair_trial` settles where it resumes: the checkpoint the state names if it is whole, else the
trial's newest whole checkpoint in storage, else step 0; the checkpoint folders after that point
(the killed run's abandoned future) and any that are not whole are deleted. Its reports are then
cut back to that point (`cut_reports`), the ones a stale copy of result.json lacks taken from
the checkpoint's own record of them (`reports.json`), so that every step has one report.

The results folder may be on a local disk or in an object store (grok/storage.py): there a
file is written whole by its upload, and "moving aside" is a copy and a delete.

No Ray here: the sweep's callbacks (grok/tune.py) and grok/sweep.py call these functions.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickletools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from grok.storage import Location, at

BACKUP = ".resume-state"
EXPERIMENT_STATE = "experiment_state"
TUNER = "tuner.pkl"  # written whole by the first run; copied back by every sync after a resume
# Tune's file names: kind-<session>.json|pkl, one session per start or resume of the sweep.
STATE_FILE = re.compile(
    r"^(experiment_state|basic-variant-state|search_gen_state|searcher-state|callback-states)"
    r"-(.+)\.(json|pkl)$"
)
CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")  # Tune's name for a trial's checkpoint
HISTORY = "reports.json"  # in each checkpoint of a trial: its reports up to that checkpoint
MANIFEST = "manifest.json"  # a checkpoint's manifest (grok/checkpoint.py, a layer above this)


def is_whole(data: bytes) -> bool:
    """Whether a state file's bytes are complete: a pickle run to its end, or JSON that parses."""
    if data[:1] == b"\x80":  # a pickle's PROTO opcode (protocol 2 and later)
        try:
            end = None
            for opcode, _, pos in pickletools.genops(data):
                if opcode.name == "STOP":
                    end = pos + 1
            return end == len(data)
        except Exception:  # pickletools raises ValueError and others on a cut stream
            return False
    try:
        json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def newest_state_files(folder: Path | Location) -> dict[str, Location]:
    """For each kind of state file in `folder`, the one Tune would read: the newest session's."""
    folder = at(folder)
    newest: dict[str, str] = {}
    for name in folder.names():
        m = STATE_FILE.match(name)
        if m:
            kind, session = m.group(1), m.group(2)
            if kind not in newest or session > _session(newest[kind]):
                newest[kind] = name
    return {kind: folder / name for kind, name in newest.items()}


def _session(name: str) -> str:
    return STATE_FILE.match(name).group(2)


def back_up_state(staging: Path, experiment: Path | Location) -> bool:
    """Copy the newest state files of Tune's `staging` folder, and its tuner.pkl if it has one,
    into `experiment`'s backup folder, if all are whole. Returns whether it did; the backup
    keeps only this set (and the tuner.pkl of an earlier one)."""
    files = newest_state_files(staging)
    if EXPERIMENT_STATE not in files:
        return False
    tuner = at(staging) / TUNER
    if tuner.is_file():
        files[TUNER] = tuner
    contents = {f.name: f.read_bytes() for f in files.values()}
    if not all(is_whole(data) for data in contents.values()):
        return False
    backup = at(experiment) / BACKUP
    for name, data in contents.items():
        (backup / name).write_bytes(data)
    for old in backup.names():  # an earlier session's files, or a dead writer's temp file
        if old not in contents and old != TUNER:
            (backup / old).delete()
    return True


def repair_state(experiment: Path | Location) -> str | None:
    """Make the state Tune will read whole, from the backup if need be. None when it is; else
    why the sweep cannot be resumed. Files set aside go to `.resume-state/broken-<time>/`."""
    experiment = at(experiment)
    cut_tuner = repair_tuner(experiment)
    if cut_tuner:
        return cut_tuner
    files = newest_state_files(experiment)
    broken = [f.name for f in files.values() if not is_whole(f.read_bytes())]
    if EXPERIMENT_STATE in files and not broken:
        return None
    saved = newest_state_files(experiment / BACKUP)
    if EXPERIMENT_STATE not in saved or not all(is_whole(f.read_bytes()) for f in saved.values()):
        what = "a cut-off copy" if broken else "no copy"
        return (
            f"{experiment} holds {what} of Tune's experiment state and no whole backup of it "
            "(the sweep stopped before its first save completed)"
        )
    session = _session(saved[EXPERIMENT_STATE].name)
    aside = experiment / BACKUP / f"broken-{time.strftime('%Y%m%d-%H%M%S')}"
    for name in experiment.names():
        if STATE_FILE.match(name) and (name in broken or _session(name) > session):
            (experiment / name).move_to(aside / name)
    for f in saved.values():
        (experiment / f.name).write_bytes(f.read_bytes())
    return None


def repair_tuner(experiment: Location) -> str | None:
    """Put back the backup's tuner.pkl if the folder's own is cut off. None when the folder's
    is whole (or missing: the sweep's own check names that) or was put back; else why not."""
    tuner = experiment / TUNER
    if not tuner.is_file() or is_whole(tuner.read_bytes()):
        return None
    saved = experiment / BACKUP / TUNER
    if not (saved.is_file() and is_whole(data := saved.read_bytes())):
        return f"{experiment} holds a cut-off copy of Tune's {TUNER} and no whole backup of it"
    tuner.move_to(experiment / BACKUP / f"broken-{time.strftime('%Y%m%d-%H%M%S')}" / TUNER)
    tuner.write_bytes(data)
    return None


# ---------------------------------------------------------------- where a trial resumes


def checkpoint_step(folder: Location) -> int | None:
    """The step of the checkpoint in `folder` if it is whole (its manifest readable, every file
    it lists present with the hash it gives), else None: gone, cut off or half-deleted."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        files, step = dict(manifest["files"]), int(manifest["step"])
        for name, digest in files.items():
            if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
                return None
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable, not a manifest
        return None
    return step


def checkpoint_folders(trial: Location) -> dict[int, Location]:
    """A trial's checkpoint folders in storage by their index, whole or not."""
    selector = pafs.FileSelector(trial.path, allow_not_found=True)
    found = {}
    try:
        listed = trial.fs.get_file_info(selector)
    except FileNotFoundError:  # a trial folder that is not there yet (or is being moved)
        return {}
    for info in listed:
        m = CHECKPOINT_DIR.match(info.base_name)
        if m and info.type == pafs.FileType.Directory:
            found[int(m.group(1))] = trial / info.base_name
    return dict(sorted(found.items()))


@dataclass
class ResumePoint:
    """Where a trial goes on from: a checkpoint folder (its index and step), or step 0."""

    name: str | None = None
    index: int = -1  # Tune's count of the trial's checkpoints, as its folder names number them
    step: int | None = None
    kept: list[str] = field(default_factory=list)  # the whole folders left, it among them
    deleted: list[str] = field(default_factory=list)  # folders removed: after it, or not whole


def repair_trial(trial: Location, named: str | None) -> ResumePoint:
    """Settle where the trial in folder `trial` resumes when Tune's state names the checkpoint
    folder `named` (None: no checkpoint): that one if whole, else the newest whole one (None
    named: step 0, as Tune would). Deletes the folders after that point and those not whole."""
    folders = checkpoint_folders(trial)
    steps = {index: checkpoint_step(folder) for index, folder in folders.items()}
    whole = [i for i, step in steps.items() if step is not None]
    m = CHECKPOINT_DIR.match(named or "")
    named_index = int(m.group(1)) if m else None
    if named_index in whole:
        chosen = named_index
    else:
        chosen = max(whole) if whole and named is not None else None
    point = ResumePoint()
    if chosen is not None:
        point = ResumePoint(folders[chosen].name, chosen, steps[chosen])
    for index, folder in folders.items():
        if steps[index] is None or index > point.index:
            folder.delete()
            point.deleted.append(folder.name)
        else:
            point.kept.append(folder.name)
    return point


def checkpoint_history(folder: Location) -> list[dict[str, Any]]:
    """The reports a checkpoint keeps of its trial up to it (none when it has no record)."""
    try:
        return list(json.loads((folder / HISTORY).read_bytes()))
    except (OSError, ValueError, TypeError):
        return []


def cut_reports(path: Path, step: int | None, history: list[dict[str, Any]]) -> None:
    """Rewrite a trial's reports file (result.json, or progress.csv) for a trial resuming after
    `step` (None: from the start): one report per step up to it, in order, those it lacks
    taken from `history`, none after it (the resumed trial reports them again)."""
    if path.suffix == ".csv":
        if not path.is_file():
            return  # the logger writes its header with its first row
        rows, fields = _read_csv(path)
    else:
        rows, fields = [], []
        text = path.read_bytes().decode() if path.is_file() else ""
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut off by a kill
                continue
            if isinstance(row, dict):  # (a cut line may still parse, as a number)
                rows.append(row)
    by_step: dict[int, dict] = {}
    if step is not None:
        for row in [*history, *rows]:  # a report Tune wrote wins over the checkpoint's record
            at_step = _step(row)
            if at_step is not None and at_step <= step:
                by_step[at_step] = row
    kept = [by_step[s] for s in sorted(by_step)]
    if path.suffix == ".csv":
        out = io.StringIO()
        if kept:
            writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\r\n")
            writer.writeheader()
            writer.writerows(kept)
        text = out.getvalue()
    else:
        text = "".join(json.dumps(row) + "\n" for row in kept)
    if not text and not path.is_file():
        return
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(text.encode())
    tmp.replace(path)


def _read_csv(path: Path) -> tuple[list[dict], list[str]]:
    lines = path.read_bytes().decode().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a row cut off by a kill
    reader = csv.DictReader(lines)
    rows = [row for row in reader if None not in row]  # a row with more fields than the header
    return rows, list(reader.fieldnames or [])


def _step(row: dict) -> int | None:
    try:
        return int(float(row.get("step")))
    except (TypeError, ValueError):
        return None
