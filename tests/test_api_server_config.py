"""The API server's limits in [api]: the annotated sample's values are the defaults, mistakes
are named by key, and the server takes what the config says."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path

import pytest

from agent.configtypes import ConfigError
from collector.config import ApiSection, load_collector_config, parse_collector_config
from collector.web.server import RESERVED_DESCRIPTORS, ApiServer, ServerLimits, connection_budget

SAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "collector" / "collector.example.toml"


def test_the_samples_api_limits_are_the_defaults_and_what_the_server_takes() -> None:
    api = tomllib.loads(SAMPLE.read_text())["api"]
    config = parse_collector_config({"api": api}, str(SAMPLE))
    assert ServerLimits.from_settings(config.api) == ServerLimits()
    assert ServerLimits.from_settings(config.api) == ServerLimits.from_settings(ApiSection())
    for key in (
        "header_timeout", "body_timeout", "keep_alive_timeout", "max_requests_per_connection",
        "tls_handshake_timeout", "max_connections", "max_connections_per_address",
    ):  # fmt: skip
        assert key in api, f"the sample does not show [api] {key}"


def test_the_server_takes_the_configs_limits() -> None:
    settings = ApiSection(
        header_timeout=3, body_timeout=4, keep_alive_timeout=2, max_requests_per_connection=7,
        tls_handshake_timeout=6, max_connections=200, max_connections_per_address=9,
        trusted_proxies=["10.0.0.0/24"],
    )  # type: ignore[arg-type]  # fmt: skip
    limits = ServerLimits.from_settings(settings)
    assert limits == ServerLimits(
        3.0, 4.0, 2.0, 7, 6.0, 200, 9, (ipaddress.ip_network("10.0.0.0/24"),)
    )
    server = ApiServer(limits, "127.0.0.1", 0)
    try:
        connections = server.connections
        assert (connections.per_address, connections.total) == (9, 200)
        assert connections.handshake_timeout_s == 6.0
        assert connections.exempt == limits.trusted_proxies
    finally:
        server.stop()


def test_the_cap_in_all_stays_under_the_open_file_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_budget(10) == 10
    assert connection_budget(10**6) == soft - RESERVED_DESCRIPTORS


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("header_timeout = 0.5", "api.header_timeout: expected between 1 s and 300 s, got 0.5 s"),
        ('body_timeout = "1h"', "api.body_timeout: expected between 1 s and 600 s"),
        ('keep_alive_timeout = "soon"', "api.keep_alive_timeout"),
        ('tls_handshake_timeout = "10m"', "api.tls_handshake_timeout"),
        ("max_connections = 5", "api.max_connections"),
        ("max_requests_per_connection = 0", "api.max_requests_per_connection"),
        (
            "max_connections = 100\nmax_connections_per_address = 101",
            "api.max_connections_per_address: 101 is more than max_connections (100)",
        ),
    ],
)
def test_api_limit_mistakes_are_named(toml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(f'[api]\nlisten = "127.0.0.1:8080"\n{toml}\n')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_collector_config(path)
