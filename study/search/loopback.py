"""A local Ray instance that listens on 127.0.0.1 only.

ray.init(address="local", _node_ip_address="127.0.0.1") is not enough in Ray 2.60: it turns
127.0.0.1 into this machine's outward address (ray._private.services.resolve_ip_for_localhost),
and the instance's GCS, raylet and workers then listen on every interface (measured: `::`, the
runtime env agent on the outward address). Ray keeps a local instance on the loopback address
only when "Ray clusters" are off: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which each Ray process
reads once, at import, into ray_constants.ENABLE_RAY_CLUSTER. tests/processes.py's
listening_ips checks the addresses (tests/tools/test_runner_failures.py, tests/search/).
"""

from __future__ import annotations

import os

import ray
from ray._private import ray_constants

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def loopback_only(address: str | None = None) -> None:
    """Call before ray.init: the local instance it starts (address None) listens on 127.0.0.1;
    joining one at a 127.0.0.1 address (the runner's, as its stages' RAY_ADDRESS), this process
    connects there rather than to the outward address Ray would make of it. Another address
    (a cluster's) changes nothing: there the driver's own address must stay the outward one.
    The variable for the processes ray.init starts; the constant for this one, which imported
    Ray before it knew which case it was."""
    if address is not None and address.split("://")[-1].rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
        return
    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # where Ray 2.60 keeps the switch
        raise RuntimeError(
            f"Ray {ray.__version__} has no ray_constants.ENABLE_RAY_CLUSTER: see how it now"
            " keeps a local instance on 127.0.0.1 (study/search/loopback.py)"
        )
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
