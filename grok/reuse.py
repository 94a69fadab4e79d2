"""Finished runs shared between experiments: a trial whose whole resolved config and training
code are those of a run already in the store is not trained again. Its reports are replayed into
the new trial, each saying where it came from (`reused_from`), and the stored run's final
checkpoint becomes the trial's.

    python tune_main.py experiments/ablation_wd.yaml --reuse results/.reuse

The store is a folder or an object-store URI (grok/storage.py). A run is filed under a key:
the SHA-256 of the resolved config (every setting, the seed included, as canonical JSON) and of
the training code (the source of the modules below and the torch version), so a changed setting,
a code change or another torch gives another key and a fresh run; nothing is matched loosely.
Entry `<store>/<key>/`: `reports.jsonl` (every report, in order), `checkpoint/` (the final one)
and `origin.json`, written last: an entry without it is incomplete and never read.
No torch and no Ray here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from grok.storage import Location, at

REUSED_FROM = "reused_from"  # in a replayed report: `<experiment>/<trial>` of the stored run
# The modules whose code decides a run's numbers: settings, data, model, training, metrics.
TRAINING_CODE = (
    "schema.py",
    "config.py",
    "overrides.py",
    "operations.py",
    "splits.py",
    "tokenizer.py",
    "data.py",
    "model.py",
    "grokfast.py",
    "optimizers.py",
    "losses.py",
    "stability.py",
    "llc.py",
    "fourier.py",
    "crossings.py",
    "metrics.py",
    "checkpoint.py",
    "train.py",
)
REPORTS, ORIGIN, CHECKPOINT = "reports.jsonl", "origin.json", "checkpoint"


@cache
def code_fingerprint() -> str:
    """SHA-256 of the training code's source and the torch version it runs on."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in TRAINING_CODE:
        h.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    h.update(importlib.metadata.version("torch").encode())
    return h.hexdigest()


def run_key(config: dict[str, Any], fingerprint: str | None = None) -> str:
    """The store's key of a run: its resolved config (Config.to_dict()) and the code."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(text.encode() + b"\0" + (fingerprint or code_fingerprint()).encode())
    return h.hexdigest()[:40]


@dataclass(frozen=True)
class StoredRun:
    reports: list[dict[str, Any]]
    checkpoint: Location  # a folder
    origin: dict[str, Any]  # experiment, trial, date, config, code

    @property
    def source(self) -> str:
        return f"{self.origin['experiment']}/{self.origin['trial']}"


class RunStore:
    def __init__(self, place: str | Path | Location):
        self.root = at(place)

    def find(self, key: str) -> StoredRun | None:
        entry = self.root / key
        if not (entry / ORIGIN).is_file():
            return None
        origin = json.loads((entry / ORIGIN).read_text())
        lines = (entry / REPORTS).read_text().splitlines()
        return StoredRun([json.loads(line) for line in lines if line], entry / CHECKPOINT, origin)

    def put(
        self, key: str, reports: list[dict[str, Any]], checkpoint: Path, origin: dict[str, Any]
    ) -> None:
        """File a finished run: its reports and checkpoint first, its origin last."""
        entry = self.root / key
        (entry / REPORTS).write_text("".join(json.dumps(r) + "\n" for r in reports))
        at(checkpoint).copy_to(entry / CHECKPOINT)
        (entry / ORIGIN).write_text(json.dumps(origin, indent=1, sort_keys=True) + "\n")

    def fetch_checkpoint(self, run: StoredRun, dest: Path) -> Path:
        """The stored run's checkpoint copied into the local folder `dest`."""
        run.checkpoint.copy_to(at(dest))
        return dest
