"""The wire contract between agents and collectors: topics, envelopes, status.

This module is the single definition of what travels over MQTT. The collector
imports it; nothing here imports the rest of the agent. ``agent/schema/*.json``
is generated from these types (``commune-agent schema``) for third parties.

Topics (all under a configurable root, default ``commune``)::

    <root>/<province>/<commune>/<agent>/status   retained, QoS 1: Status (birth / will)
    <root>/<province>/<commune>/<agent>/data     QoS 1, not retained: Envelope
    <root>/<province>/<commune>/<agent>/config   retained, QoS 1, from the collector:
                                                 SignedConfig (an AgentConfig, the
                                                 checks to run, signed)

Every data envelope carries the schema version ``v``, the agent's identity
(which must match the topic), a per-agent sequence number that increases by
one per envelope across restarts and never goes back (a new outbox starts at
its creation time in ms), and samples that each carry their own collection
time, so replayed backlogs are placed where they happened.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

SCHEMA_VERSION: Final = 1

#: Bounds the collector enforces; the agent never produces more.
MAX_ENVELOPE_BYTES: Final = 256 * 1024
MAX_SAMPLES: Final = 2000
MAX_FIELDS: Final = 64
MAX_TAGS: Final = 16
MAX_TEXT: Final = 1024
MAX_CHECKS: Final = 256
#: Integers travel exactly only within ±2^53: beyond, JSON consumers (JavaScript,
#: the IOC's tools) and the time-series server (floats) lose them.
MAX_EXACT_INT: Final = 2**53
#: Times are Unix seconds from 1970 until 2242: a bound, not a policy (the collector
#: refuses clocks far off by name: clock_ahead, clock_behind).
MAX_TIME: Final = float(2**33)
#: The per-agent sequence is stored as a SQLite INTEGER (signed 64 bits).
MAX_SEQ: Final = 2**63 - 1


def whole(pattern: str) -> str:
    """A pattern that must match the whole string: ``$`` alone also matches before a
    final newline (``"la-nga\n"``); the look-ahead refuses it, in Python's regular
    expressions as in JSON Schema's."""
    return f"^(?:{pattern})$(?!\n)"


#: A topic segment: no MQTT wildcards or separators, no spaces.
IDENT_PATTERN: Final = whole(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_PATTERN: Final = whole(r"[a-z][a-z0-9_]{0,63}")
ITEM_PATTERN: Final = whole(r"[a-z0-9_]{0,32}")
Ident = Annotated[str, msgspec.Meta(pattern=IDENT_PATTERN, max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
Key = Annotated[str, msgspec.Meta(pattern=KEY_PATTERN)]


class _Known:
    """A pattern's test with a memory of the strings that passed it.

    msgspec tests a ``Meta(pattern=...)`` with a call into Python's ``re`` for every
    string: for an envelope's idents, check names and every field and tag name, that
    was three quarters of decoding it. The names repeat (a few dozen field names, the
    provinces and communes), so an envelope's are tested here, once each
    (``__post_init__``, which msgspec runs on decoding too): the same test, bounded
    memory (forgotten all at once when full).
    """

    def __init__(self, pattern: str, what: str, limit: int = 8192) -> None:
        self._search = re.compile(pattern).search
        self._pattern = pattern
        self._what = what
        self._limit = limit
        self.passed: Final[set[str]] = set()
        """The strings that passed: cleared when full, never replaced (callers may hold it)."""

    def check(self, value: str) -> None:
        if value in self.passed:
            return
        if self._search(value) is None:
            raise ValueError(
                f"{self._what}: expected `str` matching regex {self._pattern!r}, got {value[:80]!r}"
            )
        if len(self.passed) >= self._limit:
            self.passed.clear()
        self.passed.add(value)

    def check_all(self, values: dict[str, Any]) -> None:
        """``check`` of each key: one C call when all passed before (a sample's field or
        tag names)."""
        if not self.passed.issuperset(values):
            for value in values:
                self.check(value)


_KEYS: Final = _Known(KEY_PATTERN, "a check, field or tag name")
_ITEMS: Final = _Known(ITEM_PATTERN, "an item")
_PLACES: Final = _Known(IDENT_PATTERN, "a province or commune")
_AGENT: Final = re.compile(IDENT_PATTERN).search

# The same strings as Ident and Key, their pattern tested by __post_init__ (_Known):
# the published schema says the same.
_PlaceIdent = Annotated[
    str, msgspec.Meta(max_length=64, extra_json_schema={"pattern": IDENT_PATTERN})
]
_KnownKey = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": KEY_PATTERN})]
Time = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME)]
ExactInt = Annotated[int, msgspec.Meta(ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)]
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]

