"""The Ray Tune adapter and tune_main.py: trainable, sweeps, selection, resume, refusals."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY, VOLATILE, assert_one_line_error, run_cli, write_experiment

import tune_main
from grok import tune as gtune
from grok.callbacks import RepairResumePoint
from grok.checkpoint import MANIFEST
from grok.config import ConfigError
from grok.experiment import load_experiment
from grok.results import BOOKKEEPING, find_checkpoint, read_reports, trial_dirs
from grok.reuse import REUSED_FROM

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


class FakeContext:
    def get_trial_resources(self):
        return type("R", (), {"required_resources": {"CPU": 1}})()


def test_trainable_reports_metrics_and_checkpoints_on_cadence(monkeypatch, tmp_path):
    reports = []

    def report(metrics, checkpoint=None):
        kept = None
        if checkpoint is not None:  # the folder is temporary: look inside while it exists
            manifest = json.loads((Path(checkpoint.path) / MANIFEST).read_text())
            kept = manifest["step"]
        reports.append((dict(metrics), kept))

    monkeypatch.setattr(gtune.tune, "report", report)
    monkeypatch.setattr(gtune.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(gtune.tune, "get_context", lambda: FakeContext())
    exp = load_experiment(write_experiment(tmp_path / "e.yaml", "e"))
    gtune.train_trial({"seed": 3}, exp.base.to_dict())

    names = {
        "step",
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/loss",
        "test/acc",
        "lr",
        "param_norm",
        "steps_per_s",
        "grok/train_acc_99_step",
        "grok/test_acc_99_step",
        "grok/test_acc_100_step",
        "status",
    }
    assert names <= set(reports[0][0])
    steps = [m["step"] for m, _ in reports]
    assert steps[0] == 0 and steps[-1] == 60 and steps == sorted(steps)
    assert len(steps) > 4  # more evaluations than checkpoints
    assert [kept for _, kept in reports if kept is not None] == [20, 40, 60]
    assert all(kept in (None, m["step"]) for m, kept in reports)
    assert reports[-1][0]["status"] == "finished"


def test_dry_run_counts_every_experiment_file(capsys):
    expected = {"addsub": 24, "division_grokking": 3, "quickstart": None}
    for path in EXPERIMENTS:
        raw = yaml.safe_load(path.read_text())
        product = math.prod(len(v) for v in (raw.get("grid") or {}).values())
        product *= (raw.get("search") or {}).get("num_samples", 1)  # a search: points x grid
        assert tune_main.main([str(path), "--dry-run"]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith(f"{raw['name']}: {product} trial"), first
        if expected.get(raw["name"]):
            assert product == expected[raw["name"]]
        if raw["name"].startswith("ablation_"):
            seeds = len(raw["grid"]["seed"])
            values = product // seeds
            assert seeds == 3 and values >= 1 and product == 3 * values


def test_dry_run_starts_and_writes_nothing(tmp_path, capsys):
    storage = tmp_path / "results"
    assert (
        tune_main.main(
            [str(ROOT / "experiments/ablation_wd.yaml"), "--dry-run", "--storage", str(storage)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wd=0.3,seed=1" in out and not storage.exists()


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"config": {"optim": {"lr": -1}}}, "optim.lr"),
        ({"config": {"model": {"widht": 3}}}, "model.widht"),
        ({"grid": {"task.p": [97, 98]}, "config": {"task": {"op": "/"}}}, "task.p"),
        ({"grid": {"seed": 3}}, "grid.seed"),
        ({"resources": {"cpu": "two"}}, "resources.cpu"),
        (
            {
                "config": {
                    "task": {"kind": "lines", "path": "/nonexistent/lines.txt", "tokenizer": "char"}
                }
            },
            "/nonexistent/lines.txt",
        ),
        (  # one point of the grid regresses character answers onto one-hot vectors
            {
                "config": {"task": {"tokenizer": "char"}},
                "grid": {"train.loss": ["stablemax", "mse"]},
            },
            "train.loss: 'mse'",
        ),
        (  # one point of the grid has too few positions for the character-level equations
            {"config": {"task": {"tokenizer": "char"}}, "grid": {"model.max_len": [64, 4]}},
            "model.max_len: examples need 8 positions",
        ),
    ],
)
def test_bad_experiment_refused_before_ray_starts(tmp_path, body, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", **body}))
    storage = tmp_path / "results"
    proc = run_cli("tune_main.py", str(path), "--storage", str(storage))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not storage.exists()


def test_bad_flags_refused_in_one_line():
    proc = run_cli("tune_main.py", "experiments/quickstart.yaml", "--max-concurrent", "0")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("tune_main.py", "experiments/quickstart.yaml", "--resume", "--fresh")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_grid_trials_are_made_in_the_files_product_order(tmp_path):
    """Trials start in the order the dry run lists them, the last grid key varying fastest,
    even where Tune's own grid_search would vary the alphabetically first key fastest."""
    from ray.tune.experiment import Experiment as TuneExperiment

    grid = {"optim.lr": [3e-3, 1e-5], "seed": [0, 1]}  # Tune would vary optim.lr fastest
    exp = load_experiment(write_experiment(tmp_path / "order.yaml", "order", None, grid))
    space, args = gtune._grid_config(exp, None)
    generator = args["search_alg"]
    n = args["num_samples"]
    spec = TuneExperiment("order", lambda config: None, config=space, num_samples=n)
    generator.add_configurations([spec])
    made = []
    while (trial := generator.next_trial()) is not None:
        made.append({k: trial.config[k] for k in grid})
    assert made == list(exp.points())
    order = [(p["optim.lr"], p["seed"]) for p in made]
    assert order == [(3e-3, 0), (3e-3, 1), (1e-5, 0), (1e-5, 1)]


