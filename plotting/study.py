"""The study file: which experiments a report presents, in which parts, how each is introduced
and with which arguments it runs.

python -m plotting.study report/study.yaml      # the run queue: one tune_main.py argument line
                                                # per experiment, in report order

`plotting.report` reads it for the report's structure; `scripts/study.sh` reads the queue, so the
list of experiments is written once. The format is described in docs/results.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grok.cli import Parser, fail
from grok.config import TaskConfig
from grok.schema import ConfigError, build, check_int, check_keys, read_mapping

STUDY_KEYS = ("title", "intro", "full_budget", "budget_reason", "parts")
PART_KEYS = ("title", "experiments", "data")
ENTRY_KEYS = ("name", "intro", "args")


@dataclass
class Entry:
    """One experiment of the study: results/<name>/, from experiments/<name>.yaml."""

    name: str
    intro: str = ""  # the report's introduction; empty: the experiment's own description
    args: str = ""  # extra tune_main.py arguments (budgets) the study runs it with

    @property
    def file(self) -> str:
        return f"experiments/{self.name}.yaml"


@dataclass
class Part:
    title: str
    experiments: list[Entry] = field(default_factory=list)
    data: list[TaskConfig] | None = None  # a data-and-splits section, these tasks always listed


@dataclass
class Study:
    title: str = "Report"
    intro: str = ""  # a paragraph after the report's header
    full_budget: int | None = None  # the step budget the study's questions were posed with
    budget_reason: str = ""  # why runs may use fewer steps than their files
    parts: list[Part] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        return [e for part in self.parts for e in part.experiments]

    def intro_of(self, name: str) -> str:
        return next((e.intro for e in self.entries if e.name == name), "")


def _part(raw: Any, where: str) -> Part:
    if not isinstance(raw, dict) or not isinstance(raw.get("title"), str):
        raise ConfigError(f"{where}: a part is a mapping with a title")
    check_keys(raw, PART_KEYS, where)
    entries = []
    for i, item in enumerate(raw.get("experiments") or []):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise ConfigError(f"{where}.experiments[{i}]: a name or {{name, intro, args}}")
        check_keys(item, ENTRY_KEYS, f"{where}.experiments[{i}]")
        if not all(isinstance(item.get(k, ""), str) for k in ENTRY_KEYS) or not item.get("name"):
            raise ConfigError(f"{where}.experiments[{i}]: name, intro and args are strings")
        entries.append(Entry(**item))
    data = None
    if "data" in raw:
        tasks = raw["data"] or []
        data = [build(TaskConfig, t, where, "data.") for t in tasks]
    return Part(raw["title"], entries, data)


def load_study(path: str | Path) -> Study:
    """Read and check a study file; ConfigError with one line naming what is wrong."""
    source = str(path)
    raw = read_mapping(path, "study file")
    check_keys(raw, STUDY_KEYS, source)
    study = Study(
        **{k: raw[k] for k in ("title", "intro", "budget_reason") if raw.get(k) is not None}
    )
    if raw.get("full_budget") is not None:
        study.full_budget = check_int(raw["full_budget"], 1, f"{source}: full_budget")
    study.parts = [_part(p, f"{source}: parts[{i}]") for i, p in enumerate(raw.get("parts") or [])]
    names = [e.name for e in study.entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{source}: {twice[0]} is listed twice")
    return study


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m plotting.study", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="a study file, e.g. report/study.yaml")
    args = ap.parse_args(argv)
    try:
        study = load_study(args.study)
    except ConfigError as err:
        return fail(err)
    for entry in study.entries:
        print(f"{entry.file} {entry.args}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
