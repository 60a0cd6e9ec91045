"""The deployment kit, checked where it cannot run here (no Docker, no Grafana): files parse,
every referenced file exists, names match what the code provides, and the dashboard's
queries name measurements, fields and tags the collector writes."""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path

import yaml

from agent.catalogue import CATALOGUE, DERIVED
from agent.configtypes import convert_strict
from agent.wire import RESERVED_TAGS
from collector.config import CollectorConfig

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"


def compose() -> dict[str, object]:
    loaded = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_file_the_compose_stack_mounts_or_builds_exists() -> None:
    services = compose()["services"]
    assert set(services) == {"mosquitto", "collector", "influxdb", "grafana"}  # type: ignore[arg-type]
    generated = ("./secrets/", "./certs/")  # the operator's, listed in OPERATIONS.md
    for name, service in services.items():  # type: ignore[union-attr]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not source.startswith(generated):
                assert (COMPOSE / source).exists(), f"{name} mounts missing {source}"
    build = services["collector"]["build"]  # type: ignore[index]
    dockerfile = COMPOSE / build["context"] / build["dockerfile"]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    operations = (DEPLOY / "OPERATIONS.md").read_text()
    for secret in compose()["secrets"].values():  # type: ignore[union-attr]
        assert Path(secret["file"]).name in operations, f"{secret} is not documented"


def test_the_brokers_config_finds_everything_it_names_in_the_stack() -> None:
    mounted = {
        volume.split(":")[1]
        for volume in compose()["services"]["mosquitto"]["volumes"]  # type: ignore[index]
    }
    config = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    for key in ("cafile", "certfile", "keyfile", "password_file", "acl_file"):
        for path in re.findall(rf"^{key} (\S+)", config, re.M):
            assert path in mounted, f"{key} {path} is not mounted"
    [persistence] = re.findall(r"^persistence_location (\S+)", config, re.M)
    assert persistence.rstrip("/") in mounted


def test_the_collector_config_of_the_stack_is_valid_and_uses_mounted_paths() -> None:
    data = tomllib.loads((COMPOSE / "collector.toml").read_text())
    config = convert_strict(data, CollectorConfig, "collector.toml")
    service = compose()["services"]["collector"]  # type: ignore[index]
    mounts = [v.split(":")[1] for v in service["volumes"]]
    secrets = {f"/run/secrets/{s}" for s in service["secrets"]}

    def provided(path: str) -> bool:
        return path in secrets or any(path == m or path.startswith(m + "/") for m in mounts)

    for path in [
        *config.collector.inventory,
        config.mqtt.password_file,
        config.mqtt.ca_file,
        config.store.path,
        config.console.secret_file,
        config.sink.token_file if config.sink else "",
    ]:
        assert provided(path), f"{path} is neither mounted nor a secret"
    assert service["command"][:2] == ["commune-collector", "run"]
    assert config.api.address()[1] == int(service["ports"][0].split(":")[1])


def test_the_dashboard_asks_for_what_the_collector_writes() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "commune-ioc.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "influxdb.yml").read_text()
    )["datasources"][0]
    measurements = {item.measurement: item for item in CATALOGUE.values()}
    # Tags every point carries (lineproto), and the samples' own tags (the catalogue).
    tags = set(RESERVED_TAGS) | {tag for item in CATALOGUE.values() for tag in item.tags}
    queries = 0
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries += 1
            assert panel["datasource"]["uid"] == datasource["uid"]
            query = target["query"]
            assert f'from(bucket: "{datasource["jsonData"]["defaultBucket"]}")' in query
            pairs = re.findall(r'r\._measurement == "(\w+)" and r\._field == "(\w+)"', query)
            assert pairs, f"panel {panel['title']!r} names no measurement and field"
            for measurement, field in pairs:
                assert measurement in measurements, f"{panel['title']}: {measurement}"
                known = {*measurements[measurement].fields, *DERIVED}
                assert field in known, f"{panel['title']}: {field}"
            for tag in re.findall(r"r\.(\w+) (?:==|=~)", query):
                assert tag in tags | {"_measurement", "_field", "_value"}, tag
    assert queries >= 10
    assert dashboard["templating"]["list"][0]["name"] == "commune"


def test_the_systemd_units_run_the_projects_commands() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for unit, command in (
        ("commune-agent.service", "commune-agent"),
        ("commune-collector.service", "commune-collector"),
    ):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string((DEPLOY / "systemd" / unit).read_text())
        service = parser["Service"]
        executable = service["ExecStart"].split()[0]
        assert Path(executable).name == command and command in scripts
        assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
        assert service["User"] == command
        assert service["StateDirectory"] == command


def test_the_metrics_the_operators_book_names_are_the_collectors() -> None:
    figures = "".join(
        (REPO / "collector" / "web" / name).read_text() for name in ("figures.py", "server.py")
    )  # the HTTP server's own figures are built with it
    named = set(re.findall(r"commune_collector_(\w+)", (DEPLOY / "OPERATIONS.md").read_text()))
    assert named, "OPERATIONS.md names no metric"
    for name in named:
        assert f'"commune_collector_{name}"' in figures or f'"{name}"' in figures, name


