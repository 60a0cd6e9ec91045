"""A release rolled out to a commune end to end, every part real: the release manager's
ceremony and commands (`commune-collector release`), the collector serving its TUF
repository over HTTPS and running the rollout, a Mosquitto with the dynamic security
plugin, and four enrolled PCs, each a launcher (as the service runs it) running agent
versions built from this checkout.

0.9.1 runs everywhere; 0.9.2 is rolled out in three rings (the lab PC, half the rest,
all) promoted by their gates, and every PC commits it with its data intact across the
switch (no envelope lost, none twice, none out of order, by the collector's store).
Then the root keys and the targets key are rotated (the PCs hold only the first root
and follow the chain) and 0.9.3 — whose self-check passes but which crashes once
started — reaches the lab PC only: its launcher rolls it back (its data still one
sequence), the PC reports why, the gate pauses the rollout, and no other PC is ever
asked for it. A version revoked or never signed cannot be rolled out.

Then what the collector orders the lab PC and it must refuse: a version below its
floor, a signed release whose file was changed on the collector, targets signed with
a retired key, and targets signed long ago and expired. Each is refused, reported to
the collector, and the PC keeps running its version.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from tuf.api.metadata import Metadata, Targets

from agent.commands import _first_root
from agent.update.state import Home
from agent.wire import Status, decode_envelope, decode_status
from collector.release import keys as keyfiles
from collector.release.repository import Repository, load_online
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
        # The store's record of every envelope applied (``[store] ledger``): what proves
        # each PC's data arrived once and in order across its switches.
        collector_toml(
            collector, root, pki, f"mqtt://127.0.0.1:{broker.port}", "", profiles
        ).replace("[store]\n", "[store]\nledger = true\n")
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


def applied_record(province: Province) -> dict[str, list[tuple[int, int, float]]]:
    """PC -> (seq, times applied, first applied at) of every envelope the collector's
    store applied, by seq (its applied record, collector/state/applied.py)."""
    found: dict[str, list[tuple[int, int, float]]] = {pc: [] for pc in PCS}
    uri = f"file:{province.site.collector.state}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        for key, seq, times, first in db.execute(
            "SELECT agent_key, seq, applied, first_at FROM applied_envelopes "
            "WHERE applied > 0 ORDER BY agent_key, seq"
        ):
            pc = str(key).rsplit("/", 1)[-1]
            if pc in found:
                found[pc].append((int(seq), int(times), float(first)))
    return found


def birth_at(messages: list[Received], pc: str, version: str, state: str = "") -> int:
    """The observer's message number of ``pc``'s first birth running ``version`` (whose
    update report says ``state``, if given)."""
    for number, message in enumerate(messages):
        if message.topic.endswith(f"/{pc}/status"):
            status = decode_status(message.payload)
            report = status.update.state if status.update is not None else ""
            if status.state == "online" and status.version == version and state in ("", report):
                return number
    raise AssertionError(f"{pc}: no birth of {version} {state}")


def assert_each_envelope_applied_once_in_order(
    province: Province, switches: dict[str, int]
) -> None:
    """Every PC's data, from its first envelope to the last the broker passed on, in the
    collector's store: no seq missing, none applied twice, each applied no earlier than
    the one before; on the wire, a seq repeated only byte for byte (a redelivery, never
    one seq given to two envelopes). ``switches``: PC -> the observer's message number
    of its switch of version; some of its data must come before and some after."""

    def after(pc: str) -> int:
        messages = province.observer.snapshot()
        return sum(1 for m in messages[switches[pc] :] if m.topic.endswith(f"/{pc}/data"))

    province.wait(lambda: all(after(pc) >= 2 for pc in switches), 60, "data after the switch")
    messages = province.observer.snapshot()
    sent = {pc: [m for m in messages if m.topic.endswith(f"/{pc}/data")] for pc in PCS}
    for pc, switch in switches.items():
        assert any(m.topic.endswith(f"/{pc}/data") for m in messages[:switch]), pc
    for pc, mine in sent.items():
        first: dict[int, bytes] = {}
        for message in mine:
            seq = decode_envelope(message.payload).seq
            assert first.setdefault(seq, message.payload) == message.payload, f"{pc}: seq {seq}"
        assert list(first) == sorted(first), f"{pc}: envelopes sent out of order"
    last = {pc: max(seqs(mine, pc)) for pc, mine in sent.items()}

    def stored() -> bool:
        record = applied_record(province)
        return all(record[pc] and record[pc][-1][0] >= last[pc] for pc in PCS)

    province.wait(stored, 60, "the collector's store applied what the broker passed on")
    for pc, record in applied_record(province).items():
        numbers = [seq for seq, _, _ in record]
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"{pc}: seqs missing"
        assert numbers[0] == min(seqs(sent[pc], pc)), f"{pc}: its first envelopes missing"
        twice = [seq for seq, times, _ in record if times != 1]
        assert not twice, f"{pc}: applied more than once: {twice}"
        applied_at = [first for _, _, first in record]
        assert applied_at == sorted(applied_at), f"{pc}: envelopes applied out of order"


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
    messages = province.observer.snapshot()
    switched = {pc: birth_at(messages, pc, B) for pc in PCS}
    assert_each_envelope_applied_once_in_order(province, switched)

    # The release manager replaces the three root keys (two of three, as before), then
    # the targets key with the new root's; the PCs hold only root v1.
    new_roots = ("root-d", "root-e", "root-f")
    for name in new_roots:
        province.release("keygen", "root", province.key(name))
    rotated = province.release(
        "rotate", "--role", "root", *(a for n in new_roots for a in ("--new-key", province.key(n))),
        "--threshold", "2", "--key", province.key("root-a"), "--key", province.key("root-c"),
    ).stdout  # fmt: skip
    assert "published: 2.root.json" in rotated, rotated
    province.release("keygen", "targets", province.key("targets-2"))
    province.release("rotate", "--role", "targets", "--new-key", province.key("targets-2"),
                     "--key", province.key("root-d"), "--key", province.key("root-f"),
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
    # It followed the root's chain: v1 (what it was given), v2 (new root keys), v3.
    trusted = json.loads((province.homes[LAB].root / "tuf" / "metadata" / "root.json").read_text())
    assert trusted["signed"]["version"] == 3, trusted["signed"]["version"]
    # What the lab PC sent before, during and after the version rolled back: one outbox,
    # one sequence, each envelope once.
    rolled_back = birth_at(province.observer.snapshot(), LAB, B, "rolled_back")
    assert_each_envelope_applied_once_in_order(province, {LAB: rolled_back})
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


def update_report(province: Province, pc: str) -> tuple[str, str, str]:
    """The PC's last update report as the collector's store holds it: state, version, why."""
    uri = f"file:{province.site.collector.state}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        row = db.execute(
            "SELECT state, version, reason FROM agent_updates WHERE agent_key = ?",
            (f"dong-nai/la-nga/{pc}",),
        ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else ("", "", "")


@pytest.mark.timeout(300)
def test_what_the_lab_pc_must_refuse_is_refused_reported_and_its_version_kept(
    province: Province,
) -> None:
    """After the rollout above: the lab PC runs 0.9.2, committed (its floor). Each order
    or change below is refused by the PC, which says so to the collector and keeps 0.9.2."""
    home = province.homes[LAB]
    assert province.running(LAB) == B and home.floor() == B, "runs after the rollout test"

    def ordered(version: str) -> None:
        province.rollout("start", version, "--rings", "lab", "--lab", LAB_PC,
                         "--gate", GATE, "--spread", SPREAD)  # fmt: skip

    def reported(state: str, version: str, why: str) -> str:
        province.wait(
            lambda: (r := update_report(province, LAB))[:2] == (state, version) and why in r[2],
            120, f"the collector told that the lab PC {state} {version} ({why})",
        )  # fmt: skip
        return update_report(province, LAB)[2]

    def kept() -> None:
        assert province.running(LAB) == B and home.current() == B and home.pending() is None
        # Nothing new unpacked, not even half (0.9.3 is kept for inspection until the next commit).
        assert {p.name for p in home.versions.iterdir()} <= {A, B, B_CRASHING}

    # Signed and listed, but older than what the PC committed.
    ordered(A)
    reported("refused", A, f"below the floor {B}")
    kept()
    province.rollout("halt")

    # Signed as it should be; its file then changed on the collector (its disk, a proxy).
    changed = "0.9.4"
    built = province.bundles / f"commune-agent-{changed}.zip"
    province.release("build", "--version", changed, "-o", str(built))
    province.release("add", str(built), "--key", province.key("targets-2"))
    [target] = (province.site.root / "releases" / "targets").glob(f"*.{built.name}")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    ordered(changed)
    why = reported("refused", changed, "tampered")
    assert "hash" in why, why
    kept()

    # Targets signed with the key the rotation retired (a key lost, or taken), put in
    # place with a snapshot and timestamp the collector signs as it would.
    repository = province.site.root / "releases"
    online = province.site.collector.state.parent
    current = Repository(repository).targets().signed
    forged = Metadata(Targets(version=current.version + 1, expires=current.expires,
                              targets=dict(current.targets),
                              unrecognized_fields=dict(current.unrecognized_fields)))  # fmt: skip
    retired = keyfiles.read(Path(province.key("targets")), "targets")
    assert retired.signer is not None
    forged.sign(retired.signer)
    forged.to_file(str(repository / "metadata" / f"{forged.signed.version}.targets.json"))
    Repository(repository).refresh_online(load_online(online))
    reported("refused", changed, "wrong signature")
    kept()

    # The targets the release manager signed long ago (a revocation, 200 days back; they
    # are valid 90): expired. The collector's online roles are fresh; it cannot renew
    # the offline targets, and the PC installs nothing, the order still standing.
    old = Repository(repository, clock=lambda: time.time() - 200 * 86400)
    old.revoke(A, "superseded")
    old.sign([keyfiles.read(Path(province.key("targets-2")), "targets")])
    old.publish(online)
    Repository(repository).refresh_online(load_online(online))
    reported("failed", changed, "expired")
    kept()
    province.rollout("halt")
