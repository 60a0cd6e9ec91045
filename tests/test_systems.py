"""The catalogue of shared systems: the sample parses, every mistake is refused by entry
and key, the collector's config checks it against the inventory and the alert routes,
and the check profiles turn it into one agent's probes per commune."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.config import OPTIONS, parse_checks
from agent.configkeys import verify
from agent.configtypes import BrokerSection, ConfigError, parse_toml
from agent.wire import AgentConfig, decode_config, decode_signed_config
from collector.cli.main import main as collector_main
from collector.config import load_collector_config
from collector.rollout import configkey, registry
from collector.rollout.configs import ConfigSender
from collector.rollout.profiles import Candidate, ProfileError, load_all, parse_profiles
from collector.rollout.service import ProfileFiles
from collector.state.inventory import Commune, Inventory, load_inventory
from collector.state.store import StateStore
from collector.state.systems import Catalogue, SystemFiles, load_catalogue, parse_catalogue
from tests.servers import Mosquitto, Subscriber, wait_for

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "deploy" / "inventory" / "dong-nai.systems.toml"
DONG_NAI = REPO / "deploy" / "inventory" / "dong-nai.toml"

INVENTORY = Inventory(
    province="dong-nai",
    communes=[
        Commune(slug="la-nga", name="Xã La Ngà"),
        Commune(slug="phu-ly", name="Xã Phú Lý"),
        Commune(slug="tan-phu", name="Xã Tân Phú", formerly=["tan-phu-old"]),
    ],
)

CATALOGUE = """
province = "dong-nai"

[[systems]]
id = "mot-cua"
name = "Hệ thống một cửa điện tử"
kind = "one-stop"
url = "https://motcua.dongnai.gov.vn/"
network = "tslcd"
expect_status = [200]
expect_text = "Dịch vụ công"
owner = "Sở KH&CN"
route = "so-khcn"

[[systems]]
id = "lgsp"
name = "LGSP"
kind = "lgsp"
host = "lgsp.dongnai.gov.vn"
port = 8443
network = "tslcd"

[[systems]]
id = "dongnai-lis"
name = "DongNai.LIS"
kind = "land"
url = "https://dongnailis.dongnai.gov.vn/"
network = "internet"
communes = ["phu-ly", "tan-phu"]

[[websites]]
commune = "la-nga"
url = "https://langa.dongnai.gov.vn/"
expect_text = "La Ngà"

