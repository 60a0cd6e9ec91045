"""Signed configs on the agent: the wire format (exact bytes, a domain-separated message,
the key id), what is refused and why, the keys trusted through a rotation, and the
cache on disk (the signed message, 0600, verified again at start; a 0.2 agent's)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import sigcheck
from agent.central import CentralConfig
from agent.config import load_config
from agent.configkeys import KEY_FILE, verify
from agent.wire import (
    CONFIG_SIGNATURE_CONTEXT,
    MAX_SIGNED_CONFIG_BYTES,
    WireError,
    config_key_id,
    decode_signed_config,
    encode,
    signed_message,
)
from collector.rollout.configkey import ConfigKeys
from tests.factories import agent_config, agent_toml, central_config, signed, signing_key, trust

OFFICE = {"host": [{}], "link": [{"name": "gw", "network": "tslcd", "target": "10.75.12.1"}]}
OTHER = {"host": [{}], "link": [{"name": "gw", "network": "tslcd", "target": "10.75.12.9"}]}
A, B, C = signing_key(1), signing_key(2), signing_key(3)


def enrolled(folder: Path, *keys: object) -> Path:
    path = folder / "agent.toml"
    path.write_text(
        agent_toml(extra=f'state_dir = "{folder / "state"}"\n[remote]\nenabled = true\n')
    )
    if keys != (None,):
        trust(folder, *keys)  # type: ignore[arg-type]
    return path


def agent(folder: Path) -> CentralConfig:
    """The agent as it starts (again): its files read anew."""
    return CentralConfig(load_config(folder / "agent.toml"))


def apply(central: CentralConfig, payload: bytes) -> None:
    candidate = central.offer(payload)
    assert candidate is not None, central.state.error
    central.commit(candidate, payload)


# ---- the wire format ---------------------------------------------------------------


def test_the_signature_covers_the_exact_bytes_after_a_fixed_prefix() -> None:
    config = agent_config(OFFICE, version=3)
    message = json.loads(signed(config, A))
    assert set(message) == {"v", "config", "key", "sig"}
    assert base64.b64decode(message["config"]) == config  # carried as is, not re-encoded
    assert message["key"] == hashlib.sha256(A.public).hexdigest()[:16] == config_key_id(A.public)
    sig = base64.b64decode(message["sig"])
    assert len(sig) == 64
    A.private.public_key().verify(sig, CONFIG_SIGNATURE_CONTEXT + config)  # raises if not
    assert verify(decode_signed_config(signed(config, A)), {A.id: A.public}) == config


def test_a_signature_that_cannot_be_checked_refuses_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check runs in a process of its own: if that process cannot run or gives no
    verdict, the config is refused, never run unchecked."""
    config = agent_config(OFFICE)
    message = decode_signed_config(signed(config, A))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(WireError) as caught:
        verify(message, {A.id: A.public})
    assert caught.value.reason == "unchecked_signature"
    assert "no-python" in caught.value.detail


def test_the_signature_process_gives_a_verdict_or_none() -> None:
    config = agent_config(OFFICE)
    message = decode_signed_config(signed(config, A))
    data = A.public + message.sig + signed_message(message.config)
    assert sigcheck.check(data)
    assert not sigcheck.check(data[:-1] + bytes([data[-1] ^ 1]))  # one bit of the config
    assert not sigcheck.check(B.public + data[32:])  # another key
    for junk in (b"", b"short", A.public):  # no key or no signature: no verdict at all
        result = subprocess.run(
            [sys.executable, "-m", "agent.sigcheck"], input=junk, capture_output=True, check=False
        )
        assert result.returncode not in (0, sigcheck.INVALID)


def test_a_signature_of_the_wrong_length_is_bad_without_a_check() -> None:
    config = agent_config(OFFICE)
    message = decode_signed_config(signed(config, A))
    short = type(message)(v=message.v, config=message.config, key=message.key, sig=message.sig[:63])
    with pytest.raises(WireError) as caught:
        verify(short, {A.id: A.public})
    assert caught.value.reason == "bad_signature"


