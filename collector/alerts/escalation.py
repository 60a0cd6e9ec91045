"""Escalation: a critical alert no one acknowledges goes on to the next route.

Steps in order (``[[alerts.escalation]]``): an alert of the step's severities still
firing, unacknowledged, not held back, silenced or in maintenance, ``after`` seconds
after it fired is sent to the step's route too (the technician on duty first, the
head of the IT unit next), once per step; each step taken is recorded on the alert
(``alert_steps``), and acknowledging stops what is left. The engine queues the
step's event (``escalation:<n>``) in its tick; the notifier sends it to that route
only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Escalation:
    """Step ``n`` (from 1): an alert of these severities still not acknowledged
    ``after`` seconds after it fired goes to ``route`` too."""

    after: float
    route: str
    severities: tuple[str, ...] = ("critical",)


def escalation_event(step: int) -> str:
    return f"escalation:{step}"


def escalation_step(event: str) -> int | None:
    """The step an event is for, or None for firing, resolved and repeat."""
    if not event.startswith("escalation:"):
        return None
    try:
        return int(event.split(":", 1)[1])
    except ValueError:
        return None
