"""The checks an agent can run, by the name used in config, docs and on the wire.

A check's module is imported the first time a config names its kind: a PC's agent
(host, antivirus, link) never loads the SNMP, Polycom or shared-system checks and
what they bring (pysnmp's protocol layer, the HTTP client and its e-mail parser).
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.checks.base import Check

#: kind -> the module and class that implement it.
REGISTRY: dict[str, tuple[str, str]] = {
    "host": ("agent.checks.host", "HostCheck"),
    "antivirus": ("agent.checks.antivirus", "AntivirusCheck"),
    "link": ("agent.checks.link", "LinkCheck"),
    "snmp": ("agent.checks.snmp", "SnmpCheck"),
    "polycom": ("agent.checks.polycom", "PolycomCheck"),
    "system": ("agent.checks.system", "SystemCheck"),
}


def check_type(kind: str) -> type[Check[Any]]:
    """The class of the check ``kind`` (a key of ``REGISTRY``), its module loaded now."""
    module, name = REGISTRY[kind]
    found: type[Check[Any]] = getattr(importlib.import_module(module), name)
    return found
