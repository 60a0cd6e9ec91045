"""commune-collector rollout start|status|pause|resume|halt|promote: a signed agent
release rolled out in rings behind gates.

The commands write the store; the running collector judges the gates and sends each
agent its order within a housekeeping round (seconds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from agent.units import parse_duration
from collector.cli.common import _load, _local, _store, config_option
from collector.config import CollectorConfig
from collector.rollout.gates import GateError, parse_gate
from collector.rollout.rollouts import (
    DEFAULT_RINGS,
    Rollout,
    RolloutError,
    Rollouts,
    fleet,
)
from collector.state import audit


def signed_versions_of(config: CollectorConfig) -> Callable[[], set[str]]:
    """The versions the release repository's signed targets list (``[releases]``)."""
    from collector.release.repository import Repository

    section = config.releases
    repository = Repository(section.repository_path(config.store.path), section.expiries())
    return repository.signed_versions


def _book(config_path: Path | None) -> Rollouts:
    config = _load(config_path)
    given = (click.get_current_context().find_root().obj or {}).get("signed_versions")
    return Rollouts(_store(config), given or signed_versions_of(config), lab=config.rollouts.lab)


def _chosen(book: Rollouts, rollout_id: str | None) -> str:
    if rollout_id:
        return rollout_id
    latest = book.latest()
    if latest is None:
        raise click.ClickException("no rollout yet: commune-collector rollout start VERSION")
    return latest.id


def _carried(action: Callable[[], Rollout]) -> Rollout:
    try:
        return action()
    except RolloutError as exc:
        raise click.ClickException(str(exc)) from None


def _why(rollout: Rollout) -> str:
    return f" — {rollout.why}" if rollout.why else ""


@click.group("rollout")
def rollout_group() -> None:
    """Roll a signed agent release out to the PCs in rings, each promoted when its gate
    holds (or by an operator); a breach pauses the rollout.

    \b
    Example:
        commune-collector rollout start 0.3.0 --lab dong-nai/lab/pc-kaspersky \\
            --rings lab,pilot:3-communes,10%,50%,100%
        commune-collector rollout status
        commune-collector rollout pause --why "helpdesk calls from tan-phu"
        commune-collector rollout promote
    """


@rollout_group.command("start")
@config_option
@click.argument("version")
@click.option("--rings", default=DEFAULT_RINGS, show_default=True,
              help="Rings in order: lab, pilot:N-communes, shares like 10%.")  # fmt: skip
@click.option("--gate", "gates", multiple=True, metavar="KEY=VALUE",
              help="Gate options over the defaults: soak=1d, soak-weekdays=yes, committed=95, "
              "rollbacks=1, offline=2, offline-min=20 (repeat or separate by commas).")  # fmt: skip
@click.option("--lab", "lab", multiple=True, metavar="PROVINCE/COMMUNE/AGENT",
              help="A lab PC (one per anti-malware product); repeat for each. Default: "
              "[rollouts] lab.")  # fmt: skip
@click.option("--spread", default="1h", show_default=True,
              help="Each PC starts its download at a point within this time: 30m, 2h.")  # fmt: skip
