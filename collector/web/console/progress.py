"""The rollout page's table: the communes furthest from done first, and the province's
totals under it.

Furthest from done: most PCs not reporting (of those expected, or of those enrolled
where the inventory says nothing), then the communes not begun (no PC reporting) before
those done, then most PCs not on the current config.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.rollout.overview import CommuneRollout
from collector.web.console.overview import folded


def missing(commune: CommuneRollout) -> int:
    """PCs expected (or enrolled) that do not report."""
    wanted = commune.expected_pcs if commune.expected_pcs is not None else commune.enrolled
    return max(0, wanted - commune.reporting)


def done(commune: CommuneRollout) -> bool:
    """Every PC expected (or enrolled) reports, and at least one does."""
    return commune.reporting > 0 and not missing(commune)


def worst_first(communes: list[CommuneRollout]) -> list[CommuneRollout]:
    return sorted(
        communes,
        key=lambda c: (-missing(c), done(c), -(c.enrolled - c.configs_current), folded(c.name)),
    )


@dataclass(frozen=True)
class Totals:
    communes: int
    expected_pcs: int
    """Over the communes whose expected count the inventory gives."""
    expected_known: int
    """How many communes give it."""
    enrolled: int
    reporting: int
    configs_current: int
    missing: int
    communes_done: int
    """Communes with every PC expected (or enrolled) reporting, at least one."""


def totals(communes: list[CommuneRollout]) -> Totals:
    known = [c.expected_pcs for c in communes if c.expected_pcs is not None]
    return Totals(
        communes=len(communes),
        expected_pcs=sum(known),
        expected_known=len(known),
        enrolled=sum(c.enrolled for c in communes),
        reporting=sum(c.reporting for c in communes),
        configs_current=sum(c.configs_current for c in communes),
        missing=sum(missing(c) for c in communes),
        communes_done=sum(1 for c in communes if done(c)),
    )
