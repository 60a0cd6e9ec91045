"""The rollout audit's details in the page's language.

The enrollment records write a detail for the log ("3 uses, profile poller",
"duplicate: agent pc-01 exists"); the console reads its parts and says them in words.
"""

from __future__ import annotations

import re

from collector.common import words

_TOKEN = re.compile(r"(\d+) uses, profile (.+)")


def event_detail(language: str, event: str, detail: str) -> str:
    """An enrollment event's detail as the console shows it."""
    said = words.CONSOLE.get(language, words.CONSOLE["vi"])
    if event == "token_created" and (parts := _TOKEN.fullmatch(detail)):
        key = "detail_token_one" if parts[1] == "1" else "detail_token"
        return said[key].format(uses=parts[1], profile=parts[2])
    if event in ("enrolled", "replaced") and detail:
        return said["detail_profile"].format(profile=detail)
    if event == "refused" and detail:
        code = detail.split(":", 1)[0]
        return said["detail_refused"].format(reason=words.word(language, "refused_", code))
    return detail
