"""Property-based fuzzing of configuration (issue 9, defect 5 and the fuzzing deliverable).

For generated SCENARIO_* settings and rules files, either validation rejects the value
naming its key (exit 2 from the real CLI), or everything ``run`` builds from it works:
timedeltas, the sweep period, the retry policy, the rate limiter, templates rendered with
a 1 MB display name. And the database URL check agrees with asyncpg's own parser.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import shutil
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg.connect_utils
import certifi
import pytest
from aiolimiter import AsyncLimiter
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scenario_engine.config import Config, Settings, dsn_problems, env_name
from scenario_engine.errors import ConfigError
from scenario_engine.runtime.backoff import Backoff
from scenario_engine.runtime.dispatcher import RetryPolicy
from scenario_engine.runtime.scheduler import current_period
from scenario_engine.scenarios import certification, inactivity, milestone
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rule, Rules, load_rules
from scenario_engine.templates import BODY_MAX_BYTES, TITLE_MAX_BYTES, render_body, render_title
from tests.support.config_fuzz import (
    BASE_ENV,
    NUMBER_FIELDS,
    environment,
    numeric_env,
    validated,
)

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def validated_rules(path: Path) -> Rules | ConfigError:
    try:
        return load_rules(path)
    except ConfigError as exc:
        return exc


def exercise_settings(config: Config) -> None:
    """Build what ``run`` builds from the settings; any overflow or absurd value fails."""
    s = config.settings
    for name in NUMBER_FIELDS:
        value = getattr(s, name)
        assert math.isfinite(value), name
    for hours in (s.event_retention_hours, s.full_sweep_interval_hours, s.push_max_age_hours):
        assert NOW + dt.timedelta(hours=hours) > NOW - dt.timedelta(seconds=1)
    for seconds in (s.push_lease_seconds, s.sweep_lease_seconds, s.sweep_interval_seconds):
        assert NOW + dt.timedelta(seconds=seconds) > NOW
    key, start, end = current_period(s, NOW)
    assert start <= NOW < end and key
    assert (end - start).total_seconds() >= 1  # no period shorter than a second: no sweep storm
    policy = RetryPolicy(
        max_attempts=s.push_max_attempts,
        max_age=dt.timedelta(hours=s.push_max_age_hours),
        base=s.push_backoff_base_seconds,
        maximum=s.push_backoff_max_seconds,
    )
    for attempts in (1, s.push_max_attempts):
        delay = policy.delay(attempts, None)
        assert 0 < delay <= s.push_backoff_max_seconds
        policy.gives_up(attempts, NOW, delay, NOW)
    AsyncLimiter(s.push_rate_per_second, 1.0)
    anyio.CapacityLimiter(s.push_concurrency)
    assert Backoff(maximum=s.leader_retry_seconds).next_delay() <= s.leader_retry_seconds


@FUZZ
@given(numeric_env)
def test_numeric_settings_are_rejected_by_key_or_usable(values: dict[str, str]) -> None:
    env = {**BASE_ENV, **{env_name(k): v for k, v in values.items()}}
    with environment(env):
        config = validated()
    if isinstance(config, ConfigError):
        for key, message in config.problems:  # every complaint names a variable we set
            assert key in env or any(name in message for name in env), config.problems
        event("settings rejected")
        return
    event("settings accepted")
    exercise_settings(config)


@FUZZ
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=30),
    st.sampled_from(list(Settings.model_fields)),
)
def test_unknown_variables_are_rejected_by_name(suffix: str, real: str) -> None:
    name = "SCENARIO_" + suffix
    with environment({**BASE_ENV, name: "1"}):
        config = validated()
    if isinstance(config, ConfigError):
        assert name in {key for key, _ in config.problems}
        return
    assert name in {env_name(f) for f in Settings.model_fields} or name.startswith("SCENARIO_TEST_")


# --- database URLs: our check and asyncpg's own parser agree --------------------------------------


def asyncpg_refuses(url: str) -> bool:
    # test-only use of a private API, absent from asyncpg-stubs
    parse = asyncpg.connect_utils._parse_connect_dsn_and_args  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = dict.fromkeys(inspect.signature(parse).parameters)
    kwargs.update(dsn=url, direct_tls=None)
    try:
        parse(**kwargs)
    except Exception:
        return True
    return False


params = st.sampled_from(
    [
        "sslmode",
        "port",
        "host",
        "dbname",
        "user",
        "password",
        "target_session_attrs",
        "ssl_min_protocol_version",
        "sslnegotiation",
        "application_name",
    ]
)
param_values = st.one_of(
    st.sampled_from(
        ["require", "bogus", "verify-full", "5432", "notaport", "0", "65536", "TLSv1.2", "SSLv3", "primary"]
    ),
    st.sampled_from(["direct", "h1,h2", "h:1", "read-write", "x y", "1,2", "a%20b"]),
    st.text(alphabet="abc019-_.:,", min_size=1, max_size=8),
)
hosts = st.one_of(
    st.sampled_from(["127.0.0.1", "db.internal", "[::1]", "h1,h2", "h1:5432,h2:5433", "/tmp", "[::1"]),
    st.text(alphabet="ab1.:-[],", min_size=0, max_size=12),
)
ports = st.one_of(st.none(), st.sampled_from(["5432", "0", "65535", "65536", "notaport", "+1", "", "1_0"]))


@FUZZ
@given(
    st.sampled_from(["postgresql", "postgres", "mysql"]),
    st.sampled_from(["", "app@", "app:pw@", "app:p%40ss@", ":pw@"]),
    hosts,
    ports,
    st.sampled_from(["", "/", "/platform", "/a%2Fb"]),
    st.lists(st.tuples(params, param_values), max_size=3),
)
def test_database_url_check_agrees_with_asyncpg(
    scheme: str, auth: str, host: str, port: str | None, path: str, query: list[tuple[str, str]]
) -> None:
    url = f"{scheme}://{auth}{host}{'' if port is None else ':' + port}{path}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query)
    ours = dsn_problems(url)
    event("url accepted" if not ours else "url rejected")
    if not ours:
        assert not asyncpg_refuses(url), url  # what we accept, asyncpg can parse
    elif asyncpg_refuses(url) is False:
        # Stricter than asyncpg only where the value would fail later anyway.
        assert any(
            word in " ".join(ours)
            for word in ("port", "empty", "IPv6", "postgresql://", "sslmode", "not one of", "cannot read")
        ), (url, ours)
    for problem in ours:
        assert "pw" not in problem.replace("pw@", ""), problem  # never the password


# --- rules files -----------------------------------------------------------------------------------

RULE_TYPES: dict[str, type[InactivityRule | MilestoneRule | CertificationExpiryRule]] = {
    "inactivity": InactivityRule,
    "milestone": MilestoneRule,
    "certification_expiry": CertificationExpiryRule,
}
specs = st.one_of(
    st.just(""),
    st.sampled_from([":>10", ":<5", ":^20", ":.2f", ":g", ":,", "!r", ":*^30", ":>100.100"]),
    st.sampled_from([":>50000000", ":.99999", ":{x}", ":zz", ":>101", "!q"]),
    st.builds(lambda w, p: f":>{w}.{p}", st.integers(0, 10**6), st.integers(0, 10**6)),
)
clean_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs", "S"]), max_size=40
)
literal_text = st.one_of(
    clean_text, clean_text, clean_text, st.text(alphabet=st.characters(codec="utf-8"), max_size=10)
).map(lambda t: t.replace("{", "{{").replace("}", "}}"))


def templates(kind: str) -> st.SearchStrategy[str]:
    """Mostly this rule type's own placeholders, sometimes one it does not have."""
    names = st.one_of(
        st.sampled_from(sorted(RULE_TYPES[kind].CONTEXT_KEYS)),
        st.sampled_from(["nickname", "days_left", "threshold_text", "days_inactive"]),
    )
    return st.lists(
        st.one_of(literal_text, st.builds(lambda n, s: "{" + n + s + "}", names, specs)),
        min_size=1,
        max_size=6,
    ).map("".join)


