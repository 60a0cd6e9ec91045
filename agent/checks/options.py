"""The config keys of every kind of check: what the config decoder needs, and nothing more.

Kept apart from the checks themselves so that reading a config loads no check: a PC
runs host, antivirus and link, and never pays for the SNMP, Polycom or shared-system
code (nor the HTTP and e-mail parsers those bring) it does not use. Each check imports
its options from here; ``agent.checks.REGISTRY`` loads a check when a config names it.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from agent.antivirus.clamav import DEFAULT_DB_DIR
from agent.checks.base import CheckOptions
from agent.configtypes import ConfigProblem, Duration, Secret
from agent.snmp import AuthProtocol, PrivProtocol

if TYPE_CHECKING:
    from agent.snmp.client import SnmpTarget


class HostOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class AntivirusOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = CheckOptions.remote_keys | {"max_signature_age", "source"}
    # A program to run as LocalSystem, a socket, a folder: this PC's own, never the network's.
    local_only_keys = CheckOptions.local_only_keys | {"powershell", "clamd_socket", "clamav_db_dir"}

    max_signature_age: Duration = Duration(3 * 86400)
    """Signatures older than this count as out of date, whatever the product says."""
    source: Literal["auto", "windows", "clamav"] = "auto"
    """auto: Windows on Windows, ClamAV on Linux, unsupported elsewhere."""
    powershell: str = ""
    """The PowerShell to run; default Windows PowerShell 5.1 (on every supported Windows)
    by its full path, never whatever ``powershell.exe`` is first on PATH."""
    clamd_socket: str = ""
    """clamd's socket path or tcp://host:port; empty tries the Debian/RHEL defaults."""
    clamav_db_dir: str = DEFAULT_DB_DIR


class LinkOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = CheckOptions.remote_keys | {
        "target", "method", "port", "url", "network", "count", "verify_tls", "expect_status"
    }  # fmt: skip

    target: str = ""
    """Host name or address to probe (icmp, tcp); for http the host of ``url``."""
    method: Literal["icmp", "tcp", "http"] = "icmp"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    url: str = ""
    network: Literal["tslcd", "internet", "lan"]
    count: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    verify_tls: bool = True
    expect_status: list[Annotated[int, msgspec.Meta(ge=100, le=599)]] = []

    def validate(self) -> None:
        if not self.name:
            raise ConfigProblem("name", "every link check needs a name, e.g. 'tslcd-province'")
        if self.method == "http":
            if not self.url.startswith(("http://", "https://")):
                raise ConfigProblem(
                    "url", "method 'http' needs url = 'http://...' or 'https://...'"
                )
        elif not self.target:
            raise ConfigProblem("target", f"method {self.method!r} needs a target host")
        if self.method == "tcp" and self.port == 0:
            raise ConfigProblem("port", "method 'tcp' needs a port (1-65535)")


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
        from agent.snmp.client import SnmpTarget  # an SNMP check's, loaded with it

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


class InterfaceFilter(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = CheckOptions.remote_keys | {"include", "exclude"}

    include: list[str] = []
    """Shell patterns on the interface name (ifName, else ifDescr); empty = all."""
    exclude: list[str] = []

    def accepts(self, name: str) -> bool:
        if self.include and not any(fnmatch.fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)


class SnmpOptions(SnmpConnectionOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = SnmpConnectionOptions.remote_keys | {"interfaces"}

    interfaces: InterfaceFilter = InterfaceFilter()

    def validate(self) -> None:
        self.validate_snmp()


class PolycomOptions(SnmpConnectionOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = SnmpConnectionOptions.remote_keys | {"method", "password", "scheme", "verify_tls"}
    # Files of this PC: sent from the network they would make the agent read (and POST to
    # the device's address) whatever file the sender names.
    local_only_keys = SnmpConnectionOptions.local_only_keys | {"password_file", "ca_file"}

    method: Literal["snmp", "rest"] = "snmp"
    password: Secret = Secret("")
    """REST: the admin password as a value, as the collector sends it from its profile's
    secrets (printed as <secret>)."""
    password_file: str = ""
    """REST: a file of this PC holding the admin password (local config only)."""
    scheme: Literal["https", "http"] = "https"
    verify_tls: bool | None = None
    """Check the device's certificate. Default: when ``ca_file`` is given (the CA that
    signed it); endpoints ship self-signed certificates, so without one, no."""
    ca_file: str = ""

    @property
    def verifies_tls(self) -> bool:
        return self.verify_tls if self.verify_tls is not None else bool(self.ca_file)

    def validate(self) -> None:
        if self.method == "snmp":
            self.validate_snmp()
            return
        if not self.name:
            raise ConfigProblem("name", "every device check needs a name, e.g. 'polycom'")
        if not self.host:
            raise ConfigProblem("host", "the device's address is required")
        if not self.user:
            raise ConfigProblem("user", "method 'rest' needs the device's admin user")
        if bool(self.password) == bool(self.password_file):
            raise ConfigProblem(
                "password_file" if self.password_file else "password",
                "method 'rest' needs the device's password: password (a value) or "
                "password_file (a file of this PC), one of them",
            )
        if self.ca_file and self.verify_tls is False:
            raise ConfigProblem(
                "verify_tls",
                "ca_file is given but verify_tls = false: the CA would be ignored; drop one",
            )
        if self.ca_file and self.scheme == "http":
            raise ConfigProblem("ca_file", "scheme 'http' has no certificate to check")


class SystemOptions(CheckOptions, frozen=True, forbid_unknown_fields=True, kw_only=True):
    remote_keys = CheckOptions.remote_keys | {
        "url", "host", "port", "network", "expect_status", "expect_text", "verify_tls",
        "system", "kind",
    }  # fmt: skip

    url: str = ""
    """An HTTP(S) system's address; or ``host`` and ``port`` for a TCP-only one."""
    host: str = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    network: Literal["tslcd", "internet", "lan"]
    expect_status: list[Annotated[int, msgspec.Meta(ge=100, le=599)]] = []
    """Healthy statuses; default any 2xx or 3xx (redirects are not followed)."""
    expect_text: Annotated[str, msgspec.Meta(max_length=256)] = ""
    """Must appear in the first 256 KiB of the page (as shown: NFC, spaces collapsed)."""
    verify_tls: bool = True
    system: Annotated[str, msgspec.Meta(max_length=200)] = ""
    """The system's display name (a tag of its samples)."""
    kind: Annotated[str, msgspec.Meta(max_length=32)] = ""
    """The catalogue's kind (one-stop, documents, email...), a tag; free text here, so a
    kind the catalogue adds needs no new agent."""

    def validate(self) -> None:
        if not self.name:
            raise ConfigProblem("name", "every system check needs a name: the catalogue's id")
        if bool(self.url) == bool(self.host):
            raise ConfigProblem("url", "give either url = 'https://...' or host and port")
        if self.host:
            self._validate_tcp()
            return
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError as exc:
            raise ConfigProblem("url", f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigProblem("url", "an http:// or https:// address with a host name")
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise ConfigProblem("url", f"{parts.hostname!r} is not a host name") from None
        if parts.username is not None or parts.password is not None:
            raise ConfigProblem("url", "no user or password in the URL: it travels in samples")
        if self.port:
            raise ConfigProblem("port", "give the port in the url")

    def _validate_tcp(self) -> None:
        if not self.port:
            raise ConfigProblem("port", "a system given by host needs its port (1-65535)")
        if self.expect_status or self.expect_text:
            raise ConfigProblem(
                "expect_status" if self.expect_status else "expect_text",
                "a system given by host and port is only connected to: no page to judge",
            )
