"""commune-collector enroll-token create|list|revoke, and revoking an enrolled agent."""

from __future__ import annotations

import time
from pathlib import Path

import click

from agent.configtypes import ConfigError
from agent.units import parse_duration
from collector.cli.common import _load, _local, _store, config_option
from collector.config import CollectorConfig
from collector.rollout import registry, tokens
from collector.rollout.profiles import ProfileError
from collector.rollout.service import Rollout
from collector.state import audit


def _rollout(config_path: Path | None) -> tuple[CollectorConfig, Rollout]:
    config = _load(config_path)
    if config.enrollment is None or config.dynsec is None:
        raise click.ClickException(
            "enrollment is not configured: add [dynsec] and [enrollment] to the collector's "
            "config (deploy/collector/collector.example.toml)"
        )
    from collector.app import rollout_settings
    from collector.state.inventory import all_renames, load_inventory
    from collector.state.systems import SystemFiles

    inventories = [load_inventory(path) for path in config.collector.inventory]
    # The profiles that probe the shared systems are checked against their catalogues,
    # as the running collector checks them.
    systems = SystemFiles(
        config.collector.systems, inventories, [r.name for r in config.alerts.routes]
    )
    settings = rollout_settings(config, all_renames(inventories))
    return config, Rollout(_store(config), settings, systems=systems)


@click.group("enroll-token")
def token_group() -> None:
    """Tokens with which a commune's PCs enroll themselves (commune-agent enroll).

    \b
    Example:
        commune-collector enroll-token create --province dong-nai --commune la-nga --uses 60
        commune-collector enroll-token list --commune la-nga
        commune-collector enroll-token revoke 1a2b3c4d
    """


@token_group.command("create")
@config_option
@click.option("--province", required=True, help="Province slug, e.g. dong-nai.")
@click.option("--commune", required=True, help="Commune slug, e.g. la-nga.")
@click.option("--uses", type=click.IntRange(1, tokens.MAX_USES), default=60, show_default=True,
              help="How many PCs may enroll with it.")  # fmt: skip
@click.option("--ttl", default="14d", show_default=True, help="How long it is valid: 2h, 14d.")
@click.option("--profile", default="office", show_default=True,
              help="The check profile its PCs get (from [enrollment] profiles).")  # fmt: skip
@click.option(
    "--allow-replace",
    is_flag=True,
    help="Its PCs may take over an agent id already enrolled (reinstalled PCs).",
)
@click.option("--by", "created_by", default="cli", show_default=True,
              help="Who creates it, for the audit table.")  # fmt: skip
