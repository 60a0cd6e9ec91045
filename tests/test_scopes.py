"""Every route of the API and the console, against a real collector of two provinces,
with tokens scoped to another province, to another commune of the same province and
to the thing's own place (tests/scoped.py).

``DECISIONS`` is the one table of what each route decides by scope: a route the app
serves without an entry fails ``test_every_route_has_a_scope_decision``. Each entry is
exercised for real: outside its scope a thing answers 404 in the words of one that does
not exist (and is left as it was), a list holds exactly the places in scope, inside the
scope the route serves (and an action is audited).
"""

from __future__ import annotations

import html
import io
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.common.localtime import local
from collector.rollout import registry
from collector.web.scope import Scope
from tests.scoped import (
    NAMES,
    PLACES,
    PROVINCE_OF,
    SCOPES,
    Answer,
    Site,
    profiles_text,
    scoped_site,
)

#: The thing's own place is dong-nai/la-nga; these tokens hold another province, and
#: another commune of the same province.
OUTSIDE = ("lam-dong", "tan-phu")
OWN = "la-nga"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with scoped_site(tmp_path_factory.mktemp("scopes")) as served:
        yield served


# Helpers: what "outside", "inside" and "filtered" mean, checked the same way everywhere.


def same_words(hidden: Answer, missing: Answer, shown: str, absent: str) -> None:
    """The answer for a thing outside the scope is the answer for one that does not
    exist: 404, the same message but for the name or id asked for."""
    assert hidden.status == missing.status == 404, (hidden, missing)
    assert hidden.json["detail"].replace(shown, "?") == missing.json["detail"].replace(absent, "?")


def hidden_everywhere_but_own(
    site: Site, path: str, missing: str, shown: str, absent: str, method: str = "GET", **kw: Any
) -> Answer:
    """404 (as ``missing``) for the tokens outside; served for the thing's own."""
    nothing = site.client.call(method, missing, "all", **kw)
    for who in OUTSIDE:
        same_words(site.client.call(method, path, who, **kw), nothing, shown, absent)
    own = site.client.call(method, path, OWN, **kw)
    assert 200 <= own.status < 300, own
    return own


def places_listed(
    site: Site, path: str, place: Callable[[Any], tuple[str, str]], items: Callable[[Any], Any]
) -> None:
    """Each token's list holds exactly the communes it holds of what the all-seeing
    token's list holds (which spans both provinces)."""
    everything = {place(i) for i in items(site.client.get(path).json)}
    assert set(PLACES) <= {p for p, _ in everything}, everything
    for who in (*OUTSIDE, OWN, "dong-nai"):
        got = {place(i) for i in items(site.client.get(path, who).json)}
        held = {(p, c) for p, c in everything if who in (p, c)}
        assert got == held, (who, got)


def audited(site: Site, action: str, actor: str, object_: str = "") -> list[dict[str, Any]]:
    rows = site.client.get(f"/api/v1/audit?action={action}&actor={actor}").json
    return [r for r in rows if not object_ or r["object"] == object_]


def alert_id(site: Site, commune: str = OWN) -> int:
    return int(site.alert_of(commune)["id"])


def month() -> str:
    return local(time.time()).strftime("%Y-%m")


def silence_of(site: Site, commune: str, comment: str) -> int:
    made = site.client.call("POST", "/api/v1/silences", "all", body={
        "province": PROVINCE_OF[commune], "commune": commune, "duration_s": 3600,
        "comment": comment,
    })  # fmt: skip
    assert made.status == 201, made
    return int(made.json["id"])


def window_of(site: Site, commune: str, reason: str) -> int:
    now = time.time()
    made = site.client.call("POST", "/api/v1/maintenance", "all", body={
        "province": PROVINCE_OF[commune], "commune": commune, "starts": now + 86400,
        "ends": now + 90000, "reason": reason,
    })  # fmt: skip
    assert made.status == 201, made
    return int(made.json["id"])


def window_ids(site: Site, who: str = "all") -> set[int]:
    return {w["id"] for w in site.client.get("/api/v1/maintenance", who).json}


def silence_ids(site: Site, who: str = "all") -> set[int]:
    return {s["id"] for s in site.client.get("/api/v1/silences", who).json}


# The API.


def public_page(path: str) -> Callable[[Site], None]:
    """Framework pages (the schema, its viewers) and the console's login: no token, and
    nothing of a commune."""

    def check(site: Site) -> None:
        answer = site.client.call("GET", path)
        assert answer.status == 200, answer
        assert not any(name in answer.text for name in NAMES.values())

    return check


def check_config_keys(site: Site) -> None:
    """The public halves of the config signing keys: anyone may read them (a PC fetches
    them as it enrolls); nothing of a place."""
    answer = site.client.call("GET", "/api/v1/config-keys")
    assert answer.status == 200, answer
    assert [k["role"] for k in answer.json["keys"]] == ["current"]
    assert not any(name in answer.text for name in NAMES.values())


def release_files(path: str) -> Callable[[Site], None]:
    """The signed releases: public, the same answer with any token or none (this site has
    no release repository: 404 for all); nothing of a place."""

    def check(site: Site) -> None:
        answers = [site.client.call("GET", path, who) for who in (*OUTSIDE, OWN, "all")]
        answers.append(site.client.call("GET", path))
        assert {a.status for a in answers} == {404}, answers
        assert not any(name in a.text for a in answers for name in NAMES.values())

    return check


def check_healthz(site: Site) -> None:
    answer = site.client.call("GET", "/healthz")
    assert answer.status in (200, 503) and answer.json["status"] in ("ok", "degraded")
    assert not any(slug in answer.text for slug in NAMES)


def check_metrics(site: Site) -> None:
    """The collector's own figures (all provinces): tokens of every province only."""
    missing = site.client.get("/api/v1/no-such-route")
    for who in (*OUTSIDE, OWN, "dong-nai"):
        hidden = site.client.get("/metrics", who)
        assert (hidden.status, hidden.json) == (missing.status, missing.json)
    assert site.client.get("/metrics", "all").status == 200


def check_province(site: Site) -> None:
    same_words(
        site.client.get("/api/v1/province?province=dong-nai", "lam-dong"),
        site.client.get("/api/v1/province?province=nowhere"),
        "dong-nai",
        "nowhere",
    )
    totals = {
        who: site.client.get("/api/v1/province?province=dong-nai", who).json
        for who in ("tan-phu", OWN, "dong-nai")
    }
    assert [totals[w]["communes"] for w in ("tan-phu", OWN, "dong-nai")] == [1, 1, 2]
    # Without ?province=: the token's own, not the first of the collector.
    assert site.client.get("/api/v1/province", "lam-dong").json["province"] == "lam-dong"


