"""Configuration: ``Settings`` from the environment (``SCENARIO_*``), ``Rules`` from TOML.

Settings are about where and how the daemon runs; rules are about what it decides, and
can be reloaded with SIGHUP without a restart. Both are validated by pydantic so that a
bad value fails at start (or at reload) with an error naming the key, never later.
"""

from __future__ import annotations

import datetime as dt
import string
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ScenarioType = Literal["inactivity", "milestone", "certification_expiry"]
SCENARIO_TYPES: tuple[ScenarioType, ...] = ("inactivity", "milestone", "certification_expiry")
ENV_PREFIX = "SCENARIO_"


class ConfigError(ValueError):
    """Configuration is invalid; ``problems`` lists (key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))


class Settings(BaseSettings):
    """Process settings, read from ``SCENARIO_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

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
        default=None, description="Name of this daemon in /status and the database (default host:pid)."
    )
    status_host: str = Field(default="127.0.0.1", description="Address of the status server.")
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
        default=5.0, gt=0, le=3600, description="Event drain poll interval when no NOTIFY arrives."
    )
    drain_batch_size: int = Field(default=2000, ge=1, le=50_000, description="Events claimed per batch.")
    event_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts before an event is dead-lettered."
    )
    event_retention_hours: float = Field(
        default=168.0, ge=0, description="How long processed events are kept before pruning."
    )
    prune_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often processed events past retention are deleted."
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
        default=10.0, gt=0, description="How often the LISTEN connection proves itself alive."
    )
    listen_ping_timeout_seconds: float = Field(
        default=5.0, gt=0, description="A ping slower than this marks the LISTEN connection dead."
    )
    sweep_interval_seconds: float = Field(default=900.0, gt=0, description="Interval of the scheduled sweep.")
    sweep_daily_at: dt.time | None = Field(
        default=None, description="Run the sweep once a day at this UTC time (HH:MM) instead."
    )
    full_sweep_interval_hours: float = Field(
        default=24.0,
        ge=0,
        description="Between full sweeps, sweeps are incremental (only mentors newly due); 0 = always full.",
    )
    sweep_batch_size: int = Field(
        default=20_000,
        ge=1,
        le=1_000_000,
        description="Mentors evaluated per sweep batch (memory vs round trips).",
    )
    leader_retry_seconds: float = Field(
        default=5.0, gt=0, description="How often a follower tries to become leader."
    )
    sweep_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Lease on a period's sweep, renewed before each batch: another instance takes an "
        "unfinished period over only after it lapses. Keep it well above one batch's duration.",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, description="Time to finish the current batch after SIGTERM."
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
    push_webhook_url: str | None = Field(default=None, description="webhook: URL that receives the POST.")
    push_webhook_token: SecretStr | None = Field(default=None, description="webhook: bearer token.")
    push_webhook_hmac_secret: SecretStr | None = Field(
        default=None, description="webhook: HMAC-SHA256 secret for X-Scenario-Signature."
    )
    push_fcm_project_id: str | None = Field(default=None, description="fcm: Firebase project id.")
    push_fcm_credentials_file: Path | None = Field(
        default=None, description="fcm: service-account JSON file (OAuth2 access tokens)."
    )
    push_fcm_base_url: str = Field(
        default="https://fcm.googleapis.com", description="fcm: API base URL (tests point it elsewhere)."
    )
    push_concurrency: int = Field(default=16, ge=1, le=1000, description="Pushes in flight at once.")
    push_rate_per_second: float = Field(default=50.0, gt=0, description="Provider rate limit (pushes/s).")
    push_batch_size: int = Field(default=100, ge=1, le=10_000, description="Pushes claimed per batch.")
    push_max_attempts: int = Field(default=8, ge=1, le=100, description="Attempts before dead-lettering.")
    push_max_age_hours: float = Field(
        default=24.0, gt=0, description="Age after which a push stops retrying."
    )
    push_backoff_base_seconds: float = Field(default=5.0, gt=0, description="First retry delay (doubles).")
    push_backoff_max_seconds: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    push_timeout_seconds: float = Field(default=10.0, gt=0, description="HTTP timeout per push.")
    push_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description="A claimed, unsent push is claimed again this long after its dispatcher stops renewing.",
    )
    dispatch_poll_interval_seconds: float = Field(
        default=5.0, gt=0, description="Outbox poll interval when no NOTIFY arrives."
    )
    quiet_hours: str | None = Field(
        default=None,
        description="Quiet window in the mentor's zone, e.g. 21:00-08:00: pushes wait until its end.",
    )

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parse_quiet_hours(value)
        return value

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        if self.push_provider == "webhook" and not self.push_webhook_url:
            raise ValueError("SCENARIO_PUSH_WEBHOOK_URL is required when SCENARIO_PUSH_PROVIDER=webhook")
        if self.push_provider == "fcm" and not (self.push_fcm_project_id and self.push_fcm_credentials_file):
            raise ValueError(
                "SCENARIO_PUSH_FCM_PROJECT_ID and SCENARIO_PUSH_FCM_CREDENTIALS_FILE are required "
                "when SCENARIO_PUSH_PROVIDER=fcm"
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
        return value

    def require_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.database_url_file is not None:
            try:
                url = self.database_url_file.read_text("utf-8").strip()
            except OSError as exc:
                raise ConfigError([(env_name("database_url_file"), f"cannot read: {exc.strerror}")]) from None
            if not url.startswith(("postgres://", "postgresql://")):
                raise ConfigError([(env_name("database_url_file"), "does not hold a postgresql:// URL")])
            return url
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


# --- rules -------------------------------------------------------------------------

_FORMATTER = string.Formatter()
RuleName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    enabled: bool = True
    cooldown_days: float = Field(default=7.0, ge=0)
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)

    @field_validator("title", "body")
    @classmethod
    def _template_parses(cls, value: str) -> str:
        try:
            fields = [f for _, f, _, _ in _FORMATTER.parse(value) if f is not None]
        except ValueError as exc:
            raise ValueError(f"bad message template: {exc}") from None
        if any(f == "" or not f.isidentifier() for f in fields):
            raise ValueError("placeholders must be named, e.g. {days_inactive}")
        return value

    @property
    def cooldown(self) -> dt.timedelta:
        return dt.timedelta(days=self.cooldown_days)