def test_the_crl_reload_units_watch_what_the_broker_loads() -> None:
    """commune-crl-reload.path reloads the broker when the list its certificate listener
    loads changes: systemd accepts both units, and the path is the crlfile's."""
    import shutil
    import subprocess
    import tempfile

    units = DEPLOY / "systemd"
    crlfile = re.search(
        r"^crlfile (\S+)$", (DEPLOY / "mosquitto" / "dynsec.conf").read_text(), re.M
    )
    assert crlfile is not None
    watched = re.search(
        r"^PathChanged=(\S+)$", (units / "commune-crl-reload.path").read_text(), re.M
    )
    assert watched is not None and watched.group(1) == crlfile.group(1)
    service = (units / "commune-crl-reload.service").read_text()
    assert "ExecStart=/bin/systemctl reload mosquitto.service" in service
    folder = Path(tempfile.mkdtemp())
    try:
        for name in ("commune-crl-reload.path", "commune-crl-reload.service"):
            shutil.copy(units / name, folder / name)
        verified = subprocess.run(
            ["systemd-analyze", "verify", str(folder / "commune-crl-reload.path"),
             str(folder / "commune-crl-reload.service")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        shutil.rmtree(folder)


def bundle_recipe(*overrides: str) -> list[str]:
    """`make collector-dist`'s commands as make would run them (``-n``: runs nothing,
    downloads nothing), the venv's own build left out."""
    import os
    import shutil
    import subprocess

    make = shutil.which("make")
    assert make is not None, "make is what builds the bundle"
    # Run from `make test` too: not as a sub-make of it (its flags, its directory lines).
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    printed = subprocess.run(
        [make, "-n", "collector-dist", *overrides],
        cwd=REPO, env=environment, capture_output=True, text=True, check=True,
    )  # fmt: skip
    joined = printed.stdout.replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if "collector-" in line]


def test_the_collector_bundle_holds_exactly_the_locked_wheels() -> None:
    """The offline bundle (OPERATIONS, "Upgrading the collector"): dependencies only as
    the lock pins them, checked against its hashes, wheels only (no build on the
    collector), this package built with the locked setuptools, the lock and its sums
    shipped with them."""
    version = re.search(r'__version__ = "(.+)"', (REPO / "agent" / "__init__.py").read_text())
    assert version is not None
    bundle = f"dist/collector-{version.group(1)}"
    commands = bundle_recipe()
    [download] = [c for c in commands if " pip download " in c]
    for option in ("--require-hashes", "--only-binary=:all:", "-r requirements.lock",
                   f"-d {bundle}", "--implementation cp", "--python-version 3.11"):  # fmt: skip
        assert option in download, option
    [build] = [c for c in commands if " pip wheel " in c]
    assert "--no-build-isolation" in build and "--no-deps" in build and f"-w {bundle} ." in build
    assert f"cp requirements.lock {bundle}/requirements.lock" in commands
    assert f"cd {bundle} && sha256sum *.whl requirements.lock > SHA256SUMS" in commands
    assert f"tar -czf {bundle}.tar.gz -C dist collector-{version.group(1)}" in commands
    # Debian 12 (glibc 2.36): every manylinux it runs, and none newer.
    platforms = set(re.findall(r"--platform (\S+)", download))
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_36_x86_64"} <= platforms
    assert "manylinux_2_37_x86_64" not in platforms


def test_the_collector_bundle_is_made_for_the_host_named() -> None:
    [download] = [
        c
        for c in bundle_recipe("DIST_PYTHON=3.13", "DIST_GLIBC=2.41", "DIST_ARCH=aarch64")
        if " pip download " in c
    ]
    assert "--python-version 3.13" in download
    platforms = set(re.findall(r"--platform (\S+)", download))
    assert {"manylinux2014_aarch64", "manylinux_2_41_aarch64"} <= platforms
    assert not any(p.endswith("x86_64") or p == "manylinux_2_42_aarch64" for p in platforms)


def test_the_upgrade_installs_the_bundle_offline_as_locked() -> None:
    """The book's steps install from the bundle alone, by the lock's hashes, into a new
    venv, and switch by install-service from it."""
    book = (DEPLOY / "OPERATIONS.md").read_text()
    upgrade = book.split("### Upgrading the collector", 1)[1].split("\n### ", 1)[0]
    assert "make collector-dist" in upgrade
    assert "pip install --no-index --find-links . --require-hashes -r requirements.lock" in (
        upgrade
    )
    assert "pip install --no-index --no-deps commune_monitor-$V-py3-none-any.whl" in upgrade
    assert "N=/opt/commune-collector/venv-$V" in upgrade
    assert "sha256sum -c SHA256SUMS" in upgrade
    assert "$N/bin/commune-collector migrate --dry-run -c $C" in upgrade
    assert "$N/bin/commune-collector install-service -c $C" in upgrade
    assert "pip install -U" not in book


def test_every_command_the_book_names_exists() -> None:
    """`commune-collector WORD [SUB]` anywhere in OPERATIONS.md is a command (and a
    subcommand of a group) of the command line (`sudo -u commune-collector` is a user,
    `systemctl stop commune-collector mosquitto` a unit)."""
    import click

    from collector.cli.main import main

    book = (DEPLOY / "OPERATIONS.md").read_text()
    units = r"(?<!stop )(?<!start )(?<!restart )(?<!status )(?<!enable )"
    named = re.findall(
        rf"(?<!-u ){units}commune-collector ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", book
    )
    assert len(named) > 30
    for command, sub in named:
        found = main.commands.get(command)
        assert found is not None, f"OPERATIONS.md names commune-collector {command}"
        if isinstance(found, click.Group) and sub:
            assert sub in found.commands, f"OPERATIONS.md names commune-collector {command} {sub}"
