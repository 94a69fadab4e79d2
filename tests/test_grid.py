"""Big grids: checked without building one config per point, listed by --dry-run in seconds,
and started only with --yes-large when they would keep the cluster busy for over a day."""

from __future__ import annotations

import itertools

import pytest
import yaml
from conftest import write_experiment
from hypothesis import given, settings
from hypothesis import strategies as st

import grok.commands.sweep
import grok.config
import grok.experiment
import grok.overrides
import tune_main
from grok.config import Config, ConfigError
from grok.experiment import load_experiment
from grok.overrides import apply_overrides
from grok.run import pick_trial

# 6 keys x 10 values: a million points, none of them invalid
BIG = {
    "optim.lr": [round(1e-3 * (i + 1), 4) for i in range(10)],
    "optim.weight_decay": [round(0.1 * i, 2) for i in range(10)],
    "model.dropout": [round(0.05 * i, 2) for i in range(10)],
    "eval.min_every": list(range(10, 20)),
    "task.data_seed": list(range(10)),
    "seed": list(range(10)),
}


@pytest.fixture
def builds(monkeypatch) -> list:
    """Every full config built (and checked) while the test runs: one entry each."""
    calls: list = []
    original = Config.from_dict.__func__

    def counted(cls, data, source="config"):
        calls.append(source)
        return original(cls, data, source)

    def with_values(base, values):
        calls.append("with_values")
        return grok.overrides.with_values(base, values)

    monkeypatch.setattr(grok.config.Config, "from_dict", classmethod(counted))
    monkeypatch.setattr(grok.experiment, "with_values", with_values)
    return calls


def test_a_million_point_grid_is_checked_without_building_its_points(tmp_path, builds):
    exp = load_experiment(write_experiment(tmp_path / "big.yaml", "big", grid=BIG))
    assert exp.num_trials == 10**6
    assert len(builds) < 10  # the base; the values and rules need no full config each


@pytest.fixture
def two_cpus(monkeypatch):
    """This machine, as the sweep command sees it, has 2 CPUs and no GPU (the estimates are
    exact)."""
    monkeypatch.setattr(grok.commands.sweep, "local_size", lambda: (2.0, 0.0))


def test_dry_run_of_a_million_points_shows_count_values_and_samples(
    tmp_path, builds, capsys, two_cpus
):
    path = write_experiment(tmp_path / "big.yaml", "big", grid=BIG)
    assert tune_main.main([str(path), "--dry-run", "--storage", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("big: 1000000 trials")
    assert "grid: 6 keys, 1000000 points" in out
    assert "estimate: 1000000 trials x up to 60 steps at ~10 steps/s per trial, 2 at once" in out
    assert "about 34.7 days (over a day: starting it needs --yes-large)" in out
    for key, values in BIG.items():
        assert f"10 values: {', '.join(map(str, values))}" in out, key
    assert "lr=0.001,wd=0,dropout=0,min_every=10,data_seed=0,seed=0:" in out  # the first
    assert "lr=0.01,wd=0.9,dropout=0.45,min_every=19,data_seed=9,seed=9:" in out  # the last
    assert "... 999994 more" in out
    assert len(builds) < 20 and not (tmp_path / "r").exists()


def test_a_sweep_over_a_day_is_refused_without_yes_large(tmp_path, capsys, two_cpus):
    path = write_experiment(tmp_path / "big.yaml", "big", grid=BIG)
    assert tune_main.main([str(path), "--storage", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: 1000000 trials x up to")
    assert "2 at once on this machine: about 34.7 days, over a day; pass --yes-large" in err
    assert not (tmp_path / "r").exists()


def test_the_estimate_counts_waves_of_trials_the_cluster_runs_at_once(tmp_path):
    grid = {"seed": [0, 1, 2], "train.steps": [100, 36_000]}
    exp = load_experiment(write_experiment(tmp_path / "e.yaml", "e", grid=grid))
    assert exp.steps_per_trial() == 36_000
    assert exp.parallel_trials(cpus=4, gpus=0, max_concurrent=None) == 4
    assert exp.parallel_trials(cpus=4, gpus=0, max_concurrent=2) == 2
    assert exp.estimated_seconds(at_once=4) == 2 * 3600  # 6 trials: 2 waves of an hour
    assert exp.estimated_seconds(at_once=1) == 6 * 3600


def test_one_trial_of_a_million_is_picked_without_building_the_rest(tmp_path, builds):
    exp = load_experiment(write_experiment(tmp_path / "big.yaml", "big", grid=BIG))
    builds.clear()
    name, cfg = pick_trial(exp, str(10**6 - 1))
    assert name == "lr=0.01,wd=0.9,dropout=0.45,min_every=19,data_seed=9,seed=9"
    assert (cfg.optim.lr, cfg.seed) == (0.01, 9) and len(builds) == 1


def test_one_bad_combination_in_a_big_grid_is_found_and_named(tmp_path):
    grid = {**BIG, "model.d_model": [32, 48, 64], "model.n_head": [1, 2, 4, 8, 32]}
    with pytest.raises(ConfigError) as err:
        load_experiment(write_experiment(tmp_path / "big.yaml", "big", grid=grid))
    message = str(err.value)
    assert "model.n_head: d_model 48 is not divisible by n_head 32" in message
    assert "(at model.d_model=48, model.n_head=32)" in message


# Values of the settings the cross-field rules read, valid each alone, some invalid together.
RULE_VALUES = {
    "model.d_model": [30, 32, 48],
    "model.n_head": [1, 3, 4, 16],
    "task.op": ["+", "-", "/"],
    "task.p": [5, 9, 11],
    "task.train_fraction": [0.3, 0.6, 0.9],
    "task.val_fraction": [0.0, 0.1, 0.4],
    "eval.min_every": [5, 50, 500],
    "eval.max_every": [10, 100],
    "stop.settled": [False, True],
    "stop.after_grok_steps": [None, 10],
    "optim.lr": [1e-3, 3e-3],
}


@settings(max_examples=4 * settings().max_examples)
@given(
    grid=st.dictionaries(
        st.sampled_from(sorted(RULE_VALUES)),
        st.integers(1, 3),
        min_size=1,
        max_size=5,
    ).map(lambda sizes: {k: RULE_VALUES[k][:n] for k, n in sizes.items()})
)
def test_checking_rules_per_combination_decides_as_building_every_point(tmp_path_factory, grid):
    path = tmp_path_factory.getbasetemp() / "rules.yaml"
    path.write_text(yaml.safe_dump({"name": "rules", "grid": grid}))
    keys = list(grid)
    every_point_valid = True
    for values in itertools.product(*grid.values()):
        try:
            apply_overrides(Config(), dict(zip(keys, values)), "point")
        except ConfigError:
            every_point_valid = False
            break
    try:
        load_experiment(path)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == every_point_valid
