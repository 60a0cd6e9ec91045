"""commune-collector's alert commands: alerts, ack, silence, rules-test."""

from __future__ import annotations

import getpass
import sys
import tempfile
import time
from pathlib import Path

import click

from agent import wire
from agent.configtypes import ConfigError
from agent.units import parse_duration
from collector.alerts.engine import AlertEngine
from collector.alerts.records import (
    NotFound,
    acknowledge,
    add_silence,
    delete_silence,
    get_alert,
    list_alerts,
    list_silences,
)
from collector.alerts.rules import default_rules, load_rules, merge
from collector.cli.common import _load, _local, _store, config_option
from collector.state.audit import cli_actor
from collector.state.store import StateStore
from collector.web import audited


def _opened(config_path: Path | None) -> StateStore:
    return _store(_load(config_path))


@click.command("alerts")
@config_option
@click.option("--province", default=None, help="Only this province (slug).")
@click.option("--commune", default=None, help="Only this commune (slug).")
@click.option("--state", type=click.Choice(["firing", "resolved"]), default=None)
@click.option("--severity", type=click.Choice(["critical", "warning", "info"]), default=None)
@click.option("--rule", default=None, help="Only this rule.")
@click.option("--limit", default=50, show_default=True)
def alerts_command(
    config_path: Path | None,
    province: str | None,
    commune: str | None,
    state: str | None,
    severity: str | None,
    rule: str | None,
    limit: int,
) -> None:
    """Alerts, newest first: id, state, severity, rule, where, since, acknowledgement.

    \b
    Example:
        commune-collector alerts -c collector.toml --state firing --commune la-nga
    """
    found = list_alerts(
        _opened(config_path),
        time.time(),
        state=state,
        province=province,
        commune=commune,
        severity=severity,
        rule=rule,
        limit=limit,
    )
    if not found:
        click.echo("no alert")
    for a in found:
        where = "/".join(p for p in (a.commune, a.agent, a.target) if p)
        flags = " ".join(
            f
            for f, on in (("late", a.late), ("held", a.suppressed), ("silenced", a.silenced))
            if on
        )
        until = f" → {_local(a.resolved_at)}" if a.resolved_at else ""
        ack = f"  acked by {a.acked_by}: {a.ack_comment}" if a.acked_by else ""
        click.echo(
            f"#{a.id:<5} {a.state:8} {a.severity:8} {a.rule:22} {where:36} "
            f"{_local(a.started_at)}{until} {a.value} {flags}{ack}".rstrip()
        )


@click.command("ack")
@config_option
@click.argument("alert_id", type=int)
@click.option("--comment", "-m", required=True, help="What is being done about it.")
@click.option("--by", default=None, help="Who acknowledges (default: your login name).")
def ack_command(config_path: Path | None, alert_id: int, comment: str, by: str | None) -> None:
    """Acknowledge an alert: who, when, why. Stops its repeated notifications.

    \b
    Example:
        commune-collector ack 42 -c collector.toml --comment "VNPT ticket 4411 opened"
    """
    store, now, who = _opened(config_path), time.time(), by or getpass.getuser()
    try:
        before = get_alert(store, alert_id, now)
        alert = acknowledge(
            store, alert_id, who, comment, now,
            also=audited.ack(cli_actor(), before, who, comment, now),
        )  # fmt: skip
    except (NotFound, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    when = _local(alert.acked_at or 0)
    click.echo(f"#{alert.id} {alert.rule} acknowledged by {alert.acked_by} at {when}")


@click.group("silence")
def silence_group() -> None:
    """Silences: mute notifications for a commune, an agent or a rule for a while.

    \b
    Example:
        commune-collector silence add -c collector.toml --commune la-nga --for 4h \\
            --comment "VNPT maintenance"
    """


@silence_group.command("add")
@config_option
@click.option("--commune", default="", help="Commune slug.")
@click.option("--agent", default="", help="Agent id.")
@click.option("--rule", default="", help="Rule name.")
@click.option("--for", "duration", required=True, help="How long: 30m, 4h, 2d.")
@click.option("--comment", "-m", default="", help="Why.")
@click.option("--by", default=None, help="Who (default: your login name).")
def silence_add(
    config_path: Path | None,
    commune: str,
    agent: str,
    rule: str,
    duration: str,
    comment: str,
    by: str | None,
) -> None:
    """Mute from now for --for.

    \b
    Example:
        commune-collector silence add --commune la-nga --rule line_down_tslcd --for 4h
    """
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    now = time.time()
    try:
        silence = add_silence(
            _opened(config_path),
            starts=now,
            ends=now + seconds,
            created_by=by or getpass.getuser(),
            now=now,
            commune=commune,
            agent=agent,
            rule=rule,
            comment=comment,
            also=audited.silence(cli_actor(), "silence_create", now),
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"silence #{silence.id} until {_local(silence.ends)}")


@silence_group.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also the expired ones.")
def silence_list(config_path: Path | None, show_all: bool) -> None:
    """Silences in force.

    \b
    Example:
        commune-collector silence list -c collector.toml
    """
    silences = list_silences(_opened(config_path), time.time(), active_only=not show_all)
    if not silences:
        click.echo("no silence")
    for s in silences:
        what = " ".join(
            f"{k}={v}"
            for k, v in (("commune", s.commune), ("agent", s.agent), ("rule", s.rule))
            if v
        )
        span = f"{_local(s.starts)} → {_local(s.ends)}"
        click.echo(f"#{s.id:<4} {what:40} {span}  {s.created_by}: {s.comment}")


@silence_group.command("delete")
@config_option
@click.argument("silence_id", type=int)
def silence_delete(config_path: Path | None, silence_id: int) -> None:
    """End a silence now.

    \b
    Example:
        commune-collector silence delete 3 -c collector.toml
    """
    try:
        delete_silence(
            _opened(config_path), silence_id,
            also=audited.silence(cli_actor(), "silence_delete", time.time()),
        )  # fmt: skip
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"silence #{silence_id} deleted")


