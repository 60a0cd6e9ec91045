"""The checks an agent can run, by the name used in config, docs and on the wire."""

from __future__ import annotations

from typing import Any

from agent.checks.antivirus import AntivirusCheck
from agent.checks.base import Check
from agent.checks.host import HostCheck
from agent.checks.link import LinkCheck
from agent.checks.polycom import PolycomCheck
from agent.checks.snmp import SnmpCheck
from agent.checks.system import SystemCheck

REGISTRY: dict[str, type[Check[Any]]] = {
    "host": HostCheck,
    "antivirus": AntivirusCheck,
    "link": LinkCheck,
    "snmp": SnmpCheck,
    "polycom": PolycomCheck,
    "system": SystemCheck,
}
