"""Blocking socket reads bounded by one deadline for a whole exchange (a probe's answer,
ClamAV's reply), not a timeout per read: a peer trickling a byte at a time cannot hold
a check's thread past its deadline."""

from __future__ import annotations

import socket
import time


def recv_before(sock: socket.socket, deadline: float, size: int = 4096) -> bytes:
    """What the next read returns (b"": the peer closed); TimeoutError once
    ``deadline`` (``time.perf_counter()``) has passed."""
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)
    return sock.recv(size)