def sweep(tmp_path, ray_address, name="tiny", grid=None, extra=(), config=None):
    """Run tune_main.py on a tiny experiment against the session's cluster."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_experiment(
        tmp_path / f"{name}.yaml", name, config, grid or {"optim.lr": [3e-3, 1e-5], "seed": [0]}
    )
    storage = tmp_path / "results"
    proc = run_cli(
        "tune_main.py", str(path), "--storage", str(storage), "--address", ray_address, *extra
    )
    return proc, storage / name, path


def final_metrics(folder: Path) -> dict[str, dict]:
    out = {}
    for t in trial_dirs(folder):
        last = read_reports(t)[-1]
        out[t.name] = {k: v for k, v in last.items() if k not in VOLATILE}
    return out


# The losses against the optimizers: every pairing of a new loss and Muon trains under Tune.
LAB_GRID = {"train.loss": ["cross_entropy", "stablemax"], "optim.name": ["adamw", "muon"]}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, ray_address):
    """One real four-trial sweep, shared by the tests that only read it. One trial at a time:
    Tune runs them all in one reused worker, which imports torch once, not twice."""
    tmp = tmp_path_factory.mktemp("tiny")
    proc, folder, _ = sweep(tmp, ray_address, grid=LAB_GRID, extra=("--max-concurrent", "1"))
    return proc, folder


def test_tiny_sweep_layout_names_and_best_trial(tiny_sweep):
    proc, folder = tiny_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(t.name for t in trial_dirs(folder))
    assert names == sorted(
        f"loss={loss},name={name}"
        for loss in LAB_GRID["train.loss"]
        for name in LAB_GRID["optim.name"]
    )
    record = yaml.safe_load((folder / "experiment.yaml").read_text())
    assert record["grid"] == LAB_GRID
    assert record["command"].startswith("python tune_main.py")
    for t in trial_dirs(folder):
        assert {"params.json", "progress.csv", "result.json"} <= {p.name for p in t.iterdir()}
        checkpoints = sorted(t.glob("checkpoint_*"))
        assert checkpoints and all((c / MANIFEST).is_file() for c in checkpoints)
        assert read_reports(t)[-1]["status"] == "finished"
        summary = [line.split()[:2] for line in proc.stdout.splitlines()]
        assert [t.name, "finished"] in summary  # its line, names padded to the longest
    # The best trial by val/acc, recomputed from the files, is what infer.py picks.
    finals = {t.name: read_reports(t)[-1]["val/acc"] for t in trial_dirs(folder)}
    best = sorted(finals, key=lambda n: (-finals[n], n))[0]
    found = find_checkpoint(folder)
    assert found.checkpoint.parent.name == best and best in found.note
    answer = run_cli("infer.py", str(folder), "--prompt", "3+4=")
    assert answer.returncode == 0 and f"trial {best}" in answer.stdout
    assert answer.stdout.strip().splitlines()[-1].startswith("3+4=")


def test_tiny_sweep_goes_through_plotting_into_a_report(tiny_sweep, tmp_path):
    proc, folder = tiny_sweep
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "report"
    built = run_cli("-m", "plotting.report", str(folder.parent), "--out", str(out))
    assert built.returncode == 0, built.stderr[-2000:]
    text = (out / "REPORT.md").read_text()
    assert "### tiny" in text and "Missing" in text  # the assignment's experiments are absent
    figures = sorted(out.glob("tiny_*.png"))
    assert figures and all(f.stat().st_size > 10_000 for f in figures)
    finals = [read_reports(t)[-1]["test/acc"] for t in trial_dirs(folder)]
    table = (out / "tiny_final_metrics.md").read_text()
    assert f"{max(finals):.4f}" in table or f"{min(finals):.4f}" in table


def test_existing_results_refused_then_resume_or_fresh_whose_errored_trial_exits_1(
    tmp_path, ray_address, capsys
):
    proc, folder, path = sweep(tmp_path, ray_address, grid={"seed": [0]})
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = final_metrics(folder)
    capsys.readouterr()
    # Refusals come before Ray starts: in this process, as tune_main.py's main.
    storage = ("--storage", str(folder.parent), "--address", ray_address)
    assert tune_main.main([str(path), *storage]) == 2
    assert "--resume" in capsys.readouterr().err
    assert final_metrics(folder) == before  # untouched
    # Another experiment under the same name; its one trial errors (a GPU it is not given).
    errs = {**TINY, "train": {**TINY["train"], "device": "cuda"}}
    other = write_experiment(tmp_path / "other.yaml", "tiny", errs, grid={"seed": [5]})
    assert tune_main.main([str(other), *storage, "--resume"]) == 2
    assert "not this experiment" in capsys.readouterr().err
    assert tune_main.main([str(path), *storage, "--resume", "--max-concurrent", "3"]) == 2
    err = capsys.readouterr().err
    assert "keeps that limit" in err and len(err.strip().splitlines()) == 1
    assert final_metrics(folder) == before  # untouched
    fresh = run_cli("tune_main.py", str(other), *storage, "--fresh")
    assert [t.name for t in trial_dirs(folder)] == ["seed=5"]
    moved = [p for p in folder.parent.iterdir() if p.name.startswith("tiny.old-")]
    assert len(moved) == 1 and [t.name for t in trial_dirs(moved[0])] == ["seed=0"]
    # An errored trial: exit status 1, and the sweep says so.
    assert fresh.returncode == 1, fresh.stderr[-2000:]
    assert "ERROR" in fresh.stdout and "errored" in fresh.stderr


def test_the_limit_a_sweep_started_with_is_read_from_its_command():
    from grok.sweep import started_limit

    assert started_limit({"command": "python tune_main.py x.yaml --max-concurrent 2"}) == 2
    assert started_limit({"command": "python tune_main.py --max-concurrent=1 x.yaml"}) == 1
    assert started_limit({"command": "python tune_main.py x.yaml --fresh"}) is None
    assert started_limit({}) is None


def test_a_run_stored_by_one_experiment_is_replayed_by_another(tmp_path, ray_address):
    """Same resolved config and code in two experiments: trained once, replayed in the second
    with every report saying so; the replayed trial's checkpoint answers prompts."""
    store = tmp_path / "store"
    reuse = ("--reuse", str(store))
    first, folder_a, _ = sweep(tmp_path / "a", ray_address, "first", {"seed": [0]}, reuse)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "reused from" not in first.stdout
    second, folder_b, _ = sweep(tmp_path / "b", ray_address, "second", {"seed": [0]}, reuse)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "seed=0: reused from first/seed=0" in second.stdout
    trained, replayed = read_reports(folder_a / "seed=0"), read_reports(folder_b / "seed=0")
    # Bookkeeping aside (trial ids; the replay carries only the final checkpoint), the same.
    skip = VOLATILE | set(BOOKKEEPING) | {"checkpoint_dir_name", REUSED_FROM}
    kept = lambda reports: [{k: v for k, v in r.items() if k not in skip} for r in reports]
    assert kept(replayed) == kept(trained) and len(trained) > 2
    assert all(r[REUSED_FROM] == "first/seed=0" for r in replayed)
    assert not any(REUSED_FROM in r for r in trained)
    assert len(list(store.glob("*/origin.json"))) == 1
    answer = run_cli("infer.py", str(folder_b), "--prompt", "3+4=")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().splitlines()[-1].startswith("3+4=")


