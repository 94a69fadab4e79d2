"""A power law of grokking time against a setting: log(steps) fitted against log(value).

python -m plotting.law results/wd_law --key optim.weight_decay [-o DIR]

Omnigrok (Liu et al. 2022) finds the steps a network needs to generalize inversely proportional
to weight decay: a slope of -1 in log-log. Per threshold (99% and 100%), each run's step of first
reaching it on the test split is fitted by least squares, log10(steps) = a + b log10(value), over
the runs that got there (censored runs are listed, not fitted: their true steps are unknown and
only larger). The slope's uncertainty is a bootstrap over seeds: seeds drawn with replacement,
every value's runs of the drawn seeds refitted, the 2.5 and 97.5 percentiles of the slopes (a
fixed generator, so the same results give the same interval).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grok.cli import Parser
from plotting.figures import save_png
from plotting.frames import NotAnExperiment, Results, plot_command
from plotting.grok_steps import crossings
from plotting.tables import markdown_table, short

BOOTSTRAPS = 2000
COLORS = {99: "tab:blue", 100: "tab:red"}


def fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of log10(y) against log10(x)."""
    slope, intercept = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(slope), float(intercept)


def bootstrap(runs: pd.DataFrame, key: str, n: int = BOOTSTRAPS) -> tuple[float, float] | None:
    """The slope's 95% interval over seeds drawn with replacement (None: too few seeds)."""
    seeds = runs["seed"].unique()
    if len(seeds) < 2:
        return None
    rng = np.random.default_rng(0)
    x = {s: runs.loc[runs["seed"] == s, key].to_numpy(float) for s in seeds}
    y = {s: runs.loc[runs["seed"] == s, "test_step"].to_numpy(float) for s in seeds}
    slopes = []
    for _ in range(n):
        drawn = rng.choice(seeds, size=len(seeds))
        xs = np.concatenate([x[s] for s in drawn])
        if len(np.unique(xs)) >= 2:
            slopes.append(fit(xs, np.concatenate([y[s] for s in drawn]))[0])
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return float(lo), float(hi)


def law(res: Results, key: str) -> pd.DataFrame:
    """Per threshold: the fit over grokked runs, its bootstrap interval, runs and censored."""
    cross = crossings(res)
    rows = []
    for t, runs in cross.groupby("threshold"):
        got = runs[runs["test_step"].notna() & (runs[key] > 0)]
        row = {"threshold": t, "runs": len(runs), "fitted": len(got)}
        row["censored"] = int(runs["test_step"].isna().sum())
        if got[key].nunique() >= 2:
            row["slope"], row["intercept"] = fit(
                got[key].to_numpy(float), got["test_step"].to_numpy(float)
            )
            row["slope_lo"], row["slope_hi"] = bootstrap(got, key) or (np.nan, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def plot(res: Results, key: str, table: pd.DataFrame, path: Path) -> Path:
    cross = crossings(res)
    fig = Figure(figsize=(6.4, 4.6), layout="tight")
    ax = fig.subplots()
    for row in table.to_dict("records"):
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
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{short(key)} (log)")
    ax.set_ylabel("step test accuracy first reaches the threshold (log)")
    ax.set_title(f"{res.name}: dotted lines have slope -1 (steps ∝ 1/{short(key)})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 120)
    return path


def markdown(table: pd.DataFrame, key: str) -> str:
    head = [
        "threshold",
        "runs",
        "fitted",
        "censored",
        "slope",
        "95% interval (seeds)",
        "steps at 1",
    ]
    rows = []
    for r in table.to_dict("records"):
        fitted = "slope" in r and not pd.isna(r.get("slope"))
        interval = (
            "-"
            if not fitted or pd.isna(r["slope_lo"])
            else f"[{r['slope_lo']:.2f}, {r['slope_hi']:.2f}]"
        )
        rows.append(
            [f"{r['threshold']}%", str(r["runs"]), str(r["fitted"]), str(r["censored"])]
            + (
                [f"{r['slope']:.2f}", interval, f"{10 ** r['intercept']:.0f}"]
                if fitted
                else ["-", "-", "-"]
            )
        )
    return (
        f"Fit of log10(step test accuracy first reaches the threshold) against log10({short(key)}) "
        "over the runs that reached it; Omnigrok's law is a slope of -1. Steps at 1: the fitted "
        f"steps at {short(key)} = 1.\n\n" + markdown_table(head, rows)
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
