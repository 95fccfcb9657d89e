"""`scenario-engine sweep` and `explain` as an operator runs them."""

from __future__ import annotations

from scenario_engine.terminal import terminal_safe


def test_terminal_safe_escapes_what_could_drive_a_terminal_and_nothing_else() -> None:
    assert terminal_safe("a\x1b[2Jb\x07\x00\x7f\x85\x9b") == "a\\x1b[2Jb\\x07\\x00\\x7f\\x85\\x9b"
    assert terminal_safe("\u202eabc\u2066\u200f\u2028") == "\\u202eabc\\u2066\\u200f\\u2028"
    assert terminal_safe("one\ntwo\tthree") == "one\\x0atwo\\x09three"
    assert terminal_safe("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    family = "Zoë \U0001f469\u200d\U0001f467 Ünal 日本"  # letters, emoji with a zero-width joiner
    assert terminal_safe(family) == family
