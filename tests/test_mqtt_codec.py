"""The collector's MQTT packets: encodings against the standard's own examples and
paho's encoder, any split of the byte stream, and any bytes at all (a clean
ProtocolError or packets, nothing else)."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.ingest import codec

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("value", "encoded"),
    # The boundaries of MQTT 5.0 table 1-1.
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_variable_byte_integers_match_the_standard(value: int, encoded: bytes) -> None:
    assert codec.varint(value) == encoded


def test_a_variable_byte_integer_beyond_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="268435456"):
        codec.varint(268_435_456)
    # A fifth length byte on the wire is malformed, not a huge packet to wait for.
    with pytest.raises(codec.ProtocolError, match="remaining length"):
        codec.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_connect_carries_what_the_collector_asks_for() -> None:
    packet = codec.connect(
        "collector-1",
        keepalive=60,
        clean_start=False,
        username="commune-collector",
        password="s3cret",
        session_expiry=604_800,
        receive_maximum=2000,
        maximum_packet_size=1 << 24,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 604_800
    properties.ReceiveMaximum = 2000
    properties.MaximumPacketSize = 1 << 24
    variable = b"\x00\x04MQTT\x05" + bytes((0x80 | 0x40,)) + struct.pack("!H", 60)
    variable += properties.pack()  # type: ignore[no-untyped-call]
    payload = b"\x00\x0bcollector-1\x00\x11commune-collector\x00\x06s3cret"
    assert packet == b"\x10" + codec.varint(len(variable + payload)) + variable + payload


def test_subscribe_and_puback() -> None:
    packet = codec.subscribe(7, ["a/+", "$share/g/b/#"])
    # fixed header 0x82 (SUBSCRIBE, reserved bits 0010), id 7, no properties,
    # each filter with options byte: QoS 1.
    body = b"\x00\x07\x00" + b"\x00\x03a/+\x01" + b"\x00\x0c$share/g/b/#\x01"
    assert packet == b"\x82" + codec.varint(len(body)) + body
    assert codec.puback(0x1234) == b"\x40\x02\x12\x34"


@given(
    topic=st.text(min_size=1, max_size=80),
    payload=st.binary(max_size=3000),
    packet_id=st.integers(1, 0xFFFF),
    qos=st.sampled_from([0, 1]),
    retain=st.booleans(),
    protocol=st.sampled_from([4, 5]),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
)
@FAST
def test_publishes_survive_any_split_of_the_stream(
    topic: str,
    payload: bytes,
    packet_id: int,
    qos: int,
    retain: bool,
    protocol: int,
    cuts: list[int],
) -> None:
    one = codec.publish(topic, payload, packet_id, qos, retain, protocol)
    stream = one + one
    reader = codec.PacketReader(protocol)
    packets: list[codec.Packet] = []
    edges = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(edges):
        packets += reader.feed(stream[start:end])
    expected = codec.Publish(topic, payload, packet_id if qos else 0, retain)
    assert packets == [expected, expected]


def test_acknowledgements_with_reasons_and_properties_are_read() -> None:
    reader = codec.PacketReader()
    reason_string = b"\x1f\x00\x08go away!"
    keep_alive = b"\x13\x00\x1e"
    connack_body = b"\x01\x86" + codec.varint(len(reason_string + keep_alive))
    connack_body += reason_string + keep_alive
    suback_body = b"\x00\x01\x00\x01\x87"  # id 1, no properties, granted QoS 1, refused
    disconnect_body = b"\x8b\x00"  # server shutting down, no properties
    stream = (
        b"\x20" + codec.varint(len(connack_body)) + connack_body
        + b"\x90" + codec.varint(len(suback_body)) + suback_body
        + b"\x40\x02\x00\x09"  # PUBACK id 9, success left out
        + b"\xd0\x00"  # PINGRESP
        + b"\xe0" + codec.varint(len(disconnect_body)) + disconnect_body
    )  # fmt: skip
    connack, suback, puback, ping, disconnect = reader.feed(stream)
    assert connack == codec.Ack(codec.CONNACK, (0x86,), 0, True, "go away!", 30)
    assert codec.reason_text(connack.reasons[0]) == "bad user name or password (0x86)"  # type: ignore[union-attr]
    assert suback == codec.Ack(codec.SUBACK, (0x01, 0x87), 1)
    assert puback == codec.Ack(codec.PUBACK, (0,), 9)
    assert ping == codec.Other(codec.PINGRESP)
    assert disconnect == codec.Ack(codec.DISCONNECT, (0x8B,))


def test_a_qos_2_publish_or_an_unknown_property_is_a_protocol_error() -> None:
    with pytest.raises(codec.ProtocolError, match="QoS 2"):
        codec.PacketReader().feed(codec.publish("t", b"x", 1, qos=2))
    with pytest.raises(codec.ProtocolError, match="unknown property 0x7e"):
        codec.PacketReader().feed(b"\x20\x05\x00\x00\x02\x7e\x00")


def test_a_packet_beyond_the_limit_is_refused_before_it_is_read() -> None:
    reader = codec.PacketReader(max_packet=1000)
    with pytest.raises(codec.ProtocolError, match="exceeds 1000"):
        reader.feed(b"\x30" + codec.varint(5000))


@given(chunks=st.lists(st.binary(max_size=64), max_size=8), protocol=st.sampled_from([4, 5]))
@FAST
def test_any_bytes_give_packets_or_a_protocol_error(chunks: list[bytes], protocol: int) -> None:
    reader = codec.PacketReader(protocol)
    try:
        for chunk in chunks:
            for packet in reader.feed(chunk):
                assert isinstance(packet, codec.Publish | codec.Ack | codec.Other)
    except codec.ProtocolError as exc:
        assert str(exc)


class CountingReader(codec.PacketReader):
    def __init__(self) -> None:
        super().__init__(max_packet=16 * 1024 * 1024)
        self.decoded_bytes = 0

    def _decode(self, buffer: bytes) -> tuple[list[codec.Packet], int, int]:
        self.decoded_bytes += len(buffer)
        return super()._decode(buffer)


def test_a_big_packet_in_small_reads_is_decoded_once_not_once_per_read() -> None:
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
    packet = codec.publish("commune/dong-nai/la-nga/pc-01/data", payload, 9)
    reader = CountingReader()
    found: list[codec.Packet] = []
    for at in range(0, len(packet), 1400):
        found += reader.feed(packet[at : at + 1400])
    assert [type(p) for p in found] == [codec.Publish]
    assert isinstance(found[0], codec.Publish) and found[0].payload == payload
    # The first read, then the whole packet once: not 6,000 growing copies.
    assert reader.decoded_bytes <= len(packet) + 1400
