"""A deployed broker config read as Mosquitto reads it, and upgraded line by line."""

from __future__ import annotations

from collector.rollout import brokerconf

CONF = """# listener 1883 (a comment: no listener)
allow_anonymous false
listener 8883
cafile /etc/mosquitto/commune/ca#1.crt
listener 8884
use_identity_as_username true
"""


def test_only_a_line_starting_with_a_hash_is_a_comment_and_the_upgrade_is_done_once() -> None:
    found = brokerconf.problems(CONF, "/var/lib/commune-crl/client-crl.pem")
    assert [p.split(":")[0] for p in found] == ["listener 8883", "listener 8884", "listener 8884"]
    upgraded = brokerconf.upgrade(CONF, "/var/lib/commune-crl/client-crl.pem")
    assert brokerconf.problems(upgraded, "/var/lib/commune-crl/client-crl.pem") == []
    assert upgraded.count("use_username_as_clientid true") == 2
    assert "cafile /etc/mosquitto/commune/ca#1.crt" in upgraded  # the value kept whole
    assert brokerconf.upgrade(upgraded, "/var/lib/commune-crl/client-crl.pem") == upgraded


def test_anonymous_access_and_a_file_without_listeners_are_named() -> None:
    assert brokerconf.problems("allow_anonymous true\nlistener 1\nuse_username_as_clientid true\n")
    assert brokerconf.problems("# nothing\n") == [
        "no listener: this is not a broker config of commune-monitor"
    ]
