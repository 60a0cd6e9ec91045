"""A paho-mqtt client for a config's broker section: address, credentials, TLS.

Shared by the agent's publisher and the collector's own small clients (the
dynamic-security admin session, the config publisher), so that every client
of the project logs in and verifies the broker the same way.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.configtypes import BrokerSection


def paho_client(
    broker: BrokerSection,
    client_id: str,
    *,
    clean_session: bool = True,
    mqtt5: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    """``mqtt5``: MQTT 5, whose DISCONNECT tells why the broker ended the session (the
    collector's own clients watch for "session taken over"); the session then starts
    clean. ``username``/``password``: instead of the section's (an account the collector
    makes itself, with a password that lives in memory only)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        clean_session=None if mqtt5 else clean_session,
    )
    name = broker.username if username is None else username
    if name:
        secret = broker.password() if password is None else password
        client.username_pw_set(name, secret or None)
    if broker.tls:
        client.tls_set(
            ca_certs=broker.ca_file or None,
            certfile=broker.cert_file or None,
            keyfile=broker.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    return client


def describe(exc: BaseException, ca_hint: str = "ca_file") -> str:
    """A connection error in words: the TLS reason where there is one; ``ca_hint`` names
    where the CA that would verify it is given (a config key, a command's option)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: {exc.verify_message or exc.reason} (certificate verify failed; check {ca_hint})"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
