"""Alert rules: structured TOML (field, comparison, threshold, for, severity, scope, labels).

Nothing of a rule is evaluated as code. A rule watches one of these:

- ``on = "sample"``: the samples of one kind of check (``check``), optionally
  a sub-series (``item``: disk, interface, product) and tags (``tags``:
  network = "tslcd"); one alert per agent, check name, item and target;
- ``on = "agent"``: an agent's state (online/offline, reason);
- ``on = "commune"``: a commune's agents together (how many, how many online);
- ``on = "system"``: a shared system of the province (``[collector] systems``) across the
  communes that probe it: one alert for the system, to its owner's route;
- ``on = "reach"``: one commune's reach of one shared system (its own line told apart);
- ``on = "collector"``: the collector's own broker sessions (ingest, configs, dynsec):
  their state and how often another client took them over; and the latest rollout of
  a release (its state, whether a breach of its gate paused it).

Conditions compare a known field with a value (``when``: all must hold, or any
with ``match = "any"``). The condition must hold for ``for`` before the alert
fires and be false for ``resolve_after`` before it resolves (flap damping).
Field and tag names, the values of closed text fields and tags are checked
against the wire contract's catalogue (``agent/catalogue.py``): a typo is a
config error, not a rule that never fires. A condition may name a tag (``os``):
it compares the tag's value.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from agent.catalogue import BOOL, CATALOGUE, DERIVED, NUMBER, TEXT
from agent.configtypes import ConfigError, Duration, convert_strict, read_toml
from agent.wire import Ident, Sample, whole

Op = Literal["==", "!=", ">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
Value = bool | int | float | str
_ABSENT: Any = object()
RuleName = Annotated[str, msgspec.Meta(pattern=whole(r"[a-z][a-z0-9_]{0,63}"))]

#: What a sample rule can name, per (check, item): field or tag -> type, from the
#: wire contract's catalogue. A tag is text: ``field = "os"`` compares the sample's
#: ``os`` tag, like ``tags = {os = "windows"}`` but with every operator.
SAMPLE_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    key: {
        **dict.fromkeys(item.tags, TEXT),
        **{name: f.type for name, f in item.fields.items()},
    }
    for key, item in CATALOGUE.items()
}
#: Every sample also has these, whatever its check.
COMMON_FIELDS = {name: f.type for name, f in DERIVED.items()}
#: What the collector knows of a sample's subject beyond the sample, per (check, item).
#: A port: ``seen_up``, it was seen operating since monitoring began (a port never
#: used is not news when it is down); ``uplink``, the inventory marks it uplink or
#: important (``uplinks``), down being critical even if never seen up.
SUBJECT_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("snmp", "interface"): {"seen_up": BOOL, "uplink": BOOL},
}
AGENT_FIELDS = {
    "state": TEXT,
    "reason": TEXT,
    # Samples the collector refused in the last 15 minutes: over the agent's bounds.
    "samples_refused": NUMBER,
    # Where its self-update stands (its last birth's report): idle, waiting, paused,
    # staged, trial, committed, rolled_back, refused, failed; "" : none reported.
    "update_state": TEXT,
    # Reports in a row that said refused or failed for the same version.
    "update_failures": NUMBER,
}
COLLECTOR_FIELDS = {
    "session": TEXT,  # ingest, configs, dynsec
    "state": TEXT,  # ok, taken_over, refused, away
    # Times another client took the session over within the last quarter of an hour.
    "takeovers": NUMBER,
    # The release repository's roles (one subject each: root, targets, snapshot, timestamp).
    "role": TEXT,
    "expires_in_days": NUMBER,
    # Root within 30 days of expiry, targets within 14, an online role not re-signed.
    "expiring": BOOL,
    # The latest rollout of a release: running, paused, halted, done; and whether its
    # gate paused it (a breach), not an operator.
    "rollout_state": TEXT,
    "rollout_breach": BOOL,
    # The certificates the collector watches (collector/alerts/certificates.py: api,
    # broker, broker-certificates, broker-ca, agents-ca, client-ca, pc-certificates)
    # and the days until the first of each expires (below 0: expired).
    "certificate": TEXT,
    "certificate_days": NUMBER,
}
#: A shared system as a whole, across the communes that use it
#: (collector/state/systemhealth.py).
SYSTEM_FIELDS = {
    "system": TEXT,  # the catalogue's id ("website": the communes' own sites together)
    "kind": TEXT,
    "network": TEXT,
    # ok; down: most communes with their line up cannot use it; slow: slow from most;
    # local: some communes cannot, or find it slow, while most can; no_data.
    "verdict": TEXT,
    "communes": NUMBER,  # that use it
    "probing": NUMBER,  # whose prober runs and has answered
    "unreachable": NUMBER,  # that cannot use it with their line up
    "line_down": NUMBER,  # that cannot because their own line is down
    "slow": NUMBER,
    "unreachable_percent": NUMBER,  # of the communes probing with their line up
    "median_ms": NUMBER,
    "cert_days": NUMBER,  # the fewest days left on its certificate any commune saw
    "cert_expiring": BOOL,  # fewer than the catalogue's cert_min_days
}
#: One commune's reach of one shared system.
REACH_FIELDS = {
    "system": TEXT,
    "kind": TEXT,
    "network": TEXT,
    # ok, slow, unreachable, bad_response, line_down, silent, not_probed
    "state": TEXT,
    "fails": BOOL,  # unreachable or a bad answer, the commune's line not down
    "line_up": BOOL,  # the commune's line of the system's network, by its running probes
    "widely": BOOL,  # the system fails most communes: its own problem, alerted as such
    "slow_widely": BOOL,
    "total_ms": NUMBER,
    "cert_days": NUMBER,  # days left on the certificate this commune's prober saw
    "cert_expiring": BOOL,  # fewer than its cert_min_days (a website's own)
}
COMMUNE_FIELDS = {
    "agents": NUMBER,
    "agents_online": NUMBER,
    "agents_offline": NUMBER,
    "agents_lost": NUMBER,  # offline without a goodbye: Last Will or silence
}


class Condition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    field: str
    op: Op
    value: Value


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: RuleName
    on: Literal["sample", "agent", "commune", "collector", "system", "reach"] = "sample"
    check: str = ""
    item: str = ""
    tags: dict[str, str] = {}
    when: Annotated[list[Condition], msgspec.Meta(min_length=1)]
    match: Literal["all", "any"] = "all"
    for_: Duration = msgspec.field(default=Duration(0), name="for")
    resolve_after: Duration = Duration(0)
    """The condition must be false this long before the alert resolves: a bouncing
    line stays one alert instead of paging at every bounce."""
    severity: Severity = "warning"
    repeat: Duration = Duration(0)
    """Notify again this often while firing and unacknowledged; 0: never."""
    summary: dict[Literal["vi", "en"], str] = {}
    """Message templates: {commune}, {agent}, {target}, {name}, {value}."""
    labels: dict[str, str] = {}
    provinces: list[Ident] = []
    communes: list[Ident] = []
    """Scope: only these (empty: all)."""
    inhibits: list[RuleName] = []
    """Rules whose alerts in the same commune are suppressed while this one fires."""
    enabled: bool = True

    def fields(self) -> dict[str, str]:
        if self.on == "agent":
            return AGENT_FIELDS
        if self.on == "commune":
            return COMMUNE_FIELDS
        if self.on == "collector":
            return COLLECTOR_FIELDS
        if self.on == "system":
            return SYSTEM_FIELDS
        if self.on == "reach":
            return REACH_FIELDS
        key = (self.check, self.item)
        return {**SAMPLE_FIELDS.get(key, {}), **SUBJECT_FIELDS.get(key, {}), **COMMON_FIELDS}

    def names_subject_fields(self) -> bool:
        """Whether a condition reads what the collector knows of the subject."""
        extra = SUBJECT_FIELDS.get((self.check, self.item), {})
        return any(c.field in extra for c in self.when)

    def in_scope(self, province: str, commune: str) -> bool:
        return (not self.provinces or province in self.provinces) and (
            not self.communes or commune in self.communes
        )

    def sample_test(self) -> Callable[[Sample], bool | None]:
        """``holds`` of a sample's values (its tags, its fields over them, ``outcome`` and
        ``success`` over both) made once into a function of the sample, read where they
        are, the rule's ``tags`` filter included (None for a sample without them): every
        sample of every batch passes through its check's rules, and building the merged
        dict, or reading the rule's conditions, ops and tags anew for each, cost the
        ingest more than the comparisons."""
        wanted = tuple(self.tags.items())
        names = tuple(condition.field for condition in self.when)
        tests = tuple(_comparison(condition) for condition in self.when)
        every = self.match == "all"
        if len(names) == 1 and names[0] not in ("outcome", "success"):
            name, test = names[0], tests[0]

            def one(sample: Sample) -> bool | None:
                if wanted:
                    tags = sample.tags
                    for tag, wanted_value in wanted:
                        if tags.get(tag) != wanted_value:
                            return None
                value: Any = sample.fields.get(name, _ABSENT)
                if value is _ABSENT:
                    value = sample.tags.get(name)
                return None if value is None else test(value)

            return one

        def many(sample: Sample) -> bool | None:
            tags = sample.tags
            for tag, wanted_value in wanted:
                if tags.get(tag) != wanted_value:
                    return None
            values = []
            for name in names:
                if name == "outcome":
                    value: Any = sample.outcome
                elif name == "success":
                    value = sample.outcome == "ok"
                else:
                    value = sample.fields.get(name, _ABSENT)
                    if value is _ABSENT:
                        value = tags.get(name)
                if value is None:
                    return None
                values.append(value)
            results = [test(value) for test, value in zip(tests, values, strict=True)]
            return all(results) if every else any(results)

        return many

    def holds(self, values: dict[str, Any]) -> bool | None:
        """Whether the condition holds for these values; None when a field is missing
        (the sample says nothing about it: no state change)."""
        results = []
        for condition in self.when:
            if condition.field not in values or values[condition.field] is None:
                return None
            results.append(_compare(values[condition.field], condition.op, condition.value))
        return all(results) if self.match == "all" else any(results)


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _comparison(condition: Condition) -> Callable[[Any], bool]:
    """``_compare`` against the condition's value, its op and value read once."""
    compare, expected = _OPERATORS[condition.op], condition.value
    if isinstance(expected, bool):
        return lambda actual: bool(compare(bool(actual), expected))
    truth = bool(expected)

    def test(actual: Any) -> bool:
        if actual.__class__ is bool:  # bool cannot be subclassed: isinstance's answer
            return bool(compare(actual, truth))
        try:
            return bool(compare(actual, expected))
        except TypeError:  # a device sent text where a number was expected
            return False

    return test


