"""Archives of results folders: compact, deterministic, and read by the report as the folder is."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error, run_cli
from test_plotting import wd_experiment

from grok.archive import archive
from grok.results import REPORTS_ARCHIVED, portable_command, read_reports, trial_dirs

CHECKPOINT_LINES = ("Best checkpoint", "No checkpoint", "Best trial by")


def build_report(cwd: Path) -> dict[str, bytes]:
    env = {"PYTHONPATH": str(ROOT)}
    proc = run_cli("-m", "plotting.report", "results", "--out", "report", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return {p.name: p.read_bytes() for p in sorted((cwd / "report").iterdir())}


def test_report_from_an_archive_is_the_report_from_the_results(tmp_path):
    raw = wd_experiment(tmp_path / "raw" / "results")
    here = os.getcwd()
    os.chdir(tmp_path / "raw")  # a relative source, as `python -m grok.archive results/NAME`
    try:
        archive(Path("results") / raw.name, tmp_path / "kept" / "results")
    finally:
        os.chdir(here)
    from_raw = build_report(tmp_path / "raw")
    kept = build_report(tmp_path / "kept")
    # One difference is meant: nothing runs in an archive, so a trial the results folder shows
    # as running reads there as interrupted at its last step.
    trials = lambda text: [ln for ln in text.decode().splitlines() if ln.startswith("Trials:")]
    assert "1 running" in trials(from_raw["REPORT.md"])[0]
    assert "1 interrupted; interrupted: `" in trials(kept["REPORT.md"])[0]
    from_archive = {k: v.replace(b"interrupted", b"running") for k, v in kept.items()}
    assert from_raw.keys() == from_archive.keys()
    for name in from_raw:
        if name == "REPORT.md":
            continue
        assert from_raw[name] == from_archive[name], name  # tables, CSVs and figures alike
    lines = lambda text: [
        ln for ln in text.decode().splitlines() if not ln.startswith((*CHECKPOINT_LINES, "Trials:"))
    ]
    assert lines(from_raw["REPORT.md"]) == lines(from_archive["REPORT.md"])
    assert "Checkpoints are not archived" in from_archive["REPORT.md"].decode()


def test_archive_keeps_every_metric_drops_bookkeeping_and_is_deterministic(tmp_path):
    raw = wd_experiment(tmp_path / "results")
    first = archive(raw, tmp_path / "a")
    second = archive(raw, tmp_path / "b")
    for trial in trial_dirs(first):
        assert (trial / REPORTS_ARCHIVED).read_bytes() == (
            tmp_path / "b" / first.name / trial.name / REPORTS_ARCHIVED
        ).read_bytes()
        kept = read_reports(trial)
        original = read_reports(raw / trial.name)
        assert len(kept) == len(original)
        for k, o in zip(kept, original):
            assert "config" not in k and "hostname" not in k
            assert {key: v for key, v in o.items() if key in k} == k
            assert k["step"] == o["step"] and k["test/acc"] == o["test/acc"]
    assert sum(len(read_reports(t)) for t in trial_dirs(first)) > 10
    errored = [t.name for t in trial_dirs(raw) if (t / "error.txt").exists()]
    assert errored and all((first / name / "error.txt").is_file() for name in errored)
    assert second.name == first.name


def test_archive_cli_refuses_what_is_not_a_results_folder(tmp_path):
    proc = run_cli("-m", "grok.archive", str(tmp_path), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, str(tmp_path))
    assert not (tmp_path / "out").exists()


def same_numbers(a: str, b: str, rel: float = 1e-9) -> bool:
    """Two CSV texts hold the same cells, numbers equal to `rel` (a fit's last digits differ
    between CPUs: the vector units and BLAS kernels sum in different orders)."""
    import csv
    import io
    import math

    rows_a, rows_b = (list(csv.reader(io.StringIO(t))) for t in (a, b))
    if [len(r) for r in rows_a] != [len(r) for r in rows_b]:
        return False
    for x, y in zip((c for r in rows_a for c in r), (c for r in rows_b for c in r)):
        if x == y:
            continue
        try:
            if not math.isclose(float(x), float(y), rel_tol=rel, abs_tol=1e-12):
                return False
        except ValueError:
            return False
    return True


def test_csv_cells_compare_as_numbers_to_the_last_bits_and_as_text_otherwise():
    assert same_numbers("a,b\n1,-0.8273548443562282\n", "a,b\n1,-0.8273548443562293\n")
    assert not same_numbers("a,b\n1,-0.82735484\n", "a,b\n1,-0.82735485\n")
    assert not same_numbers("a,b\n1,x\n", "a,b\n1,y\n")
    assert not same_numbers("a,b\n1,2\n", "a,b\n1,2\n3,4\n")


@pytest.mark.slow
def test_the_committed_report_rebuilds_from_its_archive(tmp_path):
    """report/ is built from report/data: a fresh clone rebuilds every table and the text."""
    import shutil

    out = tmp_path / "report"
    out.mkdir()
    from plotting.report import STUDY, WRITTEN

    for name in (STUDY, *WRITTEN):
        if (ROOT / "report" / name).is_file():
            shutil.copy(ROOT / "report" / name, out / name)
    shutil.copytree(ROOT / "report" / "weights", out / "weights")
    proc = run_cli("-m", "plotting.report", "report/data", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    committed = sorted(p.name for p in (ROOT / "report").iterdir() if p.suffix in (".md", ".csv"))
    assert "REPORT.md" in committed and len(committed) > 50
    for name in committed:
        rebuilt = (out / name).read_text().replace(str(out), "report")
        kept = (ROOT / "report" / name).read_text()
        if name.endswith(".csv"):  # full precision: the last bits are the CPU's and its BLAS's
            assert same_numbers(rebuilt, kept), name
        else:  # the text rounds what it prints
            assert rebuilt == kept, name
    pngs = [p.name for p in (ROOT / "report").glob("*.png")]
    assert pngs and all((out / name).is_file() for name in pngs)


def test_no_committed_report_file_names_a_folder_of_the_machine_it_was_made_on():
    """Commands and manifests in report/ read as a user would type them, on any machine."""
    machine = re.compile(r"(?<![\w.])/(?:work|home|root|Users|tmp|mnt|scratch)/")
    texts = (".md", ".csv", ".yaml", ".json", ".txt")
    found = []
    for path in sorted((ROOT / "report").rglob("*")):
        if path.suffix in texts:
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if machine.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line[:120]}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "command, typed",
    [
        ("python tune_main.py e.yaml --storage /work/study", "python tune_main.py e.yaml"),
        (
            "grok-sweep e.yaml --storage=/data/r --max-concurrent 2",
            "grok-sweep e.yaml --max-concurrent 2",
        ),
        (
            "python tune_main.py e.yaml --storage results",
            "python tune_main.py e.yaml --storage results",
        ),
        (
            "python tune_main.py e.yaml --storage s3://b/p",
            "python tune_main.py e.yaml --storage s3://b/p",
        ),
    ],
)
def test_a_recorded_command_is_shown_without_this_machines_storage_folder(command, typed):
    assert portable_command(command) == typed


def test_no_committed_report_text_prints_a_number_with_more_than_6_significant_digits():
    """Tables and text round numbers to what they carry (the CSV files keep full precision)."""
    number = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.])")
    found = []
    for path in sorted((ROOT / "report").rglob("*.md")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in number.finditer(line):
                if line[: m.start()].endswith(("arXiv ", "arXiv:", "abs/")):
                    continue  # an arXiv identifier, not a number
                if len(m.group(1).replace(".", "").lstrip("0")) > 6:
                    found.append(f"{path.relative_to(ROOT)}:{n}: {m.group(1)}")
    assert not found, "\n".join(found)
