"""The release repository on disk: TUF metadata (python-tuf's metadata API), staged
changes waiting for offline signatures, the agent bundles as targets.

Layout under ``[releases] path``::

    metadata/<n>.root.json       every root version (agents follow the chain)
    metadata/root.json           a copy of the newest root (``update-root fetch``)
    metadata/<n>.targets.json    consistent snapshots: every version stays readable
    metadata/<n>.snapshot.json
    metadata/timestamp.json      the one file fetched without a version
    targets/<sha256>.commune-agent-<v>.zip
    staged/root.json             a root or targets version waiting for signatures
    staged/targets.json          (never served)
    .lock                        one writer at a time (the command line, the collector)

A change to root or targets (``init``, ``add``, ``revoke``, ``rotate``) is staged, signed
with offline keys (``sign``) and published once every staged role holds its threshold:
a root by the previous root's keys and its own, targets by the keys of the root it will
be published under. Publishing writes the new versions, then snapshot, then timestamp
(online keys), each file to a temporary name and renamed: an agent reading meanwhile
sees the old consistent state or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from agent.update import bundle, versions
from collector.release import keys as keyfiles
from collector.release.keys import ReleaseKey

#: A target's name: the agent's bundle for one version (``bundle.build`` names it so).
TARGET_PREFIX: Final = "commune-agent-"
TARGET_PATTERN: Final = re.compile(r"commune-agent-([0-9]{1,6}(?:\.[0-9]{1,6}){0,3})\.zip")
#: Revoked versions, with when and why, kept in the signed targets metadata: an agent
#: refused a version can say "revoked" rather than "never released".
REVOKED_FIELD: Final = "x-commune-revoked"
#: The largest bundle taken in (an agent version is a few MB).
MAX_BUNDLE_BYTES: Final = 100 * 1024 * 1024
_SERIALIZER: Final = JSONSerializer(compact=False)


class ReleaseError(Exception):
    """What the release manager must fix; the message says what and how."""


@dataclass(frozen=True)
class Expiries:
    """How long each role's metadata is valid when signed (re-signing starts when half
    of an online role's validity is left)."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        return cast(timedelta, getattr(self, role))


@dataclass(frozen=True)
class OnlineKeys:
    snapshot: ReleaseKey
    timestamp: ReleaseKey


@dataclass(frozen=True)
class Signatures:
    """How far a staged role is from its threshold(s)."""

    role: str
    version: int
    needed: list[tuple[str, int, list[str]]]
    """(whose keys, signatures missing, key ids not yet signed) per threshold to meet."""

    @property
    def complete(self) -> bool:
        return all(missing == 0 for _, missing, _ in self.needed)


@dataclass(frozen=True)
class Release:
    version: str
    path: str
    sha256: str
    length: int


@dataclass(frozen=True)
class RoleState:
    role: str
    version: int
    expires: datetime
    keyids: list[str]
    threshold: int


