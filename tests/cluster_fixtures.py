"""Session fixtures for scale-out tests: an S3-compatible server on 127.0.0.1, a Ray cluster of
a head and two worker nodes on this machine, and one sweep over it that other tests compare to.

Loaded by conftest.py (`pytest_plugins`). The cluster keeps its files in its own temporary
folder (RAY_TMPDIR), so that `--address auto` elsewhere on the machine never finds it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, TINY, run_cli, write_experiment

SLOT = "slot"  # the custom resource each worker node has one of: one trial per node
# Long enough that a trial is still running several seconds after its third checkpoint, so a
# node or a driver can be killed mid-trial; 10 checkpoints and 20 reports, each of which is a
# copy into storage (the object store's uploads are what makes a trial there slow).
LONG = {
    **TINY,
    "train": {**TINY["train"], "steps": 1000, "checkpoint_every": 100},
    "eval": {"min_every": 50, "max_every": 50},
}
PINNED = {"cpu": 1, "gpu": 0, SLOT: 1}
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "bucket"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3:
    """A moto S3 server; `uri(prefix)` is the URI pyarrow (and Ray) reach it by."""

    endpoint: str

    def uri(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}?endpoint_override={self.endpoint}&scheme=http"

    def fs(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http")


@pytest.fixture(scope="session")
def s3():
    """An S3 server with one bucket; dummy credentials in the environment, which the drivers
    and the cluster's nodes this session starts inherit."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in AWS}
    os.environ.update(AWS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
    fs.create_dir(BUCKET)
    yield S3(endpoint)
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class MultiNode:
    """A head with no CPUs and two worker nodes of 1 CPU and 1 `slot` each."""

    cluster: object  # ray.cluster_utils.Cluster
    address: str
    workers: list = field(default_factory=list)  # ray._private.node.Node

    def worker_ids(self) -> set[str]:
        return {node.node_id for node in self.workers}

    def add_worker(self):
        node = self.cluster.add_node(num_cpus=1, resources={SLOT: 1})
        self.workers.append(node)
        return node

    def running(self, experiment: str, trial: str) -> list[str]:
        """The worker nodes running `trial` of `experiment`: those whose raylet has a child
        process working in the trial's folder (Tune moves each trial there), read from /proc."""
        from ray._private import ray_constants

        here = f"/{experiment}/working_dirs/{trial}"
        parents = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(proc / "cwd").endswith(here):
                    parents.add(int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]))
            except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
                continue
        return [
            node.node_id
            for node in self.workers
            if node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid in parents
        ]

    def remove_worker(self, node_id: str) -> None:
        node = next(n for n in self.workers if n.node_id == node_id)
        self.cluster.remove_node(node)
        self.workers.remove(node)


@pytest.fixture(scope="session")
def multinode(s3):
    from ray.cluster_utils import Cluster

    saved = os.environ.get("RAY_TMPDIR")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must be
    os.environ["RAY_TMPDIR"] = temp
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "temp_dir": f"{temp}/ray"},
    )
    nodes = MultiNode(cluster, cluster.address)
    for _ in range(2):
        nodes.add_worker()
    yield nodes
    cluster.shutdown()
    if saved is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = saved
    shutil.rmtree(temp, ignore_errors=True)


@dataclass
class Sweep:
    proc: object  # subprocess.CompletedProcess of tune_main.py
    storage: Path
    folder: Path


@pytest.fixture(scope="session")
def spread_sweep(multinode, tmp_path_factory):
    """Two seeds of LONG, pinned one per worker node, results on the local disk (which every
    node of this one-machine cluster shares). The failure tests compare their trials to it."""
    tmp = tmp_path_factory.mktemp("spread")
    path = write_experiment(tmp / "spread.yaml", "spread", LONG, {"seed": [0, 1]}, resources=PINNED)
    storage = tmp / "results"
    proc = run_cli(
        "tune_main.py", str(path), "--address", multinode.address, "--storage", str(storage)
    )
    return Sweep(proc, storage, storage / "spread")


def run_without_ray(*argv: str, env: dict | None = None):
    """Run a reader's command line (`infer.py ...` or `-m plotting.report ...`) and fail if it
    imported Ray: results are readable with no cluster at all."""
    if argv[0] == "-m":
        call = f"runpy.run_module({argv[1]!r}, run_name='__main__')"
        args = list(argv[1:])
    else:
        call = f"runpy.run_path({argv[0]!r}, run_name='__main__')"
        args = list(argv)
    code = (
        "import runpy, sys\n"
        f"sys.argv = {args!r}\n"
        "try:\n"
        f"    {call}\n"
        "    status = 0\n"
        "except SystemExit as stop:\n"
        "    status = stop.code or 0\n"
        "assert 'ray' not in sys.modules, 'the reader imported Ray'\n"
        "sys.exit(status)\n"
    )
    return run_cli("-c", code, cwd=ROOT, env=env)
