"""Boundaries the design depends on, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "agent"


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_agent_never_imports_the_collector() -> None:
    for path in AGENT.rglob("*.py"):
        assert not any(n == "collector" or n.startswith("collector.") for n in imports(path)), path


def test_checks_never_touch_transport_or_storage() -> None:
    """Checks observe and return samples; publishing and storing are the runner's job."""
    forbidden = ("paho", "sqlite3", "influxdb_client", "agent.outbox", "agent.publisher")
    for path in [
        *AGENT.glob("checks/*.py"),
        *AGENT.glob("snmp/*.py"),
        *AGENT.glob("polycom/*.py"),
        *AGENT.glob("antivirus/*.py"),
        AGENT / "probes.py",
    ]:
        bad = {n for n in imports(path) if n.startswith(forbidden)}
        assert not bad, f"{path} imports {bad}"


def test_the_wire_contract_stands_alone() -> None:
    """The collector imports agent.wire: it must not drag the agent's runtime along."""
    allowed = {"__future__", "math", "sys", "typing", "msgspec"}
    assert imports(AGENT / "wire.py") <= allowed


def test_pysnmp_is_loaded_only_by_the_snmp_client() -> None:
    """PCs that poll nothing over SNMP must not pay for pysnmp's import (memory, time)."""
    for path in AGENT.rglob("*.py"):
        if path.name == "client.py" and path.parent.name == "snmp":
            continue
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert not (module or "").startswith(("pysnmp", "pyasn1")), path


def test_a_plain_pc_agent_does_not_import_pysnmp() -> None:
    import subprocess
    import sys

    code = "import sys, agent.runner, agent.cli, agent.config; print('pysnmp' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_collector_takes_only_the_wire_contract_and_config_types_from_the_agent() -> None:
    """The wire contract, and the dependency-free config value types, units and decoding."""
    collector = AGENT.parent / "collector"
    for path in collector.rglob("*.py"):
        from_agent = {n for n in imports(path) if n == "agent" or n.startswith("agent.")}
        allowed = {"agent.wire", "agent.configtypes", "agent.units", "agent.systemd", "agent"}
        assert from_agent <= allowed, f"{path} imports {from_agent}"


def test_config_types_stand_alone() -> None:
    assert imports(AGENT / "configtypes.py") <= {
        "__future__",
        "re",
        "tomllib",
        "pathlib",
        "urllib.parse",
        "os",
        "agent.wire",
        "typing",
        "msgspec",
        "agent.units",
    }
    assert imports(AGENT / "units.py") <= {"__future__", "re"}


def test_the_service_installer_stands_alone() -> None:
    """The collector installs itself with agent.systemd: standard library only."""
    stdlib = {"__future__", "grp", "os", "pwd", "shlex", "shutil", "stat", "subprocess", "sys"}
    stdlib |= {"collections.abc", "dataclasses", "pathlib"}
    assert imports(AGENT / "systemd.py") <= stdlib
