"""commune-collector: the command line of the collector."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector import __version__
from collector.cli.alerts import ack_command, alerts_command, rules_test, silence_group
from collector.cli.backup import backup_command, restore_command
from collector.cli.broker import broker_config_command, client_crl_command
from collector.cli.common import _load, _local, _store, _time, config_option
from collector.cli.configkey import config_key_group
from collector.cli.enroll import enroll_command, revoke_command
from collector.cli.inventory import inventory_command
from collector.cli.maintenance import maintenance_group
from collector.cli.release import release_group
from collector.cli.report import report_command
from collector.cli.rollout import rollout_group
from collector.cli.service import install_service_command
from collector.cli.tokens import token_group
from collector.cli.windows_kit import windows_kit_command
from collector.config import CollectorConfig
from collector.state.availability import availability
from collector.state.store import StateStore


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="commune-collector")
def main() -> None:
    """The province's collector: ingest agents' reports, keep state and history, answer queries.

    \b
    Example:
        commune-collector run -c /etc/commune-collector/collector.toml
        commune-collector status -c collector.toml
    """


@main.command()
@config_option
def run(config_path: Path | None) -> None:
    """Run until stopped (SIGTERM/Ctrl-C): subscribe, validate, commit, acknowledge.

    \b
    Example:
        commune-collector run -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    logging.basicConfig(
        level=config.collector.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from collector.app import ApiError, Collector
    from collector.state.migrations import StoreTooNew

    try:
        collector = Collector(config)
    except (ConfigError, StoreTooNew) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        code = collector.run(stop)
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        sys.exit(code)


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the config; exit 1 naming the file, the key and the problem.

    \b
    Example:
        commune-collector check-config -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    provinces = ", ".join(config.collector.provinces) or "every province"
    click.echo(
        f"{config_path or '(embedded defaults)'}: ok — {provinces} from {config.mqtt.url}, "
        f"store {config.store.path}"
    )
    plans = _schema_plan(Path(config.store.path)) + _renames_plan(config)
    for line in _systems_summary(config) + plans:
        click.echo(f"  {line}")


def _systems_summary(config: CollectorConfig) -> list[str]:
    """Each province's shared systems, as the catalogue gives them (already validated)."""
    from collector.state.inventory import load_inventory
    from collector.state.systems import load_catalogues

    catalogues = load_catalogues(
        config.collector.systems, [load_inventory(p) for p in config.collector.inventory]
    )
    return [f"{province}: {c.summary()}" for province, c in catalogues.items()]


def _renames_plan(config: CollectorConfig) -> list[str]:
    """The communes whose history the next start moves from a former slug (formerly)."""
    import contextlib
    import sqlite3

    from collector.state import renames
    from collector.state.inventory import all_renames, load_inventory

    wanted = all_renames(load_inventory(path) for path in config.collector.inventory)
    path = Path(config.store.path)
    if not wanted or not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        todo = renames.pending(db, wanted)
    return [
        f"renamed: at start the collector moves {province}/{old}'s history to {new}"
        for province, old, new in todo
    ]


def _schema_plan(path: Path) -> list[str]:
    """What opening the store would do to its schema, without doing it."""
    import contextlib
    import sqlite3

    from collector.state import migrations

    if not path.exists():
        return [f"store: none yet; the collector creates it at schema {migrations.LATEST}"]
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        current = migrations.version(db)
        try:
            todo = migrations.pending(db)
        except migrations.StoreTooNew as exc:
            raise click.ClickException(str(exc)) from None
    if not todo:
        return [f"store: schema {current}, up to date"]
    return [f"store: schema {current}; at start the collector applies, in one transaction:"] + [
        f"  {m.version}: {m.summary}" for m in todo
    ]


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would be applied; change nothing.")
def migrate(config_path: Path | None, dry_run: bool) -> None:
    """Bring the state store to this collector's schema (`run` does it at start).

    Every migration is applied in one transaction; a store written by a newer
    collector is refused by name. Back the store up first (deploy/OPERATIONS.md).

    \b
    Example:
        commune-collector migrate -c /etc/commune-collector/collector.toml --dry-run
        commune-collector migrate -c /etc/commune-collector/collector.toml
    """
    from collector.state.migrations import StoreTooNew

    config = _load(config_path)
    path = Path(config.store.path)
    for line in _schema_plan(path):
        click.echo(line)
    if dry_run or not path.exists():
        return
    try:
        with StateStore(path) as store:
            applied = store.migrated
    except StoreTooNew as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"applied {len(applied)} migrations" if applied else "nothing to apply")


@main.command()
@config_option
@click.option("--province", default=None, help="Only this province (slug).")
def status(config_path: Path | None, province: str | None) -> None:
    """One line per commune: status, agents, anti-malware, dedicated line, Polycom, why.

    Communes of the inventory with nothing reporting show as no_data.

    \b
    Example:
        commune-collector status -c collector.toml
    """
    from collector.state.health import HealthModel
    from collector.state.inventory import load_inventory

    config = _load(config_path)
    try:
        inventories = [load_inventory(p) for p in config.collector.inventory]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    model = HealthModel(_store(config), inventories)
    communes = model.communes(province)
    if not communes:
        click.echo("no commune in the inventory and no agent has reported yet")
    for c in communes:
        am, line, polycom = c.antimalware, c.line, c.polycom
        protected = f"{am.protected}/{am.denominator}" if am.denominator else "-"
        if line.up is None:
            line_text = "-" if not line.monitored else "?"
        else:
            line_text = "up" if line.up else "DOWN"
        avail = line.availability.last_24h
        if avail is not None:
            line_text += f" {avail:.2f}%"
        ready = f"{polycom.ready}/{polycom.expected or polycom.reporting}"
        why = "; ".join(r.detail for r in c.reasons if r.severity != "ok")
        click.echo(
            f"{c.slug:14} {c.name[:22]:22} {c.status:8} agents {c.agents_online}/{c.agents}  "
            f"protected {protected:7} line {line_text:12} polycom {ready:5} {why}"
        )


