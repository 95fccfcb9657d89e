"""Commands end in one clear line and a documented exit code, never a traceback, and no
output of any command carries a secret (issue 9 defects 5–6, issue 10 item 5).

Exit codes: 0 ok, 1 failure, 2 bad configuration (including a database that rejects who
we are), 141 stdout closed by its reader.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from scenario_engine.dev.embedded import LocalCluster, free_port, start_private_cluster
from tests.support import pg
from tests.support.cli import cli_env, run_cli

pytestmark = pytest.mark.acceptance

PLANTED = "PLANTED"  # every planted secret starts with this


def _one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _with_user(url: str, user: str, password: str | None = None) -> str:
    scheme, _, rest = url.partition("://")
    hostpart = rest.rpartition("@")[2]
    auth = user + (f":{password}" if password else "")
    return f"{scheme}://{auth}@{hostpart}"


# --- database refusals -------------------------------------------------------------------------


async def test_migrate_against_a_database_that_does_not_exist(pg_server: pg.TestServer) -> None:
    url = pg_server.url("no_such_database_here")
    result = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": url})
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "no_such_database_here" in line and "does not exist" in line


async def test_migrate_as_a_role_that_does_not_exist(db_url: str) -> None:
    url = _with_user(db_url, "no_such_role_here", "PLANTED-pw-1")
    result = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": url})
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "no_such_role_here" in line
    assert PLANTED not in result.stdout + result.stderr


@pytest.mark.parametrize("revoke_connect", [True, False])
async def test_migrate_without_the_privileges_it_needs(db_url: str, revoke_connect: bool) -> None:
    """No CONNECT on the database (refused at connect), or no CREATE in it (refused mid-way)."""
    role = f"weak_{uuid.uuid4().hex[:8]}"
    database = db_url.rpartition("/")[2].partition("?")[0]
    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        if revoke_connect:
            await admin.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        url = _with_user(db_url, role)
        result = await run_cli("migrate", env={"SCENARIO_DATABASE_URL": url})
    finally:
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await admin.close()
    assert result.returncode == 1, result.stderr
    line = _one_clean_line(result.stderr)
    assert "permission denied" in line or "must be owner" in line


async def test_a_refused_connection_names_what_was_tried_and_not_the_password() -> None:
    url = f"postgresql://app:PLANTED-pw-2@127.0.0.1:{free_port()}/platform"
    for command in (["migrate"], ["sweep", "--dry-run"], ["explain", str(uuid.uuid4())]):
        result = await run_cli(*command, env={"SCENARIO_DATABASE_URL": url})
        assert result.returncode == 1, (command, result.stderr)
        line = _one_clean_line(result.stderr)
        assert "app@127.0.0.1" in line and "/platform" in line and "connection refused" in line
        assert PLANTED not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[LocalCluster]:
    """A server of our own that checks passwords (the shared test server trusts everyone)."""
    cluster = start_private_cluster()
    try:
        hba = cluster.data_dir / "pg_hba.conf"
        hba.write_text("host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        cluster._run(["pg_ctl", "-D", str(cluster.data_dir), "reload"])
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def password_role(password_cluster: LocalCluster) -> AsyncIterator[str]:
    admin = await asyncpg.connect(password_cluster.dsn)
    try:
        await admin.execute("DROP ROLE IF EXISTS pw_user")
        await admin.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-password'")
        yield password_cluster.url("postgres")
    finally:
        await admin.execute("DROP ROLE IF EXISTS pw_user")
        await admin.close()


async def test_a_wrong_password_is_a_configuration_error_that_hides_it(password_role: str) -> None:
    url = _with_user(password_role, "pw_user", "PLANTED-wrong-pw")
    for command in (["migrate"], ["sweep", "--dry-run"], ["dispatch", "--once"]):
        result = await run_cli(*command, env={"SCENARIO_DATABASE_URL": url})
        assert result.returncode == 2, (command, result.stderr)
        line = _one_clean_line(result.stderr)
        assert "password" in line and "pw_user" in line
        assert PLANTED not in result.stdout + result.stderr


# --- closed stdout ------------------------------------------------------------------------------


def _with_stdout_closed(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a command whose reader has gone away (``| head`` that already exited)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenario_engine", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(env),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    return proc.wait(timeout=120), stderr


@pytest.mark.parametrize(
    "command",
    [["check-config"], ["sweep", "--dry-run", "--output", "csv"], ["sweep", "--dry-run", "--output", "json"]],
)
async def test_a_closed_stdout_ends_quietly_with_141(db_url: str, command: list[str]) -> None:
    code, stderr = _with_stdout_closed(*command, env={"SCENARIO_DATABASE_URL": db_url})
    assert code == 141, stderr
    assert "Traceback" not in stderr and "Broken pipe" not in stderr and "Exception ignored" not in stderr


async def test_explain_json_into_a_closed_pipe(db_url: str) -> None:
    admin = await asyncpg.connect(db_url)
    try:
        mentor = await admin.fetchval(
            "INSERT INTO peer_mentor (organization_id, display_name) VALUES (gen_random_uuid(), 'Ana') "
            "RETURNING id"
        )
    finally:
        await admin.close()
    code, stderr = _with_stdout_closed(
        "explain", str(mentor), "--json", env={"SCENARIO_DATABASE_URL": db_url}
    )
    assert code == 141, stderr
    assert stderr.strip() == ""


def test_check_config_into_head_prints_one_line_and_nothing_on_stderr() -> None:
    result = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m scenario_engine check-config | head -1"],
        capture_output=True,
        text=True,
        env=cli_env({"SCENARIO_DATABASE_URL": "postgresql://u@127.0.0.1/db"}),
        timeout=60,
        check=False,
    )
    assert result.stdout == "{\n"
    assert result.stderr == ""


# --- run rejects exactly what check-config rejects -------------------------------------------------


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SCENARIO_SWEEP_INTERVAL_SECONDS": "inf"}, "SCENARIO_SWEEP_INTERVAL_SECONDS"),
        ({"SCENARIO_STATUS_PROT": "9000"}, "SCENARIO_STATUS_PROT"),
        ({"SCENARIO_DATABASE_URL_FILE": "/nope"}, "SCENARIO_DATABASE_URL_FILE"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u:PLANTED-pw@h:notaport/db"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u@127.0.0.1/db?sslmode=bogus"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_STATUS_HOST": "no-such-host.invalid"}, "SCENARIO_STATUS_HOST"),
        ({"SCENARIO_RULES_FILE": "BAD_TEMPLATE"}, "inactivity[0].body"),
        ({}, "SCENARIO_DATABASE_URL"),
    ],
)
async def test_run_and_check_config_reject_the_same_configuration(
    tmp_path: Path, env: dict[str, str], key: str
) -> None:
    if env.get("SCENARIO_RULES_FILE") == "BAD_TEMPLATE":
        rules = tmp_path / "rules.toml"
        rules.write_text("[[inactivity]]\nname='a'\nthreshold_days=3\nbody='Hi {nickname}'\n")
        env = {"SCENARIO_RULES_FILE": str(rules)}
    if env and "SCENARIO_DATABASE_URL" not in env and "SCENARIO_DATABASE_URL_FILE" not in env:
        env = {"SCENARIO_DATABASE_URL": "postgresql://u@127.0.0.1/db", **env}
    for command in ("check-config", "run", "migrate", "sweep"):
        result = await run_cli(command, env=env, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert key in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert PLANTED not in result.stdout + result.stderr


# --- no secret in any output ----------------------------------------------------------------------


def _secret_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    token = tmp_path / "token"
    token.write_text("PLANTED-token-55aa\n")
    return {
        "SCENARIO_DATABASE_URL": _with_user(db_url, "postgres", "PLANTED-db-pass") + "&application_name=x"
        if "?" in db_url
        else _with_user(db_url, "postgres", "PLANTED-db-pass") + "?application_name=x",
        "SCENARIO_PUSH_PROVIDER": "webhook",
        "SCENARIO_PUSH_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/push?api_key=PLANTED-api-key",
        "SCENARIO_PUSH_WEBHOOK_TOKEN_FILE": str(token),
        "SCENARIO_PUSH_WEBHOOK_HMAC_SECRET": "PLANTED-hmac-e1e1",
    }


async def test_no_command_prints_a_secret(db_url: str, tmp_path: Path) -> None:
    env = _secret_env(db_url, tmp_path)
    admin = await asyncpg.connect(db_url)
    try:
        mentor = await admin.fetchval(
            "INSERT INTO peer_mentor (organization_id, display_name, joined_at) "
            "VALUES (gen_random_uuid(), 'Ana', now() - interval '90 days') RETURNING id"
        )
    finally:
        await admin.close()
    for command in (
        ["check-config"],
        ["migrate"],
        ["sweep", "--dry-run", "--output", "json"],
        ["sweep"],
        ["explain", str(mentor), "--json"],
        ["dispatch", "--once"],  # the webhook is unreachable: pushes are retried, not leaked
        ["dispatch", "--retry-dead"],
    ):
        result = await run_cli(*command, env=env)
        assert PLANTED not in result.stdout + result.stderr, (command, result.stdout + result.stderr)
        assert result.returncode == 0, (command, result.stderr)
    bad = dict(env, SCENARIO_STATUS_PROT="1")
    for command in (["check-config"], ["run"], ["migrate"]):
        result = await run_cli(*command, env=bad)
        assert PLANTED not in result.stdout + result.stderr, (command, result.stdout + result.stderr)
        assert result.returncode == 2
