"""Agents' broker accounts: enrol (a password in Mosquitto's password file and a ready
agent config) and revoke.

The account is "<province>/<commune>/<agent>", which the broker's ACL
(deploy/mosquitto/acl) turns into the only topics the agent may write.
Passwords go through ``mosquitto_passwd`` (salted hashes); the clear password
is written once, to a file only its owner can read, for the agent's PC.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.wire import IDENT_PATTERN


class EnrollError(Exception):
    pass


@dataclass(frozen=True)
class Enrollment:
    username: str
    config: Path
    password_file: Path


def account(province: str, commune: str, agent: str) -> str:
    for what, value in (("province", province), ("commune", commune), ("agent", agent)):
        if not re.fullmatch(IDENT_PATTERN, value) or len(value) > 64:
            raise EnrollError(f"{what} {value!r}: lower-case letters, digits and '-' only")
    return f"{province}/{commune}/{agent}"


def _passwd(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise EnrollError(
            f"{command[0]} not found: install mosquitto (it ships mosquitto_passwd)"
        ) from None
    if result.returncode != 0:
        raise EnrollError(f"{command[0]}: {(result.stderr or result.stdout).strip()[:300]}")


def enrolled(passwd_file: Path) -> set[str]:
    if not passwd_file.exists():
        return set()
    return {
        line.split(":", 1)[0]
        for line in passwd_file.read_text(encoding="utf-8").splitlines()
        if ":" in line
    }


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
    hasher: str = "mosquitto_passwd",
    replace: bool = False,
) -> Enrollment:
    username = account(province, commune, agent)
    if username in enrolled(passwd_file) and not replace:
        raise EnrollError(f"{username} is already enrolled (revoke it, or --replace)")
    if not broker_url.startswith("mqtts://"):
        raise EnrollError(f"broker url {broker_url!r}: agents connect over TLS (mqtts://...)")
    password = secrets.token_urlsafe(24)
    create = [] if passwd_file.exists() else ["-c"]
    _passwd([hasher, *create, "-b", str(passwd_file), username, password])
    passwd_file.chmod(0o640)  # the broker reads it; nobody else
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
        f'method = "icmp"\ntarget = "{tslcd_target}"\n'
        if tslcd_target
        else ""
    )
    config.write_text(
        f"# Written by commune-collector enroll on {dt.date.today()}: the agent {username}.\n"
        f"# Copy this file to /etc/commune-agent/agent.toml (Windows:\n"
        f"# C:\\ProgramData\\commune-agent\\agent.toml), mqtt-password to {credentials_path}\n"
        f"# (readable by the agent only) and the broker's CA certificate to {ca_file}.\n"
        f'[agent]\nprovince = "{province}"\ncommune = "{commune}"\nid = "{agent}"\n\n'
        f'[mqtt]\nurl = "{broker_url}"\nusername = "{username}"\n'
        f'password_file = "{credentials_path}"\nca_file = "{ca_file}"\n\n'
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
    hasher: str = "mosquitto_passwd",
) -> str:
    username = account(province, commune, agent)
    if username not in enrolled(passwd_file):
        raise EnrollError(f"{username} is not enrolled in {passwd_file}")
    _passwd([hasher, "-D", str(passwd_file), username])
    return username
