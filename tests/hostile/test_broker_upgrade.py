"""A province's broker as 0.2 left it — its shipped config, the plugin's file with the
collector's 0.2 role and two PCs' accounts, the 0.2 collector's store — upgraded the
documented way (`commune-collector broker-config --write`, then the new collector's
start): the takeover is closed, the plugin refuses by default, the collector's rights
are narrowed, the PC revoked under 0.2 is gone, and the PC enrolled by 0.2 reports on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from agent.wire import decode_receipt
from collector.rollout.dynsec import collector_acls, publisher_acls
from tests.hostile.brokersite import Credentials, broker_site, data_topic, envelope
from tests.servers import REPO, wait_for

RELEASE = Path(__file__).resolve().parent.parent / "data" / "broker" / "0.2.0"
STORE = Path(__file__).resolve().parent.parent / "data" / "stores" / "0.2.0" / "state.sqlite"
CRL = "/var/lib/commune-crl/client-crl.pem"


def broker_config(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", "broker-config", *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip


def test_the_0_2_broker_upgraded_the_documented_way(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in ("dynsec.conf", "mosquitto.conf", "acl"):
        shutil.copy(RELEASE / name, deploy / name)
    accounts = json.loads((RELEASE / "accounts.json").read_text())

    checked = broker_config(str(deploy / "dynsec.conf"), "--crl", CRL)
    assert checked.returncode == 1 and "use_username_as_clientid" in checked.stderr
    assert (deploy / "dynsec.conf").read_text() == (RELEASE / "dynsec.conf").read_text()
    for name in ("dynsec.conf", "mosquitto.conf"):
        # The static config's ACL file is beside it here, not where it names it.
        crl = ["--crl", CRL] if name == "dynsec.conf" else ["--acl", str(deploy / "acl")]
        upgraded = broker_config(str(deploy / name), *crl, "--write")
        assert upgraded.returncode == 0, upgraded.stderr
        assert (deploy / f"{name}.bak").read_text() == (RELEASE / name).read_text()
        again = broker_config(str(deploy / name), *crl)
        assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
        text = (deploy / name).read_text()
        assert text.count("use_username_as_clientid true") == 2
    assert f"crlfile {CRL}" in (deploy / "dynsec.conf").read_text()

    with broker_site(
        tmp_path / "site",
        passwords=(accounts["admin"][1], accounts["collector"][1]),
        store=STORE,
        deploy=deploy,
        dynsec_json=RELEASE / "dynamic-security.json",
    ) as site:
        pc01 = Credentials("pc-01", "dong-nai/la-nga/pc-01",
                           accounts["agents"]["dong-nai/la-nga/pc-01"])  # fmt: skip
        pc02 = Credentials("pc-02", "dong-nai/la-nga/pc-02",
                           accounts["agents"]["dong-nai/la-nga/pc-02"])  # fmt: skip

        # The plugin's file, as the new collector left it at its start.
        def plugin() -> dict[str, object]:
            loaded: dict[str, object] = json.loads(site.broker.dynsec_file.read_text())
            return loaded

        def acls(role: str) -> list[tuple[str, str]]:
            [found] = [r for r in plugin()["roles"] if r["rolename"] == role]  # type: ignore[attr-defined]
            return sorted((a["acltype"], a["topic"]) for a in found["acls"])

        wait_for(
            lambda: acls("commune-collector")
            == sorted((a["acltype"], a["topic"]) for a in collector_acls("commune")),
            20, "the collector's 0.2 role narrowed",
        )  # fmt: skip
        assert acls("commune-config-publisher") == sorted(
            (a["acltype"], a["topic"]) for a in publisher_acls("commune")
        )
        assert plugin()["defaultACLAccess"] == {
            "publishClientSend": False, "publishClientReceive": False,
            "subscribe": False, "unsubscribe": True,
        }  # fmt: skip
        # pc-02, revoked under 0.2 (its account then only disabled), is gone for good.
        usernames = [c["username"] for c in plugin()["clients"]]  # type: ignore[attr-defined]
        wait_for(lambda: "dong-nai/la-nga/pc-02" not in
                 [c["username"] for c in plugin()["clients"]],  # type: ignore[attr-defined]
                 30, "the 0.2 revoked account removed")  # fmt: skip
        assert "dong-nai/la-nga/pc-01" in usernames
        thief = pc02.client(site.broker)
        assert not thief.connected.is_set()
        thief.close()

        # pc-01, enrolled by 0.2, reports on; naming the collector's session gets it
        # its own.
        before = site.last_seq("pc-01") or 0
        grabbed = pc01.client(site.broker, client_id="commune-collector", persistent=True)
        assert grabbed.connected.is_set(), grabbed.connack
        assert grabbed.session_present is False
        # Its 0.2 role was given its receipt topic: it hears what the store committed.
        receipts = "commune/dong-nai/la-nga/pc-01/receipt"
        assert not grabbed.subscribe(receipts).is_failure
        assert not grabbed.publish(data_topic("pc-01"), envelope("pc-01", before + 1)).is_failure
        wait_for(lambda: site.last_seq("pc-01") == before + 1, 30, "pc-01's envelope applied")
        wait_for(lambda: any(t == receipts for t, _ in grabbed.messages), 30, "a receipt")
        [payload] = [m for t, m in grabbed.messages if t == receipts][-1:]
        assert decode_receipt(payload).seqs[-1][1] == before + 1
        assert site.health()["broker"] == "ok"
        grabbed.close()
