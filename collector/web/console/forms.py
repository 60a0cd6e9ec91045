"""What the console's forms accept as people type it, and their refusals in the page's
language.

A technician knows a commune by its name ("Xã La Ngà"), its official code or its slug:
each is taken. A refusal names the field and says what it wants, in the console's
words: the store's own messages are for the API and the log, in English.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.state.inventory import Commune
from collector.web.console.overview import folded

#: The plan form's fields a refusal can point at; any other refusal is the form's.
PLAN_FIELDS = ("commune", "device", "starts", "ends", "every", "until", "reason")


@dataclass(frozen=True)
class Refusal(Exception):
    """A form refused: which field (or "" for the whole form) and the words' key."""

    field: str
    key: str


def commune_slug(communes: Iterable[Commune] | None, typed: str) -> str:
    """The slug of the commune ``typed`` names (slug, official code or name, with or
    without tone marks); "" for none typed. Refusal when it names no commune. Without
    an inventory (``None``), what was typed, for the store to judge as a slug."""
    wanted = typed.strip()
    if not wanted or communes is None:
        return wanted
    folded_wanted = folded(wanted)
    for commune in communes:
        if wanted in (commune.slug, commune.code) or folded(commune.name) == folded_wanted:
            return commune.slug
    raise Refusal("commune", "plan_error_commune")


def plan_refusal(message: str) -> Refusal:
    """The store's refusal of a window ("ends: the window ends before it starts") as the
    form's: its field, and that field's explanation."""
    field = message.split(":", 1)[0].strip()
    if field in ("starts", "ends", "until"):
        return Refusal(field, "plan_error_times")
    if field in PLAN_FIELDS:
        return Refusal(field, f"plan_error_{field}")
    return Refusal("", "plan_error")


#: The rollout start form's fields a refusal can point at.
ROLLOUT_FIELDS = ("version", "rings", "gate", "lab", "spread")


def rollout_refusal(field: str, status: int, form: str) -> Refusal:
    """A rollout's refusal (``RolloutError``'s field and status) as ``form``'s: "start"
    refused for a rollout already under way, a change for a rollout whose state changed
    meanwhile."""
    if field in ROLLOUT_FIELDS:
        return Refusal(field, f"rollout_error_{field}")
    if status == 409:
        return Refusal("", "rollout_error_active" if form == "start" else "rollout_error_state")
    return Refusal("", "rollout_error")
