"""What a commune PC's agent loads: only what its checks, its broker and its outbox use.

The memory an agent keeps is mostly the code it imported (bench/agent_bench.py measures
it); these tests hold the boundaries that keep a PC's agent small, on the real process.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import agent
from agent import cli, service, wire
from agent.config import load_config
from agent.deferred import UNUSED
from agent.outbox import CACHE_KIB, Outbox
from agent.update import install
from agent.update.state import Home
from bench.pc_agent import pc_python
from tests.factories import agent_toml
from tests.servers import REPO, Mosquitto, Received, Subscriber, stop_process, wait_for

#: Loaded by nothing a PC runs (host, anti-malware, line probes, MQTT, the outbox).
NOT_FOR_A_PC = {
    "click",  # the command line: `run` as the service gives it goes around it
    "difflib",  # click's "did you mean", imported when it parses "-c"
    "email",  # urllib.request's, which paho-mqtt imports for a proxy lookup it never makes
    "http.client",
    "urllib.request",
    "html",  # the shared-system probe's
    "statistics",
    "ipaddress",  # urllib.parse's, for hosts in brackets in URLs (agent/deferred.py)
    "locale",  # subprocess's, for text pipes
    "msgspec.inspect",  # msgspec's type introspection, for schemas
    "inspect",  # asyncio's signal handlers', dataclasses' for classes without a docstring
    "ast",  # inspect's
    "dis",  # inspect's
    "argparse",  # the launcher's and the update process's
    "zipfile",  # the update bundles'
    "pysnmp",
    "agent.checks.snmp",
    "agent.snmp.client",  # an SNMP check's: the config needs only the v3 protocols' names
    "agent.checks.polycom",
    "agent.checks.system",
    "agent.polycom.rest_reader",
    "agent.antivirus.windows",
    "agent.update.follow",
    "agent.update.launcher",
    "agent.commands",
    "agent.ledger",  # the chaos soak's creation ledger, only with COMMUNE_MONITOR_LEDGER
    "psutil",  # Windows' reader: on Linux agent/machine.py reads /proc
    "encodings.idna",  # the IDNA codec's module, for names that are not ASCII
    "stringprep",  # its tables
    "unicodedata",
    "concurrent.futures.thread",  # the event loop's default executor: no thread of its own
    "queue",  # the executor's
    "linecache",  # traceback's, until an exception is logged
    "tokenize",
    "textwrap",
    "base64",
    "dataclasses",  # a PC's records are msgspec Structs: no module, no generated code
    "asyncio",  # a PC's checks are blocking reads on threads: the loop is SNMP's and Polycom's
    "agent.eventloop",
    "concurrent",  # asyncio's futures
    "contextvars",  # asyncio's tasks'
    "heapq",  # asyncio's timers'
    "subprocess",  # the signature check's, for a config from the collector (agent/sigcheck.py)
}

#: What the agent the launcher runs uses besides: the order follower (the launcher's
#: state files' records are named tuples: no dataclasses).
FOR_THE_LAUNCHERS_AGENT = {"agent.update.follow"}

#: The threads of a PC agent: the scheduler's, the broker's and the outbox's drain; and for
#: as long as a check runs, its run's own ("run:NAME").
PC_THREADS = {"MainThread", "mqtt", "outbox-drain"}
#: Under the launcher, besides: the order follower's and the health writer's.
LAUNCHER_THREADS = {"update", "health"}


#: ``python -m agent.cli run -c CONFIG`` (runpy is what ``-m`` runs), with a thread that
#: writes the modules loaded to OUT once the file ASK exists (not agent.deferred's
#: stand-ins: what they stand for was not loaded), and the other threads' names.
WATCHED_AGENT = """
import os, runpy, sys, threading, time
ask, out, config = sys.argv[1:4]

def watch():
    while not os.path.exists(ask):
        time.sleep(0.05)
    with open(out + ".part", "w") as f:
        real = [n for n, m in list(sys.modules.items()) if type(m).__name__ != "DeferredModule"]
        threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        f.write("\\n".join(sorted(real) + ["threads:" + ",".join(threads)]))
    os.replace(out + ".part", out)

