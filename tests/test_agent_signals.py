"""SIGTERM and SIGINT stop the agent (agent/signals.py): a service's stop, Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import wire
from agent.signals import STOP_SIGNALS, stop_on_signals
from agent.wakeup import Wakeup
from tests.factories import agent_toml
from tests.servers import AgentProcess, Mosquitto, Received, Subscriber

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_signal_that_reaches_another_thread_still_wakes_the_main_thread(signum: int) -> None:
    """The kernel may hand a process's signal to any of its threads: Python runs the
    handler in the main thread, which sleeps until something wakes it."""
    before = signal.getsignal(signum)
    go = threading.Event()

    def signal_itself() -> None:
        go.wait()
        # From this thread, to this thread: nothing here runs the main thread's handlers.
        signal.pthread_kill(threading.get_ident(), signum)

    other = threading.Thread(target=signal_itself)
    other.start()
    stop = Wakeup()
    restore = stop_on_signals(stop)
    try:
        started = time.monotonic()
        go.set()
        # Nothing else wakes it: without the wakeup fd it would sleep the whole minute.
        assert stop.wait_stopped(60)
        assert time.monotonic() - started < 50
    finally:
        restore()
        go.set()
        other.join()
        stop.close()
    assert signal.getsignal(signum) is before


def test_outside_the_main_thread_the_signals_are_left_alone() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    seen: dict[int, object] = {}
    stop = Wakeup()

    def install() -> None:
        stop_on_signals(stop)
        seen.update({s: signal.getsignal(s) for s in STOP_SIGNALS})

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    stop.close()
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
