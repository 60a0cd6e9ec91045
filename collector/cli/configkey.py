"""commune-collector config-key show|rotate|finish: the key that signs the agents' configs."""

from __future__ import annotations

from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.cli.common import _load, audited_outside, config_option
from collector.config import CollectorConfig
from collector.rollout import configkey
from collector.rollout.keyadoption import adoption
from collector.state.store import StateStore

#: Agents named at most in a refusal or in ``show`` (the count says the rest).
NAMED = 20


def _key_path(config: CollectorConfig) -> Path:
    if config.enrollment is None:
        raise click.ClickException(
            "enrollment is not configured: configs are signed for enrolled agents only "
            "(add [dynsec] and [enrollment], deploy/collector/collector.example.toml)"
        )
    return configkey.key_path(config.enrollment.config_key_file, config.store.path)


def _keys(path: Path) -> configkey.ConfigKeys:
    if not path.exists():
        raise click.ClickException(
            f"no config signing key at {path} yet: the collector makes it at its first start"
        )
    try:
        return configkey.load(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _store(config: CollectorConfig) -> StateStore | None:
    path = Path(config.store.path)
    if not path.exists():
        return None
    store = StateStore(path)
    click.get_current_context().call_on_close(store.close)
    return store


def _named(agents: list[str]) -> str:
    more = f" and {len(agents) - NAMED} more" if len(agents) > NAMED else ""
    return ", ".join(agents[:NAMED]) + more


@click.group("config-key")
def config_key_group() -> None:
    """The key that signs every agent's config (Ed25519): show it, rotate it without
    re-enrolling anyone (deploy/OPERATIONS.md, "Config signing key").

    \b
    Example:
        commune-collector config-key show -c /etc/commune-collector/collector.toml
        commune-collector config-key rotate -c /etc/commune-collector/collector.toml
        commune-collector config-key finish -c /etc/commune-collector/collector.toml
    """


@config_key_group.command("show")
@config_option
def show_command(config_path: Path | None) -> None:
    """The current key (and the next one during a rotation): its id, its public half, and
    how many active agents trust it.

    \b
    Example:
        commune-collector config-key show -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    path = _key_path(config)
    keys = _keys(path)
    store = _store(config)
    for role, key in (("current", keys.current), ("next", keys.next)):
        if key is None:
            continue
        line = f"{role}: {key.id} {key.public_text}"
        if store is not None:
            found = adoption(store, key.id)
            total = len(found.trusting) + len(found.lacking)
            line += f" — trusted by {len(found.trusting)} of {total} active agents"
            if role == "next" and found.lacking:
                line += f" (not yet: {_named(found.lacking)})"
        click.echo(line)
    click.echo(f"file: {path}" + (f", {configkey.next_path(path)}" if keys.next else ""))


@config_key_group.command("rotate")
@config_option
def rotate_command(config_path: Path | None) -> None:
    """Make the next key. The running collector signs every config again with the
    current key, announcing the next one; each agent that applies it trusts both. When
    `show` says every agent trusts it, `finish`. Both are in the operators' audit.

    \b
    Example:
        commune-collector config-key rotate -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    path = _key_path(config)
    keys = _keys(path)
    try:
        made = audited_outside(
            config, "config_key_rotate", lambda: configkey.rotate(path),
            lambda next_key: {"current": keys.current.id, "next": next_key.id},
            before={"current": keys.current.id, "next": keys.next.id if keys.next else None},
            object_of=lambda next_key: next_key.id,
        )  # fmt: skip
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {configkey.next_path(path)}: {exc}") from None
    click.echo(
        f"next key {made.id} made in {configkey.next_path(path)}; the running collector "
        "announces it in every config within a minute (commune-collector config-key show)"
    )


@config_key_group.command("finish")
@config_option
@click.option(
    "--force",
    is_flag=True,
    help="Even though some active agents do not trust the next key yet: they will refuse "
    "every config until given it (commune-agent config-key fetch).",
)
def finish_command(config_path: Path | None, force: bool) -> None:
    """Make the next key the current one (the old private key is gone). Refused while
    active agents have not said they trust it, unless --force; the running collector
    signs every config with it, and each agent that applies one drops the old key.

    \b
    Example:
        commune-collector config-key finish -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    path = _key_path(config)
    keys = _keys(path)
    if keys.next is None:
        raise click.ClickException(
            f"no rotation under way ({configkey.next_path(path)} does not exist): "
            "commune-collector config-key rotate first"
        )
    store = _store(config)
    lacking = adoption(store, keys.next.id).lacking if store is not None else []
    if lacking and not force:
        raise click.ClickException(
            f"{len(lacking)} active agents do not trust the next key {keys.next.id} yet: "
            f"{_named(lacking)}. Wait for them (config-key show), revoke those gone for "
            "good, or --force (they will refuse every config until given the key)"
        )
    next_key = keys.next
    try:
        made = audited_outside(
            config, "config_key_finish", lambda: configkey.finish(path),
            lambda current: {"current": current.id, "next": None, "forced": force,
                             "not_trusting": lacking},
            before={"current": keys.current.id, "next": next_key.id},
            object_of=lambda current: current.id,
        )  # fmt: skip
    except (ConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"key {made.id} signs now (was {keys.current.id}); the running collector signs and "
        "sends every config again within a minute"
        + (f"; {len(lacking)} agents will refuse them until given the key" if lacking else "")
    )
