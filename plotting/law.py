"""A power law of grokking time against a setting: log(steps) fitted against log(value).

python -m plotting.law results/wd_law --key optim.weight_decay [-o DIR]

Omnigrok (Liu et al. 2022) finds the steps a network needs to generalize inversely proportional
to weight decay: a slope of -1 in log-log. Three measures of each run are fitted by least
squares, log10(steps) = a + b log10(value), at each threshold (99% and 100%): the step at which
test accuracy first reaches it, and the delay (that step minus the step train accuracy first
reached it, the assignment's steps-to-grok). Only the runs that got there are fitted: a censored
run is counted, never fitted (its true steps are unknown and only larger). Each fit is given
twice, over every value and without the extreme one (the value farthest in log from their
geometric mean, a sensitivity line), and each slope with two 95% intervals:
- over seeds: seeds drawn with replacement, each value's runs of the drawn seeds refitted, the
  2.5 and 97.5 percentiles of the slopes (a fixed generator: the same results, the same
  interval); with n seeds there are only C(2n-1, n) distinct draws (10 for 3 seeds, 126 for 5),
  which the table prints, since a handful of draws cannot make a 95% interval;
- from the regression: slope ± t(0.975, runs - 2) x its standard error, which treats the runs as
  independent around one line.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from grok.cli import Parser
from plotting.figures import log_scale, panel_title, save_png
from plotting.frames import NotAnExperiment, Results, plot_command
from plotting.grok_steps import crossings
from plotting.tables import markdown_table, short

BOOTSTRAPS = 2000
COLORS = {99: "tab:blue", 100: "tab:red"}
# What is fitted: a column of plotting.grok_steps.crossings, and how the table names it.
MEASURES = {"test_step": "steps to test", "steps_to_grok": "delay (test - train)"}


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of log10(y) against log10(x)."""
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(slope), float(intercept)


def regression_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The slope's 95% interval from the least-squares fit (t with len(x) - 2 degrees of
    freedom); NaN with fewer than 3 runs."""
    if len(x) < 3:
        return math.nan, math.nan
    line = stats.linregress(np.log10(x), np.log10(y))
    half = stats.t.ppf(0.975, len(x) - 2) * line.stderr
    return float(line.slope - half), float(line.slope + half)


def distinct_draws(n: int) -> int:
    """How many different multisets of n seeds a bootstrap can draw: C(2n - 1, n)."""
    return math.comb(2 * n - 1, n)


def bootstrap(
    runs: pd.DataFrame, key: str, column: str = "test_step", n: int = BOOTSTRAPS
) -> tuple[float, float] | None:
    """The slope's 95% interval over seeds drawn with replacement (None: too few seeds)."""
    seeds = runs["seed"].unique()
    if len(seeds) < 2:
        return None
    rng = np.random.default_rng(0)
    x = {s: runs.loc[runs["seed"] == s, key].to_numpy(float) for s in seeds}
    y = {s: runs.loc[runs["seed"] == s, column].to_numpy(float) for s in seeds}
    slopes = []
    for _ in range(n):
        drawn = rng.choice(seeds, size=len(seeds))
        xs = np.concatenate([x[s] for s in drawn])
        if len(np.unique(xs)) >= 2:
            slopes.append(fit(xs, np.concatenate([y[s] for s in drawn]))[0])
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return float(lo), float(hi)


def extreme(values: pd.Series) -> float | None:
    """The value farthest in log from the values' geometric mean (the larger on a tie); None
    with fewer than 3 values, where leaving one out leaves no line worth fitting."""
    kept = np.unique(values[values > 0].to_numpy(float))
    if len(kept) < 3:
        return None
    logs = np.log10(kept)
    middle = logs.mean()
    return float(max(kept, key=lambda v: (round(abs(math.log10(v) - middle), 9), v)))


def fit_row(runs: pd.DataFrame, key: str, column: str) -> dict:
    """One fit: runs, fitted, censored, slope, intercept and both intervals."""
    got = runs[runs[column].notna() & (runs[key] > 0)]
    got = got[got[column].astype(float) > 0]  # a delay of 0 or less has no logarithm
    row = {"runs": len(runs), "fitted": len(got), "censored": int(runs["test_step"].isna().sum())}
    row["seeds"] = int(got["seed"].nunique()) if len(got) else 0
    if got[key].nunique() >= 2:
        x, y = got[key].to_numpy(float), got[column].to_numpy(float)
        row["slope"], row["intercept"] = fit(x, y)
        row["slope_lo"], row["slope_hi"] = bootstrap(got, key, column) or (np.nan, np.nan)
        row["reg_lo"], row["reg_hi"] = regression_interval(x, y)
    return row


