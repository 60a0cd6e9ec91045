"""The agent's TUF client: a release bundle, verified, or a typed refusal or failure.

``ReleaseFetcher(home, url).get(version, floor)`` refreshes the metadata from the
collector (``<url>/releases/metadata/``) with python-tuf's ``ngclient`` — a new
``Updater`` each time, trusting ``<home>/tuf/root.json`` (from the kit or
``commune-agent update-root fetch``) and following the root chain from it — and
downloads ``commune-agent-<version>.zip`` into ``<home>/tuf/downloads/``: written under a
temporary name, checked against the signed length and hash and its own manifest, then
renamed; other versions' bundles there are removed (each was unpacked when fetched).
Whatever happens, the answer is a ``FetchResult``:

- ``ok``: ``path`` is the verified bundle;
- ``refused``: what the collector offers is not to be installed — not listed in the
  signed targets, revoked, below the floor, truncated, tampered, wrongly signed,
  metadata older than what this PC saw (rollback). Trying again will not help until
  someone acts;
- ``failed``: no answer to judge — collector unreachable or busy (``retry_after``),
  metadata expired (or this PC's clock is ahead), disk full. Trying later may help.

The running agent never imports this module (tuf and urllib3 stay out of it): it runs
``python -m agent.update.fetch --home H --url U --version V [--floor F] [--ca-file F]``,
which prints one JSON line ``{"ok", "kind", "reason", "path", "retry_after"}`` and exits
0 (ok), 1 (refused) or 3 (failed).

A wrong clock: TUF judges expiry by this PC's clock. Ahead, current metadata looks
expired: ``failed: metadata expired`` and no update until the clock is right (the
collector's alert on the agent's report says so). Behind, expired metadata would look
valid, but it can never be older than what this PC has seen (TUF's version numbers only
go up) and nothing below the floor is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from agent.update import bundle, versions

Kind = Literal["ok", "refused", "failed"]
#: Under the agent's home.
TUF_DIR: Final = "tuf"
ROOT_FILE: Final = "root.json"
METADATA_DIR: Final = "metadata"
DOWNLOADS_DIR: Final = "downloads"
#: The signed targets' record of revoked versions (collector/release/repository.py).
REVOKED_FIELD: Final = "x-commune-revoked"
#: A Retry-After asking for more than this is read as this.
MAX_RETRY_AFTER_S: Final = 3600.0
DEFAULT_RETRY_AFTER_S: Final = 60.0
#: The longest one file may take to arrive (a bundle of a few MB over a slow commune
#: line takes minutes; a server trickling bytes must not hold the update for ever).
DEFAULT_DEADLINE_S: Final = 1800.0
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    """What fetching a bundle came to, as the fetch process reports it."""

    kind: Kind
    reason: str = ""
    path: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "kind": self.kind,
                "reason": self.reason,
                "path": self.path or None,
                "retry_after": self.retry_after,
            },
            ensure_ascii=False,
        )


def refused(reason: str) -> FetchResult:
    return FetchResult("refused", reason)


def failed(reason: str, retry_after: float | None = None) -> FetchResult:
    return FetchResult("failed", reason, retry_after=retry_after)


def target_name(version: str) -> str:
    return f"commune-agent-{version}.zip"


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds only; a date or garbage reads
    as the default), within bounds."""
    try:
        seconds = float(int((value or "").strip()))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return min(max(seconds, 1.0), MAX_RETRY_AFTER_S)


