"""The README's configuration table is generated from the Settings model; keep it current."""

from __future__ import annotations

from pathlib import Path

from scenario_engine.config import settings_reference_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_matches_the_settings_model() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- settings:begin -->") + len("<!-- settings:begin -->")
    end = text.index("<!-- settings:end -->")
    assert text[start:end].strip() == settings_reference_markdown().strip(), (
        "README.md is out of date: paste the output of "
        "`python -c 'from scenario_engine.config import settings_reference_markdown as s; print(s())'`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
