"""Archived results: a sweep's reports and parameters, without checkpoints, kept with the report.

    python -m grok.archive results/wd_law [results/NAME ...] --out report/data

`results/` is not kept in the repository, and a study takes hours to train; its numbers must
not live only there. The archive of `results/<name>/` is `<out>/<name>/`: the record
(experiment.yaml, plus `archived_from`: where the results were) and, per trial, `params.json`,
`error.txt` if it errored, and `result.json.gz`: every report as Tune wrote it less the
bookkeeping no reader uses (the config repeated on every line, times of day, host names, process
ids). gzip without a timestamp, so archiving the same results twice gives the same bytes.
grok/results.py reads result.json.gz where there is no result.json, so the plotting and the
report builder read an archive as they read a results folder; only the checkpoints are missing.

A sweep too long for one machine's session can run in parts: each part on a fresh machine skips
the trials that ended in the archive so far, and its archive is merged into it:

    python tune_main.py FILE --skip-done report/data/NAME
    python -m grok.archive results/NAME --out report/data --merge

Format: docs/architecture.md.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import yaml

from grok.cli import Parser, fail
from grok.results import (
    ARCHIVED_FROM,
    BOOKKEEPING,
    EXPERIMENT_FILE,
    REPORTS_ARCHIVED,
    differing_key,
    is_experiment,
    is_trial,
    portable_command,
    read_record,
    read_reports,
)

PARTS = "parts"  # in a merged archive's record: each part's command and trials


def write_reports(reports: list[dict], path: Path) -> None:
    """Reports as JSON lines, gzipped with no name or time in its header: same input, same bytes."""
    text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in reports)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode())


def archive(src: Path, out: Path, merge: bool = False) -> Path:
    """Archive the experiment folder `src` into `out/<its name>/`, replacing an older archive;
    with `merge`, the older archive's trials that `src` does not have are kept (see `merged`)."""
    if not is_experiment(src):
        raise ValueError(f"{src}: not an experiment's results folder")
    record = read_record(src) or {"name": src.name}
    dst = out / (record.get("name") or src.name)
    tmp = dst.with_name(dst.name + ".partial")
    record[ARCHIVED_FROM] = str(src)
    if record.get("command"):  # as another user would type it: no folder of this machine
        record["command"] = portable_command(record["command"])
    trials = sorted(d for d in src.iterdir() if is_trial(d))
    kept = []
    if merge and is_experiment(dst):
        record, kept = merged(dst, record, [t.name for t in trials])
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / EXPERIMENT_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    for trial in kept:
        shutil.copytree(trial, tmp / trial.name)
    for trial in trials:
        (tmp / trial.name).mkdir()
        for name in ("params.json", "error.txt"):  # error.txt: the trial errored
            if (trial / name).is_file():
                shutil.copyfile(trial / name, tmp / trial.name / name)
        kept = [{k: v for k, v in r.items() if k not in BOOKKEEPING} for r in read_reports(trial)]
        write_reports(kept, tmp / trial.name / REPORTS_ARCHIVED)
    shutil.rmtree(dst, ignore_errors=True)  # replaced whole: a merge was made in tmp
    tmp.rename(dst)
    return dst


def merged(dst: Path, record: dict, names: list[str]) -> tuple[dict, list[Path]]:
    """The record of the archive `dst` with a new part (`record`'s run, trials `names`) and the
    trials of `dst` to keep: those the new part does not have. A sweep run in parts (each part
    `--skip-done` on another machine) is archived part by part; the record lists each part's
    command and trials under `parts`, and keeps the first part's command as the one that runs
    it all. ValueError when `dst` is another experiment (grid, search or config differ)."""
    old = read_record(dst) or {}
    if key := differing_key(old, record, str(dst)):
        raise ValueError(f"{dst}: its {key} differs from {record[ARCHIVED_FROM]}'s; not merged")
    ours = set(names)
    trials = sorted(d for d in dst.iterdir() if is_trial(d))
    kept = [d for d in trials if d.name not in ours]
    parts = old.get(PARTS) or [part(old, [d.name for d in trials])]
    parts = [{**p, "trials": [t for t in p["trials"] if t not in ours]} for p in parts]
    new = {**old, PARTS: [*(p for p in parts if p["trials"]), part(record, sorted(names))]}
    return new, kept


def part(record: dict, trials: list[str]) -> dict:
    """One part of a merged archive: where it was archived from, its command, its trials."""
    return {
        ARCHIVED_FROM: record.get(ARCHIVED_FROM),
        "command": record.get("command"),
        "code": record.get("code"),
        "trials": trials,
    }


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m grok.archive", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="experiment results folders, e.g. results/wd_law")
    ap.add_argument("--out", required=True, help="where the archives go, e.g. report/data")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the trials of an existing archive that the folder does not have (a sweep run "
        "in parts with --skip-done); its record lists each part",
    )
    args = ap.parse_args(argv)
    for folder in args.folders:
        try:
            dst = archive(Path(folder), Path(args.out), args.merge)
        except (OSError, ValueError) as err:
            return fail(err)
        print(f"{folder} -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
