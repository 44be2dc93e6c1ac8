"""The HTTP ingress choice (cluster/ingress.py): HAProxy by default, Serve's proxy by setting."""

from __future__ import annotations

import pytest

from cluster import ingress
from facewatch.settings import load_config


def test_haproxy_from_the_package_runs_here() -> None:
    assert ingress.haproxy_binary() is not None


def test_the_default_ingress_is_haproxy_with_round_robin_and_free_side_ports() -> None:
    env = ingress.ingress_env(load_config({}), local_ray=True)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_BALANCE_ALGORITHM"] == "roundrobin"
    side_ports = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                  "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
    assert set(side_ports) <= env.keys()
    assert not {env[name] for name in side_ports} & {"8404", "9101", "8500", "9500"}


def test_a_joined_cluster_keeps_serves_fixed_side_ports() -> None:
    env = ingress.ingress_env(load_config({"FACEWATCH_HTTP_HOST": "0.0.0.0"}), local_ray=False)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert "RAY_SERVE_HAPROXY_STATS_PORT" not in env


def test_the_setting_turns_haproxy_off() -> None:
    assert ingress.ingress_env(load_config({"FACEWATCH_SERVE_HAPROXY": "false"}), local_ray=True) == {}


def test_an_operators_own_haproxy_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BALANCE_ALGORITHM", "leastconn")
    env = ingress.ingress_env(load_config({}), local_ray=True)
    assert env["RAY_SERVE_HAPROXY_BALANCE_ALGORITHM"] == "leastconn"


def test_without_a_runnable_binary_serves_proxy_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingress, "haproxy_binary", lambda: None)
    assert ingress.ingress_env(load_config({}), local_ray=True) == {}


def test_a_joined_cluster_on_a_loopback_host_keeps_serves_proxy() -> None:
    """Replicas on other nodes would listen on their own loopback, out of HAProxy's reach."""
    assert ingress.ingress_env(load_config({"FACEWATCH_HTTP_HOST": "127.0.0.1"}), local_ray=False) == {}
    assert ingress.ingress_env(load_config({"FACEWATCH_HTTP_HOST": "0.0.0.0"}), local_ray=False) != {}
