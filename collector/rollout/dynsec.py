"""Agents' broker accounts, made at runtime through Mosquitto's dynamic security plugin.

The collector holds an admin session ([dynsec] in its config) and sends the
plugin's JSON commands to ``$CONTROL/dynamic-security/v1``, each with its own
``correlationData``; the plugin answers every command on
``.../v1/response`` (which every admin session receives: answers to others'
commands are ignored). No password file, no broker reload.

Each agent gets one role of its own with literal topics, the simplest to audit:
publish its ``status`` and ``data``, subscribe to and receive its ``config``;
nothing else (the plugin's defaults refuse publishing and subscribing). Its
client is created with that role in the same request as the role; a client
that cannot be created takes its new role with it, so nothing is left
half-made. Disabling a client ends its live session at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from agent.brokerclient import paho_client
from agent.configtypes import BrokerSection

log = logging.getLogger(__name__)

COMMANDS = "$CONTROL/dynamic-security/v1"
RESPONSES = "$CONTROL/dynamic-security/v1/response"
#: Of the collector's own accounts: what the ingest and the config publisher may do.
COLLECTOR_ROLE = "commune-collector"


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
        self._client = paho_client(broker, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)
        self._subscribe_mid: int | None = None

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, int(self.broker.keepalive))
        self._client.loop_start()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.warning("dynamic security: the broker refused the admin session: %s", reason)
            return
        _, self._subscribe_mid = client.subscribe(RESPONSES, qos=1)
        client.on_subscribe = self._on_subscribe

    def _on_subscribe(self, _c: object, _u: object, mid: int, reasons: Any, _p: object) -> None:
        if mid != self._subscribe_mid:
            return
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.warning("dynamic security: not allowed to read %s: not an admin account", RESPONSES)
            return
        self._ready.set()
        log.info("dynamic security: admin session on %s:%d", self.broker.host, self.broker.port)

    def _on_disconnect(self, *_args: object) -> None:
        self._ready.clear()

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


def agent_role(username: str) -> str:
    return f"commune-agent:{username}"


class Accounts:
    """Agents' accounts and the collector's own, on the admin session."""

    def __init__(self, admin: DynsecAdmin) -> None:
        self.admin = admin

    def create_agent(self, username: str, password: str | None, topics: AgentTopics) -> None:
        """``password`` None: an account for a client certificate (its Common Name)."""
        role = agent_role(username)
        acls = [
            {"acltype": "publishClientSend", "topic": topics.status, "allow": True},
            {"acltype": "publishClientSend", "topic": topics.data, "allow": True},
            {"acltype": "subscribeLiteral", "topic": topics.config, "allow": True},
            {"acltype": "publishClientReceive", "topic": topics.config, "allow": True},
        ]
        created_role, created_client = self.admin.run(
            {"command": "createRole", "rolename": role, "acls": acls},
            {
                "command": "createClient",
                "username": username,
                **({"password": password} if password is not None else {}),
                "textname": "commune-agent",
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

    def renew(self, username: str, password: str | None) -> None:
        """A PC set up again (a new disk, a new Windows), or enrolled again after a
        revocation: its new password (a certificate account gets a random one, so the
        old password is dead too), enabled, its role back."""
        secret = password if password is not None else secrets.token_urlsafe(32)
        responses = self.admin.run(
            {"command": "setClientPassword", "username": username, "password": secret},
            {"command": "enableClient", "username": username},
            {"command": "addClientRole", "username": username, "rolename": agent_role(username)},
        )
        _checked(responses[:2])  # the role may be there already: not an error

    def disable(self, username: str) -> None:
        """The account refused from now on, its live session ended; its role taken away
        too, so that a client certificate (which Mosquitto 2.0 still lets connect for a
        disabled client, bug #2999) may do nothing."""
        responses = self.admin.run(
            {"command": "disableClient", "username": username},
            {"command": "removeClientRole", "username": username,
             "rolename": agent_role(username)},
        )  # fmt: skip
        _checked(responses[:1])

    def delete_agent(self, username: str) -> None:
        self.admin.run(
            {"command": "deleteClient", "username": username},
            {"command": "deleteRole", "rolename": agent_role(username)},
        )

    def ensure_collector(self, username: str, password: str, root: str) -> None:
        """The collector's own account: read every agent's status and data, write every
        agent's config. Made if missing, its role set again if it exists."""
        acls = [
            {"acltype": "subscribePattern", "topic": f"{root}/#", "allow": True},
            {"acltype": "subscribePattern", "topic": f"$share/+/{root}/#", "allow": True},
            {"acltype": "publishClientReceive", "topic": f"{root}/#", "allow": True},
            {"acltype": "publishClientSend", "topic": f"{root}/+/+/+/config", "allow": True},
        ]
        role, client = self.admin.run(
            {"command": "createRole", "rolename": COLLECTOR_ROLE, "acls": acls},
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "textname": "commune-collector",
                "roles": [{"rolename": COLLECTOR_ROLE}],
            },
        )
        # An ACL or a role the account holds already is answered with an error: harmless.
        if role.get("error") == "Role already exists":
            self.admin.run(
                *({"command": "addRoleACL", "rolename": COLLECTOR_ROLE, **acl} for acl in acls)
            )
        elif role.get("error"):
            _checked([role])
        if client.get("error") == "Client already exists":
            self.admin.run(
                {"command": "addClientRole", "username": username, "rolename": COLLECTOR_ROLE}
            )
        elif client.get("error"):
            _checked([client])