def check_communes(site: Site) -> None:
    places_listed(site, "/api/v1/communes", lambda c: (c["province"], c["slug"]), list)


def check_commune(site: Site) -> None:
    own = hidden_everywhere_but_own(
        site, "/api/v1/communes/la-nga?province=dong-nai", "/api/v1/communes/nowhere",
        "la-nga", "nowhere",
    )  # fmt: skip
    assert own.json["name"] == NAMES[OWN]
    # Without ?province=: the one in scope.
    assert site.client.get("/api/v1/communes/la-nga", OWN).json["province"] == "dong-nai"
    assert site.client.get("/api/v1/communes/la-nga", "lam-dong").status == 404


def check_agents(site: Site) -> None:
    places_listed(site, "/api/v1/agents", lambda a: (a["province"], a["commune"]), list)


def check_agent(site: Site) -> None:
    hidden_everywhere_but_own(
        site, "/api/v1/agents/dong-nai/la-nga/pc-01", "/api/v1/agents/dong-nai/la-nga/nobody",
        "pc-01", "nobody",
    )  # fmt: skip
    # pc-01 is in every commune: ambiguous for the all-seeing token, one for the others.
    assert site.client.get("/api/v1/agents/pc-01").status == 409
    assert site.client.get("/api/v1/agents/pc-01", OWN).json["commune"] == OWN
    assert site.client.get("/api/v1/agents/pc-01", "lam-dong").status == 409  # its two


def check_availability(site: Site) -> None:
    own = hidden_everywhere_but_own(
        site, "/api/v1/availability?commune=la-nga&province=dong-nai",
        "/api/v1/availability?commune=nowhere&province=dong-nai", "la-nga", "nowhere",
    )  # fmt: skip
    assert own.json["line"] is not None and own.json["line"]["down_s"] > 0


def check_systems(site: Site) -> None:
    """Another province's catalogue answers as one that does not exist; a commune's token
    sees the systems its commune uses, with its commune alone, and its own website."""
    same_words(
        site.client.get("/api/v1/systems?province=dong-nai", "lam-dong"),
        site.client.get("/api/v1/systems?province=nowhere"),
        "dong-nai",
        "nowhere",
    )

    def listed(who: str) -> dict[str, list[str]]:
        answer = site.client.get("/api/v1/systems?province=dong-nai", who).json
        systems = answer["systems"] + answer["websites"]
        return {f"{s['id']}@{s['communes'][0]}" if s["id"] == "website" else s["id"]:
                s["communes"] for s in systems}  # fmt: skip

    assert listed("all") == {
        "mot-cua": ["la-nga", "tan-phu"], "lis": ["tan-phu"],
        "website@la-nga": ["la-nga"], "website@tan-phu": ["tan-phu"],
    }  # fmt: skip
    assert listed("dong-nai") == listed("all")
    assert listed(OWN) == {"mot-cua": ["la-nga"], "website@la-nga": ["la-nga"]}
    assert listed("tan-phu") == {
        "mot-cua": ["tan-phu"], "lis": ["tan-phu"], "website@tan-phu": ["tan-phu"],
    }  # fmt: skip
    # Without ?province=: the token's own.
    own = site.client.get("/api/v1/systems", "lam-dong").json
    assert own["province"] == "lam-dong" and own["websites"] == []
    assert [(s["id"], s["target"]) for s in own["systems"]] == [
        ("mot-cua", "https://motcua.lam-dong.example/"), ("lis", "lis.example:8443"),
    ]  # fmt: skip


def check_systems_health(site: Site) -> None:
    """Another province's systems answer as a province that does not exist; a commune's
    token gets the systems its commune uses, each over its commune alone."""
    same_words(
        site.client.get("/api/v1/systems/health?province=dong-nai", "lam-dong"),
        site.client.get("/api/v1/systems/health?province=nowhere"),
        "dong-nai",
        "nowhere",
    )

    def listed(who: str) -> dict[str, int]:
        answer = site.client.get("/api/v1/systems/health?province=dong-nai", who).json
        return {s["id"]: s["communes"] for s in answer["systems"]}

    assert listed("all") == {"mot-cua": 2, "lis": 1, "website": 2}
    assert listed("dong-nai") == listed("all")
    assert listed(OWN) == {"mot-cua": 1, "website": 1}
    assert listed("tan-phu") == {"mot-cua": 1, "lis": 1, "website": 1}
    own = site.client.get("/api/v1/systems/health", "lam-dong").json
    assert own["province"] == "lam-dong"
    assert [s["id"] for s in own["systems"]] == ["mot-cua", "lis"]


def check_system_health(site: Site) -> None:
    """lis is Tân Phú's alone: for La Ngà's token and another province's it does not
    exist; each token sees the communes it holds of a system."""
    nothing = site.client.get("/api/v1/systems/dong-nai/nowhere")
    for who in ("lam-dong", OWN):
        same_words(site.client.get("/api/v1/systems/dong-nai/lis", who), nothing, "lis", "nowhere")
    lis = site.client.get("/api/v1/systems/dong-nai/lis", "tan-phu")
    assert lis.status == 200 and [r["commune"] for r in lis.json["reach"]] == ["tan-phu"]

    def reach(who: str) -> list[str]:
        answer = site.client.get("/api/v1/systems/dong-nai/mot-cua", who)
        assert answer.status == 200, (who, answer)
        return [r["commune"] for r in answer.json["reach"]]

    assert reach("all") == reach("dong-nai") == ["la-nga", "tan-phu"]
    assert reach(OWN) == ["la-nga"] and reach("tan-phu") == ["tan-phu"]
    assert site.client.get("/api/v1/systems/dong-nai/mot-cua", "lam-dong").status == 404


def check_commune_systems(site: Site) -> None:
    own = hidden_everywhere_but_own(
        site, "/api/v1/communes/la-nga/systems?province=dong-nai",
        "/api/v1/communes/nowhere/systems?province=dong-nai", "la-nga", "nowhere",
    )  # fmt: skip
    assert [s["id"] for s in own.json["systems"]] == ["mot-cua", "website"]
    assert [s["probing"] for s in own.json["systems"]] == [0, 0]  # no prober yet
    # Without ?province=: the one in scope.
    assert site.client.get("/api/v1/communes/la-nga/systems", OWN).json["province"] == "dong-nai"


def check_alerts(site: Site) -> None:
    places_listed(site, "/api/v1/alerts", lambda a: (a["province"], a["commune"]), list)
    # A filter outside the scope is a filter matching nothing.
    assert site.client.get("/api/v1/alerts?province=dong-nai", "lam-dong").json == []


def check_alert(site: Site) -> None:
    found = alert_id(site)
    hidden_everywhere_but_own(
        site, f"/api/v1/alerts/{found}", "/api/v1/alerts/999999", str(found), "999999"
    )


