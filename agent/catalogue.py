"""The field catalogue, part of the wire contract: what each check's samples carry.

Per check and item (``""`` for the main record, or a sub-series such as ``disk``):
each field and tag with its type and meaning, the closed set of values a text
field or tag takes where there is one, and which fields feed an up/down history
(availability, the monthly figures). Everything downstream reads the vocabulary
from here: the alert rules' parser, the store's up/down histories, the health
model's reads, the line protocol's measurements, the fleet simulator (tested),
the README's "What each check reports" (generated: ``commune-agent fields``) and
``agent/schema/fields.json`` for third parties.

A field the catalogue does not know still travels (a newer agent may send more
than an older collector knows); it is simply not something a rule can name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from agent.wire import OUTCOMES, FieldValue, Sample

FieldType = Literal["number", "bool", "text"]
NUMBER: Final = "number"
BOOL: Final = "bool"
TEXT: Final = "text"
UpDown = Literal["up", "down"]

#: Outcomes after which a check says nothing about its target's state.
SILENT_OUTCOMES: Final = frozenset({"unsupported", "error"})


def conforms(kind: FieldType, value: FieldValue) -> bool:
    """Whether a value is of the catalogued type (a boolean is not a number here)."""
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


@dataclass(frozen=True)
class History:
    """A field whose value moves an up/down history, e.g. the line's availability.

    Numbers and flags: true or non-zero is up. Text: ``up`` lists the values that
    mean up (anything else is down) or ``down`` the values that mean down; values
    in ``unknown`` say nothing, and neither does a value of the wrong type.
    """

    kind: str
    up: frozenset[str] = frozenset()
    down: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()

    def state(self, kind: FieldType, value: FieldValue) -> UpDown | None:
        if not conforms(kind, value):
            return None
        if isinstance(value, str):
            if value in self.unknown:
                return None
            if self.up:
                return "up" if value in self.up else "down"
            return "down" if value in self.down else "up"
        if isinstance(value, float) and math.isnan(value):
            return None
        return "up" if value else "down"


@dataclass(frozen=True)
class Field:
    """One field of a measurement: its type, what it means, its unit."""

    name: str
    type: FieldType
    meaning: str
    unit: str = ""
    values: tuple[str, ...] = ()
    """Text only: the values it takes, when that set is closed."""
    history: tuple[History, ...] = ()


@dataclass(frozen=True)
class Tag:
    """One tag of a measurement and what it means."""

    name: str
    meaning: str
    values: tuple[str, ...] = ()
    """The values it takes, when that set is closed."""


@dataclass(frozen=True)
class Item:
    """The samples of one check and item: one measurement in the time-series server."""

    check: str
    item: str
    meaning: str
    target: str
    """What ``target`` names in these samples."""
    fields: Mapping[str, Field]
    tags: Mapping[str, Tag]
    histories: tuple[tuple[Field, History], ...] = field(init=False)
    _numbers: frozenset[str] = field(init=False, repr=False, compare=False)
    """The number fields: read at every commune's computing, 50 probes at a time."""
    _texts: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    """The text fields, with their values when the set is closed (else empty)."""

    def __post_init__(self) -> None:
        both = set(self.fields) & set(self.tags)
        if both:
            raise ValueError(f"{self.label}: {sorted(both)} both a field and a tag")
        histories = tuple((f, h) for f in self.fields.values() for h in f.history)
        object.__setattr__(self, "histories", histories)
        numbers = frozenset(n for n, f in self.fields.items() if f.type == NUMBER)
        object.__setattr__(self, "_numbers", numbers)
        texts = {n: frozenset(f.values) for n, f in self.fields.items() if f.type == TEXT}
        object.__setattr__(self, "_texts", texts)

    @property
    def label(self) -> str:
        return f"{self.check} ({self.item})" if self.item else self.check

    @property
    def measurement(self) -> str:
        return measurement(self.check, self.item)

    # Typed reads for the collector: a name the catalogue does not give this item as
    # that type is a programming error (KeyError); a value of the wrong type, or
    # outside a closed set of values, reads as unknown (None).

    def _typed(self, fields: Mapping[str, FieldValue], name: str, kind: FieldType) -> object:
        declared = self.fields[name]
        if declared.type != kind:
            raise KeyError(f"{self.label}.{name} is {declared.type}, not {kind}")
        value = fields.get(name)
        if value is None or not conforms(kind, value):
            return None
        return None if declared.values and value not in declared.values else value

    def number(self, fields: Mapping[str, FieldValue], name: str) -> float | None:
        value = fields.get(name)
        # The common case as _typed reads it, in a third of its time: a number as
        # decoded (exactly int or float: a bool is neither) of a number field.
        if (type(value) is float or type(value) is int) and name in self._numbers:
            return float(value)
        typed = self._typed(fields, name, NUMBER)
        return float(typed) if isinstance(typed, int | float) else None

    def flag(self, fields: Mapping[str, FieldValue], name: str) -> bool | None:
        value = self._typed(fields, name, BOOL)
        return value if isinstance(value, bool) else None

    def text(self, fields: Mapping[str, FieldValue], name: str) -> str | None:
        value = fields.get(name)
        # As number's: a text of a text field (each PC's anti-malware verdict).
        if type(value) is str and value and (closed := self._texts.get(name)) is not None:
            return None if closed and value not in closed else value
        typed = self._typed(fields, name, TEXT)
        return typed if isinstance(typed, str) and typed else None


def measurement(check: str, item: str) -> str:
    """The time-series measurement of a check's samples: ``link``, ``host_disk``."""
    return f"{check}_{item}" if item else check


def _number(name: str, meaning: str, unit: str = "", *history: History) -> Field:
    return Field(name, NUMBER, meaning, unit, history=history)


def _flag(name: str, meaning: str, *history: History) -> Field:
    return Field(name, BOOL, meaning, history=history)


def _text(name: str, meaning: str, values: Iterable[str] = (), *history: History) -> Field:
    return Field(name, TEXT, meaning, values=tuple(values), history=history)


def _item(
    check: str,
    item: str,
    meaning: str,
    target: str,
    fields: Iterable[Field],
    tags: Iterable[Tag] = (),
) -> Item:
    return Item(
        check, item, meaning, target, {f.name: f for f in fields}, {t.name: t for t in tags}
    )


VERDICTS: Final = ("protected", "outdated", "unprotected", "none", "unknown")
PRODUCT_STATES: Final = ("on", "off", "snoozed", "expired", "unknown")
PRODUCT_SOURCES: Final = ("security_center", "defender", "process", "clamav")
OPER_STATES: Final = (
    "up",
    "down",
    "testing",
    "unknown",
    "dormant",
    "not_present",
    "lower_layer_down",
)

