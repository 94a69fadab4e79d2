"""The power-law fit of grokking time (plotting/law.py); the study file's law and fig1 entries."""

from __future__ import annotations

import math

import pytest
import yaml
from conftest import ROOT, assert_one_line_error, run_cli
from test_plotting import write_experiment, write_trial

from plotting.frames import load
from plotting.law import distinct_draws, extreme, law

WD = "optim.weight_decay"


def law_experiment(root):
    """Test accuracy reaches 100% at 2000/wd steps (times 1.02 per seed); one run never does."""
    exp = write_experiment(root, "law", {WD: [0.25, 0.5, 1.0, 2.0], "seed": [0, 1, 2]})
    for wd in (0.25, 0.5, 1.0, 2.0):
        for seed in (0, 1, 2):
            params = {WD: wd, "seed": seed}
            if wd == 0.25 and seed == 2:
                write_trial(exp, params, [0, 1, 1, 1], [0, 0, 0.2, 0.3], steps=[0, 200, 4000, 9000])
                continue
            at = round(2000 / wd * 1.02**seed)
            write_trial(exp, params, [0, 1, 1, 1], [0, 0, 0.5, 1.0], steps=[0, 200, at - 1, at])
    return exp


def fits(table, measure="test_step", values="all"):
    chosen = table[(table["measure"] == measure) & (table["values"] == values)]
    return chosen.set_index("threshold")


def test_slope_of_an_inverse_law_is_minus_one_and_censored_runs_are_not_fitted(tmp_path):
    table = fits(law(load(law_experiment(tmp_path)), WD))
    row = table.loc[100]
    assert (row["runs"], row["fitted"], row["censored"]) == (12, 11, 1)
    assert math.isclose(row["slope"], -1.0, abs_tol=0.01)  # seed 2 lacks its wd=0.25 run
    assert row["slope_lo"] <= -1.0 <= row["slope_hi"] and row["slope_hi"] - row["slope_lo"] < 0.02
    assert math.isclose(10 ** row["intercept"], 2000 * 1.02, rel_tol=0.02)
    again = fits(law(load(tmp_path / "law"), WD))
    assert again.loc[100, "slope_lo"] == row["slope_lo"]  # the bootstrap is seeded
    assert row["reg_lo"] < row["slope"] < row["reg_hi"] and row["seeds"] == 3


def test_the_delay_and_the_fit_without_the_extreme_value_are_fitted_too(tmp_path):
    table = law(load(law_experiment(tmp_path)), WD)
    assert set(table["values"]) == {"all", "without 2"}  # 2 is as far from the mean log as 0.25
    delay = fits(table, "steps_to_grok").loc[100]
    # the delay is 2000/wd x 1.02^seed - 200: the offset takes a larger share of the shorter
    # delays at large wd, so it falls faster than 1/wd
    assert (delay["fitted"], delay["censored"]) == (11, 1) and -1.2 < delay["slope"] < -1.0
    without = fits(table, "test_step", "without 2").loc[100]
    assert (without["runs"], without["fitted"]) == (9, 8)
    assert math.isclose(without["slope"], -1.0, abs_tol=0.01)


def test_extreme_value_and_distinct_bootstrap_draws():
    import pandas as pd

    assert extreme(pd.Series([0.1, 0.2, 0.3, 0.5, 1.0, 2.0])) == 2.0  # mean log -0.37
    assert extreme(pd.Series([0.01, 0.5, 1.0, 2.0])) == 0.01
    assert extreme(pd.Series([0.5, 1.0, 2.0])) == 2.0  # a tie: the larger
    assert extreme(pd.Series([1.0, 2.0])) is None
    assert [distinct_draws(n) for n in (3, 5)] == [10, 126]


def test_study_entry_draws_the_law_and_a_group_fig1_with_its_delay(tmp_path):
    law_experiment(tmp_path / "results")
    study = tmp_path / "study.yaml"
    entry = {"name": "law", "law": WD, "fig1": "wd=0.25"}
    study.write_text(
        yaml.safe_dump({"title": "t", "parts": [{"title": "p", "experiments": [entry]}]})
    )
    out = tmp_path / "report"
    proc = run_cli(
        "-m", "plotting.report", str(tmp_path / "results"), "--out", str(out), "--study", str(study)
    )
    assert proc.returncode == 0, proc.stderr
    text = (out / "REPORT.md").read_text()
    assert (out / "law_law.png").is_file() and (out / "law_fig1_wd=0.25.png").is_file()
    assert "| steps to test | 100% | all | 12 | 11 | 1 | -1.00 |" in text
    # wd=0.25: train 99% at 200, test 99% at 8000 and 8160: 1.60 and 1.61 decades
    assert "1.61 decades of steps on average (1.60, 1.61; 2 of 3 seeds reached both)" in text
    # seed 2 never does: train 99% at 200, its last step 9000, log10(45) = 1.65
    assert "`wd=0.25,seed=2` at least 1.65 decades (train 99% at step 200, last step 9000)" in text


def test_a_run_short_of_every_test_equation_says_how_close(tmp_path):
    from plotting.grok_steps import crossings, markdown, summarize

    res = load(law_experiment(tmp_path))
    cross = crossings(res)
    row = cross[(cross["trial"] == "wd=0.25,seed=2") & (cross["threshold"] == 100)].iloc[0]
    # x/y mod 97 at the default splits: 9312 equations, 3725 of them in the test split, and
    # 0.3 of 3725 rounds to 1118 right
    assert (row["best_test"], row["test_size"]) == (0.3, 3725)
    text = markdown(res, summarize(res, cross), cross)
    assert "censored at 9000; best test 0.3000: 2607 of 3725 wrong" in text


def test_study_estimate_counts_trials_and_bounds_the_time():
    from plotting.study import estimate, load_study

    study = load_study(ROOT / "report" / "study.yaml")
    lines = estimate(study.only([]))
    assert "  wd_law: 30 trials, at most 3,000,000 steps" in lines
    assert lines[-1].startswith("19 experiments, 204 trials") and "hours at" in lines[-1]
    # fig1_paper (3 seeds x 1e6 steps) is presented but run only when named
    assert not any("fig1_paper" in line for line in lines)
    assert (
        estimate(study.only(["fig1_paper"]))[0] == "  fig1_paper: 3 trials, at most 3,000,000 steps"
    )


def test_study_queue_keeps_the_named_experiments_in_study_order():
    from plotting.study import main

    proc = run_cli("-m", "plotting.study", "report/study.yaml", "ablation_wd", "addsub")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == [
        "experiments/addsub.yaml",
        "experiments/ablation_wd.yaml",
    ]
    assert main(["report/study.yaml", "--estimate", "addsub"]) == 0
    proc = run_cli("-m", "plotting.study", "report/study.yaml", "addsub", "nosuch")
    assert_one_line_error(proc, "nosuch is not an experiment of the study", "ablation_wd")


def test_a_study_entry_run_flag_is_true_or_false(tmp_path):
    from grok.schema import ConfigError
    from plotting.study import load_study

    study = tmp_path / "study.yaml"
    entry = {"name": "x", "run": "no"}
    study.write_text(yaml.safe_dump({"parts": [{"title": "p", "experiments": [entry]}]}))
    with pytest.raises(ConfigError, match="run is true or false"):
        load_study(study)
