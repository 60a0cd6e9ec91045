"""SNMPv3 (USM: auth and privacy) through pysnmp's engine and asyncio high-level API.

USM needs engine discovery, key localisation and per-engine state, which is what
pysnmp's engine does; it costs 20-30 MB, paid only by pollers with a v3 device.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from agent.snmp.errors import SnmpError
from agent.wire import Outcome

VarBinds = list[tuple[str, Any]]

# One engine per event loop: engines are heavy, and pysnmp binds each to its loop.
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

AUTH_PROTOCOLS = {
    "MD5": "usmHMACMD5AuthProtocol",
    "SHA": "usmHMACSHAAuthProtocol",
    "SHA224": "usmHMAC128SHA224AuthProtocol",
    "SHA256": "usmHMAC192SHA256AuthProtocol",
    "SHA384": "usmHMAC256SHA384AuthProtocol",
    "SHA512": "usmHMAC384SHA512AuthProtocol",
}
PRIV_PROTOCOLS = {
    "DES": "usmDESPrivProtocol",
    "3DES": "usm3DESEDEPrivProtocol",
    "AES": "usmAesCfb128Protocol",
    "AES192": "usmAesCfb192Protocol",
    "AES256": "usmAesCfb256Protocol",
}


def _engine() -> Any:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        engine = SnmpEngine()
        _engines[loop] = engine
    return engine


def close_engine() -> None:
    """Close this loop's engine (its UDP sockets), if one was made."""
    engine = _engines.pop(asyncio.get_running_loop(), None)
    if engine is not None:
        engine.close_dispatcher()


class UsmTransport:
    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        auth_protocol: str,
        auth_key: str,
        priv_protocol: str,
        priv_key: str,
        timeout: float,
        retries: int,
    ) -> None:
        from pysnmp.hlapi.v3arch import asyncio as hl

        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self._auth = hl.UsmUserData(
            user,
            authKey=auth_key or None,
            privKey=priv_key or None,
            authProtocol=getattr(hl, AUTH_PROTOCOLS[auth_protocol])
            if auth_key
            else hl.usmNoAuthProtocol,
            privProtocol=getattr(hl, PRIV_PROTOCOLS[priv_protocol])
            if priv_key
            else hl.usmNoPrivProtocol,
        )

    async def _target(self) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        try:
            return await UdpTransportTarget.create(
                (self.host, self.port), timeout=self.timeout, retries=self.retries
            )
        except Exception as exc:  # pysnmp raises its own PySnmpError for bad names
            raise SnmpError("down", f"cannot resolve {self.host}: {exc}") from None

    def _check(self, error_indication: Any, error_status: Any, error_index: Any) -> None:
        if error_indication:
            message = str(error_indication)
            outcome: Outcome = "timeout" if "timeout" in message.lower() else "bad_response"
            raise SnmpError(outcome, f"{self.host}:{self.port}: {message}")
        if error_status and int(error_status) != 0:
            raise SnmpError(
                "bad_response",
                f"{self.host}: SNMP error {error_status.prettyPrint()} at varbind {error_index}",
            )

    async def get(self, oids: list[str]) -> VarBinds:
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, get_cmd

        result = await get_cmd(
            _engine(),
            self._auth,
            await self._target(),
            ContextData(),
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        self._check(*result[:3])
        return [(str(oid), value) for oid, value in result[3]]

    async def bulk(self, oids: list[str], max_repetitions: int) -> VarBinds:
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, bulk_cmd

        result = await bulk_cmd(
            _engine(),
            self._auth,
            await self._target(),
            ContextData(),
            0,
            max_repetitions,
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        self._check(*result[:3])
        return [(str(oid), value) for oid, value in result[3]]