HOST: Final = _item(
    "host",
    "",
    "this PC: processor, memory, uptime, operating system",
    "empty",
    [
        _number("cpu_percent", "processor in use since the previous run", "%"),
        _number("cpu_count", "logical processors"),
        _number("mem_percent", "memory in use", "%"),
        _number("mem_total_bytes", "installed memory", "bytes"),
        _number("boot_time", "when the PC started", "Unix s"),
        _number("uptime_s", "time since the PC started", "s"),
        _text("os_build", "the operating system's build (e.g. 10.0.19045)"),
    ],
    [
        Tag("os", "operating system, lower case (windows, linux)"),
        Tag("os_version", "its release (10, 11, 2019Server, a Linux kernel)"),
        Tag("hostname", "the PC's network name"),
    ],
)
HOST_DISK: Final = _item(
    "host",
    "disk",
    "one per fixed disk",
    "the mount point (`C:\\`, `/`)",
    [
        _number("used_percent", "space in use", "%"),
        _number("total_bytes", "size", "bytes"),
        _number("free_bytes", "space left", "bytes"),
    ],
    [Tag("fstype", "file system (NTFS, ext4; unknown when the system does not say)")],
)
ANTIVIRUS: Final = _item(
    "antivirus",
    "",
    "the PC's verdict over every anti-malware product found",
    "empty",
    [
        _text(
            "verdict",
            "protected: a product on and up to date; outdated: on, signatures too old; "
            "unprotected: products found, all off, snoozed or expired; none: no product; "
            "unknown: a product whose state cannot be read",
            VERDICTS,
            History("protection", up=frozenset({"protected"}), unknown=frozenset({"unknown"})),
            History("signatures", down=frozenset({"outdated"}), unknown=frozenset({"unknown"})),
        ),
        _flag("protected", "verdict is protected"),
        _number("products", "products found"),
        _number("products_on", "products found on"),
    ],
    [Tag("source", "how the PC was read", ("windows", "clamav"))],
)
ANTIVIRUS_PRODUCT: Final = _item(
    "antivirus",
    "product",
    "one per product found",
    "the product's name",
    [
        _text("state", "what the product says of itself", PRODUCT_STATES),
        _flag("enabled", "state is on (absent when unknown)"),
        _flag("up_to_date", "signatures current (absent when nothing says)"),
        _flag("realtime", "real-time protection on"),
        _number("signature_age_days", "age of the signatures", "days"),
        _number("last_scan_age_days", "time since the last scan", "days"),
        _number("product_state", "Security Center's raw productState, for diagnosis"),
        _text("version", "the product's version"),
        _text("detail", "what the reader saw, in words"),
    ],
    [Tag("source", "where the product was found", PRODUCT_SOURCES)],
)
LINK: Final = _item(
    "link",
    "",
    "a probe of one target: the dedicated line (TSLCD), the Internet, a server",
    "the host or URL probed",
    [
        _number("up", "1 when any probe was answered, else 0", "", History("link")),
        _number("sent", "probes sent"),
        _number("received", "probes answered"),
        _number("loss_percent", "probes unanswered", "%"),
        _number("rtt_ms", "mean round trip of the answered probes", "ms"),
        _number("rtt_min_ms", "shortest round trip", "ms"),
        _number("rtt_max_ms", "longest round trip", "ms"),
        _number("status_code", "HTTP status of the last answer (http only)"),
    ],
    [
        Tag("network", "which network the target is on (tslcd, internet, lan)"),
        Tag("method", "how it was probed", ("icmp", "tcp", "http")),
    ],
)
SNMP: Final = _item(
    "snmp",
    "",
    "a router or switch polled over SNMP",
    "the device's address",
    [
        _number("up", "1 when the device answered, else 0"),
        _number("uptime_s", "sysUpTime", "s"),
        _text("sys_descr", "sysDescr: the device's own description"),
        _text("sys_name", "sysName"),
        _text("sys_object_id", "sysObjectID: its make and model"),
        _number("interfaces", "interfaces reported"),
        _number("interfaces_up", "interfaces operating"),
    ],
)
SNMP_INTERFACE: Final = _item(
    "snmp",
    "interface",
    "one per interface (after the include and exclude filters)",
    "ifName, else ifDescr",
    [
        _number("oper_status", "ifOperStatus, the IF-MIB number"),
        _flag("oper_up", "operating (ifOperStatus is up)"),
        _text("oper_state", "ifOperStatus in words", OPER_STATES),
        _number("admin_status", "ifAdminStatus: 1 up, 2 down, 3 testing"),
        _number("speed_bps", "ifHighSpeed, else ifSpeed", "bit/s"),
        _text("alias", "ifAlias: the label the technician gave the port"),
        _number("counters", "octet counter width read: 64 or 32"),
        _number("in_bps", "traffic in, from the second poll on", "bit/s"),
        _number("out_bps", "traffic out, from the second poll on", "bit/s"),
        _number("in_errors_ps", "input errors", "1/s"),
        _number("out_errors_ps", "output errors", "1/s"),
    ],
    [Tag("ifindex", "ifIndex")],
)
POLYCOM: Final = _item(
    "polycom",
    "",
    "a Polycom video-conference endpoint: can the commune join a meeting",
    "the endpoint's address",
    [
        _number("up", "1 when the endpoint answered, else 0"),
        _flag(
            "ready",
            "reachable, registered, camera and microphone not failed (absent when "
            "registration cannot be read)",
            History("polycom"),
        ),
        _flag("registered", "registered to the gatekeeper (H.323) or a SIP server"),
        _flag("h323_registered", "registered to the H.323 gatekeeper"),
        _flag("sip_registered", "registered to the SIP server"),
        _flag("camera_ok", "camera not failed"),
        _flag("microphone_ok", "microphone not failed"),
        _flag("in_call", "in a call or conference now"),
        _number("active_calls", "calls now"),
        _number("active_conferences", "conferences now"),
        _number("uptime_s", "time since the endpoint started", "s"),
        _text("model", "model"),
        _text("software_version", "software version"),
        _text("serial", "serial number"),
        _number("loss_rx_percent", "worst packet loss received over the calls", "%"),
        _number("loss_tx_percent", "worst packet loss sent", "%"),
        _number("latency_rx_ms", "worst latency received", "ms"),
        _number("latency_tx_ms", "worst latency sent", "ms"),
        _number("jitter_rx_ms", "worst jitter received", "ms"),
        _number("jitter_tx_ms", "worst jitter sent", "ms"),
        _number("packet_loss", "HDX: packet loss of the call", "%"),
        _number("jitter_ms", "HDX: jitter of the call", "ms"),
        _number("latency_ms", "HDX: latency of the call", "ms"),
    ],
    [
        Tag("method", "how it was read", ("snmp", "rest")),
        Tag(
            "family",
            "group_series (POLYCOM-ENDPOINT-MIB), hdx (older units), videoos (REST)",
            ("group_series", "hdx", "videoos", "unknown"),
        ),
    ],
)
SYSTEM_KINDS: Final = (
    "one-stop", "documents", "email", "meetings", "reporting", "website", "land", "lgsp",
    "ioc", "other",
)  # fmt: skip
SYSTEM: Final = _item(
    "system",
    "",
    "one of the province's shared systems (the one-stop shop, document management, "
    "email, a commune's website...) as this commune reaches it: one HTTP(S) GET, "
    "redirects not followed, or a TCP connect",
    "the URL, or host:port for a system with no HTTP face",
    [
        _flag("up", "the system answered as a healthy one does (outcome ok)", History("system")),
        _number("status", "HTTP status of the answer (absent for TCP or without one)"),
        _number("connect_ms", "start to connection (name, TCP and TLS handshakes)", "ms"),
        _number("ttfb_ms", "start to the answer's first byte", "ms"),
        _number("total_ms", "start to the end of the page (read up to 256 KiB)", "ms"),
        _number(
            "cert_days", "days until the certificate's notAfter (HTTPS); negative: expired", "days"
        ),
        _number("bytes", "bytes of the page read (at most 262144)", "bytes"),
    ],
    [
        Tag("network", "which network reaches the system", ("tslcd", "internet", "lan")),
        Tag("system", "the system's display name, from the collector's catalogue"),
        Tag("kind", f"the system's kind in the catalogue: {', '.join(SYSTEM_KINDS)}"),
    ],
)
AGENT: Final = _item(
    "agent",
    "",
    "the agent itself, every [agent].interval",
    "empty",
    [
        _text("version", "the agent's version"),
        _flag("connected", "connected to the broker now"),
        _number("connects", "connections since start"),
        _number("published", "envelopes published since start"),
        _number("acked", "envelopes the broker acknowledged since start"),
        _number("publish_lag_s", "collection to acknowledgement, last envelope", "s"),
        _number("outbox_errors", "outbox writes or reads that failed"),
        _number("outbox_rows", "envelopes waiting in the outbox"),
        _number("outbox_bytes", "their size", "bytes"),
        _number("outbox_oldest_age_s", "age of the oldest waiting", "s"),
        _number("dropped_envelopes", "envelopes dropped, ever (kept across restarts)"),
        _number("dropped_new", "dropped since the previous sample: the outbox_dropped alert"),
        _number("dropped_age", "dropped for age"),
        _number("dropped_size", "dropped to keep the outbox within its size"),
        _number("dropped_error", "dropped as unreadable"),
        _number("rss_bytes", "the agent's resident memory", "bytes"),
        _number("cpu_percent", "the agent's processor use", "%"),
        _number("config_version", "the version of the collector's config it runs (0: local only)"),
        _text("config_hash", "that config's content hash"),
        _number("config_refused_version", "the last config version it refused"),
        _text("config_error", "why it refused that config (it keeps running the previous one)"),
        _text("config_keys", "the config signing keys it trusts: their ids, comma-separated"),
    ],
)
AGENT_CHECK: Final = _item(
    "agent",
    "check",
    "one per configured check",
    "the check (kind:name)",
    [
        _number("runs", "runs since start"),
        _number("errors", "runs that raised an error"),
        _number("timeouts", "runs abandoned at their timeout"),
        _number("skipped", "runs skipped: the previous one was still going"),
        _number("duration_s", "the last run's duration", "s"),
        _number("max_duration_s", "the longest run since start", "s"),
    ],
)

