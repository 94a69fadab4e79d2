"""Ray Tune adapter: the trainable, and an experiment file turned into a Tuner.

With grok/sweep.py (which starts Ray), grok/cluster.py (which joins it, importing Ray inside
`join`), grok/callbacks.py (the sweep's own Tune callbacks) and grok/loggers.py and
grok/trackers.py (Tune's logger callbacks, imported by build_tuner alone), the only module of the
library that imports Ray.
Results go to any filesystem pyarrow reaches (grok/storage.py); each report names the node that
made it (`node_id`). A trial's Tune config holds just its varying values (dotted keys, as in the
experiment's grid and search space); the experiment's base config travels with the trainable
(`tune.with_parameters`) so each trial rebuilds its full `Config` and checks it. A search samples
its space with Tune's random search or Optuna's TPE, repeating each point over the grid (the
seeds).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator, Repeater
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.repeater import TRIAL_INDEX
from ray.tune.stopper import Stopper

from grok.callbacks import (
    BackUpState,
    CSVLogger,
    JsonLogger,
    MarkStopped,
    RepairResumePoint,
    TrialErrors,
)
from grok.config import Config
from grok.experiment import Experiment, trial_name
from grok.metrics import crossing_key
from grok.overrides import apply_overrides
from grok.resume import (
    HISTORY,
)
from grok.reuse import REUSED_FROM, RunStore, StoredRun, code_fingerprint, run_key
from grok.search import Domain
from grok.storage import Location, at, resolve
from grok.tracking import Tracking

if TYPE_CHECKING:
    import torch

    from grok.train import EvalEvent

NODE = "node_id"  # reported with every result: the Ray node the trial ran on


def trial_threads(cpus: float) -> int:
    """Torch threads for a trial with `cpus` CPUs (Ray sets OMP_NUM_THREADS, not torch)."""
    return max(1, int(cpus))


def trial_device(wanted: str, gpus: float) -> torch.device:
    """'auto' uses the GPU when the trial was given one; 'cuda' insists on it."""
    import torch

    from grok.train import resolve_device

    if wanted == "auto":
        wanted = "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"
    return resolve_device(wanted)


def train_trial(config: dict[str, Any], base: dict[str, Any], reuse: str | None = None) -> None:
    """The trainable: one grid point, reporting at each evaluation, resuming from checkpoints.
    With `reuse` (a run store, grok/reuse.py), a run already stored is replayed, not trained,
    and a run trained here is stored once it ends. Torch is imported here, in the trial's
    worker: the sweep's driver never trains, and its start does not wait for torch."""
    import torch

    from grok.train import Trainer

    cfg = apply_overrides(Config.from_dict(base, "experiment"), config, "trial")
    # Which node ran each report (None when called outside Ray, where asking would start it).
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    store = RunStore(resolve(reuse)) if reuse else None
    key = run_key(cfg.to_dict()) if store else ""
    checkpoint = tune.get_checkpoint()
    if store and not checkpoint:
        stored = store.find(key)
        if stored:
            replay(stored, store, node)
            return
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(cfg.train.threads or trial_threads(resources.get("CPU", 1)))
    trainer = Trainer(cfg, device=trial_device(cfg.train.device, resources.get("GPU", 0)))
    history: list[dict[str, Any]] = []  # every report so far, kept in each checkpoint
    if checkpoint:
        with checkpoint.as_directory() as d:
            trainer.load_checkpoint(d)
            if (Path(d) / HISTORY).is_file():
                history = json.loads((Path(d) / HISTORY).read_text())

    def report(event: EvalEvent) -> None:
        metrics = {**event.metrics, NODE: node}
        history.append(metrics)  # what result.json holds, should a resume rebuild it from here
        if not event.checkpoint_due:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            folder = event.trainer.save_checkpoint(Path(tmp) / "checkpoint")
            if store and event.final and history[0]["step"] == 0:  # the whole run, not a part
                context = tune.get_context()
                origin = {
                    "experiment": context.get_experiment_name(),
                    "trial": context.get_trial_name(),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "config": cfg.to_dict(),
                    "code": code_fingerprint(),
                }
                store.put(key, history, folder, origin)  # the store keeps reports apart
            # The reports so far: a resumed trial carries them on, and its result.json is made
            # whole from them where a kill left it behind (grok/resume.py).
            (folder / HISTORY).write_text(json.dumps(history))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trainer.fit(report)


