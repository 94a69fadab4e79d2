"""Searches: sampled spaces, the censored objective, Optuna and random search, the stopper."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import TINY, assert_one_line_error, run_cli, write_experiment

import tune_main
from grok import tune as gtune
from grok.config import Config, ConfigError
from grok.experiment import load_experiment
from grok.metrics import CENSORED, OBJECTIVE, VAL_CENSORED, VAL_OBJECTIVE, crossing_key
from grok.results import read_reports, trial_dirs, write_record
from grok.train import Trainer
from plotting import report
from plotting import search as psearch
from plotting.frames import load

TEST_99 = crossing_key("test/acc", 0.99)
VAL_99 = crossing_key("val/acc", 0.99)
SPACE = {
    "optim.lr": {"loguniform": [1.0e-3, 3.0e-2]},
    "optim.weight_decay": {"uniform": [0.0, 2.0]},
    "model.n_layer": {"randint": [1, 2]},
    "train.batch_size": {"choice": [8, 16]},
}


def search_file(tmp_path, name="s", config=None, grid=None, **search):
    return write_experiment(
        tmp_path / f"{name}.yaml",
        name,
        config,
        {"seed": [0]} if grid is None else grid,
        search={"space": SPACE, "num_samples": 2, **search},
    )


def test_space_maps_to_the_right_tune_domains(tmp_path):
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Uniform

    exp = load_experiment(search_file(tmp_path))
    lr, wd, layers, batch = (gtune.tune_domain(exp.search.space[k]) for k in SPACE)
    assert isinstance(lr, Float) and isinstance(lr.get_sampler(), LogUniform)
    assert (lr.lower, lr.upper) == (1e-3, 3e-2)
    assert isinstance(wd, Float) and isinstance(wd.get_sampler(), Uniform)
    assert (wd.lower, wd.upper) == (0.0, 2.0)
    assert isinstance(layers, Integer) and (layers.lower, layers.upper) == (1, 3)  # hi included
    assert isinstance(batch, Categorical) and batch.categories == [8, 16]
    assert exp.num_trials == 2


def test_searchers_are_seeded_and_repeat_each_point_over_the_grid(tmp_path):
    exp = load_experiment(search_file(tmp_path, grid={"seed": [0, 1, 2]}, seed=7))

    def suggestions():
        space, args = gtune._search_config(exp, None)
        alg = args["search_alg"]
        alg.set_search_properties(args["metric"], args["mode"], space)
        return [alg.suggest(f"trial{i}") for i in range(6)]

    first = suggestions()
    assert first == suggestions()  # same searcher seed, same points
    assert [c["seed"] for c in first] == [0, 1, 2, 0, 1, 2]
    point = lambda c: {k: c[k] for k in SPACE}
    assert point(first[0]) == point(first[1]) == point(first[2]) != point(first[3])
    for config in first:
        assert 1e-3 <= config["optim.lr"] <= 3e-2 and config["model.n_layer"] in (1, 2)


def test_asha_and_the_train_stopper_are_built_in_steps(tmp_path):
    exp = load_experiment(
        search_file(
            tmp_path,
            scheduler={"name": "asha", "grace_period": 20, "reduction_factor": 2},
            stop_if_train_below={"step": 30, "acc": 0.99},
        )
    )
    _, args = gtune._search_config(exp, None)
    asha = args["scheduler"]
    assert (asha._time_attr, asha._max_t, asha._reduction_factor) == ("step", 60, 2)
    stop = exp.search.stop_if_train_below
    stopper = gtune.TrainAccStopper(stop.step, stop.acc)
    assert stopper("t", {"step": 30, "grok/train_acc_99_step": None})
    assert not stopper("t", {"step": 30, "grok/train_acc_99_step": 20})
    assert not stopper("t", {"step": 20, "grok/train_acc_99_step": None})


# A tiny task that reaches 99% test accuracy at step 340 with seed 0 and not within its
# budget with seed 1 (both measured; on the CPU the same config gives the same numbers).
GROKS = {
    **TINY,
    "task": {**TINY["task"], "train_fraction": 0.9, "val_fraction": 0.05},
    "optim": {"lr": 1e-2, "weight_decay": 1.0},
    "train": {**TINY["train"], "steps": 600, "batch_size": "full"},
    "eval": {"min_every": 10, "max_every": 50},
    "stop": {"after_grok_steps": 0},
}
# The same in a search, whose trials stop on the val split (a stop on test is refused there).
SEARCH_GROKS = {**GROKS, "stop": {"after_grok_steps": 0, "split": "val"}}


# x+y mod 11, 90% in training, full batch, d_model 64: memorizes by step ~80 and reaches val 99%
# at steps 383-1232 on each of seeds 0-5 tried (seed 2: test 99% at 258, val 99% at 383, on one
# CPU). Far from the edge of its budget, so another CPU's arithmetic moves the steps,
# not the outcome.
SURE = {
    **GROKS,
    "model": {**TINY["model"], "d_model": 64, "n_head": 4, "d_ff": 256},
    "train": {**GROKS["train"], "steps": 3000},
    "seed": 2,
}


def test_objectives_are_each_splits_crossing_or_the_budget_when_censored():
    grokked = Trainer(Config.from_dict(SURE)).fit()  # stops on test, 0 steps after
    assert grokked[TEST_99] is not None and grokked["status"] == "grokked"
    assert (grokked[OBJECTIVE], grokked[CENSORED]) == (grokked[TEST_99], False)
    # Stopped at step 150, after memorizing and long before either split could cross.
    never = Trainer(Config.from_dict({**SURE, "train": {**SURE["train"], "steps": 150}})).fit()
    assert never[TEST_99] is None and never["status"] == "finished"
    assert (never[OBJECTIVE], never[CENSORED]) == (150, True)  # the budget, train.steps
    for last, budget in ((grokked, 3000), (never, 150)):
        val = last[VAL_99]
        assert (last[VAL_OBJECTIVE], last[VAL_CENSORED]) == (
            (budget, True) if val is None else (val, False)
        )


def test_a_search_stops_its_trials_on_the_val_split():
    """stop.split: val ends a run once *val* accuracy has crossed, whatever test does."""
    last = Trainer(Config.from_dict({**SURE, "stop": SEARCH_GROKS["stop"]})).fit()
    assert last["status"] == "grokked" and last[VAL_99] is not None
    # after_grok_steps 0: the first evaluation at or after the val crossing (located between
    # evaluations), at most eval.max_every = 50 steps later
    assert last[VAL_99] <= last["step"] < last[VAL_99] + 50


BAD_SEARCH = {
    "unknown distribution": ({"optim.lr": {"normal": [0, 1]}}, {}, "not a distribution"),
    "inverted bounds": ({"optim.lr": {"loguniform": [1e-2, 1e-4]}}, {}, "inverted"),
    "bound out of range": ({"optim.lr": {"uniform": [-1.0, 1e-2]}}, {}, "out of range"),
    "log of zero": ({"optim.weight_decay": {"loguniform": [0.0, 1.0]}}, {}, "lo > 0"),
    "floats for an integer": ({"model.n_layer": {"uniform": [1, 3]}}, {}, "an integer"),
    "unknown setting": ({"optim.lrr": {"uniform": [0.1, 0.2]}}, {}, "unknown key 'optim.lrr'"),
    "bad choice": ({"task.op": {"choice": ["+", "**"]}}, {}, "task.op"),
    "choice combination": (
        {"model.d_model": {"choice": [32, 36]}, "model.n_head": {"choice": [2, 8]}},
        {},
        "not divisible",
    ),
    "searched and gridded": ({"seed": {"randint": [0, 3]}}, {}, "seeds belong in grid"),
    "budget searched": ({"train.steps": {"randint": [10, 20]}}, {}, "train.steps"),
    "metric never reported": (None, {"metric": "val/accuracy"}, "not a reported number"),
    "metric that may be None": (None, {"metric": "grok/test_acc_99_step"}, VAL_OBJECTIVE),
    "test objective": (None, {"metric": OBJECTIVE}, "chooses on the test split"),
    "test accuracy": (None, {"metric": "test/acc"}, "or say search.allow_test: true"),
    "allow_test not a bool": (None, {"allow_test": "yes"}, "allowed: true, false"),
    "algorithm": (None, {"algorithm": "bayes"}, "optuna, random"),
    "mode": (None, {"mode": "lowest"}, "min, max"),
    "samples": (None, {"num_samples": 0}, "num_samples"),
    "scheduler": (None, {"scheduler": "hyperband"}, "asha"),
    "grace beyond budget": (None, {"scheduler": {"name": "asha", "grace_period": 60}}, "below"),
    "stopper accuracy": (None, {"stop_if_train_below": {"step": 10, "acc": 0.9}}, "0.99, 1"),
    "unknown search key": (None, {"samples": 3}, "unknown key 'search.samples'"),
}


@pytest.mark.parametrize("kind", list(BAD_SEARCH))
def test_bad_search_sections_are_refused_naming_the_key(tmp_path, kind):
    space, options, fragment = BAD_SEARCH[kind]
    path = write_experiment(
        tmp_path / "bad.yaml",
        "bad",
        grid={"seed": [0]},
        search={"space": space or SPACE, **options},
    )
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)) and fragment in message


def test_a_key_in_grid_and_space_or_set_is_refused(tmp_path):
    path = search_file(tmp_path, grid={"optim.lr": [1e-3]})
    with pytest.raises(ConfigError, match="also a grid axis"):
        load_experiment(path)
    with pytest.raises(ConfigError, match="--set optim.lr would override search.space"):
        load_experiment(search_file(tmp_path), ["optim.lr=1e-3"])


def test_bad_search_is_one_line_exit_2_before_ray_starts(tmp_path):
    path = search_file(tmp_path, metric="grok/test_acc_99_step")
    storage = tmp_path / "results"
    proc = run_cli("tune_main.py", str(path), "--storage", str(storage))
    assert_one_line_error(proc, "search.metric", VAL_OBJECTIVE)
    assert not storage.exists() and "Ray" not in proc.stdout


def test_dry_run_describes_the_space(tmp_path, capsys):
    path = search_file(tmp_path, grid={"seed": [0, 1]}, stop_if_train_below={"step": 30})
    assert tune_main.main([str(path), "--dry-run", "--storage", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("s: 4 trials") and "2 sampled points x 2 grid point(s)" in out
    assert "optim.lr            loguniform [0.001, 0.03]" in out
    assert "model.n_layer       randint [1, 2]" in out and "choice [8, 16]" in out
    assert "optuna (TPE, seed 0)" in out and f"{VAL_OBJECTIVE} (min)" in out
    assert "val accuracy first reaches 99%" in out and "the test split is held out" in out
    assert "has not reached 99% by step 30" in out and not (tmp_path / "r").exists()


def check_finals(folder, budget: int) -> dict[str, dict]:
    """Each trial's last report carries the objective: its val crossing, or the budget."""
    finals = {t.name: read_reports(t)[-1] for t in trial_dirs(folder)}
    for last in finals.values():
        if last[VAL_CENSORED]:
            assert last[VAL_OBJECTIVE] == budget and last[VAL_99] is None
        else:
            assert last[VAL_OBJECTIVE] == last[VAL_99] <= budget
    return finals