def test_sanity_experiment_runs_under_tune_from_a_driver_without_torch_or_trackers(
    tmp_path, ray_address
):
    """The driver never trains, and logs to W&B or MLflow only when asked: it loads neither
    (each would add seconds to every sweep's start; grok/loggers.py, grok/sweep.py)."""
    path = ROOT / "experiments/sanity_memorize.yaml"
    storage = tmp_path / "results"
    words = [str(path), "--storage", str(storage), "--address", ray_address]
    driver = (
        "import sys, tune_main\n"
        f"code = tune_main.main({words!r})\n"
        "loaded = sorted({'torch', 'wandb', 'mlflow'} & set(sys.modules))\n"
        "assert not loaded, f'the driver loaded {loaded}'\n"
        "sys.exit(code)\n"
    )
    proc = run_cli("-c", driver)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = run_cli("infer.py", str(storage / "sanity_memorize"), "--prompt", "")
    assert answer.returncode == 0
    assert answer.stdout.strip().splitlines()[-1] == "I love machine learning"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trial_device_uses_a_gpu_only_when_the_trial_has_one(monkeypatch):
    import torch

    assert gtune.trial_device("auto", 0).type == "cpu"
    assert gtune.trial_device("cpu", 1).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gtune.trial_device("auto", 0.5).type == "cpu"  # given a GPU that is not there
    with pytest.raises(ConfigError, match="train.device"):
        gtune.trial_device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gtune.trial_device("auto", 0.25).type == "cuda"  # a fractional GPU is a GPU
    assert gtune.trial_device("auto", 0).type == "cpu"


