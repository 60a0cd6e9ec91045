"""The collector's config and inventory: the annotated sample parses, mistakes are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.configtypes import ConfigError
from collector.cli.main import main as collector_main
from collector.config import load_collector_config, parse_collector_config
from collector.state.inventory import load_inventory

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "deploy" / "collector" / "collector.example.toml"
DONG_NAI = REPO / "deploy" / "inventory" / "dong-nai.toml"


def test_the_annotated_sample_parses_with_its_files_in_place(tmp_path: Path) -> None:
    """The sample names files under /etc: give them a home and the whole config is valid."""
    text = SAMPLE.read_text().replace("/etc/commune-collector/", f"{tmp_path}/")
    for name in ("mqtt-password", "ca.pem", "influx-token", "dynsec-admin-password"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "dong-nai.toml").write_text(
        (REPO / "deploy" / "profiles" / "dong-nai.toml").read_text()
    )
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "la-nga.community").write_text("la-nga-ro\n")
    (tmp_path / "console-secret").write_text("k" * 48 + "\n")
    (tmp_path / "zalo-secret").write_text("AbC123456XyZ\n")
    (tmp_path / "head-of-it.urls").write_text(
        "mailtos://alerts:pw@mail.dong-nai.gov.vn?to=it@dong-nai.gov.vn\n"
    )
    (tmp_path / "zalo").mkdir()
    (tmp_path / "zalo" / "zalo-tokens.json").write_text('{"refresh_token": "r"}')
    text = text.replace("/var/lib/commune-collector/", f"{tmp_path}/zalo/")
    (tmp_path / "technicians.urls").write_text("mailtos://tech:secret@mail.dong-nai.example\n")
    (tmp_path / "rules.toml").write_text((SAMPLE.parent / "rules.example.toml").read_text())
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "dong-nai.toml").write_text(DONG_NAI.read_text())
    (tmp_path / "inventory" / "dong-nai.systems.toml").write_text(
        (REPO / "deploy" / "inventory" / "dong-nai.systems.toml").read_text()
    )
    path = tmp_path / "collector.toml"
    path.write_text(text)
    config = load_collector_config(path)
    assert config.collector.provinces == ["dong-nai"]
    assert float(config.store.retention) == 400 * 86400
    assert config.sink is not None and float(config.sink.max_backoff) == 60
    assert config.api.address() == ("0.0.0.0", 8080)
    assert [(t.role, t.provinces, t.communes) for t in config.api.tokens] == [
        ("viewer", [], []),
        ("admin", ["dong-nai"], []),
        ("technician", ["dong-nai"], ["la-nga", "tan-phu"]),
    ]
    assert [r.name for r in config.alerts.routes] == [
        "technicians", "zalo-duty", "so-khcn", "head-of-it",
    ]  # fmt: skip
    assert config.collector.systems == [str(tmp_path / "inventory" / "dong-nai.systems.toml")]
    zalo = config.alerts.routes[1].zalo
    assert zalo is not None and zalo.token_file == f"{tmp_path}/zalo/zalo-tokens.json"
    assert [(float(e.after), e.route) for e in config.alerts.escalation] == [(1800, "head-of-it")]
    assert config.console.session_hours == 12
    assert config.report.issuing("12").number == "12" and config.report.issuer_short == "SKHCN"
    issuer = config.report.issuing("12")
    assert (issuer.signer_authority, issuer.signer_title) == ("KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC")
    assert issuer.addressee == "UBND tỉnh" and issuer.basis[0].startswith("Kế hoạch số 65")
    english = issuer.in_language("en")
    assert english.body == "DEPARTMENT OF SCIENCE AND TECHNOLOGY" and english.number == "12"
    assert english.signer_title == "DEPUTY DIRECTOR" and english.signer_name == "Nguyễn Văn A"
    assert config.dynsec is not None and config.dynsec.username == "commune-admin"
    assert config.enrollment is not None
    assert config.enrollment.profiles == [str(tmp_path / "profiles" / "dong-nai.toml")]
    assert config.enrollment.secrets_dir == str(tmp_path / "secrets")
    from collector.rollout.profiles import load_all
    from collector.state.systems import load_catalogues

    catalogues = load_catalogues(
        config.collector.systems, [load_inventory(p) for p in config.collector.inventory]
    )
    profiles = load_all(
        config.enrollment.profiles, secrets_dir=config.enrollment.secrets_dir, systems=catalogues
    )
    poller = profiles.effective("dong-nai", "la-nga", "poller", "poller")
    assert poller.checks["snmp"][0]["community"] == "la-nga-ro"  # read from the secrets folder
    # The poller probes the shared systems and La Ngà's website; the office PCs do not.
    probes = {c["name"]: c for c in poller.checks["system"]}
    assert len(probes) == 10 and probes["website"]["url"] == "https://langa.dongnai.gov.vn/"
    assert probes["lgsp"] == {
        "name": "lgsp", "host": "lgsp.dongnai.gov.vn", "port": 8443, "network": "tslcd",
        "system": "Nền tảng tích hợp, chia sẻ dữ liệu tỉnh (LGSP)", "kind": "lgsp",
    }  # fmt: skip
    assert "system" not in profiles.effective("dong-nai", "la-nga", "pc-07", "office").checks


def test_the_example_rules_parse_and_replace_a_builtin_by_name() -> None:
    from collector.alerts.rules import default_rules, load_rules, merge

    custom = load_rules(SAMPLE.parent / "rules.example.toml")
    merged = {r.name: r for r in merge(default_rules(), custom)}
    assert len(merged) == len(default_rules()) + 2  # one replaced, two added
    assert merged["signatures_old"].when[1].value == 2


def test_the_dong_nai_inventory_names_the_communes_of_the_report() -> None:
    inventory = load_inventory(DONG_NAI)
    names = {c.name for c in inventory.communes}
    assert {
        "Xã La Ngà",
        "Xã Phú Hòa",
        "Phường Biên Hòa",
        "Xã Minh Đức",
        "Phường Minh Hưng",
        "Xã Lộc Quang",
        "Xã Lộc Thành",
        "Xã Tân Tiến",
        "Xã Xuân Thành",
    } <= names
    # The official register's 95 units, each with its code; the nine keep their slugs.
    assert len(inventory.communes) == 95 and len({c.code for c in inventory.communes}) == 95
    codes = {c.slug: c.code for c in inventory.communes}
    assert codes["la-nga"] == "26227" and codes["loc-thanh"] == "25294"  # not Lộc Thạnh
    assert sum(c.name.startswith("Phường") for c in inventory.communes) == 23
    assert all(c.polycoms == 1 for c in inventory.communes)


def test_the_shipped_inventory_is_what_the_register_writes(tmp_path: Path) -> None:
    """Run again over itself, the command changes nothing: what ships is the register's."""
    copy = tmp_path / "dong-nai.toml"
    copy.write_text(DONG_NAI.read_text())
    result = CliRunner().invoke(
        collector_main, ["inventory", "--province", "dong-nai", "--routers", "1",
                         "--polycoms", "1", "-o", str(copy)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert copy.read_text() == DONG_NAI.read_text()


def test_the_inventory_carries_each_communes_expected_pcs(tmp_path: Path) -> None:
    """--pcs fills the count where the file does not give it; one given is kept; the
    province's pcs_expected and "% protected" are then of them."""
    from collector.state.health import HealthModel
    from collector.state.store import StateStore

    copy = tmp_path / "dong-nai.toml"
    copy.write_text(DONG_NAI.read_text().replace('slug = "la-nga"\n', 'slug = "la-nga"\npcs = 3\n'))
    result = CliRunner().invoke(
        collector_main, ["inventory", "--province", "dong-nai", "--pcs", "8", "-o", str(copy)]
    )
    assert result.exit_code == 0, result.output
    inventory = load_inventory(copy)
    assert inventory.commune("la-nga").pcs == 3  # type: ignore[union-attr]
    assert {c.pcs for c in inventory.communes if c.slug != "la-nga"} == {8}
    province = HealthModel(StateStore(tmp_path / "state.sqlite"), [inventory]).province("dong-nai")
    assert province.pcs_expected == 94 * 8 + 3 == province.pcs_denominator
    assert province.percent_protected_of == "expected" and province.percent_protected == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[communes]]\nslug = "a"\nname = "Xã A"\n[[communes]]\nslug = "a"\nname = "Xã B"\n',
         "communes[1] (a).slug: 'a' is listed twice (also communes[0])"),
        ('[[communes]]\nslug = "a"\nname = "Xã A"\ncode = "26227"\n'
         '[[communes]]\nslug = "b"\nname = "Xã B"\ncode = "26227"\n',
         "communes[1] (b).code: 26227 is listed twice"),
        ('[[communes]]\nslug = "a"\nname = "Xã A"\ncode = "00070"\n',
         "00070 is no unit of Đồng Nai"),
    ],
)  # fmt: skip
def test_an_inventory_that_contradicts_the_register_is_refused_by_name(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text('province = "dong-nai"\n' + text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_inventory(path)
    path.write_text('province = "atlantis"\n[[communes]]\nslug = "a"\nname = "Xã A"\n'
                    'code = "26227"\n')  # fmt: skip
    with pytest.raises(ConfigError, match="not a province of the official register"):
        load_inventory(path)


def test_the_inventory_command_names_an_unknown_province() -> None:
    result = CliRunner().invoke(collector_main, ["inventory", "--province", "atlantis"])
    assert result.exit_code == 1 and "dong-nai" in result.output


TOKEN = "0" * 64


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[api]\nlisten = "0.0.0.0:8080"\nopen_on_loopback = true\n', "api.open_on_loopback"),
        ('[api]\nlisten = "8080"\n', "api.listen: expected host:port"),
        ('[api]\nlisten = "127.0.0.1:99999"\n', "api.listen"),
        ('[api]\nlisten = "127.0.0.1:\u00b2"\n', "api.listen: expected host:port"),
        ('[[api.tokens]]\nname = "ioc"\nsha256 = "secret"\n', "api.tokens[0].sha256"),
        ('[[api.tokens]]\nname = "ioc"\nrole = "root"\nsha256 = "' + TOKEN + '"\n', "role"),
        (
            f'[[api.tokens]]\nname = "a"\nsha256 = "{TOKEN}"\n'
            f'[[api.tokens]]\nname = "a"\nsha256 = "{TOKEN}"\n',
            "two tokens have the same name",
        ),
        ("[collector]\ninventory = ['/nonexistent/inventory.toml']\n", "no such file"),
        ('[sink]\nurl = "http://vm:8428"\nmax_backoff = "soon"\n', "sink.max_backoff"),
        ('[sink]\nurl = "http://:8428"\n', "sink.url: expected http(s)://host:port"),
        ("[store]\nforget_agents_after = -1\n", "store.forget_agents_after"),
        ("[store]\nmax_alerts = 10\n", "store.max_alerts"),
    ],
)
def test_config_mistakes_are_named(toml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_collector_config(path)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "x"\n', "province"),
        ('province = "Đồng Nai"\n', "province"),
        (
            'province = "dong-nai"\n[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n'
            '[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n',
            "communes[1] (la-nga).slug: 'la-nga' is listed twice",
        ),
        (
            'province = "dong-nai"\n[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n'
            'code = "26A"\n',
            "communes[0] (la-nga).code: expected 5 digits",
        ),
        (
            'province = "dong-nai"\n[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n'
            'code = "26227\\n"\n',
            "communes[0] (la-nga).code: expected 5 digits",
        ),
        (
            'province = "dong-nai"\n[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\npcs = -3\n',
            "communes[0].pcs",
        ),
        ('province = "dong-nai"\n[[communes]]\nslug = "la-nga"\n', "communes[0]"),
    ],
)
def test_inventory_mistakes_are_named(toml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_inventory(path)


def test_two_inventories_for_one_province_are_refused(tmp_path: Path) -> None:
    data = {"collector": {"inventory": [str(DONG_NAI), str(DONG_NAI)]}}
    with pytest.raises(ConfigError, match="are both for 'dong-nai'"):
        parse_collector_config(data, "collector.toml")


@pytest.mark.parametrize("secret", [b"", b"\n", b"x" * 31, b"  " + b"x" * 31 + b"\n"])
def test_a_console_secret_too_short_to_sign_is_a_config_error(
    secret: bytes, tmp_path: Path
) -> None:
    # An empty secret lets anyone forge an admin's session cookie.
    path = tmp_path / "console-secret"
    path.write_bytes(secret)
    data = {"console": {"secret_file": str(path)}}
    with pytest.raises(ConfigError, match=r"console\.secret_file: .* needs at least 32"):
        parse_collector_config(data, "collector.toml")


def test_a_console_secret_of_32_bytes_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "console-secret"
    path.write_bytes(b"x" * 32 + b"\n")
    config = parse_collector_config({"console": {"secret_file": str(path)}}, "collector.toml")
    assert config.console.secret_file == str(path)
