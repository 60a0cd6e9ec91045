"""What the collector's commands share: the config option, the store, local times."""

from __future__ import annotations

from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.common.localtime import local, parse_time
from collector.config import CollectorConfig, load_collector_config
from collector.state.store import StateStore

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="COMMUNE_COLLECTOR_CONFIG",
    help="Collector config (TOML); without it the embedded defaults are used. "
    "Env: COMMUNE_COLLECTOR_CONFIG.",
)


def _load(path: Path | None) -> CollectorConfig:
    try:
        return load_collector_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _store(config: CollectorConfig) -> StateStore:
    """The existing store, for queries; closed when the command ends."""
    path = Path(config.store.path)
    if not path.exists():
        raise click.ClickException(f"no state store at {path}: has the collector run yet?")
    from collector.state.migrations import StoreTooNew

    try:
        store = StateStore(path)
    except StoreTooNew as exc:
        raise click.ClickException(str(exc)) from None
    click.get_current_context().call_on_close(store.close)
    return store


def _time(value: str) -> float:
    """'2025-10-01', '2025-10-01 08:30' or ISO 8601; local (+07:00) unless an offset is given."""
    try:
        return parse_time(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date like 2025-10-01 or 2025-10-01T08:30"
        ) from None


def _local(ts: float) -> str:
    return local(ts).strftime("%Y-%m-%d %H:%M:%S")
