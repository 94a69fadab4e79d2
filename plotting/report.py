"""Build REPORT.md from every experiment in a results root: figures, tables and numbers from data.

python -m plotting.report results/ --out report/ [--study FILE]

The study file (default: OUT/study.yaml when there is one; see plotting/study.py) gives the
report's title, its parts and their experiments, each introduced by the study's words or by its
experiment file's own description. Any other experiment found follows, then `discussion.md` from
the output folder when there is one. A missing experiment is named, with the command that makes it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from grok.cli import Parser, fail, pipe_safe
from grok.config import ConfigError, TaskConfig
from grok.operations import operation
from grok.overrides import apply_overrides
from grok.results import (
    EXPERIMENT_FILE,
    is_experiment,
)
from grok.reuse import REUSED_FROM
from grok.storage import local_view
from plotting import claims, curves, fig1, grid_map, grok_steps, progress, search, tables
from plotting.frames import NotAnExperiment, Results, load
from plotting.sections import (
    base_config,
    budget_text,
    checkpoint_text,
    entry_lines,
    final_text,
    grok_text,
    measures_text,
    sanity_text,
    spikes_text,
    weights_text,
)
from plotting.study import Entry, Part, Study, load_study
from plotting.tables import markdown_table, status_counts

STUDY = "study.yaml"  # the study file, looked for in the output folder
# Sections written by people from the numbers, each included when its file is in the output
# folder: the summary after the introduction, the others after the experiments, numbered on.
SUMMARY = ("summary.md", "Summary")
CLOSING = (
    ("discussion.md", "Discussion"),
    ("modifications.md", "Modifications and challenges"),
    ("references.md", "References"),
)
REPRODUCTIONS = "Reproductions"  # the study's claims (plotting/claims.py), after the summary
WRITTEN = (SUMMARY[0], *(name for name, _ in CLOSING))


def others(root: Path, known: list[str]) -> list[str]:
    """Experiment folders the study does not name (moved-aside `*.old-*` copies skipped)."""
    return sorted(
        d.name
        for d in root.iterdir()
        if d.name not in known and ".old-" not in d.name and is_experiment(d)
    )


def missing_section(entry: Entry, root: Path) -> str:
    return (
        f"### {entry.name}\n\n**Missing:** `{root / entry.name}` was not found. Produce it with "
        f"`python tune_main.py {entry.file}`, then rebuild this report.\n"
    )


def experiment_section(res: Results, out: Path, study: Study | None = None) -> str:
    study = study or Study()
    lines = [f"### {res.name}", ""]
    lines += [study.intro_of(res.name) or res.meta.get("description") or "", ""]
    lines += [f"Experiment file: `{res.source}`. Command: `{res.command}`.", ""]
    lines += [code_text(res, study.entry(res.name)), ""]
    budget = budget_text(res, study)
    if budget:
        lines += [budget, ""]
    if res.trials.empty or res.frame.empty:
        return "\n".join(lines + [f"No trial in `{res.folder}` has reported yet.", ""])
    stopped = res.trials[res.trials["status"] == "interrupted"]
    at = ", ".join(f"`{t.trial}` at step {t.last_step:.0f}" for t in stopped.itertuples())
    at = f"; interrupted: {at}" if at else ""
    lines += [
        f"Trials: {status_counts(res.trials['status'])}{at} (results in `{res.origin}`).",
        "",
    ]
    reused = res.trials.dropna(subset=[REUSED_FROM])
    if len(reused):
        pairs = zip(reused["trial"], reused[REUSED_FROM])
        sources = ", ".join(f"`{trial}` from `{source}`" for trial, source in pairs)
        lines += [
            f"Reused, not trained ({len(reused)}: the same resolved config and training code as "
            f"a run already in the run store, replayed from it): {sources}.",
            "",
        ]
    metrics_csv = out / f"{res.name}_metrics.csv"
    res.frame.to_csv(metrics_csv, index=False)
    lines += [f"Every trial's metrics at every evaluation: `{metrics_csv.name}`.", ""]
    prefix = f"{res.name}_"
    if res.crowded:
        lines += [crowded_text(res, out, prefix), ""]
    for kind, path in curves.write(res, out, prefix).items():
        if kind == "measures":
            lines += [measures_text(res), ""]
        lines += [f"![{res.name} {kind}]({path.name})", ""]
        if kind == "fig1":
            lines += [fig1.delay_text(res), ""]
    lines += entry_lines(res, study.entry(res.name), out, prefix)
    moved = progress.write(res, out, prefix)
    if moved:
        lines += [moved["md"].read_text(), f"The same as CSV: `{moved['csv'].name}`.", ""]
    if res.searched:
        paths = search.write(res, out, prefix)
        lines += [f"![{res.name} search]({paths['png'].name})", "", paths["md"].read_text()]
    table, paths = tables.write(res, out, prefix)
    if res.crowded:  # a row per setting: in its own file, not in the report's text
        lines += [f"Final values per setting: `{paths['md'].name}`.", ""]
    else:
        lines += [paths["md"].read_text()] + ([final_text(table), ""] if final_text(table) else [])
    if res.has("test/acc"):
        summary, paths = grok_steps.write(res, out, prefix)
        if res.crowded:
            lines += [f"Steps-to-grok per setting: `{paths['summary'].name}`.", ""]
        else:
            lines += [f"![{res.name} steps-to-grok]({paths['png'].name})", ""]
            lines += grok_text(summary) + [""]
        lines += [spikes_text(res), ""]
        lines += [f"Per-trial crossings: `{paths['md'].name}`, `{paths['csv'].name}`.", ""]
        lines += [checkpoint_text(res), ""]
        shipped = weights_text(res, out)
        if shipped:
            lines += [shipped, ""]
    else:
        lines += sanity_text(res, out) + [""]
    return "\n".join(lines)


def crowded_text(res: Results, out: Path, prefix: str) -> str:
    """A grid with more groups than a figure shows a panel each for: its map where it has one
    (two varied keys), and where the per-setting numbers are."""
    text = (
        f"{res.settings} settings: more than a figure shows a panel each for, so there are no "
        f"per-setting curves or steps-to-grok figure (every report is in the metrics CSV)."
    )
    if grid_map.applies(res):
        paths = grid_map.write(res, out, prefix)
        text += (
            f"\n\n![{res.name} grid map]({paths['png'].name})\n\nThe map's cells as CSV: "
            f"`{paths['csv'].name}`."
        )
    return text


def code_text(res: Results, entry: Entry) -> str:
    """Which code trained the runs: the record's commit, else what the study says."""
    code = res.meta.get("code") or {}
    if code.get("commit"):
        changed = " with uncommitted changes to the training code" if code.get("changed") else ""
        return (
            f"Code: trained by commit {code['commit']}{changed} (training-code fingerprint "
            f"{code.get('fingerprint', '?')}); a rerun on other code may round differently."
        )
    if entry.code:
        return f"Code: {entry.code.strip()}"
    return "Code: not recorded."


