"""The release repository: key files, staging and thresholds, publishing, the online
re-signing job, the expiry alert, and the web app serving it read-only."""

from __future__ import annotations

import http.client
import os
import stat
import time
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Timestamp

from collector.alerts.engine import AlertEngine
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules
from collector.release import keys as keyfiles
from collector.release.online import OnlineSigner
from collector.release.repository import ReleaseError, Repository, make_online
from collector.state.store import StateStore
from tests.releases import Keys, bundle_of, make_releases, served
from tests.servers import wait_for

DAY = 86400.0


def test_a_key_file_is_private_its_public_half_beside_it(tmp_path: Path) -> None:
    key = keyfiles.generate(tmp_path / "usb" / "targets.key", "targets")
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    again = keyfiles.read(key.path, "targets")
    assert again.keyid == key.keyid and again.signer is not None
    public = keyfiles.read(keyfiles.public_path(key.path))
    assert (public.keyid, public.role, public.signer) == (key.keyid, "targets", None)
    with pytest.raises(FileExistsError):
        keyfiles.generate(key.path, "targets")  # never over a key
    with pytest.raises(keyfiles.KeyFileError, match="a targets key, not a root key"):
        keyfiles.read(key.path, "root")
    os.chmod(key.path, 0o644)  # copied by hand
    keyfiles.read(key.path)
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600