class FakeStorage:
    """What RepairResumePoint reads of a trial's StorageContext."""

    def __init__(self, folder: Path, index: int):
        import pyarrow.fs as pafs

        self.storage_filesystem = pafs.LocalFileSystem()
        self.trial_fs_path = str(folder)
        self.trial_dir_name = folder.name
        self.current_checkpoint_index = index


class FakeTrial:
    """A trial as Tune restores it from its saved state: Tune's own checkpoint bookkeeping."""

    def __init__(self, folder: Path, registered: list[int]):
        from ray.train._internal.checkpoint_manager import _CheckpointManager
        from ray.train._internal.session import _TrainingResult

        self.trial_id, self.status = "t1", "PENDING"
        self.storage = FakeStorage(folder, max(registered))
        config = gtune.tune.CheckpointConfig(2, "val/acc", "max")
        self.manager = _CheckpointManager(config)
        for index in registered:
            checkpoint = gtune.tune.Checkpoint(str(folder / f"checkpoint_{index:06d}"))
            metrics = {"step": 10 * (index + 1), "val/acc": 0.5}
            self.manager.register_checkpoint(_TrainingResult(checkpoint, metrics))
        self.run_metadata = type("M", (), {"checkpoint_manager": self.manager})()
        self.run_metadata.invalidate_cache = lambda: None
        self.stale = False

    def invalidate_json_state(self):
        self.stale = True


