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
    is_experiment,
    is_trial,
    portable_command,
    read_record,
    read_reports,
)


def write_reports(reports: list[dict], path: Path) -> None:
    """Reports as JSON lines, gzipped with no name or time in its header: same input, same bytes."""
    text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in reports)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode())


def archive(src: Path, out: Path) -> Path:
    """Archive the experiment folder `src` into `out/<its name>/`, replacing an older archive."""
    if not is_experiment(src):
        raise ValueError(f"{src}: not an experiment's results folder")
    record = read_record(src) or {"name": src.name}
    dst = out / (record.get("name") or src.name)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record[ARCHIVED_FROM] = str(src)
    if record.get("command"):  # as another user would type it: no folder of this machine
        record["command"] = portable_command(record["command"])
    (tmp / EXPERIMENT_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    for trial in sorted(d for d in src.iterdir() if is_trial(d)):
        (tmp / trial.name).mkdir()
        for name in ("params.json", "error.txt"):  # error.txt: the trial errored
            if (trial / name).is_file():
                shutil.copyfile(trial / name, tmp / trial.name / name)
        kept = [{k: v for k, v in r.items() if k not in BOOKKEEPING} for r in read_reports(trial)]
        write_reports(kept, tmp / trial.name / REPORTS_ARCHIVED)
    shutil.rmtree(dst, ignore_errors=True)  # the archive is replaced whole, never merged
    tmp.rename(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m grok.archive", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="experiment results folders, e.g. results/wd_law")
    ap.add_argument("--out", required=True, help="where the archives go, e.g. report/data")
    args = ap.parse_args(argv)
    for folder in args.folders:
        try:
            dst = archive(Path(folder), Path(args.out))
        except (OSError, ValueError) as err:
            return fail(err)
        print(f"{folder} -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
