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

The results folder may be on a local disk or in an object store (grok/storage.py): there a
file is written whole by its upload, and "moving aside" is a copy and a delete.

No Ray here: the sweep's callback (grok/tune.py) and grok/sweep.py call these functions.
"""

from __future__ import annotations

import json
import pickletools
import re
import time
from pathlib import Path

from grok.storage import Location, at

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
    """Copy the newest state files of Tune's `staging` folder into `experiment`'s backup folder,
    if all are whole. Returns whether it did; the backup keeps only this set."""
    files = newest_state_files(staging)
    if EXPERIMENT_STATE not in files:
        return False
    contents = {f.name: f.read_bytes() for f in files.values()}
    if not all(is_whole(data) for data in contents.values()):
        return False
    backup = at(experiment) / BACKUP
    for name, data in contents.items():
        (backup / name).write_bytes(data)
    for old in backup.names():  # an earlier session's files, or a dead writer's temp file
        if old not in contents:
            (backup / old).delete()
    return True


def repair_state(experiment: Path | Location) -> str | None:
    """Make the state Tune will read whole, from the backup if need be. None when it is; else
    why the sweep cannot be resumed. Files set aside go to `.resume-state/broken-<time>/`."""
    experiment = at(experiment)
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
