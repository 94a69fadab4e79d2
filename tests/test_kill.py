"""A real sweep killed with SIGKILL part-way through what it writes, resumed: every trial ends
with the uninterrupted run's reports, one per step (scripts/kill_schedule.py, which also runs a
longer seeded schedule of such kills)."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import kill_schedule as ks  # noqa: E402


def test_a_sweep_killed_while_pruning_then_its_resume_killed_mid_checkpoint_ends_the_same(
    tmp_path, ray_address
):
    reference = ks.expected_reports(tmp_path / "reference")  # the uninterrupted run
    steps = [[r["step"] for r in rows] for rows in reference.values()]
    last = ks.EXPERIMENT["config"]["train"]["steps"]
    assert len(steps) == 2 and all(
        s[0] == 0 and s[-1] == last and s == sorted(set(s)) for s in steps
    )
    # Pruning deletes a checkpoint Tune's saved state may still name; the kill stops it after
    # some of its files. The resume then dies while a worker copies a checkpoint into storage.
    kills = [ks.Point("pruning", 2, 0.5), ks.Point("checkpoint-write", 2, 0.5)]
    outcome = ks.check(kills, tmp_path / "killed", ray_address, reference)
    assert outcome.landed == ["pruning", "checkpoint-write"], outcome
    assert outcome.resumed, outcome.note
    assert outcome.equal, outcome.note
    resumed = [steps for steps in outcome.restarts.values() if any(s > 0 for s in steps[1:])]
    assert resumed, f"no trial resumed from a checkpoint: {outcome.restarts}"
