"""Shared by tests/unit/test_config_fuzz.py and tests/process/test_config_fuzz.py."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from hypothesis import strategies as st

from scenario_engine.config import Config, Settings, load_config
from scenario_engine.errors import ConfigError

BASE_ENV = {"SCENARIO_DATABASE_URL": "postgresql://app:pw@127.0.0.1:5432/platform"}

NUMBER_FIELDS = [
    name
    for name, info in Settings.model_fields.items()
    if {int, float} & ({info.annotation} | set(getattr(info.annotation, "__args__", ())))
]

odd_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e308", "-1e308", "inf", "-inf", "nan", "1e-300", "0", "-0", "0.000001", "5e-324"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", " ", "1_000", "0x10", "١٢", "1e3", "12abc", "\x01", "9" * 400]),
)


def _bounds(field: str) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for m in Settings.model_fields[field].metadata:
        for attr in ("ge", "gt", "le", "lt"):
            value = getattr(m, attr, None)
            if value is not None and attr in ("ge", "gt"):
                low = max(low, float(value))
            elif value is not None:
                high = min(high, float(value))
    return low, high


def field_values(field: str) -> st.SearchStrategy[str]:
    """Odd values, and values at and inside the field's own bounds."""
    low, high = _bounds(field)
    is_int = Settings.model_fields[field].annotation is int
    near = (
        st.integers(int(low), int(high)).map(str)
        if is_int
        else st.floats(low, high, allow_nan=False).map(repr)
    )
    edges = st.sampled_from([repr(low), repr(high), repr(high * 1.0001 + 1), repr(low - 1)])
    return st.one_of(odd_numbers, near, near, edges)


numeric_env = st.lists(
    st.sampled_from(NUMBER_FIELDS).flatmap(lambda f: st.tuples(st.just(f), field_values(f))),
    min_size=1,
    max_size=4,
).map(dict)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    kept = {k: v for k, v in os.environ.items() if not k.upper().startswith("SCENARIO_")}
    kept.pop("CREDENTIALS_DIRECTORY", None)
    with mock.patch.dict(os.environ, {**kept, **values}, clear=True):
        yield


def validated() -> Config | ConfigError:
    try:
        return load_config()
    except ConfigError as exc:
        return exc