def test_a_trial_whose_named_checkpoint_was_pruned_resumes_from_its_newest_whole_one(tmp_path):
    from test_resume import make_checkpoint

    folder = tmp_path / "seed=0"
    make_checkpoint(folder, 1, 20)
    trial = FakeTrial(folder, [1, 2])  # the state saved when checkpoint 2 was the latest
    for index, step in ((3, 40), (4, 50)):  # the killed run went on; pruning took 2
        make_checkpoint(folder, index, step)
    (make_checkpoint(folder, 5, 60) / "model.pt").write_bytes(b"")  # cut off by the kill
    RepairResumePoint().on_step_begin(0, [trial])
    latest = trial.manager.latest_checkpoint_result
    assert Path(latest.checkpoint.path).name == "checkpoint_000004"
    assert latest.metrics == {"step": 50, "val/acc": 0.05}  # its report, from its record
    assert trial.storage.current_checkpoint_index == 4  # the next one is checkpoint_000005
    kept = {Path(r.checkpoint.path).name for r in trial.manager.best_checkpoint_results}
    assert "checkpoint_000002" not in kept and "checkpoint_000004" in kept
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint_000001",
        "checkpoint_000003",
        "checkpoint_000004",
    ]
    assert trial.stale  # the next save of Tune's state says so


def test_a_trial_whose_checkpoints_are_all_gone_starts_again_from_step_0(tmp_path):
    from test_resume import make_checkpoint

    folder = tmp_path / "seed=0"
    trial = FakeTrial(folder, [0])
    (make_checkpoint(folder, 0, 10) / MANIFEST).unlink()  # its deletion cut short
    RepairResumePoint().on_step_begin(0, [trial])
    assert trial.manager.latest_checkpoint_result is None
    assert trial.manager.best_checkpoint_results == []
    assert trial.storage.current_checkpoint_index == -1 and not list(folder.iterdir())


def test_a_whole_named_checkpoint_is_what_the_trial_resumes_from(tmp_path):
    from test_resume import make_checkpoint

    folder = tmp_path / "seed=0"
    make_checkpoint(folder, 0, 10)
    trial = FakeTrial(folder, [0])
    RepairResumePoint().on_step_begin(0, [trial])
    assert Path(trial.manager.latest_checkpoint_result.checkpoint.path).name == "checkpoint_000000"
    assert not trial.stale and trial.storage.current_checkpoint_index == 0


