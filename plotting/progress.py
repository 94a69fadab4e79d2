"""When each progress measure moves, against the accuracy crossings: a table per trial.

python -m plotting.progress results/progress_measures [-o DIR]

A measure "moves" at the first evaluation by which it has made half of its whole change (from
its value at step 0 to its value at the run's last evaluation); test accuracy's half-way step
is found the same way. The key frequencies are "fixed" from the first evaluation after which the
set of top-k frequencies never changes again. Runs that report no progress measures
(`analysis.progress` off) have no table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from plotting.frames import NotAnExperiment, Results, plot_command
from plotting.grok_steps import crossing
from plotting.tables import fmt_steps, markdown_table

SHARE = "progress/fourier_share"
MEASURES = {
    SHARE: "Fourier share",
    "progress/fourier_gini": "Gini",
    "progress/restricted_loss": "restricted loss",
    "progress/excluded_loss": "excluded loss",
}
HALF = 0.5
START = 0.1  # a quantity 'starts' moving once it has made a tenth of its change


def halfway(curve: pd.DataFrame, metric: str, q: float = HALF) -> int | None:
    """The first step by which `metric` has made `q` of its change from step 0 to the end."""
    values = curve[["step", metric]].dropna()
    if len(values) < 2:
        return None
    start, end = values[metric].iloc[0], values[metric].iloc[-1]
    if end == start:
        return None
    done = (values[metric] - start) / (end - start)
    return int(values["step"][done >= q].iloc[0])


def keys_fixed(curve: pd.DataFrame) -> int | None:
    """The step from which the set of key frequencies stays what it is at the end."""
    cols = sorted(c for c in curve.columns if c.startswith("progress/key_freq_"))
    rows = curve[["step", *cols]].dropna()
    if rows.empty:
        return None
    sets = [frozenset(r) for r in rows[cols].itertuples(index=False)]
    first = len(sets) - 1
    while first > 0 and sets[first - 1] == sets[-1]:
        first -= 1
    return int(rows["step"].iloc[first])


def moves(res: Results) -> pd.DataFrame:
    """Per trial: the 99% crossings, test accuracy's half-way step, each measure's half-way step
    and the step its key frequencies are fixed from."""
    rows = []
    for trial, curve in res.frame.groupby("trial", sort=False):
        curve = curve.sort_values("step")
        row = {"trial": trial, "train 99%": crossing(curve, "train/acc", 0.99)}
        row["test acc starts"] = halfway(curve, "test/acc", START)
        row["test acc half-way"] = halfway(curve, "test/acc")
        row["test 99%"] = crossing(curve, "test/acc", 0.99)
        row["Fourier share starts"] = halfway(curve, SHARE, START) if SHARE in curve else None
        for metric, label in MEASURES.items():
            row[label] = halfway(curve, metric) if metric in curve else None
        row["keys fixed"] = keys_fixed(curve)
        rows.append(row)
    return pd.DataFrame(rows)


def compare(table: pd.DataFrame, measure: str, test: str, what: str) -> str:
    both = table.dropna(subset=[measure, test])
    if both.empty:
        return f"No run has both {what} to compare."
    lead = both[test] - both[measure]
    return (
        f"{what[0].upper()}{what[1:]}: the measure first in {int((lead > 0).sum())} of "
        f"{len(both)} runs (median lead {lead.median():.0f} steps; negative: after)."
    )


def verdict(table: pd.DataFrame) -> str:
    """Whether the Fourier structure and the restricted loss move before test accuracy."""
    return " ".join(
        [
            compare(
                table,
                "Fourier share starts",
                "test acc starts",
                "the Fourier share's start against test accuracy's",
            ),
            compare(
                table,
                "Fourier share",
                "test acc half-way",
                "the Fourier share's half-way step against test accuracy's",
            ),
            compare(
                table,
                "restricted loss",
                "test acc half-way",
                "the restricted loss's half-way step against test accuracy's",
            ),
        ]
    )


def markdown(table: pd.DataFrame) -> str:
    head = list(table.columns)
    rows = [[r["trial"], *(fmt_steps(r[c]) for c in head[1:])] for r in table.to_dict("records")]
    return (
        "Half-way steps: the first evaluation by which a quantity has made half of its change "
        "from step 0 to the run's end (losses: half of their fall or rise); starts: a tenth of "
        "it. Runs end some steps after grokking, and the measures keep moving while they "
        "last, so late values weigh in. Keys fixed: the "
        "step from which the set of key frequencies no longer changes.\n\n"
        + markdown_table(head, rows)
        + "\n\n"
        + verdict(table)
    )


def write(res: Results, out: Path, prefix: str = "") -> dict[str, Path] | None:
    """progress_moves.csv and .md in `out`, or None when the runs report no progress measures."""
    if not res.has(SHARE):
        return None
    out.mkdir(parents=True, exist_ok=True)
    table = moves(res)
    paths = {"csv": out / f"{prefix}progress_moves.csv", "md": out / f"{prefix}progress_moves.md"}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(markdown(table) + "\n")
    return paths


def make(res: Results, out: Path, args) -> dict[str, Path]:
    paths = write(res, out)
    if paths is None:
        raise NotAnExperiment(
            f"{args.folder}: no trial reports progress measures (analysis.progress)"
        )
    return paths


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.progress", __doc__, make)


if __name__ == "__main__":
    sys.exit(main())
