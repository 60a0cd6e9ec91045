"""The agent's TUF client against the collector's web app on loopback, serving a real
repository: what it installs, and everything it refuses or fails at, by name, without
ever raising. Then a key rotation drill: root and targets keys replaced while an agent
holds the first root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, TargetFile, Targets, Timestamp

from agent.update import bundle
from agent.update.fetch import FetchResult, ReleaseFetcher
from collector.release import keys as keyfiles
from collector.release.repository import ReleaseError, load_online
from collector.web.releases import ReleaseFiles
from tests.releases import Releases, bundle_of, make_releases, served
from tests.servers import REPO, AppServer, free_port

pytestmark = pytest.mark.servers


class Site:
    def __init__(self, releases: Releases, server: AppServer, files: ReleaseFiles) -> None:
        self.releases = releases
        self.server = server
        self.files = files

    def agent(self, name: str = "pc") -> ReleaseFetcher:
        """A PC whose kit holds the repository's first root."""
        home = self.releases.workdir / name
        if not (home / "tuf" / "root.json").exists():
            (home / "tuf").mkdir(parents=True)
            shutil.copy(self.releases.repo.metadata_dir / "1.root.json", home / "tuf" / "root.json")
        return ReleaseFetcher(home, self.server.url, timeout_s=10)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    releases = make_releases(tmp_path)
    releases.add("1.0")
    with served(releases) as (server, files):
        yield Site(releases, server, files)


def refused(result: FetchResult, reason: str) -> None:
    assert (result.kind, result.path) == ("refused", ""), result
    assert result.reason.startswith(reason), result


def failed(result: FetchResult, reason: str) -> None:
    assert (result.kind, result.path) == ("failed", ""), result
    assert result.reason.startswith(reason), result


def test_an_agent_gets_a_signed_release_verified_and_kept(site: Site) -> None:
    agent = site.agent()
    result = agent.get("1.0", floor="0.9")
    assert result.ok, result
    path = Path(result.path)
    assert path == agent.downloads / "commune-agent-1.0.zip"
    assert bundle.read_manifest(path).version == "1.0"
    assert path.read_bytes() == site.releases.target_file("1.0").read_bytes()
    assert [p.name for p in agent.downloads.iterdir()] == ["commune-agent-1.0.zip"]
    served_before = site.files.requests[("target", "served")]
    assert served_before == 1
    again = agent.get("1.0", floor="1.0")  # verified again from the cache, not downloaded
    assert again.ok and again.path == result.path
    assert site.files.requests[("target", "served")] == served_before
    site.releases.add("1.1")
    assert agent.get("1.1").ok
    assert [p.name for p in agent.downloads.iterdir()] == ["commune-agent-1.1.zip"]


def test_a_version_the_targets_do_not_list_is_refused(site: Site) -> None:
    refused(site.agent().get("1.1"), "unlisted: 1.1 is not in the signed targets")
    refused(site.agent().get("../../etc"), "not a release version")


def test_a_revoked_version_is_refused_with_why(site: Site) -> None:
    agent = site.agent()
    assert agent.get("1.0").ok
    site.releases.repo.revoke("1.0", "crashes at start")
    site.releases.sign("targets")
    result = agent.get("1.0")
    refused(result, "revoked: 1.0")
    assert "crashes at start" in result.reason


def test_a_version_below_the_floor_is_refused_before_asking(site: Site) -> None:
    refused(site.agent().get("1.0", floor="1.0.1"), "below floor: 1.0 is below 1.0.1")
    assert sum(site.files.requests.values()) == 0


def test_a_truncated_bundle_is_refused_and_nothing_is_kept(site: Site) -> None:
    target = site.releases.target_file("1.0")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    agent = site.agent()
    result = agent.get("1.0")
    refused(result, "truncated:")
    assert f"of the {len(data)} signed bytes" in result.reason
    assert list(agent.downloads.iterdir()) == []


