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

import pandas as pd

from grok.checkpoint import is_checkpoint, read_manifest
from grok.cli import Parser, fail
from grok.config import Config, ConfigError, TaskConfig, apply_overrides, load_config
from grok.experiment import load_experiment
from grok.metrics import direction, score_metric
from grok.operations import operation
from grok.results import (
    EXPERIMENT_FILE,
    SelectionError,
    best_trial,
    default_metric,
    find_checkpoint,
    is_experiment,
)
from grok.reuse import REUSED_FROM
from grok.storage import fetch, local_view
from plotting import curves, fig1, grok_steps, law, progress, search, tables
from plotting.frames import NotAnExperiment, Results, load
from plotting.study import Entry, Part, Study, load_study
from plotting.tables import fmt_mean_sd, fmt_steps, markdown_table, short, status_counts

STUDY = "study.yaml"  # the study file, looked for in the output folder
DISCUSSION = "discussion.md"  # written by people from the numbers; included when present
WEIGHTS = "weights"  # weights-only checkpoints (python -m grok.export) beside the report
ACC = "{:.4f}"  # accuracies, as in the tables


def others(root: Path, known: list[str]) -> list[str]:
    """Experiment folders the study does not name (moved-aside `*.old-*` copies skipped)."""
    return sorted(
        d.name
        for d in root.iterdir()
        if d.name not in known and ".old-" not in d.name and is_experiment(d)
    )


def missing_section(name: str, root: Path) -> str:
    return (
        f"### {name}\n\n**Missing:** `{root / name}` was not found. Produce it with "
        f"`python tune_main.py experiments/{name}.yaml`, then rebuild this report.\n"
    )


def base_config(res: Results) -> Config | None:
    try:
        return Config.from_dict(res.meta["config"], str(res.folder))
    except (KeyError, ConfigError):
        return None


def generated_text(res: Results, task: TaskConfig, out: Path) -> str:
    """What the best checkpoint of a text task generates from the unmasked prefix (for an
    archive, which has no checkpoints: the weights shipped beside the report)."""
    from grok.checkpoint import CheckpointError, load_model
    from grok.inference import complete  # torch: loaded only when a sanity run is present

    prompt = (task.text or "")[: task.mask_first]
    metric = score_metric(res.has("val/acc"))
    shipped = out / WEIGHTS / res.name
    source = shipped if res.archived and is_checkpoint(shipped) else res.folder
    command = f'python infer.py {source} --prompt "{prompt}"'
    command += "" if metric == "val/acc" or source == shipped else f" --metric {metric}"
    try:
        found = find_checkpoint(source, metric)
        fetch(found.checkpoint)  # a mirror of a remote root holds no tensors until asked
        model, cfg = load_model(found.checkpoint)
        text = prompt + complete(model, cfg, [prompt])[0]
    except (SelectionError, CheckpointError, ConfigError, ValueError) as err:
        return f"No string could be generated (`{command}`): {err}."
    verdict = "exactly the training string" if text == task.text else f"not `{task.text}`"
    return (
        f"`{command}`{f' ({found.note})' if found.note else ''} generates `{text}`: {verdict}. "
        f"Checkpoint: `{found.checkpoint}`."
    )


def checkpoint_text(res: Results) -> str:
    """Where the best trial's best checkpoint is, for infer.py (a deliverable of each part)."""
    if res.archived:  # no checkpoints in an archive: the best trial, from its reports
        metric = default_metric(res.folder)
        try:
            best, last = best_trial(res.folder, metric, direction(metric))
        except SelectionError as err:
            return f"No trial to point to: {err}."
        return (
            f"Best trial by {metric}: `{best.name}` (last {metric} = {last.get(metric)}). "
            f"Checkpoints are not archived: they stay in `{res.origin}` where the sweep ran "
            f"(`python infer.py {res.origin} --eval` there)."
        )
    try:
        found = find_checkpoint(res.folder)
    except SelectionError as err:
        return f"No checkpoint to point to: {err}."
    return (
        f"Best checkpoint: `{found.checkpoint}` ({found.note}). "
        f"Its greedy accuracy per split: `python infer.py {res.folder} --eval`."
    )


