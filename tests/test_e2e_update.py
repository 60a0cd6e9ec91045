"""A release rolled out to a commune end to end, every part real: the release manager's
ceremony and commands (`commune-collector release`), the collector serving its TUF
repository over HTTPS and running the rollout, a Mosquitto with the dynamic security
plugin, and four enrolled PCs, each a launcher (as the service runs it) running agent
versions built from this checkout.

0.9.1 runs everywhere; 0.9.2 is rolled out in three rings (the lab PC, half the rest,
all) promoted by their gates, and every PC commits it with its data intact across the
switch (no envelope lost, none twice, none out of order). Then the targets key is
rotated (the PCs hold only the first root and follow the chain) and 0.9.3 — whose
self-check passes but which crashes once started — reaches the lab PC only: its
launcher rolls it back, the PC reports why, the gate pauses the rollout, and no other
PC is ever asked for it. A version revoked or never signed cannot be rolled out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from agent.commands import _first_root
from agent.update.state import Home
from agent.wire import Status, decode_envelope, decode_status
from tests.servers import REPO, CollectorProcess, Received, Subscriber, dynsec_broker, wait_for
from tests.test_console import log_in, shot
from tests.test_dynsec import observer_account
from tests.test_rollout import ADMIN, ADMIN_PASSWORD, ADMIN_TOKEN, PROFILES, Site, collector_toml
from tests.tls import make_pki
from tests.update_home import CRASH_AT_START, LauncherProcess, build_bundles, new_home

PCS = ("pc-01", "pc-02", "pc-03", "pc-04")
LAB = "pc-01"
LAB_PC = f"dong-nai/la-nga/{LAB}"
A, B, B_CRASHING = "0.9.1", "0.9.2", "0.9.3"
#: The gate shortened to what a test can wait for: no soak, every day a business day;
#: the PCs of a ring start within two seconds of their order, not an hour.
GATE = "soak=0s,soak-weekdays=no"
SPREAD = "2s"
#: The launcher's timings, shortened likewise (seconds).
TIMINGS = {"healthy-after": 3, "trial-timeout": 90, "max-exits": 2, "restart-delay": 0.5,
           "poll": 0.2, "verify-every": 2}  # fmt: skip


@dataclass
class Province:
    site: Site
    offline: Path
    """The release manager's USB sticks: root and targets keys, never on the collector."""
    bundles: Path
    homes: dict[str, Home]
    launchers: dict[str, LauncherProcess]
    observer: Subscriber

    def release(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return collector_cli(self.site, "release", *arguments, check=check)

    def rollout(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return collector_cli(self.site, "rollout", *arguments, check=check)

    def key(self, name: str) -> str:
        return str(self.offline / f"{name}.key")

    def births(self, agent: str) -> list[Status]:
        found = []
        for message in self.observer.snapshot(f"/{agent}/status"):
            status = decode_status(message.payload)
            if status.state == "online":
                found.append(status)
        return found

    def running(self, agent: str) -> str:
        births = self.births(agent)
        return births[-1].version if births else ""

    def report(self, agent: str) -> Any:
        births = self.births(agent)
        return births[-1].update if births else None

    def detail(self) -> str:
        lines = [f"{pc}: runs {self.running(pc)!r}, update {self.report(pc)}" for pc in PCS]
        lines.append(self.rollout("status", check=False).stdout[-1500:])
        lines.append(f"launcher {LAB}: {self.launchers[LAB].log[-1500:]}")
        return "\n".join(lines)

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        try:
            wait_for(predicate, timeout, what)
        except AssertionError:
            raise AssertionError(f"{what}:\n{self.detail()}") from None


def collector_cli(
    site: Site, *arguments: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # keygen and build work on files alone, with no collector config (a release manager's PC).
    offline = arguments[:2] in (("release", "keygen"), ("release", "build"))
    config = [] if offline else ["-c", str(site.collector.config)]
    done = subprocess.run(
        [sys.executable, "-m", "collector.cli", *arguments, *config],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, f"{arguments}: {done.stdout}\n{done.stderr}"
    return done


def agent_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *arguments],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    root = tmp_path_factory.mktemp("province")
    pki = make_pki(root / "pki")
    broker = dynsec_broker(root / "broker", ADMIN, ADMIN_PASSWORD).start()
    observer_account(f"mqtt://127.0.0.1:{broker.port}", ADMIN, ADMIN_PASSWORD, root)
    profiles = root / "dong-nai.profiles.toml"
    profiles.write_text(PROFILES)
    collector = CollectorProcess(root / "collector", broker.port)
    collector.config.write_text(
        collector_toml(collector, root, pki, f"mqtt://127.0.0.1:{broker.port}", "", profiles)
        + f'[releases]\npath = "{root / "releases"}"\n'
    )
    site = Site(broker, collector, pki, profiles, root)
    offline = root / "offline"
    offline.mkdir()
    bundles = build_bundles(root / "bundles", [], {B_CRASHING: CRASH_AT_START})
    launchers: dict[str, LauncherProcess] = {}
    observer: Subscriber | None = None
    try:
        # The key ceremony (OPERATIONS, "Releases"): three root keys, two needed; one
        # targets key; the online keys are made on the collector by init.
        for name in ("root-a", "root-b", "root-c"):
            collector_cli(site, "release", "keygen", "root", str(offline / f"{name}.key"))
        collector_cli(site, "release", "keygen", "targets", str(offline / "targets.key"))
        collector_cli(site, "release", "init", "--root-key", str(offline / "root-a.key"),
                      "--root-key", str(offline / "root-b.key"), "--root-key",
                      str(offline / "root-c.key"), "--root-threshold", "2",
                      "--targets-key", str(offline / "targets.key"))  # fmt: skip
        for version in (A, B):
            built = bundles / f"commune-agent-{version}.zip"
            collector_cli(site, "release", "build", "--version", version, "-o", str(built))
            collector_cli(site, "release", "add", str(built), "--key", str(offline / "targets.key"))
        collector.start()
        observer = site.observer()
        made = collector_cli(site, "enroll-token", "create", "--province", "dong-nai",
                             "--commune", "la-nga", "--uses", str(len(PCS)))  # fmt: skip
        token = made.stdout.strip()
        homes = {}
        for pc in PCS:
            enrolled = site.enroll(pc, token)
            _, err = enrolled.communicate(timeout=60)
            assert enrolled.returncode == 0, err.decode()
            folder = root / "pcs" / pc
            config = folder / "agent.toml"
            text = config.read_text()
            # The enrollment said where releases come from and kept the collector's CA.
            url = f"https://localhost:{collector.api_port}"
            assert "[update]\n" in text and f'url = "{url}/releases"' in text, text
            assert (folder / "collector-ca.pem").read_bytes() == pki.ca.read_bytes()
            text = text.replace("[update]\n", '[update]\nretry_min = "2s"\nretry_max = "4s"\n')
            config.write_text(text)
            home = new_home(folder / "home", bundles, A)  # as the kit installs it
            if pc in ("pc-01", "pc-02"):
                fetched = agent_cli("update-root", "fetch", "--home", str(home.root),
                                    "--collector", url, "--ca", str(pki.ca))  # fmt: skip
                assert fetched.returncode == 0, fetched.stderr
            else:  # as install-launcher does for a home without one, from [update]
                said = _first_root(home.root, f"{url}/releases", str(folder / "collector-ca.pem"))
                assert said.startswith("trusted the collector's release root v1"), said
            homes[pc] = home
            launchers[pc] = LauncherProcess(
                home, config, env={"STATE_DIRECTORY": str(folder / "state")}, **TIMINGS
            ).start()
        found = Province(site, offline, bundles, homes, launchers, observer)
        found.wait(lambda: all(found.running(pc) == A for pc in PCS), 90, f"every PC runs {A}")
        yield found
    finally:
        for launcher in launchers.values():
            launcher.stop()
        if observer is not None:
            observer.stop()
        collector.stop()
        broker.stop()


def console_shows_the_paused_rollout(province: Province, browser: Browser) -> None:
    """The technician's view: the fleet's versions, the lab ring's rollback, and why."""
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    try:
        log_in(page, f"https://localhost:{province.site.collector.api_port}", ADMIN_TOKEN)
        page.click("header >> text=Triển khai")
        expect(page.locator(f"#versions .version[data-version='{B}']")).to_have_text(f"{B}: 4")
        expect(page.locator("#release")).to_have_attribute("data-state", "paused")
        # The gate's why, in the page's language.
        expect(page.locator("#release")).to_contain_text("vòng lab: 1/1 máy của vòng đã quay lại")
        lab = page.locator("#rings tr[data-ring=lab]")
        expect(lab.locator(".rolled-back")).to_have_text("1")
        expect(page.locator("#rings tr[data-ring='100%'] .committed")).to_have_text("0")
        shot(page, "release-paused")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "release-paused-phone")
    finally:
        context.close()


def seqs(messages: list[Received], agent: str) -> list[int]:
    return [decode_envelope(m.payload).seq for m in messages if m.topic.endswith(f"/{agent}/data")]


@pytest.mark.timeout(900)
def test_a_release_rolls_out_ring_by_ring_and_a_crashing_one_stops_at_the_lab(
    province: Province, browser: Browser
) -> None:
    refused = province.rollout("start", "0.9.9", "--rings", "lab,50%,100%", "--lab", LAB_PC,
                               check=False)  # fmt: skip
    assert refused.returncode != 0 and "0.9.9" in refused.stderr, refused.stderr

    started = province.rollout("start", B, "--rings", "lab,50%,100%", "--lab", LAB_PC,
                               "--gate", GATE, "--spread", SPREAD)  # fmt: skip
    assert B in started.stdout, started.stdout
    province.wait(lambda: province.running(LAB) == B and province.report(LAB).state
                  in ("committed", "idle"), 180, f"the lab PC committed {B}")  # fmt: skip
    province.wait(lambda: all(province.running(pc) == B for pc in PCS), 300,
                  f"every PC runs {B}")  # fmt: skip
    province.wait(lambda: "done" in province.rollout("status").stdout, 60, "the rollout done")
    for pc in PCS:
        home = province.homes[pc]
        assert home.current() == B and home.previous() == A, (pc, home.current())
        assert (home.root / "versions" / A).is_dir()  # the rollback target is kept
    # Across the switch, every PC's data: each envelope once, in order, none missing.
    messages = province.observer.snapshot("/data")
    for pc in PCS:
        numbers = seqs(messages, pc)
        assert numbers, pc
        assert sorted(set(numbers)) == list(range(min(numbers), max(numbers) + 1)), pc
        assert numbers == sorted(numbers), f"{pc}: envelopes out of order"

    # The release manager rotates the targets key; the PCs hold only root v1.
    province.release("keygen", "targets", province.key("targets-2"))
    province.release("rotate", "--role", "targets", "--new-key", province.key("targets-2"),
                     "--key", province.key("root-a"), "--key", province.key("root-c"),
                     "--key", province.key("targets-2"))  # fmt: skip
    crashing = province.bundles / f"commune-agent-{B_CRASHING}.zip"
    province.release("add", str(crashing), "--key", province.key("targets-2"))
    listed = province.release("list").stdout
    assert B_CRASHING in listed, listed

    asked = time.time()
    province.rollout("start", B_CRASHING, "--rings", "lab,50%,100%", "--lab", LAB_PC,
                     "--gate", GATE, "--spread", SPREAD)  # fmt: skip
    province.wait(
        lambda: (report := province.report(LAB)) is not None
        and report.state == "rolled_back" and report.version == B_CRASHING and report.ts >= asked,
        240, f"the lab PC rolled {B_CRASHING} back",
    )  # fmt: skip
    assert province.running(LAB) == B
    assert B_CRASHING in province.homes[LAB].bad()
    province.wait(lambda: "paused" in province.rollout("status").stdout, 60,
                  "the rollout paused by its gate")  # fmt: skip
    status = province.rollout("status").stdout
    assert "roll" in status.lower(), status  # says why: a rollback
    for pc in PCS[1:]:
        assert all(b.version != B_CRASHING for b in province.births(pc)), pc
        assert province.homes[pc].pending() is None
        assert not (province.homes[pc].root / "versions" / B_CRASHING).exists()
    console_shows_the_paused_rollout(province, browser)
    province.rollout("halt")

    # Revoked: gone from the signed targets, so it can no longer be rolled out.
    province.release("revoke", B_CRASHING, "--why", "crashes at start",
                     "--key", province.key("targets-2"))  # fmt: skip
    again = province.rollout("start", B_CRASHING, "--rings", "100%", check=False)
    assert again.returncode != 0, again.stdout
