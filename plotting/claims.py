"""The Reproductions section: each published claim the study tries, the paper's number beside ours.

The claims and their verdicts are the study file's (`claims:`, plotting/study.py): words written
after reading the runs. What is computed here from the runs is the "ours" column (per group of
the grid, over its seeds, censored runs counted apart), the compute the runs took, the figure
each claim points to and the command that makes it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from plotting import grid_map
from plotting.frames import Results, group_rows
from plotting.grok_steps import crossings, stopped_at
from plotting.study import Study
from plotting.tables import fmt_mean_sd, markdown_table, short

HEAD = ["paper", "claim (theirs)", "our setting", "ours", "verdict", "command", "compute here"]
THRESHOLD = 99  # the crossing the "ours" column reads (percent)


def seeds(rows: pd.DataFrame) -> str:
    return f"{len(rows)} seed{'s' * (len(rows) != 1)}"


def grok_cell(res: Results, cross: pd.DataFrame) -> list[str]:
    """Per group: the mean step of the 99% test crossing over the runs that made it; the
    censored runs counted, with the step each was last seen at."""
    parts = []
    for label, _, rows in group_rows(res, cross):
        done = rows.dropna(subset=["test_step"])
        cens = rows[rows["test_step"].isna()]
        text = f"{label}: "
        if len(done):
            steps = done["test_step"].astype(float)
            mean_sd = fmt_mean_sd(steps.mean(), steps.std(), "{:.0f}")
            text += f"test 99% at {mean_sd} ({seeds(done)})"
        if len(cens):
            at = ", ".join(stopped_at(s) for s in cens["last_step"])
            best = cens["best_test"].dropna().astype(float)
            span = f"{best.min():.3g}" + (f"-{best.max():.3g}" if best.max() > best.min() else "")
            best_text = f"; best test {span}" if len(best) else ""
            text += "; " * bool(len(done)) + f"{len(cens)} censored (not by {at}{best_text})"
        parts.append(text)
    return parts


def ratio_cell(res: Results, cross: pd.DataFrame) -> list[str]:
    """Per group: test crossing over train crossing (decades apart); a censored run gives the
    lower bound last step over train crossing."""
    parts = []
    for label, _, rows in group_rows(res, cross):
        rows = rows.dropna(subset=["train_step"])
        done = rows.dropna(subset=["test_step"])
        cens = rows[rows["test_step"].isna()]
        text = f"{label}: "
        if len(done):
            ratio = done["test_step"].astype(float) / done["train_step"].astype(float)
            text += f"test/train step {fmt_mean_sd(ratio.mean(), ratio.std(), '{:.3g}')}"
            text += f" ({seeds(done)})"
        if len(cens):
            bound = (cens["last_step"].astype(float) / cens["train_step"].astype(float)).min()
            text += "; " * bool(len(done)) + f"{len(cens)} censored (ratio > {bound:.3g})"
        if not len(rows):
            text += "train accuracy never reached 99%"
        parts.append(text)
    return parts


def smallest_cell(res: Results, key: str) -> list[str]:
    """Per value of the other varied key (a two-key grid, plotting/grid_map.py): the smallest
    value of `key` at which every ended run reached test 99%, and a smaller one where some did;
    runs not ended (running, interrupted) are left out and counted."""
    if key not in res.groups or not grid_map.applies(res):
        return [f"smallest:{key}: needs a grid of {key} and one other key"]
    table = grid_map.cells(res)
    other = next(k for k in res.groups if k != key)
    parts = []
    for value, rows in table.groupby(other, sort=False):
        rows = rows[rows["ended"] > 0].sort_values(key)
        every = rows[rows["reached"] == rows["ended"]]
        some = rows[rows["reached"] > 0]
        text = f"{short(other)}={value}: "
        if len(every):
            first = every.iloc[0]
            text += f"{first[key]:g} ({first['reached']}/{first['ended']})"
        else:
            text += f"none up to {rows[key].max():g}" if len(rows) else "no run ended"
        if len(some) and (not len(every) or some.iloc[0][key] < every.iloc[0][key]):
            part = some.iloc[0]
            text += f", {part['reached']}/{part['ended']} at {part[key]:g}"
        parts.append(text)
    waiting = int(table["not_ended"].sum())
    if waiting:
        parts.append(f"{waiting} run{'s' * (waiting != 1)} not ended, not counted")
    return parts


def per_trial_cell(res: Results, metric: str, peak: bool) -> list[str]:
    """Per group: the metric's last value (or the step of its maximum), mean ± sd over seeds."""
    if not res.has(metric):
        return [f"{metric}: not reported"]
    values = []
    for trial, curve in res.frame.groupby("trial", sort=False):
        curve = curve.dropna(subset=[metric])
        if len(curve):
            at = curve[metric].idxmax() if peak else curve.index[-1]
            values.append({"trial": trial, "v": curve.loc[at, "step" if peak else metric]})
    table = res.trials.merge(pd.DataFrame(values), on="trial")
    what = f"step of the peak of {metric}" if peak else f"last {metric}"
    parts = []
    for label, _, rows in group_rows(res, table):
        form = "{:.0f}" if peak else "{:.3g}"
        parts.append(
            f"{label}: {what} {fmt_mean_sd(rows['v'].mean(), rows['v'].std(), form)}"
            f" ({seeds(rows)})"
        )
    return parts


