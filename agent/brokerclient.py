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
    broker: BrokerSection, client_id: str, *, clean_session: bool = True
) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=clean_session,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password() or None)
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