def start_command(
    config_path: Path | None,
    version: str,
    rings: str,
    gates: tuple[str, ...],
    lab: tuple[str, ...],
    spread: str,
) -> None:
    """Start rolling VERSION out (it must be signed in the release repository): the first
    ring's PCs are asked for it at once, the next rings as gates hold.

    \b
    Example:
        commune-collector rollout start 0.3.0 -c /etc/commune-collector/collector.toml \\
            --lab dong-nai/lab/pc-kaspersky --lab dong-nai/lab/pc-bkav \\
            --rings lab,pilot:3-communes,10%,50%,100% --gate soak=1d,committed=95
    """
    book = _book(config_path)
    try:
        gate = parse_gate(gates)
        spread_s = parse_duration(spread)
    except (GateError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    rollout = _carried(
        lambda: book.start(version, rings, gate, audit.cli_actor(), lab=lab, spread_s=spread_s)
    )
    names = ", ".join(r.name for r in rollout.rings)
    click.echo(f"rollout {rollout.id} started: {version} to ring {rollout.rings[0].name} "
               f"({names}); gate: {gate.describe()}")  # fmt: skip
    if rollout.pilot:
        click.echo(f"pilot communes: {', '.join(rollout.pilot)}")


@rollout_group.command("status")
@config_option
@click.argument("rollout_id", required=False)
def status_command(config_path: Path | None, rollout_id: str | None) -> None:
    """A rollout's state and each ring's progress (the latest one without ROLLOUT_ID),
    and the versions the fleet runs.

    \b
    Example:
        commune-collector rollout status -c /etc/commune-collector/collector.toml
        commune-collector rollout status 0.3.0-1
    """
    book = _book(config_path)
    agents = fleet(book.store)
    versions = Counter(a.version or "?" for a in agents)
    click.echo("fleet: " + (", ".join(f"{v}: {n}" for v, n in sorted(versions.items())) or "no "
               "enrolled PC"))  # fmt: skip
    if rollout_id is None and book.latest() is None:
        click.echo("no rollout yet")
        return
    rollout = _carried(lambda: book.get(_chosen(book, rollout_id)))
    click.echo(f"rollout {rollout.id}: {rollout.version}, {rollout.state}{_why(rollout)}")
    click.echo(f"  started {_local(rollout.created_at)} by {rollout.created_by}; "
               f"gate: {rollout.gate.describe()}")  # fmt: skip
    click.echo(f"  {'ring':<18} {'state':<9} {'members':>7} {'online':>6} {'committed':>9} "
               f"{'rolled back':>11} {'offline':>7}  gate")  # fmt: skip
    for ring in book.progress(rollout, agents):
        got, verdict = ring.verdict.figures, ring.verdict
        if ring.ring.promoted_at is not None:
            state, gate = "promoted", f"by {ring.ring.promoted_by}"
        elif ring.open:
            state = "open"
            gate = verdict.breach or verdict.waiting or "holds"
        else:
            state, gate = "waiting", ""
        click.echo(f"  {ring.ring.name:<18} {state:<9} {got.members:>7} {got.online:>6} "
                   f"{got.committed:>9} {got.rolled_back:>11} {got.offline_pct:>6.1f}%  "
                   f"{gate}".rstrip())  # fmt: skip


@rollout_group.command("pause")
@config_option
@click.argument("rollout_id", required=False)
@click.option("--why", default="", help="Why, for the status and the audit.")
def pause_command(config_path: Path | None, rollout_id: str | None, why: str) -> None:
    """Pause a running rollout: no PC starts a new download (the latest one without
    ROLLOUT_ID).

    \b
    Example:
        commune-collector rollout pause --why "helpdesk calls from tan-phu"
    """
    book = _book(config_path)
    rollout = _carried(lambda: book.pause(_chosen(book, rollout_id), why, audit.cli_actor()))
    click.echo(f"rollout {rollout.id} paused{_why(rollout)}")


@rollout_group.command("resume")
@config_option
@click.argument("rollout_id", required=False)
def resume_command(config_path: Path | None, rollout_id: str | None) -> None:
    """Resume a paused rollout (paused by an operator or by a breach: a breach that
    persists pauses it again at the next round; promote to accept the ring as it is).

    \b
    Example:
        commune-collector rollout resume 0.3.0-1
    """
    book = _book(config_path)
    rollout = _carried(lambda: book.resume(_chosen(book, rollout_id), audit.cli_actor()))
    click.echo(f"rollout {rollout.id} running again at ring {rollout.rings[rollout.opened].name}")


@rollout_group.command("halt")
@config_option
@click.argument("rollout_id", required=False)
@click.option("--why", default="", help="Why, for the status and the audit.")
def halt_command(config_path: Path | None, rollout_id: str | None, why: str) -> None:
    """Halt a rollout for good: no PC is asked for its version any more; PCs stay on the
    version they run (start a rollout of a fixed release next).

    \b
    Example:
        commune-collector rollout halt 0.3.0-1 --why "rolled back on the Bkav lab PC"
    """
    book = _book(config_path)
    rollout = _carried(lambda: book.halt(_chosen(book, rollout_id), why, audit.cli_actor()))
    click.echo(f"rollout {rollout.id} halted{_why(rollout)}")


@rollout_group.command("promote")
@config_option
@click.argument("rollout_id", required=False)
def promote_command(config_path: Path | None, rollout_id: str | None) -> None:
    """Promote the open ring now, whatever its gate: the next ring opens (after the last,
    the rollout is done) and a paused rollout runs again.

    \b
    Example:
        commune-collector rollout promote 0.3.0-1
    """
    book = _book(config_path)
    before = _carried(lambda: book.get(_chosen(book, rollout_id)))
    rollout = _carried(lambda: book.promote(before.id, audit.cli_actor()))
    promoted = before.rings[before.opened].name
    if rollout.state == "done":
        click.echo(f"rollout {rollout.id}: ring {promoted} promoted; done")
    else:
        click.echo(f"rollout {rollout.id}: ring {promoted} promoted; ring "
                   f"{rollout.rings[rollout.opened].name} open")  # fmt: skip
