"""The operators' audit: written with the action or not at all, bounded, pruned by
retention, exported by the API (filters, JSON, CSV a spreadsheet cannot be tricked
by), recorded from the command line; the store of 0.2.0 takes it unchanged.
Scoped tokens in the config: validated by key, made by ``commune-collector token``."""

from __future__ import annotations

import csv
import getpass
import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.configtypes import ConfigError
from collector.alerts.records import NotFound, acknowledge, add_silence, get_alert, list_silences
from collector.cli.main import main
from collector.config import ApiSection, parse_collector_config
from collector.state import audit, maintenance
from collector.state.health import HealthModel
from collector.state.housekeeping import Housekeeping, Task, retention
from collector.state.store import StateStore
from collector.web import audited
from collector.web.scope import Scope
from tests.scoped import INVENTORIES, Client, api_tokens, fill
from tests.servers import AppServer

STORES = Path(__file__).parent / "data" / "stores"
ADMIN = audit.Actor("anh", "technician", "203.0.113.7", "api")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite") as opened:
        fill(opened)
        yield opened


def firing(store: StateStore, commune: str = "la-nga") -> int:
    with store.reading() as db:
        row = db.execute(
            "SELECT id FROM alerts WHERE commune = ? AND state = 'firing'", (commune,)
        ).fetchone()
    return int(row[0])


# Written with the action, or the action does not happen.


def test_an_action_whose_row_cannot_be_written_does_not_happen(store: StateStore) -> None:
    """The row goes in the action's transaction: when it fails, the action is undone."""
    broken = audit.Actor("anh", "technician", "203.0.113.7", "telnet")  # not a way in
    now = time.time()
    alert = get_alert(store, firing(store), now)
    with pytest.raises(ValueError, match="not a way in"):
        acknowledge(store, alert.id, "anh", "x", now,
                    also=audited.ack(broken, alert, "anh", "x", now))  # fmt: skip
    assert get_alert(store, alert.id, now).acked_by is None
    before = len(list_silences(store, now))
    with pytest.raises(ValueError):
        add_silence(store, starts=now, ends=now + 60, created_by="anh", now=now, rule="port_down",
                    also=audited.silence(broken, "silence_create", now))  # fmt: skip
    assert len(list_silences(store, now)) == before
    assert audit.entries(store) == []
    # With its row, it happens: both in one commit.
    acknowledge(store, alert.id, "anh", "x", now, also=audited.ack(ADMIN, alert, "anh", "x", now))
    assert get_alert(store, alert.id, now).acked_by == "anh"
    [row] = audit.entries(store)
    assert (row.action, row.object, row.after["acked_by"]) == ("ack", str(alert.id), "anh")


def test_a_removal_outside_the_scope_is_refused_in_its_transaction(store: StateStore) -> None:
    now = time.time()
    wide = next(w for w in maintenance.windows(store, "dong-nai") if not w.commune)
    la_nga = Scope(("dong-nai",), ("la-nga",))
    missing = lambda: maintenance.NotFound("no maintenance window")  # noqa: E731
    write = audited.window(ADMIN, "maintenance_delete", now)
    with pytest.raises(maintenance.NotFound):
        maintenance.remove(store, wide.id, audited.removable(la_nga, missing, write))
    assert wide.id in {w.id for w in maintenance.windows(store, "dong-nai")}
    assert audit.entries(store) == []
    maintenance.remove(store, wide.id, audited.removable(Scope(("dong-nai",)), missing, write))
    [row] = audit.entries(store)
    assert row.before["reason"] == "window of dong-nai" and row.after is None


# Bounded.


