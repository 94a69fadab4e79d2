"""Watching a sweep: TensorBoard, W&B and MLflow hold each trial's metrics at its training steps,
named by its values; the tracking section and flags are checked before Ray starts."""

from __future__ import annotations

import json
import math
import struct

import pytest
import yaml
from conftest import TINY, assert_one_line_error, run_cli, write_experiment

import tune_main
from grok import tracking
from grok.config import Config
from grok.overrides import apply_overrides, flatten
from grok.results import read_reports, trial_dirs
from grok.schema import ConfigError

# What Tune adds to each report; the rest is what the trainable reported.
TUNE_KEYS = {
    "timestamp",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "config",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
}
# checkpoint_every 25 puts evaluations at 0 10 20 25 35 45 50 60: steps, not report counts.
UNEVEN = {**TINY, "train": {**TINY["train"], "checkpoint_every": 25}}
GRID = {"optim.lr": [3e-3, 1e-2], "seed": [0]}


def reported(row: dict) -> dict[str, float]:
    """The trainable's numeric metrics in one result.json row."""
    return {
        k: float(v)
        for k, v in row.items()
        if k not in TUNE_KEYS and isinstance(v, (int, float)) and not math.isnan(v)
    }


def full_params(values: dict) -> dict:
    """A trial's resolved config as flat dotted keys."""
    return flatten(apply_overrides(Config.from_dict(UNEVEN), values, "test").to_dict())


# ---------------------------------------------------------------- the section and the flags


def test_section_and_flags_name_the_trackers(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    path = write_experiment(tmp_path / "e.yaml", "e", tracking={"wandb": {"project": "grok"}})
    t = tracking.read_tracking(path)
    assert t.wandb == tracking.WandbSettings("grok", None, "online") and t.mlflow is None
    t = tracking.read_tracking(path, wandb_project="other", mlflow="runs.db")
    assert t.wandb.project == "other"
    assert t.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'runs.db'}"
    plain = write_experiment(tmp_path / "p.yaml", "p", tracking={"mlflow": None})
    assert tracking.read_tracking(plain).mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.read_tracking(plain, mlflow="http://127.0.0.1:5000").mlflow.tracking_uri == (
        "http://127.0.0.1:5000"
    )
    none = write_experiment(tmp_path / "n.yaml", "n")
    assert tracking.read_tracking(none).names == []


