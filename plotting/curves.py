"""Training curves: accuracy, loss (and the weight norm) against steps, one row per varied value.

python -m plotting.curves results/ablation_wd [-o DIR] [--no-param-norm]

Seeds are drawn as thin lines, with their mean and min-max band. A run that stopped before the
others (it grokked and settled, or its budget was smaller) carries its last value to the end of
the longest: the mean is drawn to the end of every run, never cut at the shortest one's end.
Division experiments whose only varying key is the seed also get a figure in the manner of Fig. 1
of Power et al. 2022 (train and held-out accuracy, log steps; its title names the optimizer, the
weight decay and the budget). Runs that report the progress measures (`analysis.progress`,
docs/progress.md) get them drawn under their accuracy curves on the same log-step axis
(progress.png); runs that report the local learning coefficient
(`llc/mean`), the stability measures (`stability/...`) or per-layer norms (`norm/<layer>`) get
them beside their accuracy (measures.png, docs/lab.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from grok.cli import Parser
from plotting.figures import log_scale, panel_grid, panel_title, save_png
from plotting.frames import (
    Results,
    group_rows,
    plot_command,
)
from plotting.grok_steps import crossing

COLORS = {"train": "tab:red", "test": "tab:green"}  # the paper's Fig. 1 colours


def seed_curves(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Steps x trials table of one metric (steps > 0, for a log axis)."""
    rows = rows[rows["step"] > 0]
    return rows.pivot_table(index="step", columns="trial", values=metric, dropna=False)


def draw(ax: Axes, rows: pd.DataFrame, metric: str, color: str, label: str) -> None:
    """Each seed thin; mean and min-max band from the step every seed has reported on, each
    seed's last value carried (between its evaluations and after its last one)."""
    if metric not in rows or rows[metric].isna().all():
        return
    wide = seed_curves(rows, metric)
    if wide.shape[1] == 1:
        ax.plot(wide.index, wide.iloc[:, 0], color=color, lw=1.5, label=label)
        return
    for trial in wide:
        own = wide[trial].dropna()  # its own steps: seeds that stop early evaluate elsewhere
        ax.plot(own.index, own, color=color, lw=0.6, alpha=0.35)
    common = wide.sort_index().ffill().dropna()
    ax.fill_between(common.index, common.min(axis=1), common.max(axis=1), color=color, alpha=0.2)
    ax.plot(common.index, common.mean(axis=1), color=color, lw=1.8, label=f"{label} (mean)")


def plot_curves(res: Results, path: Path, param_norm: bool = True) -> Path:
    """One row per group: accuracy, loss, and (if reported and asked for) the parameter norm."""
    panels = ["acc", "loss"] + (["param_norm"] if param_norm and res.has("param_norm") else [])
    groups = list(group_rows(res, res.frame))
    several = any(rows["trial"].nunique() > 1 for _, _, rows in groups)
    runs = "the searched recipes' runs" if res.searched else "seeds"
    note = (
        f": thin lines are {runs}; band: min-max over them; a run that stopped early carries "
        "its last value"
        if several
        else ""
    )
    fig = panel_grid(len(groups), len(panels), 3.3, 2.1, res.name + note)
    axes = fig.subplots(len(groups), len(panels), squeeze=False, sharex=True)
    for row, (label, _, rows) in zip(axes, groups):
        seeds = rows["trial"].nunique()
        for ax, panel in zip(row, panels):
            if panel == "param_norm":
                draw(ax, rows, "param_norm", "tab:purple", "weights")
                ax.set_ylabel("parameter norm (L2)")
            else:
                for split in ("train", "test"):
                    draw(ax, rows, f"{split}/{panel}", COLORS[split], split)
                ax.set_ylabel("accuracy" if panel == "acc" else "loss (log)")
            if panel == "acc":
                ax.set_ylim(-0.02, 1.02)
            log_scale(ax, "x")
            if panel == "loss":
                log_scale(ax, "y", minor_labels=True)
            ax.grid(alpha=0.3, which="major")
            panel_title(ax, f"{label} ({seeds} run{'s' * (seeds != 1)})", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("optimization step (log)")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 110)
    return path


def wants_fig1(res: Results) -> bool:
    """Division on one setting over seeds: the paper's Fig. 1 setting (not a search's recipes)."""
    task = res.meta.get("config", {}).get("task", {})
    one_recipe = not res.groups and not res.searched
    return task.get("op") == "/" and one_recipe and res.has("test/acc")