class InactivityRule(_Rule):
    scenario_type: Literal["inactivity"] = "inactivity"
    threshold_days: int = Field(ge=1, le=3650)
    max_reminders: int = Field(default=3, ge=1, le=100)
    title: str = "We miss you"
    body: str = (
        "It has been {days_inactive} days since your last activity. Your mentees would love to hear from you."
    )


class MilestoneRule(_Rule):
    scenario_type: Literal["milestone"] = "milestone"
    metric: Literal["sessions", "hours", "contacts"]
    period: Literal["year", "all_time"] = "year"
    thresholds: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    backfill: bool = False
    cooldown_days: float = Field(default=0.0, ge=0)
    title: str = "Milestone reached!"
    body: str = "You reached {threshold_text} {metric} this {period_label}. Thank you!"

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        # Rounded to the 15 significant digits that survive PostgreSQL's float8 → numeric
        # conversion, so the achievement ledger (numeric) compares equal on every path.
        value = [float(f"{v:.15g}") for v in value]
        if len(set(value)) != len(value):
            raise ValueError("thresholds must be distinct")
        return sorted(value)


class CertificationExpiryRule(_Rule):
    scenario_type: Literal["certification_expiry"] = "certification_expiry"
    tiers_days: list[Annotated[int, Field(ge=1, le=3650)]] = Field(min_length=1)
    certification_types: list[str] = Field(
        default_factory=list, description="Types this rule watches; empty means all."
    )
    cooldown_days: float = Field(default=0.0, ge=0)
    title: str = "Certification expiring soon"
    body: str = "Your {certification_type} certification expires in {days_left} days ({expires_on})."

    @field_validator("tiers_days")
    @classmethod
    def _descending(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("tiers_days must be distinct")
        return sorted(value, reverse=True)

    @property
    def lead_time_days(self) -> int:
        return self.tiers_days[0]


Rule = InactivityRule | MilestoneRule | CertificationExpiryRule


class Rules(BaseModel):
    """The scenario rules. Several rules per scenario type; names are unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_cap: int = Field(default=3, ge=1, le=1000, description="Pushes per mentor per 24 h, all scenarios.")
    inactivity: list[InactivityRule] = Field(default_factory=list)
    milestone: list[MilestoneRule] = Field(default_factory=list)
    certification_expiry: list[CertificationExpiryRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Rules:
        seen: set[str] = set()
        for rule in self.all():
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    def all(self) -> list[Rule]:
        return [*self.inactivity, *self.milestone, *self.certification_expiry]

    def enabled(self) -> list[Rule]:
        return [r for r in self.all() if r.enabled]

    def by_name(self, name: str) -> Rule:
        for rule in self.all():
            if rule.name == name:
                return rule
        raise KeyError(name)


def default_rules() -> Rules:
    """The design's example rules, used when no rules file is configured."""
    return Rules(
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=3)],
        milestone=[
            MilestoneRule(
                name="sessions_year", metric="sessions", period="year", thresholds=[10, 25, 50, 100]
            ),
        ],
        certification_expiry=[
            CertificationExpiryRule(name="certification_expiry", tiers_days=[30, 7, 1]),
        ],
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_rules(path: Path | None) -> Rules:
    """Read and validate a rules file; errors name the file and the key."""
    if path is None:
        return default_rules()
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError([(str(path), "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [(f"{path}: {_loc(e['loc'])}" if e["loc"] else str(path), e["msg"]) for e in exc.errors()]
        ) from None


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            [
                (
                    env_name(str(e["loc"][0])) if e["loc"] else "settings",
                    e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors()
            ]
        ) from None


def effective_config(settings: Settings, rules: Rules) -> dict[str, Any]:
    """What check-config prints: every setting (secrets masked) and the rules."""
    shown = settings.model_dump(mode="json")
    if settings.database_url is not None:
        shown["database_url"] = _mask_url(settings.database_url.get_secret_value())
    return {"settings": {env_name(k): v for k, v in shown.items()}, "rules": rules.model_dump(mode="json")}


def _mask_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def settings_reference_markdown() -> str:
    """The configuration table in README.md, generated from the Settings model (a test
    keeps the README in step with it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, SecretStr) or default is None:
            shown = "—"
        elif isinstance(default, dt.time):
            shown = default.strftime("%H:%M")
        else:
            shown = f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {info.description or ''} |")
    return "\n".join(rows)