def test_a_signature_made_without_the_prefix_does_not_verify() -> None:
    """Domain separation: the key's signature of the bare bytes (made for anything else)
    is not a config signature."""
    config = agent_config(OFFICE)
    bare = A.private.sign(config)
    forged = json.dumps({"v": 1, "config": base64.b64encode(config).decode(), "key": A.id,
                         "sig": base64.b64encode(bare).decode()}).encode()  # fmt: skip
    with pytest.raises(WireError) as caught:
        verify(decode_signed_config(forged), {A.id: A.public})
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (agent_config(OFFICE), "unsigned"),
        (b'{"v": 1, "config": "", "key": "0123456789abcdef"}', "unsigned"),
        (b'{"v": 1, "config": "e30=", "key": "0123", "sig": ""}', "invalid"),
        (b'{"v": 1, "config": "%%%", "key": "0123456789abcdef", "sig": ""}', "invalid"),
        (signed(agent_config(OFFICE)).replace(b'"v":1', b'"v":2'), "schema_version"),
        (signed(agent_config(OFFICE))[:-1] + b',"note":1}', "invalid"),
        (b" " * (MAX_SIGNED_CONFIG_BYTES + 1), "too_large"),
        (b"[" * 100_000, "invalid"),
        (b'{"x": ' + b"[" * 100_000, "invalid"),
    ],
    ids=[
        "bare",
        "no sig",
        "short",
        "not base64",
        "version",
        "unknown field",
        "huge",
        "deep",
        "deep field",
    ],
)
def test_a_payload_that_is_no_signed_config_is_refused_by_reason(
    payload: bytes, reason: str
) -> None:
    with pytest.raises(WireError) as caught:
        decode_signed_config(payload)
    assert caught.value.reason == reason, caught.value


# ---- what the agent refuses ---------------------------------------------------------


def tampered(config: bytes, key: object = None) -> bytes:
    """Signed, then one byte of the config changed in its base64."""
    message = json.loads(signed(config, key))  # type: ignore[arg-type]
    raw = bytearray(base64.b64decode(message["config"]))
    raw[raw.index(b"10.75.12.1") + 9] = ord("9")
    message["config"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (agent_config(OTHER, version=9), "unsigned"),
        (central_config(OTHER, version=9, key=C), "untrusted_key: signed by key"),
        (tampered(agent_config(OFFICE, version=9)), "bad_signature"),
        (central_config(OTHER, version=9, agent="pc-02"), "identity_mismatch"),
        (central_config(OTHER, version=4), "replayed: v4 is older than the config running (v5)"),
        (central_config(OTHER, version=5), "replayed: v5 is the version of the config running"),
    ],
    ids=["unsigned", "unknown key", "tampered", "another agent's", "older", "same version"],
)
def test_a_config_not_signed_for_this_agent_and_newer_is_refused_and_the_last_good_runs(
    tmp_path: Path, payload: bytes, words: str
) -> None:
    enrolled(tmp_path)
    central = agent(tmp_path)
    apply(central, central_config(OFFICE, version=5))
    assert central.offer(payload) is None
    assert words in central.state.error, central.state.error
    assert central.state.refused_version in (4, 5, 9)
    assert central.state.version == 5
    assert central.current.checks.link[0].target == "10.75.12.1"
    again = agent(tmp_path)  # and what is on disk is still the good one
    assert again.state.version == 5 and again.current.checks.link[0].target == "10.75.12.1"


def test_the_same_config_again_is_nothing_and_a_new_number_for_it_is_kept(tmp_path: Path) -> None:
    enrolled(tmp_path)
    central = agent(tmp_path)
    apply(central, central_config(OFFICE, version=5))
    assert central.offer(central_config(OFFICE, version=5)) is None
    assert central.state.error == ""
    assert central.offer(central_config(OFFICE, version=6)) is None  # nothing to restart
    assert (central.state.version, central.state.error) == (6, "")
    assert agent(tmp_path).state.version == 6  # kept: a v6 replayed later is no news


def test_without_a_key_every_config_is_refused_and_the_agent_says_what_to_do(
    tmp_path: Path,
) -> None:
    enrolled(tmp_path, None)
    central = agent(tmp_path)
    assert f"no config signing key in {tmp_path / KEY_FILE}" in central.state.error
    assert "config-key fetch" in central.state.error
    assert central.offer(central_config(OFFICE, version=1)) is None
    assert central.state.refused_version == 1 and central.current.sources == {}
    assert central.fields()["config_keys"] == ""


def test_a_key_file_that_holds_no_key_stops_the_start_by_its_name(tmp_path: Path) -> None:
    from agent.configtypes import ConfigError

    enrolled(tmp_path, None)
    (tmp_path / KEY_FILE).write_text("# a comment\nnot-a-key\n")
    with pytest.raises(ConfigError, match=rf"{KEY_FILE}: line 2: not an Ed25519 public key"):
        agent(tmp_path)


