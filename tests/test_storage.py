"""Results in an object store (grok/storage.py): URIs checked before anything runs, Tune's state
kept resumable there, a sweep killed and resumed there, and the readers reading from there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest
from cluster_fixtures import LONG, PINNED
from conftest import ROOT, run_cli, write_experiment
from test_cluster import final_metrics, nodes_of
from test_resume import SEARCH, STATE, write_state

import infer
import tune_main
from grok import export, storage
from grok.checkpoint import MANIFEST
from grok.results import read_reports
from grok.resume import BACKUP, back_up_state, is_whole, newest_state_files, repair_state
from plotting import report, tables


def test_a_local_folder_and_a_file_uri_are_the_same_place(tmp_path):
    plain, uri = storage.resolve(str(tmp_path / "r")), storage.resolve(f"file://{tmp_path}/r")
    assert plain.local == uri.local == tmp_path / "r"
    assert isinstance(uri.fs, pafs.LocalFileSystem)


def test_an_unknown_scheme_or_a_missing_bucket_is_refused_before_anything_runs(
    tmp_path, s3, capsys
):
    path = write_experiment(tmp_path / "e.yaml", "e")
    for where, names in (
        ("foo://bucket/x", ["foo://bucket/x", "'foo'", "s3://"]),
        (s3.uri("x").replace("s3://bucket", "s3://no-such-bucket"), ["'no-such-bucket'"]),
        ("s3://bucket/x?endpoint_override=127.0.0.1:1&scheme=http", ["cannot reach"]),
    ):
        start = time.monotonic()
        assert tune_main.main([str(path), "--storage", where]) == 2
        said = capsys.readouterr()
        lines = said.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --storage:"), said.err
        assert all(name in lines[0] for name in names), lines[0]
        assert said.out == "" and time.monotonic() - start < 30  # no Ray was started
    assert [p.name for p in tmp_path.iterdir()] == ["e.yaml"]
    assert not storage.resolve(s3.uri("x")).holds_anything()


def test_locations_read_write_and_move_on_s3(s3):
    root = storage.resolve(s3.uri("ops"))
    assert str(root) == "s3://bucket/ops" and root.local is None
    assert not root.holds_anything()
    (root / "a" / "one.txt").write_text("1")
    (root / "a" / "sub" / "two.txt").write_bytes(b"2")
    assert root.holds_anything() and (root / "a").names() == ["one.txt"]
    (root / "a").move_to(root / "b")  # an object store has no rename: copy, then delete
    assert (root / "b" / "sub" / "two.txt").read_text() == "2"
    assert (root / "a").kind() == pafs.FileType.NotFound


def test_tunes_state_is_backed_up_and_repaired_on_s3(tmp_path, s3):
    experiment = storage.resolve(s3.uri("state/e"))
    staging = tmp_path / "staging"
    write_state(staging, "s1")
    assert back_up_state(staging, experiment)
    assert sorted((experiment / BACKUP).names()) == [
        "basic-variant-state-s1.json",
        "experiment_state-s1.json",
    ]
    (experiment / "experiment_state-s1.json").write_bytes(STATE[:100])  # the driver died
    (experiment / "basic-variant-state-s1.json").write_bytes(SEARCH)
    assert repair_state(experiment) is None
    files = newest_state_files(experiment)
    assert files["experiment_state"].read_bytes() == STATE
    assert all(is_whole(f.read_bytes()) for f in files.values())
    aside = [i.path for i in (experiment / BACKUP).files() if "/broken-" in i.path]
    assert len(aside) == 1 and aside[0].endswith("experiment_state-s1.json")


def test_a_mirror_holds_the_small_files_and_fetches_a_checkpoint_when_asked(
    tmp_path, s3, monkeypatch
):
    monkeypatch.setenv("GROK_CACHE", str(tmp_path / "cache"))
    root = storage.resolve(s3.uri("mirror"))
    (root / "t" / "result.json").write_text("{}\n")
    (root / "t" / "checkpoint_000000" / MANIFEST).write_text("{}")
    (root / "t" / "checkpoint_000000" / "model.pt").write_bytes(b"w" * 10)
    (root / "old.txt").write_text("x")
    view = storage.local_view(s3.uri("mirror"))
    assert view.is_relative_to(tmp_path / "cache")
    assert (view / "t" / "result.json").read_text() == "{}\n" and (view / "old.txt").is_file()
    assert not (view / "t" / "checkpoint_000000" / "model.pt").exists()
    storage.fetch(view / "t" / "checkpoint_000000")
    assert (view / "t" / "checkpoint_000000" / "model.pt").read_bytes() == b"w" * 10
    (root / "old.txt").delete()
    (root / "t" / "result.json").write_text('{"step": 1}\n')
    assert storage.local_view(s3.uri("mirror")) == view
    assert not (view / "old.txt").exists()  # gone from the store, gone here
    assert (view / "t" / "result.json").read_text() == '{"step": 1}\n'
    assert storage.local_view(str(tmp_path)) == tmp_path  # a local folder is read in place


def test_a_sweep_on_s3_resumes_after_its_driver_is_killed_and_is_read_from_there(
    tmp_path, s3, multinode, spread_sweep, monkeypatch, capsys
):
    monkeypatch.setenv("GROK_CACHE", str(tmp_path / "cache"))
    path = write_experiment(tmp_path / "s3.yaml", "s3", LONG, {"seed": [0]}, resources=PINNED)
    uri = s3.uri("sweeps")
    folder = storage.resolve(uri) / "s3"
    args = ["tune_main.py", str(path), "--storage", uri, "--address", multinode.address]
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}  # save Tune's state often
    driver = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Killed once Tune's state in the bucket knows a checkpoint: a report naming one has been
    # copied there with it, and its backup is there too.
    result = folder / "seed=0" / "result.json"
    deadline = time.monotonic() + 120
    while True:
        names = [i.path for i in folder.files()]
        saved = all(any(part in n for n in names) for part in ("/experiment_state-", BACKUP))
        if (
            saved
            and result.is_file()
            and '"checkpoint_dir_name": "checkpoint_' in result.read_text()
        ):
            break
        assert driver.poll() is None and time.monotonic() < deadline, names
        time.sleep(0.2)
    time.sleep(1.0)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    reports = read_reports(storage.local_view(folder) / "seed=0")
    assert reports[-1]["status"] != "finished", "the trial finished before the kill"
    state = newest_state_files(folder)["experiment_state"]  # cut off, as by a death mid-copy
    state.write_bytes(state.read_bytes()[: len(state.read_bytes()) // 2])

    resumed = run_cli(*args, "--resume")  # Tune's own pace of state saves from here on
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "results: s3://bucket/sweeps/s3" in resumed.stdout
    trial = storage.local_view(folder) / "seed=0"
    rows = read_reports(trial)
    assert rows[-1]["status"] == "finished"
    assert [r for r in rows if r["iterations_since_restore"] == 1 and r["step"] > 0]
    assert set(nodes_of(trial)) <= multinode.worker_ids()
    assert final_metrics(trial) == final_metrics(spread_sweep.folder / "seed=0")

    # The readers, in this process (test_cluster.py checks they need no Ray), on the URI.
    assert infer.main([folder.uri, "--prompt", "3+4=", "--eval"]) == 0
    said = capsys.readouterr().out
    assert "trial seed=0" in said and "test: exact match" in said
    assert export.main([folder.uri, "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / MANIFEST).is_file()
    assert report.main([uri, "--out", str(tmp_path / "r")]) == 0
    assert "### s3" in (tmp_path / "r" / "REPORT.md").read_text()
    assert tables.main([folder.uri, "-o", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "final_metrics.md").is_file()


@pytest.mark.parametrize("name", ["results?x", "s3:", "s3:/bucket"])
def test_a_name_without_a_scheme_is_a_local_folder(tmp_path, name):
    assert storage.resolve(str(tmp_path / name)).local == tmp_path / name
