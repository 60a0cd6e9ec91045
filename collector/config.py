"""The collector's TOML config, decoded strictly like the agent's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.configtypes import BrokerSection, ConfigError, Duration, Size, convert_strict, read_toml
from agent.wire import Ident


class CollectorSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    provinces: list[Ident] = []
    """Provinces this collector owns (topic filter); empty: every province."""
    share_group: str = ""
    """Share data topics with the other collectors of this group ($share/<group>/...)."""
    client_id: str = "commune-collector"
    """Also the name of the broker session that holds messages while the collector is down."""
    log_level: str = "info"
    offline_after: Annotated[float, msgspec.Meta(ge=1)] = 3.0
    """An agent silent for this many of its intervals is marked offline ("silent")."""
    default_interval: Duration = Duration(60)
    """For agents whose birth message does not say their interval."""


class MqttSection(BrokerSection, frozen=True, forbid_unknown_fields=True, kw_only=True):
    receive_window: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2000
    """Unacknowledged messages the broker may send at once (MQTT v5 Receive Maximum)."""
    session_expiry: Duration = Duration(7 * 86400)
    """How long the broker keeps the collector's messages while it is down."""


class StoreSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    path: str = "/var/lib/commune-collector/state.sqlite"
    retention: Duration = Duration(400 * 86400)
    """Outage history older than this is forgotten; monthly reports need 13 months."""


class SinkSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An InfluxDB v2 write API (InfluxDB 2.x/3.x/1.8+, VictoriaMetrics)."""

    url: str
    org: str = ""
    bucket: str = "commune"
    token_file: str = ""
    """A file holding the API token (never in this config)."""
    batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    """Envelopes per write."""
    max_spool: Size = Size(1024**3)
    """Points waiting for the server are kept up to this size; beyond, the oldest go (counted)."""
    timeout: Duration = Duration(10)


class CollectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    collector: CollectorSection = CollectorSection()
    mqtt: MqttSection = MqttSection()
    store: StoreSection = StoreSection()
    sink: SinkSection | None = None
    """Optional: without it the collector works from its state store alone."""


def parse_collector_config(data: dict[str, Any], source: str = "<config>") -> CollectorConfig:
    config = convert_strict(data, CollectorConfig, source)
    if problem := config.mqtt.problem():
        raise ConfigError(f"{source}: mqtt.{problem[0]}: {problem[1]}")
    if config.collector.share_group and "/" in config.collector.share_group:
        raise ConfigError(f"{source}: collector.share_group: no '/' allowed")
    if config.sink is not None:
        if not config.sink.url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: sink.url: expected http(s)://host:port")
        if config.sink.token_file and not os.access(config.sink.token_file, os.R_OK):
            raise ConfigError(f"{source}: sink.token_file: cannot read {config.sink.token_file}")
    return config


def load_collector_config(path: str | Path | None) -> CollectorConfig:
    """The file's config, or the embedded defaults when ``path`` is None."""
    if path is None:
        return CollectorConfig()
    return parse_collector_config(read_toml(path), str(path))
