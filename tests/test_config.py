"""Settings: the paper's defaults, experiment files, overrides, and one clear error per mistake."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error, run_cli, write_experiment

from grok.config import Config, ConfigError
from grok.experiment import Resources, load_experiment
from grok.overrides import apply_overrides, dump_config, load_config, parse_set
from grok.run import pick_trial


def test_defaults_are_the_papers_recipe():
    cfg = Config()
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head, cfg.model.d_ff) == (
        2,
        128,
        4,
        512,
    )
    assert cfg.model.dropout == 0.0
    o = cfg.optim
    assert (o.name, o.lr, o.beta1, o.beta2, o.weight_decay) == ("adamw", 1e-3, 0.9, 0.98, 1.0)
    assert (o.warmup_steps, o.schedule) == (10, "constant")
    assert (cfg.train.batch_size, cfg.train.steps) == (512, 100_000)
    assert (cfg.task.op, cfg.task.p, cfg.task.tokenizer) == ("/", 97, "number")


def test_experiment_merges_its_config_over_the_defaults(tmp_path):
    exp = load_experiment(write_experiment(tmp_path / "e.yaml", "e", {"optim": {"lr": 3e-3}}))
    assert exp.name == "e"
    assert exp.base.optim.lr == 3e-3
    assert exp.base.optim.beta2 == 0.98  # untouched default
    assert exp.resources == Resources(cpu=1.0, gpu=0.0)
    assert [values for values, _ in exp.trials()] == [{}]


def test_yaml_numbers_in_scientific_notation_are_read_as_numbers(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("config:\n  optim: {lr: 1e-3}\n  train: {steps: 1e5}\n")
    cfg = load_experiment(path).base
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.train.steps == 100_000 and isinstance(cfg.train.steps, int)


def test_set_overrides_the_file_with_values_read_as_yaml(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e")
    exp = load_experiment(
        path, ["optim.lr=3e-4", "train.batch_size=full", "stop.after_grok_steps=5"]
    )
    assert exp.base.optim.lr == 3e-4
    assert exp.base.train.batch_size == "full"
    assert exp.base.stop.after_grok_steps == 5
    assert parse_set("stop.after_grok_steps=null") == ("stop.after_grok_steps", None)
    assert parse_set("task.text=a=b") == ("task.text", "a=b")


def test_grid_is_the_product_of_its_axes_in_file_order(tmp_path):
    grid = {"optim.weight_decay": [0.0, 1.0], "seed": [0, 1, 2]}
    exp = load_experiment(write_experiment(tmp_path / "g.yaml", "g", grid=grid))
    trials = exp.trials()
    assert [values for values, _ in trials] == [
        {"optim.weight_decay": wd, "seed": s} for wd in (0.0, 1.0) for s in (0, 1, 2)
    ]
    assert [(c.optim.weight_decay, c.seed) for _, c in trials] == [
        (wd, s) for wd in (0.0, 1.0) for s in (0, 1, 2)
    ]
    assert pick_trial(exp, "wd=1,seed=2")[1].seed == 2
    assert pick_trial(exp, "4")[0] == "wd=1,seed=1"


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = apply_overrides(Config(), {"task.op": "+", "optim.lr": 3e-4}, "test")
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


# Each kind of mistake, as an experiment file (and --set items), and what its error must name.
BAD = {
    "unknown top-level key": ("configs: {}\n", [], ["unknown key 'configs'"]),
    "unknown section key": ("config: {sed: 1}\n", [], ["unknown key 'sed'"]),
    "unknown nested key": ("config: {model: {n_layers: 2}}\n", [], ["'model.n_layers'"]),
    "wrong type": ("config: {model: {n_layer: two}}\n", [], ["model.n_layer", "wrong type"]),
    "bool for a number": ("config: {optim: {lr: true}}\n", [], ["optim.lr", "wrong type"]),
    "not a literal": ("config: {task: {op: '**'}}\n", [], ["task.op", "'+', '-', '/'"]),
    "out of range": ("config: {optim: {lr: 0}}\n", [], ["optim.lr", "out of range"]),
    "fraction of 1": (
        "config: {task: {train_fraction: 1.5}}\n",
        [],
        ["task.train_fraction", "out of range"],
    ),
    "heads do not divide": (
        "config: {model: {d_model: 30, n_head: 4}}\n",
        [],
        ["model.n_head", "not divisible"],
    ),
    "division mod non-prime": (
        "config: {task: {op: /, p: 91}}\n",
        [],
        ["task.p", "91 is not prime"],
    ),
    "no test split": (
        "config: {task: {train_fraction: 0.9, val_fraction: 0.1}}\n",
        [],
        ["task.train_fraction", "leaves no test split"],
    ),
    "settled without a stop": (
        "config: {stop: {settled: true}}\n",
        [],
        ["stop.settled", "stop.after_grok_steps"],
    ),
    "set without =": ("config: {}\n", ["optim.lr"], ["--set 'optim.lr'", "dotted.key=value"]),
    "set of unknown key": ("config: {}\n", ["optim.lrr=1"], ["unknown key 'optim.lrr'"]),
    "set of wrong type": ("config: {}\n", ["train.steps=many"], ["train.steps", "wrong type"]),
    "grid with a bad value": (
        "grid: {optim.weight_decay: [0.1, -1]}\n",
        [],
        ["grid", "optim.weight_decay", "out of range"],
    ),
    "grid of unknown key": ("grid: {optim.decay: [0.1]}\n", [], ["unknown key 'optim.decay'"]),
    "grid combination": (
        "grid: {model.d_model: [32, 36], model.n_head: [4, 8]}\n",
        [],
        ["model.n_head", "not divisible"],
    ),
    "invalid YAML": ("config: {task: {p: 97}\n", [], ["not valid YAML"]),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_each_mistake_is_refused_with_a_message_naming_file_and_key(tmp_path, kind):
    text, sets, names = BAD[kind]
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path, sets)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    if not sets:
        assert message.startswith(str(path))


def test_missing_experiment_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such experiment file"):
        load_experiment(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "kind", ["unknown nested key", "invalid YAML", "set without =", "grid with a bad value"]
)
def test_train_cli_reports_a_bad_config_in_one_line_and_writes_nothing(tmp_path, kind):
    text, sets, names = BAD[kind]
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    args = ["-m", "grok.train", str(path), "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    assert_one_line_error(run_cli(*args), *names)
    assert not out.exists()


def test_train_cli_names_a_missing_file(tmp_path):
    proc = run_cli("-m", "grok.train", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, "nope.yaml", "no such experiment file")
    assert not (tmp_path / "o").exists()