def task_label(task: TaskConfig) -> str:
    if task.kind == "modular":
        return operation(task.op).label(task.p)
    if task.kind == "text":
        return f"text {task.text!r}" + (
            f", first {task.mask_first} masked" if task.mask_first else ""
        )
    return f"lines of {task.path}"


def data_section(present: list[Results], listed: list[TaskConfig]) -> str:
    """Split sizes of the `listed` tasks and of every task of the experiments present; how the
    data is made, per op and p."""
    from grok.data import SPLITS, describe, split_examples  # grok.data loads torch

    tasks: dict[str, tuple[TaskConfig, list[str]]] = {repr(t): (t, []) for t in listed}
    for res in present:
        base = base_config(res)
        if base is None:
            continue
        for values in res.trials[res.keys].to_dict("records"):
            task_values = {k: v for k, v in values.items() if k.startswith("task.")}
            task = apply_overrides(base, task_values, str(res.folder)).task
            tasks.setdefault(repr(task), (task, []))[1].append(res.name)
    head = ["task", "train fraction", "val fraction", "data seed", "total", *SPLITS, "experiments"]
    rows, described = [], {}
    for task, names in tasks.values():
        try:
            splits = split_examples(task)
        except ConfigError as err:
            rows.append([task_label(task), "-", "-", "-", str(err), "", "", "", ""])
            continue
        counts = [str(len(splits[s])) for s in SPLITS]
        total = str(sum(len(s) for s in splits.values()))
        fractions = [f"{task.train_fraction:g}", f"{task.val_fraction:g}", str(task.data_seed)]
        used = ", ".join(dict.fromkeys(names)) or "(none here)"
        rows.append([task_label(task), *fractions, total, *counts, used])
        # How the data is made, once per op and p (the table has every split's sizes).
        described.setdefault(task_label(replace(task, mask_first=0)), describe(task, splits))
    lines = [markdown_table(head, rows), ""]
    for title, text in described.items():
        lines += [f"#### {title}", "", text]
    lines += [
        "The splits of the assignment's six datasets are in [splits/](splits/): one folder "
        "per dataset, a gzipped CSV per split (columns a, op, b, c, text) and DESCRIPTION.md "
        "with the counts, written by `python -m grok.data experiments/datasets.yaml --out "
        "report/splits --compress` (a test checks that today's command writes the same bytes). "
        "Any experiment's splits: `python -m grok.data experiments/<name>.yaml --out "
        "splits/<name>`.",
        "",
    ]
    return "\n".join(lines)


