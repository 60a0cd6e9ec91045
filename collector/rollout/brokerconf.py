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


# The ACL file of the config without the plugin ---------------------------------------

#: What the collector reads beside the agents' topics: the broker's uptime tells its
#: session taken over from the broker restarting (``collector/common/sessions.py``).
UPTIME = "$SYS/broker/uptime"
_ACL_LINE = re.compile(r"^\s*(user|topic|pattern)\s+(.*?)\s*$")


def acl_file(text: str) -> str:
    """The ``acl_file`` a broker config names ("" for none: the plugin's config)."""
    top, listeners = _options(text)
    # Without per_listener_settings, an option after a listener line is the broker's.
    for options in (top, *(listener.options for listener in listeners)):
        if options.get("acl_file"):
            return options["acl_file"]
    return ""


def _user_topics(text: str, user: str) -> tuple[int | None, int | None, list[tuple[str, str]]]:
    """Where ``user``'s section starts and its last line is (0-based), and what its
    ``topic`` lines grant (access, filter); Mosquitto reads ``topic`` lines as the last
    ``user`` line's until the next one, and ``pattern`` lines as everyone's."""
    start: int | None = None
    last: int | None = None
    current = ""
    grants: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines()):
        match = None if raw.lstrip().startswith("#") else _ACL_LINE.match(raw)
        if not match:
            continue
        kind, value = match.groups()
        if kind == "user":
            current = value
            if current == user:
                start = last = number
            continue
        if kind == "topic" and current == user:
            last = number
            access, _, topic = value.partition(" ")
            if access not in ("read", "write", "readwrite", "deny"):
                access, topic = "readwrite", value  # no access word: read and write
            grants.append((access, topic.strip()))
    return start, last, grants


def _matches(topic_filter: str, topic: str) -> bool:
    """Whether an ACL's topic filter covers ``topic`` (``+`` one level, ``#`` the rest)."""
    wanted, given = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(given) or level not in ("+", given[index]):
            return False
    return len(wanted) == len(given)


def acl_problems(text: str, collector: str = "commune-collector") -> list[str]:
    """What the ACL file lacks for this release's collector (its [mqtt] username)."""
    start, _last, grants = _user_topics(text, collector)
    if start is None:
        return [f"no 'user {collector}': the collector may read nothing (is it another name?)"]
    denied = any(a == "deny" and _matches(t, UPTIME) for a, t in grants)
    if denied or not any(a in ("read", "readwrite") and _matches(t, UPTIME) for a, t in grants):
        return [
            f"user {collector} may not read {UPTIME}: the collector cannot tell its "
            "session taken over from a broker restart, and never reports a takeover"
        ]
    return []


def upgrade_acl(text: str, collector: str = "commune-collector") -> str:
    """``text`` with the collector's read of the broker's uptime added at the end of its
    section; unchanged when its section is missing or denies it (a person's choice)."""
    start, last, grants = _user_topics(text, collector)
    if start is None or last is None or not acl_problems(text, collector):
        return text
    if any(a == "deny" and _matches(t, UPTIME) for a, t in grants):
        return text
    lines = text.splitlines()
    lines[last + 1 : last + 1] = [
        "# commune-monitor 0.3: the broker's uptime tells a takeover from a restart",
        f"topic read {UPTIME}",
    ]
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