def sanity_text(res: Results, out: Path) -> list[str]:
    """Final training loss per trial, and the generated string of a text task."""
    last = res.frame.groupby("trial", sort=False).tail(1)
    lines = [
        f"- `{r['trial']}`: final train loss {r['train/loss']:.3g} at step {fmt_steps(r['step'])}"
        f", train accuracy {r['train/acc']:.4f} ({r['status']})."
        for r in last.to_dict("records")
    ]
    cfg = base_config(res)
    if cfg is not None and cfg.task.kind == "text":
        lines += ["", generated_text(res, cfg.task, out)]
    return lines


def grok_text(summary: pd.DataFrame) -> list[str]:
    """One line per group and threshold, with the numbers of the steps-to-grok summary."""
    lines = []
    for r in summary.to_dict("records"):
        gap = fmt_mean_sd(r["steps_to_grok_mean"], r["steps_to_grok_sd"], "{:.0f}")
        line = f"- `{r['group']}`, {r['threshold']}%: {r['grokked']} of {r['runs']} runs grokked"
        if r["grokked"]:
            line += f", steps-to-grok {gap}"
        if r["censored"]:
            best = f"; best test {r['censored_best']}" if r.get("censored_best") else ""
            line += f"; {grok_steps.censored_text(r)} (censored{best})"
        lines.append(line + ".")
    return lines


def final_text(table: pd.DataFrame) -> str:
    acc = table.dropna(subset=["test/acc_mean"])
    if acc.empty:
        return ""
    if len(acc) == 1:
        r = acc.iloc[0]
        return f"Final test accuracy {fmt_mean_sd(r['test/acc_mean'], r['test/acc_sd'], ACC)}."
    lo, hi = acc.loc[acc["test/acc_mean"].idxmin()], acc.loc[acc["test/acc_mean"].idxmax()]
    return (
        f"Final test accuracy (mean over seeds) ranges from {ACC.format(lo['test/acc_mean'])} "
        f"(`{lo['group']}`) to {ACC.format(hi['test/acc_mean'])} (`{hi['group']}`)."
    )


def spikes_text(res: Results, reached: float = 0.99, below: float = 0.9) -> str:
    """How many runs fell back below `below` train accuracy at an evaluation after first reaching
    `reached`: the loss spikes (slingshots) of Adam-family training near zero loss."""
    spiky = []
    for trial, curve in res.frame.sort_values("step").groupby("trial", sort=False):
        acc = curve["train/acc"]
        after = curve[(acc.cummax() >= reached) & (acc < below)]
        if len(after):
            first = after.iloc[0]
            spiky.append(f"`{trial}` ({first['train/acc']:.2f} at step {int(first['step'])})")
    runs = res.frame["trial"].nunique()
    text = (
        f"Spikes: {len(spiky)} of {runs} runs fell back below {below:.0%} train accuracy at an "
        f"evaluation after first reaching {reached:.0%}"
    )
    if not spiky:
        return text + "."
    return f"{text}: {', '.join(spiky[:4])}{', ...' if len(spiky) > 4 else '.'}"


def budget_text(res: Results, study: Study) -> str:
    """The run's step budget against its file's and the study's full one, with the command."""
    cfg = base_config(res)
    if cfg is None or cfg.task.kind != "modular":
        return ""
    steps = cfg.train.steps
    try:
        file_steps = load_experiment(res.source).base.train.steps
    except (ConfigError, OSError):
        file_steps = None
    full_budget = study.full_budget
    if file_steps is None or steps >= file_steps or (full_budget and steps >= full_budget):
        return f"Budget: {steps} steps per trial, as in the experiment file."
    theirs = f"the file's {file_steps}"
    if full_budget:
        same = file_steps == full_budget
        theirs += " (the assignment's budget)" if same else f" (the assignment's is {full_budget})"
    why = f", {study.budget_reason}" if study.budget_reason else ""
    return (
        f"Budget: {steps} steps per trial here, below {theirs}{why}; a run that has not grokked "
        f"by then is censored, not failed. The full budget: `python tune_main.py {res.source}`."
    )