def toml_string(text: str) -> str:
    """A TOML basic string of ``text`` with every character escaped as TOML requires."""
    out = []
    for ch in text:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


toml_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e12", "1e308", "0.0", "3650.0", "3650.0001", "5e-324"]),
    st.floats(0, 3650).map(repr),
    st.floats(0, 3650).map(repr),
)


def sample_context(rule: Rule) -> dict[str, Any]:
    """Every key the rule's messages may use, the display name a megabyte long."""
    mentor = uuid.uuid4()
    if isinstance(rule, InactivityRule):
        inputs: dict[str, Any] = dict(
            inactivity.inactivity_inputs(NOW - dt.timedelta(days=400), False, rule, NOW, 1)
        )
    elif isinstance(rule, MilestoneRule):
        inputs = milestone.build_candidate(mentor, rule, "2026", 1e9, list(rule.thresholds)).inputs
    else:
        assert isinstance(rule, CertificationExpiryRule)
        expires = NOW + dt.timedelta(days=rule.tiers_days[-1])
        candidate = certification.build_candidate(mentor, rule, 1, "x" * 1000, expires, "UTC", 1, NOW)
        inputs = candidate.inputs
    context = {**inputs, "rule": rule.name, "display_name": "Ä" * 1_048_576}
    assert set(context) == type(rule).CONTEXT_KEYS  # each rule type knows exactly its keys
    return context