def test_a_public_key_file_naming_another_key_id_is_refused(tmp_path: Path) -> None:
    key = keyfiles.generate(tmp_path / "root.key", "root")
    public = keyfiles.public_path(key.path)
    other = keyfiles.generate(tmp_path / "other.key", "root").keyid
    public.write_text(public.read_text().replace(key.keyid, other))
    with pytest.raises(keyfiles.KeyFileError, match="its key id is not its key's"):
        keyfiles.read(public)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "no role named"),
        (b"# commune-collector release key, role targets (x)\nnot base64!\n", "not a release"),
        (b"# commune-collector release key, role targets (x)\nAAAA\n", "3 bytes, not 32"),
        (b"# commune-collector release key, role wizard (x)\nAAAA\n", "no role named"),
        (b"\xff\xfe", "not text"),
        (b'{"role": "root", "keyid": "x", "key": {}}', "not a release public key file"),
    ],
)
def test_a_bad_key_file_is_refused_by_name(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(keyfiles.KeyFileError, match=why) as caught:
        keyfiles.read(path)
    assert str(path) in str(caught.value)


def test_a_root_of_two_of_three_waits_for_its_second_signature(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "offline")
    roots = [keys.make(n, "root") for n in ("a", "b", "c")]
    targets = keys.make("t", "targets")
    repo = Repository(tmp_path / "releases")
    public = [keyfiles.read(keyfiles.public_path(k.path)) for k in roots]
    repo.init([roots[0], public[1], public[2]], 2, [targets], 1, make_online(tmp_path))
    assert repo.publish(tmp_path) == [] and not repo.initialised()
    [root, _] = sorted(repo.signatures(), key=lambda s: s.role)
    assert root.needed == [("new root", 1, sorted([roots[1].short, roots[2].short]))]
    with pytest.raises(ReleaseError, match="no staged role is to be signed by these keys"):
        repo.sign([keys.make("stranger", "root")])
    repo.sign([roots[2]])
    written = repo.publish(tmp_path)
    assert written == ["1.targets.json", "1.root.json", "1.snapshot.json", "timestamp.json"]
    assert repo.initialised() and repo.staged() == {}
    root_file = Metadata.from_file(str(repo.metadata_dir / "1.root.json"))
    assert set(root_file.signatures) == {roots[0].keyid, roots[2].keyid}
    assert root_file.signed.consistent_snapshot is True


def test_thresholds_and_keys_are_checked_at_init(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "offline")
    root, targets = keys.make("r", "root"), keys.make("t", "targets")
    repo = Repository(tmp_path / "releases")
    online = make_online(tmp_path)
    with pytest.raises(ReleaseError, match="between 1 and its 1 keys, not 2"):
        repo.init([root], 2, [targets], 1, online)
    with pytest.raises(ReleaseError, match="a targets key given for the root role"):
        repo.init([targets], 1, [targets], 1, online)
    with pytest.raises(ReleaseError, match="the same key twice"):
        repo.init([root, root], 1, [targets], 1, online)
    repo.init([root], 1, [targets], 1, online)
    with pytest.raises(ReleaseError, match="a release repository is here already"):
        repo.init([root], 1, [targets], 1, online)


def test_a_release_is_added_once_and_a_revoked_number_never_again(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    repo = releases.repo
    releases.add("1.0")
    [release] = repo.releases()
    assert (release.version, release.path) == ("1.0", "commune-agent-1.0.zip")
    assert releases.target_file("1.0").name == f"{release.sha256}.commune-agent-1.0.zip"
    assert release.length == bundle_of(tmp_path, "1.0").stat().st_size
    with pytest.raises(ReleaseError, match="released already"):
        repo.add(bundle_of(tmp_path, "1.0"))
    repo.revoke("1.0", "bad")
    releases.sign("targets")
    assert repo.signed_versions() == set()
    assert list(repo.listing().revoked) == ["1.0"]
    with pytest.raises(ReleaseError, match="was revoked"):
        repo.add(bundle_of(tmp_path, "1.0"))
    with pytest.raises(ReleaseError, match="not in the targets"):
        repo.revoke("9.9", "")


def test_what_is_not_an_agent_bundle_is_refused(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ReleaseError, match="not an agent bundle"):
        releases.repo.add(junk)
    with pytest.raises(ReleaseError, match="cannot read"):
        releases.repo.add(tmp_path / "missing.zip")
    assert releases.repo.staged() == {}


def test_staged_changes_are_not_published_until_signed(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    releases.repo.add(bundle_of(tmp_path, "1.0"))
    assert releases.repo.publish(releases.online_dir) == []
    assert releases.repo.signed_versions() == set()
    releases.sign("targets")
    assert releases.repo.signed_versions() == {"1.0"}


# The online re-signing job.


def test_the_collector_re_signs_the_online_roles_at_half_their_validity(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    now = [time.time()]
    repo = Repository(releases.repo.path, clock=lambda: now[0])
    signer = OnlineSigner(repo, releases.online_dir, clock=lambda: now[0])
    first = repo.timestamp()
    assert first is not None
    signer.tick()
    assert repo.timestamp().signed.version == first.signed.version  # type: ignore[union-attr]
    now[0] += 0.6 * DAY  # timestamp valid a day: past half
    signer.tick()
    timestamp = repo.timestamp()
    assert timestamp is not None and timestamp.signed.version == first.signed.version + 1
    assert repo.snapshot().signed.version == 1  # type: ignore[union-attr]
    now[0] += 4 * DAY  # snapshot valid a week: past half
    signer.tick()
    assert repo.snapshot().signed.version == 2  # type: ignore[union-attr]
    assert signer.resigned_total == 3 and signer.failures_total == 0
    assert not any(role.expiring for role in signer.roles())


def test_targets_published_without_the_online_keys_are_snapshotted_by_the_collector(
    tmp_path: Path,
) -> None:
    """The release manager signs on a machine without the online keys: the running
    collector writes snapshot and timestamp at its next round."""
    releases = make_releases(tmp_path)
    repo = releases.repo
    repo.add(bundle_of(tmp_path, "1.0"))
    repo.sign([releases.keys["targets"]])
    assert repo.publish(None) == ["2.targets.json"]
    assert repo.snapshot().signed.meta["targets.json"].version == 1  # type: ignore[union-attr]
    OnlineSigner(repo, releases.online_dir).tick()
    assert repo.snapshot().signed.meta["targets.json"].version == 2  # type: ignore[union-attr]


def test_a_failing_re_signing_is_counted_and_alerted_before_expiry(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    now = [time.time()]
    repo = Repository(releases.repo.path, clock=lambda: now[0])
    signer = OnlineSigner(repo, releases.online_dir, clock=lambda: now[0])
    keyfiles.online_key_path(releases.online_dir, "timestamp").unlink()  # lost
    store = StateStore(tmp_path / "state.sqlite")
    engine = AlertEngine(default_rules(), clock=lambda: now[0], releases=signer.roles)
    engine.install(store)
    signer.tick()
    engine.tick(store, now[0])
    assert signer.failures_total == 1 and "release-timestamp.key" in signer.last_error
    assert list_alerts(store, now[0]) == []  # a whole day left
    now[0] += 0.6 * DAY
    signer.tick()
    engine.tick(store, now[0])
    [alert] = list_alerts(store, now[0], state="firing")
    assert (alert.rule, alert.name, alert.province) == (
        "release_metadata_expiring", "timestamp", "",
    )  # fmt: skip
    assert float(alert.value) == pytest.approx(0.4, abs=0.05)
    make_online_again = keyfiles.generate(
        keyfiles.online_key_path(releases.online_dir, "timestamp"), "timestamp"
    )
    assert make_online_again.keyid not in repo.root().signed.roles["timestamp"].keyids
    signer.tick()  # a new key is not the root's: still failing, says what to do
    assert "rotate the online keys" in signer.last_error
    store.close()


def test_offline_roles_warn_a_month_and_a_fortnight_ahead(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    now = [time.time() + 340 * DAY]  # root (365 days) has 25 left, targets (90) expired
    repo = Repository(releases.repo.path, clock=lambda: now[0])
    signer = OnlineSigner(repo, releases.online_dir, lambda: now[0])
    signer.tick()
    expiring = {r.role: r.expiring for r in signer.roles()}
    assert expiring == {"root": True, "targets": True, "snapshot": False, "timestamp": False}
    now[0] = time.time() + 80 * DAY  # targets have 10 days left, root 285
    signer.tick()
    assert {r.role for r in signer.roles() if r.expiring} == {"targets"}


def test_nothing_happens_before_init(tmp_path: Path) -> None:
    signer = OnlineSigner(Repository(tmp_path / "releases"), tmp_path)
    signer.tick()
    assert (signer.roles(), signer.failures_total) == ([], 0)
    assert not (tmp_path / "releases").exists()


# Serving.


def _get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_the_web_app_serves_the_repository_read_only(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    releases.add("1.0")
    target = releases.target_file("1.0")
    (releases.repo.staged_dir).mkdir(exist_ok=True)
    (releases.repo.staged_dir / "root.json").write_text("{}")
    with served(releases) as (server, files):
        status, headers, body = _get(server.port, "/releases/metadata/timestamp.json")
        assert status == 200 and headers["cache-control"] == "no-cache"
        assert Metadata[Timestamp].from_bytes(body).signed.type == "timestamp"
        status, headers, body = _get(server.port, "/releases/metadata/1.root.json")
        assert status == 200 and "immutable" in headers["cache-control"]
        status, headers, body = _get(server.port, f"/releases/targets/{target.name}")
        assert (status, body) == (200, target.read_bytes())
        for path in (
            "/releases/metadata/",
            "/releases/metadata/../staged/root.json",
            "/releases/metadata/..%2Fstaged%2Froot.json",
            "/releases/metadata/%2E%2E/%2E%2E/state.sqlite",
            "/releases/metadata/9.root.json",
            "/releases/metadata/0.root.json",
            "/releases/metadata/.lock",
            "/releases/targets/",
            "/releases/targets/commune-agent-1.0.zip",
            f"/releases/targets/{target.name[:-4]}",
            "/releases/staged/root.json",
            "/releases/",
        ):
            assert _get(server.port, path)[0] == 404, path
        assert files.requests[("metadata", "served")] == 2
        assert files.requests[("target", "served")] == 1
        assert files.bytes_sent > target.stat().st_size
        for method in ("PUT", "POST", "DELETE"):  # read-only
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                connection.request(method, f"/releases/targets/{target.name}", body=b"x")
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (405, b'{"detail":"Method Not Allowed"}')
            finally:
                connection.close()
        assert target.read_bytes() == releases.target_file("1.0").read_bytes()
        wait_for(lambda: files.sending == 0, 10, "every bundle's place given back")


def test_above_the_cap_bundles_are_refused_with_a_jittered_retry_after(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    releases.add("1.0")
    name = releases.target_file("1.0").name
    with served(releases, max_downloads=2) as (server, files):
        assert files.take() and files.take()
        waits = set()
        for _ in range(8):
            status, headers, _ = _get(server.port, f"/releases/targets/{name}")
            assert status == 503
            waits.add(int(headers["retry-after"]))
        assert all(6 <= w <= 11 for w in waits) and len(waits) > 1, waits
        assert _get(server.port, "/releases/metadata/timestamp.json")[0] == 200  # not capped
        files.give_back()
        assert _get(server.port, f"/releases/targets/{name}")[0] == 200
        wait_for(lambda: files.sending == 1, 10, "the bundle sent gave its place back")
        assert files.requests[("target", "busy")] == 8
        figures = {f.name: f for f in files.figures()}
        busy = figures["commune_collector_release_requests_total"].samples
        assert ("", {"kind": "target", "outcome": "busy"}, 8) in busy


def test_no_repository_yet_answers_404(tmp_path: Path) -> None:
    releases = make_releases(tmp_path)
    for entry in releases.repo.metadata_dir.iterdir():
        entry.unlink()
    with served(releases) as (server, _):
        assert _get(server.port, "/releases/metadata/timestamp.json")[0] == 404


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")
def test_made_by_root_the_repository_belongs_to_the_collectors_user(tmp_path: Path) -> None:
    """The release manager runs `sudo commune-collector release ...`; the service, as its
    own user, must still re-sign in the repository and read its online keys."""
    state = tmp_path / "var"
    state.mkdir()
    os.chown(state, 4321, 4321)
    keys = Keys(tmp_path / "offline")
    repo = Repository(state / "releases")
    repo.init([keys.make("r", "root")], 1, [keys.make("t", "targets")], 1, make_online(state))
    repo.publish(state)
    repo.add(bundle_of(tmp_path, "1.0"))
    made = [repo.path, *repo.path.rglob("*"), *state.glob("release-*")]
    assert len(made) > 10
    assert {(p.stat().st_uid, p.stat().st_gid) for p in made} == {(4321, 4321)}


def test_one_address_holds_only_its_share_of_the_downloads(tmp_path: Path) -> None:
    """A few slow readers in one place cannot hold every place: the others are served."""
    releases = make_releases(tmp_path)
    releases.add("1.0")
    name = releases.target_file("1.0").name
    with served(releases, max_downloads=10) as (server, files):
        files.max_per_address = 2
        assert files.take("127.0.0.1") and files.take("127.0.0.1")
        status, headers, _ = _get(server.port, f"/releases/targets/{name}")
        assert status == 503 and int(headers["retry-after"]) >= 6
        status, _, body = _get(server.port, f"/releases/targets/{name}", source="127.0.0.2")
        assert status == 200 and body == releases.target_file("1.0").read_bytes()
        files.give_back("127.0.0.1")
        assert _get(server.port, f"/releases/targets/{name}")[0] == 200
        wait_for(lambda: dict(files.by_address) == {"127.0.0.1": 1}, 10, "places given back")
