"""commune-fleet: play N communes x M PCs (plus a poller each) against a broker in real time."""

from __future__ import annotations

import heapq
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import click
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.scenario import Fleet, Message, SimAgent

log = logging.getLogger("fleet")


def _slugs(inventory: Path | None, communes: int) -> tuple[str, list[str]]:
    """(province, commune slugs): the inventory's first N, else commune-001..N."""
    if inventory is None:
        return "dong-nai", [f"commune-{i + 1:03d}" for i in range(communes)]
    from collector.state.inventory import load_inventory

    loaded = load_inventory(inventory)
    return loaded.province, [c.slug for c in loaded.communes[:communes]]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--broker", default="mqtt://127.0.0.1:1883", show_default=True, help="mqtt://host:port"
)
@click.option(
    "--inventory",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take the province and commune slugs from this inventory (its first N communes).",
)
@click.option("--communes", default=5, show_default=True, help="Communes to play (N).")
@click.option(
    "--exclude", multiple=True, help="Leave this commune out (played by real agents). Repeatable."
)
@click.option("--pcs", default=10, show_default=True, help="PCs per commune (M), plus a poller.")
@click.option("--interval", default=60.0, show_default=True, help="Seconds between check runs.")
@click.option("--outages-per-day", default=2.0, show_default=True, help="Line outages, mean.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same fleet and events.")
@click.option("--duration", default=0.0, help="Stop after this many seconds (0: until Ctrl-C).")
@click.option(
    "--collector",
    metavar="URL",
    help="Enroll every agent with this collector (tokens through its API, profiles "
    "'office' and 'poller') and play the checks its configs name.",
)
@click.option(
    "--api-token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An admin API token (for the enrollment tokens); none on an open loopback API.",
)
@click.option(
    "--ca", "ca_file", type=click.Path(exists=True, dir_okay=False), help="The collector's CA."
)
def main(
    broker: str,
    inventory: Path | None,
    communes: int,
    exclude: tuple[str, ...],
    pcs: int,
    interval: float,
    outages_per_day: float,
    seed: int,
    duration: float,
    collector: str | None,
    api_token_file: Path | None,
    ca_file: str | None,
) -> None:
    """Publish what N communes' agents would: anti-malware mix, line outages, Polycom meetings.

    Every agent publishes its birth (retained), one envelope per check every
    --interval seconds, and a clean goodbye when stopped. While a commune's line
    is down its envelopes wait and arrive late, in order, like an agent's outbox.

    \b
    Example:
        commune-fleet --broker mqtt://127.0.0.1:18830 \\
            --inventory deploy/inventory/dong-nai.toml --communes 6 --pcs 8 --interval 15
        commune-fleet --broker mqtt://127.0.0.1:18830 --collector http://127.0.0.1:18080 \\
            --inventory deploy/inventory/dong-nai.toml --communes 5 --pcs 8
    """
    logging.basicConfig(level="INFO", format="%(asctime)s fleet: %(message)s")
    parts = urlsplit(broker)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise click.BadParameter(
            f"expected mqtt://host:port, got {broker!r}", param_hint="--broker"
        )
    province, slugs = _slugs(inventory, communes + len(exclude))
    slugs = [s for s in slugs if s not in exclude][:communes]
    fleet = Fleet(
        province, slugs, pcs, seed=seed, outages_per_day=outages_per_day, interval=interval
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    host, port = parts.hostname, parts.port or 1883
    if collector:
        send_as = _enrolled(fleet, collector, host, port, api_token_file, ca_file or "", stop)
    else:
        send_as = _shared(fleet, host, port, seed, broker)

    def send(messages: list[Message], agent: SimAgent | None = None) -> None:
        send_as(agent, messages)

    now = time.time()
    for agent in fleet.agents:
        send([fleet.status(agent, now)], agent)
    log.info(
        "%d communes x (%d PCs + 1 poller) = %d agents of %s, every %gs",
        len(slugs),
        pcs,
        len(fleet.agents),
        province,
        interval,
    )
    # Each agent runs at its own offset within the interval, as real ones do.
    started = time.monotonic()
    due = [(started + interval * i / len(fleet.agents), i) for i in range(len(fleet.agents))]
    heapq.heapify(due)
    published = 0
    while not stop.is_set() and (not duration or time.monotonic() - started < duration):
        when, index = heapq.heappop(due)
        if stop.wait(max(0.0, when - time.monotonic())):
            break
        agent = fleet.agents[index]
        messages = fleet.cycle(agent, time.time())
        send(messages, agent)
        published += len(messages)
        heapq.heappush(due, (when + fleet.interval_of(agent), index))
    goodbye = dict(zip(range(len(fleet.agents)), fleet.goodbyes(time.time()), strict=True))
    for index, agent in enumerate(fleet.agents):
        send([goodbye[index]], agent)
    send_as(None, [])  # flush and close
    log.info("stopped after %d envelopes", published)


Sender = Callable[[SimAgent | None, list[Message]], None]


def _shared(fleet: Fleet, host: str, port: int, seed: int, broker: str) -> Sender:
    """One session for every simulated agent (an open broker)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"commune-fleet-{seed}")
    client.max_inflight_messages_set(1000)
    try:
        client.connect(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot reach the broker at {broker}: {exc}") from None
    client.loop_start()

    def send(agent: SimAgent | None, messages: list[Message]) -> None:
        if agent is None and not messages:
            time.sleep(0.5)
            client.loop_stop()
            client.disconnect()
            return
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain)

    return send


def _enrolled(
    fleet: Fleet,
    collector: str,
    host: str,
    port: int,
    api_token_file: Path | None,
    ca_file: str,
    stop: threading.Event,
) -> Sender:
    """Every simulated agent enrolled, on its own account, playing its config."""
    from agent.configtypes import read_secret
    from agent.enroll import EnrollFailed
    from fleet.enrolled import EnrolledFleet, FleetError

    token = read_secret(api_token_file) if api_token_file else ""
    enrolled: EnrolledFleet | None = None

    def replanned(agent: SimAgent) -> None:  # a new config: say so in the birth message
        if enrolled is not None and agent.plan is not None:
            enrolled.send(agent, [fleet.status(agent, time.time())])

    enrolled = EnrolledFleet(
        fleet, collector, host, port, api_token=token, ca_file=ca_file, on_plan=replanned
    )
    try:
        enrolled.enroll()
    except (FleetError, EnrollFailed, OSError) as exc:
        enrolled.close()
        raise click.ClickException(str(exc)) from None
    deadline = time.monotonic() + 30
    while any(a.plan is None for a in fleet.agents) and time.monotonic() < deadline:
        if stop.wait(0.2):
            break
    waiting = [a.agent for a in fleet.agents if a.plan is None]
    if waiting:
        log.warning("%d agents have no config from the collector yet", len(waiting))

    def send(agent: SimAgent | None, messages: list[Message]) -> None:
        assert enrolled is not None
        if agent is None:
            time.sleep(0.5)
            enrolled.close()
            return
        enrolled.send(agent, messages)

    return send


if __name__ == "__main__":
    main()