[[websites]]
commune = "phu-ly"
url = "https://phuly.dongnai.gov.vn/"
name = "Cổng thông tin Phú Lý"
network = "tslcd"
"""


WEBSITE = '[[websites]]\ncommune = "la-nga"\nurl = "https://a.vn/"\n'


def catalogue(text: str = CATALOGUE, routes: list[str] | None = None) -> Catalogue:
    return parse_catalogue(parse_toml(text, "dong-nai.systems.toml"), "dong-nai.systems.toml",
                           INVENTORY, routes)  # fmt: skip


def test_the_sample_catalogue_parses_against_the_province_inventory() -> None:
    found = load_catalogue(SAMPLE, load_inventory(DONG_NAI))
    assert [s.id for s in found.systems] == [
        "mot-cua", "dich-vu-cong", "qlvb", "thu-dien-tu", "hop-khong-giay", "bao-cao",
        "dongnai-lis", "lgsp", "ioc",
    ]  # fmt: skip
    assert found.summary() == "9 shared systems, 95 websites"
    assert {s.kind for s in found.systems} >= {"one-stop", "documents", "email", "meetings",
                                               "reporting", "land", "lgsp", "ioc"}  # fmt: skip
    la_nga = found.website("la-nga")
    assert la_nga is not None and la_nga.name == "Trang thông tin điện tử Xã La Ngà"
    assert all(w.url.endswith(".dongnai.gov.vn/") for w in found.websites)


def test_a_catalogue_decodes_with_its_defaults() -> None:
    found = catalogue()
    mot_cua, lgsp, lis = found.systems
    assert (mot_cua.cert_min_days, mot_cua.target, mot_cua.route) == (14, mot_cua.url, "so-khcn")
    assert (lgsp.target, lgsp.expect_status, lgsp.communes) == ("lgsp.dongnai.gov.vn:8443", [], [])
    assert found.used_by(lgsp, INVENTORY) == ["la-nga", "phu-ly", "tan-phu"]
    assert found.used_by(lis, INVENTORY) == ["phu-ly", "tan-phu"]
    site = found.website("la-nga")
    assert site is not None and (site.network, site.name) == (
        "internet", "Trang thông tin điện tử Xã La Ngà",
    )  # fmt: skip
    assert found.website("tan-phu") is None


def entry(**keys: Any) -> str:
    """One system, the valid one changed by ``keys`` (None removes a key)."""
    base: dict[str, Any] = {
        "id": "mot-cua", "name": "Một cửa", "kind": "one-stop",
        "url": "https://motcua.dongnai.gov.vn/", "network": "tslcd",
    }  # fmt: skip
    base.update(keys)
    lines = [f"{k} = {_toml(v)}" for k, v in base.items() if v is not None]
    return 'province = "dong-nai"\n[[systems]]\n' + "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (entry(colour="blue"), "systems[0] (mot-cua).colour: unknown key"),
        (entry(url=None), "systems[0] (mot-cua).url: required key is missing"),
        (entry(network="wifi"), "systems[0] (mot-cua).network: expected one of"),
        (entry(network=None), "systems[0] (mot-cua).network: required key is missing"),
        (entry(kind="portal"), "systems[0] (mot-cua).kind: expected one of"),
        (entry(id="Một Cửa"), "systems[0].id: expected `str` matching regex"),
        (entry(url="ftp://motcua.dongnai.gov.vn/"), "(mot-cua).url: expected http(s)://"),
        (entry(url="https://"), "(mot-cua).url: expected http(s)://"),
        (entry(url="https://mot cua.vn/"), "(mot-cua).url: expected a URL without spaces"),
        (entry(url="https://u:p@motcua.vn/"), "(mot-cua).url: no user or password"),
        (entry(url="https://motcua.vn:99999/"), "(mot-cua).url: the port of"),
        (entry(host="lgsp.vn", port=8443), "(mot-cua).url: either url, or host and port"),
        (entry(url=None, host="lgsp.vn"), "(mot-cua).port: required with host"),
        (entry(url=None, port=8443), "(mot-cua).host: required with port"),
        (entry(url=None, host="lgsp vn", port=1), "(mot-cua).host: expected a host name"),
        (entry(url=None, host="lgsp.vn", port=70000), "(mot-cua).port: expected `int` <= 65535"),
        (entry(url=None, host="lgsp.vn", port=8443, expect_text="OK"),
         "(mot-cua).expect_text: a system probed by host and port"),
        (entry(expect_status=[200, 99]), "(mot-cua).expect_status[1]: expected `int` >= 100"),
        (entry(expect_status=[600]), "(mot-cua).expect_status[0]: expected `int` <= 599"),
        (entry(expect_text="x" * 201), "(mot-cua).expect_text: expected `str` of length <= 200"),
        (entry(name="Một cửa\nđiện tử"), "(mot-cua).name: expected `str` matching regex"),
        (entry(name="Một cửa\n"), "(mot-cua).name: expected `str` matching regex"),
        (entry(owner="Sở\tKH&CN"), "(mot-cua).owner: expected `str` matching regex"),
        (entry(expect_text="\x1b[31m"), "(mot-cua).expect_text: expected `str` matching"),
        (entry(cert_min_days=0), "(mot-cua).cert_min_days: expected `int` >= 1"),
        (entry(cert_min_days=366), "(mot-cua).cert_min_days: expected `int` <= 365"),
        (entry(communes=["atlantis"]), "(mot-cua).communes: 'atlantis' is no commune"),
        (entry(communes=["tan-phu-old"]),
         "(mot-cua).communes: 'tan-phu-old' is the former slug of 'tan-phu'"),
        (entry(communes=["la-nga", "la-nga"]), "(mot-cua).communes: 'la-nga' is listed twice"),
        (entry(id="website"), "systems[0] (website).id: 'website' is the communes' own"),
        (entry() + '[[systems]]\nid = "mot-cua"\nname = "x"\nkind = "other"\nurl = "http://x/"\n'
         'network = "internet"\n', "systems[1] (mot-cua).id: 'mot-cua' is listed twice"),
        (entry(route="nobody"), "(mot-cua).route: no [[alerts.routes]] named 'nobody'"),
        ('province = "dong-nai"\n[[websites]]\ncommune = "atlantis"\nurl = "https://a.vn/"\n',
         "websites[0] (atlantis).commune: 'atlantis' is no commune of the inventory"),
        ('province = "dong-nai"\n[[websites]]\ncommune = "la-nga"\n',
         "websites[0] (la-nga).url: required key is missing"),
        ('province = "dong-nai"\n[[websites]]\ncommune = "la-nga"\nurl = "langa.vn"\n',
         "websites[0] (la-nga).url: expected http(s)://"),
        ('province = "dong-nai"\n' + WEBSITE * 2,
         "websites[1] (la-nga).commune: la-nga has a website already (websites[0])"),
        ('province = "dong-nai"\n[[websites]]\ncommune = "la-nga"\nurl = "https://a.vn/"\n'
         'route = "nobody"\n', "websites[0] (la-nga).route: no [[alerts.routes]]"),
        ('province = "lam-dong"\n', "province: no inventory for 'lam-dong'"),
        ('province = "dong-nai"\nextra = 1\n', "extra: unknown key"),
    ],
)  # fmt: skip
def test_every_mistake_is_refused_naming_the_entry_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        catalogue(text, routes=["so-khcn", "technicians"])
    assert str(caught.value).startswith("dong-nai.systems.toml: ")
    assert message in str(caught.value)


def test_an_unresolvable_name_is_no_config_error() -> None:
    """The probe's job: such a system is down, not a catalogue that cannot load."""
    found = catalogue(entry(url="https://no-such-name.invalid/"))
    assert found.systems[0].url == "https://no-such-name.invalid/"


