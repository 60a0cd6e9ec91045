"""Device knowledge as data: the OIDs each device family is read through."""

from __future__ import annotations

from typing import Final

# SNMPv2-MIB system group
SYS_DESCR: Final = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID: Final = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
SYS_NAME: Final = "1.3.6.1.2.1.1.5.0"
SYSTEM_SCALARS: Final = (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME)

# IF-MIB ifTable (32-bit) and ifXTable (64-bit) columns, walked as tables.
IF_TABLE: Final = {
    "descr": "1.3.6.1.2.1.2.2.1.2",
    "speed": "1.3.6.1.2.1.2.2.1.5",
    "admin_status": "1.3.6.1.2.1.2.2.1.7",
    "oper_status": "1.3.6.1.2.1.2.2.1.8",
    "in_octets": "1.3.6.1.2.1.2.2.1.10",
    "in_errors": "1.3.6.1.2.1.2.2.1.14",
    "out_octets": "1.3.6.1.2.1.2.2.1.16",
    "out_errors": "1.3.6.1.2.1.2.2.1.20",
}
IF_X_TABLE: Final = {
    "name": "1.3.6.1.2.1.31.1.1.1.1",
    "hc_in_octets": "1.3.6.1.2.1.31.1.1.1.6",
    "hc_out_octets": "1.3.6.1.2.1.31.1.1.1.10",
    "high_speed": "1.3.6.1.2.1.31.1.1.1.15",
    "alias": "1.3.6.1.2.1.31.1.1.1.18",
}
OPER_STATUS: Final = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "not_present",
    7: "lower_layer_down",
}

# POLYCOM-ENDPOINT-MIB (RealPresence Group Series), enterprise 13885.
POLYCOM_PREFIX: Final = "1.3.6.1.4.1.13885.101.1"
POLYCOM_SCALARS: Final = {
    "software_version": f"{POLYCOM_PREFIX}.1.1.0",
    "device_type": f"{POLYCOM_PREFIX}.1.3.0",
    "model": f"{POLYCOM_PREFIX}.1.4.0",
    "serial": f"{POLYCOM_PREFIX}.1.5.0",
    "overall_status": f"{POLYCOM_PREFIX}.1.6.0",
    "h323_status": f"{POLYCOM_PREFIX}.2.7.1.0",
    "gatekeeper_status": f"{POLYCOM_PREFIX}.2.7.2.0",
    "sip_status": f"{POLYCOM_PREFIX}.2.8.1.0",
    "hardware_status": f"{POLYCOM_PREFIX}.3.1.0",
    "microphones_status": f"{POLYCOM_PREFIX}.3.5.1.0",
    "cameras_status": f"{POLYCOM_PREFIX}.3.6.1.0",
    "active_conferences": f"{POLYCOM_PREFIX}.5.1.0",
}
POLYCOM_SIP_REGISTRATION: Final = f"{POLYCOM_PREFIX}.2.8.3.1.2"
POLYCOM_CALLS: Final = {
    "call_id": f"{POLYCOM_PREFIX}.4.1.1.2",
    "loss_rx_percent": f"{POLYCOM_PREFIX}.4.1.1.16",
    "loss_tx_percent": f"{POLYCOM_PREFIX}.4.1.1.17",
    "latency_rx_ms": f"{POLYCOM_PREFIX}.4.1.1.18",
    "latency_tx_ms": f"{POLYCOM_PREFIX}.4.1.1.19",
    "jitter_rx_ms": f"{POLYCOM_PREFIX}.4.1.1.20",
    "jitter_tx_ms": f"{POLYCOM_PREFIX}.4.1.1.21",
}
#: disabled(1) ok(2) failed(3), for every status object of the MIB.
POLYCOM_STATUS: Final = {1: "disabled", 2: "ok", 3: "failed"}

# Older HDX units (enterprise 2684).
HDX_ENTERPRISE: Final = "1.3.6.1.4.1.2684"
HDX_SCALARS: Final = {
    "packet_loss": "1.3.6.1.4.1.2684.1.1.21.0",
    "jitter_ms": "1.3.6.1.4.1.2684.1.1.22.0",
    "latency_ms": "1.3.6.1.4.1.2684.1.1.23.0",
}