def plot_fig1(res: Results, path: Path, note: str = "") -> Path:
    """Train and held-out accuracy against steps on a log axis, as in Power et al. Fig. 1."""
    task = res.meta.get("config", {}).get("task", {})
    fig = Figure(figsize=(6.4, 4.4), layout="tight")
    ax = fig.subplots()
    draw(ax, res.frame, "train/acc", COLORS["train"], "train")
    draw(ax, res.frame, "test/acc", COLORS["test"], "test (held out)")
    # Mark the mean step at which the seeds first reach 99% (the crossings the trainer
    # reported, as in the steps-to-grok table): the gap between the lines is the grokking.
    trials = [curve for _, curve in res.frame.groupby("trial")]
    for split in ("train", "test"):
        steps = [crossing(curve, f"{split}/acc", 0.99) for curve in trials]
        steps = [s for s in steps if s is not None]
        if steps:
            step = round(sum(steps) / len(steps))
            ax.axvline(step, color=COLORS[split], ls=":", lw=1)
            text = f" {split} 99%: mean\n step {step} ({len(steps)}/{len(trials)} seeds)"
            ax.text(step, 0.5, text, color=COLORS[split], fontsize=8)
    seeds = res.frame["trial"].nunique()
    log_scale(ax, "x")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("optimization steps (log)")
    ax.set_ylabel("accuracy")
    frac = task.get("train_fraction")
    panel_title(
        ax,
        f"x/y (mod {task.get('p')}), {frac:.0%} of equations for training, "
        f"{seeds} seed{'s' * (seeds != 1)}" + (f", {note}" if note else "") + f"\n{recipe(res)}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 120)
    return path


OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "muon": "Muon"}


def recipe(res: Results) -> str:
    """'AdamW, lr 0.001, weight decay 1, budget 3000 steps': the runs' own values where the
    grid sets them (one value among the runs drawn), else the record's."""
    cfg = res.meta.get("config", {})

    def value(key: str):
        if key in res.trials and res.trials[key].nunique() == 1:
            return res.trials[key].iloc[0]
        section, name = key.split(".")
        return cfg.get(section, {}).get(name)

    name = value("optim.name") or "adamw"
    parts = [OPTIMIZERS.get(name, name), f"lr {value('optim.lr'):g}"]
    parts.append(f"weight decay {value('optim.weight_decay'):g}")
    if name == "adam" and value("optim.weight_decay"):
        parts[-1] += " (L2)"
    parts.append(f"budget {value('train.steps'):,} steps")
    return ", ".join(parts)


def key_freq_metrics(res: Results) -> list[str]:
    """progress/key_freq_1, _2, ... as reported, strongest first."""
    keys = [c for c in res.frame.columns if c.startswith("progress/key_freq_")]
    return sorted(keys, key=lambda c: int(c.rsplit("_", 1)[1]))


def mark_crossings(ax: Axes, rows: pd.DataFrame) -> None:
    """Dotted lines at the mean step at which train and test accuracy reached 99%, over the
    runs that reached it."""
    for split in ("train", "test"):
        steps = [crossing(curve, f"{split}/acc", 0.99) for _, curve in rows.groupby("trial")]
        steps = [s for s in steps if s is not None]
        if steps:
            ax.axvline(sum(steps) / len(steps), color=COLORS[split], ls=":", lw=1)


def plot_progress(res: Results, path: Path) -> Path:
    """One column per group: accuracy, then under it on the same log-step axis the embedding's
    Fourier structure, the restricted and excluded losses, the weight norm and the key
    frequencies; dotted lines mark the mean train and test 99% crossings."""
    groups = list(group_rows(res, res.frame))
    panels = ("acc", "fourier", "loss", "param_norm", "key_freq")
    fig = Figure(figsize=(5.2 * len(groups), 11.5), layout="constrained")
    axes = fig.subplots(len(panels), len(groups), squeeze=False, sharex="col")
    keys = key_freq_metrics(res)
    for col, (label, _, rows) in enumerate(groups):
        acc, fourier, loss, norm, freq = axes[:, col]
        for split in ("train", "test"):
            draw(acc, rows, f"{split}/acc", COLORS[split], split)
        acc.set_ylim(-0.02, 1.02)
        acc.set_ylabel("accuracy")
        seeds = rows["trial"].nunique()
        panel_title(acc, f"{label} ({seeds} run{'s' * (seeds != 1)})", fontsize=9)
        draw(fourier, rows, "progress/fourier_share", "tab:blue", f"top-{len(keys)} share")
        draw(fourier, rows, "progress/fourier_gini", "tab:orange", "Gini")
        fourier.set_ylim(-0.02, 1.02)
        fourier.set_ylabel("embedding spectrum")
        for split in ("train", "test"):
            draw(loss, rows, f"{split}/loss", COLORS[split], f"{split} loss")
        draw(loss, rows, "progress/restricted_loss", "tab:blue", "restricted")
        draw(loss, rows, "progress/excluded_loss", "tab:orange", "excluded (train)")
        log_scale(loss, "y", minor_labels=True)
        loss.set_ylabel("loss (log)")
        draw(norm, rows, "param_norm", "tab:purple", "weights")
        norm.set_ylabel("parameter norm (L2)")
        shown = rows[rows["step"] > 0]
        for n, (_, run) in enumerate(shown.groupby("trial", sort=False)):
            for rank, key in enumerate(keys):
                freq.scatter(
                    run["step"], run[key], s=24 / (rank + 1), color=f"C{n}", lw=0, alpha=0.7
                )
        freq.set_ylabel("key frequencies k\n(size: rank; colour: run)")
        for ax in axes[:, col]:
            mark_crossings(ax, rows)
            log_scale(ax, "x")
            ax.grid(alpha=0.3, which="major")
        freq.set_xlabel("optimization step (log)")
    for ax in axes[:3, 0]:
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{res.name}: progress measures\ndotted: mean train and test 99% crossings")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 110)
    return path


