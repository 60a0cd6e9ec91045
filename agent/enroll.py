"""Enrolling this PC with a collector: one token, a password made here, the config written.

The password is generated on the PC and travels once, over HTTPS, with the token;
the collector creates the broker account for it and answers with this agent's
identity, the broker's address and CA, and the keys that sign its configs. Only
then are the local files written (``agent.toml`` with identity and broker only, the
password file, the broker's CA, ``config-key.pub``), each beside the config and each
complete or absent: a refused or failed enrollment leaves nothing behind, and the PC
can simply run the command again.

``fetch_config_keys`` gets the signing keys alone, over the same verified HTTPS: for a
PC enrolled before configs were signed (``commune-agent config-key fetch``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from agent.brokerclient import describe
from agent.configkeys import KEY_FILE as CONFIG_KEY_FILE
from agent.configkeys import decode_public_key, key_file_text
from agent.configtypes import is_loopback
from agent.enrollwire import ConfigKeys, EnrollAnswer, EnrollRequest
from agent.wire import IDENT_PATTERN, config_key_id

#: The token's form (``<id>.<secret>``), checked here so a typo costs no round trip.
TOKEN_PATTERN = r"^[0-9a-f]{8}\.[A-Za-z0-9_-]{43}$"  # noqa: S105 (a form, not a token)
PASSWORD_FILE = "mqtt-password"  # noqa: S105 (a file name)
BROKER_CA_FILE = "broker-ca.pem"
#: The CA of the collector's HTTPS (``--ca``), kept for the releases the launcher fetches.
COLLECTOR_CA_FILE = "collector-ca.pem"
KEY_FILE, CERT_FILE = "agent.key", "agent.crt"
MAX_ANSWER_BYTES = 256 * 1024

#: Exit codes of ``commune-agent enroll``: refused (fix the command or the token), or
#: the collector could not be reached (run it again later).
REFUSED, UNREACHABLE = 1, 3


class EnrollFailed(Exception):
    def __init__(self, message: str, exit_code: int = REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Credential:
    """What the PC proves itself with: a password, or a key (kept here) and its CSR."""

    password: str = ""
    key_pem: bytes = b""
    csr_pem: str = ""


def new_key_and_csr(agent: str) -> Credential:
    """An EC P-256 key made on this PC, and a CSR for it (the collector sets the name)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise EnrollFailed(
            "--client-cert needs the cryptography package: pip install 'commune-monitor[certs]'"
        ) from None
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Credential(
        key_pem=key_pem, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode()
    )


@dataclass(frozen=True)
class Written:
    """What enrolling wrote: the config, the files beside it, the collector's answer."""

    config: Path
    files: list[Path]
    answer: EnrollAnswer


def check_collector(collector: str, why: str) -> str:
    """The collector's base URL: https://, or http:// on this machine only (``why``: what
    an eavesdropper could do otherwise)."""
    parts = urlsplit(collector)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EnrollFailed(f"--collector {collector!r}: expected https://host:port")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise EnrollFailed(
            f"--collector {collector!r}: {why}, so it must be https:// (http:// only for a "
            "collector on this machine)"
        )
    return collector.rstrip("/")