threading.Thread(target=watch, daemon=True).start()
sys.argv = ["commune-agent", "run", "-c", config]
runpy.run_module("agent.cli", run_name="__main__", alter_sys=True)
"""


def under_the_launcher(
    tmp_path: Path, python: Path, ask: Path, out: Path, config: Path
) -> subprocess.Popen[bytes]:
    """The launcher of a home laid out as ``install-launcher`` lays it out, running the
    agent as a PC's service runs it, the agent's interpreter replaced by one that runs it
    under ``WATCHED_AGENT``; in a process group of its own."""
    install.lay_out(tmp_path / "home")
    watched = tmp_path / "watched.py"
    watched.write_text(WATCHED_AGENT)
    # The launcher runs "<python> -m agent.cli run -c CONFIG": the config is the 5th.
    interpreter = tmp_path / "python"
    interpreter.write_text(f'#!/bin/sh\nexec "{python}" "{watched}" "{ask}" "{out}" "$5"\n')
    interpreter.chmod(0o755)
    script = tmp_path / "home" / "launcher" / "launcher.py"
    command = [str(python), str(script), "--home", str(tmp_path / "home")]
    command += ["--config", str(config), "--python", str(interpreter)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.Popen(command, cwd=tmp_path, env=environment, start_new_session=True)


@pytest.mark.servers
@pytest.mark.parametrize("how", ["as a service", "under the launcher"])
def test_a_pc_agent_loads_nothing_a_pc_does_not_use(
    tmp_path: Path, mosquitto: Mosquitto, how: str
) -> None:
    launcher = how == "under the launcher"
    config = tmp_path / "agent.toml"
    links = "".join(
        f'[[checks.link]]\nname = "{name}"\nnetwork = "tslcd"\nmethod = "tcp"\n'
        f'target = "127.0.0.1"\nport = {mosquitto.port}\ncount = 1\n'
        for name in ("tslcd-gateway", "tslcd-province")
    )
    config.write_text(
        agent_toml(extra=f'interval = "0.5s"\nstate_dir = "{tmp_path / "state"}"\n')
        + f'[mqtt]\nurl = "mqtt://127.0.0.1:{mosquitto.port}"\n'
        # What `enroll` writes for the launcher's agent: where the releases are.
        + ('[update]\nurl = "https://127.0.0.1:9/releases"\n' if launcher else "")
        + '[[checks.host]]\n[[checks.antivirus]]\ninterval = "1s"\n'
        + links
    )
    # A PC's install: the agent's dependencies only, and no editable-install finder
    # (the development one imports pathlib, and what it imports, before the agent starts).
    python = pc_python(tmp_path)
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    ask, out = tmp_path / "ask", tmp_path / "modules.txt"
    if launcher:
        process = under_the_launcher(tmp_path, python, ask, out, config)
    else:
        process = subprocess.Popen(
            [str(python), "-c", WATCHED_AGENT, str(ask), str(out), str(config)], cwd=REPO
        )
    checks = {"host", "antivirus", "tslcd-gateway", "tslcd-province"}

    def every_check_reported(messages: list[Received]) -> bool:
        samples = [s for m in messages for s in wire.decode_envelope(m.payload).samples]
        return checks <= {s.name for s in samples}

    try:
        subscriber.wait_for(every_check_reported, timeout=30, suffix="/data")
        ask.touch()
        wait_for(out.exists, 10, "the agent did not list its modules")
    finally:
        stop_process(process)  # the launcher stops its agent
        if launcher:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        subscriber.stop()
    *modules, threads = out.read_text().split()
    loaded = set(modules)
    named = set(threads.removeprefix("threads:").split(","))
    assert {name for name in named if not name.startswith("run:")} == PC_THREADS | (
        LAUNCHER_THREADS if launcher else set()
    )
    assert {"agent.checks.host", "agent.checks.link", "agent.checks.antivirus"} <= loaded
    assert {"paho.mqtt.client", "sqlite3", "ssl", "agent.machine"} <= loaded
    if launcher:  # it is the launcher's agent: it follows orders and writes its health
        assert {"agent.update.follow", "agent.update.health"} <= loaded
        health = Home(tmp_path / "home").health(agent.__version__)
        assert health is not None and health.checks_total == len(checks) + 1  # + its own
    not_for_it = NOT_FOR_A_PC - (FOR_THE_LAUNCHERS_AGENT if launcher else set())
    unused = {name for name in loaded if name.split(".")[0] in not_for_it or name in not_for_it}
    if sys.version_info >= (3, 13):
        # Measured: on 3.13 the standard library itself loads inspect (with ast and dis)
        # where the stand-in cannot take its place, and linecache as the interpreter
        # starts; on 3.11, a PC's, they stay out.
        unused -= {"inspect", "ast", "dis", "linecache"}
    assert not unused, sorted(unused)


def test_the_service_command_line_goes_around_click(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    assert cli.service_config(["run", "-c", str(config)]) == config
    assert cli.service_config(["run", "--config", str(config)]) == config
    assert cli.service_config(["run", f"--config={config}"]) == config
    # Anything else is the command line's: help, other commands, odd forms, a folder.
    for arguments in (
        ["run", "--help"],
        ["run", "-c"],
        ["run", "-c", str(config), "--verbose"],
        ["check-config", "-c", str(config)],
        ["--version"],
        [],
        ["run", "-c", str(tmp_path)],
        ["run", "--config="],
    ):
        assert cli.service_config(arguments) is None, arguments


def test_the_service_command_line_takes_the_config_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMUNE_AGENT_CONFIG", str(tmp_path / "agent.toml"))
    assert cli.service_config(["run"]) == tmp_path / "agent.toml"
    monkeypatch.delenv("COMMUNE_AGENT_CONFIG")
    from agent.start import DEFAULT_CONFIG

    assert cli.service_config(["run"]) == Path(DEFAULT_CONFIG)


def test_a_config_error_reads_as_the_command_line_words_it(tmp_path: Path) -> None:
    """The same words and exit code whichever way `run` was taken."""
    missing = str(tmp_path / "nope.toml")
    results = [
        subprocess.run(
            [sys.executable, "-m", "agent.cli", *arguments],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "COMMUNE_AGENT_CONFIG": missing},
        )
        for arguments in (
            ["run", "-c", missing],
            ["run"],
            ["run", "--config", missing, "-c", missing],
        )
    ]
    for result in results:
        assert result.returncode == 1
        assert result.stderr.startswith("Error: ") and "no such file" in result.stderr
    assert len({r.stderr for r in results}) == 1


#: In a fresh interpreter of a PC's install: every stand-in is in place before the agent's
#: libraries are imported, and each module works when used as if it had been imported.
USES_THE_DEFERRED = """
import sys
from agent.deferred import UNUSED, DeferredModule, defer_unused