def _compare(actual: Any, op: Op, expected: Value) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        actual, expected = bool(actual), bool(expected)
    if op == "==":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    try:
        if op == ">":
            return bool(actual > expected)
        if op == ">=":
            return bool(actual >= expected)
        if op == "<":
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:  # a device sent text where a number was expected
        return False


class RuleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rules: list[Rule] = []


def _check_rule(rule: Rule, where: str) -> None:
    if rule.on == "sample":
        if not any(check == rule.check for check, _ in SAMPLE_FIELDS):
            known = sorted({c for c, _ in SAMPLE_FIELDS})
            raise ConfigError(f"{where}.check: expected one of {known}, got {rule.check!r}")
        if (rule.check, rule.item) not in SAMPLE_FIELDS:
            items = sorted(i for c, i in SAMPLE_FIELDS if c == rule.check)
            raise ConfigError(f"{where}.item: {rule.check} has items {items}, not {rule.item!r}")
    elif rule.check or rule.item or rule.tags:
        raise ConfigError(f"{where}: check, item and tags are for on = 'sample' rules")
    fields = rule.fields()
    for index, condition in enumerate(rule.when):
        at = f"{where}.when[{index}]"
        kind = fields.get(condition.field)
        if kind is None:
            raise ConfigError(
                f"{at}.field: {condition.field!r} is not a field of {rule.on} "
                f"{rule.check or ''} {rule.item or ''}; known: {sorted(fields)}".replace("  ", " ")
            )
        value = condition.value
        if kind == NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{at}.value: {condition.field} is a number, got {value!r}")
        if kind == BOOL and not isinstance(value, bool):
            raise ConfigError(f"{at}.value: {condition.field} is true or false, got {value!r}")
        if kind in (BOOL, TEXT) and condition.op not in ("==", "!="):
            raise ConfigError(f"{at}.op: {condition.field} can only be compared with == or !=")
        if kind == TEXT and not isinstance(value, str):
            raise ConfigError(f"{at}.value: {condition.field} is text, got {value!r}")
        closed = _closed_values(rule, condition.field)
        if closed and value not in closed:
            raise ConfigError(
                f"{at}.value: {condition.field} is one of {list(closed)}, not {value!r}"
            )
    if rule.on == "sample":
        _check_tags(rule, where)
    if rule.match == "all" and _contradicts(rule.when):
        raise ConfigError(f"{where}.when: the conditions can never hold together")
    for language, template in rule.summary.items():
        try:
            template.format(commune="", agent="", target="", name="", value="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{where}.summary.{language}: unknown placeholder {exc}; use "
                "{commune} {agent} {target} {name} {value}"
            ) from None