def law(res: Results, key: str) -> pd.DataFrame:
    """Per measure, threshold and range of values: the fit over the runs that got there."""
    cross = crossings(res)
    left_out = extreme(cross[key])
    ranges = [("all", None)] + ([(f"without {left_out:g}", left_out)] if left_out else [])
    rows = []
    for column in MEASURES:
        for t, runs in cross.groupby("threshold"):
            for name, value in ranges:
                kept = runs if value is None else runs[runs[key] != value]
                row = {"measure": column, "threshold": t, "values": name}
                rows.append({**row, **fit_row(kept, key, column)})
    return pd.DataFrame(rows)


def plot(res: Results, key: str, table: pd.DataFrame, path: Path) -> Path:
    cross = crossings(res)
    fig = Figure(figsize=(6.4, 4.6), layout="tight")
    ax = fig.subplots()
    main = table[(table["measure"] == "test_step") & (table["values"] == "all")]
    for row in main.to_dict("records"):
        t = row["threshold"]
        runs = cross[(cross["threshold"] == t) & cross["test_step"].notna()]
        ax.scatter(runs[key], runs["test_step"], color=COLORS.get(t), s=18, alpha=0.8)
        if "slope" in row and not pd.isna(row.get("slope")):
            xs = np.array([runs[key].min(), runs[key].max()], float)
            label = f"test {t}%: slope {row['slope']:.2f}"
            if not pd.isna(row["slope_lo"]):
                label += f" [{row['slope_lo']:.2f}, {row['slope_hi']:.2f}]"
            ax.plot(
                xs, 10 ** row["intercept"] * xs ** row["slope"], color=COLORS.get(t), label=label
            )
            mid = np.sqrt(xs.prod())  # slope -1 through the fit's middle: Omnigrok's law
            ref = 10 ** row["intercept"] * mid ** row["slope"] * mid / xs
            ax.plot(xs, ref, color=COLORS.get(t), ls=":", lw=1)
    censored = cross[cross["test_step"].isna()]
    if len(censored):
        top = censored["last_step"].astype(float)
        ax.scatter(
            censored[key],
            top,
            marker="^",
            facecolors="none",
            edgecolors="gray",
            label="not reached by the step shown",
        )
    log_scale(ax, "x", "y", minor_labels=True)
    ax.set_xlabel(f"{short(key)} (log)")
    ax.set_ylabel("step test accuracy first reaches the threshold (log)")
    panel_title(ax, f"{res.name}: dotted lines have slope -1 (steps ∝ 1/{short(key)})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 120)
    return path


def markdown(table: pd.DataFrame, key: str) -> str:
    name = short(key)
    head = [
        "measure",
        "threshold",
        f"{name}",
        "runs",
        "fitted",
        "censored",
        "slope",
        "95% over seeds (distinct draws)",
        "95% regression",
        "steps at 1",
    ]
    rows = []
    for r in table.to_dict("records"):
        fitted = "slope" in r and not pd.isna(r.get("slope"))
        seeds = (
            "-"
            if not fitted or pd.isna(r["slope_lo"])
            else f"[{r['slope_lo']:.2f}, {r['slope_hi']:.2f}] ({distinct_draws(r['seeds'])})"
        )
        reg = (
            "-" if not fitted or pd.isna(r["reg_lo"]) else f"[{r['reg_lo']:.2f}, {r['reg_hi']:.2f}]"
        )
        rows.append(
            [MEASURES[r["measure"]], f"{r['threshold']}%", r["values"]]
            + [str(r["runs"]), str(r["fitted"]), str(r["censored"])]
            + (
                [f"{r['slope']:.2f}", seeds, reg, f"{10 ** r['intercept']:.0f}"]
                if fitted
                else ["-", "-", "-", "-"]
            )
        )
    return (
        f"Fits of log10(steps) against log10({name}) over the runs that got there: the step at "
        "which test accuracy first reaches the threshold, and the delay from the train crossing "
        f"to the test one; over every value and without the extreme one. Omnigrok's law is a "
        f"slope of -1. Two 95% intervals: a bootstrap over seeds (with the number of distinct "
        f"draws its seeds allow) and the regression's t interval. Steps at 1: the fitted steps "
        f"at {name} = 1.\n\n" + markdown_table(head, rows)
    )


def write(res: Results, key: str, out: Path, prefix: str = "") -> dict[str, Path]:
    table = law(res, key)
    paths = {"csv": out / f"{prefix}law.csv", "md": out / f"{prefix}law.md"}
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(markdown(table, key) + "\n")
    paths["png"] = plot(res, key, table, out / f"{prefix}law.png")
    return paths


def make(res: Results, out: Path, args) -> dict[str, Path]:
    if args.key not in res.groups:
        raise NotAnExperiment(
            f"--key {args.key}: not a varying key of {args.folder}; "
            f"allowed: {', '.join(res.groups) or 'none'}"
        )
    return write(res, args.key, out)


def options(ap: Parser) -> None:
    ap.add_argument(
        "--key", required=True, help="the grid key to fit against, e.g. optim.weight_decay"
    )


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.law", __doc__, make, options)


if __name__ == "__main__":
    sys.exit(main())