def test_every_text_and_list_is_bounded(store: StateStore) -> None:
    huge = {
        "comment": "ă" * 5000,
        "ids": list(range(10_000)),
        "nested": {"deeper": {"still": {"and": {"more": {"end": 1}}}}},
        "odd": float("inf"),
        "many": {f"k{i}": "v" * 200 for i in range(500)},
    }
    with store.transaction() as db:
        audit.record(db, audit.Actor("x" * 500, "r" * 50, "a" * 500, "api"), "ack", 1.0,
                     province="p" * 500, object="o" * 500, before=huge, after=huge)  # fmt: skip
    with store.reading() as db:
        raw = db.execute("SELECT actor, address, province, object, before FROM audit").fetchone()
    assert [len(v) for v in raw[:4]] == [64, 64, 64, 64]
    assert len(raw[4].encode()) <= audit.MAX_JSON
    [row] = audit.entries(store)
    assert isinstance(row.before, dict)  # still JSON, whatever was clipped
    small = json.loads(audit.bounded_json({"comment": "ă" * 5000, "odd": float("nan")}))
    assert len(small["comment"]) == audit.MAX_TEXT + 1 and small["odd"] == "nan"
    listed = json.loads(audit.bounded_json(list(range(1000))))
    assert len(listed) == audit.MAX_ITEMS + 1 and listed[-1] == "… 900 more"


def test_rows_are_capped_whatever_the_retention(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "MAX_ROWS", 5)
    for n in range(12):
        audit.record_alone(store, ADMIN, "login", float(n))
    assert [e.at for e in audit.entries(store)] == [11.0, 10.0, 9.0, 8.0, 7.0]


def test_retention_prunes_the_audit_with_the_history(store: StateStore) -> None:
    now = time.time()
    for age_days in (500, 401, 399, 1):
        audit.record_alone(store, ADMIN, "login", now - age_days * 86400)
    Housekeeping([Task("retention", retention(store, 400 * 86400.0, 30 * 86400.0))]).run(now)
    left = [round((now - e.at) / 86400) for e in audit.entries(store)]
    assert left == [1, 399]


# The store of the previous release.


def test_the_0_2_0_store_takes_the_audit_and_reads_back_unchanged(tmp_path: Path) -> None:
    """(Its agents, alerts, silences... reading back unchanged is test_store_upgrade's.)"""
    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    with StateStore(tmp_path / "state.sqlite") as upgraded:
        assert 5 in [m.version for m in upgraded.migrated]
        assert audit.entries(upgraded) == []
        audit.record_alone(upgraded, ADMIN, "login", 1.0, province="dong-nai")
    with StateStore(tmp_path / "state.sqlite") as again:
        assert again.migrated == []
        assert [(e.action, e.province) for e in audit.entries(again)] == [("login", "dong-nai")]


# The API's export.


@pytest.fixture
def served(store: StateStore) -> Iterator[Client]:
    """An API whose one proxy (loopback) is believed: the client's address is what the
    proxy forwards, however hostile."""
    from collector.web.factory import create_app

    tokens = api_tokens({
        "all": ("admin", (), ()), "la-nga": ("technician", ("dong-nai",), ("la-nga",)),
        "viewer": ("viewer", (), ()),
    })  # fmt: skip
    settings = ApiSection(tokens=tokens, trusted_proxies=["127.0.0.1"])
    server = AppServer(create_app(HealthModel(store, INVENTORIES), store, settings)).start()
    yield Client(server.port)
    server.stop()