def weights_text(res: Results, out: Path) -> str:
    """The shipped weights-only model of this experiment, if any, and how to query it."""
    from grok.data import build_splits  # torch: loaded only when weights are shipped

    folder = out / WEIGHTS / res.name
    if not is_checkpoint(folder):
        return ""
    try:
        cfg = load_config(folder / "config.yaml")
        step = read_manifest(folder).get("step")
        test = build_splits(cfg.task)["test"]
    except (ConfigError, OSError, ValueError):
        return f"Weights in `{folder}` could not be read."
    # A held-out equation that is not trivial (no operand 0 or 1), for the command below.
    first = next((e for e in test.examples if (e.a or 0) > 1 and (e.b or 0) > 1), test.examples[0])
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    return (
        f"Shipped model: `{WEIGHTS}/{res.name}/` ({size:.1f} MB, weights only, seed "
        f"{cfg.seed}, step {step}). A held-out (test-split) equation: "
        f'`python infer.py {folder} --prompt "{first.prompt}"` should answer '
        f"`{first.prompt}{first.answer.rstrip()}`."
    )


def entry_lines(res: Results, entry: Entry, out: Path, prefix: str) -> list[str]:
    """What the study file asks of this experiment beyond the usual: a group's Fig. 1, a law."""
    lines = []
    if entry.fig1:
        lines += fig1.lines(res, entry.fig1, out, prefix)
    if entry.rank:
        lines += rank_lines(res, entry.rank)
    if entry.law:
        paths = law.write(res, entry.law, out, prefix)
        lines += [f"![{res.name} law]({paths['png'].name})", "", paths["md"].read_text()]
    return lines


def rank_lines(res: Results, key: str) -> list[str]:
    """The values of grid key `key` from the fastest to grok to the slowest."""
    if res.groups != [key]:
        return [f"(`rank: {key}` asks for a ranking by a grid key; this grid's: {res.groups})", ""]
    return [
        f"{short(key)} from the fastest to grok to the slowest: by the share of runs whose "
        "test accuracy reached 99%, then by the mean step at which it did; where no run got "
        "there, the closest first. Mean ± sd over the runs that reached each crossing.",
        "",
        grok_steps.ranking(res, grok_steps.crossings(res)),
        "",
    ]


def experiment_section(res: Results, out: Path, study: Study | None = None) -> str:
    study = study or Study()
    lines = [f"### {res.name}", ""]
    lines += [study.intro_of(res.name) or res.meta.get("description") or "", ""]
    lines += [f"Experiment file: `{res.source}`. Command: `{res.command}`.", ""]
    budget = budget_text(res, study)
    if budget:
        lines += [budget, ""]
    if res.trials.empty or res.frame.empty:
        return "\n".join(lines + [f"No trial in `{res.folder}` has reported yet.", ""])
    lines += [f"Trials: {status_counts(res.trials['status'])} (results in `{res.origin}`).", ""]
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
    for kind, path in curves.write(res, out, prefix).items():
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
    lines += [paths["md"].read_text()] + ([final_text(table), ""] if final_text(table) else [])
    if res.has("test/acc"):
        summary, paths = grok_steps.write(res, out, prefix)
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
    from grok.data import SPLITS, build_splits, describe  # torch: the splits are tensors

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
            splits = build_splits(task)
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
        "The split files (CSV per split, and this description) are written by "
        "`python -m grok.data experiments/<name>.yaml --out splits/<name>`.",
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
            lines += [missing_section(entry.name, root)]
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
    n = len(study.parts)
    title = f"{n + 1}. Other experiments" if n else "1. Experiments"
    parts = [*study.parts, Part(title, [Entry(name) for name in extra])]
    for part in parts:
        lines += part_lines(part, loaded, present, root, out, study)
    discussion = out / DISCUSSION
    if discussion.is_file():
        lines += [f"## {len(parts) + 1}. Discussion", "", discussion.read_text().strip(), ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


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
