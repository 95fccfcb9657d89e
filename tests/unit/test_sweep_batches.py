"""A full sweep's batch size gives every lane as many batches (sweep.balanced_batch): a sweep
ends when its last lane does, so an odd batch out ran alone (issue 18: 5 batches of 20k over two
lanes made a 100k steady sweep take as long as 6)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from scenario_engine.sweep import balanced_batch


def test_a_100k_sweep_over_two_lanes_gets_six_batches_not_five() -> None:
    size = balanced_batch(96_043, 20_000, 2)
    assert size == 16_008 and math.ceil(96_043 / size) == 6


def test_a_1m_sweep_keeps_its_batches() -> None:
    assert balanced_batch(959_891, 20_000, 2) == 20_000  # 48 batches, 24 per lane


def test_batches_that_already_share_out_evenly_keep_the_configured_size() -> None:
    assert balanced_batch(6, 5, 2) == 5  # 5 + 1: one batch per lane, as before
    assert balanced_batch(6, 20_000, 2) == 20_000  # one batch: not split
    assert balanced_batch(80_000, 20_000, 2) == 20_000


def test_unknown_count_or_one_lane_keeps_the_configured_size() -> None:
    assert balanced_batch(-1, 20_000, 2) == 20_000
    assert balanced_batch(0, 20_000, 2) == 20_000
    assert balanced_batch(96_043, 20_000, 1) == 20_000


def _rounds(mentors: int, size: int, lanes: int) -> int:
    """Batches the busiest lane takes."""
    return math.ceil(math.ceil(mentors / size) / lanes)


@given(st.integers(1, 10_000_000), st.integers(1, 100_000), st.integers(1, 16))
def test_never_above_the_cap_and_never_a_longer_lane(mentors: int, cap: int, lanes: int) -> None:
    size = balanced_batch(mentors, cap, lanes)
    assert 1 <= size <= cap
    # the busiest lane takes no more batches than with the cap, and no more mentors
    assert _rounds(mentors, size, lanes) <= _rounds(mentors, cap, lanes)
    assert _rounds(mentors, size, lanes) * size <= _rounds(mentors, cap, lanes) * cap
