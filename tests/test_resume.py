"""Keeping Tune's experiment state whole for --resume, and where a trial resumes from
(grok/resume.py); no Ray needed."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from conftest import assert_one_line_error, run_cli, write_experiment

from grok.checkpoint import MANIFEST
from grok.experiment import load_experiment
from grok.results import write_record
from grok.resume import (
    BACKUP,
    HISTORY,
    TUNER,
    ResumePoint,
    back_up_state,
    checkpoint_folders,
    checkpoint_history,
    checkpoint_step,
    cut_reports,
    is_whole,
    newest_state_files,
    repair_state,
    repair_trial,
)
from grok.storage import at

STATE = json.dumps({"trial_data": ["x" * 50] * 20, "runner_data": {"a": 1}}).encode()
SEARCH = pickle.dumps({"_iterators": [list(range(30))], "_finished": True}, protocol=5)
TUNER_PKL = pickle.dumps({"_tune_config": "x" * 40, "__trainable_name": "GrokTrainable"}, 5)


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


def test_the_tuner_file_a_resumed_driver_copies_back_is_backed_up_and_kept(tmp_path):
    staging, experiment = tmp_path / "staging", tmp_path / "exp"
    experiment.mkdir()
    write_state(staging, "s1")
    (staging / TUNER).write_bytes(TUNER_PKL)  # downloaded there by a resumed driver
    assert back_up_state(staging, experiment)
    assert (experiment / BACKUP / TUNER).read_bytes() == TUNER_PKL
    (staging / TUNER).unlink()
    write_state(staging, "s2")
    assert back_up_state(staging, experiment)
    assert (experiment / BACKUP / TUNER).read_bytes() == TUNER_PKL
    (staging / TUNER).write_bytes(TUNER_PKL[:-3])  # cut off: no new backup
    assert not back_up_state(staging, experiment)


def test_a_cut_off_tuner_file_is_put_back_from_the_backup(tmp_path):
    write_state(tmp_path, "s1")
    write_state(tmp_path / BACKUP, "s1")
    (tmp_path / TUNER).write_bytes(TUNER_PKL[:7])  # a kill during the driver's copy
    assert "tuner.pkl" in repair_state(tmp_path)  # no backup of it: named, left as it is
    assert (tmp_path / TUNER).read_bytes() == TUNER_PKL[:7]
    (tmp_path / BACKUP / TUNER).write_bytes(TUNER_PKL)
    assert repair_state(tmp_path) is None
    assert (tmp_path / TUNER).read_bytes() == TUNER_PKL
    aside = list((tmp_path / BACKUP).glob(f"broken-*/{TUNER}"))
    assert len(aside) == 1 and aside[0].read_bytes() == TUNER_PKL[:7]


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
    tmp_path.joinpath(TUNER).write_bytes(TUNER_PKL)
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


# ---------------------------------------------------------------- where a trial resumes


def make_checkpoint(trial: Path, index: int, step: int, history: bool = True) -> Path:
    """A whole checkpoint folder as the trainable leaves it: files, manifest, its reports."""
    from grok.checkpoint import publish

    def write(tmp):
        for name in ("model.pt", "state.pt", "config.yaml"):
            (tmp / name).write_bytes(f"{name} at {step}".encode() * 10)

    folder = publish(trial / f"checkpoint_{index:06d}", NAMES, step, write)
    if history:
        (folder / HISTORY).write_text(json.dumps(reports(range(0, step + 1, 10))))
    return folder


NAMES = ("model.pt", "state.pt", "config.yaml")


def reports(steps, **extra) -> list[dict]:
    return [{"step": s, "val/acc": s / 1000, **extra} for s in steps]


def test_a_checkpoint_is_whole_only_with_every_file_its_manifest_names(tmp_path):
    from grok import checkpoint, resume

    assert resume.MANIFEST == checkpoint.MANIFEST  # the name the checkpoint writer gives it
    folder = make_checkpoint(tmp_path, 3, 30)
    assert checkpoint_step(at(folder)) == 30
    (folder / "state.pt").write_bytes(b"cut")  # a copy cut off by a kill
    assert checkpoint_step(at(folder)) is None
    folder = make_checkpoint(tmp_path, 4, 40)
    (folder / "model.pt").unlink()  # half-deleted by pruning
    assert checkpoint_step(at(folder)) is None
    folder = make_checkpoint(tmp_path, 5, 50)
    (folder / MANIFEST).unlink()  # a copy the manifest had not reached
    assert checkpoint_step(at(folder)) is None
    assert checkpoint_step(at(tmp_path / "checkpoint_000009")) is None  # gone


def test_the_named_checkpoint_is_kept_and_what_came_after_it_dropped(tmp_path):
    for index in range(4):
        make_checkpoint(tmp_path, index, 10 * (index + 1))
    (tmp_path / "checkpoint_000001" / "model.pt").unlink()  # not whole: dropped too
    point = repair_trial(at(tmp_path), "checkpoint_000002")
    assert (point.name, point.index, point.step) == ("checkpoint_000002", 2, 30)
    assert sorted(point.deleted) == ["checkpoint_000001", "checkpoint_000003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000000", "checkpoint_000002"]


def test_a_gone_named_checkpoint_gives_way_to_the_newest_whole_one(tmp_path):
    make_checkpoint(tmp_path, 1, 20)
    make_checkpoint(tmp_path, 4, 50)
    (make_checkpoint(tmp_path, 5, 60) / "state.pt").write_bytes(b"")  # cut off by the kill
    point = repair_trial(at(tmp_path), "checkpoint_000002")  # pruned after the state's save
    assert (point.name, point.index, point.step) == ("checkpoint_000004", 4, 50)
    assert point.deleted == ["checkpoint_000005"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000001", "checkpoint_000004"]


def test_no_whole_checkpoint_or_none_named_resumes_from_step_0(tmp_path):
    (make_checkpoint(tmp_path, 0, 10) / MANIFEST).unlink()
    point = repair_trial(at(tmp_path), "checkpoint_000000")
    assert (point.name, point.index, point.step) == (None, -1, None)
    assert not list(tmp_path.iterdir())
    make_checkpoint(tmp_path, 0, 10)  # written by a run whose report never reached the state
    assert repair_trial(at(tmp_path), None).deleted == ["checkpoint_000000"]
    assert repair_trial(at(tmp_path / "no-such-trial"), None) == ResumePoint()


def test_reports_are_cut_back_to_the_resume_point_one_per_step(tmp_path):
    path = tmp_path / "result.json"
    rows = reports(range(0, 80, 10), trial_id="t")  # the killed run got to step 70
    lines = [json.dumps(r) for r in rows[:3] + rows[2:]]  # step 20 twice: an earlier restart
    path.write_text("\n".join(lines) + '\n{"step": 80, "val/a')  # and a line cut off
    cut_reports(path, 40, reports(range(0, 50, 10)))
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in kept] == [0, 10, 20, 30, 40]
    assert all(r["trial_id"] == "t" for r in kept)  # Tune's own reports, not the record's


def test_reports_a_stale_copy_lacks_come_from_the_checkpoints_record(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in reports([0, 10], trial_id="t")))
    cut_reports(path, 40, reports(range(0, 50, 10)))
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in kept] == [0, 10, 20, 30, 40]
    assert [r.get("trial_id") for r in kept] == ["t", "t", None, None, None]
    assert kept[3] == {"step": 30, "val/acc": 0.03}
    cut_reports(path, None, [])  # resumed from step 0: it reports everything again
    assert path.read_text() == ""
    path.unlink()  # never copied into storage before the kill
    cut_reports(path, 20, reports(range(0, 50, 10)))
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 10, 20]
    path.write_text('{"step": 0}\n12')  # a cut-off line that parses, as a number
    cut_reports(path, 0, [])
    assert path.read_text() == '{"step": 0}\n'


def test_progress_csv_keeps_its_header_and_a_row_per_step(tmp_path):
    path = tmp_path / "progress.csv"
    head = "step,val/acc,trial_id\r\n"
    body = "".join(f"{s},{s / 1000},t\r\n" for s in (0, 10, 20, 10, 20, 30))
    path.write_bytes((head + body + "40,0.0").encode())  # the row at 40 cut off
    cut_reports(path, 20, reports([0, 10, 20]))
    assert path.read_bytes().decode() == head + "0,0.0,t\r\n10,0.01,t\r\n20,0.02,t\r\n"
    cut_reports(path, None, [])
    assert path.read_bytes() == b""


def test_a_trial_on_s3_resumes_from_its_newest_whole_checkpoint(tmp_path, s3):
    from grok.storage import resolve

    local = tmp_path / "trial"
    make_checkpoint(local, 1, 20)
    make_checkpoint(local, 3, 40)
    (make_checkpoint(local, 4, 50) / "model.pt").unlink()
    trial = resolve(s3.uri("repair/e/seed=0"))
    at(local).copy_to(trial)
    point = repair_trial(trial, "checkpoint_000002")
    assert (point.name, point.step, point.deleted) == (
        "checkpoint_000003",
        40,
        ["checkpoint_000004"],
    )
    assert sorted(checkpoint_folders(trial)) == [1, 3]
    assert checkpoint_history(trial / point.name)[-1] == {"step": 40, "val/acc": 0.04}