def test_the_api_exports_filtered_json_and_csv(store: StateStore, served: Client) -> None:
    import http.client

    from tests.scoped import token

    alert = firing(store)
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.request(
        "POST", f"/api/v1/alerts/{alert}/ack",
        body=json.dumps({"comment": "=HYPERLINK(\"http://evil.example\")"}),
        headers={"Authorization": f"Bearer {token('la-nga')}", "Content-Type": "application/json",
                 "X-Forwarded-For": "=2+3"},
    )  # fmt: skip
    assert connection.getresponse().status == 200
    connection.close()
    before = time.time()
    body = {"province": "lam-dong", "commune": "bao-loc", "duration_s": 60}
    made = served.call("POST", "/api/v1/silences", "all", body=body)
    assert made.status == 201
    everything = served.get("/api/v1/audit").json
    assert [r["action"] for r in everything] == ["silence_create", "ack"]  # newest first
    ack = everything[1]
    assert (ack["actor"], ack["role"], ack["address"], ack["via"]) == (
        "la-nga", "technician", "=2+3", "api",
    )  # fmt: skip
    assert ack["before"]["acked_by"] is None and ack["after"]["acked_by"] == "la-nga"
    # Filters: by actor, action, place, time; a filter matching nothing finds nothing.
    assert [r["action"] for r in served.get("/api/v1/audit?actor=la-nga").json] == ["ack"]
    assert [r["action"] for r in served.get("/api/v1/audit?action=ack").json] == ["ack"]
    assert [r["commune"] for r in served.get("/api/v1/audit?province=lam-dong").json] == ["bao-loc"]
    assert [r["action"] for r in served.get(f"/api/v1/audit?from={before}").json] == [
        "silence_create"
    ]
    assert served.get(f"/api/v1/audit?to={before}").json[0]["action"] == "ack"
    assert served.get("/api/v1/audit?action=shutdown").json == []
    assert served.get("/api/v1/audit?from=yesterday").status == 422
    # The commune's technician sees its own commune's rows only; a viewer, none.
    assert [r["action"] for r in served.get("/api/v1/audit", "la-nga").json] == ["ack"]
    assert served.get("/api/v1/audit", "viewer").status == 403
    # CSV: one row per action, JSON in its cells, and nothing a spreadsheet would run.
    answer = served.get("/api/v1/audit?format=csv&action=ack")
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 1 and rows[0]["address"] == "'=2+3"
    assert json.loads(rows[0]["after"])["comment"].startswith("=HYPERLINK")
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


# The command line.


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_command_line_records_the_os_user(store: StateStore, tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{store.path}"\n')
    alert = firing(store, "tan-phu")
    assert run("ack", str(alert), "-c", str(config), "-m", "VNPT", "--by", "anh")[0] == 0
    code, out = run("silence", "add", "-c", str(config), "--commune", "tan-phu", "--for", "1h")
    assert code == 0
    silence = out.split("#")[1].split()[0]
    assert run("silence", "delete", silence, "-c", str(config))[0] == 0
    code, out = run("maintenance", "add", "-c", str(config), "--province", "dong-nai",
                    "--commune", "tan-phu", "--start", "2026-12-31 22:00",
                    "--end", "2026-12-31 23:00")  # fmt: skip
    assert code == 0, out
    window = out.split("#")[1].split(":")[0]
    assert run("maintenance", "delete", window, "-c", str(config))[0] == 0
    rows = audit.entries(store)
    assert [r.action for r in rows] == [
        "maintenance_delete", "maintenance_create", "silence_delete", "silence_create", "ack",
    ]  # fmt: skip
    assert {(r.actor, r.role, r.address, r.via) for r in rows} == {
        (getpass.getuser(), "cli", "cli", "cli")
    }
    assert rows[-1].after["acked_by"] == "anh"  # who --by named; the OS user did it
    assert (rows[-1].province, rows[-1].commune) == ("dong-nai", "tan-phu")


def test_enrollment_tokens_from_the_command_line_are_audited(tmp_path: Path) -> None:
    """No broker needed to make and revoke a token: only the store and the profiles."""
    from tests.scoped import profiles_text

    (tmp_path / "admin.password").write_text("admin-password")
    profiles = tmp_path / "dong-nai.profiles.toml"
    profiles.write_text(profiles_text("dong-nai"))
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.sqlite"}"\n'
        '[dynsec]\nurl = "mqtt://127.0.0.1:1"\nusername = "admin"\n'
        f'password_file = "{tmp_path / "admin.password"}"\n'
        f'[enrollment]\nbroker_url = "mqtt://127.0.0.1:1"\nprofiles = ["{profiles}"]\n'
    )
    StateStore(tmp_path / "state.sqlite").close()
    code, out = run("enroll-token", "create", "-c", str(config), "--province", "dong-nai",
                    "--commune", "la-nga", "--uses", "3")  # fmt: skip
    assert code == 0, out
    secret = out.splitlines()[0]
    token_id = secret.split(".")[0]
    assert run("enroll-token", "revoke", token_id, "-c", str(config))[0] == 0
    with StateStore(tmp_path / "state.sqlite") as store:
        rows = audit.entries(store)
    assert [(r.action, r.object, r.via) for r in rows] == [
        ("enroll_token_revoke", token_id, "cli"), ("enroll_token_create", token_id, "cli"),
    ]  # fmt: skip
    assert rows[1].after["uses"] == 3 and secret not in json.dumps([r.after for r in rows])


