"""Polycom over SNMP: POLYCOM-ENDPOINT-MIB on Group Series, a few scalars on older HDX."""

from __future__ import annotations

from agent.polycom.readiness import EndpointState
from agent.snmp import oids
from agent.snmp.client import SnmpClient, SnmpError, SnmpValue, integer, text

OK = 2
FAILED = 3


def _status_ok(value: SnmpValue | None) -> bool | None:
    """ok(2) -> True, failed(3) -> False, disabled(1) or absent -> None (not a failure)."""
    status = integer(value)
    if status == OK:
        return True
    if status == FAILED:
        return False
    return None


def _registered(value: SnmpValue | None) -> bool | None:
    status = integer(value)
    if status is None or status == 1:  # absent or disabled: this protocol is not used
        return None
    return status == OK


async def read_polycom_snmp(client: SnmpClient) -> EndpointState:
    scalars = await client.get(
        [*oids.POLYCOM_SCALARS.values(), oids.SYS_UPTIME, oids.SYS_OBJECT_ID]
    )
    values = {name: scalars.get(oid) for name, oid in oids.POLYCOM_SCALARS.items()}
    uptime = integer(scalars.get(oids.SYS_UPTIME))
    object_id = text(scalars.get(oids.SYS_OBJECT_ID))
    if values["model"] is None:
        if object_id.startswith(oids.HDX_ENTERPRISE):
            return await _read_hdx(client, uptime)
        raise SnmpError("bad_response", f"not a Polycom endpoint (sysObjectID {object_id or '?'})")
    sip_rows = (await client.walk([oids.POLYCOM_SIP_REGISTRATION]))[oids.POLYCOM_SIP_REGISTRATION]
    sip_registered = (
        _registered(values["sip_status"])
        if not sip_rows
        else any(integer(v) == OK for v in sip_rows.values())
    )
    calls = await client.walk(list(oids.POLYCOM_CALLS.values()))
    call_rows = calls[oids.POLYCOM_CALLS["call_id"]]
    quality: dict[str, float] = {}
    for name, oid in oids.POLYCOM_CALLS.items():
        numbers = [v for v in calls[oid].values() if isinstance(v, int)]
        if name != "call_id" and numbers:
            quality[name] = float(max(numbers))
    gatekeeper = integer(values["gatekeeper_status"])
    return EndpointState(
        reachable=True,
        family="group_series",
        model=text(values["model"]),
        software_version=text(values["software_version"]),
        serial=text(values["serial"]),
        uptime_s=uptime / 100.0 if uptime is not None else None,
        h323_registered=None if gatekeeper in (None, 1) else gatekeeper == OK,
        sip_registered=sip_registered,
        camera_ok=_status_ok(values["cameras_status"]),
        microphone_ok=_status_ok(values["microphones_status"]),
        active_calls=len(call_rows),
        active_conferences=integer(values["active_conferences"]),
        call_quality=quality,
    )


async def _read_hdx(client: SnmpClient, uptime: int | None) -> EndpointState:
    values = await client.get(list(oids.HDX_SCALARS.values()))
    quality = {
        name: float(value)
        for name, oid in oids.HDX_SCALARS.items()
        if isinstance(value := values.get(oid), int)
    }
    return EndpointState(
        reachable=True,
        family="hdx",
        uptime_s=uptime / 100.0 if uptime is not None else None,
        call_quality=quality,
        notes=["HDX: registration and peripherals are not readable over SNMP"],
    )