def test_a_sweep_run_in_parts_skips_the_trials_that_ended_and_merges_into_one_archive(
    tmp_path, ray_address, capsys
):
    """A sweep too long for one machine: a later part skips the trials that ended in the
    archive of the earlier ones (not one that was interrupted or errored), and its archive is
    merged into theirs, each part recorded."""
    from grok.archive import archive
    from grok.results import write_record

    grid = {"seed": [0, 1, 2]}
    path = write_experiment(tmp_path / "parts.yaml", "parts", None, grid)
    exp = load_experiment(path)
    # The earlier part, cut short on its machine: seed 0 grokked, seed 1 was interrupted while
    # running, seed 2 errored after its last report.
    earlier = tmp_path / "earlier" / "parts"
    earlier.mkdir(parents=True)
    write_record(exp, earlier, f"python tune_main.py {path}")
    for seed, status in [(0, "grokked"), (1, "running"), (2, "finished")]:
        trial = earlier / f"seed={seed}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"seed": seed}))
        rows = [{"step": s, "test/acc": 0.5, "status": "running"} for s in (0, 20)]
        rows[-1]["status"] = status
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (earlier / "seed=2" / "error.txt").write_text("OSError: the node went away\n")
    kept = archive(earlier, tmp_path / "data")
    done = ("--skip-done", str(kept))

    assert tune_main.main([str(path), *done, "--dry-run"]) == 0
    assert "1 of them ended in" in capsys.readouterr().out
    # --skip-reported keeps the interrupted one too (censored at its step 20), not the errored.
    assert tune_main.main([str(path), "--skip-reported", str(kept), "--dry-run"]) == 0
    assert "2 of them reported in" in capsys.readouterr().out
    storage = tmp_path / "results"
    proc = run_cli(
        "tune_main.py", str(path), *done, "--storage", str(storage), "--address", ray_address
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "parts: 2 trials (1 more ended in" in proc.stdout
    ran = storage / "parts"
    assert [t.name for t in trial_dirs(ran)] == ["seed=1", "seed=2"]
    assert all(read_reports(t)[-1]["status"] == "finished" for t in trial_dirs(ran))

    merged = run_cli("-m", "grok.archive", str(ran), "--out", str(tmp_path / "data"), "--merge")
    assert merged.returncode == 0, merged.stderr
    assert [t.name for t in trial_dirs(kept)] == ["seed=0", "seed=1", "seed=2"]
    assert read_reports(kept / "seed=0")[-1]["status"] == "grokked"  # the earlier part's
    for seed in (1, 2):  # the later part's, the error of the earlier one gone with it
        reports = read_reports(ran / f"seed={seed}")
        assert read_reports(kept / f"seed={seed}") == [
            {k: v for k, v in r.items() if k not in BOOKKEEPING} for r in reports
        ]
        assert not (kept / f"seed={seed}" / "error.txt").exists()
    record = yaml.safe_load((kept / "experiment.yaml").read_text())
    assert record["command"] == f"python tune_main.py {path}"  # the first part's: it runs all
    assert [p["trials"] for p in record["parts"]] == [["seed=0"], ["seed=1", "seed=2"]]
    assert "--skip-done" in record["parts"][1]["command"]
    # Every trial ended now: nothing is left to run.
    assert tune_main.main([str(path), *done, "--storage", str(tmp_path / "again")]) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert not (tmp_path / "again").exists()


def test_skip_done_and_merge_refuse_another_experiment_in_one_line(tmp_path):
    from grok.results import write_record

    path = write_experiment(tmp_path / "a.yaml", "a", None, {"seed": [0, 1]})
    other = write_experiment(tmp_path / "b.yaml", "a", None, {"seed": [0, 1, 2]})
    folder = tmp_path / "results" / "a"
    folder.mkdir(parents=True)
    write_record(load_experiment(other), folder, "python tune_main.py b.yaml")
    for skip, names in [
        (folder, ("--skip-done", "not a run of this experiment", "grid")),
        (tmp_path, ("--skip-done", "not an experiment's results folder")),
    ]:
        proc = run_cli("tune_main.py", str(path), "--skip-done", str(skip), "--dry-run")
        assert_one_line_error(proc, *names)
    archived = tmp_path / "data" / "a"
    archived.mkdir(parents=True)
    write_record(load_experiment(path), archived, "python tune_main.py a.yaml")
    before = (archived / "experiment.yaml").read_bytes()
    proc = run_cli("-m", "grok.archive", str(folder), "--out", str(tmp_path / "data"), "--merge")
    assert_one_line_error(proc, "grid differs", "not merged")
    assert (archived / "experiment.yaml").read_bytes() == before
    assert not (tmp_path / "data" / "a.partial").exists()
