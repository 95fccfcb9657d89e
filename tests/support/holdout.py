"""Shared by tests/unit/test_holdout.py and tests/process/test_holdout.py."""

from __future__ import annotations

import random
import uuid


def mentor_ids(n: int, seed: int) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]
