"""A throwaway CA, server and client certificates for TLS tests (cryptography)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long the CA and the certificates it signs are valid, as a province's would be (a
#: test of the expiry alerts makes them short).
CA_DAYS = 3650
LEAF_DAYS = 365


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path
    ca_key: Path
    """The CA's own key: a collector that signs agents' certificates holds it."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # What Python 3.13's strict verification (VERIFY_X509_STRICT) asks of a CA, as
        # openssl's own defaults give it.
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    name: str,
    server: bool,
    days: float | None = None,
    ips: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    # LEAF_DAYS read now, not when this was defined: a test may shorten it.
    not_after = now + datetime.timedelta(days=LEAF_DAYS if days is None else days)
    # An expired certificate was valid once: a month before its end.
    not_before = min(now - datetime.timedelta(hours=1), not_after - datetime.timedelta(days=30))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", *ips)),
                ]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(
    directory: Path, client_name: str = "dong-nai.la-nga.pc-01", server_ips: tuple[str, ...] = ()
) -> Pki:
    """``server_ips``: addresses the server's certificate names beside 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("commune-monitor test CA")
    rogue, rogue_key = _ca("someone else's CA")
    server, server_key = _leaf(ca, ca_key, "localhost", server=True, ips=server_ips)
    client, client_key = _leaf(ca, ca_key, client_name, server=False)
    rogue_client, rogue_client_key = _leaf(rogue, rogue_key, client_name, server=False)
    paths = Pki(
        *(
            directory / n
            for n in (
                "ca.crt",
                "server.crt",
                "server.key",
                "client.crt",
                "client.key",
                "rogue-ca.crt",
                "rogue-client.crt",
                "rogue-client.key",
                "ca.key",
            )
        )
    )
    for cert, path in (
        (ca, paths.ca),
        (server, paths.server_cert),
        (client, paths.client_cert),
        (rogue, paths.rogue_ca),
        (rogue_client, paths.rogue_client_cert),
    ):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for key, path in (
        (server_key, paths.server_key),
        (client_key, paths.client_key),
        (rogue_client_key, paths.rogue_client_key),
        (ca_key, paths.ca_key),
    ):
        _write_key(key, path)
    return paths


def server_cert(pki: Pki, directory: Path, days: float) -> tuple[Path, Path]:
    """A server certificate for localhost from the PKI's CA ending in ``days`` (negative:
    expired that long ago), and its key: a system whose certificate is about to expire."""
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert, key = _leaf(ca, ca_key, "localhost", server=True, days=days)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"server-{days:g}d.crt", directory / f"server-{days:g}d.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def client_cert(pki: Pki, directory: Path, name: str, file: str = "") -> tuple[Path, Path]:
    """A client certificate whose Common Name is ``name`` from the PKI's CA, and its key:
    one a province issues by hand for a PC (``file``: the files' name, else ``name``'s)."""
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    cert, key = _leaf(ca, ca_key, name, server=False)
    directory.mkdir(parents=True, exist_ok=True)
    stem = file or name.replace("/", "_")
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path