def check_steps(site: Site) -> None:
    found = alert_id(site)
    own = hidden_everywhere_but_own(
        site, f"/api/v1/alerts/{found}/steps", "/api/v1/alerts/999999/steps",
        str(found), "999999",
    )  # fmt: skip
    assert own.json[0]["step"] == "fired"


def check_ack(site: Site) -> None:
    found = alert_id(site)
    body = {"comment": "VNPT ticket 4411"}
    hidden_everywhere_but_own(
        site, f"/api/v1/alerts/{found}/ack", "/api/v1/alerts/999999/ack", str(found), "999999",
        method="POST", body=body,
    )  # fmt: skip
    assert site.alert_of(OWN)["acked_by"] in (OWN, "tech-la-nga")
    for who in OUTSIDE:
        assert audited(site, "ack", who, str(found)) == []
    row = audited(site, "ack", OWN, str(found))[0]
    assert (row["province"], row["commune"], row["via"]) == ("dong-nai", OWN, "api")


def check_silences(site: Site) -> None:
    """Listed when they reach into the scope (a silence of every province's port_down
    reaches every commune)."""
    places_listed(
        site, "/api/v1/silences", lambda s: (s["province"], s["commune"]),
        lambda found: [s for s in found if s["commune"]],
    )  # fmt: skip
    broad = site.client.call("POST", "/api/v1/silences", "all", body={
        "rule": "agent_silent", "duration_s": 600, "comment": "every province"})  # fmt: skip
    assert broad.status == 201
    for who in (*OUTSIDE, OWN):
        assert broad.json["id"] in silence_ids(site, who)


def check_silence_create(site: Site) -> None:
    body = {"province": "dong-nai", "commune": OWN, "rule": "port_down", "duration_s": 600}
    for who in OUTSIDE:
        refused = site.client.call("POST", "/api/v1/silences", who, body=body)
        assert refused.status == 404 and "la-nga" in refused.json["detail"]
    # Broader than the commune's scope (the whole province, or every commune): 403.
    for broad in ({**body, "commune": ""}, {"rule": "port_down", "duration_s": 600}):
        refused = site.client.call("POST", "/api/v1/silences", OWN, body=broad)
        assert refused.status == 403 and "scope" in refused.json["detail"], refused
    made = site.client.call("POST", "/api/v1/silences", OWN, body=body)
    assert made.status == 201
    assert audited(site, "silence_create", OWN, str(made.json["id"]))[0]["after"]["rule"] == (
        "port_down"
    )
    # A province's token may mute its whole province.
    whole = site.client.call("POST", "/api/v1/silences", "dong-nai", body={**body, "commune": ""})
    assert whole.status == 201


def check_silence_delete(site: Site) -> None:
    target = silence_of(site, OWN, "to be removed through the API")
    hidden_everywhere_but_own(
        site, f"/api/v1/silences/{target}", "/api/v1/silences/999999", str(target), "999999",
        method="DELETE",
    )  # fmt: skip
    assert target not in silence_ids(site)
    row = audited(site, "silence_delete", OWN, str(target))[0]
    assert row["before"]["comment"] == "to be removed through the API" and row["after"] is None


def check_report(site: Site) -> None:
    path = f"/api/v1/reports/monthly?province=dong-nai&month={month()}"
    nothing = site.client.get(f"/api/v1/reports/monthly?province=nowhere&month={month()}")
    for fmt in ("json", "md", "csv", "html", "xlsx", "docx"):
        same_words(site.client.get(f"{path}&format={fmt}", "lam-dong"), nothing,
                   "dong-nai", "nowhere")  # fmt: skip
        for who, other in ((OWN, "tan-phu"), ("tan-phu", OWN)):
            answer = site.client.get(f"{path}&format={fmt}&lang=vi", who)
            assert answer.status == 200, (fmt, answer.status)
            text = report_text(answer.body, fmt)
            assert NAMES[who] in text and NAMES[other] not in text, (fmt, who)
    # The figures are the commune's own: the totals are its.
    mine = site.client.get(path, OWN).json
    assert [c["slug"] for c in mine["communes"]] == [OWN]
    assert mine["total"]["alerts"] == mine["communes"][0]["alerts"] >= 1
    assert len(site.client.get(path, "dong-nai").json["communes"]) == 2


def report_text(body: bytes, fmt: str) -> str:
    if fmt in ("xlsx", "docx"):
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            parts = [archive.read(n).decode() for n in archive.namelist() if n.endswith(".xml")]
        return html.unescape(re.sub(r"<[^>]+>", "", "".join(parts)))
    return body.decode()


def check_enroll(site: Site) -> None:
    """Public: the enrollment token in the body is the credential (tested in full in
    test_rollout.py); without a bearer token a malformed body is refused as such."""
    answer = site.client.call("POST", "/api/v1/enroll", raw=b"{}")
    assert answer.status == 400 and "enrollment request" in answer.json["detail"]


def check_token_create(site: Site) -> None:
    body = {"province": "dong-nai", "commune": OWN, "uses": 2}
    for who in OUTSIDE:
        refused = site.client.call("POST", "/api/v1/enrollment/tokens", who, body=body)
        assert refused.status == 404, refused
    made = site.client.call("POST", "/api/v1/enrollment/tokens", OWN, body=body)
    assert made.status == 201
    row = audited(site, "enroll_token_create", OWN, made.json["id"])[0]
    assert row["after"]["uses"] == 2 and made.json["token"] not in str(row)


def check_tokens(site: Site) -> None:
    places_listed(site, "/api/v1/enrollment/tokens", lambda t: (t["province"], t["commune"]),
                  lambda found: found["tokens"])  # fmt: skip


def check_token_revoke(site: Site) -> None:
    made = site.client.call("POST", "/api/v1/enrollment/tokens", "all",
                            body={"province": "dong-nai", "commune": OWN})  # fmt: skip
    target = made.json["id"]
    own = hidden_everywhere_but_own(
        site, f"/api/v1/enrollment/tokens/{target}", "/api/v1/enrollment/tokens/0000beef",
        target, "0000beef", method="DELETE",
    )  # fmt: skip
    assert own.json["revoked_at"] is not None
    assert audited(site, "enroll_token_revoke", OWN, target)[0]["before"]["revoked_at"] is None


def check_rollout_communes(site: Site) -> None:
    path = "/api/v1/enrollment/communes?province={}"

    def listed(who: str, province: str) -> list[str]:
        return [c["commune"] for c in site.client.get(path.format(province), who).json["communes"]]

    assert listed("lam-dong", "dong-nai") == [] == listed("all", "nowhere")
    assert listed("tan-phu", "dong-nai") == ["tan-phu"]
    assert listed(OWN, "dong-nai") == [OWN]
    assert listed("dong-nai", "dong-nai") == ["la-nga", "tan-phu"]


