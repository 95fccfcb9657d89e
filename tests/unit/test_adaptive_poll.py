"""The drain's adaptive poll (issue 18, item 1): in the default poll mode no NOTIFY tells the
daemon that an event arrived, so it probes for pending events — often while they flow, rarely
when idle. The real ``scenario-engine run`` process, counted through its metrics."""

from __future__ import annotations

from scenario_engine.runtime.drain import AdaptivePoll


def test_poll_doubles_on_empty_probes_up_to_the_idle_interval_and_resets_on_events() -> None:
    poll = AdaptivePoll(0.01, 0.5)
    waits = []
    for _ in range(8):
        waits.append(poll())
        poll.empty()
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
    poll.found()
    assert poll() == 0.01
    assert AdaptivePoll(2.0, 0.5)() == 0.5  # a floor above the ceiling is the ceiling


def test_batch_histogram_counts_a_batch_as_single_observations() -> None:
    """The drain observes a batch's latencies at once: the same buckets, count and sum."""
    from prometheus_client import CollectorRegistry, Histogram

    from scenario_engine.runtime.metrics import BatchHistogram

    buckets = (0.01, 0.1, 1.0)
    values = [0.0, 0.01, 0.010001, 0.05, 0.1, 0.5, 1.0, 2.0, 30.0, 0.05]
    one = Histogram("one", "d", buckets=buckets, registry=CollectorRegistry())
    many = BatchHistogram("many", "d", buckets=buckets, registry=CollectorRegistry())
    for v in values:
        one.observe(v)
    many.observe_many(values)
    many.observe_many([])

    def samples(h: Histogram) -> list[tuple[str, float]]:
        return [
            (s.name.split("_", 1)[1] + str(s.labels), s.value)
            for m in h.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        ]

    assert samples(one) == samples(many)