@main.command()
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "technician", "admin", "read"]),
    default="viewer",
    show_default=True,
    help="viewer: reads (the IOC); technician: also acknowledges, silences, plans "
    "maintenance; admin: also enrollment tokens, revocations, check profiles. "
    "read is viewer's former name.",
)
@click.option(
    "--province",
    "provinces",
    multiple=True,
    help="A province it sees and acts in (repeat for several); none: every province.",
)
@click.option(
    "--commune",
    "communes",
    multiple=True,
    help="Only this commune of its one --province (repeat for several).",
)
def token(name: str, role: str, provinces: tuple[str, ...], communes: tuple[str, ...]) -> None:
    """Make an API token for NAME: print the token once, and the lines for the config.

    Only the token's SHA-256 goes into the config; give the token to its holder. It
    logs in to the console too, with the same role and scope.

    \b
    Example:
        commune-collector token ioc --role viewer
        commune-collector token tech-la-nga --role technician --province dong-nai \\
            --commune la-nga --commune tan-phu
        commune-collector token admin-dong-nai --role admin --province dong-nai
    """
    import hashlib
    import json
    import re
    import secrets
    from typing import cast

    from agent.configtypes import ConfigProblem
    from agent.wire import IDENT_PATTERN
    from collector.config import ApiToken, Role

    for option, slugs in (("--province", provinces), ("--commune", communes)):
        for slug in slugs:
            if not re.fullmatch(IDENT_PATTERN, slug):
                raise click.BadParameter(
                    f"{slug[:64]!r} is not a slug (letters, digits, '.', '_', '-'; "
                    "as in the inventory: dong-nai, la-nga)",
                    param_hint=option,
                )
    value = secrets.token_urlsafe(32)
    digest = hashlib.sha256(value.encode()).hexdigest()
    role = "viewer" if role == "read" else role
    made = ApiToken(
        name=name, role=cast(Role, role), sha256=digest, provinces=list(provinces),
        communes=list(communes),
    )  # fmt: skip
    try:
        made.validate("token")
    except ConfigProblem as exc:
        option = "--commune" if exc.key.endswith("communes") else "--province"
        raise click.BadParameter(str(exc), param_hint=option) from None
    click.echo(f"token (give it to {name}; it is not stored anywhere):\n    {value}\n")
    click.echo("add to the collector's config:\n")
    click.echo(f'[[api.tokens]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest}"')
    for key, slugs in (("provinces", provinces), ("communes", communes)):
        if slugs:
            click.echo(f"{key} = {json.dumps(list(slugs))}")


@main.command("availability")
@config_option
@click.option("--commune", required=True, help="Commune slug, e.g. la-nga (or province/commune).")
@click.option("--from", "start", required=True, help="Start, local time: 2025-10-01.")
@click.option("--to", "end", required=True, help="End (exclusive), local time: 2025-11-01.")
@click.option("--target", default=None, help="Only this link or Polycom (check name or target).")
def availability_command(
    config_path: Path | None, commune: str, start: str, end: str, target: str | None
) -> None:
    """Exact availability and the outage list of a commune's line and Polycom over a period.

    \b
    Example:
        commune-collector availability --commune la-nga --from 2025-10-01 --to 2025-11-01
    """
    store = _store(_load(config_path))
    lo, hi = _time(start), _time(end)
    if hi <= lo:
        raise click.BadParameter("--to must be after --from")
    subjects = [
        s
        for s in store.subjects()
        if s.kind in ("link", "polycom")
        and commune in (s.agent_key.split("/")[1], "/".join(s.agent_key.split("/")[:2]))
        and (target is None or target in (s.name, s.target))
    ]
    if not subjects:
        raise click.ClickException(
            f"nothing recorded for commune {commune!r}"
            + (f" and target {target!r}" if target else "")
        )
    now = time.time()
    for subject in subjects:
        outages = store.outages(subject.id, lo, hi)
        result = availability(outages, lo, hi, subject.monitored_since, now)
        percent = "no data" if result.percent is None else f"{result.percent:.3f} %"
        click.echo(
            f"{subject.agent_key} {subject.kind} {subject.name} ({subject.target}"
            f"{', ' + subject.network if subject.network else ''}): {percent}, "
            f"down {result.down_s / 60:.1f} min in {result.outages} outages"
        )
        for outage in outages:
            until = _local(outage.end) if outage.end is not None else "ongoing"
            click.echo(f"    down {_local(outage.start)} → {until}")


main.add_command(alerts_command)
main.add_command(ack_command)
main.add_command(silence_group)
main.add_command(maintenance_group)
main.add_command(rules_test)
main.add_command(report_command)
main.add_command(enroll_command)
main.add_command(revoke_command)
main.add_command(broker_config_command)
main.add_command(client_crl_command)
main.add_command(token_group)
main.add_command(config_key_group)
main.add_command(inventory_command)
main.add_command(install_service_command)
main.add_command(release_group)
main.add_command(rollout_group)
main.add_command(windows_kit_command)
main.add_command(backup_command)
main.add_command(restore_command)


if __name__ == "__main__":
    main()
