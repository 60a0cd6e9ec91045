"""A deployed Mosquitto config checked, and brought up to what this release needs.

An earlier release's broker config (deploy/mosquitto/ as it shipped) lets any account
connect with any client id — so an enrolled PC could take the collector's session, and
its queued messages, by naming it. This release needs, on every listener:

- ``use_username_as_clientid true``: a connection's client id is its account;
- on a listener that takes client certificates (``use_identity_as_username``), given
  the collector's revocation list: ``crlfile <it>``;

and, for the whole broker, ``allow_anonymous false``. ``upgrade`` adds what is missing
right after each ``listener`` line and changes nothing else, so an operator's own
settings and comments stay where they are. The dynamic security plugin's side (the
default access, the collector's roles) the collector brings in line itself at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPTION = re.compile(r"^\s*([a-z_]+)(?:\s+(.*?))?\s*$")


@dataclass(frozen=True)
class Listener:
    line: int
    """Where its ``listener`` line is (0-based)."""
    port: str
    options: dict[str, str]


def _options(text: str) -> tuple[dict[str, str], list[Listener]]:
    """The global options, and each listener's own, as the file sets them."""
    top: dict[str, str] = {}
    listeners: list[Listener] = []
    current = top
    for number, raw in enumerate(text.splitlines()):
        # Mosquitto takes a line starting with '#' for a comment, nothing else (a '#'
        # further on is part of the value).
        match = None if raw.lstrip().startswith("#") else _OPTION.match(raw)
        if not match:
            continue
        name, value = match.group(1), match.group(2) or ""
        if name == "listener":
            current = {}
            listeners.append(Listener(number, value.split()[0] if value else "", current))
            continue
        current[name] = value
    return top, listeners


def problems(text: str, crl_file: str = "") -> list[str]:
    """What the config lacks, in words; [] when it has everything."""
    top, listeners = _options(text)
    found: list[str] = []
    if top.get("allow_anonymous", "false") != "false":
        found.append("allow_anonymous is not false: anyone may connect without an account")
    for listener in listeners:
        if listener.options.get("use_username_as_clientid") != "true":
            found.append(
                f"listener {listener.port}: no use_username_as_clientid true: an account may "
                "take another's session (the collector's) by naming its client id"
            )
        certificates = listener.options.get("use_identity_as_username") == "true"
        if certificates and crl_file and listener.options.get("crlfile") != crl_file:
            found.append(
                f"listener {listener.port}: no crlfile {crl_file}: a revoked PC's certificate "
                "is not refused when it connects"
            )
    if not listeners:
        found.append("no listener: this is not a broker config of commune-monitor")
    return found


def upgrade(text: str, crl_file: str = "") -> str:
    """``text`` with what ``problems`` names added after each ``listener`` line."""
    _top, listeners = _options(text)
    lines = text.splitlines()
    for listener in reversed(listeners):  # from the end: earlier line numbers stay right
        added: list[str] = []
        if listener.options.get("use_username_as_clientid") != "true":
            added.append("use_username_as_clientid true")
        certificates = listener.options.get("use_identity_as_username") == "true"
        if certificates and crl_file and "crlfile" not in listener.options:
            added.append(f"crlfile {crl_file}")
        if added:
            note = "# commune-monitor 0.3: a session is its account's; revoked certificates refused"
            lines[listener.line + 1 : listener.line + 1] = [note, *added]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