def replay(stored: StoredRun, store: RunStore, node: str | None) -> None:
    """Report a stored run's reports as this trial's, the last with its checkpoint."""
    *reports, last = stored.reports
    for metrics in reports:
        tune.report({**metrics, NODE: node, REUSED_FROM: stored.source})
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.fetch_checkpoint(stored, Path(tmp) / "checkpoint")
        final = {**last, NODE: node, REUSED_FROM: stored.source}
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(folder))


def make_trainable(exp: Experiment, reuse: str | None = None):
    trainable = tune.with_parameters(train_trial, base=exp.base.to_dict(), reuse=reuse)
    return tune.with_resources(trainable, exp.resources.as_dict())  # cpu, gpu and custom ones


def _dirname_creator(exp: Experiment):
    """Grid trials are named by their values (`wd=0.3,seed=1`); sampled ones by the order the
    search made them in, then their grid values (`t007,seed=1`)."""
    keys = list(exp.grid)

    def name(trial) -> str:
        values = trial_name({k: trial.config[k] for k in keys}, default="")
        if exp.search is None:
            return values or "run"
        index = int(trial.experiment_tag.split("_", 1)[0])  # Tune's count of trials made
        return ",".join(filter(None, [f"t{index:03d}", values]))

    return name


def tune_domain(domain: Domain):
    """A sampled setting as a Tune domain (randint's hi is included, as in experiment files)."""
    lo, hi = domain.args[0], domain.args[-1]
    if domain.kind == "loguniform":
        return tune.loguniform(lo, hi)
    if domain.kind == "uniform":
        return tune.uniform(lo, hi)
    if domain.kind == "randint":
        return tune.randint(lo, hi + 1)  # Tune's excludes hi
    return tune.choice(domain.args)


class GridRepeater(Repeater):
    """Runs each point the searcher suggests once per grid point (the seeds) and tells the
    searcher their mean: Tune's Repeater, with the grid's values in place of its repeat index."""

    def __init__(self, searcher, points: list[dict[str, Any]]):
        super().__init__(searcher, repeat=len(points), set_index=True)
        self.points = points

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config.update(self.points[config.pop(TRIAL_INDEX)])
        return config


class TrainAccStopper(Stopper):
    """Stops a trial whose train accuracy has not reached `acc` by `step`.

    Grokking comes after memorization, so such a trial is not about to grok; a flat test
    accuracy, by contrast, says nothing (it is flat until it is not).
    """

    def __init__(self, step: int, acc: float):
        self.step = step
        self.crossing = crossing_key("train/acc", acc)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get("step", 0) >= self.step and result.get(self.crossing) is None

    def stop_all(self) -> bool:
        return False


def _search_config(exp: Experiment, max_concurrent: int | None) -> tuple[dict, dict]:
    """The param space and the TuneConfig arguments of a search."""
    s = exp.search
    space = {k: tune_domain(d) for k, d in s.space.items()}
    points = list(exp.points())
    args: dict[str, Any] = {"metric": s.metric, "mode": s.mode}
    if s.algorithm == "random":
        # constant_grid_search: each sample is drawn once and run at every grid point.
        args["search_alg"] = BasicVariantGenerator(
            max_concurrent=max_concurrent or 0, constant_grid_search=True, random_state=s.seed
        )
        args["num_samples"] = s.num_samples  # the grid multiplies it
        space.update({k: tune.grid_search(v) for k, v in exp.grid.items()})
    else:
        args["search_alg"] = GridRepeater(OptunaSearch(seed=s.seed), points)
        args["num_samples"] = s.num_samples * len(points)  # Repeater counts every trial
        args["max_concurrent_trials"] = max_concurrent
    if s.scheduler:
        args["scheduler"] = ASHAScheduler(
            time_attr="step",
            max_t=exp.base.train.steps,
            grace_period=s.scheduler.grace_period,
            reduction_factor=s.scheduler.reduction_factor,
        )
    return space, args


