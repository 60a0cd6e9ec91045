"""Connection options shared by the SNMP-polled checks (snmp, polycom)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agent.checks.base import CheckOptions
from agent.configtypes import ConfigProblem, Secret
from agent.snmp.client import AuthProtocol, PrivProtocol, SnmpTarget


class SnmpConnectionOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Communities and v3 keys are credentials given as values: the collector may send them.
    remote_keys = CheckOptions.remote_keys | {
        "host", "port", "version", "community", "user", "auth_protocol", "auth_key",
        "priv_protocol", "priv_key", "retries",
    }  # fmt: skip

    host: str = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    """0 = the protocol's default (161 for SNMP)."""
    version: Literal["2c", "3"] = "2c"
    community: Secret = Secret("public")
    user: str = ""
    """SNMPv3 user (authPriv when both keys are set, authNoPriv with auth_key only)."""
    auth_protocol: AuthProtocol = "SHA"
    auth_key: Secret = Secret("")
    priv_protocol: PrivProtocol = "AES"
    priv_key: Secret = Secret("")
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1

    def validate_snmp(self) -> None:
        if not self.name:
            raise ConfigProblem("name", "every device check needs a name, e.g. 'router'")
        if not self.host:
            raise ConfigProblem("host", "the device's address is required")
        if self.version == "3":
            if not self.user:
                raise ConfigProblem("user", "SNMPv3 needs a user")
            if self.priv_key and not self.auth_key:
                raise ConfigProblem("auth_key", "SNMPv3 privacy (priv_key) needs an auth_key too")
            for key, secret in (("auth_key", self.auth_key), ("priv_key", self.priv_key)):
                if secret and len(secret.reveal()) < 8:
                    raise ConfigProblem(key, "SNMPv3 keys must be at least 8 characters")

    def snmp_target(self, timeout: float) -> SnmpTarget:
        # Each request gets part of the run's time, so one run ends inside its timeout.
        per_request = max(0.5, min(5.0, timeout / (2 * (self.retries + 1) + 1)))
        return SnmpTarget(
            host=self.host,
            port=self.port or 161,
            version=self.version,
            community=self.community,
            user=self.user,
            auth_protocol=self.auth_protocol,
            auth_key=self.auth_key,
            priv_protocol=self.priv_protocol,
            priv_key=self.priv_key,
            timeout=per_request,
            retries=self.retries,
        )
