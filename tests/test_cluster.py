"""Sweeps on a cluster of several nodes: joining, trials on different nodes, a node lost
mid-trial, `ray job submit`, and results read back without Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from cluster_fixtures import LONG, PINNED, free_port, run_without_ray
from conftest import ROOT, VOLATILE, assert_one_line_error, run_cli, write_experiment

import tune_main
from grok import cluster
from grok.checkpoint import MANIFEST
from grok.experiment import Resources, load_experiment
from grok.results import read_reports, trial_dirs
from grok.schema import ConfigError

sys.path.insert(0, str(ROOT / "scripts"))
from kill_schedule import stop_head  # noqa: E402  (a ray start head stopped in seconds)


def final_metrics(trial: Path) -> dict:
    last = read_reports(trial)[-1]
    return {k: v for k, v in last.items() if k not in VOLATILE}


def nodes_of(trial: Path) -> list[str]:
    """The node of each report, in order, without repeats."""
    seen: list[str] = []
    for row in read_reports(trial):
        if not seen or seen[-1] != row["node_id"]:
            seen.append(row["node_id"])
    return seen


def newest_checkpoint(trial: Path) -> int:
    """The index of the trial's newest complete checkpoint; -1 when it has none."""
    done = [int(m.parent.name.split("_")[1]) for m in trial.glob(f"checkpoint_*/{MANIFEST}")]
    return max(done, default=-1)


