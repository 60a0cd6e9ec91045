"""What the collector's commands share: the config option, the store, the audit of what
they change outside it, local times."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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


T = TypeVar("T")


def audited_outside(
    config: CollectorConfig,
    action: str,
    act: Callable[[], T],
    after: Callable[[T], Any],
    *,
    before: Any = None,
    object_of: Callable[[T], str] = lambda _: "",
    **where: str,
) -> T:
    """``act`` — a change to files outside the store (the broker's password file, the
    config signing key) — recorded in the operators' audit as the command line user's.
    Its row is written in a transaction held while it acts, so a change that fails
    leaves no row. No store at the config's path (a host where the collector never ran,
    or ``-c`` not given there): the change is made and the operator told it is not
    recorded."""
    from collector.state import audit
    from collector.state.migrations import StoreTooNew

    path = Path(config.store.path)
    if not path.exists():
        done = act()
        click.echo(
            f"not in the operators' audit: no state store at {path} (-c names the "
            "collector's config; COMMUNE_COLLECTOR_CONFIG too)",
            err=True,
        )
        return done
    try:
        store = StateStore(path)
    except StoreTooNew as exc:
        raise click.ClickException(str(exc)) from None
    with store, store.transaction() as db:
        done = act()
        audit.record(
            db, audit.cli_actor(), action, time.time(), object=object_of(done),
            before=before, after=after(done), **where,
        )  # fmt: skip
    return done


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
