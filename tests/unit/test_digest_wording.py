"""The digest's title counts its updates in the mentor's language, by the locale's CLDR plural
rules (Babel through messages.py), with no plural rule written in the engine."""

from __future__ import annotations

import pytest

from scenario_engine.push.digest import digest_message
from scenario_engine.templates import TITLE_MAX_BYTES


@pytest.mark.parametrize(
    ("locale", "count", "expected"),
    [
        ("en", 1, "1 update: A"),
        ("en", 3, "3 updates: A, B, C"),
        ("nb", 1, "1 oppdatering: A"),
        ("nb", 2, "2 oppdateringer: A, B"),
        ("nn", 2, "2 oppdateringar: A, B"),
        ("nb-NO", 2, "2 oppdateringer: A, B"),
        ("de", 2, "2 updates: A, B"),  # no German title: English
        (None, 2, "2 updates: A, B"),
    ],
)
def test_the_title_counts_updates_in_the_mentors_language(
    locale: str | None, count: int, expected: str
) -> None:
    titles = ["A", "B", "C"][:count]
    title, body = digest_message(titles, locale)
    assert title == expected
    assert body.splitlines() == [f"• {t}" for t in titles]


def test_a_long_digest_title_is_cut_to_the_push_limit() -> None:
    title, _ = digest_message(["x" * 100] * 10, "en")
    assert title.startswith("10 updates: ") and len(title.encode()) <= TITLE_MAX_BYTES
