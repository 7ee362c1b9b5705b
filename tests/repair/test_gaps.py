"""missing_ranges: the exact ids of [first_id, end_id) the lake lacks, as half-open runs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from include.repair.gaps import count, missing_ranges


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def span(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=np.int64)


def brute_force(first_id: int, end_id: int, present: set[int], holes: set[int]) -> list[tuple[int, int]]:
    """Walk every id of the range and cut runs by hand: the reference for missing_ranges."""
    runs: list[tuple[int, int]] = []
    for trade_id in range(first_id, end_id):
        if trade_id in present or trade_id in holes:
            continue
        if runs and runs[-1][1] == trade_id:
            runs[-1] = (runs[-1][0], trade_id + 1)
        else:
            runs.append((trade_id, trade_id + 1))
    return runs


def test_nothing_missing() -> None:
    assert missing_ranges(100, 200, span(100, 200)) == []


def test_nothing_missing_with_extra_ids_outside_the_range() -> None:
    assert missing_ranges(100, 200, span(50, 250)) == []


def test_all_missing() -> None:
    assert missing_ranges(100, 200, ids()) == [(100, 200)]


def test_all_missing_when_present_ids_lie_outside() -> None:
    assert missing_ranges(100, 200, np.concatenate([span(0, 100), span(200, 300)])) == [(100, 200)]


def test_gaps_at_both_edges() -> None:
    assert missing_ranges(100, 200, span(103, 195)) == [(100, 103), (195, 200)]


def test_single_id_gaps_at_both_edges() -> None:
    assert missing_ranges(100, 200, span(101, 199)) == [(100, 101), (199, 200)]


def test_gap_in_the_middle() -> None:
    present = np.concatenate([span(100, 140), span(150, 200)])
    assert missing_ranges(100, 200, present) == [(140, 150)]


def test_several_gaps() -> None:
    present = np.setdiff1d(span(1, 31), ids(2, 3, 10, 20, 21, 22, 30))
    assert missing_ranges(1, 31, present) == [(2, 4), (10, 11), (20, 23), (30, 31)]
    assert count(missing_ranges(1, 31, present)) == 7


def test_unsorted_and_duplicate_present_ids() -> None:
    present = ids(7, 5, 5, 9, 6, 9)
    assert missing_ranges(5, 11, present) == [(8, 9), (10, 11)]


def test_known_holes_are_not_missing() -> None:
    present = np.setdiff1d(span(100, 200), ids(120, 121, 122, 150))
    assert missing_ranges(100, 200, present, known_holes={121, 150}) == [(120, 121), (122, 123)]


def test_holes_that_cover_every_gap_leave_nothing() -> None:
    present = np.setdiff1d(span(100, 200), ids(100, 150, 199))
    assert missing_ranges(100, 200, present, known_holes=[100, 150, 199]) == []


def test_holes_outside_the_range_change_nothing() -> None:
    assert missing_ranges(100, 110, ids(), known_holes=range(0, 100)) == [(100, 110)]


def test_holes_accept_any_iterable() -> None:
    present = span(0, 0)
    assert missing_ranges(0, 5, present, known_holes=iter([1, 3])) == [(0, 1), (2, 3), (4, 5)]


def test_empty_range() -> None:
    assert missing_ranges(100, 100, ids()) == []


def test_reversed_range() -> None:
    assert missing_ranges(200, 100, ids()) == []


def test_ranges_are_plain_ints() -> None:
    ((start, stop),) = missing_ranges(10, 12, ids())
    assert type(start) is int
    assert type(stop) is int


def test_count() -> None:
    assert count([]) == 0
    assert count([(1, 4), (10, 11)]) == 4


@settings(max_examples=300, deadline=None)
@given(
    first_id=st.integers(min_value=-5, max_value=60),
    length=st.integers(min_value=-10, max_value=80),
    present=st.sets(st.integers(min_value=-20, max_value=160), max_size=120),
    holes=st.sets(st.integers(min_value=-20, max_value=160), max_size=40),
)
def test_matches_brute_force(first_id: int, length: int, present: set[int], holes: set[int]) -> None:
    end_id = first_id + length
    got = missing_ranges(first_id, end_id, np.array(sorted(present), dtype=np.int64), holes)
    assert got == brute_force(first_id, end_id, present, holes)
    wanted = set(range(first_id, end_id)) - present - holes
    assert {i for start, stop in got for i in range(start, stop)} == wanted
    assert count(got) == len(wanted)


@settings(max_examples=100, deadline=None)
@given(
    first_id=st.integers(min_value=0, max_value=10**12),
    offsets=st.sets(st.integers(min_value=0, max_value=300), max_size=250),
)
def test_large_ids_match_brute_force(first_id: int, offsets: set[int]) -> None:
    """Real trade ids are in the billions: nothing may pass through a 32-bit type."""
    end_id = first_id + 300
    present = {first_id + offset for offset in offsets}
    got = missing_ranges(first_id, end_id, np.array(sorted(present), dtype=np.int64))
    assert got == brute_force(first_id, end_id, present, set())
