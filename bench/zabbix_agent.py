"""Zabbix agent 2 beside the commune agent: the same machine, the same window, items like
the PC profile's polled at the same cadence over Zabbix's passive protocol.

``apt-get install zabbix-agent2`` (Debian's package); without it the benchmark says so
and goes on. It runs with a config of its own (a free loopback port, no active checks,
no plugin configs) and is asked, every cycle, for what the host and link checks report
(CPU, memory, disk, uptime, the OS; a TCP service probe, up and response time, since it
has no ICMP item)
and every ten cycles whether an anti-malware process runs (proc.num[clamd]).
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from tests.servers import stop_process, wait_tcp

BINARY = "zabbix_agent2"
#: Asked every cycle: what the host check and the line probes report.
EVERY_CYCLE = (
    "system.cpu.util",
    "vm.memory.size[pavailable]",
    "vfs.fs.size[/,pused]",
    "system.uptime",
    "system.sw.os",
    "net.tcp.service[tcp,127.0.0.1,{port}]",
    "net.tcp.service.perf[tcp,127.0.0.1,{port}]",
)
#: Asked every ten cycles: the anti-malware check's counterpart.
EVERY_TEN = ("proc.num[clamd]",)


def installed() -> bool:
    return shutil.which(BINARY) is not None


def version() -> str:
    out = subprocess.run([BINARY, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else BINARY
    return first.replace("zabbix_agent2 (Zabbix) ", "zabbix_agent2 ")


def listen_port() -> int:
    """A free loopback port in the range Zabbix accepts for ListenPort (1024-32767)."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for zabbix_agent2 in 20000-32767")


def start(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Zabbix agent 2 in the foreground on a free loopback port; its port."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = listen_port()
    config = workdir / "zabbix_agent2.conf"
    config.write_text(
        f"Server=127.0.0.1\nListenIP=127.0.0.1\nListenPort={port}\nHostname=bench-pc\n"
        f"LogType=file\nLogFile={workdir / 'zabbix_agent2.log'}\n"
        f"PidFile={workdir / 'zabbix_agent2.pid'}\nControlSocket={workdir / 'agent.sock'}\n"
    )
    process = subprocess.Popen(
        [BINARY, "-f", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_tcp(port)
    except TimeoutError:
        stop_process(process)
        raise
    return process, port


def ask(port: int, key: str) -> bytes:
    """One passive check: ZBXD header, the key; the answer's value."""
    data = key.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ZBXD\x01" + struct.pack("<II", len(data), 0) + data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer[13:]


class Poller:
    """Asks the agent the profile's items every ``interval`` seconds, in a thread."""

    def __init__(self, port: int, interval: float, probed_port: int) -> None:
        self.port = port
        self.interval = interval
        self.keys = [key.format(port=probed_port) for key in EVERY_CYCLE]
        self.cycles = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zabbix-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            keys = self.keys + (list(EVERY_TEN) if self.cycles % 10 == 0 else [])
            for key in keys:
                try:
                    ask(self.port, key)
                except OSError:
                    self.failures += 1
            self.cycles += 1
            next_due += self.interval
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
