"""Build REPORT.md from every experiment in a results root: figures, tables and numbers from data.

python -m plotting.report results/ --out report/

Sections follow the assignment (sanity checks, data and splits, add/sub, grokking, ablations,
what makes grokking faster), then any other experiment found, then `discussion.md` from the
output folder when there is one. A missing experiment is named, with the command that makes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from grok.cli import Parser, fail
from grok.config import (
    Config,
    ConfigError,
    TaskConfig,
    apply_overrides,
    load_config,
    load_experiment,
)
from grok.data import SPLITS, build_splits, describe
from grok.select import EXPERIMENT_FILE
from grok.storage import fetch, local_view
from grok.train import MANIFEST
from plotting import curves, grok_steps, search, tables
from plotting.results import NotAnExperiment, Results, is_experiment, load
from plotting.tables import fmt_mean_sd, fmt_steps, markdown_table, status_counts

DATA = "data"  # the data-and-splits section, between the sanity checks and add/sub
PARTS = (
    ("1. Sanity checks (Part 1.5)", ("sanity_memorize", "sanity_mask3")),
    ("2. Data and splits (Part 2.1)", (DATA,)),
    ("3. Addition and subtraction (Part 2.2)", ("addsub",)),
    ("4. Grokking on division (Part 2.3)", ("division_grokking",)),
    ("5. Ablations (Part 2.4)", ("ablation_wd", "ablation_data_fraction", "ablation_dropout")),
    (
        "6. What makes grokking faster (Part 2.4)",
        (
            "ablation_grokfast",
            "search_fast_grok",
            "confirm_paper_recipe",
            "confirm_fast_grok",
            "ablation_init_scale",
            "ablation_wd_kind",
            "ablation_tokenizer",
        ),
    ),
)
FULL_BUDGET = 100_000  # the assignment's step budget
DISCUSSION = "discussion.md"  # written by people from the numbers; included when present
WEIGHTS = "weights"  # weights-only checkpoints (python -m grok.export) beside the report
ACC = "{:.4f}"  # accuracies, as in the tables
KNOWN = [name for _, names in PARTS for name in names if name != DATA]
INTROS = {
    "sanity_memorize": "A one-layer model trained on the single string 'I love machine "
    "learning': the training loss should go to about 0 and greedy generation from the empty "
    "prompt should give the string back exactly.",
    "sanity_mask3": "The same string with the loss masked on its first 3 tokens: prompted with "
    "those 3 characters, the model should complete the string.",
    "addsub": "Modular addition and subtraction with 1- and 2-layer models (d_model 128, d_ff "
    "512, 4 heads), p = 97 and 113, 3 seeds each.",
    "division_grokking": "x/y mod 97 with the paper's recipe: train accuracy reaches 100% early, "
    "test accuracy follows much later (Power et al. 2022, Fig. 1).",
    "ablation_wd": "Weight decay against steps-to-grok on x/y mod 97.",
    "ablation_data_fraction": "Fraction of equations used for training against steps-to-grok "
    "on x/y mod 97.",
    "ablation_dropout": "Dropout against steps-to-grok on x/y mod 97.",
    "ablation_grokfast": "Grokfast gradient filters (Lee et al. 2024) against steps-to-grok on "
    "x/y mod 97: none, an exponential moving average (EMA) and a windowed mean (MA) of the "
    "gradients, amplified and added back before the optimizer step.",
    "search_fast_grok": "An Optuna (TPE) search over learning rate, weight decay, dropout and "
    "batch size for the recipe that groks x/y mod 97 in the fewest steps.",
    "confirm_paper_recipe": "The paper's recipe on x/y mod 97 with seeds the search never saw: "
    "the baseline for the search's recipe.",
    "confirm_fast_grok": "The search's fastest recipe on x/y mod 97, the same fresh seeds.",
    "ablation_init_scale": "The initial weights times a factor (Liu et al. 2022, Omnigrok) "
    "against steps-to-grok on x/y mod 97.",
    "ablation_wd_kind": "Decoupled (AdamW) against coupled (Adam with L2) weight decay, toward "
    "zero against toward the initial weights, on x/y mod 97.",
    "ablation_tokenizer": "One token per number against one token per character (the answer "
    "then several tokens, scored by exact match) on x/y mod 97.",
}


def others(root: Path) -> list[str]:
    """Experiment folders the assignment does not name (moved-aside `*.old-*` copies skipped)."""
    return sorted(
        d.name
        for d in root.iterdir()
        if d.name not in KNOWN and ".old-" not in d.name and is_experiment(d)
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


def generated_text(res: Results, task: TaskConfig) -> str:
    """What the best checkpoint of a text task generates from the unmasked prefix."""
    from grok.inference import complete  # torch: loaded only when a sanity run is present
    from grok.select import SelectionError, find_checkpoint
    from grok.train import CheckpointError, load_model

    prompt = (task.text or "")[: task.mask_first]
    metric = "val/acc" if res.has("val/acc") else "train/acc"
    command = f'python infer.py {res.folder} --prompt "{prompt}"'
    command += "" if metric == "val/acc" else f" --metric {metric}"
    try:
        found = find_checkpoint(res.folder, metric)
        fetch(found.checkpoint)  # a mirror of a remote root holds no tensors until asked
        model, cfg = load_model(found.checkpoint)
        text = prompt + complete(model, cfg, [prompt])[0]
    except (SelectionError, CheckpointError, ConfigError, ValueError) as err:
        return f"No string could be generated (`{command}`): {err}."
    verdict = "exactly the training string" if text == task.text else f"not `{task.text}`"
    return (
        f"`{command}` ({found.note}) generates `{text}`: {verdict}. "
        f"Checkpoint: `{found.checkpoint}`."
    )


def checkpoint_text(res: Results) -> str:
    """Where the best trial's best checkpoint is, for infer.py (a deliverable of each part)."""
    from grok.select import SelectionError, find_checkpoint

    try:
        found = find_checkpoint(res.folder)
    except SelectionError as err:
        return f"No checkpoint to point to: {err}."
    return (
        f"Best checkpoint: `{found.checkpoint}` ({found.note}). "
        f"Its greedy accuracy per split: `python infer.py {res.folder} --eval`."
    )


