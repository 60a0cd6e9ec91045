"""A small asyncio SNMP client: GET of scalars and multi-column GETBULK walks.

v2c requests go through a light transport on pysnmp's protocol layer; v3 through
pysnmp's engine. Both are imported only when an SNMP-based check runs, so the
thousands of PCs that poll nothing over SNMP never pay for them.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Literal, Protocol

import msgspec

from agent.configtypes import Secret
from agent.snmp import AuthProtocol, PrivProtocol
from agent.snmp.errors import SnmpError

SnmpValue = int | str | bytes

MAX_ROWS_PER_COLUMN = 10_000
# One OID arc in ASCII digits (str.isdigit() also accepts "²", which int() refuses).
_ARC = re.compile(r"[0-9]{1,10}")
"""A device that never ends its table must not exhaust the agent's memory."""

__all__ = ["SnmpClient", "SnmpError", "SnmpTarget", "SnmpValue", "close_engine"]


class SnmpTarget(msgspec.Struct, frozen=True):
    """An SNMP agent to poll and how to log in to it (v2c community or v3 user)."""

    host: str
    port: int = 161
    version: Literal["2c", "3"] = "2c"
    community: Secret = msgspec.field(default_factory=lambda: Secret("public"))
    user: str = ""
    auth_protocol: AuthProtocol = "SHA"
    auth_key: Secret = msgspec.field(default_factory=lambda: Secret(""))
    priv_protocol: PrivProtocol = "AES"
    priv_key: Secret = msgspec.field(default_factory=lambda: Secret(""))
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = 25


class Transport(Protocol):
    async def get(self, oids: list[str]) -> list[tuple[str, Any]]: ...

    async def bulk(self, oids: list[str], max_repetitions: int) -> list[tuple[str, Any]]: ...


def close_engine() -> None:
    """Release the SNMPv3 engine of the running loop, if one was made."""
    if "agent.snmp.usm" in sys.modules:
        from agent.snmp.usm import close_engine as close_usm_engine

        close_usm_engine()


def _transport(target: SnmpTarget) -> Transport:
    if target.version == "2c":
        from agent.snmp.community import CommunityTransport

        return CommunityTransport(
            target.host, target.port, target.community.reveal(), target.timeout, target.retries
        )
    from agent.snmp.usm import UsmTransport

    return UsmTransport(
        target.host,
        target.port,
        target.user,
        target.auth_protocol,
        target.auth_key.reveal(),
        target.priv_protocol,
        target.priv_key.reveal(),
        target.timeout,
        target.retries,
    )


def to_python(value: Any) -> SnmpValue | None:
    """pysnmp/pyasn1 values as plain Python; None for noSuchObject/endOfMibView."""
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902, rfc1905

    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        return None
    if isinstance(value, univ.Null):
        return None
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in bytes(value))
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    if isinstance(value, univ.OctetString):
        return bytes(value)
    return str(value)


def text(value: SnmpValue | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\x00").strip()
    return str(value)


def integer(value: SnmpValue | None) -> int | None:
    return value if isinstance(value, int) else None


def _oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split(".") if _ARC.fullmatch(part))


class SnmpClient:
    def __init__(self, target: SnmpTarget) -> None:
        self.target = target
        self._transport = _transport(target)

    async def get(self, oids: list[str]) -> dict[str, SnmpValue]:
        """Values of the OIDs the device has; missing objects are simply absent."""
        values: dict[str, SnmpValue] = {}
        for oid, value in await self._transport.get(oids):
            converted = to_python(value)
            if converted is not None:
                values[oid] = converted
        return values

    async def walk(self, columns: list[str]) -> dict[str, dict[str, SnmpValue]]:
        """Walk several table columns side by side with GETBULK: column -> index -> value."""
        results: dict[str, dict[str, SnmpValue]] = {column: {} for column in columns}
        cursor = {column: column for column in columns}
        while cursor:
            names = list(cursor)
            var_binds = await self._transport.bulk(
                [cursor[name] for name in names], self.target.max_repetitions
            )
            finished = self._absorb(names, var_binds, cursor, results) if var_binds else set(names)
            for name in finished:
                cursor.pop(name, None)
        return results

    @staticmethod
    def _absorb(
        names: list[str],
        var_binds: list[tuple[str, Any]],
        cursor: dict[str, str],
        results: dict[str, dict[str, SnmpValue]],
    ) -> set[str]:
        """Take one GETBULK answer (row-major: repetition x column) into the results."""
        finished: set[str] = set()
        width = len(names)
        for position, (oid, value) in enumerate(var_binds):
            column = names[position % width]
            if column in finished:
                continue
            converted = to_python(value)
            beyond = not oid.startswith(column + ".")
            # A device that answers an OID not after the previous one would loop forever.
            not_advancing = _oid_tuple(oid) <= _oid_tuple(cursor[column])
            if beyond or converted is None or not_advancing:
                finished.add(column)
                continue
            rows = results[column]
            rows[oid[len(column) + 1 :]] = converted
            cursor[column] = oid
            if len(rows) >= MAX_ROWS_PER_COLUMN:
                finished.add(column)
        # Columns the answer did not advance at all (a truncated response) are done too,
        # rather than asked again forever.
        advanced = {names[i % width] for i in range(len(var_binds))}
        return finished | (set(names) - advanced)