@dataclass
class Listing:
    releases: list[Release] = field(default_factory=list)
    revoked: dict[str, str] = field(default_factory=dict)
    roles: list[RoleState] = field(default_factory=list)
    staged: list[Signatures] = field(default_factory=list)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _owned_like(path: Path, folder: Path) -> None:
    """Made by root (``sudo commune-collector release ...``), a file or folder of the
    repository is given to the owner of the collector's folder: the service, running
    as that user, re-signs snapshot and timestamp in it."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return
    owner = folder.stat()
    os.chown(path, owner.st_uid, owner.st_gid)


def _write_atomic(path: Path, data: bytes, owner_of: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # public: the web app and every agent read it
        _owned_like(Path(temporary), owner_of)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Repository:
    """The repository in ``path``; ``clock`` gives Unix seconds (tests move it)."""

    def __init__(
        self, path: Path, expiries: Expiries | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.expiries = expiries or Expiries()
        self.clock = clock
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"
        self.staged_dir = path / "staged"

    def _write(self, path: Path, data: bytes) -> None:
        self._folder(path.parent)
        _write_atomic(path, data, self.path.parent)

    def _folder(self, folder: Path) -> None:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _owned_like(folder, self.path.parent)
            if folder != self.path:
                _owned_like(self.path, self.path.parent)

    # reading -----------------------------------------------------------------------

    def initialised(self) -> bool:
        return (self.metadata_dir / "1.root.json").is_file()

    def _require(self) -> None:
        """Published, or made and waiting for its first root signatures."""
        if not self.initialised() and not (self.staged_dir / "root.json").is_file():
            raise ReleaseError(
                f"{self.path}: no release repository here yet: "
                "`commune-collector release init` makes it"
            )

    def _versions(self, role: str) -> list[int]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.metadata_dir):
                number, _, rest = entry.name.partition(".")
                if rest == f"{role}.json" and number.isascii() and number.isdigit():
                    found.append(int(number))
        return sorted(found)

    def _read(self, path: Path) -> Metadata[Any]:
        try:
            return Metadata.from_bytes(path.read_bytes())
        except OSError as exc:
            raise ReleaseError(f"{path}: cannot read: {exc.strerror}") from None
        except DeserializationError as exc:
            raise ReleaseError(f"{path}: not TUF metadata ({exc})") from None

    def root(self, version: int | None = None) -> Metadata[Root]:
        self._require()
        published = self._versions("root")
        if not published:
            raise ReleaseError(f"{self.metadata_dir}: no root published yet (release list)")
        number = version if version is not None else published[-1]
        return cast(Metadata[Root], self._read(self.metadata_dir / f"{number}.root.json"))

    def targets(self) -> Metadata[Targets]:
        self._require()
        found = self._versions("targets")
        if not found:
            raise ReleaseError(f"{self.metadata_dir}: no targets metadata published yet")
        return cast(Metadata[Targets], self._read(self.metadata_dir / f"{found[-1]}.targets.json"))

    def snapshot(self) -> Metadata[Snapshot] | None:
        found = self._versions("snapshot")
        if not found:
            return None
        return cast(
            Metadata[Snapshot], self._read(self.metadata_dir / f"{found[-1]}.snapshot.json")
        )

    def timestamp(self) -> Metadata[Timestamp] | None:
        path = self.metadata_dir / "timestamp.json"
        return cast(Metadata[Timestamp], self._read(path)) if path.exists() else None

    def staged(self) -> dict[str, Metadata[Any]]:
        found: dict[str, Metadata[Any]] = {}
        for role in ("root", "targets"):
            path = self.staged_dir / f"{role}.json"
            if path.exists():
                found[role] = self._read(path)
        return found

    def releases(self) -> list[Release]:
        """The versions the newest published targets list."""
        if not self.initialised() or not self._versions("targets"):
            return []
        return _releases(self.targets().signed)

    def signed_versions(self) -> set[str]:
        """The versions agents may install now (the rollout's seam)."""
        return {r.version for r in self.releases()}

    def listing(self) -> Listing:
        self._require()
        listing = Listing()
        if not self.initialised():  # the first root waits for its signatures
            listing.staged = self.signatures()
            return listing
        root = self.root().signed
        snapshot, timestamp = self.snapshot(), self.timestamp()
        roles: list[tuple[str, Signed | None]] = [
            ("root", root),
            ("targets", self.targets().signed if self._versions("targets") else None),
            ("snapshot", snapshot.signed if snapshot else None),
            ("timestamp", timestamp.signed if timestamp else None),
        ]
        for name, signed in roles:
            if signed is not None:
                role = root.roles[name]
                listing.roles.append(
                    RoleState(name, signed.version, signed.expires, role.keyids, role.threshold)
                )
        if self._versions("targets"):
            targets = self.targets().signed
            listing.releases = _releases(targets)
            listing.revoked = dict(targets.unrecognized_fields.get(REVOKED_FIELD, {}))
        listing.staged = self.signatures()
        return listing

    # locking -----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time: the command line and the running collector's re-signing."""
        self._folder(self.path)
        lock = self.path / ".lock"
        with lock.open("a") as handle:
            _owned_like(lock, self.path.parent)
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # staging -----------------------------------------------------------------------

    def _expires(self, span: timedelta) -> datetime:
        return _utc(self.clock()) + span

    def init(
        self,
        root_keys: list[ReleaseKey],
        root_threshold: int,
        targets_keys: list[ReleaseKey],
        targets_threshold: int,
        online: OnlineKeys,
    ) -> None:
        """Stage root v1 and an empty targets v1, signed with whichever private keys
        were given; published now if that meets the thresholds."""
        if self.initialised() or self.staged():
            raise ReleaseError(f"{self.path}: a release repository is here already")
        _check_threshold("root", root_keys, root_threshold)
        _check_threshold("targets", targets_keys, targets_threshold)
        root = Root(expires=self._expires(self.expiries.root), consistent_snapshot=True)
        for role, chosen, threshold in (
            ("root", root_keys, root_threshold),
            ("targets", targets_keys, targets_threshold),
            ("snapshot", [online.snapshot], 1),
            ("timestamp", [online.timestamp], 1),
        ):
            for key in chosen:
                root.add_key(key.public, role)
            root.roles[role].threshold = threshold
        targets = Targets(version=1, expires=self._expires(self.expiries.targets))
        with self.locked():
            self._folder(self.metadata_dir)
            self._folder(self.targets_dir)
            self._stage(Metadata(root))
            self._stage(Metadata(targets))
            self._sign_staged([*root_keys, *targets_keys])

    def _stage(self, metadata: Metadata[Any]) -> None:
        role = metadata.signed.type
        self._write(self.staged_dir / f"{role}.json", metadata.to_bytes(_SERIALIZER))

    def _next_targets(self) -> Metadata[Targets]:
        """The staged targets to change, or a new version of the published one (its
        signatures are dropped: what they signed changes)."""
        staged = self.staged().get("targets")
        base = staged if staged is not None else self.targets()
        targets = cast(Targets, base.signed)
        if staged is None:
            targets.version += 1
        targets.expires = self._expires(self.expiries.targets)
        return Metadata(targets)

    def add(self, source: Path) -> Release:
        """Take a bundle in as a target (copied under its hash) and stage the targets
        that list it. ReleaseError for anything that is not an agent bundle."""
        self._require()
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise ReleaseError(f"{source}: cannot read: {exc.strerror}") from None
        if size > MAX_BUNDLE_BYTES:
            raise ReleaseError(f"{source}: {size} bytes: not an agent bundle (too large)")
        try:
            manifest = bundle.read_manifest(source)
        except bundle.BundleError as exc:
            raise ReleaseError(f"{source}: not an agent bundle: {exc}") from None
        name = f"{TARGET_PREFIX}{manifest.version}.zip"
        with self.locked():
            targets = self._next_targets()
            if name in targets.signed.targets:
                raise ReleaseError(
                    f"version {manifest.version} is released already: a release is never "
                    "replaced (build the next version)"
                )
            revoked = targets.signed.unrecognized_fields.get(REVOKED_FIELD, {})
            if manifest.version in revoked:
                raise ReleaseError(
                    f"version {manifest.version} was revoked: its number is not given again"
                )
            digest = _sha256(source)
            final = self.targets_dir / f"{digest}.{name}"
            self._folder(self.targets_dir)
            if not final.exists():
                handle, temporary = tempfile.mkstemp(dir=self.targets_dir, prefix=".add.")
                os.close(handle)
                try:
                    shutil.copyfile(source, temporary)
                    if _sha256(Path(temporary)) != digest:
                        raise ReleaseError(f"{source} changed while it was being copied")
                    os.chmod(temporary, 0o644)
                    _owned_like(Path(temporary), self.path.parent)
                    os.replace(temporary, final)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temporary)
            target = TargetFile.from_file(name, str(final))
            target.unrecognized_fields["custom"] = {"version": manifest.version}
            targets.signed.targets[name] = target
            self._stage(targets)
        return Release(manifest.version, name, digest, size)

    def revoke(self, version: str, why: str) -> None:
        """Stage targets without ``version`` (recorded as revoked, with why)."""
        self._require()
        name = f"{TARGET_PREFIX}{version}.zip"
        with self.locked():
            targets = self._next_targets()
            if name not in targets.signed.targets:
                raise ReleaseError(f"version {version} is not in the targets: nothing to revoke")
            del targets.signed.targets[name]
            revoked = dict(targets.signed.unrecognized_fields.get(REVOKED_FIELD, {}))
            revoked[version] = f"{_utc(self.clock()).strftime('%Y-%m-%dT%H:%MZ')} {why}".strip()
            targets.signed.unrecognized_fields[REVOKED_FIELD] = revoked
            self._stage(targets)

    def rotate(
        self,
        role: str,
        new_keys: list[ReleaseKey],
        threshold: int,
    ) -> None:
        """Stage a root whose ``role`` is held by ``new_keys`` (the old keys leave). A
        targets rotation also stages the current targets again, to be signed by the
        new targets keys: both are published together."""
        self._require()
        _check_threshold(role, new_keys, threshold)
        with self.locked():
            staged = self.staged()
            base = staged.get("root") or self.root()
            root = cast(Root, base.signed)
            if "root" not in staged:
                root.version += 1
            root.expires = self._expires(self.expiries.root)
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            for key in new_keys:
                root.add_key(key.public, role)
            root.roles[role].threshold = threshold
            self._stage(Metadata(root))
            if role == "targets" and "targets" not in staged:
                self._stage(self._next_targets())

    # signing and publishing --------------------------------------------------------

    def _pending_root(self) -> tuple[Root, Root | None]:
        """The root targets will be published under, and the one before it (for a
        staged root's second threshold)."""
        staged = self.staged().get("root")
        if staged is None:
            return self.root().signed, None
        root = cast(Root, staged.signed)
        previous = self.root(root.version - 1).signed if root.version > 1 else None
        return root, previous

    def signatures(self) -> list[Signatures]:
        """Each staged role and the signatures it still needs."""
        found: list[Signatures] = []
        staged = self.staged()
        if not staged:
            return found
        root, previous = self._pending_root()
        for role, metadata in staged.items():
            payload = metadata.signed_bytes
            if role == "root":
                checks = [("new root", root)]
                if previous is not None:
                    checks.insert(0, (f"root v{previous.version}", previous))
            else:
                checks = [("targets", root)]
            needed = []
            for who, delegator in checks:
                result = delegator.get_verification_result(role, payload, metadata.signatures)
                needed.append((who, result.missing, sorted(k[:12] for k in result.unsigned)))
            found.append(Signatures(role, metadata.signed.version, needed))
        return found

    def sign(self, signers: list[ReleaseKey]) -> list[str]:
        """Add the signatures of ``signers`` to every staged role they may sign; return
        "role vN by key" for each signature added."""
        self._require()
        with self.locked():
            return self._sign_staged(signers)

    def _sign_staged(self, signers: list[ReleaseKey]) -> list[str]:
        # A key given twice signs once; given as its private file and as its .pub, it signs.
        chosen: dict[str, ReleaseKey] = {}
        for key in signers:
            if key.signer is not None or key.keyid not in chosen:
                chosen[key.keyid] = key
        signers = list(chosen.values())
        staged = self.staged()
        if not staged:
            raise ReleaseError("nothing is staged: add, revoke or rotate first")
        root, previous = self._pending_root()
        done: list[str] = []
        for role, metadata in staged.items():
            allowed = set(root.roles[role].keyids)
            if role == "root" and previous is not None:
                allowed |= set(previous.roles["root"].keyids)
            for key in signers:
                if key.signer is None or key.keyid not in allowed:
                    continue
                metadata.sign(key.signer, append=True)
                done.append(f"{role} v{metadata.signed.version} by {key.short}")
            self._stage(metadata)
        private = [k for k in signers if k.signer is not None]
        if private and not done:
            names = ", ".join(f"{k.path} ({k.short})" for k in private)
            raise ReleaseError(
                f"{names}: no staged role is to be signed by these keys "
                "(`commune-collector release list` names the keys each one needs)"
            )
        return done

    def publish(self, online_dir: Path | None) -> list[str]:
        """Publish every staged role if all hold their thresholds (else nothing); then
        snapshot and timestamp when the online keys in ``online_dir`` are at hand (else
        the running collector signs them at its next round). What was written."""
        self._require()
        with self.locked():
            if not self.staged() or not all(s.complete for s in self.signatures()):
                return []
            written: list[str] = []
            staged = self.staged()
            if "targets" in staged:
                number = staged["targets"].signed.version
                self._write(
                    self.metadata_dir / f"{number}.targets.json",
                    staged["targets"].to_bytes(_SERIALIZER),
                )
                written.append(f"{number}.targets.json")
            if "root" in staged:
                number = staged["root"].signed.version
                data = staged["root"].to_bytes(_SERIALIZER)
                self._write(self.metadata_dir / f"{number}.root.json", data)
                self._write(self.metadata_dir / "root.json", data)
                written.append(f"{number}.root.json")
                if online_dir is not None:
                    _adopt_rotated_online_keys(staged["root"].signed, online_dir)
            for role in staged:
                (self.staged_dir / f"{role}.json").unlink()
            if online_dir is not None:
                with contextlib.suppress(ReleaseError):
                    written += self._refresh_online(load_online(online_dir), force=True)
            return written

    # the online roles --------------------------------------------------------------

    def refresh_online(self, online: OnlineKeys, force: bool = False) -> list[str]:
        """Sign snapshot and timestamp again where needed: targets or root changed,
        half of the validity is gone, or the key that signed them is no longer the
        root's. What was written (empty: nothing was due)."""
        self._require()
        with self.locked():
            return self._refresh_online(online, force)

    def _refresh_online(self, online: OnlineKeys, force: bool) -> list[str]:
        expiries = self.expiries
        root = self.root().signed
        for key in (online.snapshot, online.timestamp):
            if key.keyid not in root.roles[key.role].keyids or key.signer is None:
                raise ReleaseError(
                    f"{key.path}: this {key.role} key is not the one the root names: "
                    "rotate the online keys (`commune-collector release rotate --role "
                    f"{key.role}`)"
                )
        now = _utc(self.clock())
        written: list[str] = []
        targets = self.targets()
        snapshot = self.snapshot()
        stale = snapshot is None or (
            force
            or snapshot.signed.meta["targets.json"].version != targets.signed.version
            or self._due(snapshot, root, now, expiries.snapshot)
        )
        if stale:
            version = snapshot.signed.version + 1 if snapshot is not None else 1
            snapshot = Metadata(
                Snapshot(
                    version=version,
                    expires=now + expiries.snapshot,
                    meta={"targets.json": MetaFile(version=targets.signed.version)},
                )
            )
            snapshot.sign(cast(Any, online.snapshot.signer))
            self._write(
                self.metadata_dir / f"{version}.snapshot.json", snapshot.to_bytes(_SERIALIZER)
            )
            written.append(f"{version}.snapshot.json")
        assert snapshot is not None
        timestamp = self.timestamp()
        if stale or timestamp is None or self._due(timestamp, root, now, expiries.timestamp):
            version = timestamp.signed.version + 1 if timestamp is not None else 1
            timestamp = Metadata(
                Timestamp(
                    version=version,
                    expires=now + expiries.timestamp,
                    snapshot_meta=MetaFile(version=snapshot.signed.version),
                )
            )
            timestamp.sign(cast(Any, online.timestamp.signer))
            self._write(self.metadata_dir / "timestamp.json", timestamp.to_bytes(_SERIALIZER))
            written.append("timestamp.json")
        return written

    @staticmethod
    def _due(metadata: Metadata[Any], root: Root, now: datetime, span: timedelta) -> bool:
        """Half of its validity gone, or no longer signed by the root's key for it."""
        if metadata.signed.expires - now < span / 2:
            return True
        role = metadata.signed.type
        result = root.get_verification_result(role, metadata.signed_bytes, metadata.signatures)
        return not result.verified