def check_events(site: Site) -> None:
    places_listed(site, "/api/v1/enrollment/events", lambda e: (e["province"], e["commune"]),
                  lambda found: found["events"])  # fmt: skip


def check_agent_revoke(site: Site) -> None:
    path = "/api/v1/agents/dong-nai/la-nga/pc-enrolled/revoke"
    own = hidden_everywhere_but_own(
        site, path, "/api/v1/agents/dong-nai/la-nga/pc-never/revoke", "pc-enrolled", "pc-never",
        method="POST",
    )  # fmt: skip
    assert own.json["revoked_at"] is not None
    assert audited(site, "agent_revoke", OWN)[0]["agent"] == "pc-enrolled"


def check_profiles_get(site: Site) -> None:
    path = "/api/v1/profiles/dong-nai"
    same_words(site.client.get(path, "lam-dong"), site.client.get("/api/v1/profiles/nowhere"),
               "dong-nai", "nowhere")  # fmt: skip
    for who in ("tan-phu", OWN):  # a commune's admin: not the province's file
        assert site.client.get(path, who).status == 403
    answer = site.client.get(path, "dong-nai")
    assert answer.status == 200 and 'province = "dong-nai"' in answer.text


def check_profiles_put(site: Site) -> None:
    path = "/api/v1/profiles/dong-nai"
    text = profiles_text("dong-nai").replace('"60s"', '"120s"').encode()
    missing = site.client.call("PUT", "/api/v1/profiles/nowhere", "all", raw=text)
    same_words(site.client.call("PUT", path, "lam-dong", raw=text), missing, "dong-nai", "nowhere")
    assert site.client.call("PUT", path, OWN, raw=text).status == 403
    assert site.client.call("PUT", path, "dong-nai", raw=text).status == 200
    row = audited(site, "profiles_replace", "dong-nai")[0]
    import hashlib

    assert row["after"] == {"sha256": hashlib.sha256(text).hexdigest(), "bytes": len(text)}
    assert row["before"]["sha256"] != row["after"]["sha256"] and "120s" not in str(row)


def check_windows(site: Site) -> None:
    """Listed when they reach into the scope: a province's window reaches its communes."""
    places_listed(
        site, "/api/v1/maintenance", lambda w: (w["province"], w["commune"]),
        lambda found: [w for w in found if w["commune"]],
    )  # fmt: skip
    for who, province in (("tan-phu", "dong-nai"), (OWN, "dong-nai"), ("lam-dong", "lam-dong")):
        wide = {w["province"] for w in site.client.get("/api/v1/maintenance", who).json
                if not w["commune"]}  # fmt: skip
        assert wide == {province}, who


def check_window_create(site: Site) -> None:
    now = time.time()
    body = {"province": "dong-nai", "commune": OWN, "starts": now + 3600, "ends": now + 7200}
    for who in OUTSIDE:
        assert site.client.call("POST", "/api/v1/maintenance", who, body=body).status == 404
    wide = site.client.call("POST", "/api/v1/maintenance", OWN, body={**body, "commune": ""})
    assert wide.status == 403 and "scope" in wide.json["detail"]
    made = site.client.call("POST", "/api/v1/maintenance", OWN, body=body)
    assert made.status == 201
    assert audited(site, "maintenance_create", OWN, str(made.json["id"]))


def check_window_delete(site: Site) -> None:
    target = window_of(site, OWN, "to be removed through the API")
    hidden_everywhere_but_own(
        site, f"/api/v1/maintenance/{target}", "/api/v1/maintenance/999999", str(target),
        "999999", method="DELETE",
    )  # fmt: skip
    assert target not in window_ids(site)
    assert audited(site, "maintenance_delete", OWN, str(target))
    # The province's window reaches la-nga, but is not la-nga's to remove.
    wide = next(w for w in site.client.get("/api/v1/maintenance?province=dong-nai").json
                if not w["commune"])  # fmt: skip
    assert site.client.call("DELETE", f"/api/v1/maintenance/{wide['id']}", OWN).status == 404
    assert wide["id"] in window_ids(site)


def check_groups(site: Site) -> None:
    places_listed(site, "/api/v1/alert-groups?state=all",
                  lambda g: (g["province"], g["commune"]), list)  # fmt: skip


def check_group_ack(site: Site) -> None:
    body = {"province": "dong-nai", "commune": OWN, "rule": "line_down_tslcd", "comment": "on it"}
    for who in OUTSIDE:
        refused = site.client.call("POST", "/api/v1/alert-groups/ack", who, body=body)
        assert refused.status == 404 and audited(site, "ack_group", who) == []
    assert site.client.call("POST", "/api/v1/alert-groups/ack", OWN, body=body).status == 200
    assert audited(site, "ack_group", OWN, "line_down_tslcd")[0]["commune"] == OWN


def check_group_silence(site: Site) -> None:
    body = {"province": "dong-nai", "commune": OWN, "rule": "line_down_tslcd", "duration_s": 60}
    for who in OUTSIDE:
        refused = site.client.call("POST", "/api/v1/alert-groups/silence", who, body=body)
        assert refused.status == 404
    made = site.client.call("POST", "/api/v1/alert-groups/silence", OWN, body=body)
    assert made.status == 201 and audited(site, "silence_create", OWN, str(made.json["id"]))


def check_audit(site: Site) -> None:
    for commune in (OWN, "tan-phu", "bao-loc"):  # by "all": seen by each place's own
        silence_of(site, commune, "seen in the audit")
    path = "/api/v1/audit?action=silence_create&actor=all"
    places = {(r["province"], r["commune"]) for r in site.client.get(path).json}
    assert {("dong-nai", OWN), ("dong-nai", "tan-phu"), ("lam-dong", "bao-loc")} <= places
    for who in (*OUTSIDE, OWN):
        mine = site.client.get(path, who).json
        assert mine and all(who in (r["province"], r["commune"]) for r in mine), who
    csv = site.client.get(f"{path}&format=csv", OWN)
    assert csv.headers["content-type"].startswith("text/csv")
    assert "la-nga" in csv.text and "tan-phu" not in csv.text


# The console.


def check_login(site: Site) -> None:
    cookie = site.client.login("tan-phu")
    assert cookie
    row = audited(site, "login", "tan-phu")[0]
    assert (row["province"], row["commune"], row["via"]) == ("dong-nai", "tan-phu", "console")
    assert site.client.get("/api/v1/audit?action=login&actor=tan-phu", OWN).json == []


def check_logout(site: Site) -> None:
    cookie = site.client.login("di-linh")
    assert site.client.call("POST", "/logout", cookie=cookie).status == 303
    assert site.client.page("/", cookie).status == 303  # to the login page
    assert audited(site, "logout", "di-linh")[0]["commune"] == "di-linh"


