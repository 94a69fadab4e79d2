"""The paragraphs of one experiment's section of the report, each from the experiment's data:
how its data was made, where its checkpoints are, its sanity checks, steps-to-grok, final
metrics, loss spikes, budget, shipped weights, a grid key's ranking, and the measures reported
beside accuracy (the local learning coefficient, stability, per-layer norms).

plotting/report.py assembles them into REPORT.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grok.checkpoint import is_checkpoint, read_manifest
from grok.config import Config, ConfigError, TaskConfig
from grok.experiment import load_experiment
from grok.metrics import direction, score_metric
from grok.overrides import load_config
from grok.results import (
    SelectionError,
    best_trial,
    default_metric,
    find_checkpoint,
)
from grok.storage import fetch
from plotting import curves, fig1, grok_steps, law
from plotting.frames import Results
from plotting.study import Entry, Study
from plotting.tables import fmt_mean_sd, fmt_steps, short

ACC = "{:.4f}"  # accuracies, as in the tables


def shown(value, metric: str) -> str:
    """A metric's value in a sentence, rounded as the tables round it."""
    if not isinstance(value, float):
        return str(value)
    return ACC.format(value) if "acc" in metric else f"{value:.4g}"


WEIGHTS = "weights"  # weights-only checkpoints (python -m grok.export) beside the report


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
        value = shown(last.get(metric), metric)
        return (
            f"Best trial by {metric}: `{best.name}` (last {metric} = {value}). "
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
    shown = ACC.format(lo["test/acc_mean"])
    if shown == ACC.format(hi["test/acc_mean"]):  # no range to name
        exact = lo["test/acc_mean"] == hi["test/acc_mean"]
        return (
            f"Final test accuracy (mean over seeds) is {shown} in every group"
            f"{'' if exact else ' (to the digits shown)'}."
        )
    return (
        f"Final test accuracy (mean over seeds) ranges from {ACC.format(lo['test/acc_mean'])} "
        f"(`{lo['group']}`) to {ACC.format(hi['test/acc_mean'])} (`{hi['group']}`)."
    )


def spikes_text(res: Results, reached: float = 0.99, below: float = 0.9) -> str:
    """How many runs fell back below `below` train accuracy at an evaluation after first reaching
    `reached`: the loss spikes (slingshots) of Adam-family training near zero loss. Listed by
    the step of their first fall, earliest first (then in grid order)."""
    spiky = []  # (step of the first spike, the trial's place in the grid, its text)
    for order, (trial, curve) in enumerate(res.frame.groupby("trial", sort=False)):
        curve = curve.sort_values("step", kind="stable")
        acc = curve["train/acc"]
        after = curve[(acc.cummax() >= reached) & (acc < below)]
        if len(after):
            first = after.iloc[0]
            text = f"`{trial}` ({first['train/acc']:.2f} at step {int(first['step'])})"
            spiky.append((int(first["step"]), order, text))
    spiky = [text for *_, text in sorted(spiky)]  # earliest spike first
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
    from grok.data import split_examples  # grok.data loads torch: only when weights are shipped

    folder = out / WEIGHTS / res.name
    if not is_checkpoint(folder):
        return ""
    try:
        cfg = load_config(folder / "config.yaml")
        step = read_manifest(folder).get("step")
        test = split_examples(cfg.task)["test"]
    except (ConfigError, OSError, ValueError):
        return f"Weights in `{folder}` could not be read."
    # A held-out equation that is not trivial (no operand 0 or 1), for the command below.
    first = next((e for e in test if (e.a or 0) > 1 and (e.b or 0) > 1), test[0])
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    return (
        f"Shipped model: `{WEIGHTS}/{res.name}/` ({size:.1f} MB, weights only, seed "
        f"{cfg.seed}, step {step}). A held-out (test-split) equation: "
        f'`python infer.py {folder} --prompt "{first.prompt}"` should answer '
        f"`{first.prompt}{first.answer.rstrip()}`."
    )


def measures_text(res: Results) -> str:
    """What the measures figure shows, with the last value of each measure (mean over the runs
    and their range)."""
    last = res.frame.groupby("trial", sort=False).last()  # each metric's last reported value
    values = []
    for metric in (m for ms in curves.measure_panels(res).values() for m in ms):
        v = last[metric].dropna()
        spread = f" (runs {v.min():.3g} to {v.max():.3g})" if len(v) > 1 else ""
        values.append(f"`{metric}` {v.mean():.3g}{spread}")
    llc = (
        "The local learning coefficient (`llc/mean`, devinterp's SGLD estimate at each "
        "checkpoint, docs/lab.md) is lower for a simpler, more degenerate solution. "
        if res.has("llc/mean")
        else ""
    )
    return (
        f"{llc}Measures beside accuracy, by step; their last values, mean over the runs: "
        + "; ".join(values)
        + "."
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
