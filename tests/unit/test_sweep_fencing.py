"""One period is swept by one instance at a time (issue 9, defect 3).

A leader learns that its advisory lock is gone only when it asks; before the fix, a leader
whose lock connection was killed kept sweeping its period through pool connections while
the new leader re-claimed the same period. A sweep claim now has an owner, a claim token
and a lease renewed before every batch, and every batch is recorded in
``scenario_sweep_batch`` — the ledger these tests read to prove that no mentor range was
evaluated by two instances at once.
"""

from __future__ import annotations

import math

import pytest

from scenario_engine.config import load_settings
from scenario_engine.errors import ConfigError


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e308", "86400"])
def test_sweep_lease_must_be_positive_and_bounded(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(sweep_lease_seconds=value)
    assert [key for key, _ in info.value.problems] == ["SCENARIO_SWEEP_LEASE_SECONDS"]
    assert math.isclose(load_settings().sweep_lease_seconds, 30.0)