def test_address_is_the_flag_then_ray_address_then_none(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster.target("127.0.0.1:1") == "127.0.0.1:1"
    assert cluster.target(None) == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster.target(None) is None


def test_resources_take_custom_ones_beside_cpu_and_gpu(tmp_path):
    exp = load_experiment(write_experiment(tmp_path / "e.yaml", "e", resources=PINNED))
    assert exp.resources == Resources(cpu=1.0, gpu=0.0, custom={"slot": 1.0})
    assert exp.resources.as_dict() == {"cpu": 1.0, "gpu": 0.0, "slot": 1.0}
    for bad, names in (
        ({"CPU": 1}, ["custom Ray resources"]),
        ({"GPU": 1}, ["custom Ray resources"]),
        ({"slot": -1}, ["resources.slot"]),
    ):
        with pytest.raises(ConfigError) as err:
            load_experiment(write_experiment(tmp_path / "b.yaml", "b", resources=bad))
        assert all(name in str(err.value) for name in names), err.value


def test_an_address_that_does_not_answer_is_one_line_and_nothing_written(
    tmp_path, monkeypatch, capsys
):
    path = write_experiment(tmp_path / "e.yaml", "e")
    storage = tmp_path / "results"
    dead = f"127.0.0.1:{free_port()}"
    # The command as a user runs it, in this process, with a 1 s wait for the port, not 10.
    monkeypatch.setattr(cluster.check_reachable, "__defaults__", (1.0,))
    code = tune_main.main([str(path), "--storage", str(storage), "--address", dead])
    ran = subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    assert_one_line_error(ran, dead, "nothing answers")
    monkeypatch.setenv("RAY_ADDRESS", dead)  # what `ray job submit` sets for the driver
    assert tune_main.main([str(path), "--storage", str(storage)]) == 2
    assert dead in capsys.readouterr().err
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    assert tune_main.main([str(path), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert "dashboard" in err and "ray job submit" in err
    assert not storage.exists()


def test_a_custom_resource_no_node_has_is_refused(tmp_path, multinode):
    path = write_experiment(tmp_path / "e.yaml", "e", resources={"cpu": 1, "tpu_slot": 1})
    storage = tmp_path / "results"
    proc = run_cli(
        "tune_main.py", str(path), "--storage", str(storage), "--address", multinode.address
    )
    assert_one_line_error(proc, "resources.tpu_slot", "ray start --resources")
    assert not storage.exists()


def test_sweep_runs_trials_on_two_nodes_into_one_storage(spread_sweep, multinode):
    proc = spread_sweep.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"joined {multinode.address}: 3 nodes, 2 CPUs" in proc.stdout
    trials = trial_dirs(spread_sweep.folder)
    assert [t.name for t in trials] == ["seed=0", "seed=1"]
    nodes = [nodes_of(t) for t in trials]
    assert all(len(n) == 1 for n in nodes), nodes  # no trial moved
    ran_on = {n[0] for n in nodes}
    assert len(ran_on) == 2 and ran_on <= multinode.worker_ids()  # two workers, not the head
    for trial in trials:
        last = read_reports(trial)[-1]
        assert last["status"] == "finished" and last["step"] == LONG["train"]["steps"]
        kept = [c for c in trial.glob("checkpoint_*") if (c / MANIFEST).is_file()]
        assert len(kept) >= 2  # the 2 best (tune.num_to_keep's default) and the latest
        assert (trial / last["checkpoint_dir_name"] / MANIFEST).is_file()


def test_results_are_read_with_no_ray(spread_sweep, tmp_path):
    storage, folder = spread_sweep.storage, spread_sweep.folder
    report = run_without_ray("-m", "plotting.report", str(storage), "--out", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "r" / "REPORT.md").read_text()
    assert "### spread" in text and "2 finished" in text
    answer = run_without_ray("infer.py", str(folder), "--prompt", "3+4=", "--eval")
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert "trial seed=" in answer.stdout and "test: exact match" in answer.stdout
    out = tmp_path / "weights"
    export = run_without_ray("-m", "grok.export", str(folder), "--out", str(out))
    assert export.returncode == 0, export.stderr[-2000:]
    assert (out / MANIFEST).is_file()


def test_a_node_lost_mid_trial_is_retried_elsewhere_to_the_same_metrics(
    tmp_path, multinode, spread_sweep
):
    path = write_experiment(tmp_path / "lost.yaml", "lost", LONG, {"seed": [0]}, resources=PINNED)
    storage = tmp_path / "results"
    trial = storage / "lost" / "seed=0"
    driver = subprocess.Popen(
        [sys.executable, "tune_main.py", str(path), "--storage", str(storage)],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": multinode.address},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A trial reports again only once the driver has taken its previous report, so with
        # a third checkpoint written the driver knows the first: the retry can start there.
        deadline = time.monotonic() + 600  # a stop on a hang only: a busy machine is slow
        while newest_checkpoint(trial) < 2:
            assert driver.poll() is None and time.monotonic() < deadline, "no checkpoint came"
            time.sleep(0.1)
        running = multinode.running("lost", "seed=0")
        assert len(running) == 1, running
        first = running[0]
        multinode.remove_worker(first)  # its raylet and the trial's process die with it
        out, err = driver.communicate(timeout=1800)
    finally:
        if driver.poll() is None:
            driver.kill()
        multinode.add_worker()  # the next tests get two workers again
    assert driver.returncode == 0, err[-3000:]
    reports = read_reports(trial)
    assert reports[-1]["status"] == "finished"
    nodes = nodes_of(trial)
    assert nodes[0] == first and len(nodes) == 2 and nodes[1] != first, nodes
    # Rows the lost node's copy never brought to storage are rebuilt from the checkpoint's record
    # of its reports (grok/resume.py), without Tune's bookkeeping; the retry's rows have it.
    resumed = [r for r in reports if r.get("iterations_since_restore") == 1 and r["step"] > 0]
    assert resumed, "the retry started from step 0, not from the checkpoint"
    assert final_metrics(trial) == final_metrics(spread_sweep.folder / "seed=0")


def wait_for_http(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


def path_without_the_project(tmp_path: Path) -> str:
    """A PATH whose first `python` is not the interpreter running the tests: one without the
    project's packages, as for a user whose virtual environment is not activated."""
    shim = tmp_path / "bin"
    shim.mkdir()
    python = shim / "python"
    python.write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n"
    )
    python.chmod(0o755)
    return f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"


def test_a_head_from_ray_start_runs_a_submitted_job(tmp_path):
    """`ray job submit` to a head started with `ray start --head` (the driver finds the head
    through RAY_ADDRESS); the `python` first on PATH is not the project's, so the job names its
    interpreter (docs/cluster.md). A sweep joining a head with `--address host:port` from
    outside is what every test of the three-node cluster does."""
    port, dashboard = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # its own files: `auto` never finds it
    env = {**os.environ, "RAY_TMPDIR": temp, "PATH": path_without_the_project(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    bare = subprocess.run(["python", "-c", "import torch"], env=env, capture_output=True, text=True)
    assert bare.returncode != 0 and "No module named 'torch'" in bare.stderr  # the bare name fails
    ray_bin = str(Path(sys.executable).with_name("ray"))  # the `ray` beside this interpreter
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={free_port()}",  # not 52365: another Ray's, maybe
            f"--temp-dir={temp}/ray",
            "--block",  # stopped by `stop_head`: never `ray stop`, which stops every Ray
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        jobs = f"http://127.0.0.1:{dashboard}"
        wait_for_http(f"{jobs}/api/version")
        path = write_experiment(tmp_path / "job.yaml", "job", grid={"seed": [0]})
        storage = tmp_path / "results"
        command = [ray_bin, "job", "submit", "--address", jobs, "--working-dir", "."]
        # The entrypoint is a shell command run on the head: the interpreter, named in full.
        command += ["--", sys.executable, "tune_main.py", str(path), "--storage", str(storage)]
        deadline = time.monotonic() + 600
        while True:  # the head's job agent registers a little after its dashboard answers
            submit = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
            )
            if "No available agent" not in submit.stderr or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
        assert f":{port}: 1 node, 2 CPUs" in submit.stdout  # RAY_ADDRESS, set by the job
        from ray.util.state import list_nodes

        ids = [n.node_id for n in list_nodes(address=jobs)]
        trials = trial_dirs(storage / "job")
        assert len(trials) == 1 and (storage / "job" / "experiment.yaml").is_file()
        for trial in trials:
            assert read_reports(trial)[-1]["status"] == "finished"
            assert nodes_of(trial) == ids  # the one node of that cluster
    finally:
        stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)
