"""snmp: a router's or switch's identity, uptime and per-interface status, traffic and errors.

Interfaces are read with GETBULK walks of ifTable and ifXTable. Traffic uses the
64-bit counters where the device has them and falls back to 32-bit ones; rates
handle counter wraps and device reboots and are never above the interface speed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import ClassVar

from agent.checks.base import AsyncCheck
from agent.checks.options import SnmpOptions
from agent.snmp import oids
from agent.snmp.client import SnmpClient, SnmpError, SnmpValue, integer, text
from agent.snmp.rates import CounterReading, counter_rate
from agent.wire import Sample

# One index arc in ASCII digits: the index comes from the device, and
# str.isdigit() also accepts "²", which int() refuses.
_ARC = re.compile(r"[0-9]{1,10}")


class SnmpCheck(AsyncCheck[SnmpOptions]):
    kind: ClassVar[str] = "snmp"
    default_timeout = 20.0

    def __init__(self, options: SnmpOptions, clock: Callable[[], float] = time.time) -> None:
        super().__init__(options, clock)
        self._client: SnmpClient | None = None
        # ifIndex -> counter name -> last reading, for rates between runs.
        self._previous: dict[str, dict[str, CounterReading]] = {}

    def describe(self) -> str:
        return f"snmp:{self.name} ({self.options.host} v{self.options.version})"

    @property
    def client(self) -> SnmpClient:
        if self._client is None:
            self._client = SnmpClient(self.options.snmp_target(self.timeout))
        return self._client

    async def collect(self) -> list[Sample]:
        now = self.clock()
        host = self.options.host
        try:
            system = await self.client.get(list(oids.SYSTEM_SCALARS))
            if oids.SYS_UPTIME not in system:
                raise SnmpError("bad_response", f"{host} has no sysUpTime")
            if_table = await self.client.walk(list(oids.IF_TABLE.values()))
            if_x_table = await self.client.walk(list(oids.IF_X_TABLE.values()))
        except SnmpError as exc:
            return [self.sample(exc.outcome, ts=now, target=host, fields={"up": 0}, error=str(exc))]
        polled_at = time.monotonic()
        uptime_cs = integer(system.get(oids.SYS_UPTIME))
        columns = {name: if_table[oid] for name, oid in oids.IF_TABLE.items()}
        columns.update({name: if_x_table[oid] for name, oid in oids.IF_X_TABLE.items()})
        interfaces = self._interfaces(now, columns, polled_at, uptime_cs)
        up = sum(1 for s in interfaces if s.fields.get("oper_up") is True)
        main = self.sample(
            "ok",
            ts=now,
            target=host,
            fields={
                "up": 1,
                "uptime_s": uptime_cs / 100.0 if uptime_cs is not None else None,
                "sys_descr": text(system.get(oids.SYS_DESCR))[:500],
                "sys_name": text(system.get(oids.SYS_NAME))[:200],
                "sys_object_id": text(system.get(oids.SYS_OBJECT_ID)),
                "interfaces": len(interfaces),
                "interfaces_up": up,
            },
        )
        return [main, *interfaces]

    def _interfaces(
        self,
        now: float,
        columns: dict[str, dict[str, SnmpValue]],
        polled_at: float,
        uptime_cs: int | None,
    ) -> list[Sample]:
        samples: list[Sample] = []
        indexes = sorted(set(columns["descr"]) | set(columns["name"]), key=_index_key)
        seen: set[str] = set()
        for index in indexes:
            name = text(columns["name"].get(index)) or text(columns["descr"].get(index)) or index
            if not self.options.interfaces.accepts(name):
                continue
            seen.add(index)
            samples.append(self._interface(now, index, name, columns, polled_at, uptime_cs))
        for gone in set(self._previous) - seen:
            del self._previous[gone]
        return samples

    def _interface(
        self,
        now: float,
        index: str,
        name: str,
        columns: dict[str, dict[str, SnmpValue]],
        polled_at: float,
        uptime_cs: int | None,
    ) -> Sample:
        high_speed = integer(columns["high_speed"].get(index))
        speed = integer(columns["speed"].get(index))
        # ifSpeed saturates at 4.29 Gb/s; ifHighSpeed (Mb/s) is right when present.
        speed_bps = high_speed * 1_000_000 if high_speed else speed
        previous = self._previous.setdefault(index, {})
        rates: dict[str, float | None] = {}
        for direction in ("in", "out"):
            reading = self._reading(columns, direction, index, polled_at, uptime_cs)
            key = f"{direction}_octets"
            if reading is None:
                previous.pop(key, None)
                rates[f"{direction}_bps"] = None
                continue
            octets_ceiling = speed_bps / 8.0 if speed_bps else None
            rate = counter_rate(previous.get(key), reading, octets_ceiling)
            rates[f"{direction}_bps"] = None if rate is None else rate * 8.0
            previous[key] = reading
            errors = integer(columns[f"{direction}_errors"].get(index))
            error_key = f"{direction}_errors"
            if errors is not None:
                error_reading = CounterReading(errors, 32, polled_at, uptime_cs)
                rates[f"{direction}_errors_ps"] = counter_rate(
                    previous.get(error_key), error_reading
                )
                previous[error_key] = error_reading
        oper = integer(columns["oper_status"].get(index))
        return self.sample(
            "ok",
            ts=now,
            item="interface",
            target=name,
            fields={
                "oper_status": oper,
                "oper_up": oper == 1 if oper is not None else None,
                "oper_state": oids.OPER_STATUS.get(oper, "unknown") if oper is not None else None,
                "admin_status": integer(columns["admin_status"].get(index)),
                "speed_bps": speed_bps,
                "alias": text(columns["alias"].get(index))[:200] or None,
                "counters": 64 if integer(columns["hc_in_octets"].get(index)) is not None else 32,
                **rates,
            },
            tags={"ifindex": index},
        )

    @staticmethod
    def _reading(
        columns: dict[str, dict[str, SnmpValue]],
        direction: str,
        index: str,
        polled_at: float,
        uptime_cs: int | None,
    ) -> CounterReading | None:
        wide = integer(columns[f"hc_{direction}_octets"].get(index))
        if wide is not None:
            return CounterReading(wide, 64, polled_at, uptime_cs)
        narrow = integer(columns[f"{direction}_octets"].get(index))
        if narrow is not None:
            return CounterReading(narrow, 32, polled_at, uptime_cs)
        return None


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(p) for p in index.split(".") if _ARC.fullmatch(p))
