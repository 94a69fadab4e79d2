"""The sweep command line: run an experiment file as a Ray Tune sweep, every grid point a
trial, or a search of a sampled space (each point once per grid point).

grok-sweep experiments/ablation_wd.yaml [--set k=v ...] [--address ADDR] [--storage DIR_OR_URI]
    [--max-concurrent N] [--resume | --fresh] [--dry-run] [--yes-large] [--wandb PROJECT]
    [--mlflow URI] [--reuse STORE] [--skip-done FOLDER | --skip-reported FOLDER]

The cluster is --address's, else RAY_ADDRESS's (set by `ray job submit`), else a new local one;
results go to --storage, a folder or an object-store URI (grok/storage.py). See docs/cluster.md.
In a clone, `python tune_main.py ...` is the same command.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys

from grok import cluster, plan, storage
from grok.cli import (
    Parser,
    add_experiment,
    end,
    fail,
    full_disk,
    joined,
    pipe_safe,
    resume_command,
)
from grok.data import DATA_KEYS, check_data
from grok.experiment import load_experiment
from grok.results import skipped
from grok.schema import ConfigError
from grok.tracking import dashboard_sign_in, read_tracking

# How the sweep was started: its record and the command that continues it say the same.
SCRIPT = ("python", "tune_main.py")


def parse_args(argv):
    ap = Parser(description="Run an experiment file as a Ray Tune sweep.")
    add_experiment(ap, "experiment YAML file (see experiments/)", " for every trial")
    ap.add_argument(
        "--address",
        help="join a running Ray cluster ('auto', host:port or ray://host:port; default: "
        "RAY_ADDRESS when set, else start a local one)",
    )
    root = "results root: a folder, file:// or s3://bucket/prefix?endpoint_override=..."
    ap.add_argument("--storage", default="results", help=f"{root} (default: results/)")
    ap.add_argument(
        "--reuse",
        metavar="STORE",
        help="a run store (folder or URI): a trial whose resolved config and training code match "
        "a stored run replays it instead of training, and a trained one is stored "
        "(grok/reuse.py)",
    )
    skip = ap.add_mutually_exclusive_group()
    skip.add_argument(
        "--skip-done",
        metavar="FOLDER",
        help="an earlier run of this experiment, its results or archive (report/data/NAME): its "
        "trials that ended are not run again (`grok.archive --merge` joins the two archives)",
    )
    also = "as --skip-done, and its interrupted trials too, kept censored at their last step"
    skip.add_argument("--skip-reported", metavar="FOLDER", help=also)
    ap.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once")
    where = "where a locally started Ray binds its dashboard (default 127.0.0.1)"
    ap.add_argument("--dashboard-host", default="127.0.0.1", help=where)
    again = ap.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="continue the sweep in the existing results folder"
    )
    again.add_argument(
        "--fresh", action="store_true", help="move an existing results folder aside and start again"
    )
    ap.add_argument("--dry-run", action="store_true", help="list the trials and exit")
    large = "start a sweep estimated to take the cluster more than a day"
    ap.add_argument("--yes-large", action="store_true", help=large)
    ap.add_argument("--wandb", metavar="PROJECT", help="also log each trial to this W&B project")
    ap.add_argument(
        "--mlflow", metavar="URI", help="also log each trial to MLflow (e.g. sqlite:///mlflow.db)"
    )
    args = ap.parse_args(argv)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        ap.error("--max-concurrent must be at least 1")
    return args


def local_size() -> tuple[float, float]:
    """The CPUs and GPUs a local Ray cluster would have: this machine's."""
    import torch  # here, not above: a refusal, or a sweep on a cluster, starts without it

    return float(os.cpu_count() or 1), float(torch.cuda.device_count())


def main(argv: list[str] | None = None, invoked: tuple[str, ...] = SCRIPT) -> int:
    """The sweep of argv's experiment file; `invoked` is the command as the user typed it."""
    args = parse_args(argv)
    try:
        exp = load_experiment(args.experiment, args.set)
        tracking = read_tracking(args.experiment, args.wandb, args.mlflow)
        check_data(exp.configs([*DATA_KEYS, "model.max_len"]))  # each set of examples once
        done, where = skipped(exp, args.skip_done, args.skip_reported)
    except ConfigError as err:
        return fail(err)
    if args.dry_run:
        plan.dry_run(exp, exp.parallel_trials(*local_size(), args.max_concurrent))
        if done:
            print(f"  {len(done)} of them {where} and are not run again")
        return 0
    if done and len(done) >= exp.num_trials and not args.resume:
        print(f"{exp.name}: every trial {where}; nothing to run")
        return 0
    if not cluster.target(args.address) and (  # a cluster's size is known once joined
        refusal := plan.too_large(
            exp, *local_size(), args.max_concurrent, args.yes_large, "on this machine"
        )
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
    if address and (
        refusal := plan.too_large(
            exp, joined.cpus, joined.gpus, args.max_concurrent, args.yes_large, "on the cluster"
        )
    ):
        return fail(refusal)  # joined first: the cluster's size decides whether it is large
    if existing:  # --fresh, once the sweep is known to be able to start
        print(sweep.move_aside(root, exp.name))
    print(joined.describe(dashboard_sign_in()))
    trials = f"{exp.num_trials - len(done)} trials" + f" ({len(done)} more {where})" * bool(done)
    print(f"{exp.name}: {trials}; results in {folder}", flush=True)
    words = argv if argv is not None else sys.argv[1:]
    command = shlex.join([*invoked, *words])
    again = f"continue with: {resume_command(list(invoked), words)}"
    try:
        with sweep.Signals() as signals:
            limit = args.max_concurrent
            results = sweep.run(exp, root, args.resume, command, limit, tracking, reuse, done)
    except KeyboardInterrupt:
        print(f"interrupted; {again}", file=sys.stderr)
        return 128 + (signals.received or signal.SIGINT)
    except OSError as err:
        return full_disk(folder, err, again)
    if signals.received:
        print(f"interrupted by {signal.Signals(signals.received).name}; {again}", file=sys.stderr)
        return 128 + signals.received
    from plotting import summary  # pandas: only once there are results to show

    view = storage.local_view(folder)
    summary.summarize(results, exp.score_metric, folder, view)
    if exp.search:
        summary.summarize_search(view)
    if results.errors:
        print(
            f"{len(results.errors)} trial(s) errored; see error.txt in their folders. "
            f"`--resume` retries them from their last checkpoints.",
            file=sys.stderr,
        )
        return 1
    return 0


@pipe_safe
def cli(invoked: tuple[str, ...] = ("grok-sweep",)) -> int:
    """The `grok-sweep` command (`python tune_main.py` in a clone), with Tune's newer console
    output."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    joined_before = joined()
    code = main(invoked=invoked)
    if joined() and not joined_before:  # this command joined a cluster: it ran a sweep
        end(code)
    return code
