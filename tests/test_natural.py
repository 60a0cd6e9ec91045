"""Natural order of port and target names, which come from agents and devices."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from collector.common.natural import natural_key


def test_numbers_in_names_sort_as_numbers() -> None:
    names = ["Gi0/0/10", "Gi0/1/0", "gi0/0/2", "Gi0/0/1", "Port 100", "Port 9", "Port 09"]
    assert sorted(names, key=natural_key) == [
        "Gi0/0/1",
        "gi0/0/2",
        "Gi0/0/10",
        "Gi0/1/0",
        "Port 9",
        "Port 09",
        "Port 100",
    ]


def test_digits_that_int_refuses_sort_as_text_or_by_length() -> None:
    huge = "9" * 5000  # int() refuses more than 4,300 digits
    names = [f"x{huge}", "x\u00b2", "x\u0663", "x10", "x2"]
    ordered = sorted(names, key=natural_key)
    assert ordered[:3] == ["x2", "x10", f"x{huge}"]
    assert set(ordered[3:]) == {"x\u00b2", "x\u0663"}  # not numbers: compared as text


@given(st.lists(st.text(max_size=40), max_size=20))
def test_any_names_sort_without_error_into_a_non_decreasing_order(names: list[str]) -> None:
    keys = [natural_key(name) for name in sorted(names, key=natural_key)]
    assert all(a <= b for a, b in itertools.pairwise(keys))
