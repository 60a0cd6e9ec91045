"""The certificates the province's monitoring depends on, and when each expires.

The files and the broker's certificates are read again every ten minutes by the
housekeeping (a renewed certificate clears its alert within that); the PCs' are read
from the store whenever asked (an enrollment counts at once). The alert engine's
collector rules see each as a subject (fields ``certificate``, ``certificate_days``:
rules ``certificate_expiring`` and ``certificate_expiring_soon``), and ``/metrics`` as a
gauge. What is watched, by name:

- ``api``: the collector's HTTPS certificate (``[api] tls_cert_file``): PCs enroll and
  fetch updates over it, the IOC reads over it.
- ``broker``, ``broker-certificates``: what the broker presents on ``[mqtt] url`` and on
  ``[enrollment] cert_broker_url``, read from a TLS handshake that does not verify it
  (an expired certificate is exactly the one to report).
- ``broker-ca``, ``agents-ca``: the CA files the collector and the agents trust (``[mqtt]
  ca_file``, ``[enrollment] broker_ca_file``); of a bundle, the last to expire (while a
  CA is rotated, the old one expiring is expected).
- ``client-ca``: the CA that signs the PCs' client certificates.
- ``pc-certificates``: the PCs' client certificates as one subject (5,000 PCs enrolled in
  the same week expire in the same week: one alert, not 5,000): the first to expire,
  and how many within 30 days. A certificate signed before its expiry was recorded is
  reckoned as enrolled plus ``client_cert_days``.

A certificate that cannot be read (a missing file, a broker that does not answer) is not
a subject: it is logged and listed by ``problems()``; the broker's own alerts cover a
broker that is away.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

log = logging.getLogger("collector.certificates")

#: How long a TLS handshake with the broker may take.
HANDSHAKE_TIMEOUT_S = 5.0
#: The window ``pc-certificates`` counts (the warning rule's).
SOON_S = 30 * 86400.0
MAX_PEM_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Expiry:
    name: str
    """api, broker, broker-certificates, broker-ca, agents-ca, client-ca, pc-certificates."""
    what: str
    """Where it was read: a file, host:port, or "N PCs"."""
    expires: float
    """notAfter, Unix seconds."""
    note: str = ""
    """For pc-certificates: how many within 30 days and the first PC."""


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    """file (the first certificate: a server's chain), bundle (the last to expire), tls."""
    where: str


def read_file(path: str, bundle: bool) -> float:
    """notAfter of a PEM file's first certificate, or of a bundle's last to expire."""
    data = Path(path).read_bytes()[: MAX_PEM_BYTES + 1]
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"over {MAX_PEM_BYTES} bytes")
    certificates = x509.load_pem_x509_certificates(data)
    ends = [c.not_valid_after_utc.timestamp() for c in certificates]
    return max(ends) if bundle else ends[0]


def read_tls(address: str, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> float:
    """notAfter of the certificate a TLS server presents at ``host:port``. Not verified:
    the point is to see it, expired or not. TLS 1.3 hands it over before a listener
    that requires a client certificate ends the handshake."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw,
        context.wrap_socket(raw, server_hostname=host.strip("[]")) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ValueError("no certificate presented")
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def tls_address(url: str) -> str:
    """``host:port`` of an ``mqtts://`` URL; "" for a URL without TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtts", "ssl", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 8883)}"


def pc_certificates(rows: list[tuple[str, float, float]], days: int, now: float) -> Expiry | None:
    """One subject for the PCs' certificates (agent key, recorded expiry or 0, enrolled)."""
    if not rows:
        return None
    ends = sorted((expires or enrolled + days * 86400.0, key) for key, expires, enrolled in rows)
    soon = sum(1 for end, _ in ends if end - now < SOON_S)
    first, first_key = ends[0]
    return Expiry(
        "pc-certificates", f"{len(ends)} PCs", first, f"{soon} within 30 days; first {first_key}"
    )


class CertificateWatch:
    def __init__(
        self,
        sources: list[Source],
        pcs: Callable[[], list[tuple[str, float, float]]] | None = None,
        cert_days: int = 825,
    ) -> None:
        self.sources = sources
        self.pcs = pcs
        self.cert_days = cert_days
        self._lock = threading.Lock()
        self._expiries: list[Expiry] = []
        self._problems: list[str] = []

    def tick(self, _now: float) -> None:
        found: list[Expiry] = []
        problems: list[str] = []
        for source in self.sources:
            try:
                if source.kind == "tls":
                    expires = read_tls(source.where)
                else:
                    expires = read_file(source.where, bundle=source.kind == "bundle")
            except (OSError, ValueError) as exc:
                problems.append(f"{source.name} ({source.where}): {exc}")
                continue
            found.append(Expiry(source.name, source.where, expires))
        for problem in problems:
            if problem not in self._problems:
                log.warning("certificate not read: %s", problem)
        with self._lock:
            self._expiries, self._problems = found, problems

    def expiries(self, now: float | None = None) -> list[Expiry]:
        with self._lock:
            found = list(self._expiries)
        if self.pcs is not None:
            pcs = pc_certificates(self.pcs(), self.cert_days, time.time() if now is None else now)
            if pcs is not None:
                found.append(pcs)
        return found

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._problems)