def create_command(
    config_path: Path | None,
    province: str,
    commune: str,
    uses: int,
    ttl: str,
    profile: str,
    allow_replace: bool,
    created_by: str,
) -> None:
    """Make a token for one commune's PCs; it is shown once (the collector keeps its
    hash), with the command to run on each PC.

    \b
    Example:
        commune-collector enroll-token create -c /etc/commune-collector/collector.toml \\
            --province dong-nai --commune la-nga --uses 60 --ttl 14d --profile office
    """
    try:
        ttl_s = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    _config, rollout = _rollout(config_path)
    try:
        token, text = rollout.create_token(
            province=province, commune=commune, profile=profile, uses=uses, ttl_s=ttl_s,
            created_by=created_by, allow_replace=allow_replace,
        )  # fmt: skip
    except (ProfileError, ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    audit.record_alone(
        rollout.store, audit.cli_actor(), "enroll_token_create", token.created_at,
        province=province, commune=commune, object=token.id, after=token,
    )  # fmt: skip
    windows, linux = tokens.enroll_commands(rollout.settings.collector_url, text)
    click.echo(text)
    click.echo(
        f"\ntoken {token.id} for {province}/{commune}: {uses} PCs, profile {profile}, "
        f"until {_local(token.expires)}; shown once, keep it with the rollout sheet.",
        err=True,
    )
    click.echo(f"Windows (as administrator): {windows}", err=True)
    click.echo(f"Linux: {linux}", err=True)


@token_group.command("list")
@config_option
@click.option("--province", help="Only this province.")
@click.option("--commune", help="Only this commune.")
def list_command(config_path: Path | None, province: str | None, commune: str | None) -> None:
    """The tokens, newest first: uses left, expiry, state (the secrets are not kept).

    \b
    Example:
        commune-collector enroll-token list --province dong-nai
    """
    store = _store(_load(config_path))
    now = time.time()
    found = tokens.tokens(store, province=province, commune=commune)
    for token in found:
        click.echo(
            f"{token.id}  {token.province}/{token.commune:20} {token.profile:10} "
            f"{token.used:>4}/{token.uses:<4} until {_local(token.expires)}  "
            f"{token.state(now)}{'  replace' if token.allow_replace else ''}"
        )
    if not found:
        click.echo("no tokens", err=True)


@token_group.command("revoke")
@config_option
@click.argument("token_id")
@click.option("--by", "actor", default="cli", show_default=True, help="For the audit table.")
def revoke_token_command(config_path: Path | None, token_id: str, actor: str) -> None:
    """Stop a token from enrolling more PCs (those enrolled with it stay).

    \b
    Example:
        commune-collector enroll-token revoke 1a2b3c4d
    """
    _config, rollout = _rollout(config_path)
    try:
        token = rollout.revoke_token(token_id, actor)
    except KeyError:
        raise click.ClickException(f"no token {token_id}") from None
    audit.record_alone(
        rollout.store, audit.cli_actor(), "enroll_token_revoke", rollout.clock(),
        province=token.province, commune=token.commune, object=token.id, after=token,
    )  # fmt: skip
    click.echo(f"revoked token {token.id} of {token.province}/{token.commune}")


def revoke_enrolled(
    config_path: Path | None, province: str, commune: str, agent: str, actor: str
) -> str:
    """Revoke an enrolled agent: recorded in the store first (what lasts), then its account
    removed from the broker — by the running collector at its next round (its admin
    session is not taken over from the command line), or here when none runs. What
    happened, for the operator."""

    from collector.rollout.service import running_collector

    _config, rollout = _rollout(config_path)
    key = f"{province}/{commune}/{agent}"
    if running_collector(rollout.store, time.time()):
        try:
            managed, _ = rollout.enroller.revoke(key, actor, "cli", apply=False)
        except KeyError:
            raise click.ClickException(f"{key} was never enrolled") from None
        _audit_revoked(rollout, managed)
        deadline = time.monotonic() + 60
        while any(r.username == managed.username for r in rollout.revocations.pending()):
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"revoked {key} (recorded); the running collector has not yet removed its "
                    f"account {managed.username} from the broker (is the broker away?): it "
                    "does at its next round"
                )
            time.sleep(0.5)
        return f"revoked {managed.username}: the collector removed its account, ended its session"
    rollout.start(timeout=10, heartbeat=False)
    try:
        try:
            managed, applied = rollout.enroller.revoke(key, actor, "cli")
        except KeyError:
            raise click.ClickException(f"{key} was never enrolled") from None
        _audit_revoked(rollout, managed)
        if not applied:
            raise click.ClickException(
                f"revoked {key} (recorded); the broker's dynamic-security admin session "
                "([dynsec]) is out of reach: its account is removed when the collector next runs"
            )
        return f"revoked {managed.username}: its account is removed and its session closed"
    finally:
        rollout.stop()


def _audit_revoked(rollout: Rollout, managed: registry.Managed) -> None:
    audit.record_alone(
        rollout.store, audit.cli_actor(), "agent_revoke", rollout.clock(),
        province=managed.province, commune=managed.commune, agent=managed.agent,
        object=managed.agent_key, after=managed,
    )  # fmt: skip