def sanity_text(res: Results) -> list[str]:
    """Final training loss per trial, and the generated string of a text task."""
    last = res.frame.groupby("trial", sort=False).tail(1)
    lines = [
        f"- `{r['trial']}`: final train loss {r['train/loss']:.3g} at step {fmt_steps(r['step'])}"
        f", train accuracy {r['train/acc']:.4f} ({r['status']})."
        for r in last.to_dict("records")
    ]
    cfg = base_config(res)
    if cfg is not None and cfg.task.kind == "text":
        lines += ["", generated_text(res, cfg.task)]
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
            line += f"; {grok_steps.censored_text(r)} (censored)"
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


def budget_text(res: Results) -> str:
    """The run's step budget against its file's and the assignment's, with the full command."""
    cfg = base_config(res)
    if cfg is None or cfg.task.kind != "modular":
        return ""
    steps = cfg.train.steps
    try:
        file_steps = load_experiment(res.source).base.train.steps
    except (ConfigError, OSError):
        file_steps = None
    if steps >= FULL_BUDGET or file_steps is None or steps >= file_steps:
        return f"Budget: {steps} steps per trial, as in the experiment file."
    full = f"`python tune_main.py {res.source}`"
    theirs = f"the file's {file_steps}" + (
        " (the assignment's budget)"
        if file_steps == FULL_BUDGET
        else f" (the assignment's is {FULL_BUDGET})"
    )
    return (
        f"Budget: {steps} steps per trial here, below {theirs}, so that the whole study runs "
        f"in about 2 hours on a 2-core CPU; a run that has not grokked by then is censored, not "
        f"failed. The full budget: {full}."
    )


def weights_text(res: Results, out: Path) -> str:
    """The shipped weights-only model of this experiment, if any, and how to query it."""
    folder = out / WEIGHTS / res.name
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return ""
    try:
        cfg = load_config(folder / "config.yaml")
        step = json.loads(manifest.read_text()).get("step")
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