def test_the_password_file_and_the_signing_key_changed_at_the_command_line_are_exported(
    store: StateStore, tmp_path: Path, served: Client
) -> None:
    """The static broker's accounts (enroll, revoke without [enrollment]: the password
    file) and the config signing key's rotation are changes outside the store: each is
    recorded as the OS user's, with before and after, and exported by the API. Without
    -c the default config names the store (here through COMMUNE_COLLECTOR_CONFIG)."""
    from collector.rollout import configkey

    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{store.path}"\n')
    passwd = tmp_path / "passwd"
    place = ["--province", "dong-nai", "--commune", "la-nga", "--agent", "pc-09",
             "--passwd-file", str(passwd), "--broker-group", ""]  # fmt: skip
    enroll = ["enroll", *place, "--broker-url", "mqtts://b:8883", "--out", str(tmp_path / "out")]
    result = CliRunner(env={"COMMUNE_COLLECTOR_CONFIG": str(config)}).invoke(main, enroll)
    assert result.exit_code == 0, result.output
    assert run(*enroll)[0] == 1  # already enrolled: refused, and not recorded
    assert run("revoke", *place, "-c", str(config), "--by", "anh")[0] == 0
    # The signing key: its config needs [enrollment]; the store is the same.
    (tmp_path / "admin.password").write_text("admin-password")
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(
        f'[store]\npath = "{store.path}"\n[dynsec]\nusername = "admin"\n'
        f'password_file = "{tmp_path / "admin.password"}"\n'
        '[enrollment]\nbroker_url = "mqtt://127.0.0.1:1"\nprofiles = []\n'
    )
    first = configkey.load(Path(store.path).with_name(configkey.DEFAULT_NAME), create=True)
    assert run("config-key", "rotate", "-c", str(keyed))[0] == 0
    assert run("config-key", "rotate", "-c", str(keyed))[0] == 1  # under way: not recorded
    assert run("config-key", "finish", "-c", str(keyed))[0] == 0  # no agent to wait for
    second = configkey.load(Path(store.path).with_name(configkey.DEFAULT_NAME)).current
    assert second.id != first.current.id

    rows = served.get("/api/v1/audit?actor=" + getpass.getuser()).json
    assert [(r["action"], r["object"], r["role"], r["via"]) for r in rows] == [
        ("config_key_finish", second.id, "cli", "cli"),
        ("config_key_rotate", second.id, "cli", "cli"),
        ("agent_revoke", "dong-nai/la-nga/pc-09", "cli", "cli"),
        ("agent_enroll", "dong-nai/la-nga/pc-09", "cli", "cli"),
    ]  # fmt: skip
    finish, rotate, revoke, enrolled = rows
    assert enrolled["before"]["in_password_file"] is False
    assert enrolled["after"]["in_password_file"] is True
    assert (enrolled["province"], enrolled["commune"], enrolled["agent"]) == (
        "dong-nai", "la-nga", "pc-09",
    )  # fmt: skip
    assert revoke["before"]["in_password_file"] is True and revoke["after"]["by"] == "anh"
    assert revoke["after"]["in_password_file"] is False
    assert rotate["before"] == {"current": first.current.id, "next": None}
    assert rotate["after"] == {"current": first.current.id, "next": second.id}
    assert finish["before"] == {"current": first.current.id, "next": second.id}
    assert finish["after"]["current"] == second.id and finish["after"]["forced"] is False
    password = (tmp_path / "out" / "dong-nai_la-nga_pc-09" / "mqtt-password").read_text().strip()
    exported = served.get("/api/v1/audit?format=csv").text
    assert "agent_enroll" in exported and "config_key_finish" in exported
    assert password not in exported and password not in json.dumps(rows)
    # The commune's technician sees its commune's rows; the collector-wide key, not.
    seen = served.get("/api/v1/audit", "la-nga").json
    assert [r["action"] for r in seen if r["agent"] == "pc-09"] == ["agent_revoke", "agent_enroll"]
    assert not any(r["action"].startswith("config_key") for r in seen)