def check_language(site: Site) -> None:
    answer = site.client.call("GET", "/lang/en?next=/alerts")
    assert answer.status == 303 and answer.headers["location"] == "/alerts"


def page_of(site: Site, who: str, path: str) -> str:
    answer = site.client.page(path, site.cookie(who))
    assert answer.status == 200, (who, path, answer.status)
    return answer.text


def check_overview(site: Site) -> None:
    for who in (*OUTSIDE, OWN):
        # Another province asked for: the page shows the token's own.
        page = page_of(site, who, "/?province=dong-nai")
        shown = set(re.findall(r'data-commune="([^"]+)"', page))
        assert shown == {c for c in PROVINCE_OF if who in (c, PROVINCE_OF[c])}, (who, shown)
        assert '<option value="dong-nai"' not in page  # a picker only of its own
    assert '<option value="lam-dong"' in page_of(site, "all", "/")


def hidden_page(site: Site, path: str, missing: str, shown: str, absent: str) -> str:
    nothing = site.client.page(missing, site.cookie("all"))
    for who in OUTSIDE:
        same_words(site.client.page(path, site.cookie(who)), nothing, shown, absent)
    return page_of(site, OWN, path)


def check_commune_page(site: Site) -> None:
    page = hidden_page(site, "/communes/la-nga?province=dong-nai",
                       "/communes/nowhere?province=dong-nai", "la-nga", "nowhere")  # fmt: skip
    assert NAMES[OWN] in page


def check_systems_page(site: Site) -> None:
    for who, shown in (("lam-dong", {"mot-cua", "lis"}), ("tan-phu", {"mot-cua", "lis", "website"}),
                       (OWN, {"mot-cua", "website"})):  # fmt: skip
        # Another province asked for: the page shows the token's own.
        page = page_of(site, who, "/systems?province=dong-nai")
        assert set(re.findall(r'data-system="([^"]+)"', page)) == shown, who
        assert "/systems?province=" not in page  # a picker only of its own: one
    assert '/systems?province=lam-dong"' in page_of(site, "all", "/systems")


def check_system_page(site: Site) -> None:
    nothing = site.client.page("/systems/dong-nai/nowhere", site.cookie("all"))
    for who in ("lam-dong", OWN):
        hidden = site.client.page("/systems/dong-nai/lis", site.cookie(who))
        same_words(hidden, nothing, "lis", "nowhere")
    page = page_of(site, "tan-phu", "/systems/dong-nai/lis")
    assert set(re.findall(r'data-commune="([^"]+)"', page)) == {"tan-phu"}
    page = page_of(site, OWN, "/systems/dong-nai/mot-cua")
    assert set(re.findall(r'data-commune="([^"]+)"', page)) == {"la-nga"}


def check_agent_page(site: Site) -> None:
    page = hidden_page(site, "/agents/dong-nai/la-nga/pc-01", "/agents/dong-nai/la-nga/nobody",
                       "pc-01", "nobody")  # fmt: skip
    assert "pc-01" in page


def check_alerts_page(site: Site) -> None:
    wide = next(w["id"] for w in site.client.get("/api/v1/maintenance?province=dong-nai").json
                if not w["commune"])  # fmt: skip
    for who in (*OUTSIDE, OWN):
        page = page_of(site, who, "/alerts?state=all")
        shown = set(re.findall(r'id="group-([a-z-]+?)-(?:line|port|agent)', page))
        assert shown == {c for c in PROVINCE_OF if who in (c, PROVINCE_OF[c])}, (who, shown)
        silences = set(re.findall(r"silence of ([a-z-]+)", page))
        assert silences == shown, (who, silences)
    # The province's window is shown in la-nga (it reaches it), without a way to remove it.
    own = page_of(site, OWN, "/alerts")
    assert "window of dong-nai" in own and f"/maintenance/{wide}/delete" not in own
    assert f"/maintenance/{wide}/delete" in page_of(site, "dong-nai", "/alerts")


def check_rollout_page(site: Site) -> None:
    """The communes and, of the release's rollout, each ring counted over the scope."""
    rollout_id = running_rollout(site)
    for who in (*OUTSIDE, OWN):
        page = page_of(site, who, "/rollout?province=dong-nai")
        shown = set(re.findall(r'<tr data-commune="([^"]+)"', page))
        assert shown == {c for c in PROVINCE_OF if who in (c, PROVINCE_OF[c])}, (who, shown)
        assert "/rollout?province=" not in page  # one province: no picker
        assert f"{rollout_id} (0.3.0)" in page
        lab = re.search(r'<tr data-ring="lab"[^>]*>.*?<td class="members">(\d+)<', page, re.S)
        assert lab is not None and int(lab.group(1)) == (1 if who == "tan-phu" else 0), who
        counted = sum(map(int, re.findall(r'<span class="version"[^>]*>[^<]*: (\d+)<', page)))
        _, provinces, communes = SCOPES[who]
        scope = Scope(provinces, communes)
        held = [m for m in registry.managed(site.store, active=True)
                if scope.holds(m.province, m.commune)]  # fmt: skip
        assert counted == len(held), who
        # Only an admin of every province changes a rollout: the others read the page.
        assert 'action="/rollout/' not in page and 'id="rollout-read-only"' in page, who
    for who in ("dong-nai", "viewer-la-nga", "tech-la-nga"):
        page = page_of(site, who, "/rollout")
        assert 'action="/rollout/' not in page and 'id="rollout-read-only"' in page, who
    page = page_of(site, "all", "/rollout?province=dong-nai")
    assert f'action="/rollout/{rollout_id}/halt"' in page and "rollout-read-only" not in page


def check_audit_page(site: Site) -> None:
    for commune in (OWN, "tan-phu"):
        silence_of(site, commune, "audit page")
    for who, other in ((OWN, "tan-phu"), ("tan-phu", OWN)):
        page = page_of(site, who, "/audit?action=silence_create")
        assert NAMES[who] in page and NAMES[other] not in page, who
    refused = site.client.page("/audit", site.cookie("viewer-la-nga"))
    assert refused.status == 403


def form_hidden(site: Site, path: str, missing: str, **fields: str) -> Answer:
    """A console form: 404 for the sessions outside (as for ``missing``), done for own."""
    nothing = site.client.form(missing, site.cookie("all"), **fields)
    for who in OUTSIDE:
        hidden = site.client.form(path, site.cookie(who), **fields)
        assert (hidden.status, nothing.status) == (404, 404), (who, hidden)
    answer = site.client.form(path, site.cookie(OWN), **fields)
    assert answer.status == 303, answer
    return answer


