"""What every Polycom reader produces, and the "ready for a meeting" rule."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EndpointState:
    """What a Polycom endpoint told about itself, whichever way it was read."""

    reachable: bool
    family: str = ""
    """group_series (POLYCOM-ENDPOINT-MIB), hdx (enterprise 2684) or videoos (REST)."""
    model: str = ""
    software_version: str = ""
    serial: str = ""
    uptime_s: float | None = None
    h323_registered: bool | None = None
    sip_registered: bool | None = None
    camera_ok: bool | None = None
    microphone_ok: bool | None = None
    active_calls: int | None = None
    active_conferences: int | None = None
    call_quality: dict[str, float] = field(default_factory=dict)
    """Worst value over the active calls: loss %, latency and jitter in ms."""
    notes: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool | None:
        flags = (self.h323_registered, self.sip_registered)
        if any(flag is True for flag in flags):
            return True
        if all(flag is None for flag in flags):
            return None
        return False

    @property
    def in_call(self) -> bool | None:
        counts = [c for c in (self.active_calls, self.active_conferences) if c is not None]
        return any(c > 0 for c in counts) if counts else None

    @property
    def ready(self) -> bool | None:
        """reachable ∧ registered ∧ camera and microphone not failed; None when unknowable."""
        if not self.reachable:
            return False
        if self.registered is False or self.camera_ok is False or self.microphone_ok is False:
            return False
        if self.registered is None:
            return None
        return True