#: What happened when the check ran against its target. A target that is down
#: is data (``down``/``timeout``/``refused``), not an error of the agent.
Outcome = Literal["ok", "down", "timeout", "refused", "bad_response", "error", "unsupported"]
OUTCOMES: Final = ("ok", "down", "timeout", "refused", "bad_response", "error", "unsupported")

FieldValue = bool | ExactInt | FiniteFloat | Text

#: Tags the collector writes itself from the topic and the sample (who, where, what),
#: and fields it derives from the outcome: a sample may not set them.
RESERVED_TAGS: Final = frozenset({"province", "commune", "agent", "name", "target"})
RESERVED_FIELDS: Final = frozenset({"success", "outcome"})

TopicKind = Literal["status", "data", "config", "receipt"]


class Sample(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One observation of one target by one check run."""

    ts: Time
    """Collection time, Unix seconds (UTC)."""
    check: _KnownKey
    """Check kind: host, antivirus, link, snmp, polycom, agent."""
    name: Text
    """The check instance's name from the agent config."""
    outcome: Outcome
    item: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": ITEM_PATTERN})] = ""
    """Sub-series of the check ("" for the main record; "disk", "interface", "product")."""
    target: Text = ""
    """What was observed: a host, an interface name, a product name, a mount point."""
    fields: Annotated[dict[_KnownKey, FieldValue], msgspec.Meta(max_length=MAX_FIELDS)] = {}
    tags: Annotated[dict[_KnownKey, Text], msgspec.Meta(max_length=MAX_TAGS)] = {}
    error: Text = ""
    """Why the outcome is not ok, in words a technician can act on."""

    def __post_init__(self) -> None:
        # Runs for every sample decoded: the names passed before cost a set lookup here,
        # not a call (``_Known.check`` tests the others).
        passed = _KEYS.passed
        if self.check not in passed:
            _KEYS.check(self.check)
        if self.item and self.item not in _ITEMS.passed:
            _ITEMS.check(self.item)
        if self.fields and not passed.issuperset(self.fields):
            _KEYS.check_all(self.fields)
        if self.tags and not passed.issuperset(self.tags):
            _KEYS.check_all(self.tags)


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One check run's results, published on the agent's ``data`` topic."""

    v: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    agent: _PlaceIdent
    province: _PlaceIdent
    commune: _PlaceIdent
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    """Per-agent sequence number: +1 per envelope, kept across restarts, never going back."""
    ts: Time
    """When the envelope was written to the agent's outbox."""
    samples: Annotated[list[Sample], msgspec.Meta(max_length=MAX_SAMPLES)]

    def __post_init__(self) -> None:
        places = _PLACES.passed
        if self.province not in places:
            _PLACES.check(self.province)
        if self.commune not in places:
            _PLACES.check(self.commune)
        # Thousands of agents a province: tested every time rather than remembered.
        if _AGENT(self.agent) is None:
            raise ValueError(
                f"the agent: expected `str` matching regex {IDENT_PATTERN!r}, "
                f"got {self.agent[:80]!r}"
            )


#: An agent release's version: one to four dot-separated numbers ("0.3.1"), compared as
#: numbers (``agent.update.versions``); nothing else, so no two spellings order alike.
VERSION_PATTERN: Final = whole(r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}")
ReleaseVersion = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN, max_length=27)]