def check_ack_form(site: Site) -> None:
    found = alert_id(site)
    form_hidden(site, f"/alerts/{found}/ack", "/alerts/999999/ack", comment="console")
    assert any(r["via"] == "console" for r in audited(site, "ack", OWN, str(found)))


def check_group_ack_form(site: Site) -> None:
    fields = {"province": "dong-nai", "commune": OWN, "rule": "line_down_tslcd"}
    for who in OUTSIDE:
        assert site.client.form("/alert-groups/ack", site.cookie(who), **fields).status == 404
    assert site.client.form("/alert-groups/ack", site.cookie(OWN), **fields).status == 303
    assert any(r["via"] == "console" for r in audited(site, "ack_group", OWN))


def check_silence_form(site: Site) -> None:
    fields = {"province": "dong-nai", "commune": OWN, "rule": "port_down", "hours": "1",
              "comment": "console silence"}  # fmt: skip
    for who in OUTSIDE:
        assert site.client.form("/silences", site.cookie(who), **fields).status == 404
    broad = site.client.form("/silences", site.cookie(OWN), **{**fields, "commune": ""})
    assert broad.status == 403
    assert site.client.form("/silences", site.cookie(OWN), **fields).status == 303
    assert any(r["via"] == "console" for r in audited(site, "silence_create", OWN))


def check_silence_delete_form(site: Site) -> None:
    target = silence_of(site, OWN, "removed in the console")
    form_hidden(site, f"/silences/{target}/delete", "/silences/999999/delete")
    assert target not in silence_ids(site)
    assert audited(site, "silence_delete", OWN, str(target))[0]["via"] == "console"


def check_window_form(site: Site) -> None:
    start = local(time.time() + 86400).strftime("%Y-%m-%dT%H:%M")
    end = local(time.time() + 90000).strftime("%Y-%m-%dT%H:%M")
    fields = {"province": "dong-nai", "commune": OWN, "starts": start, "ends": end,
              "reason": "console window"}  # fmt: skip
    for who in OUTSIDE:
        assert site.client.form("/maintenance", site.cookie(who), **fields).status == 404
    wide = site.client.form("/maintenance", site.cookie(OWN), **{**fields, "commune": ""})
    assert wide.status == 403
    assert site.client.form("/maintenance", site.cookie(OWN), **fields).status == 303
    assert any(r["via"] == "console" for r in audited(site, "maintenance_create", OWN))


def check_window_delete_form(site: Site) -> None:
    target = window_of(site, OWN, "removed in the console")
    form_hidden(site, f"/maintenance/{target}/delete", "/maintenance/999999/delete")
    assert target not in window_ids(site)
    assert audited(site, "maintenance_delete", OWN, str(target))[0]["via"] == "console"


# Rollouts of releases: the rollout itself spans every province; its lab PCs, pilot
# communes and figures are places, shown within the scope.

#: Not la-nga's: its PC is revoked by check_agent_revoke.
LAB_PC = "dong-nai/tan-phu/pc-enrolled"
ADMINS_NARROWER = (*OUTSIDE, OWN, "dong-nai")


def running_rollout(site: Site) -> str:
    """The id of a running rollout, started (by an admin of everything) if need be."""
    site.rollout.rollouts.signed_versions = lambda: {"0.3.0"}
    listed = site.client.get("/api/v1/rollouts").json["rollouts"]
    if listed and listed[0]["state"] in ("running", "paused"):
        if listed[0]["state"] == "paused":
            site.client.call("POST", f"/api/v1/rollouts/{listed[0]['id']}/resume", "all")
        return str(listed[0]["id"])
    body = {"version": "0.3.0", "rings": "lab,50%,100%", "lab": [LAB_PC], "spread_s": 0}
    made = site.client.call("POST", "/api/v1/rollouts", "all", body=body)
    assert made.status == 201, made
    return str(made.json["id"])


def check_rollout_start(site: Site) -> None:
    """Only an admin of every province starts one (a narrower admin: 403, naming nothing
    outside; a viewer: 403 by role); audited."""
    site.rollout.rollouts.signed_versions = lambda: {"0.3.0"}
    listed = site.client.get("/api/v1/rollouts").json["rollouts"]
    if listed and listed[0]["state"] in ("running", "paused"):
        site.client.call("POST", f"/api/v1/rollouts/{listed[0]['id']}/halt", "all")
    body = {"version": "0.3.0", "rings": "lab,100%", "lab": [LAB_PC], "spread_s": 0}
    for who in (*ADMINS_NARROWER, "viewer-la-nga"):
        refused = site.client.call("POST", "/api/v1/rollouts", who, body=body)
        assert refused.status == 403, (who, refused)
        assert "lam-dong" not in refused.text or who == "lam-dong"
    unsigned = site.client.call("POST", "/api/v1/rollouts", "all", body={**body, "version": "9.9"})
    assert unsigned.status == 400 and "not in the signed release" in unsigned.json["detail"]
    made = site.client.call("POST", "/api/v1/rollouts", "all", body=body)
    assert made.status == 201, made
    assert audited(site, "rollout_start", "all", made.json["id"])[0]["after"]["lab"] == [LAB_PC]


def check_rollouts(site: Site) -> None:
    """Every reader sees the rollouts; of the fleet only its places (the lab PC, the
    versions counted)."""
    running_rollout(site)
    everything = site.client.get("/api/v1/rollouts").json
    assert sum(everything["versions"].values()) == len(registry.managed(site.store, active=True))
    for who in (*OUTSIDE, OWN, "dong-nai", "viewer-la-nga", "tech-la-nga"):
        seen = site.client.get("/api/v1/rollouts", who).json
        assert [r["id"] for r in seen["rollouts"]] == [r["id"] for r in everything["rollouts"]]
        holds_lab = who in ("tan-phu", "dong-nai")
        assert seen["rollouts"][0]["lab"] == ([LAB_PC] if holds_lab else []), who
        _, provinces, communes = SCOPES[who]
        scope = Scope(provinces, communes)
        held = [m for m in registry.managed(site.store, active=True)
                if scope.holds(m.province, m.commune)]  # fmt: skip
        assert sum(seen["versions"].values()) == len(held), (who, seen["versions"])


def check_rollout(site: Site) -> None:
    """One rollout: 404 alike for an unknown id; each ring counted over the scope."""
    rollout_id = running_rollout(site)
    nothing = site.client.get("/api/v1/rollouts/0.0.1-99", OWN)
    assert nothing.status == 404 and "no rollout '0.0.1-99'" in nothing.json["detail"]
    for who, lab_members in (("all", 1), ("tan-phu", 1), ("dong-nai", 1), (OWN, 0),
                             ("viewer-la-nga", 0), ("lam-dong", 0)):  # fmt: skip
        seen = site.client.get(f"/api/v1/rollouts/{rollout_id}", who)
        assert seen.status == 200, seen
        assert seen.json["rings"][0]["members"] == lab_members, who


