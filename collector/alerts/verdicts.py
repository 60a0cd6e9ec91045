"""The sample rules of one kind of check judged once per distinct reading of a sample.

Every sample of every batch passes through its check's rules, and nearly all find
every rule false: a line's probe up with no loss, anti-malware on. What the rules
read of a sample (the fields their conditions name, the tags they filter on, its
outcome) takes few distinct values across the country's samples, so the verdicts
are kept by that reading: a sample read as one before is judged by a dictionary
look-up, not by each rule's test.

Only rules that read the sample alone are judged so (``Verdicts.takes``): a rule with
a scope depends on the place, and one that names what the collector knows of the
subject (a port seen up) reads the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agent.wire import Sample
from collector.alerts.rules import Rule

_ABSENT: Any = object()
#: What a true or false value is remembered as: True and 1 are equal keys to a
#: dictionary, but a rule compares them apart (a flag against a number).
_TRUE, _FALSE = object(), object()

Verdict = tuple[Rule, bool]
Judged = tuple[tuple[Verdict, ...], tuple[Verdict, ...]]
"""Every rule's verdict (None left out), and those that hold."""


class Verdicts:
    """The rules of one (check, item) that read the sample alone: their verdicts on a
    sample, None left out, in the rules' order."""

    def __init__(self, rules: Sequence[Rule], limit: int = 20_000) -> None:
        assert all(self.takes(rule) for rule in rules)
        self.rules = tuple(rules)
        self._tests: tuple[tuple[Rule, Callable[[Sample], bool | None]], ...] = tuple(
            (rule, rule.sample_test()) for rule in rules
        )
        values: dict[str, None] = {}
        tags: dict[str, None] = {}
        outcome = False
        for rule in rules:
            tags.update(dict.fromkeys(rule.tags))
            for condition in rule.when:
                if condition.field in ("outcome", "success"):
                    outcome = True
                else:
                    values[condition.field] = None
        self._values = tuple(values)
        """Names read as the rules read them: the field, else the tag of that name."""
        self._tags = tuple(tags)
        """Tags the rules filter on."""
        self._outcome = outcome
        self._limit = limit
        self._known: dict[tuple[Any, ...], Judged] = {}

    @staticmethod
    def takes(rule: Rule) -> bool:
        """Whether a rule's verdict on a sample depends on the sample alone."""
        return not (rule.provinces or rule.communes or rule.names_subject_fields())

    def __call__(self, sample: Sample) -> Judged:
        fields, tags = sample.fields, sample.tags
        read: list[Any] = []
        for name in self._values:
            value = fields.get(name, _ABSENT)
            if value is _ABSENT:
                value = tags.get(name)
            elif value.__class__ is bool:
                value = _TRUE if value else _FALSE
            read.append(value)
        for name in self._tags:
            read.append(tags.get(name))
        if self._outcome:
            read.append(sample.outcome)
        key = tuple(read)
        found = self._known.get(key)
        if found is None:
            found = self.judge(sample)
            if len(self._known) >= self._limit:  # a bound: forgotten all at once
                self._known.clear()
            self._known[key] = found
        return found

    def judge(self, sample: Sample) -> Judged:
        """Each rule's test of the sample, nothing remembered."""
        found = []
        for rule, test in self._tests:
            holds = test(sample)
            if holds is not None:
                found.append((rule, holds))
        return tuple(found), tuple(verdict for verdict in found if verdict[1])
