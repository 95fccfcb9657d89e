"""Confidence intervals for outcome rates and for the lift of the treated over the holdout.

The lift is a difference of two independent proportions. Its interval is Newcombe's hybrid
score interval (Newcombe 1998, "Interval estimation for the difference between independent
proportions", method 10): it combines the Wilson score intervals of both groups, stays inside
[-1, 1], and keeps close to its nominal coverage for the small groups and rates near 0 or 1
that a programme's holdout produces — where the textbook Wald interval does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

METHOD = "Newcombe hybrid score interval (method 10), 95 %"
Z_95 = 1.959963984540054  # the 97.5th percentile of the standard normal


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of one proportion; n must be positive."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0/n and n/n the bound is exactly 0 or 1; floating point lands a hair off it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> Interval:
    """Interval for p1 - p2 (group 1 minus group 2), as fractions (not percentage points)."""
    p1, p2 = x1 / n1, x2 / n2
    w1, w2 = wilson_interval(x1, n1, z), wilson_interval(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2)
    high = d + math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2)
    return Interval(low, high)