def test_a_change_on_a_host_without_a_store_is_made_and_said_unrecorded(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "nowhere" / "state.sqlite"}"\n')
    result = CliRunner().invoke(main, [
        "enroll", "--province", "dong-nai", "--commune", "la-nga", "--agent", "pc-09",
        "--passwd-file", str(tmp_path / "passwd"), "--broker-group", "", "-c", str(config),
        "--broker-url", "mqtts://b:8883", "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "not in the operators' audit: no state store at" in result.output
    assert "dong-nai/la-nga/pc-09:" in (tmp_path / "passwd").read_text()
    assert not (tmp_path / "nowhere").exists()


# Scoped tokens in the config.


def config_of(*tokens: str) -> dict[str, object]:
    entries = [{"name": f"t{i}", "sha256": "0" * 64, **json.loads(t)} for i, t in enumerate(tokens)]
    return {"api": {"tokens": entries}}


@pytest.mark.parametrize(
    ("token", "where"),
    [
        ('{"communes": ["la-nga"]}', "api.tokens[0].communes"),
        ('{"provinces": ["a", "b"], "communes": ["la-nga"]}', "api.tokens[0].communes"),
        ('{"provinces": ["dong-nai", "dong-nai"]}', "api.tokens[0].provinces"),
        ('{"provinces": ["dong-nai"], "communes": ["x", "y", "x"]}', "api.tokens[0].communes"),
        ('{"provinces": ["Đồng Nai"]}', "api.tokens[0].provinces[0]"),
        ('{"provinces": "dong-nai"}', "api.tokens[0].provinces"),
        ('{"role": "operator"}', "api.tokens[0].role"),
        ('{"scope": "all"}', "api.tokens[0]"),
    ],
)
def test_a_bad_scope_is_refused_by_key(token: str, where: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_collector_config(config_of(token), "collector.toml")
    assert f"collector.toml: {where}" in str(refused.value)


def test_roles_and_scopes_as_configured() -> None:
    from collector.web.auth import caller_of

    config = parse_collector_config(config_of(
        '{"role": "read"}', "{}", '{"role": "technician", "provinces": ["dong-nai"], '
        '"communes": ["la-nga", "tan-phu"]}',
    ))  # fmt: skip
    callers = [caller_of(t) for t in config.api.tokens]
    assert [c.role for c in callers] == ["viewer", "viewer", "technician"]  # read is viewer
    assert callers[0].scope.everything and callers[1].scope.everything
    assert callers[2].scope == Scope(("dong-nai",), ("la-nga", "tan-phu"))


def test_the_token_command_prints_lines_the_config_takes(tmp_path: Path) -> None:
    code, out = run("token", "tech-la-nga", "--role", "technician", "--province", "dong-nai",
                    "--commune", "la-nga", "--commune", "tan-phu")  # fmt: skip
    assert code == 0, out
    secret = out.splitlines()[1].strip()
    lines = out.split("add to the collector's config:\n", 1)[1]
    config = tmp_path / "collector.toml"
    config.write_text(lines)
    from collector.config import load_collector_config
    from collector.web.auth import caller_of, token_digest

    [made] = load_collector_config(config).api.tokens
    assert made.sha256 == token_digest(secret)
    assert caller_of(made).scope == Scope(("dong-nai",), ("la-nga", "tan-phu"))
    code, out = run("token", "x", "--commune", "la-nga")
    assert code == 2 and "--commune" in out and "exactly one province" in out
    code, out = run("token", "x", "--province", "../etc")
    assert code == 2 and "not a slug" in out
    assert 'role = "viewer"' in run("token", "ioc", "--role", "read")[1]


def test_a_missing_alert_and_one_outside_answer_alike(store: StateStore) -> None:
    """The words a caller outside gets are those of a thing that does not exist."""
    from collector.web.scope import alert_in_scope

    alert = firing(store, "bao-loc")
    with pytest.raises(NotFound) as outside:
        alert_in_scope(store, Scope(("dong-nai",)), alert)
    with pytest.raises(NotFound) as missing:
        alert_in_scope(store, Scope(), 999_999)
    assert str(outside.value).replace(str(alert), "N") == str(missing.value).replace("999999", "N")
