"""Keeping Tune's experiment state whole for --resume (grok/resume.py); no Ray needed."""

from __future__ import annotations

import json
import pickle

from conftest import assert_one_line_error, run_cli, write_experiment

from grok.experiment import load_experiment
from grok.results import write_record
from grok.resume import BACKUP, back_up_state, is_whole, newest_state_files, repair_state

STATE = json.dumps({"trial_data": ["x" * 50] * 20, "runner_data": {"a": 1}}).encode()
SEARCH = pickle.dumps({"_iterators": [list(range(30))], "_finished": True}, protocol=5)


def write_state(folder, session, state=STATE, search=SEARCH):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"experiment_state-{session}.json").write_bytes(state)
    (folder / f"basic-variant-state-{session}.json").write_bytes(search)


def test_whole_files_pass_and_every_cut_fails():
    assert is_whole(STATE) and is_whole(SEARCH)
    assert not any(is_whole(STATE[:n]) for n in range(len(STATE)))
    assert not any(is_whole(SEARCH[:n]) for n in range(len(SEARCH)))
    assert not is_whole(SEARCH + b"\x00")  # bytes after the pickle's end


def test_newest_session_of_each_kind_is_what_tune_reads(tmp_path):
    write_state(tmp_path, "2026-01-01_00-00-00")
    write_state(tmp_path, "2026-01-02_00-00-00")
    (tmp_path / "tmp-experiment_state-2026-01-03_00-00-00.json").write_bytes(STATE)
    (tmp_path / "experiment.yaml").write_text("name: x\n")
    files = newest_state_files(tmp_path)
    assert {k: p.name for k, p in files.items()} == {
        "experiment_state": "experiment_state-2026-01-02_00-00-00.json",
        "basic-variant-state": "basic-variant-state-2026-01-02_00-00-00.json",
    }


def test_backup_copies_a_whole_set_and_drops_the_earlier_session(tmp_path):
    staging, experiment = tmp_path / "staging", tmp_path / "exp"
    experiment.mkdir()
    write_state(staging, "s1")
    assert back_up_state(staging, experiment)
    write_state(staging, "s2", state=STATE.replace(b'"a": 1', b'"a": 2'))
    assert back_up_state(staging, experiment)
    backup = experiment / BACKUP
    assert sorted(p.name for p in backup.iterdir()) == [
        "basic-variant-state-s2.json",
        "experiment_state-s2.json",
    ]
    assert b'"a": 2' in (backup / "experiment_state-s2.json").read_bytes()

    (staging / "basic-variant-state-s2.json").write_bytes(SEARCH[:-5])  # cut off: no backup
    (staging / "experiment_state-s2.json").write_bytes(STATE.replace(b'"a": 1', b'"a": 3'))
    assert not back_up_state(staging, experiment)
    assert b'"a": 2' in (backup / "experiment_state-s2.json").read_bytes()


def test_whole_state_is_left_as_it_is(tmp_path):
    write_state(tmp_path, "s1")
    assert repair_state(tmp_path) is None
    assert not (tmp_path / BACKUP).exists()


def test_cut_off_state_is_replaced_by_the_backup_and_kept_aside(tmp_path):
    write_state(tmp_path / BACKUP, "s1")
    write_state(tmp_path, "s1", state=STATE[:100])
    assert repair_state(tmp_path) is None
    assert (tmp_path / "experiment_state-s1.json").read_bytes() == STATE
    aside = list((tmp_path / BACKUP).glob("broken-*/experiment_state-s1.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == STATE[:100]


def test_a_newer_session_cut_off_before_its_backup_gives_way_to_the_older_one(tmp_path):
    write_state(tmp_path, "s1")
    write_state(tmp_path / BACKUP, "s1")
    write_state(tmp_path, "s2", search=SEARCH[:-1])  # the resumed run died mid-save
    assert repair_state(tmp_path) is None
    files = newest_state_files(tmp_path)
    assert {p.name for p in files.values()} == {
        "experiment_state-s1.json",
        "basic-variant-state-s1.json",
    }
    assert all(is_whole(p.read_bytes()) for p in files.values())
    assert len(list((tmp_path / BACKUP).glob("broken-*/*-s2.json"))) == 2


def test_no_whole_state_anywhere_is_named(tmp_path):
    tmp_path.joinpath("tuner.pkl").write_bytes(b"")
    assert "no copy" in repair_state(tmp_path)
    write_state(tmp_path, "s1", state=STATE[:-1])
    assert "cut-off" in repair_state(tmp_path)
    assert (tmp_path / "experiment_state-s1.json").read_bytes() == STATE[:-1]  # untouched


def test_resume_of_an_unreadable_sweep_is_refused_in_one_line(tmp_path):
    path = write_experiment(tmp_path / "e.yaml", "e")
    folder = tmp_path / "results" / "e"
    write_state(folder, "s1", state=STATE[:-1])
    write_record(load_experiment(path), folder, "python tune_main.py e.yaml")
    proc = run_cli("tune_main.py", str(path), "--storage", str(tmp_path / "results"), "--resume")
    line = assert_one_line_error(proc, "--resume", str(folder), "--fresh")
    assert "cut-off" in line


def test_a_folder_made_before_a_setting_existed_is_still_the_same_experiment(tmp_path):
    import yaml

    from grok.results import EXPERIMENT_FILE, same_experiment

    exp = load_experiment(write_experiment(tmp_path / "e.yaml", "e", grid={"seed": [0, 1]}))
    folder = tmp_path / "results" / "e"
    write_record(exp, folder, "python tune_main.py e.yaml")
    record = yaml.safe_load((folder / EXPERIMENT_FILE).read_text())
    del record["config"]["analysis"]  # as written by a version without the analysis section
    (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(record))
    assert same_experiment(folder, exp) is None
    record["config"]["optim"]["lr"] = 0.5  # a real difference is still one
    (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(record))
    assert "config differs" in same_experiment(folder, exp)