def load_all(root: Path, names: list[str]) -> dict[str, Results | str]:
    """The experiments of `names` found in `root`, loaded; the error of an unreadable one."""
    loaded: dict[str, Results | str] = {}
    for name in names:
        if (root / name).is_dir():
            try:
                loaded[name] = load(root / name)
            except NotAnExperiment as err:
                loaded[name] = str(err)
    return loaded


def part_lines(part: Part, loaded: dict, present: list[Results], root: Path, out: Path, study):
    """One part of the report: its data section, or a section per experiment."""
    lines = [f"## {part.title}", ""]
    if part.data is not None:
        return lines + [data_section(present, part.data)]
    if not part.experiments:
        lines += ["None found.", ""]
    for entry in part.experiments:
        found = loaded.get(entry.name)
        if found is None:
            lines += [missing_section(entry, root)]
        elif isinstance(found, str):
            lines += [f"### {entry.name}\n\n**Unreadable:** {found}\n"]
        else:
            lines += [experiment_section(found, out, study)]
    return lines


def build(root: Path, out: Path, study: Study | None = None) -> Path:
    """Write out/REPORT.md and its figures and tables; its path."""
    study = study or Study()
    out.mkdir(parents=True, exist_ok=True)
    known = [e.name for e in study.entries]
    extra = others(root, known)
    loaded = load_all(root, known + extra)
    present = [r for r in loaded.values() if isinstance(r, Results)]
    absent = [n for n in known if n not in loaded]
    lines = [
        f"# {study.title}",
        "",
        f"Built by `python -m plotting.report {root} --out {out}` from the result folders in "
        f"`{root}`. Present: {', '.join(r.name for r in present) or 'none'}. "
        f"Missing: {', '.join(absent) or 'none'}.",
        "",
    ]
    if study.intro:
        lines += [study.intro.strip(), ""]
    if (out / SUMMARY[0]).is_file():
        lines += [f"## {SUMMARY[1]}", "", (out / SUMMARY[0]).read_text().strip(), ""]
    n = len(study.parts)
    title = f"{n + 1}. Other experiments" if n else "1. Experiments"
    parts = [*study.parts, Part(title, [Entry(name) for name in extra])]
    sections = []  # drawn first: the Reproductions section shows their figures
    for part in parts:
        sections += part_lines(part, loaded, present, root, out, study)
    if study.claims:
        lines += [f"## {REPRODUCTIONS}", "", *claims.section(study, loaded, out)]
    lines += sections
    number = len(parts)
    for name, title in CLOSING:
        if (out / name).is_file():
            number += 1
            lines += [f"## {number}. {title}", "", (out / name).read_text().strip(), ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


@pipe_safe
def main(argv: list[str] | None = None) -> int:
    ap = Parser(
        prog="python -m plotting.report",
        description="Build REPORT.md with the figures and tables of every experiment.",
    )
    ap.add_argument("root", help="the results root holding one folder per experiment (results/)")
    ap.add_argument("--out", default="report", help="output folder (default: report/)")
    ap.add_argument(
        "--study",
        help=f"the study file: parts, experiments, introductions (default: OUT/{STUDY} if "
        "present; else every experiment found, each introduced by its description)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        root = local_view(args.root)  # a URI: read from a local mirror
    except (ValueError, OSError) as err:
        return fail(err)
    if not root.is_dir():
        return fail(f"{root}: no such folder")
    if (root / EXPERIMENT_FILE).is_file():
        return fail(f"{root} is one experiment; give the results root that holds it")
    study_file = Path(args.study) if args.study else out / STUDY
    try:
        study = load_study(study_file) if args.study or study_file.is_file() else Study()
    except ConfigError as err:
        return fail(err)
    print(build(root, out, study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
