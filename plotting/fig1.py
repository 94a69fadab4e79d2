"""The paper's Fig. 1 for one group of a grid (e.g. wd=0.1), with how long test accuracy lags.

The report draws it where the study file asks (`fig1:` in report/study.yaml): train and test
accuracy on a log-step axis over the group's seeds, and the delay from train accuracy's 99%
crossing to test accuracy's, in decades of steps (Power et al.'s figure shows two to three).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from plotting import curves, grok_steps
from plotting.frames import Results, group_label


def group_of(res: Results, label: str) -> Results | None:
    """The trials of one group (e.g. 'wd=0.1') as an experiment of their own; None if absent."""
    names = [
        r["trial"]
        for r in res.trials.to_dict("records")
        if group_label({k: r[k] for k in res.groups}) == label
    ]
    if not names:
        return None
    keys = [k for k in res.keys if k not in res.groups]
    return replace(
        res,
        keys=keys,
        frame=res.frame[res.frame["trial"].isin(names)],
        trials=res.trials[res.trials["trial"].isin(names)],
    )


def delay_text(res: Results) -> str:
    """How many decades of steps test accuracy's 99% crossing comes after train accuracy's; for
    a seed whose test accuracy has not crossed yet, at least the decades to its last step."""
    cross = grok_steps.crossings(res)
    cross = cross[cross["threshold"] == 99]
    trained = cross[cross["train_step"].notna()]
    got = trained[trained["test_step"].notna()]
    waiting = trained[trained["test_step"].isna() & trained["last_step"].notna()]
    texts = []
    if not got.empty:
        decades = np.log10(got["test_step"].astype(float) / got["train_step"].astype(float))
        each = ", ".join(f"{d:.2f}" for d in decades)
        texts.append(
            f"Delay from train 99% to test 99%: {decades.mean():.2f} decades of steps on average "
            f"({each}; {len(got)} of {len(cross)} seeds reached both)."
        )
    if not waiting.empty:
        bounds = [
            f"`{r.trial}` at least {np.log10(r.last_step / r.train_step):.2f} decades (train 99% "
            f"at step {r.train_step}, last step {int(r.last_step)})"
            for r in waiting.itertuples()
        ]
        texts.append(
            "A lower bound where test accuracy had not reached 99% by the run's last step: "
            + "; ".join(bounds)
            + "."
        )
    return " ".join(texts) or "No seed reached 99% train accuracy: no delay to measure."


def lines(res: Results, label: str, out: Path, prefix: str) -> list[str]:
    """The figure of group `label` and its delay, as report lines."""
    sub = group_of(res, label)
    if sub is None:
        return [f"No group {label} in `{res.origin}` for a Fig. 1.", ""]
    path = curves.plot_fig1(sub, out / f"{prefix}fig1_{label}.png", label)
    return [f"![{res.name} Fig. 1, {label}]({path.name})", "", delay_text(sub), ""]
