"""Configuration: ``Settings`` from the environment (``SCENARIO_*``); the rules file is read by
``domain.rules`` and validated here with the settings (``load_config``).

Settings are about where and how the daemon runs; rules are about what it decides, and
can be reloaded with SIGHUP without a restart. Both are validated by pydantic so that a
bad value fails at start (or at reload) with an error naming the key, never later.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import ipaddress
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from scenario_engine.errors import ConfigError
from scenario_engine.scenarios.rules import Rules, load_rules

ENV_PREFIX = "SCENARIO_"


class Settings(BaseSettings):
    """Process settings, read from ``SCENARIO_*`` environment variables."""

    # Every number has a finite minimum and maximum and rejects nan/inf: a value that
    # validates must also be usable by what ``run`` builds from it (timedeltas, sleeps,
    # period arithmetic). Unknown SCENARIO_* variables are rejected by ``load_config``.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, allow_inf_nan=False)

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL (postgresql://user:pass@host:port/db)."
    )
    database_url_file: Path | None = Field(
        default=None,
        description="File holding the database URL (systemd LoadCredential), used if DATABASE_URL is unset.",
    )
    rules_file: Path | None = Field(
        default=None, description="TOML file with the scenario rules; built-in rules if unset."
    )
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Name of this daemon in /status and the database (default host:pid).",
    )
    status_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        description="Address of the status server (an IP address or a name that resolves).",
    )
    status_port: int = Field(default=8089, ge=0, le=65535, description="Port of the status server (0 = any).")
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json lines, console, or auto (console on a terminal)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    pool_size: int = Field(default=8, ge=2, le=100, description="Maximum connections in the pool.")
    pool_acquire_timeout_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="Longest wait for a pool connection; a starved pool is then an error, not a hang.",
    )
    poll_interval_seconds: float = Field(
        default=0.5,
        ge=0.05,
        le=3600,
        description="Longest wait between two probes for pending events: the drain's poll backs "
        "off to it while no event comes (a NOTIFY, in notify mode, cuts any wait short).",
    )
    poll_min_interval_seconds: float = Field(
        default=0.01,
        ge=0.001,
        le=60,
        description="Shortest wait between two probes for pending events, while events flow "
        "(the poll doubles from it towards SCENARIO_POLL_INTERVAL_SECONDS on each empty probe).",
    )
    drain_batch_size: int = Field(default=2000, ge=1, le=50_000, description="Events claimed per batch.")
    drain_concurrency: int = Field(
        default=3,
        ge=1,
        le=8,
        description="Batches drained at once while a backlog lasts (SKIP LOCKED): one batch's "
        "Python work overlaps another's queries. Each takes a pool connection.",
    )
    event_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts before an event is dead-lettered."
    )
    event_retention_hours: float = Field(
        default=168.0, ge=0, le=87_600, description="How long processed events are kept before pruning."
    )
    prune_interval_seconds: float = Field(
        default=60.0, ge=0.1, le=86_400, description="How often processed events past retention are deleted."
    )
    installation_check_interval_seconds: float = Field(
        default=60.0,
        ge=0.1,
        le=86_400,
        description="How often the running daemon re-checks its installation (platform hooks, schema "
        "version, grants); a problem found makes it unready until fixed.",
    )
    personal_data_retention_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        description="Age after which decision inputs and notification contexts are stripped (dedup keys "
        "stay) and finished pushes deleted; see docs/PRIVACY.md.",
    )
    personal_data_prune_interval_seconds: float = Field(
        default=3600.0, ge=1, le=86_400, description="How often personal data past retention is pruned."
    )
    personal_data_prune_batch_size: int = Field(
        default=1000, ge=1, le=50_000, description="Rows stripped or deleted per pruning transaction."
    )
    listen_ping_interval_seconds: float = Field(
        default=10.0, ge=0.1, le=3600, description="How often the LISTEN connection proves itself alive."
    )
    listen_ping_timeout_seconds: float = Field(
        default=5.0, ge=0.1, le=600, description="A ping slower than this marks the LISTEN connection dead."
    )
    sweep_interval_seconds: float = Field(
        default=900.0, ge=1, le=31 * 86_400, description="Interval of the scheduled sweep (1 s to 31 days)."
    )
    sweep_daily_at: dt.time | None = Field(
        default=None, description="Run the sweep once a day at this UTC time (HH:MM) instead."
    )
    full_sweep_interval_hours: float = Field(
        default=24.0,
        ge=0,
        le=8760,
        description="Between full sweeps, sweeps are incremental (only mentors newly due); 0 = always full.",
    )
    sweep_batch_size: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Mentors evaluated per sweep batch (memory vs round trips).",
    )
    leader_retry_seconds: float = Field(
        default=5.0, ge=0.1, le=3600, description="How often a follower tries to become leader."
    )
    sweep_shared: bool = Field(
        default=True,
        description="Full sweeps are split into ranges of mentors that every running instance claims "
        "(SKIP LOCKED), so each added instance adds sweep throughput; off: the leader sweeps alone.",
    )
    sweep_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Lease on a period's sweep, renewed before each batch: another instance takes an "
        "unfinished period over only after it lapses. Keep it well above one batch's duration.",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, le=3600, description="Time to finish the current batch after SIGTERM."
    )
    rules_mismatch_grace_seconds: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="How long a follower whose rules differ from the leader's still evaluates (a "
        "rolling reload's window); after it, it claims no event until the rules agree.",
    )
    clock_skew_warn_seconds: float = Field(
        default=5.0,
        ge=0.1,
        le=86_400,
        description="Warn (log, /status) when this host's clock differs from the database's by more; "
        "decisions always use the database's clock.",
    )
    worker_stuck_seconds: float = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="A work loop step (drain, dispatch batch, ping) running longer than this, or a wait "
        "overrunning by this, makes /healthz 503 and stops the watchdog ping. Keep it above a dispatch "
        "batch's worst case (push timeout × batch size ÷ concurrency).",
    )

    # --- push dispatch ---
    push_provider: Literal["log", "webhook", "fcm"] = Field(default="log", description="Where pushes go.")
    push_webhook_url: str | None = Field(
        default=None, max_length=2000, description="webhook: URL that receives the POST (http or https)."
    )
    push_webhook_url_file: Path | None = Field(
        default=None,
        description="webhook: file holding the URL (when it carries a key), used if the URL is unset.",
    )
    status_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that /status and / require (for a status server bound beyond 127.0.0.1).",
    )
    status_token_file: Path | None = Field(
        default=None, description="File holding the status token, used if the token is unset."
    )
    push_webhook_token: SecretStr | None = Field(default=None, description="webhook: bearer token.")
    push_webhook_token_file: Path | None = Field(
        default=None, description="webhook: file holding the bearer token, used if the token is unset."
    )
    push_webhook_hmac_secret: SecretStr | None = Field(
        default=None, description="webhook: HMAC-SHA256 secret for X-Scenario-Signature."
    )
    push_webhook_hmac_secret_file: Path | None = Field(
        default=None, description="webhook: file holding the HMAC secret, used if the secret is unset."
    )
    push_fcm_project_id: str | None = Field(default=None, description="fcm: Firebase project id.")
    push_fcm_credentials_file: Path | None = Field(
        default=None, description="fcm: service-account JSON file (OAuth2 access tokens)."
    )
    push_fcm_base_url: str = Field(
        default="https://fcm.googleapis.com",
        max_length=2000,
        description="fcm: API base URL (tests point it elsewhere).",
    )
    push_concurrency: int = Field(default=16, ge=1, le=1000, description="Pushes in flight at once.")
    push_rate_per_second: float = Field(
        default=50.0, ge=1, le=100_000, description="Provider rate limit (pushes/s)."
    )
    push_batch_size: int = Field(default=100, ge=1, le=10_000, description="Pushes claimed per batch.")
    push_max_attempts: int = Field(default=8, ge=1, le=100, description="Attempts before dead-lettering.")
    push_max_age_hours: float = Field(
        default=24.0, ge=0.01, le=8760, description="Age after which a push stops retrying."
    )
    push_backoff_base_seconds: float = Field(
        default=5.0, ge=0.01, le=86_400, description="First retry delay (doubles)."
    )
    push_backoff_max_seconds: float = Field(
        default=3600.0, ge=0.01, le=7 * 86_400, description="Longest retry delay (at least the first)."
    )
    push_timeout_seconds: float = Field(default=10.0, ge=0.1, le=600, description="HTTP timeout per push.")
    push_lease_seconds: float = Field(
        default=15.0,
        ge=1,
        le=86_400,
        description="A claimed, unsent push is claimed again this long after its dispatcher stops renewing.",
    )
    dispatch_poll_interval_seconds: float = Field(
        default=5.0, ge=0.05, le=3600, description="Outbox poll interval when no NOTIFY arrives."
    )
    quiet_hours: str | None = Field(
        default=None,
        description="Quiet window in the mentor's zone, e.g. 21:00-08:00: pushes wait until its end.",
    )

    # --- email channel (docs/CHANNELS.md): used when a programme's rules say fallback = ["email"] ---
    email_smtp_host: str | None = Field(
        default=None, max_length=255, description="SMTP server; unset: no email channel."
    )
    email_smtp_port: int = Field(
        default=587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 TLS)."
    )
    email_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (required upgrade), tls (implicit, port 465) or none (a local relay only).",
    )
    email_smtp_username: str | None = Field(default=None, max_length=255, description="SMTP login name.")
    email_smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    email_smtp_password_file: Path | None = Field(
        default=None, description="File holding the SMTP password, used if the password is unset."
    )
    email_from: str = Field(
        default="Scenario Engine <nudges@localhost>", max_length=320, description="The From header."
    )
    email_unsubscribe_url: str | None = Field(
        default=None,
        max_length=2000,
        description="One-click unsubscribe URL (RFC 8058); {mentor_id}, {scenario_type} and "
        "{notification_id} are filled in. Unset: no List-Unsubscribe header.",
    )
    email_rate_per_second: float = Field(
        default=10.0, ge=0.1, le=100_000, description="Email channel rate limit (messages/s)."
    )
    email_timeout_seconds: float = Field(
        default=30.0, ge=0.1, le=600, description="SMTP timeout per message."
    )

    @field_validator("sweep_interval_seconds")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        # Periods are floor(epoch / interval): a fractional interval rounds its period's end
        # to or before the instant that computed it, and the scheduler would spin.
        if value != int(value):
            raise ValueError("must be a whole number of seconds")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parse_quiet_hours(value)
        return value

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        # Messages start with the key: load_config reports them under it.
        if self.push_provider == "webhook" and not self.push_webhook_url:
            raise ValueError(
                "SCENARIO_PUSH_WEBHOOK_URL: is required when SCENARIO_PUSH_PROVIDER=webhook "
                "(or SCENARIO_PUSH_WEBHOOK_URL_FILE)"
            )
        if self.push_provider == "fcm" and not (self.push_fcm_project_id and self.push_fcm_credentials_file):
            raise ValueError(
                "SCENARIO_PUSH_FCM_PROJECT_ID: SCENARIO_PUSH_FCM_PROJECT_ID and "
                "SCENARIO_PUSH_FCM_CREDENTIALS_FILE are required when SCENARIO_PUSH_PROVIDER=fcm"
            )
        if self.push_backoff_max_seconds < self.push_backoff_base_seconds:
            raise ValueError(
                "SCENARIO_PUSH_BACKOFF_MAX_SECONDS: must be at least SCENARIO_PUSH_BACKOFF_BASE_SECONDS"
            )
        return self

    @property
    def quiet_window(self) -> tuple[dt.time, dt.time] | None:
        return parse_quiet_hours(self.quiet_hours) if self.quiet_hours else None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        if not raw.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        problems = dsn_problems(raw)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def require_database_url(self) -> str:
        """The URL (``load_config`` has read it from its file when only the file was set)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        raise ConfigError([(env_name("database_url"), "is required for this command")])


