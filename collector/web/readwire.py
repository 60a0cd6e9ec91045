"""What the collector and its read process say to each other about a request.

The collector's HTTP server hands a read (``collector/web/forward.py``) to the read
process (``collector/web/readprocess.py``) over a Unix socket in a directory only the
collector's user can enter, one request at a time on a connection: a frame is four
bytes of length, then MessagePack. Only what an ASGI application reads of a GET is
sent (no body: a request with one is never handed over).
"""

from __future__ import annotations

import asyncio

import msgspec

#: A frame's length in four bytes, big-endian.
_LENGTH = 4
#: A request is its line and headers (the server bounds them to a few KiB).
MAX_REQUEST_BYTES = 1024 * 1024
#: An answer: the national list's pages and the console's pages are well under this.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


class Ask(msgspec.Struct, array_like=True, frozen=True):
    """A GET or HEAD as the collector's server received it."""

    method: str
    scheme: str
    http_version: str
    path: str
    raw_path: bytes
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None


class Answer(msgspec.Struct, array_like=True, frozen=True):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class FrameTooLarge(Exception):
    pass


_ENCODER = msgspec.msgpack.Encoder()
ASK = msgspec.msgpack.Decoder(Ask)
ANSWER = msgspec.msgpack.Decoder(Answer)


def frame(message: Ask | Answer) -> bytes:
    payload = _ENCODER.encode(message)
    return len(payload).to_bytes(_LENGTH, "big") + payload


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One frame's payload; ``asyncio.IncompleteReadError`` at the end of the stream."""
    length = int.from_bytes(await reader.readexactly(_LENGTH), "big")
    if length > limit:
        raise FrameTooLarge(f"a frame of {length} bytes (at most {limit})")
    return await reader.readexactly(length)
