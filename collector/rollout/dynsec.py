"""Agents' broker accounts, and the collector's own, made at runtime through Mosquitto's
dynamic security plugin.

The collector holds an admin session ([dynsec] in its config) and sends the
plugin's JSON commands to ``$CONTROL/dynamic-security/v1``, each with its own
``correlationData``; the plugin answers every command on
``.../v1/response`` (which every admin session receives: answers to others'
commands are ignored). No password file, no broker reload.

What each account may do, nothing more (the plugin's default access is set to deny
everything no role grants, receiving included):

- an agent: publish its ``status`` and ``data``, subscribe to and receive its
  ``config`` — one role of its own with literal topics, the simplest to audit. Its
  account name changes with every enrollment (``<province>/<commune>/<agent>@<n>``):
  a replaced or revoked PC's password or certificate names an account that no longer
  exists, and a later enrollment of the same id never brings it back;
- the collector's ingest ([mqtt]): subscribe to and receive agents' status and data;
- the config publisher (an account of the collector's, ``<[mqtt] username>-configs``,
  with a new random password at every start that lives in memory only): publish
  agents' configs.

An agent's client is created with its role in the same request as the role; a client
that cannot be created takes its new role with it, so nothing is left half-made.
Deleting a client ends its live session at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.brokerclient import paho_client
from agent.configtypes import BrokerSection
from agent.wire import topic
from collector.common.sessions import SessionWatch

log = logging.getLogger(__name__)

COMMANDS = "$CONTROL/dynamic-security/v1"
RESPONSES = "$CONTROL/dynamic-security/v1/response"
#: The collector's ingest account's role: read every agent's status and data.
COLLECTOR_ROLE = "commune-collector"
#: The config publisher's role: write every agent's config.
PUBLISHER_ROLE = "commune-config-publisher"
#: What tells an agent's account from the others (its textname).
AGENT_TEXTNAME = "commune-agent"
#: Access no role grants: refused. The plugin's own default lets every client receive
#: whatever its subscriptions match.
DEFAULT_ACCESS = ("publishClientSend", "publishClientReceive", "subscribe")


class BrokerUnavailable(Exception):
    """The admin session is not connected, or the plugin did not answer in time."""


class DynsecError(Exception):
    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


class AccountExists(DynsecError):
    pass


class DynsecAdmin:
    """One admin session: requests are sent in order and answered by correlation id."""

    def __init__(self, broker: BrokerSection, client_id: str, timeout_s: float = 5.0) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.watch = SessionWatch("dynsec")
        self._client = paho_client(broker, client_id, mqtt5=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)
        self._subscribe_mid: int | None = None
        self._started = False
        self.sessions = 0
        """Admin sessions opened so far: a new one may face a broker restarted from an
        older plugin file, which the collector then brings in line again."""

    def start(self) -> None:
        self._started = True
        self._client.connect_async(self.broker.host, self.broker.port, int(self.broker.keepalive))
        self._client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            self.watch.refused(reason.value, str(reason))
            log.warning("dynamic security: the broker refused the admin session: %s", reason)
            return
        self.watch.up()
        _, self._subscribe_mid = client.subscribe(RESPONSES, qos=1)
        client.on_subscribe = self._on_subscribe

    def _on_subscribe(self, _c: object, _u: object, mid: int, reasons: Any, _p: object) -> None:
        if mid != self._subscribe_mid:
            return
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.warning("dynamic security: not allowed to read %s: not an admin account", RESPONSES)
            return
        self.sessions += 1
        self._ready.set()
        log.info("dynamic security: admin session on %s:%d", self.broker.host, self.broker.port)

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self._ready.clear()
        self.watch.down(reason.value, str(reason), unexplained=self._started and reason.is_failure)
        if self.watch.state() == "taken_over":
            log.error(
                "dynamic security: the admin session is being taken: another client logs in "
                "with the admin account %r (its password is in other hands, or a second "
                "collector runs with it)", self.broker.username,
            )  # fmt: skip

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._answered:
            for response in responses if isinstance(responses, list) else []:
                if isinstance(response, dict) and isinstance(response.get("correlationData"), str):
                    self._answers[response["correlationData"]] = response
            self._answered.notify_all()

    def run(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Send the commands as one request; their answers, in order. Raises
        BrokerUnavailable when the session is down or the plugin is silent."""
        if not self._ready.is_set():
            raise BrokerUnavailable("no admin session with the broker's dynamic security plugin")
        ids = [uuid.uuid4().hex for _ in commands]
        tagged = [{**c, "correlationData": i} for c, i in zip(commands, ids, strict=True)]
        info = self._client.publish(COMMANDS, json.dumps({"commands": tagged}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"could not send to the broker ({mqtt.error_string(info.rc)})")
        deadline = time.monotonic() + self.timeout_s
        with self._answered:
            while not all(i in self._answers for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    for i in ids:
                        self._answers.pop(i, None)
                    raise BrokerUnavailable("the dynamic security plugin did not answer")
                self._answered.wait(left)
            return [self._answers.pop(i) for i in ids]


def _checked(responses: list[dict[str, Any]]) -> None:
    for response in responses:
        error = response.get("error")
        if error:
            command = str(response.get("command", "?"))
            if error == "Client already exists":
                raise AccountExists(command, error)
            raise DynsecError(command, str(error))


@dataclass(frozen=True)
class AgentTopics:
    status: str
    data: str
    config: str
    receipt: str

    @classmethod
    def of(cls, root: str, province: str, commune: str, agent: str) -> AgentTopics:
        """The four topics of an agent, under the topic root."""
        return cls(*(topic(root, province, commune, agent, kind)
                     for kind in ("status", "data", "config", "receipt")))  # fmt: skip

    def read_acls(self) -> list[dict[str, Any]]:
        """What the agent reads: its config and its receipts, nothing else."""
        return [
            {"acltype": kind, "topic": name, "allow": True}
            for name in (self.config, self.receipt)
            for kind in ("subscribeLiteral", "publishClientReceive")
        ]


def agent_role(username: str) -> str:
    return f"commune-agent:{username}"


def collector_acls(root: str) -> list[dict[str, Any]]:
    """The ingest reads status and data (configs are not its business), and the broker's
    uptime, which tells a kick from a restart (``common/sessions.py``)."""
    return [
        {"acltype": "subscribeLiteral", "topic": "$SYS/broker/uptime", "allow": True},
        {"acltype": "publishClientReceive", "topic": "$SYS/broker/uptime", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{root}/+/+/+/status", "allow": True},
        {"acltype": "subscribePattern", "topic": f"{root}/+/+/+/data", "allow": True},
        {"acltype": "subscribePattern", "topic": f"$share/+/{root}/+/+/+/data", "allow": True},
        {"acltype": "publishClientReceive", "topic": f"{root}/+/+/+/status", "allow": True},
        {"acltype": "publishClientReceive", "topic": f"{root}/+/+/+/data", "allow": True},
    ]


def publisher_acls(root: str) -> list[dict[str, Any]]:
    return [
        {"acltype": "publishClientSend", "topic": f"{root}/+/+/+/{kind}", "allow": True}
        for kind in ("config", "receipt")
    ]


def _acl_key(acl: dict[str, Any]) -> tuple[str, str, bool]:
    return str(acl.get("acltype")), str(acl.get("topic")), bool(acl.get("allow"))


class Accounts:
    """Agents' accounts and the collector's own, on the admin session."""

    def __init__(self, admin: DynsecAdmin) -> None:
        self.admin = admin

    def deny_by_default(self) -> None:
        """What no role grants is refused: publishing, subscribing and receiving. Without
        this, the plugin lets any client receive what its session subscribed to."""
        acls = [{"acltype": kind, "allow": False} for kind in DEFAULT_ACCESS]
        _checked(self.admin.run({"command": "setDefaultACLAccess", "acls": acls}))

    def create_agent(self, username: str, password: str | None, topics: AgentTopics) -> None:
        """``password`` None: an account for a client certificate (its Common Name)."""
        role = agent_role(username)
        acls = [
            {"acltype": "publishClientSend", "topic": topics.status, "allow": True},
            {"acltype": "publishClientSend", "topic": topics.data, "allow": True},
            *topics.read_acls(),
        ]
        created_role, created_client = self.admin.run(
            {"command": "createRole", "rolename": role, "acls": acls},
            {
                "command": "createClient",
                "username": username,
                **({"password": password} if password is not None else {}),
                "textname": AGENT_TEXTNAME,
                "roles": [{"rolename": role}],
            },
        )
        try:
            _checked([created_client])
        except DynsecError:
            if not created_role.get("error"):  # ours, made for a client that is not there
                self.admin.run({"command": "deleteRole", "rolename": role})
            raise
        _checked([created_role])

    def delete_agent(self, username: str) -> None:
        """The account and its role gone (its live session ends at once); an account
        already gone is not an error. DynsecError for any other refusal."""
        client, role = self.admin.run(
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": agent_role(username)},
        )
        for answer, absent in ((client, "Client not found"), (role, "Role not found")):
            if answer.get("error") and answer.get("error") != absent:
                _checked([answer])

    def kick(self, username: str) -> None:
        """End every live session logged in as ``username``, an account that no longer
        exists (a certificate's, which Mosquitto let in without one): the plugin ends
        sessions only when it changes an account, so one is made, without a password or
        a role, and deleted at once."""
        made, deleted = self.admin.run(
            {"command": "createClient", "username": username, "textname": "commune-retired"},
            {"command": "deleteClient", "username": username},
        )
        _checked([deleted])
        if made.get("error") == "Client already exists":  # it is an account again: not ours
            raise DynsecError("kick", f"{username} is an account again")

    def grant_receipts(self, root: str, batch: int = 100) -> int:
        """Agents' roles made by a release before receipts given their receipt topic
        (``AgentTopics.read_acls``); an ACL already there is left. Returns the roles
        changed. An agent connected meanwhile subscribes at its next connection."""
        changed = 0
        names = self.agent_accounts()
        for start in range(0, len(names), batch):
            commands = []
            for username in names[start : start + batch]:
                # An account is "<agent key>" or "<agent key>@<generation>" (registry.py).
                province, commune, agent = username.partition("@")[0].split("/")
                topics = AgentTopics.of(root, province, commune, agent)
                commands += [
                    {"command": "addRoleACL", "rolename": agent_role(username), **acl}
                    for acl in topics.read_acls()
                    if acl["topic"] == topics.receipt
                ]
            for answer in self.admin.run(*commands):
                error = str(answer.get("error") or "")
                if not error:
                    changed += 1
                elif "already" not in error and error != "Role not found":
                    _checked([answer])
        return changed // 2

    def agent_accounts(self, page: int = 1000) -> list[str]:
        """Every agent account the plugin holds (made by a collector), page by page."""
        names: list[str] = []
        offset = 0
        while True:
            [answer] = self.admin.run(
                {"command": "listClients", "verbose": True, "count": page, "offset": offset}
            )
            _checked([answer])
            clients = answer.get("data", {}).get("clients", [])
            names += [
                str(c["username"])
                for c in clients
                if isinstance(c, dict) and c.get("textname") == AGENT_TEXTNAME
            ]
            offset += len(clients)
            if len(clients) < page:
                return names

    def ensure_collector(self, username: str, password: str, root: str) -> None:
        """The ingest's account: read every agent's status and data. Made if missing; if
        it exists (a broker set up by an earlier release, whose role also wrote configs
        and received everything), its role is brought to exactly these rights."""
        self._ensure_role(COLLECTOR_ROLE, collector_acls(root))
        self._ensure_client(username, password, COLLECTOR_ROLE, "commune-collector")

    def ensure_publisher(
        self, username: str, password: str, root: str, *, set_password: bool = True
    ) -> None:
        """The config publisher's account: write agents' configs, nothing else; with
        ``set_password``, its password set anew (it lives in the running collector's
        memory only). The plugin ends the account's live session when it does: only when
        the password it holds is not this one (a new collector process, a refused login)."""
        self._ensure_role(PUBLISHER_ROLE, publisher_acls(root))
        self._ensure_client(username, password, PUBLISHER_ROLE, "commune-config-publisher")
        if set_password:
            _checked(self.admin.run(
                {"command": "setClientPassword", "username": username, "password": password}
            ))  # fmt: skip

    def _ensure_role(self, name: str, acls: list[dict[str, Any]]) -> None:
        [created] = self.admin.run({"command": "createRole", "rolename": name, "acls": acls})
        if not created.get("error"):
            return
        if created.get("error") != "Role already exists":
            _checked([created])
        [found] = self.admin.run({"command": "getRole", "rolename": name})
        _checked([found])
        held = {_acl_key(a): a for a in found.get("data", {}).get("role", {}).get("acls", [])}
        wanted = {_acl_key(a): a for a in acls}
        changes = [
            {"command": "removeRoleACL", "rolename": name, "acltype": kind, "topic": topic}
            for (kind, topic, _allow) in held.keys() - wanted.keys()
        ] + [
            {"command": "addRoleACL", "rolename": name, **acl}
            for key, acl in wanted.items()
            if key not in held
        ]
        if changes:
            _checked(self.admin.run(*changes))
            log.warning("dynamic security: role %s brought to its rights (%d changes)",
                        name, len(changes))  # fmt: skip

    def _ensure_client(self, username: str, password: str, role: str, textname: str) -> None:
        [created] = self.admin.run(
            {
                "command": "createClient",
                "username": username,
                **({"password": password} if password else {}),
                "textname": textname,
                "roles": [{"rolename": role}],
            }
        )
        if created.get("error") == "Client already exists":
            # An error here means it holds the role already.
            self.admin.run({"command": "addClientRole", "username": username, "rolename": role})
        elif created.get("error"):
            _checked([created])
