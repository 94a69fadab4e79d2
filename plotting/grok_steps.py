"""Steps-to-grok per trial and per value of the varied setting, with censored runs kept.

python -m plotting.grok_steps results/ablation_wd [-o DIR]

Per trial and threshold (99% and 100%): the first evaluation at which train accuracy reaches it,
the first at which test accuracy does, and their difference. A run that never got there is
censored at the last step it reached: counted and drawn as such, never dropped or averaged.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grok.metrics import THRESHOLDS, crossing_key, first_crossing, pct, reached, steps_to_grok
from grok.splits import n_test
from plotting.figures import panel_title, save_png
from plotting.frames import (
    NotAnExperiment,
    Results,
    group_rows,
    plot_command,
    trial_task,
)
from plotting.tables import fmt_mean_sd, fmt_steps, markdown_table, missing, short

CROSSING_COLUMNS = ("threshold", "train_step", "test_step", "steps_to_grok", "censored")


def crossing(curve: pd.DataFrame, metric: str, threshold: float) -> int | None:
    """The first step `metric` reached `threshold`: as the trainer reported it (located between
    evaluations from its weight snapshots), else the first evaluation that shows it."""
    key = crossing_key(metric, threshold)
    if key in curve:
        reported = curve[key].dropna()
        if len(reported):
            return int(reported.iloc[0])
        if curve[metric].notna().any() and not any(reached(v, threshold) for v in curve[metric]):
            return None
    return first_crossing(curve["step"], curve[metric], threshold)


def closest(res: Results, trial: dict, curve: pd.DataFrame) -> dict:
    """How close a run came on the test split: its best accuracy and the split's size."""
    best = curve["test/acc"].max() if "test/acc" in curve else None
    task = trial_task(res, trial)
    return {"best_test": best, "test_size": None if task is None else n_test(task)}


def wrong_text(row: dict) -> str:
    """'best test 0.9987: 5 of 3725 wrong' for a run that never got every test equation right."""
    best, size = row.get("best_test"), row.get("test_size")
    if missing(best):
        return ""
    if missing(size):
        return f"; best test {best:.4f}"
    return f"; best test {best:.4f}: {wrong_of(best, size)} of {int(size)} wrong"


def wrong_of(best, size) -> int:
    """Test equations still wrong at a best test accuracy `best` over `size` of them."""
    return int(size) - round(float(best) * int(size))


def how_close(best, size) -> str:
    """'0.9987 (5 of 3725 wrong)': a censored run's best test accuracy; '' when unknown."""
    if missing(best):
        return ""
    if missing(size):
        return f"{best:.4f}"
    return f"{best:.4f} ({wrong_of(best, size)} of {int(size)} wrong)"


def closeness(censored: pd.DataFrame) -> str:
    """The best test accuracies of censored runs: each of up to three, else their range and
    the closest run."""
    known = censored.dropna(subset=["best_test"])
    pairs = list(zip(known["best_test"], known["test_size"]))
    if len(pairs) <= 3:
        return ", ".join(how_close(b, n) for b, n in pairs)
    best = max(pairs, key=lambda pair: pair[0])
    low = min(b for b, _ in pairs)
    return f"{low:.4f} to {how_close(*best)}"


def crossings(res: Results) -> pd.DataFrame:
    """One row per trial and threshold: crossings, steps-to-grok, censoring and the last step."""
    rows = []
    splits = [m for m in ("train/acc", "test/acc") if res.has(m)]
    for trial in res.trials.to_dict("records"):
        curve = res.frame[res.frame["trial"] == trial["trial"]]
        close = closest(res, trial, curve)
        for t in THRESHOLDS:
            first = {m: crossing(curve, m, t) for m in splits}
            train, test = first.get("train/acc"), first.get("test/acc")
            gap = steps_to_grok(train, test)
            rows.append(
                {
                    **{k: trial[k] for k in ("trial", *res.keys, "status")},
                    "threshold": pct(t),
                    "train_step": train,
                    "test_step": test,
                    "steps_to_grok": gap,
                    "censored": gap is None,
                    "last_step": trial["last_step"],
                    "budget": trial["budget"],
                    **close,
                }
            )
    columns = ["trial", *res.keys, "status", *CROSSING_COLUMNS, "last_step", "budget"]
    columns += ["best_test", "test_size"]
    return pd.DataFrame(rows, columns=columns).astype(
        {
            "train_step": "Int64",
            "test_step": "Int64",
            "steps_to_grok": "Int64",
            "test_size": "Int64",
        }
    )


