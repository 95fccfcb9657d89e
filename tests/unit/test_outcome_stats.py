"""The lift interval reproduces Newcombe's (1998) published worked examples, method 10."""

from __future__ import annotations

import pytest

from scenario_engine.outcomes.stats import newcombe_interval, wilson_interval


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
    ],
)
def test_newcombe_hybrid_score_matches_the_published_table(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    interval = newcombe_interval(x1, n1, x2, n2)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)


def test_wilson_interval_stays_inside_zero_and_one_at_the_edges() -> None:
    assert wilson_interval(0, 10).low == 0.0
    assert wilson_interval(10, 10).high == 1.0
    with pytest.raises(ValueError, match="3/2"):
        wilson_interval(3, 2)
