"""A small asyncio SNMP client over pysnmp 7: GET of scalars and multi-column bulk walks.

pysnmp is imported here only, and only when an SNMP-based check is configured,
so the thousands of PCs that poll nothing over SNMP never pay for it.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.configtypes import Secret
from agent.wire import Outcome

SnmpValue = int | str | bytes
AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256"]

MAX_ROWS_PER_COLUMN = 10_000
"""A device that never ends its table must not exhaust the agent's memory."""


@dataclass(frozen=True)
class SnmpTarget:
    host: str
    port: int = 161
    version: Literal["2c", "3"] = "2c"
    community: Secret = field(default_factory=lambda: Secret("public"))
    user: str = ""
    auth_protocol: AuthProtocol = "SHA"
    auth_key: Secret = field(default_factory=lambda: Secret(""))
    priv_protocol: PrivProtocol = "AES"
    priv_key: Secret = field(default_factory=lambda: Secret(""))
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = 25


class SnmpError(Exception):
    """The device did not answer usefully; ``outcome`` says how (timeout, down, bad_response)."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome


# One engine per event loop: engines are heavy, and pysnmp binds each to its loop.
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _engine() -> Any:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        engine = SnmpEngine()
        _engines[loop] = engine
    return engine


def close_engine() -> None:
    """Close this loop's engine (its UDP sockets); call before the loop ends."""
    loop = asyncio.get_running_loop()
    engine = _engines.pop(loop, None)
    if engine is not None:
        engine.close_dispatcher()


def _auth_data(target: SnmpTarget) -> Any:
    from pysnmp.hlapi.v3arch import asyncio as hl

    if target.version == "2c":
        return hl.CommunityData(target.community.reveal(), mpModel=1)
    auth = {
        "MD5": hl.usmHMACMD5AuthProtocol,
        "SHA": hl.usmHMACSHAAuthProtocol,
        "SHA224": hl.usmHMAC128SHA224AuthProtocol,
        "SHA256": hl.usmHMAC192SHA256AuthProtocol,
        "SHA384": hl.usmHMAC256SHA384AuthProtocol,
        "SHA512": hl.usmHMAC384SHA512AuthProtocol,
    }[target.auth_protocol]
    priv = {
        "DES": hl.usmDESPrivProtocol,
        "3DES": hl.usm3DESEDEPrivProtocol,
        "AES": hl.usmAesCfb128Protocol,
        "AES192": hl.usmAesCfb192Protocol,
        "AES256": hl.usmAesCfb256Protocol,
    }[target.priv_protocol]
    auth_key = target.auth_key.reveal() or None
    priv_key = target.priv_key.reveal() or None
    return hl.UsmUserData(
        target.user,
        authKey=auth_key,
        privKey=priv_key,
        authProtocol=auth if auth_key else hl.usmNoAuthProtocol,
        privProtocol=priv if priv_key else hl.usmNoPrivProtocol,
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
    return tuple(int(part) for part in oid.split(".") if part)


class SnmpClient:
    def __init__(self, target: SnmpTarget) -> None:
        self.target = target
        self._auth = _auth_data(target)

    async def _transport(self) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        try:
            return await UdpTransportTarget.create(
                (self.target.host, self.target.port),
                timeout=self.target.timeout,
                retries=self.target.retries,
            )
        except Exception as exc:  # pysnmp raises its own PySnmpError for bad names
            raise SnmpError("down", f"cannot resolve {self.target.host}: {exc}") from None

    def _check(self, error_indication: Any, error_status: Any, error_index: Any) -> None:
        if error_indication:
            message = str(error_indication)
            outcome: Outcome = "timeout" if "timeout" in message.lower() else "bad_response"
            raise SnmpError(outcome, f"{self.target.host}:{self.target.port}: {message}")
        if error_status and int(error_status) != 0:
            raise SnmpError(
                "bad_response",
                f"{self.target.host}: SNMP error {error_status.prettyPrint()} at {error_index}",
            )

    async def get(self, oids: list[str]) -> dict[str, SnmpValue]:
        """Values of the OIDs the device has; missing objects are simply absent."""
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, get_cmd

        transport = await self._transport()
        error_indication, error_status, error_index, var_binds = await get_cmd(
            _engine(),
            self._auth,
            transport,
            ContextData(),
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        self._check(error_indication, error_status, error_index)
        values: dict[str, SnmpValue] = {}
        for oid, value in var_binds:
            converted = to_python(value)
            if converted is not None:
                values[str(oid)] = converted
        return values

    async def walk(self, columns: list[str]) -> dict[str, dict[str, SnmpValue]]:
        """Walk several table columns side by side with GETBULK: column -> index -> value."""
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, bulk_cmd

        transport = await self._transport()
        results: dict[str, dict[str, SnmpValue]] = {column: {} for column in columns}
        cursor = {column: column for column in columns}
        while cursor:
            names = list(cursor)
            error_indication, error_status, error_index, var_binds = await bulk_cmd(
                _engine(),
                self._auth,
                transport,
                ContextData(),
                0,
                self.target.max_repetitions,
                *(ObjectType(ObjectIdentity(cursor[name])) for name in names),
                lookupMib=False,
            )
            self._check(error_indication, error_status, error_index)
            finished = self._absorb(names, var_binds, cursor, results)
            if not var_binds:
                finished = set(names)
            for name in finished:
                cursor.pop(name, None)
        return results

    @staticmethod
    def _absorb(
        names: list[str],
        var_binds: Any,
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
            oid_text = str(oid)
            converted = to_python(value)
            beyond = not oid_text.startswith(column + ".")
            # A device that answers an OID not after the previous one would loop forever.
            not_advancing = _oid_tuple(oid_text) <= _oid_tuple(cursor[column])
            if beyond or converted is None or not_advancing:
                finished.add(column)
                continue
            rows = results[column]
            rows[oid_text[len(column) + 1 :]] = converted
            cursor[column] = oid_text
            if len(rows) >= MAX_ROWS_PER_COLUMN:
                finished.add(column)
        return finished
