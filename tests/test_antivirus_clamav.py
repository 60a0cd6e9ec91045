"""ClamAV on Linux: database headers on disk and a clamd speaking its socket protocol.

clamd itself is not installed here: a Unix-socket server answers PING/VERSION
the way clamd does, exercising the agent's real socket code.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.antivirus.clamav import newest_daily_database, parse_database_header
from agent.checks.antivirus import AntivirusCheck
from agent.checks.options import AntivirusOptions

NOW = 1_795_000_000.0


def header(version: int, epoch: float) -> bytes:
    text = (
        f"ClamAV-VDB:24 Nov 2026 09-18 -0500:{version}:2071234:90:"
        f"0123456789abcdef0123456789abcdef:sigsig:raynman:{int(epoch)}"
    )
    return text.encode().ljust(512, b" ") + b"\x1f\x8b rest of the archive"


def test_header_fields_are_read_from_the_end() -> None:
    assert parse_database_header(header(27470, NOW)) == (27470, NOW)


@pytest.mark.parametrize(
    "raw", [b"", b"MZ\x90\x00", b"ClamAV-VDB:x:y", b"ClamAV-VDB:a:b:c:d:e:f:g:h:notanumber"]
)
def test_bad_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="ClamAV"):
        parse_database_header(raw)


def test_the_higher_version_of_cvd_and_cld_wins(tmp_path: Path) -> None:
    (tmp_path / "daily.cvd").write_bytes(header(27400, NOW - 10 * 86400))
    (tmp_path / "daily.cld").write_bytes(header(27470, NOW - 86400))
    found = newest_daily_database(str(tmp_path))
    assert found is not None
    assert (found.version, found.build_epoch, Path(found.path).name) == (
        27470,
        NOW - 86400,
        "daily.cld",
    )


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "clamd.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                command = conn.recv(64)
                if command == b"zPING\0":
                    conn.sendall(b"PONG\0")
                elif command == b"zVERSION\0":
                    conn.sendall(b"ClamAV 1.0.7/27470/Mon Nov 23 09:18:00 2026\0")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    server.close()


def run(options: AntivirusOptions) -> list:  # type: ignore[type-arg]
    return AntivirusCheck(options, clock=lambda: NOW).collect()


def test_clamd_alive_with_fresh_database_is_protected(tmp_path: Path, clamd: Path) -> None:
    (tmp_path / "daily.cld").write_bytes(header(27470, NOW - 86400))
    samples = run(
        AntivirusOptions(source="clamav", clamd_socket=str(clamd), clamav_db_dir=str(tmp_path))
    )
    assert samples[0].fields["verdict"] == "protected"
    product = samples[1]
    assert product.target == "ClamAV"
    assert product.fields["state"] == "on"
    assert product.fields["signature_age_days"] == pytest.approx(1.0)
    assert product.fields["version"] == "ClamAV 1.0.7"


def test_old_database_is_outdated(tmp_path: Path, clamd: Path) -> None:
    (tmp_path / "daily.cvd").write_bytes(header(27000, NOW - 9 * 86400))
    samples = run(
        AntivirusOptions(source="clamav", clamd_socket=str(clamd), clamav_db_dir=str(tmp_path))
    )
    assert samples[0].fields["verdict"] == "outdated"
    assert samples[1].fields["up_to_date"] is False


def test_database_without_clamd_is_installed_but_off(tmp_path: Path) -> None:
    (tmp_path / "daily.cvd").write_bytes(header(27470, NOW - 3600))
    started = time.monotonic()
    samples = run(
        AntivirusOptions(
            source="clamav", clamd_socket=str(tmp_path / "no.sock"), clamav_db_dir=str(tmp_path)
        )
    )
    assert time.monotonic() - started < 5
    assert samples[0].fields["verdict"] == "unprotected"
    assert samples[1].fields["state"] == "off"
    assert "no.sock" in str(samples[1].fields["detail"])


def test_no_clamav_at_all_means_no_product(tmp_path: Path) -> None:
    samples = run(
        AntivirusOptions(
            source="clamav",
            clamd_socket=str(tmp_path / "no.sock"),
            clamav_db_dir=str(tmp_path / "none"),
        )
    )
    assert samples[0].fields["verdict"] == "none"
    assert samples[0].fields["products"] == 0
    assert len(samples) == 1
