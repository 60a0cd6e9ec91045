"""The soak's network: each commune in a network namespace of its own, joined to the host
by a veth pair, the collector (and its sink) in one of its own likewise, and the broker
and VictoriaMetrics on an address of the host's that every namespace reaches.

A partition takes the host's end of a namespace's veth down: its packets are dropped
silently (no reset, no ICMP), as when a commune's line goes. Cutting the collector's
takes it from the broker, from VictoriaMetrics (its sink) and from the API's callers
alike: what a collector's network going away does. ``tc netem`` would add delay and
loss too; where the kernel has no netem (``netem_available``) the link going down is
what a partition is. The targets a commune's agents probe live inside its namespace, so
that cutting the commune from the broker does not take them down too.

A commune's agents reach the collector's API (the launcher's releases) through the
host, which forwards between the soak's veths only: forwarding is turned on for those
links alone (``net.ipv4.conf.<link>.forwarding``), never for the machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Every namespace, link and address the soak makes carries this prefix (and nothing else
#: on the machine does), so that what a dead run left behind can be found and removed.
PREFIX = "cmsoak"
#: The broker's address, on the host's loopback: reachable from every commune.
BROKER_ADDRESS = "10.77.255.1"
#: The collector's namespace: the index 0 of the communes' scheme (10.77.0.2 inside).
COLLECTOR_INDEX = 0
COLLECTOR_ADDRESS = f"10.77.{COLLECTOR_INDEX}.2"
_CLONE_NEWNET = 0x40000000


def ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *arguments], check=check, capture_output=True, text=True)


def netem_available() -> bool:
    """Whether this kernel has the netem queueing discipline (delay, loss)."""
    probe = f"{PREFIX}probe"
    ip("link", "add", probe, "type", "veth", "peer", "name", f"{probe}p", check=False)
    try:
        done = subprocess.run(
            ["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"],
            check=False,
            capture_output=True,
        )
        return done.returncode == 0
    finally:
        ip("link", "del", probe, check=False)


def remove_leftovers() -> None:
    """Namespaces and links of an earlier run that died before cleaning up."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            ip("netns", "del", name, check=False)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX):
            ip("link", "del", name, check=False)
    HostAddress().down()


class HostAddress:
    """``BROKER_ADDRESS`` on the host's loopback (this kernel may have no dummy links);
    labelled with the prefix, so that a dead run's is found."""

    label = f"lo:{PREFIX}"

    def up(self) -> None:
        self.down()
        ip("addr", "add", f"{BROKER_ADDRESS}/32", "dev", "lo", "label", self.label)

    def down(self) -> None:
        ip("addr", "del", f"{BROKER_ADDRESS}/32", "dev", "lo", check=False)


def _enter(namespace: str) -> None:
    """Move the calling thread into a network namespace (setns applies per thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {namespace}")
    finally:
        os.close(fd)


@dataclass
class CommuneNet:
    """One commune's namespace (or the collector's, index ``COLLECTOR_INDEX``):
    ``10.77.<index>.2`` inside, ``.1`` on the host's side."""

    index: int
    name: str = field(init=False)
    host_link: str = field(init=False)
    cut: bool = False

    def __post_init__(self) -> None:
        self.name = f"{PREFIX}{self.index}"
        self.host_link = f"{PREFIX}{self.index}h"

    @property
    def inside(self) -> str:
        return f"10.77.{self.index}.2"

    def create(self) -> None:
        inner = f"{PREFIX}{self.index}n"
        ip("netns", "add", self.name)
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", self.name)
        ip("addr", "add", f"10.77.{self.index}.1/24", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")
        # From this link to another of the soak's (a commune to the collector's API and
        # back); the machine's own forwarding is left as it is.
        Path(f"/proc/sys/net/ipv4/conf/{self.host_link}/forwarding").write_text("1\n")
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "addr", "add", f"{self.inside}/24", "dev", inner)
        self.run("ip", "link", "set", inner, "up")
        self.run("ip", "route", "add", "default", "via", f"10.77.{self.index}.1")

    def run(self, *command: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, *command], check=True, capture_output=True
        )

    def prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def partition(self) -> None:
        ip("link", "set", self.host_link, "down")
        self.cut = True

    def heal(self) -> None:
        ip("link", "set", self.host_link, "up")
        self.cut = False

    def destroy(self) -> None:
        ip("link", "del", self.host_link, check=False)
        ip("netns", "del", self.name, check=False)


class Targets:
    """The TCP and HTTP services a commune's agents probe, on the namespace's loopback,
    served by one thread that lives in the namespace: ``down(port)`` closes the listener
    (connections refused), ``up(port)`` opens it again."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[int, socket.socket] = {}
        self._orders: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"targets-{namespace}")

    def start(self) -> Targets:
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise self._failed
        return self

    def _do(self, order: Callable[[], None]) -> None:
        done = threading.Event()
        with self._lock:
            self._orders.append((order, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise TimeoutError(f"the targets of {self.namespace} do not answer")

    def open(self) -> int:
        """A new listener on a free port of the namespace's loopback; its port."""
        opened: list[int] = []

        def order() -> None:
            opened.append(self._listen(0))

        self._do(order)
        return opened[0]

    def up(self, port: int) -> None:
        self._do(lambda: self._listen(port))

    def down(self, port: int) -> None:
        def order() -> None:
            listener = self._listeners.pop(port, None)
            if listener is not None:
                self._selector.unregister(listener)
                listener.close()

        self._do(order)

    def is_up(self, port: int) -> bool:
        return port in self._listeners

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        bound = int(listener.getsockname()[1])
        self._listeners[bound] = listener
        self._selector.register(listener, selectors.EVENT_READ, "listener")
        return bound

    def _serve(self) -> None:
        try:
            _enter(self.namespace)
        except OSError as exc:
            self._failed = exc
            self._ready.set()
            return
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._ready.set()
        while not self._stop.is_set():
            for key, _events in self._selector.select(0.5):
                if key.data == "wake":
                    self._wake_r.recv(4096)
                    with self._lock:
                        orders, self._orders = self._orders, []
                    for order, done in orders:
                        order()
                        done.set()
                elif key.data == "listener":
                    self._answer(key.fileobj)  # type: ignore[arg-type]
        for listener in self._listeners.values():
            listener.close()

    @staticmethod
    def _answer(listener: socket.socket) -> None:
        """An HTTP answer to whoever connects: a TCP probe only connects and closes, an
        HTTP probe reads a 200 (the request is not waited for: the answer is the same)."""
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.setblocking(True)
                connection.settimeout(0.5)
                with contextlib.suppress(OSError):
                    connection.recv(4096)
                    connection.sendall(
                        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
                    )

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()
