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


ACL_0_2 = """pattern write commune/%u/status
pattern write commune/%u/data

user commune-collector
topic read commune/#

user dong-nai-dashboard
topic read commune/dong-nai/#
"""


def test_the_collectors_read_of_the_uptime_goes_into_its_own_section_once() -> None:
    [problem] = brokerconf.acl_problems(ACL_0_2)
    assert "may not read $SYS/broker/uptime" in problem
    upgraded = brokerconf.upgrade_acl(ACL_0_2)
    assert brokerconf.acl_problems(upgraded) == []
    lines = upgraded.splitlines()
    # Mosquitto gives a topic line to the user line above it: before the next user.
    assert lines.index("topic read $SYS/broker/uptime") < lines.index("user dong-nai-dashboard")
    assert brokerconf.upgrade_acl(upgraded) == upgraded
    # Not the dashboard's: its account is not the collector's.
    assert brokerconf.acl_problems(ACL_0_2, "dong-nai-dashboard")


def test_a_wider_grant_does_a_deny_or_a_missing_section_is_left_to_a_person() -> None:
    wider = ACL_0_2.replace("topic read commune/#", "topic read commune/#\ntopic $SYS/#")
    assert brokerconf.acl_problems(wider) == []
    denied = ACL_0_2.replace("topic read commune/#", "topic read commune/#\ntopic deny $SYS/#")
    assert brokerconf.acl_problems(denied)
    assert brokerconf.upgrade_acl(denied) == denied
    assert "no 'user collector-7'" in brokerconf.acl_problems(ACL_0_2, "collector-7")[0]
    assert brokerconf.upgrade_acl(ACL_0_2, "collector-7") == ACL_0_2


def test_the_acl_file_is_the_brokers_wherever_the_line_stands() -> None:
    assert brokerconf.acl_file("listener 8883\nacl_file /etc/mosquitto/commune/acl\n") == (
        "/etc/mosquitto/commune/acl"
    )
    assert brokerconf.acl_file("listener 8883\n#acl_file /x\n") == ""