def rollout_in(site: Site, state: str) -> str:
    """The id of a rollout in ``state``: running, or paused."""
    rollout_id = running_rollout(site)
    if state == "paused":
        site.client.call("POST", f"/api/v1/rollouts/{rollout_id}/pause", "all")
    return rollout_id


def rollout_action(action: str, before: str, after: str) -> Callable[[Site], None]:
    def check(site: Site) -> None:
        rollout_id = rollout_in(site, before)
        path = f"/api/v1/rollouts/{rollout_id}/{action}"
        for who in (*ADMINS_NARROWER, "viewer-la-nga"):
            refused = site.client.call("POST", path, who, body={"why": "scope test"})
            assert refused.status == 403, (who, refused)
        unknown = site.client.call("POST", f"/api/v1/rollouts/0.0.1-99/{action}", "all")
        assert unknown.status == 404
        done = site.client.call("POST", path, "all", body={"why": "scope test"})
        assert done.status == 200, done
        assert done.json["state"] == after
        assert audited(site, f"rollout_{action}", "all", rollout_id)

    return check


def rollout_form_refused(site: Site, path: str, **fields: str) -> None:
    """A rollout's console form: 403 as in the API for every session but an admin of
    every province (naming nothing outside its scope); a viewer's pages carry no CSRF
    token to post with."""
    for who in (*ADMINS_NARROWER, "tech-la-nga"):
        refused = site.client.form(path, site.cookie(who), **fields)
        assert refused.status == 403, (who, refused)
        assert "lam-dong" not in refused.text or who == "lam-dong"
    viewer = site.client.call("POST", path, cookie=site.cookie("viewer-la-nga"), form=fields)
    assert viewer.status == 403


def latest_rollout(site: Site) -> dict[str, Any]:
    return dict(site.client.get("/api/v1/rollouts").json["rollouts"][0])


def by_console(site: Site, action: str, rollout_id: str) -> None:
    """Audited as the API's changes are: the session's holder, its address, the console."""
    row = audited(site, action, "all", rollout_id)[0]
    assert (row["role"], row["address"], row["via"]) == ("admin", "127.0.0.1", "console"), row


def check_rollout_start_form(site: Site) -> None:
    """Started from the console by an admin of every province alone; a second start
    while one runs is refused on the page, in its words."""
    site.rollout.rollouts.signed_versions = lambda: {"0.3.0"}
    latest = latest_rollout(site)
    if latest["state"] in ("running", "paused"):
        site.client.call("POST", f"/api/v1/rollouts/{latest['id']}/halt", "all")
    fields = {"version": "0.3.0", "rings": "lab,100%", "lab": LAB_PC, "spread": "1m"}
    rollout_form_refused(site, "/rollout/start", **fields)
    assert latest_rollout(site)["state"] == "halted"
    made = site.client.form("/rollout/start", site.cookie("all"), **fields)
    assert made.status == 303 and made.headers["location"].startswith("/rollout")
    started = latest_rollout(site)
    assert (started["state"], started["lab"], started["spread_s"]) == ("running", [LAB_PC], 60)
    by_console(site, "rollout_start", started["id"])
    again = site.client.form("/rollout/start", site.cookie("all"), **fields)
    assert again.status == 409 and "Đang có một đợt cập nhật chạy" in again.text


def rollout_form(action: str, before: str, after: str) -> Callable[[Site], None]:
    def check(site: Site) -> None:
        rollout_id = rollout_in(site, before)
        path = f"/rollout/{rollout_id}/{action}"
        fields = {"why": "console scope test", "confirm": "1"}
        rollout_form_refused(site, path, **fields)
        assert latest_rollout(site)["state"] == before
        unknown = site.client.form(f"/rollout/0.0.1-99/{action}", site.cookie("all"), **fields)
        assert unknown.status == 404 and "no rollout '0.0.1-99'" in unknown.text
        done = site.client.form(path, site.cookie("all"), **fields)
        assert done.status == 303, done
        assert latest_rollout(site)["state"] == after
        by_console(site, f"rollout_{action}", rollout_id)
        # Done twice (as from a page left open): refused on the page, nothing changed.
        if action != "halt":
            twice = site.client.form(path, site.cookie("all"), **fields)
            assert twice.status == 409 and "đã đổi trạng thái" in twice.text
            assert latest_rollout(site)["state"] == after

    return check


def check_halt_form(site: Site) -> None:
    """A halt is confirmed, or refused on the page with the rollout left running."""
    rollout_id = running_rollout(site)
    unconfirmed = site.client.form(f"/rollout/{rollout_id}/halt", site.cookie("all"), why="x")
    assert unconfirmed.status == 422 and "Đánh dấu ô xác nhận" in unconfirmed.text
    assert latest_rollout(site)["state"] == "running"
    rollout_form("halt", "running", "halted")(site)


