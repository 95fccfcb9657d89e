"""Property-based fuzzing of configuration (issue 9, defect 5 and the fuzzing deliverable).

For generated SCENARIO_* settings and rules files, either validation rejects the value
naming its key (exit 2 from the real CLI), or everything ``run`` builds from it works:
timedeltas, the sweep period, the retry policy, the rate limiter, templates rendered with
a 1 MB display name. And the database URL check agrees with asyncpg's own parser.
"""

from __future__ import annotations

import subprocess
import sys

from hypothesis import HealthCheck, given, settings

from scenario_engine.config import env_name
from scenario_engine.errors import ConfigError
from tests.support.cli import cli_env
from tests.support.config_fuzz import (
    BASE_ENV,
    environment,
    numeric_env,
    validated,
)

# --- the real CLI agrees with the in-process verdict ----------------------------------------------


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numeric_env)
def test_check_config_subprocess_matches_in_process_validation(values: dict[str, str]) -> None:
    env = {**BASE_ENV, **{env_name(k): v for k, v in values.items()}}
    with environment(env):
        expected = 2 if isinstance(validated(), ConfigError) else 0
    result = subprocess.run(
        [sys.executable, "-m", "scenario_engine", "check-config"],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=60,
        check=False,
    )
    assert result.returncode == expected, result.stderr
    if expected == 2:
        assert any(key in result.stderr for key in env if key != "SCENARIO_DATABASE_URL")
        assert "Traceback" not in result.stderr
