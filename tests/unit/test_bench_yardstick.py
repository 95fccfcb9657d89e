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


def test_docs_generator_shows_every_event_bar_with_its_verdict(tmp_path: Path) -> None:
    """`make bench` runs bench.events too: the figures list the platform's insert ratio at each
    client count in the default mode (durable), the drain rate and the latency at 1k/s, each
    against issue 18's bar — a missed bar says **miss**, never pass."""
    inserts = {
        "seconds": 10,
        "rounds": 2,
        "median_tps": {
            "disabled/durable/c1": 6000,
            "poll/durable/c1": 4800,
            "disabled/durable/c16": 20000,
            "poll/durable/c16": 12000,
            "notify/durable/c16": 6000,
        },
        "relative_to_disabled_median_of_rounds": {
            "disabled/durable/c1": 1.0,
            "poll/durable/c1": 0.8,
            "disabled/durable/c16": 1.0,
            "poll/durable/c16": 0.6,
            "notify/durable/c16": 0.3,
        },
    }

    def drain(mode: str, rate: int) -> dict[str, object]:
        return {
            "label": f"{mode}-run",
            "notify_mode": mode,
            "writer": {"rate_per_s": 20_000},
            "daemon": {"steady_rate_per_s_mean": rate, "drain_after_stop_s": 1.0},
            "load_during": [1.0, 1.0, 1.0],
        }

    result = {
        "started_at": "2026-12-06T10:00:00+00:00",
        "params": {"writers": 4, "rows_per_insert": 50, "seconds": 20.0, "rate": 1000.0},
        "inserts": inserts,
        "throughput": [drain("poll", 9_000), drain("notify", 12_000)],
        "latency": [
            {
                "label": "poll0.5s",
                "notify_mode": "poll",
                "events_after_first_second": {
                    "latency_ms": {"p50": 30.0, "p95": 60.0, "p99": 90.0, "max": 120.0}
                },
            }
        ],
    }
    (tmp_path / "events.json").write_text(json.dumps(result), encoding="utf-8")
    text = docs.figures(tmp_path, [], [], [])
    bars = {
        line.split(" | ")[0].lstrip("| "): line
        for line in text.split("### Issue 18's bars in this run")[1].split("###")[0].splitlines()
        if line.startswith("| ") and "verdict" not in line
    }
    assert bars["platform INSERTs, default (poll) triggers ÷ none, 1 client(s), durable"].endswith("| pass |")
    assert bars["platform INSERTs, default (poll) triggers ÷ none, 16 client(s), durable"].endswith(
        "| **miss** |"
    )
    # the default (poll) path's drain is the bar's figure, not the faster NOTIFY option's
    drained = bars["events drained, writer at full speed (poll mode)"]
    assert "9,000/s" in drained and drained.endswith("| **miss** |")
    assert bars["insert → processed at 1k/s, poll0.5s"].endswith("| pass |")
    assert "| notify | durable |" in text and "0.30×" in text