#: What an agent's update stands at, as its birth reports it.
UpdateState = Literal[
    "",  # nothing to report: not under the launcher, or no update ever asked for
    "idle",  # runs the version asked for
    "waiting",  # asked for another version; its turn (spread over the fleet) has not come
    "paused",  # asked for another version, but the rollout is paused
    "staged",  # downloaded, verified, self-checked: the launcher starts it next
    "trial",  # the launcher runs a new version that has not yet proven healthy
    "committed",  # the new version proved healthy and is now the current one
    "rolled_back",  # the new version failed here (self-check or trial), marked bad: the
    # previous one runs again
    "refused",  # the release was refused (not signed, tampered, below the floor, bad)
    "failed",  # no update this time (metadata unreachable or expired, disk full, ...)
]


class UpdateReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The agent's update as data the collector shows (never log lines to grep)."""

    state: UpdateState = ""
    version: Annotated[str, msgspec.Meta(max_length=27)] = ""
    """The version the state is about (the target of an update, or the one rolled back)."""
    previous: Annotated[str, msgspec.Meta(max_length=27)] = ""
    """The version that ran before (rolled back to, after a rollback)."""
    reason: Text = ""
    """Why: a refusal's, a failure's or a rollback's cause, in a few words."""
    ts: Time = 0.0
    """When the state was reached."""
    launcher: Annotated[str, msgspec.Meta(max_length=27)] = ""
    """The launcher's own version (it updates in a slower ring)."""


class ReleaseOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which agent version the collector wants one agent to run (``AgentConfig.release``).

    It grants nothing: the agent installs only a version the current signed TUF targets
    list, never one below its stored floor, never one it marked bad."""

    version: ReleaseVersion
    rollout: Ident = ""
    """The rollout that asks for it (its id), for reports."""
    ring: Annotated[str, msgspec.Meta(max_length=64)] = ""
    paused: bool = False
    """The rollout is paused: start no new download (a staged version still runs)."""
    spread_s: Annotated[float, msgspec.Meta(ge=0.0, le=7 * 86400.0)] = 0.0
    """Start within this many seconds of receiving the order, at a point fixed by the
    agent's id: 5,000 PCs never ask at once."""


class Status(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The retained ``status`` message: birth (online), Last Will and clean stop (offline)."""

    v: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    state: Literal["online", "offline"]
    agent: Ident
    province: Ident
    commune: Ident
    ts: Time = 0.0
    """When the agent connected or stopped; 0 in a Last Will (time unknown in advance)."""
    version: Text = ""
    checks: Annotated[list[Text], msgspec.Meta(max_length=MAX_CHECKS)] = []
    reason: Text = ""
    """Why the agent went offline: "stopped", or "connection lost" in the Last Will."""
    interval: Annotated[float, msgspec.Meta(ge=0.0, le=7 * 86400.0)] = 0.0
    """The agent's reporting interval in seconds (0: not said); a collector marks an
    agent offline after a few intervals of silence."""
    config_version: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0
    """The version of the collector's AgentConfig the agent runs (0: none, local only)."""
    config_hash: Annotated[str, msgspec.Meta(pattern=whole(r"(?:[0-9a-f]{64})?"))] = ""
    update: UpdateReport | None = None
    """Where the agent's self-update stands (None: not said, an agent before 0.3)."""


#: A config signing key's public half: 32 bytes (Ed25519), in base64 (as WireGuard's keys).
PUBLIC_KEY: Final = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
PublicKey = Annotated[str, msgspec.Meta(pattern=whole(PUBLIC_KEY))]
KeyId = Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]{16}"))]

#: An AgentConfig is at most this large; its checks at most this many per kind.
MAX_CONFIG_BYTES: Final = 256 * 1024
MAX_CONFIG_CHECKS: Final = 64


class AgentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The checks the collector wants one agent to run, retained on its ``config`` topic.

    ``checks`` is the ``[checks]`` table of an agent config, as plain data: the agent
    decodes it with the same strict decoder as its local file and keeps running its
    previous config if it does not pass. ``hash`` (SHA-256 of ``config_digest``'s
    input) names the content; ``version`` goes up by one whenever the content changes.
    """

    v: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    agent: Ident
    province: Ident
    commune: Ident
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    hash: Annotated[str, msgspec.Meta(pattern=whole(r"[0-9a-f]{64}"))]
    profile: Text = ""
    """The profile it was made from, for people reading it."""
    interval: Annotated[float, msgspec.Meta(ge=1.0, le=86400.0)] | None = None
    """Seconds between the agent's own reports and of checks without an interval."""
    checks: Annotated[
        dict[Key, Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_CONFIG_CHECKS)]],
        msgspec.Meta(max_length=16),
    ] = {}
    published: Time = 0.0
    next_key: Annotated[str, msgspec.Meta(pattern=whole(f"(?:{PUBLIC_KEY})?"))] = ""
    """During a rotation of the collector's signing key: the public half of the key that
    signs next. Announced inside a config the current key signed, so only the current
    key can introduce its successor."""
    release: ReleaseOrder | None = None
    """The agent version to run (None: stay on the one running)."""


#: Signed configs begin with this before the AgentConfig's bytes: a signature the key
#: made for anything else (another message, another version of this one) never
#: verifies as a config.
CONFIG_SIGNATURE_CONTEXT: Final = b"commune-monitor agent-config v1\n"
#: A SignedConfig is at most this large: its config in base64, the rest.
MAX_SIGNED_CONFIG_BYTES: Final = MAX_CONFIG_BYTES * 4 // 3 + 1024


class SignedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the collector publishes on an agent's ``config`` topic: the exact bytes of an
    AgentConfig (JSON) and the Ed25519 signature of ``CONFIG_SIGNATURE_CONTEXT`` followed
    by them. The agent verifies those very bytes, then decodes them: nothing is
    re-encoded on either side, so there is no canonical form to get wrong."""

    v: Annotated[int, msgspec.Meta(ge=0, le=2**31)]
    config: Annotated[bytes, msgspec.Meta(max_length=MAX_CONFIG_BYTES)]
    """The AgentConfig's JSON bytes (base64 in the JSON)."""
    key: KeyId
    """The id of the key that signed (``config_key_id`` of its public half)."""
    sig: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
    """The Ed25519 signature (base64 in the JSON)."""


def config_key_id(public: bytes) -> str:
    """A signing key's id: the first 8 bytes of the SHA-256 of its raw public half, in hex.
    It picks the key to verify with; the signature itself proves who signed."""
    return hashlib.sha256(public).hexdigest()[:16]


def signed_message(config: bytes) -> bytes:
    """The exact bytes a config signature covers."""
    return CONFIG_SIGNATURE_CONTEXT + config


#: A receipt's most ranges: the store keeps 16 per agent (collector/state/seqranges.py).
MAX_RECEIPT_RANGES: Final = 64
MAX_RECEIPT_BYTES: Final = 4096


_Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
_SeqRange = Annotated[list[_Seq], msgspec.Meta(min_length=2, max_length=2)]


