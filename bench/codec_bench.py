"""The collector's MQTT codec with a big packet cut into small reads.

    .venv/bin/python bench/codec_bench.py [--mib 8] [--read 1400]

A packet of --mib MiB arrives in --read-byte pieces (a TCP segment each). The
baseline, measured in the same run, is what the reader did before: join the
buffer and the new read on every read, and look for a whole packet again.
"""

from __future__ import annotations

import argparse
import time

from collector.ingest import codec


def rebuild_per_read(pieces: list[bytes]) -> int:
    """The earlier reader's buffering: a new bytes object per read, every byte copied
    again each time (the packet's length parsed each time too)."""
    buffer = b""
    found = 0
    for piece in pieces:
        buffer = buffer + piece
        length, shift, at = 0, 0, 1
        while True:
            byte = buffer[at]
            length |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(buffer) >= at + length:
            found += 1
            buffer = buffer[at + length :]
    return found


def reader(pieces: list[bytes]) -> int:
    packets = codec.PacketReader(max_packet=64 * 1024 * 1024)
    return sum(len(packets.feed(piece)) for piece in pieces)


def timed(function: object, pieces: list[bytes]) -> float:
    started = time.perf_counter()
    assert function(pieces) == 1  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=float, default=8)
    parser.add_argument("--read", type=int, default=1400)
    args = parser.parse_args()
    payload = b"x" * int(args.mib * 1024 * 1024)
    packet = codec.publish("commune/dong-nai/la-nga/pc-01/data", payload, 1)
    pieces = [packet[at : at + args.read] for at in range(0, len(packet), args.read)]
    baseline = timed(rebuild_per_read, pieces)
    current = min(timed(reader, pieces) for _ in range(3))
    print(f"{args.mib:g} MiB packet in {len(pieces)} reads of {args.read} bytes")
    print(f"  rebuilding the buffer per read (before): {baseline * 1000:8.1f} ms")
    print(f"  PacketReader (now):                      {current * 1000:8.1f} ms")
    print(f"  ratio: {baseline / current:.0f}x faster")


if __name__ == "__main__":
    main()
