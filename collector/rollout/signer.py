"""Client certificates for PCs that enroll with a key pair (``commune-agent enroll
--client-cert``): the PC keeps its private key and sends a CSR; the collector checks it
and signs a certificate whose Common Name is the agent's broker account, with the
province's client CA (``[enrollment] client_ca_cert_file``/``client_ca_key_file``).

Only the CSR's public key is taken (its subject is replaced by the account name),
once its signature proves the PC holds the key. Keys: EC P-256/P-384, or RSA of
2048 bits and more.

The certificates of retired accounts (a replaced or revoked PC's) are listed in a
revocation list signed with the same CA (``[enrollment] client_crl_file``), which
the broker's certificate listener loads (``crlfile``): from its next start or reload
such a certificate is refused in the TLS handshake. Until then its account no longer
exists, so it may do nothing.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.enrollwire import MAX_CSR_BYTES


class CsrRefused(ValueError):
    """The CSR cannot be signed; the message says why, for the PC."""


@dataclass(frozen=True)
class Signer:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    days: int

    @property
    def ca_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(
        self,
        request: x509.CertificateSigningRequest,
        account: str,
        now: datetime.datetime | None = None,
    ) -> Issued:
        """A certificate for ``account`` over the key of a CSR ``check_csr`` passed."""
        now = now or datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, account)]))
            .issuer_name(self.certificate.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(
            certificate.public_bytes(serialization.Encoding.PEM).decode(),
            format(certificate.serial_number, "x"),
            certificate.not_valid_after_utc.timestamp(),
        )

    def revocation_list(
        self, serials: list[tuple[str, float]], now: datetime.datetime | None = None
    ) -> bytes:
        """A CRL (PEM) of the certificates ``serials`` (hex serial, when revoked).

        Its next update is ten years on: the broker reads the file at start and at a
        reload only, and OpenSSL refuses every client certificate once a loaded CRL is
        past its next update; a broker left running for a year must not lock every PC
        out. Freshness comes from the collector rewriting the file at each revocation.
        """
        now = now or datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=3650))
        )
        for serial, at in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(datetime.datetime.fromtimestamp(at, datetime.UTC))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    pem: str
    serial: str
    """Hex, as the revocation list names it."""
    expires: float
    """Its notAfter (Unix seconds): the PC enrolls again (``--replace``) before then."""


def write_public(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` whole (a temporary file renamed), readable by all (the
    broker's user reads it); False when it held that already."""
    try:
        if path.read_bytes() == content:
            return False
    except OSError:
        pass
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as out:
        out.write(content)
    os.chmod(out.name, 0o644)
    os.replace(out.name, path)
    return True


def check_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    if len(csr_pem.encode()) > MAX_CSR_BYTES:
        raise CsrRefused(f"the CSR is larger than {MAX_CSR_BYTES} bytes")
    try:
        request = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrRefused("not a PEM certificate signing request") from None
    if not request.is_signature_valid:
        raise CsrRefused("the CSR's signature does not match its key")
    key = request.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise CsrRefused(f"EC curve {key.curve.name}: P-256 or P-384 only")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrRefused(f"RSA key of {key.key_size} bits: 2048 or more")
    else:
        raise CsrRefused(f"a {type(key).__name__}: EC P-256/P-384 or RSA keys only")
    return request


def load_signer(cert_file: str, key_file: str, days: int) -> Signer:
    certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{key_file}: an EC or RSA private key is needed")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError(f"{key_file} is not the key of {cert_file}")
    return Signer(certificate, key, days)