#: Every route the app serves, and how its scope is checked. A route missing here
#: fails the suite: each new route needs a decision.
DECISIONS: dict[tuple[str, str], Callable[[Site], None]] = {
    # Public: no token, nothing of a place.
    ("GET", "/healthz"): check_healthz,
    ("GET", "/openapi.json"): public_page("/openapi.json"),
    ("GET", "/docs"): public_page("/docs"),
    ("GET", "/docs/oauth2-redirect"): public_page("/docs/oauth2-redirect"),
    ("GET", "/redoc"): public_page("/redoc"),
    ("POST", "/api/v1/enroll"): check_enroll,
    ("GET", "/api/v1/config-keys"): check_config_keys,
    ("GET", "/releases/metadata/{name}"): release_files("/releases/metadata/timestamp.json"),
    ("GET", "/releases/targets/{name}"): release_files(f"/releases/targets/{'0' * 64}.x.zip"),
    ("GET", "/login"): public_page("/login"),
    ("POST", "/login"): check_login,
    ("POST", "/logout"): check_logout,
    ("GET", "/lang/{language}"): check_language,
    # The collector's own figures: tokens of every province.
    ("GET", "/metrics"): check_metrics,
    # Health.
    ("GET", "/api/v1/province"): check_province,
    ("GET", "/api/v1/communes"): check_communes,
    ("GET", "/api/v1/communes/{commune}"): check_commune,
    ("GET", "/api/v1/agents"): check_agents,
    ("GET", "/api/v1/agents/{agent:path}"): check_agent,
    ("GET", "/api/v1/availability"): check_availability,
    ("GET", "/api/v1/systems"): check_systems,
    ("GET", "/api/v1/systems/health"): check_systems_health,
    ("GET", "/api/v1/systems/{province}/{system_id}"): check_system_health,
    ("GET", "/api/v1/communes/{commune}/systems"): check_commune_systems,
    ("GET", "/api/v1/reports/monthly"): check_report,
    # Alerts, silences, maintenance.
    ("GET", "/api/v1/alerts"): check_alerts,
    ("GET", "/api/v1/alerts/{alert_id}"): check_alert,
    ("GET", "/api/v1/alerts/{alert_id}/steps"): check_steps,
    ("POST", "/api/v1/alerts/{alert_id}/ack"): check_ack,
    ("GET", "/api/v1/alert-groups"): check_groups,
    ("POST", "/api/v1/alert-groups/ack"): check_group_ack,
    ("POST", "/api/v1/alert-groups/silence"): check_group_silence,
    ("GET", "/api/v1/silences"): check_silences,
    ("POST", "/api/v1/silences"): check_silence_create,
    ("DELETE", "/api/v1/silences/{silence_id}"): check_silence_delete,
    ("GET", "/api/v1/maintenance"): check_windows,
    ("POST", "/api/v1/maintenance"): check_window_create,
    ("DELETE", "/api/v1/maintenance/{window_id}"): check_window_delete,
    # Enrollment and profiles.
    ("POST", "/api/v1/enrollment/tokens"): check_token_create,
    ("GET", "/api/v1/enrollment/tokens"): check_tokens,
    ("DELETE", "/api/v1/enrollment/tokens/{token_id}"): check_token_revoke,
    ("GET", "/api/v1/enrollment/communes"): check_rollout_communes,
    ("GET", "/api/v1/enrollment/events"): check_events,
    ("POST", "/api/v1/agents/{province}/{commune}/{agent}/revoke"): check_agent_revoke,
    ("GET", "/api/v1/profiles/{province}"): check_profiles_get,
    ("PUT", "/api/v1/profiles/{province}"): check_profiles_put,
    # Rollouts of releases.
    ("GET", "/api/v1/rollouts"): check_rollouts,
    ("POST", "/api/v1/rollouts"): check_rollout_start,
    ("GET", "/api/v1/rollouts/{rollout_id}"): check_rollout,
    ("POST", "/api/v1/rollouts/{rollout_id}/pause"): rollout_action("pause", "running", "paused"),
    ("POST", "/api/v1/rollouts/{rollout_id}/resume"): rollout_action("resume", "paused", "running"),
    ("POST", "/api/v1/rollouts/{rollout_id}/halt"): rollout_action("halt", "running", "halted"),
    ("POST", "/api/v1/rollouts/{rollout_id}/promote"): rollout_action(
        "promote", "running", "running"
    ),
    # The audit.
    ("GET", "/api/v1/audit"): check_audit,
    # Console pages.
    ("GET", "/"): check_overview,
    ("GET", "/communes/{slug}"): check_commune_page,
    ("GET", "/systems"): check_systems_page,
    ("GET", "/systems/{province}/{system_id}"): check_system_page,
    ("GET", "/agents/{key:path}"): check_agent_page,
    ("GET", "/alerts"): check_alerts_page,
    ("GET", "/rollout"): check_rollout_page,
    ("GET", "/audit"): check_audit_page,
    # Console actions.
    ("POST", "/alerts/{alert_id}/ack"): check_ack_form,
    ("POST", "/alert-groups/ack"): check_group_ack_form,
    ("POST", "/silences"): check_silence_form,
    ("POST", "/silences/{silence_id}/delete"): check_silence_delete_form,
    ("POST", "/maintenance"): check_window_form,
    ("POST", "/maintenance/{window_id}/delete"): check_window_delete_form,
    ("POST", "/rollout/start"): check_rollout_start_form,
    ("POST", "/rollout/{rollout_id}/pause"): rollout_form("pause", "running", "paused"),
    ("POST", "/rollout/{rollout_id}/resume"): rollout_form("resume", "paused", "running"),
    ("POST", "/rollout/{rollout_id}/halt"): check_halt_form,
}


def served_routes(routes: list[Any]) -> set[tuple[str, str]]:
    """(method, path) of every route, through included routers; HEAD goes with GET."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if hasattr(route, "original_router"):
            found |= served_routes(route.original_router.routes)
        else:
            found |= {(m, route.path) for m in getattr(route, "methods", None) or () if m != "HEAD"}
    return found


def test_every_route_has_a_scope_decision(site: Site) -> None:
    served = served_routes(site.app.routes)
    assert served - set(DECISIONS) == set(), "routes without a scope decision"
    assert set(DECISIONS) - served == set(), "decisions for routes no longer served"


@pytest.mark.parametrize("route", sorted(DECISIONS), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_route_holds_to_the_scope(site: Site, route: tuple[str, str]) -> None:
    DECISIONS[route](site)


def test_roles_still_decide_within_the_scope(site: Site) -> None:
    """A role refusal stays 403: a viewer reads its commune, a technician acts on alerts
    but manages no enrollment."""
    found = alert_id(site)
    assert site.client.get(f"/api/v1/alerts/{found}", "viewer-la-nga").status == 200
    refused = site.client.call("POST", f"/api/v1/alerts/{found}/ack", "viewer-la-nga", body={})
    assert refused.status == 403 and "viewer" in refused.json["detail"]
    assert site.client.call("POST", f"/api/v1/alerts/{found}/ack", "tech-la-nga",
                            body={}).status == 200  # fmt: skip
    body = {"province": "dong-nai", "commune": OWN}
    assert site.client.call("POST", "/api/v1/enrollment/tokens", "tech-la-nga",
                            body=body).status == 403  # fmt: skip


def test_a_session_follows_its_tokens_scope_as_configured_now(tmp_path: Path) -> None:
    """The same cookie, the token's scope changed in the config: the session sees the new
    scope at its next request (no new login)."""
    from collector.config import ApiSection, ConsoleSection
    from collector.state.health import HealthModel
    from collector.state.store import StateStore
    from collector.web.factory import create_app
    from tests.scoped import INVENTORIES, Client, api_tokens, fill
    from tests.servers import AppServer

    store = StateStore(tmp_path / "state.sqlite")
    fill(store)
    secret = tmp_path / "secret"
    secret.write_text("k" * 48)
    console = ConsoleSection(secret_file=str(secret))
    cookie = ""
    for communes in (("la-nga",), ("tan-phu",)):
        settings = ApiSection(tokens=api_tokens({"tech": ("technician", ("dong-nai",), communes)}))
        server = AppServer(create_app(HealthModel(store, INVENTORIES), store, settings,
                                      console=console)).start()  # fmt: skip
        try:
            client = Client(server.port)
            cookie = cookie or client.login("tech")
            page = client.page("/", cookie)
            assert page.status == 200
            assert set(re.findall(r'data-commune="([^"]+)"', page.text)) == set(communes)
        finally:
            server.stop()
    store.close()