started_with = [n for n in UNUSED if n in sys.modules]  # 3.13 starts with linecache
defer_unused()
standing_in = [n for n in UNUSED if type(sys.modules[n]) is DeferredModule] + started_with
import base64, codecs, inspect, linecache, locale, msgspec, textwrap, tokenize
import socket, urllib.request
from ipaddress import ip_address

assert socket.getaddrinfo("localhost", 80) and "localhost".encode("idna") == b"localhost"
assert "encodings.idna" not in sys.modules  # ASCII names need none of the codec's tables

async def coroutine_function() -> None: ...

assert inspect.iscoroutinefunction(coroutine_function)
assert ip_address("127.0.0.1").is_loopback
assert isinstance(urllib.request.getproxies(), dict)
assert locale.getpreferredencoding(False)
assert msgspec.inspect.type_info(int) == msgspec.inspect.IntType()
assert linecache.getline(codecs.__file__, 1) and tokenize.open(codecs.__file__).readline()
assert textwrap.dedent("  a") == "a" and base64.b64decode(base64.b64encode(b"x")) == b"x"
# Any other name goes to the codec itself, which loads then; its errors are the codec's.
assert "bücher.example".encode("idna") == b"xn--bcher-kva.example"
assert b"xn--bcher-kva.example".decode("idna") == "bücher.example"
assert codecs.getincrementalencoder("idna")().encode("bücher.", final=True) == b"xn--bcher-kva."
for bad in ("a" * 64 + ".example", "a..example"):
    try:
        bad.encode("idna")
        raise AssertionError(bad)
    except UnicodeError:
        pass
real = [n for n in UNUSED if type(sys.modules[n]) is not DeferredModule]
print(" ".join(standing_in), "|", " ".join(real))
"""


def test_what_a_pc_agent_defers_works_when_used(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(pc_python(tmp_path)), "-c", USES_THE_DEFERRED],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    standing_in, real = result.stdout.split("|")
    assert set(standing_in.split()) == set(real.split()) == set(UNUSED)


def test_the_agents_service_gives_its_threads_one_malloc_arena(tmp_path: Path) -> None:
    """Each thread's own arena is memory a PC keeps (bench/agent_bench.py measures it)."""
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml() + '[mqtt]\nurl = "mqtts://mqtt.example:8883"\n')
    for unit in (service.unit(load_config(config)), install.unit(tmp_path, config, "python3")):
        assert "\nEnvironment=MALLOC_ARENA_MAX=1\n" in unit


def test_every_dataclass_of_the_agent_has_a_docstring() -> None:
    """dataclasses write a docstring for a class without one with inspect, which the agent
    defers (agent/deferred.py): one class without would load it, ast and dis, 0.6 MB."""
    undocumented = []
    for path in sorted((REPO / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not ast.get_docstring(node):
                names = [ast.unparse(d).split("(")[0] for d in node.decorator_list]
                if {"dataclass", "dataclasses.dataclass"} & set(names):
                    undocumented.append(f"{path.relative_to(REPO)}: {node.name}")
    assert not undocumented


def test_the_outbox_keeps_a_small_page_cache(tmp_path: Path) -> None:
    """SQLite keeps its page cache for the connection's life: at its default (2 MB) a PC
    agent kept an outage's backlog's pages after draining it."""
    box = Outbox(tmp_path / "outbox.sqlite", 3600.0, 10**8)
    try:
        assert box._db.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    finally:
        box.close()
    assert CACHE_KIB <= 512