class Receipt(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the collector has done with an agent's envelopes: the seqs it committed or
    refused for good, as ascending, disjoint [first, last] ranges (both included).

    Sent on the agent's receipt topic, which only the config publisher may write and only
    the agent may read. The broker's PUBACK says it holds an envelope; a broker killed
    before it saved its queues loses what it held. So an agent keeps what the broker
    acknowledged until a receipt covers it, and sends again what a receipt shows passed
    over: a seq below the receipt's last one and in none of its ranges."""

    v: int
    seqs: Annotated[list[_SeqRange], msgspec.Meta(max_length=MAX_RECEIPT_RANGES)]

    def __post_init__(self) -> None:
        last = -1
        for first, final in self.seqs:
            if first <= last or final < first:
                raise ValueError("seqs must be ascending, disjoint [first, last] ranges")
            last = final


class WireError(ValueError):
    """A payload or topic that breaks the contract; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TopicIdentity(msgspec.Struct, frozen=True):
    province: str
    commune: str
    agent: str
    kind: TopicKind


def topic(root: str, province: str, commune: str, agent: str, kind: TopicKind) -> str:
    return f"{root}/{province}/{commune}/{agent}/{kind}"


_TOPIC_KINDS: Final[dict[str, TopicKind]] = {
    "status": "status", "data": "data", "config": "config", "receipt": "receipt"
}  # fmt: skip


def parse_topic(root: str, name: str) -> TopicIdentity:
    """Split ``<root>/<province>/<commune>/<agent>/<kind>``, refusing anything else."""
    prefix = root + "/"
    if not name.startswith(prefix):
        raise WireError("bad_topic", f"topic {name!r} is not under {root!r}")
    parts = name[len(prefix) :].split("/")
    if len(parts) != 4 or parts[3] not in _TOPIC_KINDS:
        raise WireError("bad_topic", f"topic {name!r} is not <province>/<commune>/<agent>/<kind>")
    province, commune, agent, kind = parts
    return TopicIdentity(province, commune, agent, _TOPIC_KINDS[kind])


_envelope_decoder = msgspec.json.Decoder(Envelope)
_status_decoder = msgspec.json.Decoder(Status)
_config_decoder = msgspec.json.Decoder(AgentConfig)
_signed_decoder = msgspec.json.Decoder(SignedConfig)
_receipt_decoder = msgspec.json.Decoder(Receipt)


class _Signature(msgspec.Struct):
    sig: Any = None


_signature_only = msgspec.json.Decoder(_Signature)
_encoder = msgspec.json.Encoder()
_canonical = msgspec.json.Encoder(order="sorted")


def encode(message: Envelope | Status | AgentConfig | SignedConfig | Receipt) -> bytes:
    return _encoder.encode(message)


def config_digest(
    interval: float | None,
    checks: dict[str, list[dict[str, Any]]],
    release: ReleaseOrder | None = None,
) -> str:
    """The hash of an AgentConfig's content: its interval and checks, keys sorted, and its
    release order when it has one (a config without one hashes as before orders existed;
    a new order is new content, so it is sent again)."""
    content: dict[str, Any] = {"interval": interval, "checks": checks}
    if release is not None:
        content["release"] = msgspec.to_builtins(release)
    return hashlib.sha256(_canonical.encode(content)).hexdigest()


_Message = TypeVar("_Message")


def _decode(decoder: msgspec.json.Decoder[_Message], payload: bytes, limit: int) -> _Message:
    """One payload by one decoder, every failure a WireError by reason."""
    if len(payload) > limit:
        raise WireError("too_large", f"{len(payload)} bytes > {limit}")
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError("invalid", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise WireError("not_json", str(exc)) from None
    except RecursionError:  # msgspec's answer to "[[[[...": thousands of levels deep
        raise WireError("not_json", "nested too deeply") from None


def decode_config(payload: bytes, expected: TopicIdentity | None = None) -> AgentConfig:
    """Validate a config payload's form (its checks are the agent config's to judge)."""
    config = _decode(_config_decoder, payload, MAX_CONFIG_BYTES)
    if config.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={config.v}, this side speaks {SCHEMA_VERSION}")
    if expected is not None:
        _check_identity(expected, config.province, config.commune, config.agent)
    if config_digest(config.interval, config.checks, config.release) != config.hash:
        raise WireError("bad_hash", "the hash does not match the content")
    return config


def decode_signed_config(payload: bytes) -> SignedConfig:
    """A config topic's payload as a SignedConfig (its signature not yet verified: that
    takes the keys the agent trusts). ``unsigned`` names a bare AgentConfig."""
    if len(payload) <= MAX_SIGNED_CONFIG_BYTES:
        try:
            unsigned = _signature_only.decode(payload).sig is None
        except (msgspec.DecodeError, RecursionError):  # incl. ValidationError: said below
            unsigned = False
        if unsigned:
            raise WireError("unsigned", "the config carries no signature")
    signed = _decode(_signed_decoder, payload, MAX_SIGNED_CONFIG_BYTES)
    if signed.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={signed.v}, this side speaks {SCHEMA_VERSION}")
    return signed


def decode_envelope(payload: bytes, expected: TopicIdentity | None = None) -> Envelope:
    """Validate a data payload; ``expected`` is the identity read from its topic."""
    envelope = _decode(_envelope_decoder, payload, MAX_ENVELOPE_BYTES)
    if envelope.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={envelope.v}, this side speaks {SCHEMA_VERSION}")
    if expected is not None:
        _check_identity(expected, envelope.province, envelope.commune, envelope.agent)
    return envelope


def decode_receipt(payload: bytes) -> Receipt:
    receipt = _decode(_receipt_decoder, payload, MAX_RECEIPT_BYTES)
    if receipt.v != SCHEMA_VERSION:
        raise WireError("schema_version", f"v={receipt.v}, this side speaks {SCHEMA_VERSION}")
    return receipt


def decode_status(payload: bytes, expected: TopicIdentity | None = None) -> Status:
    status = _decode(_status_decoder, payload, MAX_ENVELOPE_BYTES)
    if expected is not None:
        _check_identity(expected, status.province, status.commune, status.agent)
    return status


def _check_identity(expected: TopicIdentity, province: str, commune: str, agent: str) -> None:
    claimed = (province, commune, agent)
    if claimed != (expected.province, expected.commune, expected.agent):
        raise WireError(
            "identity_mismatch",
            f"payload claims {'/'.join(claimed)} on the topic of "
            f"{expected.province}/{expected.commune}/{expected.agent}",
        )


def reserved_names(sample: Sample) -> bool:
    """Whether a sample sets a tag or field the collector writes itself (it would
    speak for another place, or fake an outcome)."""
    return not RESERVED_TAGS.isdisjoint(sample.tags) or not RESERVED_FIELDS.isdisjoint(
        sample.fields
    )


def clean_fields(fields: dict[str, FieldValue | None]) -> dict[str, FieldValue]:
    """What the contract carries: unknown (None) and non-finite values dropped, integers
    beyond ±2^53 (a 64-bit counter) as floats, text clipped to the contract's bound."""
    return {
        key: _carried(value)
        for key, value in fields.items()
        if value is not None and not (isinstance(value, float) and not math.isfinite(value))
    }


