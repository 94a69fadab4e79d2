"""The study file: which experiments a report presents, in which parts, how each is introduced
and with which arguments it runs.

python -m plotting.study report/study.yaml      # the run queue: one tune_main.py argument line
                                                # per experiment, in report order
python -m plotting.study report/study.yaml --estimate   # trials, and a bound on the time
python -m plotting.study report/study.yaml addsub ablation_wd   # only these, in study order

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

STUDY_KEYS = ("title", "intro", "full_budget", "budget_reason", "parts", "claims")
PART_KEYS = ("title", "experiments", "data")
# an entry's string settings
TEXT_KEYS = ("name", "file", "intro", "args", "law", "fig1", "rank", "code")
ENTRY_KEYS = (*TEXT_KEYS, "run")
CLAIM_TEXT = ("experiment", "paper", "claim", "setting", "verdict", "reading", "figure")
CLAIM_KEYS = (*CLAIM_TEXT, "measures")
# "in progress": some of the claim's runs are in, no verdict yet (a long one run in parts).
VERDICTS = ("reproduced", "partly", "not reproduced", "contradicted", "in progress", "not run yet")
# An experiment's figures, the ones a claim may show.
FIGURES = ("grok_steps", "curves", "fig1", "progress", "measures", "grid_map")


@dataclass
class Entry:
    """One experiment of the study: results/<name>/, from its file (experiments/<name>.yaml
    unless `file` says otherwise)."""

    name: str
    file: str = ""  # the experiment file; empty: experiments/<name>.yaml
    intro: str = ""  # the report's introduction; empty: the experiment's own description
    args: str = ""  # extra tune_main.py arguments (budgets) the study runs it with
    law: str = ""  # a grid key to fit grokking time against in log-log (plotting/law.py)
    fig1: str = ""  # a group (e.g. wd=0.1) to draw as the paper's Fig. 1, beside the whole grid
    rank: str = ""  # a grid key (e.g. task.op) whose values are ranked by how fast they grok
    # False: presented, but run only when named (a run far longer than the rest of the study)
    run: bool = True
    # Which code trained the archived runs, where their record does not say (records made
    # before experiment.yaml kept the commit): printed in the section as written.
    code: str = ""

    def __post_init__(self):
        self.file = self.file or f"experiments/{self.name}.yaml"


@dataclass
class Claim:
    """A published claim and the study's experiment that tries it (the Reproductions section)."""

    experiment: str  # a study entry's name
    paper: str  # authors, year: how the table names the paper
    claim: str  # the claim with the paper's number and where it is (figure, table, section)
    setting: str  # what our setting is, in a line
    verdict: str  # one of VERDICTS
    reading: str = ""  # the paragraph beside the figure: what the runs show
    figure: str = "grok_steps"  # which of the experiment's figures (FIGURES) shows the claim
    # what the "ours" column gives per group: grok (the 99% test crossing), ratio (test over
    # train crossing), final:METRIC (its last value), peak:METRIC (the step of its maximum)
    measures: list[str] = field(default_factory=lambda: ["grok"])


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
    claims: list[Claim] = field(default_factory=list)  # the Reproductions table, in order

    @property
    def entries(self) -> list[Entry]:
        return [e for part in self.parts for e in part.experiments]

    def entry(self, name: str) -> Entry:
        """The study's entry for an experiment; a bare one for an experiment it does not name."""
        return next((e for e in self.entries if e.name == name), Entry(name))

    def intro_of(self, name: str) -> str:
        return self.entry(name).intro

    def only(self, names: list[str]) -> list[Entry]:
        """The entries named, in the study's order; when none are, all those the study runs
        (`run: false` ones only by name)."""
        known = [e.name for e in self.entries]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"{unknown[0]} is not an experiment of the study; it has {', '.join(known)}"
            )
        return [e for e in self.entries if e.name in names or (not names and e.run)]


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
        if not all(isinstance(item.get(k, ""), str) for k in TEXT_KEYS) or not item.get("name"):
            raise ConfigError(f"{where}.experiments[{i}]: {', '.join(TEXT_KEYS)} are strings")
        if not isinstance(item.get("run", True), bool):
            raise ConfigError(f"{where}.experiments[{i}]: run is true or false")
        entries.append(Entry(**item))
    data = None
    if "data" in raw:
        tasks = raw["data"] or []
        data = [build(TaskConfig, t, where, "data.") for t in tasks]
    return Part(raw["title"], entries, data)


