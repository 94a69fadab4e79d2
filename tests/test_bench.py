"""The benchmark runs end to end on the CPU (its figures are for people, not asserted here)."""

from __future__ import annotations

import re

import pytest
from conftest import TINY, assert_one_line_error, run_cli

from benchmarks.progress_cost import measure_cost
from grok.config import Config
from grok.overrides import apply_overrides
from grok.train import next_eval_step

BENCH = ("-m", "benchmarks.bench")


def test_bench_prints_and_writes_its_table_with_date_machine_and_headline(tmp_path):
    out = tmp_path / "bench" / "cpu.txt"
    args = ["--steps", "2", "--rounds", "1", "--run-steps", "40", "--skip-tune", "--threads", "1"]
    args += ["--progress-cost"]
    proc = run_cli(*BENCH, *args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text == proc.stdout
    lines = text.splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d .*: python -m benchmarks.bench --steps 2", lines[0])
    assert lines[1].startswith("machine: ") and "CPUs" in lines[1]
    assert "project: a 40-step run, evaluation included" in text
    cost = re.search(r"progress measures, share of a default run +(\d+\.\d\d)%", text)
    assert cost and 0 < float(cost.group(1)) < 100
    projected = re.fullmatch(
        r"project vs reference loop, a 100,000-step run \(projected\): (\d+\.\d\d)x", lines[-3]
    )
    assert projected and float(projected.group(1)) > 0
    share = re.fullmatch(
        r"project: evaluation and bookkeeping, share of its 40-step run: (\d+\.\d)%", lines[-2]
    )
    assert share and 0 < float(share.group(1)) < 100
    ratio = re.fullmatch(r"project vs reference loop: (\d+\.\d\d)x", lines[-1])
    assert ratio and float(ratio.group(1)) > 0


def test_bench_refuses_a_gpu_it_does_not_have_and_bad_counts():
    import torch

    if not torch.cuda.is_available():
        assert_one_line_error(run_cli(*BENCH, "--device", "cuda"), "--device cuda")
    assert_one_line_error(run_cli(*BENCH, "--sharing", "0"), "--sharing")


def test_cost_counts_the_evaluations_of_a_whole_run():
    small = {k: v for k, v in TINY.items() if k != "train"}
    overrides = {f"{s}.{k}": v for s, kv in small.items() for k, v in kv.items()}
    cost = measure_cost({**overrides, "train.steps": 60, "train.checkpoint_every": 20}, 1)
    cfg = apply_overrides(
        Config.from_dict(TINY), {"train.steps": 60, "train.checkpoint_every": 20}, "test"
    )
    schedule, step = [0], 0
    while step < 60:
        step = next_eval_step(cfg, step)
        schedule.append(step)
    assert cost["evaluations"] == len(schedule) and cost["steps"] == 60
    run = 60 * cost["step"] + cost["evaluations"] * cost["evaluation"]
    assert cost["share_of_run"] == pytest.approx(cost["evaluations"] * cost["measures"] / run)
    assert min(cost["step"], cost["evaluation"], cost["measures"]) > 0