def test_tiny_optuna_search_runs_with_stopper_and_reports_the_objective(tmp_path, ray_address):
    space = {"optim.lr": {"loguniform": [3e-3, 1.2e-2]}}
    path = write_experiment(
        tmp_path / "opt.yaml",
        "opt",
        SEARCH_GROKS,
        {"seed": [0, 1]},
        search={"space": space, "num_samples": 2, "stop_if_train_below": {"step": 160}},
    )
    storage = tmp_path / "results"
    proc = run_cli("tune_main.py", str(path), "--storage", str(storage), "--address", ray_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = storage / "opt"
    finals = check_finals(folder, 600)
    assert sorted(finals) == ["t001,seed=0", "t002,seed=1", "t003,seed=0", "t004,seed=1"]
    params = {n: yaml.safe_load((folder / n / "params.json").read_text()) for n in finals}
    assert params["t001,seed=0"]["optim.lr"] == params["t002,seed=1"]["optim.lr"]
    for last in finals.values():  # the stopper ends a run that has not memorized by step 160
        if last["status"] == "stopped":
            assert last["step"] == 160 and last["grok/train_acc_99_step"] is None
        else:
            assert last["status"] in ("finished", "grokked")
    assert {"grokked", "stopped"} <= {last["status"] for last in finals.values()}
    record = yaml.safe_load((folder / "experiment.yaml").read_text())
    assert record["search"]["space"] == space and record["search"]["algorithm"] == "optuna"
    ranked = psearch.points(load(folder))
    assert len(ranked) == 2 and set(ranked["runs"]) == {2}
    best = ranked.iloc[0]
    assert best["objective"] == min(ranked["objective"])
    assert f"best: optim.lr={best['optim.lr']:.3g}" in proc.stdout


def test_tiny_random_search_is_reproducible_plots_and_says_which_split_it_chose_on(
    tmp_path, ray_address
):
    path = search_file(tmp_path, "rnd", config=TINY, algorithm="random", seed=3)
    exp = load_experiment(path)
    sampled = []
    for run in ("a", "b"):
        results = gtune.build_tuner(exp, tmp_path / run, verbose=0).fit()
        assert not results.errors
        folder = tmp_path / run / "rnd"
        check_finals(folder, 60)
        sampled.append(sorted((r.path.rsplit("/", 1)[-1], r.config) for r in results))
    assert sampled[0] == sampled[1]
    assert [name for name, _ in sampled[0]] == ["t000,seed=0", "t001,seed=0"]
    write_record(exp, folder, "python tune_main.py rnd.yaml")
    out = tmp_path / "report"
    paths = psearch.write(load(folder), out)
    assert paths["png"].stat().st_size > 10_000
    table = paths["md"].read_text()
    assert "| rank | objective/val_grok_step | censored | lr | wd | layers | bs | trials |" in table
    assert (
        "It chose on the val split (objective/val_grok_step); the test split was held out" in table
    )
    text = report.experiment_section(load(folder), out)
    assert "![rnd search](rnd_search.png)" in text and "best: optim.lr=" in text
    # The same runs, had the search's file chosen on the test split (as it may, when it says so):
    # the report says so.
    chose = tmp_path / "t"
    shutil.copytree(folder, chose)
    on_test = search_file(tmp_path, "t", config=TINY, metric="test/acc", allow_test=True)
    write_record(load_experiment(on_test), chose, "python tune_main.py t.yaml")
    text = psearch.write(load(chose), tmp_path / "out")["md"].read_text()
    assert "It chose on the test split, as its file allowed (search.allow_test: true)" in text
    assert "its objective is test/acc" in text


def test_a_search_may_read_the_test_split_only_when_its_file_says_so(tmp_path, capsys):
    stops_on_test = {**TINY, "stop": {"after_grok_steps": 10}}
    with pytest.raises(ConfigError, match="stop.after_grok_steps watches the test split"):
        load_experiment(search_file(tmp_path, config=stops_on_test))
    path = search_file(tmp_path, config=stops_on_test, metric=OBJECTIVE, allow_test=True)
    exp = load_experiment(path)
    assert exp.search.allow_test and exp.search.to_record()["allow_test"] is True
    assert tune_main.main([str(path), "--dry-run", "--storage", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "chooses on the test split (search.allow_test: true)" in out


def test_tiny_asha_search_stops_the_worse_trials_at_its_rungs(tmp_path, ray_address):
    """ASHA for real: trials behind at a rung (step 20 or 40) stop there, marked `stopped`.

    One trial at a time and a continuous metric make it deterministic: each trial meets the
    rungs after the earlier ones filled them, and val/loss does not tie the way accuracy near
    chance does (a tie is never below the cutoff, so nothing would stop)."""
    space = {"optim.lr": {"loguniform": [1e-4, 3e-2]}}
    path = write_experiment(
        tmp_path / "asha.yaml",
        "asha",
        TINY,
        {"seed": [0]},
        search={
            "space": space,
            "num_samples": 6,
            "algorithm": "random",
            "seed": 1,
            "metric": "val/loss",
            "mode": "min",
            "scheduler": {"name": "asha", "grace_period": 20, "reduction_factor": 2},
        },
    )
    results = gtune.build_tuner(load_experiment(path), tmp_path, max_concurrent=1, verbose=0).fit()
    assert not results.errors
    finals = {t.name: read_reports(t)[-1] for t in trial_dirs(tmp_path / "asha")}
    assert len(finals) == 6
    stopped = [last for last in finals.values() if last["status"] == "stopped"]
    assert stopped and all(last["step"] in (20, 40) for last in stopped)
    assert all(last["status"] == "finished" for last in finals.values() if last["step"] == 60)
    assert any(last["step"] == 60 for last in finals.values())  # the first at a rung goes on