# ---- keys through a rotation --------------------------------------------------------


def test_a_rotation_adds_the_announced_key_then_drops_the_old_one(tmp_path: Path) -> None:
    enrolled(tmp_path, A)
    central = agent(tmp_path)
    apply(central, central_config(OFFICE, version=1, key=A))
    assert central.fields()["config_keys"] == A.id
    # rotate: the current key signs a config announcing the next one
    assert central.offer(central_config(OFFICE, version=2, key=A, next_key=B)) is None
    assert set(central.trusted) == {A.id, B.id}
    assert central.fields()["config_keys"] == ",".join(sorted([A.id, B.id]))
    assert set(agent(tmp_path).trusted) == {A.id, B.id}  # kept across a restart
    # finish: the next key signs; the old one is dropped
    assert central.offer(central_config(OFFICE, version=3, key=B)) is None
    assert set(central.trusted) == {B.id} and central.state.signed_by == B.id
    assert central.offer(central_config(OTHER, version=4, key=A)) is None
    assert "untrusted_key" in central.state.error
    restarted = agent(tmp_path)  # config-key.pub still says A: the cache knows better
    assert set(restarted.trusted) == {B.id} and restarted.state.version == 3


def test_only_the_trusted_key_introduces_a_successor(tmp_path: Path) -> None:
    enrolled(tmp_path, A)
    central = agent(tmp_path)
    apply(central, central_config(OFFICE, version=1, key=A))
    assert central.offer(central_config(OTHER, version=2, key=C, next_key=C)) is None
    assert set(central.trusted) == {A.id} and "untrusted_key" in central.state.error


def test_a_new_key_file_replaces_what_configs_taught(tmp_path: Path) -> None:
    """After a leak the province fetches a new key: the keys learnt from configs (and the
    config the old key signed, whatever its version) are forgotten."""
    enrolled(tmp_path, A)
    central = agent(tmp_path)
    apply(central, central_config(OFFICE, version=2**40, key=A, next_key=B))
    trust(tmp_path, C)  # commune-agent config-key fetch
    again = agent(tmp_path)
    assert set(again.trusted) == {C.id}
    assert again.state.version == 0 and again.current.sources == {}
    apply(again, central_config(OFFICE, version=1, key=C))  # from a low version again


# ---- the cache ---------------------------------------------------------------------


def test_the_cache_is_the_signed_message_0600_and_verified_again_at_start(
    tmp_path: Path,
) -> None:
    enrolled(tmp_path)
    previous = os.umask(0)
    try:
        central = agent(tmp_path)
        leftover = central.cache_path.with_name(central.cache_path.name + ".new")
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"")
        leftover.chmod(0o666)  # a half-written one from before: its mode is not kept
        payload = central_config(OFFICE, version=5)
        apply(central, payload)
    finally:
        os.umask(previous)
    assert central.cache_path.stat().st_mode & 0o777 == 0o600
    saved = json.loads(central.cache_path.read_bytes())
    assert saved["signed"] == json.loads(payload) and saved["keys"] == {A.id: A.public_text}
    # changed on disk: not run at the next start
    raw = central.cache_path.read_bytes()
    config = base64.b64decode(saved["signed"]["config"])
    changed = config.replace(b"10.75.12.1", b"10.75.12.9")
    central.cache_path.write_bytes(
        raw.replace(saved["signed"]["config"].encode(), base64.b64encode(changed))
    )
    again = agent(tmp_path)
    assert again.state.version == 0 and again.current.sources == {}


A_02_CACHE = {"host": [{}], "link": [{"name": "gw", "network": "tslcd", "target": "10.0.0.1"}]}


def test_an_agent_upgraded_from_0_2_keeps_its_cache_if_it_is_data_and_takes_no_unsigned_one(
    tmp_path: Path,
) -> None:
    enrolled(tmp_path, None)
    cache = tmp_path / "state" / "central-config.json"
    cache.parent.mkdir()
    cache.write_bytes(agent_config(A_02_CACHE, version=7))  # as 0.2 wrote it, 0644
    cache.chmod(0o644)
    central = agent(tmp_path)
    assert cache.stat().st_mode & 0o777 == 0o600
    assert central.state.version == 7 and central.current.checks.link[0].target == "10.0.0.1"
    assert "no config signing key" in central.state.error  # what to do, first
    assert central.offer(agent_config(OTHER, version=8)) is None  # no unsigned one from now
    assert central.state.version == 7 and central.state.refused_version == 8
    assert central.offer(central_config(OTHER, version=8)) is None  # nor a signed one: no key
    assert central.state.version == 7 and "no config signing key" in central.state.error
    # the upgrade fetched the key: the first signed config replaces the 0.2 one
    trust(tmp_path, A)
    fetched = agent(tmp_path)
    assert fetched.state.version == 7 and "the unsigned config v7" in fetched.state.error
    assert fetched.offer(central_config(A_02_CACHE, version=7)) is None
    assert (fetched.state.version, fetched.state.signed_by, fetched.state.error) == (7, A.id, "")


