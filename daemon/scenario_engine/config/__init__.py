"""Configuration, one concept per module (issue 19):

* ``config.settings`` — the ``Settings`` model (``SCENARIO_*``), ``env_name``, ``parse_quiet_hours``;
* ``config.load`` — the environment, secret files and ``load_config``, the one validation path;
* ``config.reference`` — what check-config prints and README's settings table;
* elsewhere, by what they check: ``db.url`` (a PostgreSQL URL as asyncpg reads it),
  ``push.checks`` (the providers' URLs, extra and key), ``redaction`` (masking and scrubbing).

The names below stay importable from ``scenario_engine.config`` as before the split, for code
written against it; the daemon's own modules import from the new homes.
"""

from __future__ import annotations

from scenario_engine.config.load import (
    MAX_SECRET_FILE_BYTES,
    RESERVED_ENV_PREFIXES,
    SECRET_SOURCES,
    Config,
    known_env_names,
    load_config,
    load_settings,
    runtime_problems,
    status_host_problem,
    unknown_env_problems,
)
from scenario_engine.config.reference import effective_config, settings_reference_markdown
from scenario_engine.config.settings import ENV_PREFIX, Settings, env_name
from scenario_engine.db.url import DSN_PARAMS, LIBPQ_ONLY_PARAMS, dsn_problems
from scenario_engine.domain.quiet_hours import parse_quiet_hours
from scenario_engine.errors import ConfigError

__all__ = [
    "DSN_PARAMS",
    "ENV_PREFIX",
    "LIBPQ_ONLY_PARAMS",
    "MAX_SECRET_FILE_BYTES",
    "RESERVED_ENV_PREFIXES",
    "SECRET_SOURCES",
    "Config",
    "ConfigError",
    "Settings",
    "dsn_problems",
    "effective_config",
    "env_name",
    "known_env_names",
    "load_config",
    "load_settings",
    "parse_quiet_hours",
    "runtime_problems",
    "settings_reference_markdown",
    "status_host_problem",
    "unknown_env_problems",
]