def measure_ok(measure: Any) -> bool:
    """grok, ratio, final:METRIC, peak:METRIC or smallest:KEY."""
    if not isinstance(measure, str):
        return False
    kind, _, metric = measure.partition(":")
    return measure in ("grok", "ratio") or (kind in ("final", "peak", "smallest") and bool(metric))


def _claim(raw: Any, where: str, names: list[str]) -> Claim:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a claim is a mapping with {', '.join(CLAIM_KEYS)}")
    check_keys(raw, CLAIM_KEYS, where)
    for key in ("experiment", "paper", "claim", "setting", "verdict"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ConfigError(f"{where}: {key} is a non-empty string")
    if not all(isinstance(raw.get(k, ""), str) for k in CLAIM_TEXT):
        raise ConfigError(f"{where}: {', '.join(CLAIM_TEXT)} are strings")
    if raw["experiment"] not in names:
        raise ConfigError(f"{where}: {raw['experiment']} is not an experiment of the study")
    if raw["verdict"] not in VERDICTS:
        allowed = ", ".join(VERDICTS)
        raise ConfigError(f"{where}: verdict {raw['verdict']!r} is not one of {allowed}")
    if raw.get("figure", "grok_steps") not in FIGURES:
        raise ConfigError(f"{where}: figure {raw['figure']!r} is not one of {', '.join(FIGURES)}")
    measures = raw.get("measures", ["grok"])
    if not isinstance(measures, list) or not measures or not all(map(measure_ok, measures)):
        raise ConfigError(
            f"{where}: measures is a list of grok, ratio, final:METRIC, peak:METRIC, smallest:KEY"
        )
    return Claim(**{**raw, "measures": measures})


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
    claims = raw.get("claims") or []
    if not isinstance(claims, list):
        raise ConfigError(f"{source}: claims is a list")
    study.claims = [_claim(c, f"{source}: claims[{i}]", names) for i, c in enumerate(claims)]
    return study


BENCH_LINE = "2 concurrent 1-CPU trials, total"  # benchmarks/cpu-*.txt: two lanes' steps/s
FALLBACK_RATE = 23.5  # that line on a 2-core CPU (benchmarks/cpu-2026-11-30.txt)


def lanes_rate(bench_dir: Path = Path("benchmarks")) -> tuple[float, str]:
    """Steps/s of two 1-CPU trials together, from the newest CPU benchmark table."""
    for table in sorted(bench_dir.glob("cpu-*.txt"), reverse=True):
        for line in table.read_text().splitlines():
            if line.startswith(BENCH_LINE):
                return float(line[len(BENCH_LINE) :].split()[0]), str(table)
    return FALLBACK_RATE, "the default"


def estimate(entries: list[Entry]) -> list[str]:
    """Trials and the most steps each experiment can take, and the time that bounds on 2 lanes."""
    from grok.experiment import load_experiment

    lines, trials, steps = [], 0, 0
    for entry in entries:
        sets = [s.strip() for s in entry.args.split("--set")[1:]]
        exp = load_experiment(entry.file, sets)
        n, budget = exp.num_trials, exp.base.train.steps
        trials, steps = trials + n, steps + n * budget
        lines.append(f"  {entry.name}: {n} trial{'s' * (n != 1)}, at most {n * budget:,} steps")
    rate, source = lanes_rate()
    hours = steps / rate / 3600
    lines.append(
        f"{len(entries)} experiment{'s' * (len(entries) != 1)}, {trials} trials, at most "
        f"{steps:,} steps: at most {hours:.1f} hours at {rate:g} steps/s on two lanes "
        f"({source}); runs that stop soon after grokking take far less."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m plotting.study", description=__doc__.split("\n")[0])
    ap.add_argument("study", help="a study file, e.g. report/study.yaml")
    ap.add_argument(
        "--estimate", action="store_true", help="the number of trials and a bound on the time"
    )
    ap.add_argument("names", nargs="*", help="only these experiments (default: all)")
    args = ap.parse_intermixed_args(argv)
    try:
        entries = load_study(args.study).only(args.names)
        if args.estimate:
            print("\n".join(estimate(entries)))
            return 0
    except ConfigError as err:
        return fail(err)
    for entry in entries:
        print(f"{entry.file} {entry.args}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