def test_a_tampered_bundle_is_refused(site: Site) -> None:
    target = site.releases.target_file("1.0")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    agent = site.agent()
    refused(agent.get("1.0"), "tampered: the bundle's hash is not the signed one")
    target.write_bytes(bytes(data) + b"more")  # longer than signed: cut at the signed length
    refused(agent.get("1.0"), "tampered bundle: longer than signed")
    assert list(agent.downloads.iterdir()) == []


def test_a_cached_bundle_changed_on_the_pc_is_fetched_again(site: Site) -> None:
    agent = site.agent()
    path = Path(agent.get("1.0").path)
    path.write_bytes(b"eaten by anti-malware")
    result = agent.get("1.0")
    assert result.ok and bundle.read_manifest(Path(result.path)).version == "1.0"


def _publish_foreign_targets(releases: Releases, signer: keyfiles.ReleaseKey) -> None:
    """Targets listing 2.0, signed by ``signer`` (not the root's targets key), put in
    place with a snapshot and timestamp the collector signs as it would."""
    current = releases.repo.targets()
    forged = Metadata(Targets(version=current.signed.version + 1, expires=current.signed.expires))
    forged.signed.targets = dict(current.signed.targets)
    source = bundle_of(releases.workdir, "2.0")
    target = TargetFile.from_file("commune-agent-2.0.zip", str(source))
    target.unrecognized_fields["custom"] = {"version": "2.0"}
    forged.signed.targets[target.path] = target
    shutil.copy(source, releases.repo.targets_dir / f"{target.hashes['sha256']}.{target.path}")
    forged.sign(signer.signer)  # type: ignore[arg-type]
    forged.to_file(str(releases.repo.metadata_dir / f"{forged.signed.version}.targets.json"))
    releases.repo.refresh_online(load_online(releases.online_dir))


def test_targets_signed_by_a_key_the_root_does_not_name_are_refused(site: Site) -> None:
    agent = site.agent()
    assert agent.get("1.0").ok
    stranger = keyfiles.generate(site.releases.workdir / "stranger.key", "targets")
    _publish_foreign_targets(site.releases, stranger)
    refused(agent.get("2.0"), "wrong signature")
    refused(site.agent("new-pc").get("1.0"), "wrong signature")  # nothing passes from it


def test_a_timestamp_signed_by_a_stranger_is_refused(site: Site) -> None:
    agent = site.agent()
    assert agent.get("1.0").ok
    path = site.releases.repo.metadata_dir / "timestamp.json"
    forged = Metadata[Timestamp].from_file(str(path))
    forged.signed.version += 1
    forged.signed.snapshot_meta = MetaFile(version=forged.signed.snapshot_meta.version)
    forged.sign(keyfiles.generate(site.releases.workdir / "x.key", "timestamp").signer)  # type: ignore[arg-type]
    forged.to_file(str(path))
    refused(agent.get("1.0"), "wrong signature")


def test_expired_metadata_is_a_failure_and_the_agent_recovers_once_re_signed(site: Site) -> None:
    agent = site.agent()
    assert agent.get("1.0").ok
    releases = site.releases
    releases.repo.clock = lambda: time.time() - 3 * 86400  # signed three days ago: expired
    releases.resign_online()
    result = agent.get("1.0")
    failed(result, "metadata expired")
    assert "clock is ahead" in result.reason
    failed(site.agent("new-pc").get("1.0"), "metadata expired")
    releases.repo.clock = time.time
    releases.resign_online()
    assert agent.get("1.0").ok


def test_expired_targets_are_a_failure(site: Site) -> None:
    releases = site.releases
    releases.repo.clock = lambda: time.time() - 200 * 86400  # targets valid 90 days
    releases.add("1.1")
    releases.repo.clock = time.time
    releases.resign_online()
    failed(site.agent().get("1.1"), "metadata expired")


def test_metadata_older_than_what_the_agent_saw_is_refused(site: Site) -> None:
    agent = site.agent()
    timestamp = site.releases.repo.metadata_dir / "timestamp.json"
    old = timestamp.read_bytes()
    site.releases.resign_online()
    assert agent.get("1.0").ok  # saw the newer timestamp
    timestamp.write_bytes(old)  # a replay of the older, validly signed one
    refused(agent.get("1.0"), "metadata rollback")