@pytest.mark.parametrize(
    "section, fragment",
    [
        ({"wandb": {"projet": "x"}}, "tracking.wandb.projet"),
        ({"wandb": {}}, "needs a project"),
        ({"wandb": {"project": "x", "mode": "sometimes"}}, "tracking.wandb.mode"),
        ({"wandb": {"project": 3}}, "tracking.wandb.project"),
        ({"mlflow": {"uri": "x"}}, "tracking.mlflow.uri"),
        ({"tensorboard": {}}, "tracking.tensorboard"),
        ("wandb", "tracking must be a mapping"),
    ],
)
def test_bad_tracking_section_refused_in_one_line_before_ray_starts(
    tmp_path, capsys, section, fragment
):
    path = write_experiment(tmp_path / "bad.yaml", "bad", tracking=section)
    storage = tmp_path / "results"
    assert tune_main.main([str(path), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err
    assert not storage.exists()


def test_tracker_not_installed_names_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tracking, "find_spec", lambda name: None if name == "mlflow" else 1)
    path = write_experiment(tmp_path / "e.yaml", "e")
    storage = tmp_path / "results"
    assert tune_main.main([str(path), "--storage", str(storage), "--mlflow", "x.db"]) == 2
    err = capsys.readouterr().err
    assert "mlflow package is not installed" in err and tracking.INSTALL in err
    assert not storage.exists()
    monkeypatch.setattr(tracking, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="wandb package"):
        tracking.check_installed(tracking.Tracking(wandb=tracking.WandbSettings("p")))


def test_empty_flag_refused_by_the_command_line(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e")
    proc = run_cli("tune_main.py", str(path), "--storage", str(tmp_path / "r"), "--wandb", " ")
    assert_one_line_error(proc, "--wandb")
    assert not (tmp_path / "r").exists()


def test_dashboard_sign_in_is_said_only_when_token_auth_is_on(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert tracking.dashboard_sign_in() is None
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "ray get-auth-token" in tracking.dashboard_sign_in()
    assert "~/.ray/auth_token" in tracking.dashboard_sign_in()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/etc/ray/token")
    assert "/etc/ray/token" in tracking.dashboard_sign_in()


# ---------------------------------------------------------------- one tracked sweep


def wandb_records(path):
    """The records of a W&B run file (`run-*.wandb`), decoded with wandb's own protobuf. The
    file is a header then 32 KiB blocks of chunks (crc32, length, type: 1 whole, 2 first,
    3 middle, 4 last), as LevelDB writes its log."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room for a chunk header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


@pytest.fixture(scope="module")
def tracked_sweep(tmp_path_factory, ray_address):
    """A two-trial sweep logged to W&B (offline) and MLflow (an SQLite file), through the file's
    tracking section."""
    tmp = tmp_path_factory.mktemp("tracked")
    db = tmp / "mlflow.db"
    section = {"wandb": {"project": "grok-test", "mode": "offline"}, "mlflow": None}
    path = write_experiment(tmp / "tiny.yaml", "tiny", UNEVEN, GRID, tracking=section)
    proc = run_cli(
        "tune_main.py",
        str(path),
        "--storage",
        str(tmp / "results"),
        "--address",
        ray_address,
        "--mlflow",
        str(db),
        "--max-concurrent",  # one reused worker for both trials: torch imported once
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    trials = trial_dirs(tmp / "results" / "tiny")
    assert sorted(t.name for t in trials) == ["lr=0.003,seed=0", "lr=0.01,seed=0"]
    return trials, db


def test_tensorboard_events_hold_every_metric_at_its_training_step(tracked_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trials, _ = tracked_sweep
    for trial in trials:
        rows = read_reports(trial)
        assert [r["step"] for r in rows] == [0, 10, 20, 25, 35, 45, 50, 60]
        events = EventAccumulator(str(trial), size_guidance={"scalars": 0})
        events.Reload()
        names = set(reported(rows[0]))
        assert {"train/acc", "test/acc", "val/loss", "lr", "step"} <= names
        for name in names:
            logged = [(e.step, e.value) for e in events.Scalars(f"ray/tune/{name}")]
            expected = [(r["step"], reported(r)[name]) for r in rows if name in reported(r)]
            assert [s for s, _ in logged] == [s for s, _ in expected], name
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_wandb_offline_runs_hold_config_and_metrics_at_their_steps(tracked_sweep):
    trials, _ = tracked_sweep
    for trial in trials:
        (run_file,) = trial.glob("wandb/offline-run-*/run-*.wandb")
        records = list(wandb_records(run_file))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.display_name == trial.name and run.run_group == "tiny"
        assert run.project == "grok-test"
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        values = yaml.safe_load((trial / "params.json").read_text())
        assert {k: config[k] for k in full_params(values)} == full_params(values)
        axes = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
        assert any(m.glob_name == "*" and m.step_metric == "step" for m in axes)
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        rows = read_reports(trial)
        assert [h["step"] for h in history] == [r["step"] for r in rows]
        for logged, row in zip(history, rows):
            for name, value in reported(row).items():
                assert float(logged[name]) == pytest.approx(value, rel=1e-12), name


def test_mlflow_runs_hold_config_and_metrics_at_their_steps(tracked_sweep):
    from mlflow import MlflowClient

    trials, db = tracked_sweep
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(t.name for t in trials)
    for trial in trials:
        run = runs[trial.name]
        assert run.info.status == "FINISHED"
        values = yaml.safe_load((trial / "params.json").read_text())
        assert run.data.params == {k: str(v) for k, v in full_params(values).items()}
        rows = read_reports(trial)
        for name in reported(rows[0]):
            history = client.get_metric_history(run.info.run_id, name)
            expected = [(r["step"], reported(r)[name]) for r in rows if name in reported(r)]
            assert sorted((m.step, m.value) for m in history) == expected, name
