"""Write the dynamic security plugin's file as a given release's collector leaves it, for
the broker upgrade tests.

Run with the release's own code on the path (a checkout of its tag or commit):

    git worktree add /tmp/release <commit>
    PYTHONPATH=/tmp/release python tests/data/broker/make_broker.py tests/data/broker/<version>

It starts Mosquitto with the plugin (``mosquitto_ctrl dynsec init`` and the admin
account, as a province sets it up), lets that release's code make the collector's
account and two agents' accounts as its enrollment does, and keeps the plugin's file
(``dynamic-security.json``) and the passwords it used (``accounts.json``: test
passwords, nothing else). The release's shipped broker configs are copied beside it
by hand (``git show <commit>:deploy/mosquitto/<file>``).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from agent.configtypes import BrokerSection
from collector.rollout.dynsec import Accounts, AgentTopics, DynsecAdmin
from tests.servers import dynsec_broker

ADMIN, ADMIN_PASSWORD = "commune-admin", "release-admin-password-0123"
COLLECTOR, COLLECTOR_PASSWORD = "commune-collector", "release-collector-password-0123"
AGENTS = {
    "dong-nai/la-nga/pc-01": "release-pc-01-password-0123456789",
    "dong-nai/la-nga/pc-02": "release-pc-02-password-0123456789",
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="make-broker-"))
    broker = dynsec_broker(work, ADMIN, ADMIN_PASSWORD).start()
    secret = work / "admin.password"
    secret.write_text(ADMIN_PASSWORD)
    admin = DynsecAdmin(
        BrokerSection(url=f"mqtt://127.0.0.1:{broker.port}", username=ADMIN,
                      password_file=str(secret)),
        "make-broker",
    )  # fmt: skip
    admin.start()
    try:
        assert admin.wait_ready(10), broker.log[-2000:]
        accounts = Accounts(admin)
        accounts.ensure_collector(COLLECTOR, COLLECTOR_PASSWORD, "commune")
        for name, password in AGENTS.items():
            topics = AgentTopics(
                *(f"commune/{name}/{kind}" for kind in ("status", "data", "config"))
            )
            accounts.create_agent(name, password, topics)
    finally:
        admin.stop()
        broker.stop()
    assert broker.dynsec_file is not None
    shutil.copy(broker.dynsec_file, out / "dynamic-security.json")
    (out / "accounts.json").write_text(
        json.dumps(
            {"admin": [ADMIN, ADMIN_PASSWORD], "collector": [COLLECTOR, COLLECTOR_PASSWORD],
             "agents": AGENTS},
            indent=1,
        ) + "\n"
    )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    print(f"{out}: {len(AGENTS)} agents")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