def test_a_0_2_cache_naming_a_program_is_not_run(tmp_path: Path) -> None:
    enrolled(tmp_path, A)
    cache = tmp_path / "state" / "central-config.json"
    cache.parent.mkdir()
    cache.write_bytes(agent_config({"antivirus": [{"powershell": "C:/evil.exe"}]}, version=3))
    central = agent(tmp_path)
    assert central.state.version == 0 and central.current.sources == {}


def test_the_collector_and_the_agent_agree_on_the_form(tmp_path: Path) -> None:
    keys = ConfigKeys(A, B)
    config = agent_config(OFFICE, version=2, next_key=keys.next_public_text)
    payload = encode(keys.sign(config))
    enrolled(tmp_path, A)
    central = agent(tmp_path)
    apply(central, payload)
    assert set(central.trusted) == {A.id, B.id}
    assert keys.state == f"{A.id}>{B.id}"


# ---- enrollment and the memory of an agent that follows no collector -----------------


def test_enrollment_writes_the_collectors_keys_and_the_agent_trusts_them(tmp_path: Path) -> None:
    from agent import enroll as enrolling
    from agent.enrollwire import EnrollAnswer, EnrollTopics

    answer = EnrollAnswer(
        province="dong-nai", commune="la-nga", agent="pc-01", username="dong-nai/la-nga/pc-01",
        broker_url="mqtts://broker.example:8883", broker_ca="", profile="office",
        topics=EnrollTopics(*(f"commune/dong-nai/la-nga/pc-01/{k}" for k in
                              ("status", "data", "config"))),
        config_keys=[A.public_text, B.public_text],
    )  # fmt: skip
    config = tmp_path / "agent.toml"
    written = enrolling.write(config, answer, "p" * 32)
    key_file = tmp_path / KEY_FILE
    assert key_file in written.files and key_file.stat().st_mode & 0o777 == 0o644
    assert 'config_key = "config-key.pub"' in config.read_text()
    loaded = load_config(config)
    assert loaded.remote.config_key == str(key_file)  # named, relative to agent.toml
    assert set(CentralConfig(loaded).trusted) == {A.id, B.id}


def test_the_agent_never_keeps_cryptography_loaded(tmp_path: Path) -> None:
    """Its Rust extension costs ~7 MB of RSS: a signature is checked in a process of its
    own (agent/sigcheck.py), enrolled or not the agent never imports it."""
    import subprocess
    import sys

    plain = tmp_path / "plain" / "agent.toml"
    plain.parent.mkdir()
    plain.write_text(agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n'))
    enrolled(tmp_path)
    apply(agent(tmp_path), central_config(OFFICE))  # leaves a cache to verify at start
    code = (
        "import sys\nfrom agent.central import CentralConfig\nfrom agent.config import "
        "load_config\nimport agent.runner, agent.commands\n"
        "central = CentralConfig(load_config(sys.argv[1]))\n"
        "print(central.state.version, 'cryptography' in sys.modules)"
    )
    for config, version in ((plain, "0"), (tmp_path / "agent.toml", "1")):
        result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True,
                                text=True, check=True)  # fmt: skip
        # The enrolled one checked its cache's signature (v1 runs) all the same.
        assert result.stdout.split() == [version, "False"], (config, result.stderr)


def test_a_check_that_exits_0_without_its_verdict_on_this_config_passes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Something else answering in the check's place (exit 0, any output) is no verdict."""
    from agent import configkeys

    real = subprocess.run

    def impostor(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return real([sys.executable, "-c", "print('valid 00')"], **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "run", impostor)  # the module the check imports
    with pytest.raises(WireError, match="without its verdict"):
        configkeys._check_in_a_process(b"k" * 32 + b"s" * 64 + b"config")
