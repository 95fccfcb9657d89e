"""The settings model: ``Settings`` from the environment (``SCENARIO_*``), each key with its
type, range and meaning.

Settings are about where and how the daemon runs; rules are about what it decides, and can be
reloaded with SIGHUP without a restart. Both are validated by pydantic so that a bad value fails
at start (or at reload) with an error naming the key, never later. Reading secrets from files and
the checks that need the outside world are in ``config.load``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scenario_engine.db.url import dsn_problems
from scenario_engine.domain.quiet_hours import parse_quiet_hours
from scenario_engine.errors import ConfigError

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
        description=(
            "Mentors evaluated per sweep batch (memory vs round trips); a full sweep in lanes "
            "may take smaller ones so that each lane gets as many."
        ),
    )
    sweep_lanes: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Batches one instance's full sweep evaluates at once, each on its own pool "
        "connection (taken only if the pool can spare it at once, else fewer): one batch's Python "
        "work overlaps another's queries. 1: one batch at a time.",
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


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()