def parse_quiet_hours(text: str) -> tuple[dt.time, dt.time]:
    """'21:00-08:00' → (21:00, 08:00). Equal ends would be a window of nothing or of all day."""
    try:
        start_s, end_s = text.split("-")
        start, end = dt.time.fromisoformat(start_s.strip()), dt.time.fromisoformat(end_s.strip())
    except ValueError:
        raise ValueError("must look like HH:MM-HH:MM, e.g. 21:00-08:00") from None
    if start == end:
        raise ValueError("start and end must differ")
    return start, end


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


# --- the one validation path ---------------------------------------------------------
#
# ``load_config`` is what check-config, run and every database command call: it validates
# everything that can be validated without side effects (no connection, no bind), so that
# check-config rejects exactly what run would reject, and both exit 2 naming the key.

# Secret settings and the systemd credential each may come from: SCENARIO_X, else the file
# named by SCENARIO_X_FILE, else $CREDENTIALS_DIRECTORY/<credential> (LoadCredential=).
SECRET_SOURCES: dict[str, str] = {
    "database_url": "database-url",
    "push_webhook_url": "push-webhook-url",
    "push_webhook_token": "push-webhook-token",
    "push_webhook_hmac_secret": "push-webhook-hmac-secret",
    "status_token": "status-token",
    "email_smtp_password": "email-smtp-password",
}
# Variables of the test suite (tests/pg.py), not of the daemon.
RESERVED_ENV_PREFIXES = ("SCENARIO_TEST_",)
MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Config:
    """Validated settings and rules; ``settings`` carries secrets read from their files."""

    settings: Settings
    rules: Rules

    @property
    def database_url(self) -> str | None:
        url = self.settings.database_url
        return url.get_secret_value() if url is not None else None

    def secrets(self) -> list[str]:
        """Every secret string this configuration holds, for scrubbing messages."""
        return collect_secrets(self.settings)