def ours(res: Results, measures: list[str]) -> str:
    cross = crossings(res) if res.has("test/acc") else None
    parts = []
    for measure in measures:
        kind, _, metric = measure.partition(":")
        if kind == "smallest":
            parts += smallest_cell(res, metric)
        elif kind in ("grok", "ratio"):
            if cross is None:
                parts.append("no test accuracy reported")
                continue
            at = cross[cross["threshold"] == THRESHOLD]
            parts += grok_cell(res, at) if kind == "grok" else ratio_cell(res, at)
        else:
            parts += per_trial_cell(res, metric, peak=kind == "peak")
    return "; ".join(parts)


def core_hours(res: Results) -> float:
    """The trials' own time (Tune's time_total_s, one CPU each), summed; 0 without it."""
    if "time_total_s" not in res.frame:
        return 0.0
    return float(res.frame.groupby("trial")["time_total_s"].max().sum()) / 3600


def compute_text(res: Results) -> str:
    hours = core_hours(res)
    return f"{hours:.2g} core-h, {len(res.trials)} runs" if hours else f"{len(res.trials)} runs"


def section(study: Study, loaded: dict, out: Path) -> list[str]:
    """The section's lines: the table, then each claim's figure and reading."""
    rows, body = [], []
    for n, claim in enumerate(study.claims, 1):
        entry = study.entry(claim.experiment)
        res = loaded.get(claim.experiment)
        command = f"`python tune_main.py {entry.file}`"
        ran = isinstance(res, Results) and not res.frame.empty
        cells = (ours(res, claim.measures), compute_text(res)) if ran else ("not run yet", "-")
        rows.append(
            [
                f"{n}. {claim.paper}",
                claim.claim,
                claim.setting,
                cells[0],
                claim.verdict,
                command,
                cells[1],
            ]
        )
        body += [f"### {n}. {claim.paper}: {claim.verdict}", ""]
        figure = out / f"{claim.experiment}_{claim.figure}.png"
        if ran and figure.is_file():
            body += [f"![{claim.experiment} {claim.figure}]({figure.name})", ""]
        elif ran:
            body += [f"**No figure:** `{figure.name}` was not drawn from these runs.", ""]
        body += [claim.reading.strip() or "No reading yet.", ""]
        if ran:
            body += [f"Every run: [{claim.experiment}](#{claim.experiment}) below.", ""]
    return [markdown_table(HEAD, rows), "", *body]