def summarize(res: Results, cross: pd.DataFrame) -> pd.DataFrame:
    """Per group and threshold: runs, censored runs, and each crossing over the runs that
    reached it (steps-to-grok over the runs that grokked: censored ones are counted apart)."""
    rows = []
    for t in sorted(cross["threshold"].unique()):
        for label, values, runs in group_rows(res, cross[cross["threshold"] == t]):
            cens = runs[runs["censored"]]
            row = {**values, "group": label, "threshold": t, "runs": len(runs)}
            row["grokked"] = len(runs) - len(cens)
            row["censored"] = len(cens)
            row["censored_at"] = ", ".join(stopped_at(s) for s in cens["last_step"])
            row["censored_best"] = closeness(cens)
            for col in ("train_step", "test_step", "steps_to_grok"):
                got = runs[col].dropna().astype(float)
                row[f"{col}_mean"], row[f"{col}_sd"] = got.mean(), got.std()
                row[f"{col}_min"], row[f"{col}_max"] = got.min(), got.max()
            rows.append(row)
    return pd.DataFrame(rows)


def stopped_at(step) -> str:
    """The step a censored run was last seen at; an errored run may never have reported."""
    return "no report" if missing(step) else str(int(step))


def censored_text(row: dict) -> str:
    if not row["censored"]:
        return "0"
    return f"{row['censored']}: not by step {row['censored_at']}"


def steps_cell(row: dict, col: str) -> str:
    """'2537 ± 316'."""
    return fmt_mean_sd(row[f"{col}_mean"], row[f"{col}_sd"], "{:.0f}")


def markdown(res: Results, summary: pd.DataFrame, cross: pd.DataFrame) -> str:
    """The summary table (per group and threshold), then the per-trial table."""
    head = [short(k) for k in res.groups] + ["threshold", "runs", "censored"]
    head += ["train reaches at", "test reaches at", "steps-to-grok", "min-max"]
    rows = [
        [str(r[k]) for k in res.groups]
        + [f"{r['threshold']}%", str(r["runs"]), censored_text(r)]
        + [steps_cell(r, c) for c in ("train_step", "test_step", "steps_to_grok")]
        + [
            "-"
            if r["grokked"] == 0
            else f"{fmt_steps(r['steps_to_grok_min'])}-{fmt_steps(r['steps_to_grok_max'])}"
        ]
        for r in summary.to_dict("records")
    ]
    per_trial = [
        [r["trial"], r["status"], f"{r['threshold']}%", fmt_steps(r["train_step"])]
        + [fmt_steps(r["test_step"])]
        + [
            f"censored at {stopped_at(r['last_step'])}" + wrong_text(r)
            if r["censored"]
            else fmt_steps(r["steps_to_grok"])
        ]
        for r in cross.to_dict("records")
    ]
    trial_head = ["trial", "status", "threshold", "train reaches", "test reaches", "steps-to-grok"]
    return (
        "Steps-to-grok: the first step at which test accuracy reaches the threshold minus the "
        "first step at which train accuracy does. Means ± sd are over the runs that reached "
        "each threshold; censored runs did not grok within their budget (or before they "
        "stopped) and are counted, not averaged.\n\n"
        + markdown_table(head, rows)
        + "\n\nPer trial:\n\n"
        + markdown_table(trial_head, per_trial)
    )


def ranking(res: Results, cross: pd.DataFrame) -> str:
    """The groups from the fastest to grok to the slowest: by the share of runs whose test
    accuracy reached 99% (more first), then by the mean step at which it did; groups where no
    run got there come last, the closest first (best test accuracy). The 100% measure beside;
    censored runs are counted, never averaged in."""
    summary = summarize(res, cross).set_index(["group", "threshold"])
    ranked = []
    for label, values, runs in group_rows(res, cross[cross["threshold"] == 99]):
        r, full = summary.loc[(label, 99)], summary.loc[(label, 100)]
        closest = runs[runs["censored"]]["best_test"].dropna()
        if r["grokked"]:
            order = r["test_step_mean"]
        else:
            order = -(closest.max() if len(closest) else 0.0)
        row = [", ".join(str(values[k]) for k in res.groups) or label]
        row += [f"{r['grokked']} of {r['runs']}", steps_cell(r, "train_step")]
        row += [steps_cell(r, "test_step"), steps_cell(r, "steps_to_grok")]
        row += [f"{full['grokked']} of {full['runs']}", steps_cell(full, "steps_to_grok")]
        row += [", ".join(f"{b:.3f}" for b in closest) or "-"]
        ranked.append(((-r["grokked"] / r["runs"], order), row))
    head = [", ".join(short(k) for k in res.groups) or "runs", "test 99% reached"]
    head += ["train 99% at", "test 99% at", "steps-to-grok 99%", "test 100% reached"]
    head += ["steps-to-grok 100%", "best test accuracy, censored runs"]
    return markdown_table(head, [row for _, row in sorted(ranked, key=lambda item: item[0])])


