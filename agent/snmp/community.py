"""SNMPv2c on pysnmp's protocol layer: PDUs built and parsed with pyasn1, sent over asyncio UDP.

v2c needs no engine — no USM, no MIB instrumentation — so this path costs about
3 MB where pysnmp's engine and high-level API cost 20-30 MB; the poller PCs of
most communes (whose routers speak v2c) stay light. SNMPv3 goes through the
engine (``agent.snmp.usm``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from agent.snmp.errors import SnmpError

VarBinds = list[tuple[str, Any]]


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.answers.put_nowait(exc)


class CommunityTransport:
    def __init__(self, host: str, port: int, community: str, timeout: float, retries: int) -> None:
        self.host = host
        self.port = port
        self.community = community
        self.timeout = timeout
        self.retries = retries

    async def get(self, oids: list[str]) -> VarBinds:
        from pysnmp.proto.api import v2c

        pdu = v2c.GetRequestPDU()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_varbinds(pdu, [(oid, v2c.Null("")) for oid in oids])
        return await self._exchange(pdu)

    async def bulk(self, oids: list[str], max_repetitions: int) -> VarBinds:
        from pysnmp.proto.api import v2c

        pdu = v2c.GetBulkRequestPDU()
        v2c.apiBulkPDU.set_defaults(pdu)
        v2c.apiBulkPDU.set_non_repeaters(pdu, 0)
        v2c.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
        v2c.apiBulkPDU.set_varbinds(pdu, [(oid, v2c.Null("")) for oid in oids])
        return await self._exchange(pdu)

    async def _exchange(self, pdu: Any) -> VarBinds:
        from pyasn1.codec.ber import encoder
        from pysnmp.proto.api import v2c

        request_id = random.randrange(1, 2**31 - 1)
        v2c.apiPDU.set_request_id(pdu, request_id)
        message = v2c.Message()
        v2c.apiMessage.set_defaults(message)
        v2c.apiMessage.set_community(message, self.community)
        v2c.apiMessage.set_pdu(message, pdu)
        request = encoder.encode(message)
        loop = asyncio.get_running_loop()
        try:
            transport, exchange = await loop.create_datagram_endpoint(
                _Exchange, remote_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise SnmpError("down", f"{self.host}:{self.port}: {exc.strerror or exc}") from None
        try:
            for _attempt in range(self.retries + 1):
                transport.sendto(request)
                answer = await self._answer(exchange, request_id)
                if answer is not None:
                    return answer
        finally:
            transport.close()
        raise SnmpError(
            "timeout",
            f"{self.host}:{self.port}: no SNMP response within "
            f"{self.timeout:g}s x {self.retries + 1}",
        )

    async def _answer(self, exchange: _Exchange, request_id: int) -> VarBinds | None:
        """The response to ``request_id``, or None on timeout; stale datagrams are skipped."""
        from pyasn1.codec.ber import decoder
        from pyasn1.error import PyAsn1Error
        from pysnmp.proto.api import v2c

        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                data = await asyncio.wait_for(exchange.answers.get(), remaining)
            except TimeoutError:
                return None
            if isinstance(data, ConnectionRefusedError):
                raise SnmpError(
                    "refused", f"{self.host}:{self.port}: port unreachable (no SNMP agent)"
                )
            if isinstance(data, Exception):
                raise SnmpError("down", f"{self.host}:{self.port}: {data}")
            try:
                message, _rest = decoder.decode(data, asn1Spec=v2c.Message())
                response = v2c.apiMessage.get_pdu(message)
                if int(v2c.apiPDU.get_request_id(response)) != request_id:
                    continue
                status = int(v2c.apiPDU.get_error_status(response))
                if status:
                    index = v2c.apiPDU.get_error_index(response, muteErrors=True)
                    raise SnmpError(
                        "bad_response",
                        f"{self.host}: SNMP error-status {status} at varbind {index}",
                    )
                return [(str(oid), value) for oid, value in v2c.apiPDU.get_varbinds(response)]
            except (PyAsn1Error, ValueError, TypeError) as exc:
                raise SnmpError(
                    "bad_response", f"{self.host}: undecodable SNMP answer ({exc})"
                ) from None