def check_request(collector: str, token: str, agent: str, commune: str = "") -> str:
    """The enrollment URL, or EnrollFailed naming what is wrong before anything is sent."""
    base = check_collector(collector, "the password travels with the request")
    if not re.fullmatch(TOKEN_PATTERN, token):
        raise EnrollFailed("--token: not an enrollment token (expected 8 hex, a dot, 43 more)")
    if not re.fullmatch(IDENT_PATTERN, agent):
        raise EnrollFailed(
            f"--id {agent!r}: letters, digits, '.', '_' or '-' only, at most 64 "
            "(it is an MQTT topic level)"
        )
    if commune and not re.fullmatch(IDENT_PATTERN, commune):
        raise EnrollFailed(f"--commune {commune!r}: not a commune slug (e.g. la-nga)")
    return base + "/api/v1/enroll"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def collector_ca(path: str) -> bytes:
    """The CA file given with ``--ca`` (PEM), to keep; empty without one."""
    if not path:
        return b""
    try:
        data = Path(path).read_bytes()[: 256 * 1024]
    except OSError as exc:
        raise EnrollFailed(f"cannot read {path}: {describe(exc)}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise EnrollFailed(f"{path} is not a PEM certificate")
    return data


def request(
    url: str,
    token: str,
    agent: str,
    credential: Credential | str,
    *,
    replace: bool = False,
    commune: str = "",
    ca_file: str = "",
    timeout: float = 30.0,
) -> EnrollAnswer:
    """``commune``: the one the technician means (a token of another is refused)."""
    if isinstance(credential, str):
        credential = Credential(password=credential)
    sent = EnrollRequest(
        token=token, agent=agent, replace=replace, commune=commune,
        csr=credential.csr_pem, password="" if credential.csr_pem else credential.password,
    )  # fmt: skip
    raw = post_json(url, msgspec.to_builtins(sent), ca_file=ca_file, timeout=timeout)
    try:
        answer = msgspec.json.decode(raw, type=EnrollAnswer)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise EnrollFailed(
            f"the collector's answer is not one this agent understands: {exc}"
        ) from None
    if answer.agent != agent:
        raise EnrollFailed(f"the collector enrolled {answer.agent!r}, not {agent!r}")
    if credential.csr_pem and "-----BEGIN CERTIFICATE-----" not in answer.certificate:
        raise EnrollFailed("the collector sent no certificate for this PC's key")
    return answer


def post_json(
    url: str,
    fields: dict[str, object],
    *,
    ca_file: str = "",
    timeout: float = 30.0,
    bearer: str = "",
    limit: int = MAX_ANSWER_BYTES,
) -> bytes:
    """POST ``fields`` as JSON to the collector's API (over HTTPS, verified with
    ``ca_file`` or the system's CAs); the answer's body, or EnrollFailed saying whether
    trying again can help."""
    # The scheme is http(s) only: check_request made the URL.
    http = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(fields).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    if bearer:
        http.add_header("Authorization", f"Bearer {bearer}")
    return exchange(http, ca_file=ca_file, timeout=timeout, limit=limit)


def exchange(
    http: urllib.request.Request, *, ca_file: str = "", timeout: float = 30.0,
    limit: int = MAX_ANSWER_BYTES,
) -> bytes:  # fmt: skip
    """One request to the collector's API; its answer's body, or EnrollFailed."""
    url = http.full_url
    context = ssl.create_default_context(cafile=ca_file or None)
    try:
        with urllib.request.urlopen(http, timeout=timeout, context=context) as response:  # noqa: S310
            raw: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise _refusal(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLCertVerificationError):  # trying again will not help
            raise EnrollFailed(
                f"cannot reach the collector at {url}: {describe(reason, '--ca')}"
            ) from None
        raise EnrollFailed(
            f"cannot reach the collector at {url}: "
            f"{describe(reason) if isinstance(reason, BaseException) else reason}; "
            "nothing was changed, try again later",
            UNREACHABLE,
        ) from None
    if len(raw) > limit:
        raise EnrollFailed("the collector's answer is too large; nothing was written")
    return raw


def _refusal(error: urllib.error.HTTPError) -> EnrollFailed:
    detail = ""
    try:
        data = json.loads(error.read(64 * 1024) or b"{}")
        detail = str(data.get("detail", "")) if isinstance(data, dict) else ""
    except (ValueError, OSError, RecursionError):
        pass
    detail = " ".join(detail.split())[:300] or error.reason or "refused"
    code = UNREACHABLE if error.code in (429, 502, 503, 504) else REFUSED
    return EnrollFailed(f"the collector refused the enrollment ({error.code}): {detail}", code)


def agent_toml(
    answer: EnrollAnswer,
    has_ca: bool,
    when: float,
    certificate: bool = False,
    releases_url: str = "",
    collector_ca: bool = False,
) -> str:
    topic_root = answer.topics.data.split("/", 1)[0]
    lines = [
        f"# Written by commune-agent enroll on {time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}:",  # noqa: E501
        "# identity and broker only. The checks come from the collector (profile "
        f"{json.dumps(answer.profile)});",
        "# this PC's own changes go in local.toml next to this file, and win.",
        "[agent]",
        f"province = {json.dumps(answer.province)}",
        f"commune = {json.dumps(answer.commune)}",
        f"id = {json.dumps(answer.agent)}",
        "",
        "[mqtt]",
        f"url = {json.dumps(answer.broker_url)}",
    ]
    if certificate:  # the certificate's Common Name is the account
        lines += [f'cert_file = "{CERT_FILE}"', f'key_file = "{KEY_FILE}"']
    else:
        lines += [f"username = {json.dumps(answer.username)}", f'password_file = "{PASSWORD_FILE}"']
    if has_ca:
        lines.append(f'ca_file = "{BROKER_CA_FILE}"')
    if topic_root != "commune":
        lines.append(f"topic_root = {json.dumps(topic_root)}")
    lines += ["", "[remote]", "enabled = true"]
    lines += [
        "# Only configs signed by one of these keys run.",
        f'config_key = "{CONFIG_KEY_FILE}"',
        "",
    ]
    if releases_url:
        lines += [
            "[update]",
            "# Under the launcher: the versions the collector's config names, installed only",
            "# if its signed release repository (TUF) lists them.",
            f"url = {json.dumps(releases_url)}",
        ]
        if collector_ca:
            lines.append(f'ca_file = "{COLLECTOR_CA_FILE}"')
        lines.append("")
    return "\n".join(lines)


def preflight(config: Path, force: bool) -> None:
    """Before the token is spent: the config may be written, and is not in the way."""
    if config.exists() and not force:
        raise EnrollFailed(
            f"{config} exists: this PC looks enrolled already (--force to enroll it again)"
        )
    try:
        config.parent.mkdir(parents=True, exist_ok=True)
        probe = config.parent / f".enroll-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise EnrollFailed(f"cannot write in {config.parent}: {describe(exc)}") from None


def write(
    config: Path,
    answer: EnrollAnswer,
    credential: Credential | str,
    when: float | None = None,
    releases_url: str = "",
    collector_ca: bytes = b"",
) -> Written:
    """The local files, each written whole then renamed into place; agent.toml last, so
    a config never names a password file that is not there. ``releases_url``: where the
    launcher takes releases (the collector's ``/releases``); ``collector_ca``: the CA
    its HTTPS was verified with at enrollment, kept beside the config for them."""
    folder = config.parent
    ca = answer.broker_ca.strip()
    if ca and "-----BEGIN CERTIFICATE-----" not in ca:
        raise EnrollFailed("the collector sent a broker CA that is not a PEM certificate")
    if isinstance(credential, str):
        credential = Credential(password=credential)
    if credential.key_pem:
        files: list[tuple[Path, bytes, int]] = [
            (folder / KEY_FILE, credential.key_pem, 0o600),
            (folder / CERT_FILE, answer.certificate.strip().encode() + b"\n", 0o644),
        ]
    else:
        files = [(folder / PASSWORD_FILE, credential.password.encode() + b"\n", 0o600)]
    if ca:
        files.append((folder / BROKER_CA_FILE, ca.encode() + b"\n", 0o644))
    if collector_ca:
        files.append((folder / COLLECTOR_CA_FILE, collector_ca, 0o644))
    if answer.config_keys:
        keys = [decode_public_key(k) for k in answer.config_keys]
        origin = f"the collector, at enrollment on {time.strftime('%Y-%m-%d %H:%M')}"
        files.append((folder / CONFIG_KEY_FILE, key_file_text(keys, origin).encode(), 0o644))
    text = agent_toml(
        answer, bool(ca), time.time() if when is None else when, bool(credential.key_pem),
        releases_url, bool(collector_ca),
    )  # fmt: skip
    files.append((config, text.encode(), 0o640))
    staged: list[tuple[Path, Path]] = []
    try:
        for path, content, mode in files:
            partial = path.with_name(path.name + ".enrolling")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            if sys.platform != "win32":
                os.chmod(partial, mode)  # whatever the umask
            staged.append((partial, path))
        for partial, path in staged:
            os.replace(partial, path)
    except OSError as exc:
        for partial, _ in staged:
            partial.unlink(missing_ok=True)
        raise EnrollFailed(f"cannot write the local config: {describe(exc)}") from None
    return Written(config, [path for path, _, _ in files], answer)


#: The keys' answer is a few hundred bytes.
MAX_KEYS_ANSWER_BYTES = 16 * 1024


def fetch_config_keys(collector: str, ca_file: str = "", timeout: float = 30.0) -> list[bytes]:
    """The collector's config signing keys (current, and next during a rotation), from
    ``GET /api/v1/config-keys`` over HTTPS verified as for enrollment; EnrollFailed."""
    base = check_collector(collector, "the keys decide which configs this PC runs")
    url = base + "/api/v1/config-keys"
    http = urllib.request.Request(url, method="GET")  # noqa: S310 (http(s) only, checked)
    raw = exchange(http, ca_file=ca_file, timeout=timeout, limit=MAX_KEYS_ANSWER_BYTES)
    try:
        answer = msgspec.json.decode(raw, type=ConfigKeys)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise EnrollFailed(
            f"the collector's keys are not an answer this agent understands: {exc}"
        ) from None
    keys = []
    for key in answer.keys:
        public = decode_public_key(key.public)
        if config_key_id(public) != key.id:
            raise EnrollFailed(f"the collector's key {key.id} does not match its own id")
        keys.append(public)
    return keys