def plotted(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's mark: grokked at its steps-to-grok; censored after train reached at the lower
    bound (last step - train step); censored before train reached: no value (drawn at the top)."""
    kind = (
        runs["censored"]
        .map({False: "grokked", True: "lower"})
        .where(~runs["censored"] | runs["train_step"].notna(), "never")
    )
    y = (
        runs["steps_to_grok"]
        .astype(float)
        .where(kind == "grokked", runs["last_step"] - runs["train_step"].astype(float))
    )
    return runs.assign(kind=kind, y=y)


def y_scale(values: pd.Series) -> str:
    """Log steps, as the field plots them; symlog if a run grokked in 0 or fewer steps."""
    values = values.dropna()
    if values.empty:
        return "linear"
    return "log" if (values > 0).all() else "symlog"


LEGEND = (
    Line2D([], [], marker="o", ls="", color="tab:blue", label="run (grokked)"),
    Line2D([], [], color="black", lw=2, label="mean of grokked runs"),
    Line2D([], [], marker="^", ls="", mfc="none", color="tab:red", label="censored: at least"),
    Line2D([], [], marker="x", ls="", color="tab:red", label="censored: train never reached"),
)


def plot(res: Results, cross: pd.DataFrame, path: Path) -> Path:
    """Steps-to-grok against the varied value, one panel per threshold; censored runs marked."""
    marks = plotted(cross)
    thresholds = sorted(marks["threshold"].unique())
    n_groups = len(list(group_rows(res, res.trials)))
    width = 2.5 + 1.1 * n_groups
    if n_groups > 6:  # many groups: the thresholds' panels one above the other
        fig = Figure(figsize=(width, 4.8 * len(thresholds)), layout="constrained")
        axes = fig.subplots(len(thresholds), 1, squeeze=False, sharey=True)[:, 0]
    else:
        fig = Figure(figsize=(len(thresholds) * width, 4.8), layout="constrained")
        axes = fig.subplots(1, len(thresholds), squeeze=False, sharey=True)[0]
    style = {
        "grokked": {"color": "tab:blue"},
        "lower": {"marker": "^", "facecolors": "none", "edgecolors": "tab:red", "s": 60},
        "never": {"marker": "x", "color": "tab:red"},
    }
    for ax, t in zip(axes, thresholds):
        labels = []
        for x, (label, _, runs) in enumerate(group_rows(res, marks[marks["threshold"] == t])):
            jitter = x + 0.06 * (pd.Series(range(len(runs)), runs.index) - (len(runs) - 1) / 2)
            for kind, opts in style.items():
                sel = runs["kind"] == kind
                y = runs.loc[sel, "y"] if kind != "never" else [0.96] * sel.sum()
                where = ax.get_xaxis_transform() if kind == "never" else ax.transData
                ax.scatter(jitter[sel], y, transform=where, zorder=3, **opts)
            grokked = runs.loc[runs["kind"] == "grokked", "y"]
            if len(grokked):
                ax.hlines(grokked.mean(), x - 0.25, x + 0.25, color="black", lw=2, zorder=2)
            censored = int(runs["censored"].sum())
            # One line per key of the group (`name=muon,lr=0.003,...`): side by side, a grid's
            # labels would run into their neighbours'.
            lines = re.split(r",(?=[\w.]+=)", label)
            labels.append(
                "\n".join(lines) + (f"\n{censored}/{len(runs)} censored" if censored else "")
            )
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_xlabel(", ".join(short(k) for k in res.groups) or "runs")
        panel_title(ax, f"threshold {t}%")
        ax.grid(alpha=0.3, axis="y")
        if marks.loc[(marks["threshold"] == t) & (marks["kind"] != "never"), "y"].isna().all():
            ax.text(
                0.5,
                0.5,
                "no steps-to-grok to show:\nevery run is censored",
                ha="center",
                transform=ax.transAxes,
                color="tab:red",
            )
    shown = marks.loc[marks["kind"] != "never", "y"]
    axes[0].set_yscale(y_scale(shown))
    if shown.isna().all():
        axes[0].set_yticks([])
    axes[0].set_ylabel("steps-to-grok (test step - train step)")
    fig.legend(handles=LEGEND, loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(f"{res.name}: steps from the train to the test accuracy threshold")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 120)
    return path


def write(res: Results, out: Path, prefix: str = "") -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write grok_steps.png (not for a crowded grid: a column per group), .csv (per trial),
    _summary.csv and .md to `out`; the summary and the paths."""
    cross = crossings(res)
    summary = summarize(res, cross)
    out.mkdir(parents=True, exist_ok=True)
    paths = {} if res.crowded else {"png": plot(res, cross, out / f"{prefix}grok_steps.png")}
    paths |= {
        "csv": out / f"{prefix}grok_steps.csv",
        "summary": out / f"{prefix}grok_steps_summary.csv",
        "md": out / f"{prefix}grok_steps.md",
    }
    cross.to_csv(paths["csv"], index=False)
    summary.to_csv(paths["summary"], index=False)
    paths["md"].write_text(markdown(res, summary, cross) + "\n")
    return summary, paths


def make(res: Results, out: Path, args) -> dict[str, Path]:
    if not res.has("test/acc"):
        raise NotAnExperiment(
            f"{args.folder}: no trial reports test/acc; steps-to-grok needs a test split"
        )
    return write(res, out)[1]


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.grok_steps", __doc__, make)


if __name__ == "__main__":
    sys.exit(main())
