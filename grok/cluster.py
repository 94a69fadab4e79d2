"""Joining the Ray cluster a sweep runs on, or starting a local one, and saying what it is.

The cluster is the one `--address` names, else the one RAY_ADDRESS names (what `ray job submit`
and `ray attach` set for a driver), else a new local one. An address that does not answer is a
user's mistake found within seconds: a plain `ray.init` would keep retrying for minutes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 10.0  # for the address's port to accept a connection (a head just started)
NOT_A_HOST = ("auto", "local")  # addresses Ray resolves itself


class ClusterError(ValueError):
    """An address that cannot be joined."""


@dataclass
class Joined:
    """What a sweep runs on."""

    address: str  # the GCS address
    started: bool  # a new local cluster, not one joined
    nodes: int
    cpus: float
    gpus: float
    resources: dict[str, float]  # every resource of the cluster, summed over its nodes
    dashboard: str | None

    def describe(self, sign_in: str | None = None) -> str:
        """One line for people; `sign_in` says how to sign in to the dashboard, when it asks."""
        how = "started a local Ray cluster" if self.started else f"joined {self.address}"
        nodes = f"{self.nodes} node{'s' * (self.nodes != 1)}"
        text = f"{how}: {nodes}, {self.cpus:g} CPUs, {self.gpus:g} GPUs"
        if not self.dashboard:
            return text
        return text + f", dashboard {self.dashboard}" + (f" ({sign_in})" if sign_in else "")


def target(address: str | None) -> str | None:
    """The address to join: --address, else RAY_ADDRESS; None means start a local cluster."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterError unless `address` (host:port or ray://host:port) accepts a connection
    within `timeout` seconds. 'auto' is left to Ray."""
    if address in NOT_A_HOST:
        return
    if address.startswith(("http://", "https://")):
        raise ClusterError(
            f"Ray address {address} is a dashboard (Jobs API) address, for `ray job submit`; "
            "a sweep joins host:port (the head's GCS port, 6379 by default) or ray://host:10001"
        )
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ClusterError(
            f"Ray address {address!r}: allowed: host:port, ray://host:port, or 'auto'"
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(
                (host, port), timeout=max(0.1, deadline - time.monotonic())
            ):
                return
        except OSError as err:
            if time.monotonic() + 0.5 >= deadline:
                raise ClusterError(
                    f"Ray address {address}: nothing answers there ({err.strerror or err}); "
                    "start the cluster (`ray start --head`) or fix --address / RAY_ADDRESS"
                ) from None
            time.sleep(0.5)  # refused: a head may still be starting


def join(address: str | None, dashboard_host: str = "127.0.0.1") -> Joined:
    """Connect this process to the cluster (see `target`); raises ClusterError."""
    import ray  # only a sweep that runs needs Ray

    # Trials print nothing of their own (their metrics reach Tune's table), so worker output
    # is not forwarded: it would only repeat Ray's checkpoint notices. Ray's notices about
    # connecting are left out too: `Joined.describe` says what was joined.
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        ctx = ray.init(
            address="local",  # a new cluster, never one a `ray start` left running
            include_dashboard=True,
            dashboard_host=dashboard_host,
            **quiet,
        )
    else:
        check_reachable(address)
        try:
            ctx = ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"Ray address {address}: {str(err).splitlines()[0]}") from None
    logging.getLogger("ray").setLevel(logging.INFO)  # Tune's own notices, as before
    total = _resources(ray)
    url = ctx.dashboard_url
    return Joined(
        address=ctx.address_info.get("gcs_address") or ctx.address_info["address"],
        started=address is None,
        nodes=sum(1 for n in ray.nodes() if n["Alive"]),
        cpus=total.get("CPU", 0.0),
        gpus=total.get("GPU", 0.0),
        resources=total,
        dashboard=(url if "://" in url else f"http://{url}") if url else None,
    )


def _resources(ray, wait_s: float = 5.0) -> dict[str, float]:
    """The cluster's resources; a node that has just registered may take a moment to show."""
    deadline = time.monotonic() + wait_s
    total = ray.cluster_resources()
    while not total and time.monotonic() < deadline:
        time.sleep(0.2)
        total = ray.cluster_resources()
    return dict(total)


def declared(joined: Joined) -> list[str]:
    """The resources a trial can ask for by name: CPU, GPU and the nodes' custom ones."""
    internal = ("memory", "object_store_memory")
    return sorted(k for k in joined.resources if not k.startswith("node:") and k not in internal)


def missing_resources(wanted: dict[str, float], joined: Joined) -> list[str]:
    """The custom resources a trial asks for that no node of the cluster has."""
    custom = {k: v for k, v in wanted.items() if k not in ("cpu", "gpu") and v > 0}
    return [k for k in custom if joined.resources.get(k, 0) < custom[k]]
