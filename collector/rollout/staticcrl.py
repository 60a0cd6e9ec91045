"""Client certificates revoked without a collector's store: the broker config without the
plugin (deploy/mosquitto/mosquitto.conf), whose PCs' certificates the province's CA
signed by hand.

There the revocation list is its own record: each revocation reads the list the broker
loads, checks it is the CA's, and writes it again with one serial more (signed as the
collector's own list is, ``Signer.revocation_list``; replaced whole, ``write_public``),
so that no serial ever leaves it whatever else is done to the accounts. The
certificate's listener (``crlfile``) refuses it in the TLS handshake from the broker's
next reload (``commune-crl-reload.path`` reloads it whenever the file changes).
"""

from __future__ import annotations

import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from collector.rollout.signer import Signer, write_public


class CrlError(Exception):
    """The list or the certificate cannot be used; the message says why."""


def listed(signer: Signer, path: Path) -> list[tuple[str, float]]:
    """The serials (hex) a list already revokes, and when; [] when there is no file yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise CrlError(f"{path}: not a PEM revocation list") from None
    if crl.issuer != signer.certificate.subject or not crl.is_signature_valid(
        signer.certificate.public_key()  # type: ignore[arg-type]
    ):
        # Rewriting another CA's list would drop every serial it holds.
        ca = signer.certificate.subject.rfc4514_string()
        raise CrlError(f"{path}: not signed by the CA {ca}")
    return [
        (format(revoked.serial_number, "x"), revoked.revocation_date_utc.timestamp())
        for revoked in crl
    ]


def write_empty(signer: Signer, path: Path) -> int:
    """The list as it must exist before the broker first starts (its listener loads it);
    one that exists is written again with what it holds. How many it revokes."""
    held = listed(signer, path)
    write_public(path, signer.revocation_list(held))
    return len(held)


def certificate_of(path: Path, signer: Signer, account: str) -> x509.Certificate:
    """The PC's certificate, checked to be the CA's and to name ``account``: a revocation
    must take the certificate it means."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise CrlError(f"{path}: not a PEM certificate") from None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    if name != account:
        raise CrlError(f"{path} is the certificate of {name!r}, not of {account}")
    try:
        certificate.verify_directly_issued_by(signer.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise CrlError(f"{path} was not signed by the CA of the revocation list") from None
    return certificate


def revoke(
    signer: Signer, path: Path, certificate: x509.Certificate, now: float | None = None
) -> bool:
    """``certificate`` added to the list at ``path``; False when it was listed already."""
    return add(signer, path, [certificate], now) == 1


def add(
    signer: Signer, path: Path, certificates: list[x509.Certificate], now: float | None = None
) -> int:
    """``certificates`` added to the list at ``path`` in one write; how many were not
    listed yet."""
    held = listed(signer, path)
    known = {serial for serial, _ in held}
    at = time.time() if now is None else now
    new = [format(c.serial_number, "x") for c in certificates]
    new = [serial for index, serial in enumerate(new) if serial not in known
           and serial not in new[:index]]  # fmt: skip
    if new:
        write_public(path, signer.revocation_list(held + [(serial, at) for serial in new]))
    return len(new)
