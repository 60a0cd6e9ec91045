"""A release repository for the tests: real keys, real TUF metadata, real bundles built
from this checkout, served by the collector's web app on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.update import bundle
from collector.config import ApiSection
from collector.release import keys as keyfiles
from collector.release.keys import ReleaseKey, Role
from collector.release.repository import Repository, load_online, make_online
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.web.releases import ReleaseFiles
from tests.servers import REPO, AppServer


def bundle_of(folder: Path, version: str) -> Path:
    """Release ``version`` of this checkout's agent."""
    out = folder / f"commune-agent-{version}.zip"
    if not out.exists():
        bundle.build(REPO, version, out)
    return out


@dataclass
class Keys:
    """The release manager's offline keys, by name (root-a, root-b, root-c, targets)."""

    folder: Path
    made: dict[str, ReleaseKey] = field(default_factory=dict)

    def make(self, name: str, role: Role) -> ReleaseKey:
        self.made[name] = keyfiles.generate(self.folder / f"{name}.key", role)
        return self.made[name]

    def __getitem__(self, name: str) -> ReleaseKey:
        return self.made[name]


@dataclass
class Releases:
    """A repository made as the ceremony says: root 2 of 3, one targets key."""

    workdir: Path
    repo: Repository
    keys: Keys
    online_dir: Path

    def add(self, version: str, *signers: str) -> None:
        self.repo.add(bundle_of(self.workdir, version))
        self.sign(*(signers or ("targets",)))

    def sign(self, *names: str) -> None:
        self.repo.sign([self.keys[n] for n in names])
        self.repo.publish(self.online_dir)

    def resign_online(self) -> list[str]:
        return self.repo.refresh_online(load_online(self.online_dir), force=True)

    def target_file(self, version: str) -> Path:
        [found] = self.repo.targets_dir.glob(f"*.commune-agent-{version}.zip")
        return found


def make_releases(workdir: Path, offline: str = "offline") -> Releases:
    keys = Keys(workdir / offline)
    for name in ("root-a", "root-b", "root-c"):
        keys.make(name, "root")
    keys.make("targets", "targets")
    online_dir = workdir / "collector"
    repo = Repository(workdir / "collector" / "releases")
    online = make_online(online_dir)
    repo.init([keys["root-a"], keys["root-b"], keys["root-c"]], 2, [keys["targets"]], 1, online)
    assert repo.publish(online_dir), "root and targets published"
    return Releases(workdir, repo, keys, online_dir)


@contextlib.contextmanager
def served(
    releases: Releases,
    max_downloads: int = 4,
    per_address: int = 32,
    certfile: str = "",
    keyfile: str = "",
) -> Iterator[tuple[AppServer, ReleaseFiles]]:
    """The collector's web app serving the repository on a loopback port (every client
    here shares one address: ``per_address`` is its connection cap)."""
    from collector.web.factory import create_app
    from collector.web.server import ServerLimits

    store = StateStore(releases.workdir / "state.sqlite")
    files = ReleaseFiles(releases.repo.path, max_downloads, retry_after_s=5.0)
    app = create_app(HealthModel(store, []), store, ApiSection(), releases=files)
    limits = ServerLimits(max_connections_per_address=per_address)
    server = AppServer(app, limits, certfile=certfile, keyfile=keyfile).start()
    try:
        yield server, files
    finally:
        server.stop()
        store.close()
