"""The decisions behind runtime/fleet.py and runtime/clock.py, without a process: when a follower
pauses, when it resumes, and how a skew is computed from one round trip and reported once."""

from __future__ import annotations

import datetime as dt

from structlog.testing import capture_logs

from scenario_engine.runtime.clock import Clock
from scenario_engine.runtime.fleet import Fleet

T = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def test_the_skew_is_taken_at_the_midpoint_of_the_round_trip_and_reported_once_per_crossing() -> None:
    clock = Clock(warn_after_seconds=5)
    second = dt.timedelta(seconds=1)
    with capture_logs() as logs:
        # Sent at T, answered at T + 2 s; the server read its clock half-way, 10 s ahead.
        assert clock.observe(T, T + 11 * second, T + 2 * second) == 10.0
        assert clock.rtt_seconds == 2.0 and clock.beyond_threshold
        clock.observe(T, T + 11 * second, T + 2 * second)
        clock.observe(T, T + 2 * second, T + 2 * second)  # back within: 1 s
        clock.observe(T, T - 9 * second, T + 2 * second)  # beyond again, the other way
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("clock_skew", "warning"),
        ("clock_skew_resolved", "info"),
        ("clock_skew", "warning"),
    ]
    assert clock.view()["skew_seconds"] == -10.0


def test_a_follower_pauses_after_the_grace_and_never_the_leader() -> None:
    fleet = Fleet(grace_seconds=60)
    assert fleet.paused(leader=False), "nothing is evaluated before the first heartbeat"
    assert not fleet.paused(leader=True)
    with capture_logs() as logs:
        fleet.observe("mine", "a-1", "mine", leader=False)
        assert not fleet.paused(leader=False) and not fleet.mismatch
        fleet.observe("mine", "a-1", "theirs", leader=False)
        fleet.observe("mine", "a-1", "theirs", leader=False)  # the same mismatch: no new line
        assert fleet.mismatch and fleet.mismatch_since is not None
        since = fleet.mismatch_since
        assert not fleet.paused(leader=False, now=since + 59), "within the rolling-reload window"
        assert fleet.paused(leader=False, now=since + 60)
        assert not fleet.paused(leader=True, now=since + 60)
        fleet.observe("mine", "a-1", "mine", leader=False)  # reloaded: agree again
        assert not fleet.mismatch and not fleet.paused(leader=False)
        fleet.observe("mine", None, None, leader=False)  # no live leader: nothing to differ from
        assert not fleet.paused(leader=False)
    assert [e["event"] for e in logs] == ["rules_fingerprint_mismatch", "rules_mismatch_cleared"]
    assert logs[0]["log_level"] == "error" and logs[0]["leader_rules_fingerprint"] == "theirs"


def test_without_grace_the_mismatch_line_is_followed_by_the_pause() -> None:
    fleet = Fleet(grace_seconds=0)
    with capture_logs() as logs:
        fleet.observe("mine", "a-1", "theirs", leader=False)
    assert fleet.paused(leader=False)
    assert [e["event"] for e in logs] == ["rules_fingerprint_mismatch", "evaluation_paused"]
