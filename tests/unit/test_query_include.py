"""`-- include: name` in a named query (db/queries.py): one definition, read by every statement
that needs it — the renewal in time is written once and included by the certification outcome,
`report` and the programme page."""

from __future__ import annotations

import pytest

from scenario_engine.db.queries import _expand, query


def test_an_include_line_stands_for_the_fragment() -> None:
    raw = {
        "frag": "SELECT 1 AS one",
        "outer": "WITH f AS (\n    -- include: frag\n)\nSELECT * FROM f WHERE $1::int = 1",
    }
    assert _expand("outer", raw) == "WITH f AS (\nSELECT 1 AS one\n)\nSELECT * FROM f WHERE $1::int = 1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"a": "-- include: b", "b": "-- include: a"}, "includes itself"),
        ({"a": "-- include: nowhere"}, "which no .sql file defines"),
        ({"a": "-- include: b", "b": "SELECT $1::int"}, "takes parameters"),
    ],
)
def test_a_cycle_an_unknown_name_or_a_fragment_with_parameters_fails_at_load(
    raw: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _expand("a", raw)


def test_the_renewal_definition_is_written_once_and_read_by_its_three_statements() -> None:
    definition = query("certification_renewed_in_time")
    assert (
        "n.issued_at < e.expires_at" in definition
        and "(n.issued_at, n.id) > (e.issued_at, e.id)" in definition
    )
    for reader in ("certification_outcomes", "certification_renewals"):
        assert definition in query(reader) and "-- include:" not in query(reader)


def test_a_fragment_with_parameters_fits_a_statement_that_declares_them_first() -> None:
    """A fragment may read $n when it declares its parameters and the including statement's
    declaration starts with the same names (so $n means the same on both sides): the outcome
    counts' rows are written once for outcome_counts and arm_outcome_counts."""
    raw = {
        "outer": "-- params: since, until, org\nWITH f AS (\n-- include: rows\n)\nSELECT * FROM f",
        "rows": "-- params: since, until\nSELECT $1::date AS a, $2::date AS b",
    }
    assert _expand("outer", raw).endswith(
        "WITH f AS (\nSELECT $1::date AS a, $2::date AS b\n)\nSELECT * FROM f"
    )
    for host in ("-- params: until, since, org", "-- params: since", ""):
        with pytest.raises(ValueError, match="does not declare first"):
            _expand("outer", {**raw, "outer": raw["outer"].replace("-- params: since, until, org", host)})
    for name in ("outcome_counts", "arm_outcome_counts"):
        assert "-- include:" not in query(name) and "o.window_ends_at <= (SELECT cutoff FROM c)" in query(
            name
        )
