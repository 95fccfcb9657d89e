"""The sweep benchmark's yardstick is honest: the hand-written SQL (bench/baseline.py) writes
every row the engine's sweep writes, and the same-rows check (bench/harness/written.py) covers
every table the sweep changes — outcome rows included (issue 18, item 2).

A small generated population (bench/harness/population.py) is swept by the engine on one
database and by the yardstick on a copy; then (1) every table whose contents the sweep changed
is one the fingerprint covers, and (2) both fingerprints are equal.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import docs


def test_docs_generator_replaces_only_the_figures() -> None:
    """`make bench` rewrites the generated section of docs/BENCHMARKS.md, nothing else."""
    doc = f"# Benchmarks\n\nprose before\n\n{docs.BEGIN}\nold figures\n{docs.END}\n\nprose after\n"
    out = docs.replace_section(doc, "new figures\n")
    assert out == f"# Benchmarks\n\nprose before\n\n{docs.BEGIN}\nnew figures\n{docs.END}\n\nprose after\n"
    assert docs.replace_section(out, "new figures\n") == out
    assert docs.BEGIN in Path(docs.DOC).read_text(encoding="utf-8")


def test_docs_generator_picks_up_the_programmes_result(tmp_path: Path) -> None:
    """`python -m bench.programmes --mentors 1000000` writes programmes-1000000.json, and the
    figures of docs/BENCHMARKS.md show its steady sweeps and ratio (issue 20's bar)."""
    sweeps = {
        "bench_one_programme": [{"seconds": 30.0}, {"seconds": 10.0}, {"seconds": 12.0}],
        "bench_programmes": [{"seconds": 40.0}, {"seconds": 11.0}, {"seconds": 13.0}],
    }
    result = {
        "benchmark": "programmes",
        "started_at": "2026-12-06T10:00:00+00:00",
        "mentors": 1_000_000,
        "runs": sweeps,
        "steady_median_seconds": {"bench_one_programme": 11.0, "bench_programmes": 12.0},
        "ratio": 1.091,
    }
    (tmp_path / "programmes-1000000.json").write_text(json.dumps(result), encoding="utf-8")
    section = docs.figures(tmp_path, [], [], [1_000_000])
    assert "| 1,000,000 | 10.00, 12.00 (median 11.00) | 11.00, 13.00 (median 12.00) | 1.09 pass |" in section
    assert "programmes-1000000.json" in section