def experiment_section(res: Results, out: Path) -> str:
    lines = [f"### {res.name}", ""]
    lines += [INTROS.get(res.name) or res.meta.get("description") or "", ""]
    lines += [f"Experiment file: `{res.source}`. Command: `{res.command}`.", ""]
    budget = budget_text(res)
    if budget:
        lines += [budget, ""]
    if res.trials.empty or res.frame.empty:
        return "\n".join(lines + [f"No trial in `{res.folder}` has reported yet.", ""])
    lines += [f"Trials: {status_counts(res.trials['status'])} (results in `{res.folder}`).", ""]
    metrics_csv = out / f"{res.name}_metrics.csv"
    res.frame.to_csv(metrics_csv, index=False)
    lines += [f"Every trial's metrics at every evaluation: `{metrics_csv.name}`.", ""]
    prefix = f"{res.name}_"
    for kind, path in curves.write(res, out, prefix).items():
        lines += [f"![{res.name} {kind}]({path.name})", ""]
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
        lines += sanity_text(res) + [""]
    return "\n".join(lines)


def task_label(task: TaskConfig) -> str:
    if task.kind == "modular":
        return f"a{task.op}b mod {task.p}"
    if task.kind == "text":
        return f"text {task.text!r}" + (
            f", first {task.mask_first} masked" if task.mask_first else ""
        )
    return f"lines of {task.path}"


def data_section(present: list[Results]) -> str:
    """Split sizes of every task of the experiments present; how the data is made, per op and p."""
    tasks: dict[str, tuple[TaskConfig, list[str]]] = {}
    for op in "+-/":  # the assignment's six datasets, with the default splits, always listed
        for prime in (97, 113):
            task = replace(TaskConfig(), op=op, p=prime)
            tasks[repr(task)] = (task, [])
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


def build(root: Path, out: Path) -> Path:
    """Write out/REPORT.md and its figures and tables; its path."""
    out.mkdir(parents=True, exist_ok=True)
    extra = others(root)
    loaded: dict[str, Results | str] = {}
    for name in KNOWN + extra:
        if (root / name).is_dir():
            try:
                loaded[name] = load(root / name)
            except NotAnExperiment as err:
                loaded[name] = str(err)
    present = [r for r in loaded.values() if isinstance(r, Results)]
    absent = [n for n in KNOWN if n not in loaded]
    lines = [
        "# Report: training small transformers and grokking",
        "",
        f"Built by `python -m plotting.report {root} --out {out}` from the result folders in "
        f"`{root}`. Present: {', '.join(r.name for r in present) or 'none'}. "
        f"Missing: {', '.join(absent) or 'none'}.",
        "",
        "Each section names its experiment file and the command that ran it; `bash "
        "scripts/study.sh` runs them all with these budgets (two at a time on one local Ray "
        "head, hence `--address auto --max-concurrent 1`, which change no number: every trial "
        "is seeded and runs on one thread) and rebuilds this report. The search is the "
        "exception: the points it samples depend on the order its results come back.",
        "",
    ]
    parts = list(PARTS) + [("7. Other experiments", tuple(extra))]
    for title, part in parts:
        lines += [f"## {title}", ""]
        if part == (DATA,):
            lines += [data_section(present)]
            continue
        if not part:
            lines += ["None found.", ""]
        for name in part:
            found = loaded.get(name)
            if found is None:
                lines += [missing_section(name, root)]
            elif isinstance(found, str):
                lines += [f"### {name}\n\n**Unreadable:** {found}\n"]
            else:
                lines += [experiment_section(found, out)]
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
    args = ap.parse_args(argv)
    try:
        root = local_view(args.root)  # a URI: read from a local mirror
    except (ValueError, OSError) as err:
        return fail(err)
    if not root.is_dir():
        return fail(f"{root}: no such folder")
    if (root / EXPERIMENT_FILE).is_file():
        return fail(f"{root} is one experiment; give the results root that holds it")
    print(build(root, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