#: Every (check, item) the agents send, in the order the README shows them.
CATALOGUE: Final[Mapping[tuple[str, str], Item]] = {
    (i.check, i.item): i
    for i in (
        HOST,
        HOST_DISK,
        ANTIVIRUS,
        ANTIVIRUS_PRODUCT,
        LINK,
        SNMP,
        SNMP_INTERFACE,
        POLYCOM,
        SYSTEM,
        AGENT,
        AGENT_CHECK,
    )
}
CHECKS: Final = tuple(dict.fromkeys(check for check, _ in CATALOGUE))

#: What the collector derives for every sample from its outcome (wire.RESERVED_FIELDS).
DERIVED: Final[Mapping[str, Field]] = {
    "outcome": _text("outcome", "what happened when the check ran", OUTCOMES),
    "success": _flag("success", "outcome is ok"),
}


#: The histories each (check, item) moves, for the items that move any.
_MOVERS: Final = {key: item.histories for key, item in CATALOGUE.items() if item.histories}


class Observed(Protocol):
    """What ``histories`` reads of a sample: a ``Sample``, or the read process's lighter
    copy of one (``collector/state/factsfeed.py``)."""

    @property
    def check(self) -> str: ...
    @property
    def item(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def fields(self) -> Mapping[str, FieldValue]: ...


def histories(sample: Observed) -> list[tuple[str, UpDown]]:
    """(history, "up"/"down") for the histories a sample moves; none for most samples.

    A check that could not run (unsupported, error), a field that is missing or of
    the wrong type, or a state that cannot be read says nothing: no state change.
    """
    movers = _MOVERS.get((sample.check, sample.item))
    if movers is None or sample.outcome in SILENT_OUTCOMES:
        return []
    moved: list[tuple[str, UpDown]] = []
    for declared, history in movers:
        value = sample.fields.get(declared.name)
        if value is not None and (state := history.state(declared.type, value)) is not None:
            moved.append((history.kind, state))
    return moved


#: The Python types a decoded value of each type has (msgspec decodes exact types).
_PYTHON_TYPES: Final[Mapping[FieldType, frozenset[type]]] = {
    NUMBER: frozenset({int, float}),
    BOOL: frozenset({bool}),
    TEXT: frozenset({str}),
}
_ACCEPTED: Final = {
    key: {name: _PYTHON_TYPES[f.type] for name, f in item.fields.items()}
    for key, item in CATALOGUE.items()
}


def mistyped(sample: Sample) -> tuple[str, ...]:
    """The catalogued fields of a sample whose value is of another type (``up`` as
    text): read downstream they would be wrong, and in the time-series server they
    would conflict with the field's type and lose the whole point."""
    accepted = _ACCEPTED.get((sample.check, sample.item))
    if accepted is None:
        return ()
    # Runs for every sample: a plain loop that allocates nothing while all is well.
    for name, value in sample.fields.items():
        types = accepted.get(name)
        if types is not None and type(value) not in types:
            return tuple(
                n
                for n, v in sample.fields.items()
                if (t := accepted.get(n)) is not None and type(v) not in t
            )
    return ()


def problems(sample: Sample) -> list[str]:
    """How a sample departs from the catalogue; empty when it matches."""
    item = CATALOGUE.get((sample.check, sample.item))
    if item is None:
        return [f"{sample.check}/{sample.item}: not in the catalogue"]
    found = []
    for name, value in sample.fields.items():
        declared = item.fields.get(name)
        if declared is None:
            found.append(f"{item.label}: unknown field {name}")
        elif not conforms(declared.type, value):
            found.append(f"{item.label}.{name}: {value!r} is not {declared.type}")
        elif declared.values and value not in declared.values:
            found.append(f"{item.label}.{name}: {value!r} not in {list(declared.values)}")
    for name, value in sample.tags.items():
        tag = item.tags.get(name)
        if tag is None:
            found.append(f"{item.label}: unknown tag {name}")
        elif tag.values and value not in tag.values:
            found.append(f"{item.label} tag {name}: {value!r} not in {list(tag.values)}")
    return found


def document() -> dict[str, object]:
    """The catalogue as JSON, for third parties (``agent/schema/fields.json``)."""

    def described(f: Field) -> dict[str, object]:
        entry: dict[str, object] = {"type": f.type, "meaning": f.meaning}
        if f.unit:
            entry["unit"] = f.unit
        if f.values:
            entry["values"] = list(f.values)
        if f.history:
            entry["history"] = [h.kind for h in f.history]
        return entry

    return {
        "title": "commune-monitor field catalogue",
        "derived": {name: described(f) for name, f in DERIVED.items()},
        "measurements": {
            item.measurement: {
                "check": item.check,
                "item": item.item,
                "meaning": item.meaning,
                "target": item.target,
                "fields": {name: described(f) for name, f in item.fields.items()},
                "tags": {
                    name: {"meaning": t.meaning} | ({"values": list(t.values)} if t.values else {})
                    for name, t in item.tags.items()
                },
            }
            for item in CATALOGUE.values()
        },
    }


def markdown() -> str:
    """The README's tables: one per check and item."""
    lines: list[str] = []
    for item in CATALOGUE.values():
        heading = f"**{item.check}**" + (f', `item = "{item.item}"`' if item.item else "")
        lines += [f"{heading}: {item.meaning}; `target`: {item.target}.", ""]
        lines += ["| name | | type | meaning |", "|---|---|---|---|"]
        for f in item.fields.values():
            kind = f.type + (f" ({f.unit})" if f.unit else "")
            meaning = f.meaning + (f" — one of {_listed(f.values)}" if f.values else "")
            if f.history:
                named = ", ".join(f"`{h.kind}`" for h in f.history)
                meaning += f"; feeds the {named} up/down history"
            lines.append(f"| `{f.name}` | field | {kind} | {_cell(meaning)} |")
        for t in item.tags.values():
            meaning = t.meaning + (f" — one of {_listed(t.values)}" if t.values else "")
            lines.append(f"| `{t.name}` | tag | text | {_cell(meaning)} |")
        lines.append("")
    return "\n".join(lines)


def _listed(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
