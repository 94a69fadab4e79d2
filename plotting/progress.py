"""When each progress measure moves, against the test split's loss and accuracy: a table per trial.

python -m plotting.progress results/progress_measures [-o DIR]

A quantity "moves" at the first evaluation by which it has made half of its whole change (from
its value at step 0 to its value at the run's last evaluation). Like is compared with like: the
restricted loss on the test split against the test loss, the restricted accuracy on the test
split against the test accuracy (runs archived before those were reported compare the
whole-table restricted loss with the test loss). A lead is the test quantity's step minus the
measure's, and its resolution the longer of the two evaluation intervals that end at those steps:
a lead no longer than its resolution is not told apart from none. The key frequencies are
"fixed" from the first evaluation after which the set of top-k frequencies never changes again,
and only when that happened in the first 3/4 of the run (later, they are "not settled": a set
unchanged over the last few evaluations says little). Runs that report no progress measures
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
    "progress/excluded_loss": "excluded loss",
}
# (test quantity, the restricted measure on the same split, how the table names the pair)
PAIRS = (
    ("test/loss", "progress/restricted_test_loss", "loss"),
    ("test/acc", "progress/restricted_test_acc", "acc"),
)
WHOLE_TABLE = "progress/restricted_loss"  # runs archived before the test-split measures
HALF = 0.5
START = 0.1  # a quantity 'starts' moving once it has made a tenth of its change
SETTLED = 0.75  # keys count as fixed only when fixed within this share of the run's steps


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


def interval_before(curve: pd.DataFrame, step: int | None) -> int | None:
    """The steps between the evaluation at `step` and the one before it."""
    if step is None:
        return None
    steps = sorted(int(s) for s in curve["step"].dropna())
    i = steps.index(step)
    return step - steps[i - 1] if i else 0


def keys_fixed(curve: pd.DataFrame) -> int | None:
    """The step from which the set of key frequencies stays what it is at the end; None when
    that is not within the first SETTLED of the run's steps (not settled)."""
    cols = sorted(c for c in curve.columns if c.startswith("progress/key_freq_"))
    rows = curve[["step", *cols]].dropna()
    if rows.empty:
        return None
    sets = [frozenset(r) for r in rows[cols].itertuples(index=False)]
    first = len(sets) - 1
    while first > 0 and sets[first - 1] == sets[-1]:
        first -= 1
    step = int(rows["step"].iloc[first])
    return step if step <= SETTLED * rows["step"].iloc[-1] else None


def moves(res: Results) -> pd.DataFrame:
    """Per trial: the 99% crossings, each test quantity's half-way step beside its restricted
    measure's, with the evaluation interval ending at each, the Fourier measures' half-way steps
    and the step its key frequencies are fixed from."""
    rows = []
    for trial, curve in res.frame.groupby("trial", sort=False):
        curve = curve.sort_values("step")
        row = {"trial": trial, "train 99%": crossing(curve, "train/acc", 0.99)}
        for test, measure, what in PAIRS:
            if measure not in curve or curve[measure].isna().all():
                measure = WHOLE_TABLE if what == "loss" else None
            test_step = halfway(curve, test)
            own = halfway(curve, measure) if measure in curve else None
            row[f"test {what} half-way"] = test_step
            row[f"restricted {what} half-way"] = own
            gaps = [interval_before(curve, s) for s in (test_step, own) if s is not None]
            row[f"{what} resolution"] = max(gaps) if len(gaps) == 2 else None
        row["test 99%"] = crossing(curve, "test/acc", 0.99)
        row["test acc starts"] = halfway(curve, "test/acc", START)
        row["Fourier share starts"] = halfway(curve, SHARE, START) if SHARE in curve else None
        for metric, label in MEASURES.items():
            row[label] = halfway(curve, metric) if metric in curve else None
        row["keys fixed"] = keys_fixed(curve)
        row["last step"] = int(curve["step"].max())
        rows.append(row)
    return pd.DataFrame(rows)


def compare(table: pd.DataFrame, measure: str, test: str, what: str, resolution: str = "") -> str:
    both = table.dropna(subset=[measure, test]) if {measure, test} <= set(table) else table[:0]
    if both.empty:
        return f"No run has both {what} to compare."
    lead = both[test] - both[measure]
    text = (
        f"{what[0].upper()}{what[1:]}: the measure first in {int((lead > 0).sum())} of "
        f"{len(both)} runs (median lead {lead.median():.0f} steps; negative: after)"
    )
    if resolution and both[resolution].notna().all():
        res = both[resolution]
        resolved = int((lead.abs() > res).sum())
        text += (
            f"; leads {', '.join(f'{v:.0f}' for v in lead)} at resolutions "
            f"{', '.join(f'{v:.0f}' for v in res)} steps: {resolved} of {len(both)} longer "
            "than their resolution"
        )
    return text + "."


def verdict(table: pd.DataFrame) -> str:
    """Whether the restricted measures move before the test quantities they compare with, and
    the Fourier share before test accuracy."""
    return " ".join(
        [
            compare(
                table,
                "restricted loss half-way",
                "test loss half-way",
                "the restricted loss's half-way step against the test loss's",
                "loss resolution",
            ),
            compare(
                table,
                "restricted acc half-way",
                "test acc half-way",
                "the restricted accuracy's half-way step against the test accuracy's",
                "acc resolution",
            ),
            compare(
                table,
                "Fourier share starts",
                "test acc starts",
                "the Fourier share's start against test accuracy's",
            ),
        ]
    )


def markdown(table: pd.DataFrame) -> str:
    head = list(table.columns)
    rows = [[r["trial"], *(fmt_steps(r[c]) for c in head[1:])] for r in table.to_dict("records")]
    return (
        "Half-way steps: the first evaluation by which a quantity has made half of its change "
        "from step 0 to the run's end (losses: half of their fall or rise); starts: a tenth of "
        "it. The restricted loss and accuracy are read on the test split, beside the test loss "
        "and accuracy (where a run did not report them, the whole-table restricted loss). "
        "Resolution: the longer of the two evaluation intervals that end at the compared steps. "
        "Runs end some steps after grokking, and the measures keep moving while they last, so "
        "late values weigh in. Keys fixed: the step from which the set of key frequencies no "
        f"longer changes, when that is in the first {SETTLED:.0%} of the run ('-': not "
        "settled).\n\n" + markdown_table(head, rows) + "\n\n" + verdict(table)
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
