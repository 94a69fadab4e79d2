"""Run an experiment file as a Ray Tune sweep: every grid point a trial, or a search of a
sampled space (each point once per grid point).

python tune_main.py experiments/ablation_wd.yaml [--set k=v ...] [--address ADDR]
    [--storage DIR_OR_URI] [--max-concurrent N] [--resume | --fresh] [--dry-run]

The cluster is --address's, else RAY_ADDRESS's (set by `ray job submit`), else a new local one;
results go to --storage, a folder or an object-store URI (grok/storage.py).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path

from grok import cluster, storage
from grok.cli import Parser, fail
from grok.config import ConfigError, Experiment, load_experiment, trial_name
from grok.metrics import OBJECTIVE
from grok.resume import repair_state
from grok.select import best_checkpoint
from grok.train import build_data
from plotting import search as psearch
from plotting.results import load


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
    ap.add_argument(
        "--address",
        help="join a running Ray cluster ('auto', host:port or ray://host:port; default: "
        "RAY_ADDRESS when set, else start a local one)",
    )
    ap.add_argument(
        "--storage",
        default="results",
        help="results root: a folder, file:// or s3://bucket/prefix?endpoint_override=... "
        "(default: results/)",
    )
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


def check_data(configs) -> None:
    """Build each distinct dataset once, so a bad data file fails here and not in a trial."""
    seen = set()
    for cfg in configs:
        key = repr((cfg.task, cfg.model.max_len))
        if key not in seen:
            seen.add(key)
            build_data(cfg)


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(header, rows) -> None:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def describe_search(exp: Experiment) -> None:
    """What --dry-run prints for a search: the space, the trials, the searcher and the stops."""
    s = exp.search
    points = len(exp.trials())
    grid = ", ".join(f"{k}={v}" for k, v in exp.grid.items()) or "none"
    budget = exp.base.train.steps
    print(f"  {s.num_samples} sampled points x {points} grid point(s) ({grid}) = {exp.num_trials}")
    seeded = "TPE, seed" if s.algorithm == "optuna" else "Tune's random search, seed"
    at_once = exp.tune.get("max_concurrent")
    at_once = f", at most {at_once} trials at once" if at_once else ""
    print(f"  algorithm: {s.algorithm} ({seeded} {s.seed}){at_once}")
    print(f"  metric: {s.metric} ({s.mode}), each point's mean over its grid points")
    if s.metric == OBJECTIVE:
        print(
            "    the step at which test accuracy first reaches 99%; a run that never does is "
            f"censored at its budget, train.steps = {budget}"
        )
    print("  space:")
    width = max(len(key) for key in s.space)
    for key, domain in s.space.items():
        print(f"    {key.ljust(width)}  {domain}")
    if s.scheduler:
        grace, factor = s.scheduler["grace_period"], s.scheduler["reduction_factor"]
        rungs = [grace * factor**k for k in range(64) if grace * factor**k < budget]
        print(
            f"  scheduler: asha on {s.metric}: at steps {', '.join(map(str, rungs))} all but "
            f"the best 1/{factor} of trials stop (risky for grokking: see the README)"
        )
    else:
        print("  scheduler: none (every trial runs to its own stop)")
    if s.stop_if_train_below:
        stop = s.stop_if_train_below
        print(
            f"  stopper: a trial whose train accuracy has not reached {stop['acc']:.0%} by step "
            f"{stop['step']} is stopped"
        )
    after = exp.base.stop.after_grok_steps
    threshold = f"{exp.base.stop.threshold:.0%}"
    own = "none" if after is None else f"{after} steps after test accuracy reaches {threshold}"
    print(f"  each trial's own stop (stop.after_grok_steps): {own}; budget {budget} steps")


def summarize(results, metric: str, folder: storage.Location, view: Path) -> int:
    """One line per trial (`view`: a local view of `folder`); returns the number errored."""
    errored = 0
    rows = []
    for result in results:
        path = view / Path(result.path).name
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
                str(folder / path.name / best[0].name) if best else "-",
            )
        )
    header = ("trial", "status", "train acc", "test acc", "test 99% at", "best checkpoint")
    print_table(header, rows)
    print(f"results: {folder}")
    return errored


def summarize_search(folder: Path) -> None:
    """The best sampled points, ranked by the search's metric (mean over each point's runs)."""
    res = load(folder)
    ranked = psearch.points(res)
    search = psearch.spec(res)
    print(
        f"top {min(psearch.TOP, len(ranked))} of {len(ranked)} points by {search['metric']} "
        f"({search['mode']}):"
    )
    head, rows = psearch.top_rows(res, ranked)
    print_table(head, rows)
    print(psearch.best_text(res, ranked))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        exp = load_experiment(args.experiment, args.set)
        trials = exp.trials()
        check_data(exp.edges())
    except ConfigError as err:
        return fail(err)
    if args.dry_run:
        n = exp.num_trials
        print(
            f"{exp.name}: {n} trial{'s' * (n != 1)}"
            f" ({exp.resources['cpu']:g} cpu, {exp.resources['gpu']:g} gpu each)"
        )
        if exp.search:
            describe_search(exp)
            return 0
        for values, _ in trials:
            shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "(no varying values)"
            print(f"  {trial_name(values)}: {shown}")
        return 0

    # Checked before anything is written: the storage, the cluster's address, the folder.
    try:
        root = storage.resolve(args.storage)
        folder = root / exp.name
        existing = folder.holds_anything()
    except (storage.StorageError, OSError) as err:
        return fail(f"--storage: {err}")
    address = cluster.target(args.address)
    try:
        if address:
            cluster.check_reachable(address)
    except cluster.ClusterError as err:
        return fail(err)
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
        unresumable = repair_state(folder)
        if unresumable:
            return fail(f"--resume: {unresumable}; use --fresh to start it anew")
    elif existing and not args.fresh:
        return fail(
            f"{folder} already holds results; --resume continues them, "
            "--fresh moves them aside and starts again"
        )
    try:
        joined = cluster.join(address, args.dashboard_host)
    except cluster.ClusterError as err:
        return fail(err)
    missing = cluster.missing_resources(exp.resources, joined)
    if missing:
        have = ", ".join(cluster.declared(joined)) or "none"
        return fail(
            f"{exp.source}: resources.{missing[0]}: no node of this cluster has enough of it "
            f"(it has: {have}); declare it with `ray start --resources`"
        )
    if existing and not args.resume:
        aside = root / f"{exp.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.move_to(aside)
        print(f"moved the earlier results to {aside}")
    print(joined.describe())
    print(f"{exp.name}: {exp.num_trials} trials; results in {folder}", flush=True)
    try:
        if args.resume:
            tuner = gtune.restore_tuner(exp, folder)
        else:
            command = shlex.join(["python", "tune_main.py", *(argv or sys.argv[1:])])
            gtune.write_record(exp, folder, command)
            tuner = gtune.build_tuner(exp, root, args.max_concurrent)
        results = tuner.fit()
    except KeyboardInterrupt:
        print(
            f"interrupted; continue with: python tune_main.py {args.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    view = storage.local_view(folder)
    errored = summarize(results, gtune.score_metric(exp), folder, view)
    if exp.search:
        summarize_search(view)
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
