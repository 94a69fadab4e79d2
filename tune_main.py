"""Run an experiment file as a Ray Tune sweep: every grid point a trial, or a search of a
sampled space (each point once per grid point).

python tune_main.py experiments/ablation_wd.yaml [--set k=v ...] [--address ADDR]
    [--storage DIR_OR_URI] [--max-concurrent N] [--resume | --fresh] [--dry-run] [--yes-large]
    [--wandb PROJECT] [--mlflow URI] [--reuse STORE]

The cluster is --address's, else RAY_ADDRESS's (set by `ray job submit`), else a new local one;
results go to --storage, a folder or an object-store URI (grok/storage.py). See docs/cluster.md.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from pathlib import Path

import torch

from grok import cluster, storage
from grok.cli import Parser, add_experiment, fail
from grok.data import DATA_KEYS, check_data
from grok.experiment import TRIAL_STEPS_PER_S, Experiment, load_experiment, trial_name
from grok.metrics import OBJECTIVE
from grok.results import best_checkpoint
from grok.reuse import REUSED_FROM
from grok.schema import ConfigError
from grok.tracking import dashboard_sign_in, read_tracking
from plotting import search as psearch
from plotting.frames import load


def parse_args(argv):
    ap = Parser(description="Run an experiment file as a Ray Tune sweep.")
    add_experiment(ap, "experiment YAML file (see experiments/)", " for every trial")
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
    ap.add_argument(
        "--reuse",
        metavar="STORE",
        help="a run store (folder or URI): a trial whose resolved config and training code match "
        "a stored run replays it instead of training, and a trained one is stored "
        "(grok/reuse.py)",
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
    ap.add_argument(
        "--yes-large",
        action="store_true",
        help="start a sweep estimated to take the cluster more than a day",
    )
    ap.add_argument("--wandb", metavar="PROJECT", help="also log each trial to this W&B project")
    ap.add_argument(
        "--mlflow", metavar="URI", help="also log each trial to MLflow (e.g. sqlite:///mlflow.db)"
    )
    args = ap.parse_args(argv)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        ap.error("--max-concurrent must be at least 1")
    return args


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
    points = exp.num_points
    grid = ", ".join(f"{k}={v}" for k, v in exp.grid.items()) or "none"
    budget = exp.base.train.steps
    print(f"  {s.num_samples} sampled points x {points} grid point(s) ({grid}) = {exp.num_trials}")
    seeded = "TPE, seed" if s.algorithm == "optuna" else "Tune's random search, seed"
    at_once = exp.tune.max_concurrent
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
        rungs = ", ".join(map(str, s.scheduler.rungs(budget)))
        print(
            f"  scheduler: asha on {s.metric}: at steps {rungs} all but the best "
            f"1/{s.scheduler.reduction_factor} of trials stop (risky for grokking: see "
            "docs/search.md)"
        )
    else:
        print("  scheduler: none (every trial runs to its own stop)")
    if s.stop_if_train_below:
        stop = s.stop_if_train_below
        print(
            f"  stopper: a trial whose train accuracy has not reached {stop.acc:.0%} by step "
            f"{stop.step} is stopped"
        )
    after = exp.base.stop.after_grok_steps
    threshold = f"{exp.base.stop.threshold:.0%}"
    own = "none" if after is None else f"{after} steps after test accuracy reaches {threshold}"
    print(f"  each trial's own stop (stop.after_grok_steps): {own}; budget {budget} steps")


def summarize(results, metric: str, folder: storage.Location, view: Path) -> None:
    """One line per trial (`view`: a local view of `folder`); checkpoints shown where they are
    stored."""
    rows = []
    for result in results:
        path = view / Path(result.path).name
        m = result.metrics or {}
        status = "ERROR" if result.error is not None else m.get("status", "?")
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
    for result in results:
        source = (result.metrics or {}).get(REUSED_FROM)
        if source:
            name = Path(result.path).name
            print(f"{name}: reused from {source} (same config and training code), not trained")
    print(f"results: {folder}")


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


DAY = 24 * 3600.0
LISTED = 20  # a grid of at most this many points is listed whole by --dry-run
SAMPLES = 3  # else its first and last few points


def duration(seconds: float) -> str:
    for unit, size in (("years", 365 * DAY), ("days", DAY), ("hours", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds / 60:.2g} minutes"


def estimate(exp: Experiment, at_once: int, where: str) -> tuple[float, str]:
    """The sweep's estimated time, and a line that says how it was reckoned."""
    seconds = exp.estimated_seconds(at_once)
    return seconds, (
        f"{exp.num_trials} trials x up to {exp.steps_per_trial()} steps at "
        f"~{TRIAL_STEPS_PER_S:g} steps/s per trial, {at_once} at once {where}: "
        f"about {duration(seconds)}"
    )


def local_size() -> tuple[float, float]:
    """The CPUs and GPUs a local Ray cluster would have: this machine's."""
    return float(os.cpu_count() or 1), float(torch.cuda.device_count())


