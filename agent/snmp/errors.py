"""The one exception SNMP polling raises: how the device failed, in words."""

from __future__ import annotations

from agent.wire import Outcome


class SnmpError(Exception):
    """The device did not answer usefully; ``outcome`` says how (timeout, refused, ...)."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome
