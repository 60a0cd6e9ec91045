"""Agents' broker accounts: enrol (a password in Mosquitto's password file and a ready
agent config) and revoke.

The account is "<province>/<commune>/<agent>", which the broker's ACL
(deploy/mosquitto/acl) turns into the only topics the agent may write.

The password file is written here, not through ``mosquitto_passwd -b`` (which
puts the clear password on a command line, readable in ``/proc`` by anyone on
the host): each line is Mosquitto's own PBKDF2-SHA512 form
(``$7$<iterations>$<salt>$<hash>``, as ``mosquitto_passwd`` writes it). The file
is replaced atomically, owned by the broker's group and readable by it only
(0640): Mosquitto 2 runs as ``mosquitto`` and must read it after a reload. The
clear password is written once, to a file only its owner can read, for the
agent's PC.
"""

from __future__ import annotations

import base64
import datetime as dt
import grp
import hashlib
import ipaddress
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.wire import IDENT_PATTERN

#: Mosquitto's default. The passwords are 24 random bytes, not words a person chose:
#: more rounds would not make them harder to guess, only make 5,000 agents
#: reconnecting after a broker restart cost the broker more.
ITERATIONS = 101
BROKER_URL = re.compile(
    r"mqtts://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(:\d{1,5})?"
)
HOST_NAME = re.compile(
    r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"
)


class EnrollError(Exception):
    pass


@dataclass(frozen=True)
class Enrollment:
    username: str
    config: Path
    password_file: Path


def account(province: str, commune: str, agent: str) -> str:
    for what, value in (("province", province), ("commune", commune), ("agent", agent)):
        if not re.fullmatch(IDENT_PATTERN, value):
            raise EnrollError(f"{what} {value!r}: lower-case letters, digits and '-' only")
    return f"{province}/{commune}/{agent}"


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """The password as a Mosquitto 2 password-file entry (PBKDF2-SHA512, ``$7$``)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _entries(passwd_file: Path) -> dict[str, str]:
    if not passwd_file.exists():
        return {}
    entries: dict[str, str] = {}
    for line in passwd_file.read_text(encoding="utf-8").splitlines():
        user, sep, hashed = line.partition(":")
        if sep:
            entries[user] = hashed
    return entries


def enrolled(passwd_file: Path) -> set[str]:
    return set(_entries(passwd_file))


def _broker_gid(group: str) -> int | None:
    """The broker's group, to own the password file; None when unset (a test, a container)."""
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise EnrollError(
            f"group {group!r} does not exist: the broker's user must be able to read the "
            "password file (--broker-group, or install mosquitto first)"
        ) from None


def _write_entries(passwd_file: Path, entries: dict[str, str], group: str) -> None:
    """Replace the password file at once: 0640, the broker's group (a half-written file
    must never be what the broker reads on a reload)."""
    gid = _broker_gid(group)
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".passwd-", dir=passwd_file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(f"{user}:{hashed}\n" for user, hashed in entries.items())
        os.chmod(temporary, 0o640)
        if gid is not None:
            os.chown(temporary, -1, gid)
        os.replace(temporary, passwd_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_password(passwd_file: Path, username: str, password: str, group: str = "") -> None:
    """Add or replace one account in a Mosquitto password file."""
    entries = _entries(passwd_file)
    entries[username] = mosquitto_hash(password)
    _write_entries(passwd_file, entries, group)


def _check_broker_url(url: str) -> None:
    if not url.startswith("mqtts://"):
        raise EnrollError(f"broker url {url!r}: agents connect over TLS (mqtts://...)")
    match = BROKER_URL.fullmatch(url)
    port = match.group(2) if match else None
    if match is None or (port is not None and not 0 < int(port[1:]) < 65536):
        raise EnrollError(f"broker url {url!r}: expected mqtts://host[:port]")


def _check_target(target: str) -> None:
    if not target:
        return
    try:
        ipaddress.ip_address(target)
    except ValueError:
        if not HOST_NAME.fullmatch(target):
            raise EnrollError(f"tslcd target {target!r}: an IP address or a host name") from None


def _toml(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's."""
    return json.dumps(text, ensure_ascii=True)


def enroll(
    province: str,
    commune: str,
    agent: str,
    *,
    passwd_file: Path,
    out_dir: Path,
    broker_url: str,
    ca_file: str = "/etc/commune-agent/ca.crt",
    credentials_path: str = "/etc/commune-agent/mqtt-password",
    tslcd_target: str = "",
    broker_group: str = "",
    replace: bool = False,
) -> Enrollment:
    username = account(province, commune, agent)
    _check_broker_url(broker_url)
    _check_target(tslcd_target)
    if username in enrolled(passwd_file) and not replace:
        raise EnrollError(f"{username} is already enrolled (revoke it, or --replace)")
    password = secrets.token_urlsafe(24)
    set_password(passwd_file, username, password, broker_group)
    target = out_dir / username.replace("/", "_")
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)
    secret = target / "mqtt-password"
    secret.touch(mode=0o600)
    secret.chmod(0o600)
    secret.write_text(password + "\n", encoding="utf-8")
    config = target / "agent.toml"
    link = (
        f'\n[[checks.link]]\nname = "tslcd-province"\nnetwork = "tslcd"\n'
        f'method = "icmp"\ntarget = {_toml(tslcd_target)}\n'
        if tslcd_target
        else ""
    )
    config.write_text(
        f"# Written by commune-collector enroll on {dt.date.today()}: the agent {username}.\n"
        f"# Copy this file to /etc/commune-agent/agent.toml (Windows:\n"
        f"# C:\\ProgramData\\commune-agent\\agent.toml), mqtt-password to the path below\n"
        f"# (readable by the agent only) and the broker's CA certificate beside it.\n"
        f"[agent]\nprovince = {_toml(province)}\ncommune = {_toml(commune)}\n"
        f"id = {_toml(agent)}\n\n"
        f"[mqtt]\nurl = {_toml(broker_url)}\nusername = {_toml(username)}\n"
        f"password_file = {_toml(credentials_path)}\nca_file = {_toml(ca_file)}\n\n"
        f"[[checks.host]]\n\n[[checks.antivirus]]\n{link}",
        encoding="utf-8",
    )
    return Enrollment(username, config, secret)


def revoke(
    province: str,
    commune: str,
    agent: str,
    *,
    passwd_file: Path,
    broker_group: str = "",
) -> str:
    username = account(province, commune, agent)
    entries = _entries(passwd_file)
    if username not in entries:
        raise EnrollError(f"{username} is not enrolled in {passwd_file}")
    del entries[username]
    _write_entries(passwd_file, entries, broker_group)
    return username