def _closed_values(rule: Rule, name: str) -> tuple[str, ...]:
    """The values a text field or tag takes, when the catalogue closes the set."""
    if rule.on != "sample":
        return ()
    item = CATALOGUE[(rule.check, rule.item)]
    declared = item.fields.get(name) or DERIVED.get(name)
    if declared is not None:
        return declared.values
    tag = item.tags.get(name)
    return tag.values if tag is not None else ()


def _check_tags(rule: Rule, where: str) -> None:
    """A tag filter on a tag these samples never carry, or on a value the tag never
    takes, would silently match nothing."""
    item = CATALOGUE[(rule.check, rule.item)]
    for name, value in rule.tags.items():
        tag = item.tags.get(name)
        if tag is None:
            known = sorted(item.tags)
            hint = f"; {name} is a field: use when" if name in item.fields else ""
            raise ConfigError(
                f"{where}.tags: {item.label} samples have no tag {name!r}; known: {known}{hint}"
            )
        if tag.values and value not in tag.values:
            raise ConfigError(f"{where}.tags.{name}: one of {list(tag.values)}, not {value!r}")


def _contradicts(conditions: list[Condition]) -> bool:
    """Impossible rules: the same field equal to two values, or an empty numeric range."""
    by_field: dict[str, list[Condition]] = {}
    for condition in conditions:
        by_field.setdefault(condition.field, []).append(condition)
    for same in by_field.values():
        equal = {repr(c.value) for c in same if c.op == "=="}
        if len(equal) > 1:
            return True
        low = max((float(c.value) for c in same if c.op in (">", ">=")), default=None)
        high = min((float(c.value) for c in same if c.op in ("<", "<=")), default=None)
        if low is not None and high is not None:
            strict = any(c.op in (">", "<") for c in same)
            if low > high or (low == high and strict):
                return True
    return False


def parse_rules(data: dict[str, Any], source: str) -> list[Rule]:
    rules = convert_strict(data, RuleFile, source).rules
    names: set[str] = set()
    for index, rule in enumerate(rules):
        where = f"{source}: rules[{index}]"
        if rule.name in names:
            raise ConfigError(f"{where}.name: {rule.name!r} is defined twice")
        names.add(rule.name)
        _check_rule(rule, where)
    for index, rule in enumerate(rules):
        unknown = [n for n in rule.inhibits if n not in names]
        if unknown:
            raise ConfigError(f"{source}: rules[{index}].inhibits: no rule named {unknown[0]!r}")
    return rules


def load_rules(path: str | Path) -> list[Rule]:
    return parse_rules(read_toml(path), str(path))


DEFAULTS = Path(__file__).with_name("defaults.toml")


def default_rules() -> list[Rule]:
    return load_rules(DEFAULTS)


def merge(defaults: list[Rule], custom: list[Rule]) -> list[Rule]:
    """The defaults with the custom rules on top: a custom rule of the same name replaces one."""
    names = {r.name for r in custom}
    return [r for r in defaults if r.name not in names] + custom