def _carried(value: FieldValue) -> FieldValue:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        return float(value)
    return value


#: Room left for the envelope around its samples (identity, seq, ts).
_ENVELOPE_OVERHEAD = 1024


def split_samples(samples: list[Sample]) -> list[list[Sample]]:
    """Cut one check run into envelopes within MAX_SAMPLES and MAX_ENVELOPE_BYTES.

    A switch with a thousand interfaces must not produce an envelope the
    collector refuses; each part gets its own sequence number.
    """
    budget = MAX_ENVELOPE_BYTES - _ENVELOPE_OVERHEAD
    parts: list[list[Sample]] = []
    current: list[Sample] = []
    size = 0
    for sample in samples:
        sample_size = len(_encoder.encode(sample)) + 1
        if current and (len(current) >= MAX_SAMPLES or size + sample_size > budget):
            parts.append(current)
            current, size = [], 0
        current.append(sample)
        size += sample_size
    if current or not parts:
        parts.append(current)
    return parts


def json_schemas() -> dict[str, dict[str, object]]:
    """JSON Schema documents for the payloads, keyed by file name (the config topic
    carries a SignedConfig whose ``config`` bytes are an AgentConfig)."""
    return {
        "envelope.schema.json": _titled(msgspec.json.schema(Envelope), "Envelope"),
        "status.schema.json": _titled(msgspec.json.schema(Status), "Status"),
        "config.schema.json": _titled(msgspec.json.schema(AgentConfig), "AgentConfig"),
        "signed-config.schema.json": _titled(msgspec.json.schema(SignedConfig), "SignedConfig"),
        "receipt.schema.json": _titled(msgspec.json.schema(Receipt), "Receipt"),
    }


def _titled(schema: dict[str, object], name: str) -> dict[str, object]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"commune-monitor/{name.lower()}/v{SCHEMA_VERSION}",
        "title": f"commune-monitor {name} v{SCHEMA_VERSION}",
        **schema,
    }
