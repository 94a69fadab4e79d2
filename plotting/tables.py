"""Final train/test loss and accuracy per varied value: mean and sd over seeds, CSV and Markdown.

python -m plotting.tables results/addsub [-o DIR]

"Final" is each trial's last report: its budget, its stop-after-grokking step, or (for a
running trial) the latest step so far; the table says how many trials are in each state.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from grok.experiment import short
from plotting.frames import (
    Results,
    group_rows,
    plot_command,
)

FINAL_METRICS = ("train/loss", "test/loss", "train/acc", "test/acc")


def missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt_steps(value) -> str:
    return "-" if missing(value) else str(int(value))


def fmt_mean_sd(mean, sd, form: str = "{:.4g}") -> str:
    """'0.5 ± 0.1'; the sd is left out where undefined (one run), '-' when there is no value."""
    if missing(mean):
        return "-"
    return form.format(mean) + ("" if missing(sd) else " ± " + form.format(sd))


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def status_counts(statuses: pd.Series) -> str:
    """'2 finished, 1 running'."""
    return ", ".join(f"{n} {s}" for s, n in statuses.value_counts(sort=False).items())


def final_table(res: Results) -> pd.DataFrame:
    """Per group: seeds, trial states, final step range, and mean and sd of each final metric."""
    last = res.frame.groupby("trial", sort=False).tail(1)
    rows = []
    for label, values, trials in group_rows(res, res.trials):
        final = last[last["trial"].isin(trials["trial"])]
        row = {**values, "group": label, "runs": len(trials)}
        row["states"] = status_counts(trials["status"])
        row["first_final_step"] = final["step"].min()
        row["last_final_step"] = final["step"].max()
        for metric in FINAL_METRICS:
            values_ = final[metric] if metric in final else pd.Series(dtype=float)
            row[f"{metric}_mean"] = values_.mean()
            row[f"{metric}_sd"] = values_.std()  # sample sd (ddof 1) over seeds
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(res: Results, table: pd.DataFrame) -> str:
    # Metrics no trial has (test loss and accuracy of the sanity runs) are left out.
    metrics = [m for m in FINAL_METRICS if table[f"{m}_mean"].notna().any()]
    head = [short(k) for k in res.groups] + ["runs", "states", "final step"]
    head += [f"final {m.replace('/', ' ')}" for m in metrics]
    rows = []
    for r in table.to_dict("records"):
        lo, hi = fmt_steps(r["first_final_step"]), fmt_steps(r["last_final_step"])
        rows.append(
            [str(r[k]) for k in res.groups]
            + [str(r["runs"]), r["states"], lo if lo == hi else f"{lo}-{hi}"]
            + [
                fmt_mean_sd(r[f"{m}_mean"], r[f"{m}_sd"], "{:.3g}" if "loss" in m else "{:.4f}")
                for m in metrics
            ]
        )
    return (
        "Final values (each trial's last report), mean ± sample sd over seeds.\n\n"
        + markdown_table(head, rows)
    )


def write(res: Results, out: Path, prefix: str = "") -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write final_metrics.csv and .md to `out`; the table and the paths."""
    table = final_table(res)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{prefix}final_metrics.csv", "md": out / f"{prefix}final_metrics.md"}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(markdown(res, table) + "\n")
    return table, paths


def main(argv: list[str] | None = None) -> int:
    return plot_command(argv, "plotting.tables", __doc__, lambda res, out, args: write(res, out)[1])


if __name__ == "__main__":
    sys.exit(main())