def test_the_online_key_alone_cannot_roll_an_agent_back(site: Site) -> None:
    """A timestamp validly signed with the collector's own online key (a collector broken
    into) pointing at an older snapshot — the targets before 1.1 — is refused."""
    agent = site.agent()
    before = site.releases.repo.snapshot()
    assert before is not None
    site.releases.add("1.1")
    assert agent.get("1.1").ok
    path = site.releases.repo.metadata_dir / "timestamp.json"
    replay = Metadata[Timestamp].from_file(str(path))
    replay.signed.version += 1
    replay.signed.snapshot_meta = MetaFile(version=before.signed.version)
    replay.sign(load_online(site.releases.online_dir).timestamp.signer)  # type: ignore[arg-type]
    replay.to_file(str(path))
    refused(agent.get("1.1"), "metadata rollback")


def test_garbage_metadata_is_refused_not_a_crash(site: Site) -> None:
    (site.releases.repo.metadata_dir / "timestamp.json").write_bytes(b"\x00{not json" * 100)
    result = site.agent().get("1.0")
    assert result.kind == "refused" and result.reason.startswith("bad metadata"), result


def test_an_unreachable_collector_is_a_failure(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    home = tmp_path / "pc"
    (home / "tuf").mkdir(parents=True)
    shutil.copy(releases.repo.metadata_dir / "1.root.json", home / "tuf" / "root.json")
    agent = ReleaseFetcher(home, f"http://127.0.0.1:{free_port()}", timeout_s=5)
    failed(agent.get("1.0"), "unreachable:")


def test_no_trusted_root_is_a_failure_naming_the_command(site: Site, tmp_path: Path) -> None:
    result = ReleaseFetcher(tmp_path / "bare", site.server.url).get("1.0")
    failed(result, "no trusted root")
    assert "update-root fetch" in result.reason
    (tmp_path / "bare" / "tuf").mkdir(parents=True)
    (tmp_path / "bare" / "tuf" / "root.json").write_text("{}")
    failed(ReleaseFetcher(tmp_path / "bare", site.server.url).get("1.0"), "the trusted root")


def test_a_busy_collector_says_when_to_come_back(site: Site) -> None:
    taken = 0
    while site.files.take():
        taken += 1
    assert taken == 4
    result = site.agent().get("1.0")
    failed(result, "busy")
    assert result.retry_after is not None and 5 <= result.retry_after <= 11
    assert site.files.requests[("target", "busy")] == 1
    for _ in range(taken):
        site.files.give_back()
    assert site.agent().get("1.0").ok


def test_the_module_prints_one_json_line_for_the_launcher(site: Site) -> None:
    agent = site.agent()
    command = [sys.executable, "-m", "agent.update.fetch", "--home", str(agent.home),
               "--url", site.server.url, "--version"]  # fmt: skip
    done = subprocess.run(
        [*command, "1.0"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    answer = json.loads(line)
    assert answer["ok"] is True and answer["kind"] == "ok" and answer["retry_after"] is None
    assert bundle.read_manifest(Path(answer["path"])).version == "1.0"
    releases_url = [*command[:-2], f"{site.server.url}/releases/", "--version"]  # either form
    done = subprocess.run(
        [*releases_url, "7.0"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "ok": False, "kind": "refused", "path": None, "retry_after": None,
        "reason": "unlisted: 7.0 is not in the signed targets",
    }  # fmt: skip


# The key rotation drill.


def test_rotation_drill_root_and_targets_keys_replaced_an_old_agent_follows(site: Site) -> None:
    releases, repo, keys = site.releases, site.releases.repo, site.releases.keys
    agent = site.agent()
    assert agent.get("1.0").ok  # trusts root v1 only
    # Root: three new keys, 2 of 3; signed by 2 of the old and 2 of the new.
    new_roots = [keys.make(name, "root") for name in ("root-d", "root-e", "root-f")]
    repo.rotate("root", new_roots, 2)
    releases.sign("root-a")  # one old signature: nothing published yet
    assert [s.complete for s in repo.signatures()] == [False]
    releases.sign("root-b", "root-d")
    assert not repo.signatures()[0].complete  # the new root's own threshold is 2
    releases.sign("root-e")
    assert repo.signatures() == [] and repo.root().signed.version == 2
    # Targets: a new key, the root v3 naming it signed by the new root keys alone.
    repo.rotate("targets", [keys.make("targets-2", "targets")], 1)
    with pytest.raises(ReleaseError, match="no staged role is to be signed by these keys"):
        releases.sign("root-a", "root-b")  # the old root keys are no longer root's
    assert not any(s.complete for s in repo.signatures())
    releases.sign("root-d", "root-f", "targets-2")
    assert repo.signatures() == [] and repo.root().signed.version == 3
    # The old targets key can no longer release anything.
    repo.add(bundle_of(releases.workdir, "1.1"))
    with pytest.raises(ReleaseError, match="no staged role is to be signed by these keys"):
        releases.sign("targets")
    releases.sign("targets-2")
    # The agent holding root v1 walks v2, v3 and takes 1.1.
    result = agent.get("1.1", floor="1.0")
    assert result.ok, result
    trusted = Metadata.from_file(str(agent.metadata_dir / "root.json"))
    assert trusted.signed.version == 3
    assert agent.get("1.0").ok  # still listed, re-signed by the new key
    # Online keys rotate too: the collector's new timestamp key is used once published.
    old_timestamp = load_online(releases.online_dir).timestamp.keyid
    new_timestamp = keyfiles.generate(
        keyfiles.next_path(keyfiles.online_key_path(releases.online_dir, "timestamp")),
        "timestamp",
    )
    repo.rotate("timestamp", [new_timestamp], 1)
    releases.sign("root-d", "root-e")
    assert load_online(releases.online_dir).timestamp.keyid == new_timestamp.keyid != old_timestamp
    assert agent.get("1.1").ok
    assert site.agent("kit-v1-pc").get("1.1").ok  # a PC installed from the old kit, today


def test_a_root_signed_by_the_new_keys_alone_is_refused(site: Site) -> None:
    """Whoever holds new keys but not the old root's threshold cannot make a root the
    agents follow."""
    repo, keys = site.releases.repo, site.releases.keys
    agent = site.agent()
    assert agent.get("1.0").ok
    thief = [keys.make(name, "root") for name in ("x-1", "x-2")]
    repo.rotate("root", thief, 2)
    staged = repo.staged()["root"]
    for key in thief:
        staged.sign(key.signer, append=True)  # type: ignore[arg-type]
    staged.to_file(str(repo.metadata_dir / "2.root.json"))
    refused(agent.get("1.0"), "wrong signature")


def test_a_full_disk_is_a_failure_and_leaves_nothing_behind(site: Site) -> None:
    """The update process writing past what the disk holds (here: a file size limit):
    failed, disk full; no partial bundle stays."""
    agent = site.agent()
    limit = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000)); "
        "from agent.update.fetch import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", limit, "--home", str(agent.home), "--url", site.server.url,
         "--version", "1.0"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    answer = json.loads(done.stdout)
    assert answer["kind"] == "failed" and answer["reason"].startswith("disk full"), answer
    assert list(agent.downloads.iterdir()) == []


def test_update_root_fetch_trusts_the_collectors_newest_root(site: Site, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.commands import main

    home = tmp_path / "installed-without-root"
    fetch = ["update-root", "fetch", "--home", str(home), "--collector", site.server.url]
    result = CliRunner().invoke(main, fetch)
    assert result.exit_code == 0, result.output
    assert "root v1" in result.output and "root 2 of" in result.output
    trusted = home / "tuf" / "root.json"
    assert trusted.read_bytes() == (site.releases.repo.metadata_dir / "1.root.json").read_bytes()
    assert ReleaseFetcher(home, site.server.url).get("1.0").ok
    shown = CliRunner().invoke(main, ["update-root", "show", "--home", str(home)])
    assert shown.exit_code == 0 and "trusted now: root v1" in shown.output
    (site.releases.repo.metadata_dir / "root.json").write_text('{"signed": {}}')
    refused_root = CliRunner().invoke(main, fetch)
    assert refused_root.exit_code == 1 and "root is refused" in refused_root.output
    assert trusted.read_bytes() == (site.releases.repo.metadata_dir / "1.root.json").read_bytes()
    away = CliRunner().invoke(
        main, ["update-root", "fetch", "--home", str(home), "--collector",
               f"http://127.0.0.1:{free_port()}"],
    )  # fmt: skip
    assert away.exit_code == 3 and "nothing was changed" in away.output
    (site.releases.repo.metadata_dir / "root.json").unlink()
    gone = CliRunner().invoke(main, fetch)
    assert gone.exit_code == 1 and "404" in gone.output and "Traceback" not in gone.output
    missing = CliRunner().invoke(main, ["update-root", "show", "--home", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "update-root fetch" in missing.output


def test_a_repository_made_anew_is_trusted_after_update_root_fetch(site: Site) -> None:
    """Two root sticks lost: a new repository, new keys; a PC that knew the old one
    refuses it (its remembered versions are higher) until given the new root."""
    from click.testing import CliRunner

    from agent.commands import main
    from collector.release.keys import ONLINE

    agent = site.agent()
    for _ in range(3):
        site.releases.resign_online()
    assert agent.get("1.0").ok
    repo = site.releases.repo
    shutil.move(repo.path, repo.path.with_name("releases.lost"))
    for role in ONLINE:
        key = keyfiles.online_key_path(site.releases.online_dir, role)
        key.rename(key.with_name(key.name + ".lost"))
    fresh = make_releases(site.releases.workdir, offline="new-sticks")
    fresh.add("1.0")
    assert agent.get("1.0").kind == "refused"  # old root: the new root is not signed by it
    fetch = ["update-root", "fetch", "--home", str(agent.home), "--collector", site.server.url]
    assert CliRunner().invoke(main, fetch).exit_code == 0
    result = agent.get("1.0")
    assert result.ok, result


def test_a_server_trickling_bytes_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    """A byte every tenth of a second never trips a read timeout; the deadline ends it."""
    import socket
    import threading

    releases = make_releases(tmp_path)
    home = tmp_path / "pc"
    (home / "tuf").mkdir(parents=True)
    shutil.copy(releases.repo.metadata_dir / "1.root.json", home / "tuf" / "root.json")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            for _ in range(300):  # at most half a minute, whatever happens
                if stop.is_set():
                    return
                try:
                    connection.sendall(b"{")
                except OSError:
                    return
                stop.wait(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    agent = ReleaseFetcher(
        home, f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=5, deadline_s=1.5
    )
    started = time.monotonic()
    result = agent.get("1.0")
    stop.set()
    listener.close()
    failed(result, "unreachable: the collector is too slow")
    assert time.monotonic() - started < 10


def test_many_agents_at_once_are_spread_by_the_cap_and_all_served(tmp_path: Path) -> None:
    """20 PCs ask at the same moment, 4 bundles at a time: the rest are told to come
    back (jittered), come back when told, and every one gets the release."""
    import threading

    releases = make_releases(tmp_path)
    releases.add("1.0")
    with served(releases, max_downloads=4, per_address=100) as (server, files):
        files.retry_after_s = 1.0
        site = Site(releases, server, files)
        agents = [site.agent(f"pc-{n}") for n in range(20)]
        results: dict[int, FetchResult] = {}
        waits: list[float] = []
        start = threading.Barrier(len(agents))

        def update(n: int) -> None:
            start.wait()
            for _ in range(30):
                result = agents[n].get("1.0")
                if result.kind != "failed" or result.retry_after is None:
                    break
                waits.append(result.retry_after)
                time.sleep(result.retry_after)
            results[n] = result

        began = time.monotonic()
        threads = [threading.Thread(target=update, args=(n,)) for n in range(len(agents))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        took = time.monotonic() - began
    assert len(results) == 20 and all(r.ok for r in results.values()), results
    assert files.peak <= 4 and files.requests[("target", "served")] == 20
    assert files.requests[("target", "busy")] == len(waits)
    assert {2.0, 3.0} >= set(waits)
    print(f"20 agents, cap 4: {len(waits)} busy answers, all served in {took:.1f} s")


def test_over_https_the_collectors_ca_is_required(tmp_path: Path) -> None:
    from tests.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    releases = make_releases(tmp_path)
    releases.add("1.0")
    with served(releases, certfile=str(pki.server_cert), keyfile=str(pki.server_key)) as (
        server,
        files,
    ):
        url = f"https://localhost:{server.port}"
        site = Site(releases, server, files)
        home = site.agent().home
        failed(ReleaseFetcher(home, url).get("1.0"), "unreachable:")  # the system's CAs
        failed(ReleaseFetcher(home, url, str(pki.rogue_ca)).get("1.0"), "unreachable:")
        result = ReleaseFetcher(home, url, str(pki.ca)).get("1.0")
        assert result.ok, result


#: The update process on a PC whose clock is off by ``sys.argv[1]`` days: TUF reads the
#: time once per refresh (trusted_metadata_set), the one place a PC's clock enters.
WRONG_CLOCK = """
import datetime, sys, types
from tuf.ngclient._internal import trusted_metadata_set
days = float(sys.argv.pop(1))
class Clock(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.now(tz) + datetime.timedelta(days=days)
trusted_metadata_set.datetime = types.SimpleNamespace(datetime=Clock, timezone=datetime.timezone)
from agent.update.fetch import main
sys.exit(main())
"""


def _update_with_clock_off(site: Site, days: float, version: str = "1.0") -> dict[str, object]:
    agent = site.agent()
    command = [sys.executable, "-c", WRONG_CLOCK, str(days), "--home", str(agent.home),
               "--url", site.server.url, "--version", version]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_a_pc_whose_clock_is_ahead_fails_as_expired_and_recovers(site: Site) -> None:
    ahead = _update_with_clock_off(site, 2)  # the timestamp is valid a day
    assert ahead["kind"] == "failed" and str(ahead["reason"]).startswith("metadata expired")
    assert "clock is ahead" in str(ahead["reason"])
    assert _update_with_clock_off(site, 0)["kind"] == "ok"  # its clock set right


def test_a_pc_whose_clock_is_behind_still_refuses_what_it_must(site: Site) -> None:
    """Behind, expired metadata looks valid: an old timestamp replayed is refused all the
    same (versions only go up), and a revoked version stays refused."""
    timestamp = site.releases.repo.metadata_dir / "timestamp.json"
    old = timestamp.read_bytes()
    site.releases.repo.revoke("1.0", "bad build")
    site.releases.sign("targets")
    behind = _update_with_clock_off(site, -400)
    assert behind["kind"] == "refused" and str(behind["reason"]).startswith("revoked: 1.0")
    timestamp.write_bytes(old)  # the timestamp that still listed 1.0
    replayed = _update_with_clock_off(site, -400)
    assert replayed["kind"] == "refused", replayed
    assert str(replayed["reason"]).startswith("metadata rollback")


def test_the_update_process_reads_this_module_by_its_contract(site: Site) -> None:
    """The launcher's side (agent/update/process.py) runs this module and reads its line:
    a verified bundle, a refusal and a busy collector come through as they were meant."""
    from agent.update.process import tuf_fetcher

    agent = site.agent()
    fetch = tuf_fetcher(agent.home, site.server.url)
    fetched = fetch("1.0", "0.9")
    assert fetched.refusal is None and fetched.path is not None
    assert bundle.read_manifest(fetched.path).version == "1.0"
    refusal = fetch("1.0", "2.0").refusal
    assert refusal is not None and (refusal.state, refusal.retry_after) == ("refused", None)
    assert "below floor" in refusal.reason
    while site.files.take():
        pass
    Path(fetched.path).unlink()
    busy = fetch("1.0", "").refusal
    assert busy is not None and busy.state == "failed" and busy.retry_after is not None
    assert 5 <= busy.retry_after <= 11