def build_tuner(
    exp: Experiment,
    storage: Path | Location,
    max_concurrent: int | None = None,
    verbose: int = 1,
    tracking: Tracking | None = None,
    reuse: str | None = None,
    skip: list[str] | tuple[str, ...] = (),
) -> tune.Tuner:
    """The sweep's Tuner; results go to `<storage>/<name>`, on any filesystem pyarrow reaches.
    `skip`: the names of grid trials to leave out (kept from an earlier run)."""
    from grok.loggers import StepTBXLoggerCallback  # the driver's alone: trials log nothing

    storage = at(storage)
    tracking = tracking or Tracking()
    trackers = []
    if tracking.wandb or tracking.mlflow:  # wandb and mlflow take seconds to import
        from grok.trackers import tracker_callbacks

        trackers = tracker_callbacks(exp.name, exp.base.to_dict(), tracking)
    max_concurrent = max_concurrent or exp.tune.max_concurrent
    stop = exp.search.stop_if_train_below if exp.search else None
    run_config = tune.RunConfig(
        name=exp.name,
        storage_path=storage.path,
        storage_filesystem=storage.fs,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=exp.tune.num_to_keep,
            checkpoint_score_attribute=exp.score_metric,
            checkpoint_score_order="max",
        ),
        failure_config=tune.FailureConfig(max_failures=exp.tune.max_failures),
        stop=TrainAccStopper(stop.step, stop.acc) if stop else None,
        # MarkStopped first: the loggers write the status it sets.
        callbacks=[
            MarkStopped(),
            RepairResumePoint(),
            BackUpState(),
            TrialErrors(),
            StepTBXLoggerCallback(),
            *trackers,
            CSVLogger(),
            JsonLogger(),
        ],
        verbose=verbose,
    )
    if exp.search:
        param_space, args = _search_config(exp, max_concurrent)
    else:
        param_space, args = _grid_config(exp, max_concurrent, skip)
    tune_config = tune.TuneConfig(
        trial_dirname_creator=_dirname_creator(exp),
        trial_name_creator=_dirname_creator(exp),
        # A trial's worker process goes on to the next trial instead of a new process importing
        # torch again: a short trial starts in a fraction of the time. Numbers do not change:
        # each trial seeds itself and sets its threads, and nothing else in torch is set.
        reuse_actors=True,
        **args,
    )
    return tune.Tuner(
        make_trainable(exp, reuse),
        param_space=param_space,
        tune_config=tune_config,
        run_config=run_config,
    )


def _grid_config(
    exp: Experiment, max_concurrent: int | None, skip: list[str] | tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """Every grid point (less those named in `skip`) as one of Tune's preset points, so trials
    run in the order the dry run lists them (the last grid key varying fastest). Tune's own
    grid_search would vary the alphabetically first key fastest, whatever order the file gives."""
    points = [p for p in exp.points() if trial_name(p, default="run") not in skip]
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=max_concurrent or 0)
    # Placeholders Tune needs to place each preset's keys; every trial takes a listed point.
    space = {k: tune.choice(v) for k, v in exp.grid.items()}
    return space, {"num_samples": len(points), "search_alg": generator}


def restore_tuner(exp: Experiment, folder: Path | Location, reuse: str | None = None) -> tune.Tuner:
    """Continue a sweep: unfinished and errored trials resume from their last checkpoints.
    The folder's Tune state must be whole (`grok.resume.repair_state` makes it so)."""
    folder = at(folder)
    return tune.Tuner.restore(
        folder.path,
        storage_filesystem=folder.fs,
        trainable=make_trainable(exp, reuse),
        resume_unfinished=True,
        resume_errored=True,
    )
