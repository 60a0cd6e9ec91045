"""SIGTERM and SIGINT stop the agent (agent/signals.py): a service's stop, Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

import pytest

from agent import wire
from agent.signals import STOP_SIGNALS, stop_on_signals
from tests.factories import agent_toml
from tests.servers import AgentProcess, Mosquitto, Received, Subscriber

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_signal_that_reaches_another_thread_still_wakes_the_loop(signum: int) -> None:
    """The kernel may hand a process's signal to any of its threads (the agent has
    five): Python runs the handler in the main thread, which sleeps in the loop until
    something wakes it."""
    before = signal.getsignal(signum)
    go = threading.Event()

    def signal_itself() -> None:
        go.wait()
        # From this thread, to this thread: nothing here runs the main thread's handlers.
        signal.pthread_kill(threading.get_ident(), signum)

    other = threading.Thread(target=signal_itself)
    other.start()

    async def what_woke_the_loop() -> str:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        woke: asyncio.Future[str] = loop.create_future()
        restore = stop_on_signals(stop)
        try:
            stopping = asyncio.ensure_future(stop.wait())
            stopping.add_done_callback(lambda _: woke.done() or woke.set_result("the signal"))
            # Nothing else is due: without its wakeup fd the loop would sleep until this.
            loop.call_later(60, lambda: woke.done() or woke.set_result("a timer"))
            go.set()
            return await woke
        finally:
            restore()

    try:
        assert asyncio.run(what_woke_the_loop()) == "the signal"
    finally:
        go.set()
        other.join()
    assert signal.getsignal(signum) is before


def test_outside_the_main_thread_the_signals_are_left_alone() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    seen: dict[int, object] = {}

    async def install() -> None:
        stop_on_signals(asyncio.Event())
        seen.update({s: signal.getsignal(s) for s in STOP_SIGNALS})

    thread = threading.Thread(target=lambda: asyncio.run(install()))
    thread.start()
    thread.join()
    assert seen == before


def statuses(messages: list[Received]) -> list[wire.Status]:
    return [wire.decode_status(m.payload) for m in messages if m.topic.endswith("/status")]


@pytest.mark.servers
@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_the_agent_stops_cleanly_on_either_signal(
    signum: int, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        agent_toml(extra=f'interval = "0.5s"\nstate_dir = "{tmp_path / "state"}"\n')
        + f'[mqtt]\nurl = "mqtt://127.0.0.1:{mosquitto.port}"\n[[checks.host]]\n'
    )
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    agent = AgentProcess(config).start()
    try:
        subscriber.wait_for(lambda ms: any(m.topic.endswith("/data") for m in ms), timeout=30)
        assert agent.stop(signum) == 0
        final = subscriber.wait_for(lambda ms: statuses(ms)[-1].state == "offline")
        assert statuses(final)[-1].reason == "stopped"
    finally:
        if agent.process and agent.process.poll() is None:
            agent.kill()
        subscriber.stop()
    assert "Traceback" not in agent.log
    assert "agent stopped" in agent.log