def dry_run(exp: Experiment, at_once: int) -> None:
    """The trials a sweep would run, without running them: at any grid size, the count, each
    key's values and the first and last few points (nothing is built per point)."""
    n = exp.num_trials
    print(
        f"{exp.name}: {n} trial{'s' * (n != 1)}"
        f" ({exp.resources.cpu:g} cpu, {exp.resources.gpu:g} gpu each)"
    )
    seconds, how = estimate(exp, at_once, "on this machine")
    large = " (over a day: starting it needs --yes-large)" if seconds > DAY else ""
    print(f"  estimate: {how}{large}")
    if exp.search:
        describe_search(exp)
        return
    points = exp.num_points
    if points > LISTED:
        print(f"  grid: {len(exp.grid)} keys, {points} points")
        width = max(len(k) for k in exp.grid)
        for key, values in exp.grid.items():
            print(f"    {key.ljust(width)}  {len(values)} values: {', '.join(map(str, values))}")
        print(f"  the first {SAMPLES} and the last {SAMPLES} points:")
    for index in sample_indices(points):
        if index is None:
            print(f"  ... {points - 2 * SAMPLES} more")
            continue
        values = point_at(exp, index)
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "(no varying values)"
        print(f"  {trial_name(values)}: {shown}")


def sample_indices(points: int) -> list[int | None]:
    """Every index of a small grid; of a large one the first and last few (None between)."""
    if points <= LISTED:
        return list(range(points))
    return [*range(SAMPLES), None, *range(points - SAMPLES, points)]


def point_at(exp: Experiment, index: int) -> dict:
    """The grid point at `index` of the product order, computed, not enumerated."""
    values = {}
    for key in reversed(list(exp.grid)):
        index, i = divmod(index, len(exp.grid[key]))
        values[key] = exp.grid[key][i]
    return dict(reversed(list(values.items())))


def too_large(exp: Experiment, cpus: float, gpus: float, args, where: str) -> str | None:
    """Why a sweep may not start without --yes-large: more than a day's work for the cluster."""
    seconds, how = estimate(exp, exp.parallel_trials(cpus, gpus, args.max_concurrent), where)
    if seconds <= DAY or args.yes_large:
        return None
    return f"{exp.source}: {how}, over a day; pass --yes-large to start it anyway"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        exp = load_experiment(args.experiment, args.set)
        tracking = read_tracking(args.experiment, args.wandb, args.mlflow)
        check_data(exp.configs([*DATA_KEYS, "model.max_len"]))  # each set of examples once
    except ConfigError as err:
        return fail(err)
    cpus, gpus = local_size()
    if args.dry_run:
        dry_run(exp, exp.parallel_trials(cpus, gpus, args.max_concurrent))
        return 0
    if not cluster.target(args.address) and (
        refusal := too_large(exp, cpus, gpus, args, "on this machine")
    ):
        return fail(refusal)

    # Checked before Ray is imported and before anything is written: the storage, then the
    # cluster's address (a dead one would have Ray retry for minutes), then the folder.
    try:
        root = storage.resolve(args.storage)
    except (storage.StorageError, OSError) as err:
        return fail(f"--storage: {err}")
    folder = root / exp.name
    try:
        reuse = storage.resolve(args.reuse).uri if args.reuse else None
    except (storage.StorageError, OSError) as err:
        return fail(f"--reuse: {err}")
    address = cluster.target(args.address)
    try:
        if address:
            cluster.check_reachable(address)
    except cluster.ClusterError as err:
        return fail(err)

    from grok import sweep  # Ray is imported only once a sweep will run

    try:
        existing = sweep.prepare_folder(folder, exp, args.resume, args.fresh, args.max_concurrent)
        joined = sweep.start_ray(address, args.dashboard_host, exp)
    except (sweep.SweepError, storage.StorageError, OSError) as err:
        return fail(err)
    if address and (refusal := too_large(exp, joined.cpus, joined.gpus, args, "on the cluster")):
        return fail(refusal)  # joined first: the cluster's size decides whether it is large
    if existing:  # --fresh, once the sweep is known to be able to start
        print(sweep.move_aside(root, exp.name))
    print(joined.describe(dashboard_sign_in()))
    print(f"{exp.name}: {exp.num_trials} trials; results in {folder}", flush=True)
    command = shlex.join(["python", "tune_main.py", *(argv or sys.argv[1:])])
    try:
        results = sweep.run(
            exp, root, args.resume, command, args.max_concurrent, tracking=tracking, reuse=reuse
        )
    except KeyboardInterrupt:
        print(
            f"interrupted; continue with: python tune_main.py {args.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    view = storage.local_view(folder)
    summarize(results, exp.score_metric, folder, view)
    if exp.search:
        summarize_search(view)
    if results.errors:
        print(
            f"{len(results.errors)} trial(s) errored; see error.txt in their folders. "
            f"`--resume` retries them from their last checkpoints.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    sys.exit(main())
