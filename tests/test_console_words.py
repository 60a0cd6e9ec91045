"""One language per screen: every word a console page shows comes from the translations,
in both languages. Read from the templates themselves, so a raw string added to one
fails here; and each key a template asks for has its words in Vietnamese and English.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from collector.common import words
from tests.servers import REPO

TEMPLATES = sorted((REPO / "collector" / "web" / "console" / "templates").glob("*.html"))
#: What a page may show outside the translations: units written the same in
#: both languages, and the language switch's own two names (each in its language).
NOT_WORDS = {"ms", "s", "h", "d", "English", "Tiếng Việt"}
_JINJA = re.compile(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", re.S)
_SHOWN_ATTRIBUTES = re.compile(r'\b(?:placeholder|title|aria-label|alt|value)="([^"]*)"')
_LETTERS = re.compile(r"[^\W\d_]+")


def raw_words(template: str) -> list[str]:
    """The words a template writes itself, outside any expression: in its text and in
    the attributes a reader sees."""
    source = re.sub(r"<style>.*?</style>|<script.*?</script>", "", template, flags=re.S)
    source = _JINJA.sub(" ", source)
    shown = list(_SHOWN_ATTRIBUTES.findall(source))
    shown += re.sub(r"<[^>]*>", " ", source).split()
    return [w for text in shown for w in _LETTERS.findall(text) if w not in NOT_WORDS]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_a_template_writes_no_word_of_its_own(template: Path) -> None:
    found = raw_words(template.read_text(encoding="utf-8"))
    assert found == [], f"{template.name}: words outside the translations: {found}"


def test_a_raw_word_would_be_caught() -> None:
    assert raw_words('<td>{{ t("up") }} (admin down)</td>') == ["admin", "down"]
    assert raw_words('<input placeholder="la-nga" title="{{ t(\'x\') }}">') == ["la", "nga"]
    assert raw_words('<b>{{ t("up") }}</b> · 24 h · {{ n }} ms') == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_key_a_template_asks_for_has_both_languages(template: Path) -> None:
    keys = re.findall(r"""\bt\(\s*["']([\w.]+)["']\s*\)""", template.read_text(encoding="utf-8"))
    for language in ("vi", "en"):
        missing = [k for k in keys if k not in words.CONSOLE[language]]
        assert missing == [], f"{template.name}: no {language} words for {missing}"


def test_each_word_has_both_languages() -> None:
    assert set(words.CONSOLE["vi"]) == set(words.CONSOLE["en"])
    assert set(words.KINDS["vi"]) == set(words.KINDS["en"])
    for language in ("vi", "en"):
        assert all(words.CONSOLE[language].values()), f"an empty {language} word"


def test_every_shipped_rule_is_named_in_both_languages() -> None:
    shipped = tomllib.loads((REPO / "collector" / "alerts" / "defaults.toml").read_text())
    for rule in shipped["rules"]:
        for language in ("vi", "en"):
            assert rule["name"] in words.KINDS[language], (language, rule["name"])  # type: ignore[index]
