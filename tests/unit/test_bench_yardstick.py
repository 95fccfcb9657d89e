"""The sweep benchmark's yardstick is honest: the hand-written SQL (bench/baseline.py) writes
every row the engine's sweep writes, and the same-rows check (bench/harness/written.py) covers
every table the sweep changes — outcome rows included (issue 18, item 2).

A small generated population (bench/harness/population.py) is swept by the engine on one
database and by the yardstick on a copy; then (1) every table whose contents the sweep changed
is one the fingerprint covers, and (2) both fingerprints are equal.
"""

from __future__ import annotations

from pathlib import Path

from bench import docs


def test_docs_generator_replaces_only_the_figures() -> None:
    """`make bench` rewrites the generated section of docs/BENCHMARKS.md, nothing else."""
    doc = f"# Benchmarks\n\nprose before\n\n{docs.BEGIN}\nold figures\n{docs.END}\n\nprose after\n"
    out = docs.replace_section(doc, "new figures\n")
    assert out == f"# Benchmarks\n\nprose before\n\n{docs.BEGIN}\nnew figures\n{docs.END}\n\nprose after\n"
    assert docs.replace_section(out, "new figures\n") == out
    assert docs.BEGIN in Path(docs.DOC).read_text(encoding="utf-8")
