"""The running collector (``commune-collector run``, a real process with its broker)
serving releases: the release manager signs targets on a machine without the online
keys, the collector writes snapshot and timestamp by itself, and a PC updates from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.update.fetch import ReleaseFetcher
from collector.cli.main import main
from tests.releases import bundle_of
from tests.servers import CollectorProcess, Mosquitto, wait_for

pytestmark = pytest.mark.servers


def test_the_running_collector_signs_what_the_release_manager_published(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    collector = CollectorProcess(tmp_path / "collector", broker.port,
                                 sections='[releases]\nretry_after = "2s"\n')  # fmt: skip
    config = str(collector.config)
    usb = tmp_path / "usb"
    runner = CliRunner()
    for role, name in (("root", "root"), ("targets", "targets")):
        made = runner.invoke(main, ["release", "keygen", role, str(usb / f"{name}.key")])
        assert made.exit_code == 0, made.output
    init = ["release", "init", "-c", config, "--root-key", str(usb / "root.key")]
    made = runner.invoke(main, [*init, "--targets-key", str(usb / "targets.key")])
    assert made.exit_code == 0, made.output
    # The release manager's laptop: the repository's folder, none of the online keys.
    laptop = tmp_path / "laptop.toml"
    (tmp_path / "no-online-keys").mkdir()
    laptop.write_text(
        f'[store]\npath = "{tmp_path / "laptop" / "state.sqlite"}"\n[releases]\n'
        f'path = "{tmp_path / "collector" / "releases"}"\n'
        f'online_keys_dir = "{tmp_path / "no-online-keys"}"\n'
    )
    add = ["release", "add", "-c", str(laptop), str(bundle_of(tmp_path, "2.1"))]
    added = runner.invoke(main, [*add, "--key", str(usb / "targets.key")])
    assert added.exit_code == 0, added.output
    assert "the running collector signs them within a minute" in added.output
    try:
        collector.start()
        home = tmp_path / "pc"
        (home / "tuf").mkdir(parents=True)
        root = tmp_path / "collector" / "releases" / "metadata" / "1.root.json"
        shutil.copy(root, home / "tuf" / "root.json")
        agent = ReleaseFetcher(home, f"http://127.0.0.1:{collector.api_port}", timeout_s=10)
        wait_for(lambda: agent.get("2.1").ok, 60, "the collector snapshotted 2.1 and serves it")
        assert "releases: signed 2.snapshot.json, timestamp.json" in collector.log
        status, text = collector.get("/metrics")
        assert status == 200 and isinstance(text, str)
        assert 'commune_collector_release_requests_total{kind="target",outcome="served"} 1' in text
        assert 'commune_collector_release_metadata_expiring{role="timestamp"} 0' in text
        assert "commune_collector_release_resign_failures_total 0" in text
        status, health = collector.get("/healthz")
        assert isinstance(health, dict) and health["detail"]["parts"]["releases"] == "ok", health
    finally:
        collector.stop()
        broker.stop()