# The collector's config --------------------------------------------------------------


def write_site(tmp_path: Path, systems: str = CATALOGUE, route: str = "so-khcn") -> Path:
    (tmp_path / "inventory.toml").write_text(
        'province = "dong-nai"\n'
        + "".join(
            f'[[communes]]\nslug = "{c.slug}"\nname = "{c.name}"\n' for c in INVENTORY.communes
        )
    )
    (tmp_path / "systems.toml").write_text(systems)
    path = tmp_path / "collector.toml"
    path.write_text(
        '[collector]\ninventory = ["inventory.toml"]\nsystems = ["systems.toml"]\n'
        f'[[alerts.routes]]\nname = "{route}"\nurls = ["json://ioc.example/hook"]\n'
    )
    return path


def test_the_config_names_catalogues_relative_to_itself(tmp_path: Path) -> None:
    config = load_collector_config(write_site(tmp_path))
    assert config.collector.systems == [str(tmp_path / "systems.toml")]


def test_the_config_refuses_a_route_it_does_not_have(tmp_path: Path) -> None:
    path = write_site(tmp_path, route="technicians")
    with pytest.raises(ConfigError) as caught:
        load_collector_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: collector.systems: {tmp_path / 'systems.toml'}: ")
    assert "systems[0] (mot-cua).route: no [[alerts.routes]] named 'so-khcn'" in text
    assert "(routes: technicians)" in text


