"""Run an experiment file as a Ray Tune sweep: every grid point a trial.

python tune_main.py experiments/ablation_wd.yaml [--set k=v ...] [--address ADDR]
    [--storage DIR] [--max-concurrent N] [--resume | --fresh] [--dry-run]
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from grok.cli import Parser, fail
from grok.config import ConfigError, load_experiment, trial_name
from grok.select import best_checkpoint
from grok.train import build_data


def parse_args(argv):
    ap = Parser(description="Run an experiment file as a Ray Tune sweep.")
    ap.add_argument("experiment", help="experiment YAML file (see experiments/)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting for every trial, e.g. --set train.steps=5000",
    )
    ap.add_argument("--address", help="join a running Ray cluster ('auto', or host:port)")
    ap.add_argument("--storage", default="results", help="results root (default: results/)")
    ap.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once")
    ap.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="where a locally started Ray binds its dashboard (default 127.0.0.1)",
    )
    again = ap.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue the sweep in the existing results folder"
    )
    again.add_argument(
        "--fresh", action="store_true", help="move an existing results folder aside and start again"
    )
    ap.add_argument("--dry-run", action="store_true", help="list the trials and exit")
    args = ap.parse_args(argv)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        ap.error("--max-concurrent must be at least 1")
    return args


def check_data(trials) -> None:
    """Build each distinct dataset once, so a bad data file fails here and not in a trial."""
    seen = set()
    for _, cfg in trials:
        key = repr((cfg.task, cfg.model.max_len))
        if key not in seen:
            seen.add(key)
            build_data(cfg)


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summarize(results, metric: str, folder: Path) -> int:
    """One line per trial; returns the number of errored trials."""
    errored = 0
    rows = []
    for result in results:
        path = Path(result.path)
        m = result.metrics or {}
        if result.error is not None:
            errored += 1
            status = "ERROR"
        else:
            status = m.get("status", "?")
        best = best_checkpoint(path, metric, "max")
        grok = m.get("grok/test_acc_99_step")
        rows.append(
            (
                path.name,
                status,
                fmt(m.get("train/acc")),
                fmt(m.get("test/acc")),
                "not reached" if grok is None else str(grok),
                str(best[0]) if best else "-",
            )
        )
    header = ("trial", "status", "train acc", "test acc", "test 99% at", "best checkpoint")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"results: {folder}")
    return errored


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        exp = load_experiment(args.experiment, args.set)
        trials = exp.trials()
        check_data(trials)
    except ConfigError as err:
        return fail(err)
    if args.dry_run:
        print(
            f"{exp.name}: {len(trials)} trial{'s' * (len(trials) != 1)}"
            f" ({exp.resources['cpu']:g} cpu, {exp.resources['gpu']:g} gpu each)"
        )
        for values, _ in trials:
            shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "(no varying values)"
            print(f"  {trial_name(values)}: {shown}")
        return 0

    folder = Path(args.storage) / exp.name
    existing = folder.exists() and any(folder.iterdir())
    from grok import tune as gtune  # Ray is imported only once a sweep will run

    if args.resume:
        if not existing:
            return fail(f"--resume: {folder} does not exist; run without --resume to start it")
        differs = gtune.same_experiment(folder, exp)
        if differs:
            return fail(
                f"--resume: {folder} is not this experiment ({differs}); "
                "use --fresh to start it anew"
            )
    elif existing:
        if not args.fresh:
            return fail(
                f"{folder} already holds results; --resume continues them, "
                "--fresh moves them aside and starts again"
            )
        aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(folder), aside)
        print(f"moved the earlier results to {aside}")

    import ray

    # Trials print nothing of their own (their metrics reach Tune's table), so worker output
    # is not forwarded: it would only repeat Ray's checkpoint notices.
    if args.address:
        ctx = ray.init(address=args.address, log_to_driver=False)
    else:
        ctx = ray.init(
            address="local",  # a new local cluster, never one a `ray start` left running
            include_dashboard=True,
            dashboard_host=args.dashboard_host,
            log_to_driver=False,
        )
    if ctx.dashboard_url:
        print(f"Ray dashboard: http://{ctx.dashboard_url}")
    cpus = ray.cluster_resources().get("CPU", 0)
    print(
        f"{exp.name}: {len(trials)} trials on a cluster with {cpus:g} CPUs; results in {folder}",
        flush=True,
    )
    try:
        if args.resume:
            tuner = gtune.restore_tuner(exp, folder)
        else:
            command = shlex.join(["python", "tune_main.py", *(argv or sys.argv[1:])])
            gtune.write_record(exp, folder, command)
            tuner = gtune.build_tuner(exp, Path(args.storage), args.max_concurrent)
        results = tuner.fit()
    except KeyboardInterrupt:
        print(
            f"interrupted; continue with: python tune_main.py {args.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    errored = summarize(results, gtune.score_metric(exp), folder)
    if errored:
        print(
            f"{errored} trial(s) errored; see error.txt in their folders. "
            f"`--resume` retries them from their last checkpoints.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    sys.exit(main())