class _HttpFetcher(FetcherInterface):
    """urllib3, with the collector's CA, no retries of its own, and what the last answer
    said: a busy server's Retry-After, the bytes a download brought."""

    def __init__(self, ca_file: str, timeout_s: float, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.pool = urllib3.PoolManager(
            ca_certs=ca_file or None,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            headers={"User-Agent": "commune-agent-update"},
        )
        self.retry_after: float | None = None
        self.received = 0
        self.started = 0.0

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.received = 0
        self.started = time.monotonic()
        try:
            response = self.pool.request("GET", url, preload_content=False)
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_errors.DownloadError(f"cannot reach {url}: {exc}") from exc
        if response.status >= 400:
            if response.status in (429, 503):
                self.retry_after = _retry_after(response.headers.get("Retry-After"))
            response.drain_conn()
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status} for {url}", response.status)
        return self._chunks(response)

    def _chunks(self, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            # read1: whatever has arrived, so that the deadline is looked at as bytes come.
            while chunk := response.read1(_CHUNK):
                self.received += len(chunk)
                if time.monotonic() - self.started > self.deadline_s:
                    # A server sending a byte now and then never trips the read timeout.
                    raise tuf_errors.SlowRetrievalError(
                        f"not received within {self.deadline_s:.0f} s"
                    )
                yield chunk
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_errors.DownloadError(f"download cut short: {exc}") from exc
        finally:
            response.release_conn()


class ReleaseFetcher:
    """Releases from the collector at ``url`` (https://collector.example:8443), for the
    agent whose home is ``home``."""

    def __init__(
        self,
        home: Path,
        url: str,
        ca_file: str = "",
        timeout_s: float = 30.0,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.home = home.absolute()  # the path answered is the launcher's to open
        self.deadline_s = deadline_s
        base = url.rstrip("/").removesuffix("/releases")  # the collector, or its /releases
        self.metadata_url = f"{base}/releases/metadata/"
        self.targets_url = f"{base}/releases/targets/"
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.tuf_dir = self.home / TUF_DIR
        self.metadata_dir = self.tuf_dir / METADATA_DIR
        self.downloads = self.tuf_dir / DOWNLOADS_DIR

    def get(self, version: str, floor: str = "") -> FetchResult:
        """The verified bundle of ``version``, or why not. Never raises."""
        try:
            return self._get(version, floor)
        except OSError as exc:
            return _local_failure(exc)
        except Exception as exc:  # the update must say why, never crash the caller
            return failed(f"internal error: {type(exc).__name__}: {exc}")

    def _get(self, version: str, floor: str) -> FetchResult:
        if not versions.is_version(version):
            return refused(f"not a release version: {version[:40]!r}")
        if floor and not versions.is_version(floor):
            return failed(f"the stored floor is not a version: {floor[:40]!r}")
        if not versions.at_least(version, floor):
            return refused(f"below floor: {version} is below {floor}, the floor of this PC")
        anchor = self.tuf_dir / ROOT_FILE
        try:
            trusted_root = anchor.read_bytes()
        except OSError as exc:
            return failed(
                f"no trusted root: {anchor}: {exc.strerror} "
                "(commune-agent update-root fetch, or the installation kit)"
            )
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(parents=True, exist_ok=True)
        fetcher = _HttpFetcher(self.ca_file, self.timeout_s, self.deadline_s)
        try:
            return self._refresh_and_download(fetcher, version, trusted_root, anchor)
        finally:
            fetcher.pool.clear()  # its connections closed now, not whenever collected

    def _refresh_and_download(
        self, fetcher: _HttpFetcher, version: str, trusted_root: bytes, anchor: Path
    ) -> FetchResult:
        try:
            updater = Updater(
                str(self.metadata_dir),
                self.metadata_url,
                str(self.downloads),
                self.targets_url,
                fetcher,
                UpdaterConfig(app_user_agent="commune-agent"),
                bootstrap=trusted_root,
            )
        except tuf_errors.RepositoryError as exc:
            return failed(f"the trusted root {anchor} is not valid TUF root metadata: {exc}")
        try:
            updater.refresh()
            info = updater.get_targetinfo(target_name(version))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            return _judged(exc, fetcher, "metadata")
        if info is None:
            why = self._revoked(version)
            if why is not None:
                return refused(f"revoked: {version} ({why})" if why else f"revoked: {version}")
            return refused(f"unlisted: {version} is not in the signed targets")
        if info.length > bundle.MAX_UNPACKED_BYTES:
            return refused(f"tampered: the target of {version} is {info.length} bytes, too large")
        if info.custom.get("version") != version:
            return refused(f"tampered: the target of {version} is signed for another version")
        return self._download(updater, fetcher, info, version)

    def _revoked(self, version: str) -> str | None:
        """Why ``version`` was revoked, from the targets metadata ngclient has just
        verified and stored (None: never released)."""
        with contextlib.suppress(OSError, ValueError, tuf_errors.RepositoryError):
            stored = Metadata[Targets].from_file(str(self.metadata_dir / "targets.json"))
            revoked = stored.signed.unrecognized_fields.get(REVOKED_FIELD, {})
            if isinstance(revoked, dict) and version in revoked:
                return str(revoked[version])[:200]
        return None

    def _download(
        self, updater: Updater, fetcher: _HttpFetcher, info: TargetFile, version: str
    ) -> FetchResult:
        final = self.downloads / target_name(version)
        cached = updater.find_cached_target(info, str(final))
        if cached is not None:
            return self._checked(Path(cached), version)
        for stale in self.downloads.glob(".partial-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        handle, partial = tempfile.mkstemp(dir=self.downloads, prefix=".partial-")
        os.close(handle)
        try:
            try:
                updater.download_target(info, partial)
            except tuf_errors.LengthOrHashMismatchError:
                if fetcher.received < info.length:
                    return refused(
                        f"truncated: {fetcher.received} of the {info.length} signed bytes"
                    )
                return refused("tampered: the bundle's hash is not the signed one")
            except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
                return _judged(exc, fetcher, "bundle")
            os.replace(partial, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        return self._checked(final, version)

    @staticmethod
    def _checked(path: Path, version: str) -> FetchResult:
        try:
            manifest = bundle.read_manifest(path)
        except bundle.BundleError as exc:
            return refused(f"tampered: {exc}")
        if manifest.version != version:
            return refused(f"tampered: the bundle holds {manifest.version}, not {version}")
        for other in path.parent.glob("commune-agent-*.zip"):
            if other != path:  # unpacked when it was fetched: only the newest is kept
                with contextlib.suppress(OSError):
                    other.unlink()
        return FetchResult("ok", f"verified {version}", str(path))


def _judged(exc: Exception, fetcher: _HttpFetcher, what: str) -> FetchResult:
    """A TUF error as a refusal (what came is wrong) or a failure (nothing to judge)."""
    text = str(exc)[:300]
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return failed(f"metadata expired: {text} (or this PC's clock is ahead)")
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return refused(f"metadata rollback: {text}")
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return refused(f"wrong signature: {text}")
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return refused(f"tampered {what}: {text}")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return refused(f"tampered {what}: longer than signed ({text})")
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        if exc.status_code in (429, 503):
            return failed(f"busy: the collector asks to come back later ({what})",
                          fetcher.retry_after or DEFAULT_RETRY_AFTER_S)  # fmt: skip
        return failed(f"{what} not served: HTTP {exc.status_code}")
    if isinstance(exc, tuf_errors.SlowRetrievalError):
        return failed(f"unreachable: the collector is too slow ({what})")
    if isinstance(exc, tuf_errors.DownloadError):
        cause = exc.__cause__ or exc
        return failed(f"unreachable: {str(cause)[:300]}")
    if isinstance(exc, tuf_errors.RepositoryError):
        return refused(f"bad {what}: {text}")
    return failed(f"{what}: {text}")


def _local_failure(exc: OSError) -> FetchResult:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # no room, however it is put
        return failed(f"disk full: {where}{exc.strerror}")
    return failed(f"cannot write here: {where}{exc.strerror}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.update.fetch",
        description="Download and verify one agent release; print one JSON line.",
        epilog="Example: python -m agent.update.fetch --home /opt/commune-agent "
        "--url https://collector.example:8443 --version 0.4.0 --floor 0.3.2",
    )
    parser.add_argument("--home", required=True, type=Path, help="The agent's home folder.")
    parser.add_argument(
        "--url", required=True, help="The collector: https://host:port (or .../releases)."
    )
    parser.add_argument("--version", required=True, help="The release wanted: 0.4.0.")
    parser.add_argument("--floor", default="", help="Nothing below this version.")
    parser.add_argument("--ca-file", default="", help="The collector's CA (PEM).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per read.")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S,
                        help="Seconds one file may take in all.")  # fmt: skip
    args = parser.parse_args(argv)
    fetcher = ReleaseFetcher(args.home, args.url, args.ca_file, args.timeout, args.deadline)
    result = fetcher.get(args.version, args.floor)
    sys.stdout.write(result.to_json() + "\n")
    sys.stdout.flush()
    return {"ok": 0, "refused": 1, "failed": 3}[result.kind]


if __name__ == "__main__":
    sys.exit(main())
