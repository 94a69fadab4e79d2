"""What a sweep prints when it ends: a line per trial, and a search's best points.

Read from the results folder (a local view of it when it lives in an object store), as every
reader here, without Ray or torch.
"""

from __future__ import annotations

from pathlib import Path

from grok import storage
from grok.cli import fmt, print_table
from grok.results import best_checkpoint
from grok.reuse import REUSED_FROM
from plotting.frames import load


def summarize(results, metric: str, folder: storage.Location, view: Path) -> None:
    """One line per trial (`view`: a local view of `folder`); checkpoints shown where they are
    stored."""
    rows = []
    for result in results:
        path = view / Path(result.path).name
        m = result.metrics or {}
        status = "ERROR" if result.error is not None else m.get("status", "?")
        best = best_checkpoint(path, metric, "max")
        grok = m.get("grok/test_acc_99_step")
        rows.append(
            (
                path.name,
                status,
                fmt(m.get("train/acc")),
                fmt(m.get("test/acc")),
                "not reached" if grok is None else str(grok),
                str(folder / path.name / best[0].name) if best else "-",
            )
        )
    header = ("trial", "status", "train acc", "test acc", "test 99% at", "best checkpoint")
    print_table(header, rows)
    for result in results:
        source = (result.metrics or {}).get(REUSED_FROM)
        if source:
            name = Path(result.path).name
            print(f"{name}: reused from {source} (same config and training code), not trained")
    print(f"results: {folder}")


def summarize_search(folder: Path) -> None:
    """The best sampled points, ranked by the search's metric (mean over each point's runs)."""
    from plotting import search as psearch  # matplotlib: loaded only when a search has ended

    res = load(folder)
    ranked = psearch.points(res)
    search = psearch.spec(res)
    print(
        f"top {min(psearch.TOP, len(ranked))} of {len(ranked)} points by {search['metric']} "
        f"({search['mode']}):"
    )
    head, rows = psearch.top_rows(res, ranked)
    print_table(head, rows)
    print(psearch.best_text(res, ranked))
