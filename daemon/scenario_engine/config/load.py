"""Loading the configuration: the environment, secrets read from files or systemd credentials,
and every check that needs the outside world; ``load_config`` is the one validation path.

``load_config`` is what check-config, run and every database command call: it validates
everything that can be validated without side effects (no connection, no bind), so that
check-config rejects exactly what run would reject, and both exit 2 naming the key.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scenario_engine.config.settings import ENV_PREFIX, Settings, env_name
from scenario_engine.errors import ConfigError
from scenario_engine.push.checks import fcm_credentials_problem, fcm_extra_problem, http_url_problem
from scenario_engine.redaction import collect_secrets
from scenario_engine.scenarios.rules import Rules, load_rules

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


def load_settings(**overrides: Any) -> Settings:
    """Settings alone (pydantic's checks). Commands use ``load_config``, which adds the
    checks that need files, names and the rules."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_settings_problems(exc, {})) from None