def test_the_config_refuses_a_catalogue_without_its_inventory(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    path.write_text(path.read_text().replace('inventory = ["inventory.toml"]\n', ""))
    with pytest.raises(ConfigError, match="province: no inventory for 'dong-nai'"):
        load_collector_config(path)


def test_the_config_refuses_two_catalogues_of_one_province(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    (tmp_path / "again.toml").write_text(CATALOGUE)
    path.write_text(path.read_text().replace('"systems.toml"]', '"systems.toml", "again.toml"]'))
    with pytest.raises(ConfigError, match=r"'dong-nai' has a catalogue in .*systems\.toml already"):
        load_collector_config(path)


def test_check_config_says_how_many_systems_and_websites(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    result = CliRunner().invoke(collector_main, ["check-config", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "  dong-nai: 3 shared systems, 2 websites\n" in result.output
    (tmp_path / "systems.toml").write_text(entry(network="wifi"))
    result = CliRunner().invoke(collector_main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    assert "systems[0] (mot-cua).network: expected one of" in result.output


def test_check_config_counts_the_sample(tmp_path: Path) -> None:
    (tmp_path / "dong-nai.toml").write_text(DONG_NAI.read_text())
    (tmp_path / "dong-nai.systems.toml").write_text(SAMPLE.read_text())
    path = tmp_path / "collector.toml"
    path.write_text(
        '[collector]\ninventory = ["dong-nai.toml"]\nsystems = ["dong-nai.systems.toml"]\n'
        '[[alerts.routes]]\nname = "so-khcn"\nurls = ["json://ioc.example/hook"]\n'
    )
    result = CliRunner().invoke(collector_main, ["check-config", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "  dong-nai: 9 shared systems, 95 websites\n" in result.output


# The profiles --------------------------------------------------------------------------

PROFILES = """
province = "dong-nai"
[profiles.office]
[[profiles.office.checks.host]]
[profiles.poller]
systems = true
[[profiles.poller.checks.link]]
name = "tslcd-province"
network = "tslcd"
target = "10.75.0.1"
"""


def profiles(text: str = PROFILES, systems: Catalogue | None = None) -> Any:
    data = parse_toml(text, "profiles.toml")
    return parse_profiles(data, "profiles.toml", Path("."), systems or catalogue())


def test_the_poller_of_la_nga_probes_every_system_la_nga_uses_and_its_website() -> None:
    poller = profiles().effective("la-nga", "poller", "poller")
    assert [c["name"] for c in poller.checks["system"]] == ["mot-cua", "lgsp", "website"]
    mot_cua, lgsp, website = poller.checks["system"]
    assert mot_cua == {
        "name": "mot-cua", "url": "https://motcua.dongnai.gov.vn/", "network": "tslcd",
        "expect_status": [200], "expect_text": "Dịch vụ công", "verify_tls": True,
        "system": "Hệ thống một cửa điện tử", "kind": "one-stop",
    }  # fmt: skip
    assert lgsp == {
        "name": "lgsp", "host": "lgsp.dongnai.gov.vn", "port": 8443, "network": "tslcd",
        "system": "LGSP", "kind": "lgsp",
    }  # fmt: skip
    assert website == {
        "name": "website", "url": "https://langa.dongnai.gov.vn/", "network": "internet",
        "expect_text": "La Ngà", "verify_tls": True,
        "system": "Trang thông tin điện tử Xã La Ngà", "kind": "website",
    }  # fmt: skip
    assert poller.checks["link"][0]["name"] == "tslcd-province"  # its own checks stay


def test_a_system_of_some_communes_is_probed_from_those_only() -> None:
    loaded = profiles()
    phu_ly = loaded.effective("phu-ly", "poller", "poller").checks["system"]
    assert [c["name"] for c in phu_ly] == ["mot-cua", "lgsp", "dongnai-lis", "website"]
    assert phu_ly[-1]["system"] == "Cổng thông tin Phú Lý" and phu_ly[-1]["network"] == "tslcd"
    tan_phu = loaded.effective("tan-phu", "poller", "poller").checks["system"]
    assert [c["name"] for c in tan_phu] == ["mot-cua", "lgsp", "dongnai-lis"]  # no website


def test_an_office_pc_does_not_probe() -> None:
    office = profiles().effective("la-nga", "ketoan-01", "office")
    assert "system" not in office.checks and list(office.checks) == ["host"]


def test_the_hash_follows_the_catalogue() -> None:
    """A changed catalogue is a changed config: the sender sends it again."""
    before = profiles().effective("la-nga", "poller", "poller").hash
    changed = catalogue(CATALOGUE.replace('expect_text = "La Ngà"', 'expect_text = "UBND"'))
    assert profiles(systems=changed).effective("la-nga", "poller", "poller").hash != before


def test_a_commune_without_a_poller_names_its_pc() -> None:
    text = PROFILES + '[agents."tan-phu/pc-01"]\nsystems = true\n'
    loaded = profiles(text)
    named = loaded.effective("tan-phu", "pc-01", "office")
    assert [c["name"] for c in named.checks["system"]] == ["mot-cua", "lgsp", "dongnai-lis"]
    assert "system" not in loaded.effective("tan-phu", "pc-02", "office").checks


def test_a_poller_can_be_left_out_and_a_system_removed_for_one_agent() -> None:
    text = (
        PROFILES + '[agents."la-nga/poller"]\nsystems = false\n'
        '[agents."phu-ly/poller"]\nremove = ["system:dongnai-lis"]\n'
    )
    loaded = profiles(text)
    assert "system" not in loaded.effective("la-nga", "poller", "poller").checks
    phu_ly = loaded.effective("phu-ly", "poller", "poller").checks["system"]
    assert [c["name"] for c in phu_ly] == ["mot-cua", "lgsp", "website"]


def test_two_agents_of_a_commune_are_never_both_named() -> None:
    text = (
        PROFILES + '[agents."tan-phu/pc-01"]\nsystems = true\n'
        '[agents."tan-phu/pc-02"]\nsystems = true\n'
    )
    with pytest.raises(ProfileError, match=r"agents\.tan-phu/pc-02\.systems: pc-01 of tan-phu"):
        profiles(text)


def test_of_two_pollers_of_a_commune_the_first_enrolled_probes() -> None:
    loaded = load_all_with(PROFILES + '[agents."tan-phu/pc-01"]\nsystems = true\n')
    chosen = loaded.probers([
        Candidate("dong-nai", "la-nga", "poller-b", "poller", 200.0),
        Candidate("dong-nai", "la-nga", "poller-a", "poller", 100.0),
        Candidate("dong-nai", "la-nga", "pc-01", "office", 50.0),
        Candidate("dong-nai", "tan-phu", "poller", "poller", 10.0),
        Candidate("dong-nai", "tan-phu", "pc-01", "office", 900.0),  # named: it wins
        Candidate("dong-nai", "tan-phu-old", "poller-x", "poller", 1.0),  # tan-phu's, renamed
    ])  # fmt: skip
    assert chosen == {"dong-nai/la-nga/poller-a", "dong-nai/tan-phu/pc-01"}
    assert "system" not in loaded.effective("dong-nai", "la-nga", "poller-b", "poller",
                                            probes=False).checks  # fmt: skip


def load_all_with(text: str) -> Any:
    import tempfile

    folder = Path(tempfile.mkdtemp())
    (folder / "profiles.toml").write_text(text)
    return load_all([str(folder / "profiles.toml")], {("dong-nai", "tan-phu-old"): "tan-phu"},
                    systems={"dong-nai": catalogue()})  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PROFILES.replace("systems = true", 'systems = "yes"'),
         "profiles.poller.systems: true or false"),
        (PROFILES.replace('name = "tslcd-province"', 'name = "lgsp"'),
         "the shared system 'lgsp' has the name of its link check"),
    ],
)  # fmt: skip
def test_profile_mistakes_about_systems_are_named(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profiles(text)


def test_probing_without_a_catalogue_is_refused() -> None:
    data = parse_toml(PROFILES, "profiles.toml")
    with pytest.raises(ProfileError, match=r"profiles\.poller\.systems: no catalogue of shared"):
        parse_profiles(data, "profiles.toml", Path("."), None)


@pytest.mark.skipif("system" not in OPTIONS, reason="the agent's system check is not here yet")
def test_the_agent_takes_the_probes_it_is_sent() -> None:
    """Against the agent's own decoder, as it judges what the collector sends."""
    poller = profiles().effective("phu-ly", "poller", "poller")
    parse_checks(poller.checks, "collector", remote=True)


# Changes on disk ------------------------------------------------------------------------


def test_a_changed_catalogue_is_read_again_and_a_broken_one_is_not_applied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "systems.toml"
    path.write_text(CATALOGUE)
    files = SystemFiles([str(path)], [INVENTORY], ["so-khcn"])
    assert files.reload_if_changed() is False and files.generation == 0
    path.write_text(CATALOGUE.replace("DongNai.LIS", "DongNai.LIS 2"))
    os.utime(path, ns=(1, 1))
    assert files.reload_if_changed() is True and files.generation == 1
    assert files()["dong-nai"].systems[2].name == "DongNai.LIS 2"
    path.write_text(CATALOGUE.replace('network = "internet"', 'network = "wifi"'))
    assert files.reload_if_changed() is False
    assert "network: expected one of" in files.error
    assert files()["dong-nai"].systems[2].name == "DongNai.LIS 2"  # the previous one runs


# Sent through a real broker ----------------------------------------------------------


@pytest.mark.servers
def test_one_poller_per_commune_is_sent_the_probes_and_a_catalogue_change_resends(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The config sender over Mosquitto: of two pollers of la-nga the first enrolled is
    sent the probes, the second and the office PC are not; a change of the catalogue on
    disk resends that poller's config alone; once it is revoked, the other one probes."""
    (tmp_path / "profiles.toml").write_text(PROFILES)
    (tmp_path / "systems.toml").write_text(CATALOGUE)
    store = StateStore(tmp_path / "state.sqlite")
    with store.transaction() as db:
        for agent, profile, when in (("poller-a", "poller", 1.0), ("poller-b", "poller", 2.0),
                                     ("pc-01", "office", 0.5)):  # fmt: skip
            registry.enrolled(
                db, province="dong-nai", commune="la-nga", agent=agent, username=f"{agent}@1",
                profile=profile, token_id="t", now=when,
            )  # fmt: skip
    files = ProfileFiles(
        (str(tmp_path / "profiles.toml"),),
        systems=SystemFiles([str(tmp_path / "systems.toml")], [INVENTORY], ["so-khcn"]),
    )
    keys = configkey.KeyFiles(tmp_path / configkey.DEFAULT_NAME)
    sender = ConfigSender(
        store, BrokerSection(url=f"mqtt://127.0.0.1:{mosquitto.port}"), "configs", files
    )
    sender.signing = keys
    sender.start()
    assert sender.wait_connected(10)
    configs = Subscriber(mosquitto.port, "commune/+/+/+/config").start()
    try:

        def sent(agent: str) -> AgentConfig:
            trusted = {k.id: k.public for k in keys().public()}
            payload = configs.snapshot(f"dong-nai/la-nga/{agent}/config")[-1].payload
            return decode_config(verify(decode_signed_config(payload), trusted))

        def probes(agent: str) -> list[str]:
            return [c["name"] for c in sent(agent).checks.get("system", [])]

        assert not sender.sync().failed
        agents = ("poller-a", "poller-b", "pc-01")
        wait_for(
            lambda: all(configs.snapshot(f"dong-nai/la-nga/{a}/config") for a in agents),
            10,
            "three configs",
        )
        assert probes("poller-a") == ["mot-cua", "lgsp", "website"]
        assert probes("poller-b") == [] and probes("pc-01") == []
        version = sent("poller-a").version

        (tmp_path / "systems.toml").write_text(CATALOGUE.replace("La Ngà", "UBND xã La Ngà"))
        assert files.reload_if_changed()
        report = sender.sync()
        assert (report.sent, report.unchanged) == (["dong-nai/la-nga/poller-a"], 2)
        wait_for(lambda: sent("poller-a").version == version + 1, 10, "the new config")
        assert sent("poller-a").checks["system"][-1]["expect_text"] == "UBND xã La Ngà"

        with store.transaction() as db:
            registry.revoked(db, "dong-nai/la-nga/poller-a", 3.0)
        report = sender.sync()
        assert report.sent == ["dong-nai/la-nga/poller-b"]
        wait_for(lambda: probes("poller-b") == ["mot-cua", "lgsp", "website"], 10, "b probes")
    finally:
        configs.stop()
        sender.stop()
        store.close()


def test_the_collector_follows_its_catalogue_and_says_when_the_file_is_invalid(
    tmp_path: Path,
) -> None:
    """Without enrollment, the housekeeping reads a changed file again; a broken one is
    not applied and /healthz's part ``systems`` says ``invalid``."""
    from collector.app import Collector

    path = write_site(tmp_path)
    with path.open("a") as config_file:
        config_file.write(
            f'[store]\npath = "{tmp_path / "state.sqlite"}"\n[api]\nlisten = ""\n'
            '[mqtt]\nurl = "mqtt://127.0.0.1:9"\n'  # no broker: ingest is not what is tested
        )
    collector = Collector(load_collector_config(path))
    collector.start()
    try:
        assert collector.systems()["dong-nai"].summary() == "3 shared systems, 2 websites"
        assert collector.parts()["systems"] == "ok"
        (tmp_path / "systems.toml").write_text(CATALOGUE.replace('kind = "lgsp"', 'kind = "x"'))
        collector.housekeeping.run()
        assert collector.parts()["systems"] == "invalid"
        assert collector.systems()["dong-nai"].systems[1].kind == "lgsp"  # the previous one
        (tmp_path / "systems.toml").write_text(CATALOGUE.replace("LGSP", "Trục LGSP"))
        collector.housekeeping.run()
        assert collector.parts()["systems"] == "ok"
        assert collector.systems()["dong-nai"].systems[1].name == "Trục LGSP"
    finally:
        collector.stop()