def _scenario_environ() -> dict[str, str]:
    # pydantic-settings matches names case-insensitively; so do we.
    return {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}


def known_env_names() -> set[str]:
    return {env_name(f) for f in Settings.model_fields}


def unknown_env_problems(names: Iterable[str]) -> list[tuple[str, str]]:
    """A misspelt variable would otherwise be ignored and its default used in silence."""
    known = known_env_names()
    out: list[tuple[str, str]] = []
    for name in sorted(set(names)):
        if name in known or name.startswith(RESERVED_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (README.md lists the settings)"
        out.append((name, "unknown setting" + hint))
    return out


def _read_secret_file(path: Path) -> str:
    """The file's text without the trailing newline; OSError/ValueError say why not."""
    with path.open("rb") as f:
        data = f.read(MAX_SECRET_FILE_BYTES + 1)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    if not text:
        raise ValueError("is empty")
    return text


def _resolve_secret_files(
    overrides: Mapping[str, object], environ: Mapping[str, str], problems: list[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Init values with each secret read from its file; and, per secret, where it came from."""
    init: dict[str, Any] = dict(overrides)
    sources: dict[str, str] = {}
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    for field, credential in SECRET_SOURCES.items():
        # The value itself wins, as documented; an explicit override (even None) outranks the
        # environment's value.
        if init.get(field) is not None or (field not in init and env_name(field) in environ):
            continue
        file_field = f"{field}_file"
        raw = init.get(file_field) or environ.get(env_name(file_field))
        key = env_name(file_field)
        if not raw and credentials and (Path(credentials) / credential).is_file():
            raw, key = str(Path(credentials) / credential), f"$CREDENTIALS_DIRECTORY/{credential}"
        if not raw:
            continue
        path = Path(str(raw))
        try:
            init[field] = _read_secret_file(path)
        except OSError as exc:
            problems.append((key, f"cannot read {path}: {exc.strerror or exc}"))
        except ValueError as exc:
            problems.append((key, f"{path} {exc}"))
        else:
            sources[field] = f"{key} ({path})"
    return init, sources


def _settings_problems(exc: ValidationError, sources: Mapping[str, str]) -> list[tuple[str, str]]:
    out = []
    for e in exc.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["loc"]:
            field = str(e["loc"][0])
            key = sources.get(field, env_name(field))
        else:  # a cross-field check: its message starts with the key ("KEY: ...")
            key, sep, rest = msg.partition(": ")
            key, msg = (key, rest) if sep and key.startswith(ENV_PREFIX) else ("settings", msg)
        out.append((key, msg))
    return out


def load_config(overrides: Mapping[str, object] | None = None) -> Config:
    """Validate the whole configuration, collecting every problem; raise ConfigError with
    them all (each naming its key), or return what ``run`` and the commands use."""
    problems: list[tuple[str, str]] = []
    environ = _scenario_environ()
    problems += unknown_env_problems(environ)
    init, sources = _resolve_secret_files(overrides or {}, environ, problems)
    try:
        settings = Settings(**init)
    except ValidationError as exc:
        problems += _settings_problems(exc, sources)
        raise ConfigError(problems) from None
    problems += runtime_problems(settings, sources)
    try:
        rules = load_rules(settings.rules_file)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # a file reported once, not per check
    return Config(settings, rules)


def runtime_problems(settings: Settings, sources: Mapping[str, str]) -> list[tuple[str, str]]:
    """What pydantic's per-field checks cannot see: the URL as asyncpg will read it, names
    that must resolve, files that must parse. No connection is opened, nothing is bound."""
    out: list[tuple[str, str]] = []
    # The URL (or its file) was read and checked as asyncpg reads it by _resolve_secret_files and
    # Settings._postgres_url; a file that could not be read is already a problem. Only "none at
    # all" is left to say.
    if settings.database_url is None and settings.database_url_file is None:
        out.append(
            (
                env_name("database_url"),
                "is required (or SCENARIO_DATABASE_URL_FILE, or the systemd credential database-url)",
            )
        )
    host_problem = status_host_problem(settings.status_host)
    if host_problem:
        out.append((env_name("status_host"), host_problem))
    for field in ("push_webhook_url", "push_fcm_base_url"):
        value = getattr(settings, field)
        if value is not None and (problem := http_url_problem(value)) is not None:
            out.append((sources.get(field, env_name(field)), problem))
    if settings.push_provider == "fcm" and (problem := fcm_extra_problem()) is not None:
        out.append((env_name("push_provider"), problem))
    elif settings.push_provider == "fcm" and settings.push_fcm_credentials_file is not None:
        problem = fcm_credentials_problem(settings.push_fcm_credentials_file)
        if problem:
            out.append((env_name("push_fcm_credentials_file"), problem))
    return out


# --- database URL, as asyncpg reads it -------------------------------------------------

_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_ENUM_PARAMS: dict[str, tuple[str, ...]] = {
    "sslmode": _SSLMODES,
    "ssl_min_protocol_version": _TLS_VERSIONS,
    "ssl_max_protocol_version": _TLS_VERSIONS,
    "target_session_attrs": ("any", "primary", "standby", "prefer-standby", "read-write", "read-only"),
    "sslnegotiation": ("postgres", "direct"),
    "gsslib": ("gssapi", "sspi"),
}
_FILE_PARAMS = ("sslcert", "sslkey", "sslrootcert", "sslcrl")
# Query parameters asyncpg understands itself (asyncpg.connect_utils); any other one is
# sent to the server as a setting (e.g. application_name, search_path, statement_timeout).
DSN_PARAMS = frozenset(
    {"host", "port", "dbname", "database", "user", "password", "passfile", "sslpassword",
     "krbsrvname", "service", *_ENUM_PARAMS, *_FILE_PARAMS}
)  # fmt: skip
# libpq parameters asyncpg does not implement: as server settings they fail at connect.
LIBPQ_ONLY_PARAMS = frozenset(
    {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
     "tcp_user_timeout", "hostaddr", "gssencmode", "gssdelegation", "channel_binding", "require_auth",
     "requiressl", "sslcompression", "sslsni", "sslcertmode", "load_balance_hosts",
     "fallback_application_name", "requirepeer", "replication", "sslkeylogfile", "min_protocol_version",
     "max_protocol_version"}
)  # fmt: skip
_GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_IPV6_HOSTSPEC = re.compile(r"(?:\[([^\]]+)\])(?::([0-9]+))?")


def _port_problem(text: str) -> str | None:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"port {text!r} is not a number from 1 to 65535"
    return None


def _hostlist_problems(hostlist: str) -> list[str]:
    out = []
    specs = hostlist.split(",")
    for spec in specs:
        if spec == "":
            out.append("the host list has an empty entry")
            continue
        if spec.startswith("/"):
            continue  # a Unix socket directory
        if spec.startswith("["):
            m = _IPV6_HOSTSPEC.match(spec)
            if m is None or m.end() != len(spec):
                out.append(f"invalid IPv6 address {spec!r}")
                continue
            port = m.group(2)
        else:
            addr, _, port = spec.partition(":")
            if addr == "":
                out.append("a host name is empty")
        if port and (problem := _port_problem(urllib.parse.unquote(port))):
            out.append(problem)
    return out


def dsn_problems(url: str) -> list[str]:
    """What asyncpg would refuse (or the server would, at every connect) in this URL.

    Mirrors asyncpg's own parsing (urllib, ``user:password@host,host:port/db?params``)
    with an allow-list of the parameters it implements; messages never repeat the
    password or any parameter value that may be secret."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return ["contains control characters"]
    try:
        parsed = urllib.parse.urlparse(url)
    except ValueError:
        return ["is not a valid URL"]
    if parsed.scheme not in ("postgresql", "postgres"):
        return ["must be a postgresql:// URL"]
    out: list[str] = []
    hostspec = parsed.netloc.partition("@")[2] if "@" in parsed.netloc else parsed.netloc
    query: dict[str, str] = {}
    if parsed.query:
        try:
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, strict_parsing=True).items()}
        except ValueError:
            return ["the query string is malformed (each parameter must be name=value, joined by &)"]
    if hostspec:
        out += _hostlist_problems(hostspec)
    for name, value in query.items():
        if name == "port":
            out += [p for v in value.split(",") if (p := _port_problem(v))]
        elif name == "host":
            out += _hostlist_problems(value)
        elif name in _ENUM_PARAMS:
            if value not in _ENUM_PARAMS[name]:
                out.append(f"{name} {value!r} is not one of {', '.join(_ENUM_PARAMS[name])}")
        elif name in _FILE_PARAMS:
            if not (name == "sslrootcert" and value == "system") and not os.access(value, os.R_OK):
                out.append(f"{name}: cannot read {value}")
        elif name == "client_encoding":
            if value.lower().replace("-", "") != "utf8":
                out.append("client_encoding must be UTF8 (asyncpg speaks only UTF-8)")
        elif name in DSN_PARAMS:
            continue
        elif name in LIBPQ_ONLY_PARAMS:
            out.append(f"parameter {name!r} is libpq's; asyncpg does not support it")
        else:
            close = difflib.get_close_matches(name, sorted(DSN_PARAMS | LIBPQ_ONLY_PARAMS), n=1, cutoff=0.8)
            if close:
                out.append(f"unknown parameter {name!r}; did you mean {close[0]!r}?")
            elif not _GUC_NAME.match(name):
                out.append(f"parameter {name!r} is neither a connection parameter nor a server setting")
    return out


def status_host_problem(host: str) -> str | None:
    """An IP literal, or a name the resolver knows (binding itself is checked at start)."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", host):  # fmt: skip
        return f"{host!r} is neither an IP address nor a host name"
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return f"{host!r} does not resolve ({getattr(exc, 'strerror', None) or exc})"
    return None


def http_url_problem(url: str) -> str | None:
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        return "contains spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "is not a valid URL (check the host and the port)"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    return None


# What the fcm provider imports that the base install lacks: pyproject's `fcm` extra.
FCM_EXTRA_MODULES = ("google.auth", "google.oauth2.service_account", "requests")


def fcm_extra_problem() -> str | None:
    """Why the fcm provider cannot be loaded here, or None: a plain ``pip install
    scenario-engine`` lacks the ``fcm`` extra."""
    for name in FCM_EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return (
                f"fcm needs the fcm extra, which is not installed (no module {exc.name or name!r}): "
                "pip install 'scenario-engine[fcm]'"
            )
    return None


def fcm_credentials_problem(path: Path) -> str | None:
    """Read and parse the service-account key as FcmProvider will; never echo its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        info = json.loads(data)
    except ValueError:
        return f"{path} is not a JSON service-account key"
    if not isinstance(info, dict) or info.get("type") != "service_account":
        return f'{path} is not a service-account key (its "type" must be "service_account")'
    missing = [k for k in ("client_email", "private_key", "token_uri") if not isinstance(info.get(k), str)]
    if missing:
        return f"{path} lacks {', '.join(missing)}"
    from google.oauth2 import service_account

    try:
        service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except Exception:  # google-auth raises ValueError or a cryptography error: no detail leaks
        return f"{path}: the private_key cannot be loaded (a PEM-encoded RSA key is expected)"
    return None


def load_settings(**overrides: Any) -> Settings:
    """Settings alone (pydantic's checks). Commands use ``load_config``, which adds the
    checks that need files, names and the rules."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_settings_problems(exc, {})) from None


def effective_config(settings: Settings, rules: Rules) -> dict[str, Any]:
    """What check-config prints: every setting (secrets masked) and the rules."""
    shown = settings.model_dump(mode="json")
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        shown["database_url"] = mask_url(url, safe_params=SAFE_DSN_PARAMS)
    for field in ("push_webhook_url", "push_fcm_base_url"):
        if getattr(settings, field) is not None:
            shown[field] = mask_url(getattr(settings, field), keep_user=False)
    return {"settings": {env_name(k): v for k, v in shown.items()}, "rules": rules.model_dump(mode="json")}


MASK = "***"
# Query parameters of a database URL whose values say how to connect, not who you are.
SAFE_DSN_PARAMS = frozenset(
    {"sslmode", "target_session_attrs", "sslnegotiation", "ssl_min_protocol_version",
     "ssl_max_protocol_version", "application_name", "host", "port", "dbname", "database"}
)  # fmt: skip


def mask_url(url: str, *, keep_user: bool = True, safe_params: frozenset[str] = frozenset()) -> str:
    """The URL with its password (or, with ``keep_user=False``, all its user info), every
    query value not in ``safe_params`` and its fragment replaced by ***. A URL that does
    not parse is not shown at all."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(a URL that does not parse; not shown)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        shown_user = (user + (":" + MASK if colon else "")) if keep_user else MASK
        netloc = f"{shown_user}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for piece in query.split("&"):
            name, eq, _value = piece.partition("=")
            pairs.append(piece if urllib.parse.unquote(name) in safe_params else f"{name}{eq and '='}{MASK}")
        query = "&".join(pairs)
    fragment = MASK if parts.fragment else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _url_secrets(url: str) -> list[str]:
    out = [url]
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return out
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:  # a user name alone is not secret (messages name it)
        password = userinfo.partition(":")[2]
        out += [userinfo, password, urllib.parse.unquote(password)]
    for piece in parts.query.split("&") if parts.query else []:
        value = piece.partition("=")[2]
        out += [value, urllib.parse.unquote_plus(value)]
    if parts.fragment:
        out.append(parts.fragment)
    return out


def collect_secrets(settings: Settings) -> list[str]:
    """Secret strings in these settings, longest first (so a scrub replaces whole ones)."""
    found: list[str] = []
    if settings.database_url is not None:
        found += _url_secrets(settings.database_url.get_secret_value())
    if settings.push_webhook_url:
        found += _url_secrets(settings.push_webhook_url)
    for secret in (
        settings.push_webhook_token,
        settings.push_webhook_hmac_secret,
        settings.status_token,
        settings.email_smtp_password,
    ):
        if secret is not None:
            found.append(secret.get_secret_value())
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret string replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def settings_reference_markdown() -> str:
    """The configuration table in README.md, generated from the Settings model (a test
    keeps the README in step with it)."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, SecretStr) or default is None:
            shown = "—"
        elif isinstance(default, dt.time):
            shown = default.strftime("%H:%M")
        else:
            shown = f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {_allowed(info)} | {info.description or ''} |")
    return "\n".join(rows)


def _allowed(info: Any) -> str:
    """The range (or choices) of a setting, from its pydantic constraints."""
    low = high = None
    for m in info.metadata:
        for attr, is_low in (("ge", True), ("gt", True), ("le", False), ("lt", False)):
            value = getattr(m, attr, None)
            if value is not None:
                number = f"{value:g}" if isinstance(value, float) else str(value)
                text = ("> " if attr == "gt" else "") + number
                low, high = (text, high) if is_low else (low, text)
    if low is not None or high is not None:
        return f"{low or '…'} – {high or '…'}"
    args = [a for a in getattr(info.annotation, "__args__", ()) if isinstance(a, str)]
    return " ".join(f"`{a}`" for a in args) if args else ""