# The measures drawn in measures.png when a run reports them, by panel: the local learning
# coefficient (analysis.llc, at checkpoints), the stability measures and the per-layer norms.
MEASURE_PANELS = {
    "llc": ("local learning coefficient", ("llc/mean",)),
    "stability": ("stability", ("stability/sc_fraction", "stability/nlm_cosine")),
    "norm": ("weight norm per layer", ()),  # every norm/<layer> reported
}


def measure_panels(res: Results) -> dict[str, list[str]]:
    """The panels of measures.png that `res` has data for, and the metrics each draws."""
    found = {}
    for panel, (_, metrics) in MEASURE_PANELS.items():
        if panel == "norm":
            metrics = sorted(c for c in res.frame.columns if c.startswith("norm/"))
        present = [m for m in metrics if res.has(m)]
        if present:
            found[panel] = present
    return found


def plot_measures(res: Results, path: Path) -> Path:
    """One row per group: accuracy, then each measure reported (measure_panels), against the
    same log-step axis; dotted lines mark the mean train and test 99% crossings."""
    panels = measure_panels(res)
    groups = list(group_rows(res, res.frame))
    fig = Figure(figsize=(4.2 * (len(panels) + 1), 2.9 * len(groups) + 0.6), layout="constrained")
    axes = fig.subplots(len(groups), len(panels) + 1, squeeze=False, sharex=True)
    for row, (label, _, rows) in zip(axes, groups):
        for split in ("train", "test"):
            draw(row[0], rows, f"{split}/acc", COLORS[split], split)
        row[0].set_ylabel("accuracy")
        seeds = rows["trial"].nunique()
        panel_title(row[0], f"{label} ({seeds} run{'s' * (seeds != 1)})", fontsize=9)
        for ax, (panel, metrics) in zip(row[1:], panels.items()):
            for n, metric in enumerate(metrics):  # measured at some evaluations only
                draw(ax, rows.dropna(subset=[metric]), metric, f"C{n}", metric)
            ax.set_ylabel(MEASURE_PANELS[panel][0])
            ax.legend(fontsize=7, loc="best")
        for ax in row:
            mark_crossings(ax, rows)
            log_scale(ax, "x")
            ax.grid(alpha=0.3, which="major")
    axes[0][0].legend(fontsize=8, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("optimization step (log)")
    fig.suptitle(f"{res.name}: measures\ndotted: mean train and test 99% crossings")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 110)
    return path


def write(res: Results, out: Path, prefix: str = "", param_norm: bool = True) -> dict[str, Path]:
    """curves.png (and fig1.png, progress.png and measures.png where they apply) in `out`; their
    paths. A crowded grid (frames.MAX_PANELS) gets no curves: a row per group would be a figure
    metres long (its map is plotting/grid_map.py)."""
    paths = (
        {} if res.crowded else {"curves": plot_curves(res, out / f"{prefix}curves.png", param_norm)}
    )
    if wants_fig1(res):
        paths["fig1"] = plot_fig1(res, out / f"{prefix}fig1.png")
    if res.has("progress/restricted_loss"):
        paths["progress"] = plot_progress(res, out / f"{prefix}progress.png")
    if measure_panels(res):
        paths["measures"] = plot_measures(res, out / f"{prefix}measures.png")
    return paths


def options(ap: Parser) -> None:
    ap.add_argument("--no-param-norm", action="store_true", help="leave out the weight-norm panel")


def main(argv: list[str] | None = None) -> int:
    make = lambda res, out, args: write(res, out, param_norm=not args.no_param_norm)
    return plot_command(argv, "plotting.curves", __doc__, make, options)


if __name__ == "__main__":
    sys.exit(main())
