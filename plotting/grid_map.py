"""A grid of two varied settings as one map: which settings grokked, and how soon.

python -m plotting.grid_map results/repro_power_operations_fraction [-o DIR]

Rows are the first varied key's values, columns the second's (in the grid's order); each cell
says how many of its runs reached 99% test accuracy within their budget ("2/3") and the mean
step at which those did; its colour is that share. Runs that did not get there are censored,
counted in the cell's total, never averaged in; runs still going or interrupted are not counted
(the cell says how many). For a grid too large for a figure per setting (Power et al.'s Fig. 2,
right: every operation at every training fraction), and readable at any size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from grok.results import ENDED
from plotting.figures import save_png
from plotting.frames import NotAnExperiment, Results, plot_command
from plotting.grok_steps import crossings
from plotting.tables import short

OVER = (*ENDED, "errored")  # a run that is over, whatever its end
THRESHOLD = 99  # percent: the crossing the map reads


def cells(res: Results) -> pd.DataFrame:
    """Per pair of values of the two varied keys: runs ended, runs that reached the threshold,
    the mean test step of those, and runs not ended (running or interrupted)."""
    rows_key, cols_key = res.groups
    cross = crossings(res)
    cross = cross[cross["threshold"] == THRESHOLD]
    out = []
    for (row, col), runs in cross.groupby([rows_key, cols_key], sort=False, dropna=False):
        ended = runs[runs["status"].isin(OVER)]
        reached = ended.dropna(subset=["test_step"])
        mean = reached["test_step"].astype(float).mean() if len(reached) else np.nan
        out.append(
            {
                rows_key: row,
                cols_key: col,
                "ended": len(ended),
                "reached": len(reached),
                "mean_test_step": mean,
                "not_ended": len(runs) - len(ended),
            }
        )
    return pd.DataFrame(out)


def ordered(res: Results, key: str, present: pd.Series) -> list:
    """Every value of `key` the grid lists, in its order (a cell not run yet stays blank), then
    any the grid does not list."""
    listed = list((res.meta.get("grid") or {}).get(key, []))
    return listed + [v for v in dict.fromkeys(present) if v not in listed]


def plot(res: Results, table: pd.DataFrame, path: Path) -> Path:
    rows_key, cols_key = res.groups
    rows = ordered(res, rows_key, table[rows_key])
    cols = ordered(res, cols_key, table[cols_key])
    share = np.full((len(rows), len(cols)), np.nan)
    fig = Figure(figsize=(1.6 + 0.95 * len(cols), 1.5 + 0.42 * len(rows)), layout="constrained")
    ax = fig.subplots()
    texts = [(j, i, "not run") for i in range(len(rows)) for j in range(len(cols))]
    for cell in table.to_dict("records"):
        i, j = rows.index(cell[rows_key]), cols.index(cell[cols_key])
        if cell["ended"]:
            share[i, j] = cell["reached"] / cell["ended"]
        text = f"{cell['reached']}/{cell['ended']}" if cell["ended"] else "-"
        if cell["reached"]:
            text += f"\n{cell['mean_test_step']:.0f}"
        if cell["not_ended"]:
            text += f"\n+{cell['not_ended']} not ended"
        texts[i * len(cols) + j] = (j, i, text)
    greens = colormaps["Greens"].with_extremes(bad="0.93")  # grey: no run ended there
    image = ax.imshow(share, cmap=greens, vmin=0, vmax=1, aspect="auto")
    for j, i, text in texts:
        dark = not np.isnan(share[i, j]) and share[i, j] > 0.6
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="w" if dark else "k")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    ax.set_xlabel(short(cols_key))
    ax.set_ylabel(short(rows_key))
    fig.colorbar(image, ax=ax, shrink=0.6, label=f"share of ended runs at test {THRESHOLD}%")
    fig.suptitle(
        f"{res.name}: runs that reached test accuracy {THRESHOLD}% / runs ended,\n"
        f"and their mean step (censored runs counted, never averaged)",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, 110)
    return path


def applies(res: Results) -> bool:
    return len(res.groups) == 2 and res.has("test/acc") and not res.searched


def write(res: Results, out: Path, prefix: str = "") -> dict[str, Path]:
    """grid_map.png and grid_map.csv in `out`; their paths."""
    table = cells(res)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot(res, table, out / f"{prefix}grid_map.png")}
    paths["csv"] = out / f"{prefix}grid_map.csv"
    table.to_csv(paths["csv"], index=False)
    return paths


def make(res: Results, out: Path, args) -> dict[str, Path]:
    if not applies(res):
        raise NotAnExperiment(
            f"{res.folder}: a map needs a grid of exactly two varied keys besides the seed, "
            f"with test accuracy reported (this one varies: {', '.join(res.groups) or 'nothing'})"
        )
    return write(res, out)


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.grid_map", __doc__, make)


if __name__ == "__main__":
    sys.exit(main())
