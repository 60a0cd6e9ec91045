"""What the collector's commands share: the config option, the store, local times."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.config import CollectorConfig, load_collector_config
from collector.state.store import StateStore

#: Vietnam keeps +07:00 all year (no DST): dates on the command line are local.
VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")

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
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date like 2025-10-01 or 2025-10-01T08:30"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=VIETNAM)
    return parsed.timestamp()


def _local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, VIETNAM).strftime("%Y-%m-%d %H:%M:%S")
