"""Shared fixtures: the repository root, tiny configs, one Ray cluster for the session, and the
Hypothesis profiles (`ci`, chosen when CI=true: a fixed seed and a bounded number of examples)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["cluster_fixtures"]  # the S3 server and the multi-node cluster
# Token auth would write ~/.ray/auth_token; local test clusters need none.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray starts its workers (Tune's trials) at nice 15, below everything else on the machine: beside
# any busy process at the default priority a trial gets a few percent of a core, and a sweep the
# test waits on crawls. The clusters the tests start run them at the suite's own priority, so a
# loaded machine slows the trials as much as the rest of the suite and no more.
os.environ["RAY_worker_niceness"] = "0"

# Property tests: the same examples on every CI run (derandomize), few enough that together they
# take well under a minute on 2 cores; no deadline (a loaded machine is not a failure). Locally
# the examples are random, so each run explores new ones; HYPOTHESIS_PROFILE=deep hunts longer.
EXAMPLES = 25
settings.register_profile("ci", derandomize=True, max_examples=EXAMPLES, deadline=None)
settings.register_profile("dev", max_examples=EXAMPLES, deadline=None)
settings.register_profile("deep", max_examples=20 * EXAMPLES, deadline=None)
default_profile = "ci" if os.environ.get("CI") == "true" else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default_profile))

# A model and task small enough that a few hundred steps take a second or two.
TINY = {
    "task": {"op": "+", "p": 11, "train_fraction": 0.6, "val_fraction": 0.2},
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "d_ff": 64},
    "optim": {"lr": 3e-3},
    "train": {"steps": 60, "checkpoint_every": 20, "batch_size": 16, "threads": 1},
    "eval": {"min_every": 10, "max_every": 20},
}


# Tune's bookkeeping and timings: everything else in a report is the run's own numbers.
VOLATILE = {
    "steps_per_s",
    "timestamp",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "training_iteration",
    "checkpoint_dir_name",
    "trial_id",
    "hostname",
    "node_ip",
    "node_id",
    "done",
    "config",
}


def write_experiment(
    path: Path, name: str, config: dict | None = None, grid: dict | None = None, **extra
) -> Path:
    """Write an experiment file; `config` defaults to TINY."""
    data = {"name": name, "config": TINY if config is None else config, "grid": grid or {}, **extra}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray cluster shared by every test that needs one; its address for --address."""
    import shutil
    import tempfile

    import ray

    if ray.is_initialized():  # an in-process sweep of an earlier test started one: not ours
        ray.shutdown()
    # Its own folder, whatever RAY_TMPDIR the three-node cluster of this worker has set.
    temp = tempfile.mkdtemp(prefix="ra", dir="/tmp")  # short: Ray's socket paths must be
    ctx = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=f"{temp}/ray",
    )
    yield ctx.address_info["address"]
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 1800):
    """Run a project command line (`python ARGS...`, with the interpreter running the tests)
    and return the CompletedProcess. The timeout only stops a hang: a busy machine is slow."""
    import subprocess

    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc, *names: str) -> str:
    """A user's mistake: exit status 2, one `error:` line on stderr naming `names`, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


class Payload:
    """Unpickling this creates the file `marker`: what a malicious model.pt could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def rewrite_manifest(checkpoint: Path) -> None:
    """Make a checkpoint's manifest match its files as they are now (as a forger would)."""
    import hashlib
    import json

    path = checkpoint / "manifest.json"
    manifest = json.loads(path.read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((checkpoint / name).read_bytes()).hexdigest()
    path.write_text(json.dumps(manifest))


# The quick tier (`python -m pytest -m "not slow"`): a test is slow when it starts Ray, an S3
# server or a cluster (through these fixtures), is marked `@pytest.mark.slow` itself (a real
# sweep run as a command, a long training run, the report rebuilt from its archive), or is
# listed in tests/slow.txt (measured at 1.5 s or more).
SLOW_FIXTURES = {"ray_address", "s3", "multinode", "spread_sweep"}
# Tests that start a Ray head or kill real sweeps of their own.
SLOW_TESTS = {
    "test_a_head_from_ray_start_runs_a_submitted_job",
    "test_a_node_lost_mid_trial_is_retried_elsewhere_to_the_same_metrics",
    "test_a_sweep_killed_while_pruning_then_its_resume_killed_mid_checkpoint_ends_the_same",
}


def measured_slow() -> set[str]:
    """tests/slow.txt's node ids, relative to tests/."""
    lines = (Path(__file__).parent / "slow.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


MEASURED_SLOW = measured_slow()


# Session fixtures that are costly to start twice: their tests share one pytest-xdist worker.
# The S3-only tests form a group of their own, so that they run beside the cluster's.
CLUSTER_FIXTURES = {"multinode", "spread_sweep"}
# Module fixtures that run a sweep or train a model: each worker that runs one of their tests
# would make them again, so their tests share a worker too (a group per fixture).
SHARED_FIXTURES = {"tracked_sweep", "tiny_sweep", "memorize_run", "mask3_run", "installed"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers
def pytest_collection_modifyitems(config, items):
    seen: set[str] = set()
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        listed = item.nodeid.split("/", 1)[-1] in MEASURED_SLOW
        seen.add(item.nodeid.split("/", 1)[-1])
        if SLOW_FIXTURES & fixtures or item.originalname in SLOW_TESTS or listed:
            item.add_marker(pytest.mark.slow)
        if CLUSTER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.xdist_group("cluster"))
        elif "s3" in fixtures:  # an S3 server alone is cheap to start on a second worker
            item.add_marker(pytest.mark.xdist_group("s3"))
        elif SHARED_FIXTURES & fixtures:
            item.add_marker(pytest.mark.xdist_group(min(SHARED_FIXTURES & fixtures)))

    files = {p.name for p in Path(__file__).parent.glob("test_*.py")}
    if files <= {name.split("::")[0] for name in seen}:  # the whole suite was collected
        stale = sorted(MEASURED_SLOW - seen)
        if stale:
            raise pytest.UsageError(f"tests/slow.txt names no test: {stale[0]} ({len(stale)})")
