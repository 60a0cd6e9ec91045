"""A revoked certificate's live session ended, on a broker without the plugin.

Mosquitto rereads its revocation list on a reload but does not recheck the certificates
of live connections, and without the plugin there is no account to delete: a revoked PC
already connected keeps its session, with its rights, until the broker restarts. With
``use_username_as_clientid`` a session is named after its account, and the CA's holder
can make a certificate for any account: a connection under a short-lived certificate of
the revoked account's name takes the session over, which ends the PC's connection; the
PC's next handshake meets the reloaded list.

So, holding the CA's key: two certificates of the account, valid minutes, their keys
never leaving a private temporary folder — a probe and a closer. The probe is listed
with the PC's certificate; once the broker refuses the probe, it has reloaded the list
(``commune-crl-reload.path``), and the closer logs in (the PC's session ends) and out.
The closer is then listed too. (Each of the probe's logins before the reload ends the
PC's session as well; the PC logs in again until the list refuses it: only the closer's
comes after.)
"""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.rollout import staticcrl
from collector.rollout.signer import Signer

#: MQTT 3.1.1 CONNECT, clean session, keep-alive 10 s, client id "commune-revoke" (the
#: broker names the session after the certificate's account whatever it says).
_CLIENT_ID = b"commune-revoke"
_CONNECT_BODY = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(_CLIENT_ID).to_bytes(2, "big") + _CLIENT_ID
CONNECT = bytes([0x10, len(_CONNECT_BODY)]) + _CONNECT_BODY
DISCONNECT = b"\xe0\x00"
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
#: How long the two certificates are valid: the command's own run.
VALID = datetime.timedelta(minutes=10)


class NotReloaded(Exception):
    """The broker did not reload the list in time: the session was not ended."""


def _issue(
    signer: Signer, account: str, folder: Path, name: str
) -> tuple[x509.Certificate, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, account)]))
        .issuer_name(signer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer.key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return certificate, cert_path, key_path


def _logs_in(host: str, port: int, context: ssl.SSLContext) -> bool:
    """Whether the broker accepts an MQTT login under ``context``'s certificate; logged
    out at once when it does."""
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(CONNECT)
            answer = b""
            while len(answer) < len(CONNACK_ACCEPTED):
                chunk = tls.recv(len(CONNACK_ACCEPTED) - len(answer))
                if not chunk:
                    return False
                answer += chunk
            if answer != CONNACK_ACCEPTED:
                return False
            tls.sendall(DISCONNECT)
            return True
    except (OSError, ssl.SSLError):
        return False


def end_session(
    signer: Signer,
    crl: Path,
    certificate: x509.Certificate,
    broker_url: str,
    broker_ca: Path,
    wait_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """``certificate`` listed in ``crl``, and the session of its account at the broker's
    certificate listener (``broker_url``: mqtts://host:port) ended once the broker has
    reloaded the list. NotReloaded when it has not within ``wait_s``: the certificate is
    listed all the same."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    account = str(names[0].value)
    place = urlsplit(broker_url)
    host, port = place.hostname or "localhost", place.port or 8884
    with tempfile.TemporaryDirectory(prefix="commune-revoke-") as folder:
        probe, probe_cert, probe_key = _issue(signer, account, Path(folder), "probe")
        closer, closer_cert, closer_key = _issue(signer, account, Path(folder), "closer")
        staticcrl.add(signer, crl, [certificate, probe])  # one write: one reload for both
        contexts = []
        for cert_path, key_path in ((probe_cert, probe_key), (closer_cert, closer_key)):
            context = ssl.create_default_context(cafile=str(broker_ca))
            context.load_cert_chain(str(cert_path), str(key_path))
            contexts.append(context)
        deadline = clock() + wait_s
        while _logs_in(host, port, contexts[0]):
            if clock() > deadline:
                raise NotReloaded(
                    f"the broker at {broker_url} did not reload {crl} within {wait_s:.0f} s"
                )
            time.sleep(0.2)
        closed = _logs_in(host, port, contexts[1])
    staticcrl.revoke(signer, crl, closer)
    if not closed:
        raise NotReloaded(f"the broker at {broker_url} refused the session's closer")
