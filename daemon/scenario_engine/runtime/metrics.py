"""Prometheus metrics of one daemon process, in a registry of its own."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scenario_engine.notifications import Outcome
from scenario_engine.outcomes.resolve import ResolvedCount
from scenario_engine.version import VERSION


class BatchHistogram(Histogram):
    """A histogram that also takes a batch of observations at once.

    ``observe`` costs a lock and a bucket scan per value; the drain observes every event of a
    batch (thousands), which took about a tenth of its Python time. ``observe_many`` adds the
    batch with one increment per bucket it touches: the same counts, sum and buckets."""

    def observe_many(self, amounts: Sequence[float]) -> None:
        if not amounts:
            return
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(sum(amounts))
        # the first bucket whose upper bound is >= the amount (the last bound is +Inf)
        for index, n in Tally(bisect_left(self._upper_bounds, a) for a in amounts).items():
            self._buckets[index].inc(n)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "scenario_events_received",
            "NOTIFY wake-ups received on scenario_events (any role may send them; not a count of changes).",
            registry=r,
        )
        self.status_connections_dropped = Counter(
            "scenario_status_connections_dropped",
            "Status-server connections closed by the server: evicted (to make room), rejected "
            "(every slot busy), timed_out (headers or request too slow).",
            ["reason"],
            registry=r,
        )
        self.events_processed = Counter(
            "scenario_events_processed", "Event rows processed by the drain.", registry=r
        )
        self.drain_polls = Counter(
            "scenario_drain_polls",
            "The drain's probes for pending events between batches, by result (pending, empty).",
            ["result"],
            registry=r,
        )
        self.drain_poll_interval = Gauge(
            "scenario_drain_poll_interval_seconds",
            "The drain's current wait between probes (short while events flow, long when idle).",
            registry=r,
        )
        self.events_failed = Counter(
            "scenario_events_failed", "Failed attempts at processing an event row.", registry=r
        )
        self.events_dead = Counter(
            "scenario_events_dead_lettered", "Event rows dead-lettered.", ["reason"], registry=r
        )
        self.drain_latency = BatchHistogram(
            "scenario_event_drain_latency_seconds",
            "From the event row's insert to its processing.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.sweep_duration = Histogram(
            "scenario_sweep_duration_seconds",
            "Duration of scheduled sweeps.",
            buckets=(0.1, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900),
            registry=r,
        )
        self.sweeps = Counter("scenario_sweeps", "Sweeps run by this process.", ["result"], registry=r)
        self.sweeps_by_mode = Counter(
            "scenario_sweeps_completed_by_mode",
            "Completed sweeps, full or incremental.",
            ["mode"],
            registry=r,
        )
        self.sweep_results = Counter(
            "scenario_sweep_decisions", "Decisions made by sweeps.", ["rule", "outcome"], registry=r
        )
        self.notifications = Counter(
            "scenario_notifications",
            "Scenario decisions by scenario type and outcome (sent or why suppressed).",
            ["scenario", "outcome"],
            registry=r,
        )
        self.holdouts = Counter(
            "scenario_holdouts",
            "Candidates that policy would have sent, kept back by the holdout (docs/OUTCOMES.md).",
            ["rule"],
            registry=r,
        )
        self.outcomes = Counter(
            "scenario_outcomes",
            "Outcomes that became known: achieved (seen in the window) or missed (window closed), "
            "for the treated and the held-out arm.",
            ["rule", "arm", "status"],
            registry=r,
        )
        self.leader = Gauge("scenario_leader", "1 while this process holds the sweep leadership.", registry=r)
        self.listener_up = Gauge(
            "scenario_listener_up", "1 while the LISTEN connection is healthy.", registry=r
        )
        self.database_up = Gauge("scenario_database_up", "1 while the database answers.", registry=r)
        self.installation_problems = Gauge(
            "scenario_installation_problems",
            "Problems the last periodic installation check found (a missing platform hook, ...).",
            registry=r,
        )
        self.events_backlog = Gauge(
            "scenario_event_backlog", "Event rows waiting to be processed.", registry=r
        )
        self.events_dead_total = Gauge(
            "scenario_event_dead", "Dead-lettered event rows in the table.", registry=r
        )
        self.push_backlog = Gauge("scenario_push_backlog", "Pushes pending delivery.", registry=r)
        self.oldest_event_age = Gauge(
            "scenario_event_oldest_pending_age_seconds", "Age of the oldest pending event row.", registry=r
        )
        self.push_outcomes = Counter(
            "scenario_push_outcomes",
            "Push attempts by provider, scenario and outcome (sent/failed/retried/dead/cancelled/deferred).",
            ["provider", "scenario", "outcome"],
            registry=r,
        )
        self.push_latency = Histogram(
            "scenario_push_send_latency_seconds",
            "Time one provider call took.",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.push_oldest_age = Gauge(
            "scenario_push_oldest_pending_age_seconds", "Age of the oldest undelivered push.", registry=r
        )
        self.rules_reloads = Counter("scenario_rules_reloads", "SIGHUP reloads.", ["result"], registry=r)
        self.mentors_quarantined = Counter(
            "scenario_mentors_quarantined",
            "Mentors set aside by an evaluation because their rows could not be evaluated "
            "(each time; the table scenario_quarantine says who and why).",
            registry=r,
        )
        self.last_sweep_finished = Gauge(
            "scenario_last_sweep_finished_timestamp_seconds",
            "Unix time the last sweep of this process completed (0: none yet).",
            registry=r,
        )
        self.build_info = Gauge(
            "scenario_engine_build_info",
            "Always 1; the label says which version runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(VERSION).set(1)
        # Several instances (runtime/fleet.py) and the clock rule (runtime/clock.py).
        self.rules_info = Gauge(
            "scenario_rules_info",
            "Always 1; the label is the fingerprint of the rules this instance evaluates with.",
            ["fingerprint"],
            registry=r,
        )
        self._fingerprint: str | None = None
        self.rules_mismatch = Gauge(
            "scenario_rules_fingerprint_mismatch",
            "1 while this instance's rules differ from the leader's.",
            registry=r,
        )
        self.evaluation_paused = Gauge(
            "scenario_evaluation_paused",
            "1 while this instance evaluates no event (its rules differ from the leader's).",
            registry=r,
        )
        self.clock_skew = Gauge(
            "scenario_clock_skew_seconds",
            "The database server's clock minus this host's, measured on the health round trip.",
            registry=r,
        )

    def set_rules_fingerprint(self, fingerprint: str) -> None:
        """One series at a time: the old fingerprint's goes when the rules change."""
        if fingerprint == self._fingerprint:
            return
        if self._fingerprint is not None:
            self.rules_info.remove(self._fingerprint)
        self.rules_info.labels(fingerprint).set(1)
        self._fingerprint = fingerprint

    def count_quarantined(self, n: int) -> None:
        self.mentors_quarantined.inc(n)

    def count_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            outcome = "duplicate" if o.duplicate else o.decision.outcome
            self.notifications.labels(o.candidate.scenario_type, outcome).inc()
            if outcome == "holdout":
                self.holdouts.labels(o.candidate.rule_name).inc()

    def count_resolved(self, resolved: Iterable[ResolvedCount]) -> None:
        for r in resolved:
            self.outcomes.labels(r.rule_name, r.arm, r.status).inc(r.n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
