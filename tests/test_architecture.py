"""Boundaries the design depends on, checked on the source itself."""

from __future__ import annotations

import ast
import itertools
import re
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
    allowed = {"__future__", "hashlib", "math", "re", "sys", "typing", "msgspec"}
    assert imports(AGENT / "wire.py") <= allowed


def test_the_field_catalogue_stands_with_the_wire_contract() -> None:
    allowed = {"__future__", "math", "collections.abc", "dataclasses", "typing", "agent.wire"}
    assert imports(AGENT / "catalogue.py") <= allowed


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

    code = (
        "import sys, agent.runner, agent.cli, agent.commands, agent.config\n"
        "print('pysnmp' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_tuf_is_loaded_only_by_the_update_process() -> None:
    """The running agent never loads tuf and urllib3: the update runs them in a process
    of its own (``python -m agent.update.fetch``); the command line only in a command."""
    for path in AGENT.rglob("*.py"):
        if path.parent.name == "update" and path.name in ("fetch.py", "trust.py"):
            continue
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            base = f"{node.module}." if isinstance(node, ast.ImportFrom) else ""
            for name in (base + alias.name for alias in node.names):
                assert not name.startswith(("tuf", "urllib3")), path
                assert name not in ("agent.update.fetch", "agent.update.trust"), path
    code = (
        "import sys, agent.runner, agent.commands\n"
        "print(sorted({'tuf', 'urllib3'} & set(sys.modules)))"
    )
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_collector_takes_only_the_wire_contract_and_config_types_from_the_agent() -> None:
    """The wire contract and its field catalogue, the dependency-free config value
    types, units and decoding; and for check profiles, the agent's config decoder."""
    collector = AGENT.parent / "collector"
    for path in collector.rglob("*.py"):
        from_agent = {n for n in imports(path) if n == "agent" or n.startswith("agent.")}
        allowed = {"agent.wire", "agent.catalogue", "agent.configtypes", "agent.units"}
        allowed |= {"agent.systemd", "agent.brokerclient", "agent.enrollwire", "agent"}
        # Releases: the bundle format and version order, standard library only.
        allowed |= {"agent.update", "agent.update.bundle", "agent.update.versions"}
        if path.parts[-2:] == ("rollout", "profiles.py"):
            # Profiles are judged by the agent's own decoder before any agent sees them.
            allowed |= {"agent.config"}
        assert from_agent <= allowed, f"{path} imports {from_agent}"


def test_config_types_stand_alone() -> None:
    assert imports(AGENT / "configtypes.py") <= {
        "__future__",
        "ipaddress",
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


#: The collector's layers, top first: a module imports only from its own part or below.
#: alerts, outputs, ingest and rollout are siblings and do not import one another.
LAYERS = (("cli",), ("app",), ("web", "service", "backup"), ("config",))
LAYERS += (("alerts", "outputs", "ingest", "rollout", "release", "kit"),)
LAYERS += (("state",), ("common",))
COLLECTOR = AGENT.parent / "collector"


def _part(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if bits[0] == "collector" and len(bits) > 1 else None


def test_the_collectors_imports_flow_one_way() -> None:
    rank = {part: level for level, parts in enumerate(LAYERS) for part in parts}
    upward = []
    for path in COLLECTOR.rglob("*.py"):
        module = ".".join(path.relative_to(AGENT.parent).with_suffix("").parts)
        mine = _part(module)
        if mine not in rank:
            continue
        for name in imports(path):
            other = _part(name)
            if other in rank and other != mine and rank[other] <= rank[mine]:
                upward.append(f"{module} imports {name}")
    assert upward == []
    assert {p.name.removesuffix(".py") for p in COLLECTOR.iterdir()} - {"__init__", "py"} <= {
        *rank,
        "alerts",
        "__pycache__",
        "py.typed",
    }, "a module outside the layers"


def test_no_import_cycle_inside_the_web() -> None:
    """The console and the API share who-asks (web/auth.py): neither imports the other."""
    web = COLLECTOR / "web"
    assert not any(n.startswith("collector.web.api") for n in imports(web / "console" / "views.py"))
    assert not any(n.startswith("collector.web.console") for n in imports(web / "api.py"))


def test_the_readmes_layout_names_every_part_of_the_collector() -> None:
    readme = (AGENT.parent / "README.md").read_text()
    layout = readme.split("## Repository layout", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"collector/([a-z_]+)", layout))
    parts = {p.name.removesuffix(".py") for p in COLLECTOR.iterdir() if not p.name.startswith("_")}
    parts -= {"py", "__pycache__", "py.typed"}
    assert parts <= named, sorted(parts - named)
    levels = [[layout.index(f"collector/{part}") for part in level] for level in LAYERS]
    for upper, lower in itertools.pairwise(levels):
        assert max(upper) < min(lower), "the README lists the layers out of their order"
