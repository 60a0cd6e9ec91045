from __future__ import annotations

from agent.snmp.rates import CounterReading, counter_rate


def reading(value: int, at: float, uptime: int | None = 1000, bits: int = 32) -> CounterReading:
    return CounterReading(value, bits, at, uptime)


def test_plain_rate() -> None:
    assert counter_rate(reading(1000, 0), reading(3000, 10, 2000)) == 200.0


def test_first_reading_has_no_rate() -> None:
    assert counter_rate(None, reading(5, 1)) is None


def test_32_bit_wrap_adds_two_to_the_32() -> None:
    before = reading(2**32 - 100, 0, 1000)
    after = reading(900, 10, 2000)
    assert counter_rate(before, after) == 100.0


def test_reboot_drops_the_sample() -> None:
    assert counter_rate(reading(5000, 0, 90_000), reading(100, 10, 500)) is None


def test_64_bit_decrease_is_a_reset_not_a_wrap() -> None:
    assert counter_rate(reading(10**12, 0, 1000, 64), reading(5, 10, 2000, 64)) is None


def test_never_above_interface_speed() -> None:
    # 10 Mb/s interface = 1.25 MB/s ceiling; a 12.5 MB/s "rate" is a glitch.
    assert counter_rate(reading(0, 0), reading(125_000_000, 10, 2000), ceiling=1_250_000) is None
    assert (
        counter_rate(reading(0, 0), reading(12_500_000, 10, 2000), ceiling=1_250_000) == 1_250_000
    )


def test_width_change_restarts() -> None:
    assert counter_rate(reading(5, 0, bits=32), reading(10, 10, bits=64)) is None


def test_no_elapsed_time_no_rate() -> None:
    assert counter_rate(reading(5, 10), reading(10, 10)) is None
