"""Searches: the objective against each searched value, and the best sampled points.

python -m plotting.search results/search_fast_grok [-o DIR] [--top N]

A point is one sampled configuration; it ran once per grid point (usually once per seed). Its
value is the mean of its trials' final objectives. A censored trial (with the default objective:
val accuracy never reached 99%, so its value is its budget, a lower bound) is counted and drawn
apart, never hidden. A search that chose on the test split (`search.allow_test`) says so.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from grok.cli import Parser
from grok.metrics import TEST_METRICS, censored_key, objective_split
from plotting.figures import log_scale, save_png
from plotting.frames import NotAnExperiment, Results, plot_command
from plotting.tables import markdown_table, missing, short

TOP = 5  # points in the tables
CENSORED_STYLE = {"marker": "^", "facecolors": "none", "edgecolors": "tab:red", "s": 60}
BEST_STYLE = {"marker": "*", "s": 220, "color": "gold", "edgecolors": "black"}


def spec(res: Results) -> dict:
    """The search section recorded in experiment.yaml; NotAnExperiment if there is none."""
    search = res.meta.get("search")
    if not search or not res.searched:
        raise NotAnExperiment(f"{res.folder}: not a search (experiment.yaml has no search)")
    return search


def finals(res: Results) -> pd.DataFrame:
    """One row per trial: its sampled values, final objective, whether censored, status."""
    metric = spec(res)["metric"]
    flag = censored_key(metric)
    last = res.frame.groupby("trial", sort=False).tail(1)
    cols = ["trial", *[c for c in (metric, flag) if c in last]]
    table = res.trials.merge(last[cols], on="trial", how="left")
    if metric not in table:
        table[metric] = math.nan
    if flag in table:
        censored = table[flag]
    else:  # a metric with no censoring: only a trial with no report is unknown
        censored = table[metric].isna()
    table["censored"] = censored.fillna(True).astype(bool)  # no report: nothing is known
    return table.rename(columns={metric: "objective"})


def points(res: Results) -> pd.DataFrame:
    """One row per sampled point, best first: its values, the mean and sd of its trials'
    objectives, how many were censored, and the trials' names."""
    search = spec(res)
    table = finals(res)
    rows = []
    for values, trials in table.groupby(res.searched, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        rows.append(
            {
                **dict(zip(res.searched, values)),
                "objective": trials["objective"].mean(),
                "sd": trials["objective"].std(),
                "censored": int(trials["censored"].sum()),
                "runs": len(trials),
                "trials": ", ".join(trials["trial"]),
            }
        )
    ranked = pd.DataFrame(rows)
    ranked = ranked.sort_values(
        "objective", ascending=search["mode"] == "min", na_position="last", kind="stable"
    )
    return ranked.reset_index(drop=True)


def fmt_value(value, digits: int = 3) -> str:
    if missing(value):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def fmt_objective(row: dict) -> str:
    """'1180 ± 42' (steps in full), '0.9876'."""
    shown = fmt_value(row["objective"], 4)
    return shown if missing(row["sd"]) else f"{shown} ± {fmt_value(row['sd'], 4)}"


def top_rows(res: Results, ranked: pd.DataFrame, n: int = TOP) -> tuple[list[str], list[list]]:
    """Header and rows of the best `n` points: rank, objective, censored runs, values, trials."""
    head = ["rank", spec(res)["metric"], "censored"] + [short(k) for k in res.searched]
    rows = [
        [str(i + 1), fmt_objective(r), f"{r['censored']}/{r['runs']}"]
        + [fmt_value(r[k]) for k in res.searched]
        + [r["trials"]]
        for i, r in enumerate(ranked.head(n).to_dict("records"))
    ]
    return head + ["trials"], rows


def best_text(res: Results, ranked: pd.DataFrame) -> str:
    """'best: optim.lr=0.00312, ... (objective/grok_step 1180, 0/1 censored; trials t012)'."""
    search = spec(res)
    if ranked.empty or missing(ranked["objective"].iloc[0]):
        return "best: none yet (no trial has reported the objective)"
    r = ranked.iloc[0].to_dict()
    values = ", ".join(f"{k}={fmt_value(r[k])}" for k in res.searched)
    return (
        f"best: {values} ({search['metric']} {fmt_objective(r)} over {r['runs']} "
        f"run{'s' * (r['runs'] != 1)}, {r['censored']} censored; {r['trials']})"
    )


def chosen_on(res: Results) -> str:
    """One sentence: which split the search chose on; one that read the test split says so, and
    whether its file allowed it (search.allow_test: true)."""
    search = spec(res)
    stop = res.meta.get("config", {}).get("stop", {})
    read = []
    if search["metric"] in TEST_METRICS:
        read.append(f"its objective is {search['metric']}")
    if stop.get("after_grok_steps") is not None and stop.get("split", "test") == "test":
        read.append("test accuracy ended its trials (stop.after_grok_steps)")
    if not read:
        return f"It chose on the val split ({search['metric']}); the test split was held out."
    allowed = ", as its file allowed (search.allow_test: true)" if search.get("allow_test") else ""
    return (
        f"It chose on the test split{allowed}: {' and '.join(read)}, so its test numbers are not "
        "held out."
    )


def markdown(res: Results, ranked: pd.DataFrame, n: int = TOP) -> str:
    search = spec(res)
    head, rows = top_rows(res, ranked, n)
    metric = search["metric"]
    split = objective_split(metric)
    if split:
        never = (
            f" A censored run never reached 99% {split} accuracy (its value is its budget, "
            "a lower bound)."
        )
    else:
        never = ""
    return (
        f"The best {min(n, len(ranked))} of {len(ranked)} sampled points by {metric} "
        f"({search['mode']}), mean ± sd over each point's runs.{never} {chosen_on(res)}\n\n"
        + markdown_table(head, rows)
        + f"\n\n{best_text(res, ranked)}."
    )


def plot(res: Results, path: Path) -> Path:
    """The objective against each searched value, one panel per key; log axes for log spaces."""
    search = spec(res)
    table = finals(res)
    best = points(res).head(1)
    fig = Figure(figsize=(3.4 * len(res.searched), 3.6), layout="constrained")
    axes = fig.subplots(1, len(res.searched), squeeze=False, sharey=True)[0]
    for ax, key in zip(axes, res.searched):
        kind, args = next(iter(search["space"][key].items()))
        x, bx = table[key], best[key]
        if kind == "choice":  # one evenly spaced position per value, numbers or words
            place = {repr(v): i for i, v in enumerate(args)}
            x, bx = (s.map(lambda v, p=place: p.get(repr(v), math.nan)) for s in (x, bx))
            ax.set_xticks(range(len(args)), [str(v) for v in args])
            ax.set_xlim(-0.5, len(args) - 0.5)
        done, cens = ~table["censored"], table["censored"]
        ax.scatter(x[done], table.loc[done, "objective"], color="tab:blue", zorder=3)
        ax.scatter(x[cens], table.loc[cens, "objective"], zorder=3, **CENSORED_STYLE)
        ax.scatter(bx, best["objective"], zorder=4, **BEST_STYLE)
        if kind == "loguniform":
            log_scale(ax, "x")
        ax.set_xlabel(f"{key} ({kind})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{search['metric']} ({search['mode']})")
    legend = [
        Line2D([], [], marker="o", ls="", color="tab:blue", label="run"),
        Line2D([], [], marker="^", ls="", mfc="none", color="tab:red", label="censored: at least"),
        Line2D([], [], marker="*", ls="", ms=12, mfc="gold", color="black", label="best point"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"{res.name}: {len(table)} runs, {search['algorithm']} search")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 110)
    return path


def write(res: Results, out: Path, prefix: str = "", n: int = TOP) -> dict[str, Path]:
    """search.png, search_points.csv (every point, ranked) and search.md in `out`; their paths."""
    ranked = points(res)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "png": plot(res, out / f"{prefix}search.png"),
        "csv": out / f"{prefix}search_points.csv",
        "md": out / f"{prefix}search.md",
    }
    ranked.to_csv(paths["csv"], index=False)
    paths["md"].write_text(markdown(res, ranked, n) + "\n")
    return paths


def make(res: Results, out: Path, args) -> dict[str, Path]:
    spec(res)  # refuses an experiment that is not a search
    return write(res, out, n=args.top)


def options(ap: Parser) -> None:
    ap.add_argument("--top", type=int, default=TOP, help=f"points in the table (default {TOP})")


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.search", __doc__, make, options)


if __name__ == "__main__":
    sys.exit(main())