def exercise_rule(rule: Rule) -> None:
    assert NOW + rule.cooldown >= NOW
    context = sample_context(rule)
    tracemalloc.start()
    try:
        title = render_title(rule.title, context)
        body = render_body(rule.body, context)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(title.encode()) <= TITLE_MAX_BYTES and len(body.encode()) <= BODY_MAX_BYTES
    assert "\x00" not in title + body and "\n" not in title
    assert peak < 64 * 1024 * 1024, peak  # a few copies of the 1 MB name, not a 23 GB spec


RULES_DIR = Path(tempfile.mkdtemp(prefix="scenario-fuzz-"))


@settings(FUZZ, max_examples=400)
@given(
    st.sampled_from(sorted(RULE_TYPES)).flatmap(lambda k: st.tuples(st.just(k), templates(k), templates(k))),
    toml_floats,
    st.lists(
        st.one_of(toml_floats, st.integers(-5, 10**10).map(str), *[st.integers(1, 3650).map(str)] * 4),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)
def test_rules_are_rejected_by_key_or_usable(
    messages: tuple[str, str, str], cooldown: str, numbers: list[str]
) -> None:
    kind, title, body = messages
    extra = {
        "inactivity": f"threshold_days = {numbers[0] if numbers else 21}",
        "milestone": f"metric = 'hours'\nthresholds = [{', '.join(numbers)}]",
        "certification_expiry": f"tiers_days = [{', '.join(numbers)}]",
    }[kind]
    text = (
        f"[[{kind}]]\nname = 'r'\ncooldown_days = {cooldown}\n{extra}\n"
        f"title = {toml_string(title)}\nbody = {toml_string(body)}\n"
    )
    path = RULES_DIR / "rules.toml"
    path.write_text(text, "utf-8")
    rules = validated_rules(path)
    if isinstance(rules, ConfigError):
        for key, message in rules.problems:
            assert key.startswith(str(path)), rules.problems
            assert f"{kind}[0]" in key or "not valid TOML" in message, rules.problems
        event("rules rejected")
        return
    event("rules accepted")
    for rule in rules.all():
        exercise_rule(rule)


@pytest.mark.parametrize("with_root_cert", [False, True])
def test_verifying_the_server_needs_a_readable_root_certificate(
    with_root_cert: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by test_database_url_check_agrees_with_asyncpg: sslmode=verify-full without
    sslrootcert passed the check although asyncpg refuses it at every connect when
    ~/.postgresql/root.crt is missing."""
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if with_root_cert:
        (tmp_path / ".postgresql").mkdir()
        # asyncpg loads the file when it parses the URL, so it must be a real CA bundle
        shutil.copy(certifi.where(), tmp_path / ".postgresql" / "root.crt")
    url = "postgresql://127.0.0.1/platform?sslmode=verify-full"
    assert asyncpg_refuses(url) is not with_root_cert
    assert bool(dsn_problems(url)) is not with_root_cert


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("sslnegotiation=direct", True),  # sslmode defaults to prefer
        ("sslnegotiation=direct&sslmode=disable", True),
        ("sslnegotiation=direct&sslmode=prefer", True),
        ("sslnegotiation=direct&sslmode=require", False),
        ("sslnegotiation=postgres", False),
    ],
)
def test_direct_tls_is_accepted_exactly_when_asyncpg_accepts_it(
    query: str, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by test_database_url_check_agrees_with_asyncpg: asyncpg refuses direct TLS unless
    the sslmode requires TLS, and the check passed such a URL (exit 0 at check-config, then every
    connect failed)."""
    monkeypatch.delenv("PGSSLMODE", raising=False)
    url = f"postgresql://127.0.0.1/platform?{query}"
    assert asyncpg_refuses(url) is refused
    assert bool(dsn_problems(url)) is refused