@click.command("rules-test")
@click.argument("rules_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--samples",
    "samples_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Recorded messages: one envelope (JSON) per line, or `mosquitto_sub -v` output.",
)
@click.option("--no-defaults", is_flag=True, help="Only the rules of RULES_FILE.")
def rules_test(rules_file: Path, samples_file: Path, no_defaults: bool) -> None:
    """Play recorded samples through a rules file and print what would fire and resolve.

    Each message is taken as live at its own time, so `for` and `resolve_after`
    count as they would have.

    \b
    Example:
        mosquitto_sub -t 'commune/dong-nai/la-nga/#' -v > la-nga.log
        commune-collector rules-test my-rules.toml --samples la-nga.log
    """
    try:
        custom = load_rules(rules_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    rules = custom if no_defaults else merge(default_rules(), custom)
    clock = [0.0]
    with (
        tempfile.TemporaryDirectory(prefix="commune-rules-test-") as tmp,
        StateStore(Path(tmp) / "state.sqlite", clock=lambda: clock[0]) as store,
    ):
        engine = AlertEngine(rules, clock=lambda: clock[0])
        engine.install(store)
        played = bad = 0
        for number, line in enumerate(samples_file.read_text(encoding="utf-8").splitlines(), 1):
            try:
                message = _parse_line(line)
                if message is None:
                    continue
                if isinstance(message, wire.Status):
                    clock[0] = max(clock[0], message.ts)
                    store.apply(statuses=[(message, clock[0])], received=clock[0])
                    engine.tick(store, clock[0])
                else:
                    clock[0] = max([clock[0], *(s.ts for s in message.samples)])
                    store.apply([message], received=clock[0])
                    engine.tick(store, clock[0])
                played += 1
            except wire.WireError as exc:
                bad += 1
                click.echo(f"{samples_file}:{number}: skipped: {exc}", err=True)
        found = sorted(list_alerts(store, clock[0], limit=100_000), key=lambda a: a.started_at)
    click.echo(f"{played} messages played, {len(rules)} rules, {len(found)} alerts")
    for a in found:
        where = "/".join(p for p in (a.commune, a.agent, a.target) if p)
        until = _local(a.resolved_at) if a.resolved_at else "still firing"
        click.echo(
            f"{a.severity:8} {a.rule:22} {where:36} {_local(a.started_at)} → {until}  {a.value}"
        )
    if bad:
        sys.exit(1)


def _parse_line(line: str) -> wire.Envelope | wire.Status | None:
    text = line.strip()
    if not text:
        return None
    topic = ""
    if not text.startswith("{"):
        topic, _, text = text.partition(" ")
    payload = text.encode()
    if topic.endswith("/status") or (b'"state"' in payload[:200] and b'"samples"' not in payload):
        return wire.decode_status(payload)
    return wire.decode_envelope(payload)
