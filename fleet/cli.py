"""commune-fleet: play N communes x M PCs (plus a poller each) against a broker in real time."""

from __future__ import annotations

import heapq
import logging
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import click
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.scenario import Fleet, Message

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
) -> None:
    """Publish what N communes' agents would: anti-malware mix, line outages, Polycom meetings.

    Every agent publishes its birth (retained), one envelope per check every
    --interval seconds, and a clean goodbye when stopped. While a commune's line
    is down its envelopes wait and arrive late, in order, like an agent's outbox.

    \b
    Example:
        commune-fleet --broker mqtt://127.0.0.1:18830 \\
            --inventory deploy/inventory/dong-nai.toml --communes 6 --pcs 8 --interval 15
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
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"commune-fleet-{seed}")
    client.max_inflight_messages_set(1000)
    try:
        client.connect(parts.hostname, parts.port or 1883)
    except OSError as exc:
        raise click.ClickException(f"cannot reach the broker at {broker}: {exc}") from None
    client.loop_start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def send(messages: list[Message]) -> None:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain)

    send(fleet.births(time.time()))
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
        messages = fleet.cycle(fleet.agents[index], time.time())
        send(messages)
        published += len(messages)
        heapq.heappush(due, (when + interval, index))
    send(fleet.goodbyes(time.time()))
    client.loop_stop()
    client.disconnect()
    log.info("stopped after %d envelopes", published)


if __name__ == "__main__":
    main()