def load_online(folder: Path) -> OnlineKeys:
    """The online keys in ``folder``; ReleaseError naming what is missing."""
    found = []
    for role in keyfiles.ONLINE:
        path = keyfiles.online_key_path(folder, role)
        try:
            found.append(keyfiles.read(path, role))
        except keyfiles.KeyFileError as exc:
            raise ReleaseError(str(exc)) from None
    return OnlineKeys(*found)


def make_online(folder: Path) -> OnlineKeys:
    """New online keys in ``folder`` (refused over existing ones)."""
    made = []
    for role in keyfiles.ONLINE:
        path = keyfiles.online_key_path(folder, role)
        if path.exists():
            raise ReleaseError(f"{path}: an online key is there already")
        made.append(keyfiles.generate(path, role))
    return OnlineKeys(*made)


def _check_threshold(role: str, chosen: list[ReleaseKey], threshold: int) -> None:
    if not chosen:
        raise ReleaseError(f"the {role} role needs at least one key")
    if len({k.keyid for k in chosen}) != len(chosen):
        raise ReleaseError(f"the {role} role is given the same key twice")
    if not 1 <= threshold <= len(chosen):
        raise ReleaseError(
            f"the {role} threshold must be between 1 and its {len(chosen)} keys, not {threshold}"
        )
    for key in chosen:
        if key.role != role:
            raise ReleaseError(f"{key.path}: a {key.role} key given for the {role} role")


def _releases(targets: Targets) -> list[Release]:
    found = []
    for name, target in targets.targets.items():
        match = TARGET_PATTERN.fullmatch(name)
        if match is None:
            continue
        found.append(Release(match.group(1), name, target.hashes["sha256"], target.length))
    return sorted(found, key=lambda r: versions.parse(r.version))


def _adopt_rotated_online_keys(root: Root, folder: Path) -> None:
    """An online key rotated (``.next`` beside it) becomes the key once the root naming
    it is published."""
    for role in keyfiles.ONLINE:
        path = keyfiles.online_key_path(folder, role)
        following = keyfiles.next_path(path)
        if not following.exists():
            continue
        if keyfiles.read(following).keyid in root.roles[role].keyids:
            os.replace(following, path)
            with contextlib.suppress(FileNotFoundError):
                os.replace(keyfiles.public_path(following), keyfiles.public_path(path))
