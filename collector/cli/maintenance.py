"""commune-collector maintenance: planned windows, muted and left out of availability."""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import click

from collector.cli.common import _load, _local, _store, _time, config_option
from collector.state import maintenance
from collector.state.audit import cli_actor
from collector.web import audited


@click.group("maintenance")
def maintenance_group() -> None:
    """Maintenance windows: the power company's cuts, VNPT's works on the line.

    During a window the alerts of its place are recorded but not sent, and the
    monthly report gives availability with and without the windows.

    \b
    Example:
        commune-collector maintenance add -c collector.toml --province dong-nai \\
            --commune la-nga --start "2026-12-06 07:00" --end "2026-12-06 11:00" \\
            --reason "EVN cắt điện"
    """


@maintenance_group.command("add")
@config_option
@click.option("--province", required=True, help="Province slug.")
@click.option("--commune", default="", help="Commune slug (default: the whole province).")
@click.option("--agent", default="", help="Only this agent of the commune.")
@click.option(
    "--device",
    default="",
    help="Only this device: tslcd (the line, whatever its checks' names), internet, lan, "
    "polycom, router, switch, or a check's or a PC's name the place has reported.",
)
@click.option("--start", "starts", required=True, help="2026-12-06 07:00 (local time).")
@click.option("--end", "ends", required=True, help="When the (first) window ends.")
@click.option(
    "--every",
    type=click.Choice(["day", "week", "month"]),
    default=None,
    help="Repeat the window, in local time.",
)
@click.option("--until", default=None, help="A repeated window stops before this date.")
@click.option("--reason", default="", help="Shown in the console and the report.")
@click.option("--by", default=None, help="Who (default: your login name).")
def maintenance_add(
    config_path: Path | None,
    province: str,
    commune: str,
    agent: str,
    device: str,
    starts: str,
    ends: str,
    every: str | None,
    until: str | None,
    reason: str,
    by: str | None,
) -> None:
    """Plan a window, once or repeated (--every week --until 2027-03-01).

    \b
    Example:
        commune-collector maintenance add --province dong-nai --commune la-nga \\
            --device tslcd --start "2026-12-05 22:00" --end "2026-12-06 02:00" \\
            --reason "VNPT nâng cấp đường truyền"
        commune-collector maintenance add --province dong-nai --commune phu-hoa \\
            --start "2026-12-07 06:00" --end "2026-12-07 09:00" --every week \\
            --until 2027-02-01 --reason "lịch cắt điện"
    """
    now = time.time()
    try:
        window = maintenance.add(
            _store(_load(config_path)),
            province=province,
            commune=commune,
            agent=agent,
            device=device,
            starts=_time(starts),
            ends=_time(ends),
            every=every or "",
            until=_time(until) if until else None,
            reason=reason,
            created_by=by or getpass.getuser(),
            now=now,
            also=audited.window(cli_actor(), "maintenance_create", now),
        )
    except maintenance.MaintenanceError as exc:
        raise click.ClickException(f"refused: {exc}") from None
    click.echo(f"maintenance #{window.id}: {describe(window)}")


def describe(window: maintenance.Window) -> str:
    place = "/".join(p for p in (window.province, window.commune, window.agent) if p)
    what = f"{place} {window.device}".strip()
    span = f"{_local(window.starts)} → {_local(window.ends)}"
    if window.every and window.until is not None:
        span += f" every {window.every} until {_local(window.until)}"
    return f"{what}  {span}  {window.reason}".rstrip()


@maintenance_group.command("list")
@config_option
@click.option("--province", default=None, help="Only this province.")
@click.option("--all", "show_all", is_flag=True, help="Also the windows that are over.")
def maintenance_list(config_path: Path | None, province: str | None, show_all: bool) -> None:
    """Windows in force or to come (--all: also past ones).

    \b
    Example:
        commune-collector maintenance list -c collector.toml --province dong-nai
    """
    now = time.time()
    found = maintenance.windows(
        _store(_load(config_path)), province, -float("inf") if show_all else now
    )
    if not found:
        click.echo("no maintenance window")
    for window in found:
        state = "now " if window.active(now) else ""
        click.echo(f"#{window.id:<4} {state}{describe(window)}  ({window.created_by})")


@maintenance_group.command("delete")
@config_option
@click.argument("window_id", type=int)
def maintenance_delete(config_path: Path | None, window_id: int) -> None:
    """Remove a window (its time counts again in the figures).

    \b
    Example:
        commune-collector maintenance delete 4 -c collector.toml
    """
    try:
        maintenance.remove(
            _store(_load(config_path)), window_id,
            also=audited.window(cli_actor(), "maintenance_delete", time.time()),
        )  # fmt: skip
    except maintenance.NotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"maintenance #{window_id} deleted")
