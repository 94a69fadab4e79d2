"""Keeping a sweep resumable when its driver dies mid-save.

Tune saves the experiment's state (the trial list and the searcher's state) in a local staging
folder and copies it into the results folder from a background thread, file by file, writing over
the previous copy in place. A driver killed during that copy leaves a truncated
`experiment_state-*.json` (or searcher file) behind, and Tune's restore, failing to read it,
silently starts a new, empty experiment in its place. So after each of Tune's saves the driver
copies the staging folder's state (whole: the driver's own thread has just written it) into
`<experiment>/.resume-state/`, each file by write-and-rename, and `--resume` puts that set back
when the folder's own copy is cut off or missing. Whole means: JSON that parses, or a pickle
stream whose opcodes run to its STOP at the file's end (checked with `pickletools`, which reads
opcodes and builds no objects).

No Ray here: the sweep's callback (grok/tune.py) and tune_main.py call these functions.
"""

from __future__ import annotations

import json
import os
import pickletools
import re
import shutil
import tempfile
import time
from pathlib import Path

BACKUP = ".resume-state"
EXPERIMENT_STATE = "experiment_state"
# Tune's file names: kind-<session>.json|pkl, one session per start or resume of the sweep.
STATE_FILE = re.compile(
    r"^(experiment_state|basic-variant-state|search_gen_state|searcher-state|callback-states)"
    r"-(.+)\.(json|pkl)$"
)


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


def newest_state_files(folder: Path) -> dict[str, Path]:
    """For each kind of state file in `folder`, the one Tune would read: the newest session's."""
    newest: dict[str, tuple[str, Path]] = {}
    if not folder.is_dir():
        return {}
    for path in folder.iterdir():
        m = STATE_FILE.match(path.name)
        if m and path.is_file():
            kind, session = m.group(1), m.group(2)
            if kind not in newest or session > newest[kind][0]:
                newest[kind] = (session, path)
    return {kind: path for kind, (_, path) in newest.items()}


def _session(path: Path) -> str:
    return STATE_FILE.match(path.name).group(2)


def _write_atomic(target: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)
    os.replace(f.name, target)


def back_up_state(staging: Path, experiment: Path) -> bool:
    """Copy the newest state files of Tune's `staging` folder into `experiment`'s backup folder,
    if all are whole. Returns whether it did; the backup keeps only this set."""
    files = newest_state_files(staging)
    if EXPERIMENT_STATE not in files:
        return False
    contents = {path.name: path.read_bytes() for path in files.values()}
    if not all(is_whole(data) for data in contents.values()):
        return False
    backup = experiment / BACKUP
    backup.mkdir(exist_ok=True)
    for name, data in contents.items():
        _write_atomic(backup / name, data)
    for old in backup.iterdir():  # an earlier session's files, or a dead writer's temp file
        if old.is_file() and old.name not in contents:
            old.unlink()
    return True


def repair_state(experiment: Path) -> str | None:
    """Make the state Tune will read whole, from the backup if need be. None when it is; else
    why the sweep cannot be resumed. Files set aside go to `.resume-state/broken-<time>/`."""
    files = newest_state_files(experiment)
    broken = [p for p in files.values() if not is_whole(p.read_bytes())]
    if EXPERIMENT_STATE in files and not broken:
        return None
    saved = newest_state_files(experiment / BACKUP)
    if EXPERIMENT_STATE not in saved or not all(is_whole(p.read_bytes()) for p in saved.values()):
        what = "a cut-off copy" if broken else "no copy"
        return (
            f"{experiment} holds {what} of Tune's experiment state and no whole backup of it "
            "(the sweep stopped before its first save completed)"
        )
    session = _session(saved[EXPERIMENT_STATE])
    aside = experiment / BACKUP / f"broken-{time.strftime('%Y%m%d-%H%M%S')}"
    for path in experiment.iterdir():
        if STATE_FILE.match(path.name) and (path in broken or _session(path) > session):
            aside.mkdir(exist_ok=True)
            shutil.move(str(path), aside / path.name)
    for path in saved.values():
        _write_atomic(experiment / path.name, path.read_bytes())
    return None
