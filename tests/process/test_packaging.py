"""The package as a user finds it: --version, the license, the fcm extra, the webhook's
User-Agent, machine-readable output kept clean of logs, and metrics that match the docs."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.cli import run_cli
from tests.support.factories import add_certification, add_mentor
from tests.support.packaging import OPERATIONS, PYPROJECT, ROOT, _section

VERSION = importlib.metadata.version("scenario-engine")
DAY = dt.timedelta(days=1)
FCM_DEPENDENCIES = {"google-auth", "requests"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- version and license -------------------------------------------------------------------


async def test_version_flag_prints_the_installed_version() -> None:
    out = await run_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"scenario-engine {VERSION}\n"
    assert PYPROJECT["project"]["version"] == VERSION  # the metadata is pyproject's, not a copy


def _requirements(metadata: str) -> dict[str, set[str]]:
    """Requires-Dist of a METADATA/PKG-INFO: extra ("" for the base install) → project names."""
    out: dict[str, set[str]] = {}
    for line in Parser().parsestr(metadata).get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        name = re.split(r"[\s\[<>=!~]", requirement.strip(), maxsplit=1)[0].lower()
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        out.setdefault(extra.group(1) if extra else "", set()).add(name)
    return out


def test_wheel_and_sdist_carry_the_license_and_fcm_is_an_extra(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    license_text = (ROOT / "LICENSE").read_text()

    (wheel,) = tmp_path.glob("scenario_engine-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        dist_info = f"scenario_engine-{VERSION}.dist-info"
        assert archive.read(f"{dist_info}/licenses/LICENSE").decode() == license_text
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    headers = Parser().parsestr(metadata)
    assert headers["License-Expression"] == "MIT"
    assert headers.get_all("License-File") == ["LICENSE"]
    requires = _requirements(metadata)
    assert not FCM_DEPENDENCIES & requires[""], "a plain install must not pull in google-auth"
    assert requires["fcm"] == FCM_DEPENDENCIES
    assert requires["dev"] >= FCM_DEPENDENCIES  # the tests drive the fcm provider

    (sdist,) = tmp_path.glob("scenario_engine-*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"scenario_engine-{VERSION}/LICENSE")
        assert member is not None and member.read().decode() == license_text
        pkg_info = archive.extractfile(f"scenario_engine-{VERSION}/PKG-INFO")
        assert pkg_info is not None
        assert Parser().parsestr(pkg_info.read().decode()).get_all("License-File") == ["LICENSE"]


# --- the fcm extra missing -----------------------------------------------------------------


@pytest.fixture
def without_google_auth(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH that shadows the namespace package `google` with an empty regular package:
    `import google.auth` then fails as it does where the fcm extra was never installed."""
    shadow = tmp_path / "no-google-auth"
    (shadow / "google").mkdir(parents=True)
    (shadow / "google" / "__init__.py").write_text("")
    return {"PYTHONPATH": str(shadow)}


def _fcm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    key = tmp_path / "service-account.json"
    key.write_text("{}")  # never read: the missing extra is reported first
    return {
        "SCENARIO_PUSH_PROVIDER": "fcm",
        "SCENARIO_PUSH_FCM_PROJECT_ID": "demo-project",
        "SCENARIO_PUSH_FCM_CREDENTIALS_FILE": str(key),
        **extra,
    }


def _says_fcm_extra_is_missing(stderr: str) -> bool:
    return (
        "configuration error:" in stderr
        and re.search(r"SCENARIO_PUSH_PROVIDER: fcm needs the fcm extra.*'google\.auth'", stderr) is not None
        and "pip install 'scenario-engine[fcm]'" in stderr
        and "Traceback" not in stderr
    )


async def test_fcm_without_the_extra_is_a_configuration_error(
    tmp_path: Path, db_url: str, without_google_auth: dict[str, str]
) -> None:
    env = _fcm_env(tmp_path, SCENARIO_DATABASE_URL=db_url, **without_google_auth)
    for command in (["check-config"], ["run"], ["dispatch", "--once"]):
        out = await run_cli(*command, env=env)
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert _says_fcm_extra_is_missing(out.stderr), (command, out.stderr)
    # The same configuration with google-auth importable gets past the extra (to the key file).
    out = await run_cli("check-config", env=_fcm_env(tmp_path, SCENARIO_DATABASE_URL=db_url))
    assert out.returncode == 2
    assert "fcm extra" not in out.stderr and "SCENARIO_PUSH_FCM_CREDENTIALS_FILE" in out.stderr


def test_make_provider_refuses_fcm_without_the_extra_with_a_config_error(tmp_path: Path) -> None:
    """Settings built in code skip load_config; make_provider itself names the setting."""
    script = (
        "from scenario_engine.config import ConfigError, Settings\n"
        "from scenario_engine.push.factory import make_provider\n"
        "s = Settings(push_provider='fcm', push_fcm_project_id='p',"
        f" push_fcm_credentials_file={str(tmp_path)!r})\n"
        "try:\n"
        "    make_provider(s, None)\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0][0])\n"
    )
    shadow = tmp_path / "google"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("")
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "SCENARIO_PUSH_PROVIDER\n"


# --- output that programs read carries no log lines -----------------------------------------


async def test_dispatch_once_logs_to_stderr_in_the_configured_format(db_url: str, pool: Any) -> None:
    for _ in range(2):
        await add_mentor(pool, joined_at=now() - 30 * DAY)
    env = {"SCENARIO_DATABASE_URL": db_url}
    assert (await run_cli("sweep", env=env)).returncode == 0
    assert await pool.fetchval("SELECT count(*) FROM push_notification WHERE status = 'pending'") == 2

    out = await run_cli("dispatch", "--once", env=env | {"SCENARIO_LOG_FORMAT": "json"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [out.stdout.strip()]  # only the summary line
    assert re.fullmatch(r"(\w+=\d+ )*\w+=\d+\n", out.stdout) and "sent=2" in out.stdout
    events = [json.loads(line) for line in out.stderr.splitlines()]  # every line is a JSON event
    assert [e["event"] for e in events].count("push_delivered") == 2

    for _ in range(2):
        await add_mentor(pool, joined_at=now() - 30 * DAY)
    assert (await run_cli("sweep", env=env)).returncode == 0
    out = await run_cli(
        "dispatch", "--once", env=env | {"SCENARIO_LOG_FORMAT": "console", "SCENARIO_LOG_LEVEL": "warning"}
    )
    assert out.returncode == 0, out.stderr
    assert "sent=2" in out.stdout
    assert "push_delivered" not in out.stdout + out.stderr  # an info event, below the level

    out = await run_cli("dispatch", "--once", env=env | {"SCENARIO_LOG_FORMAT": "console"})
    assert out.returncode == 0, out.stderr
    assert "push_delivered" not in out.stdout  # nothing was due; still nothing on stdout but the summary
    assert out.stdout.startswith("claimed=0")


async def test_sweep_json_is_pure_json_with_inputs_as_objects(db_url: str, pool: Any) -> None:
    """A quarantined mentor's warning goes to stderr; stdout parses as it is."""
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    good = await add_mentor(pool, joined_at=now() - 30 * DAY)
    await add_certification(pool, good, expires_at=now() + 5 * DAY)
    bad = await add_mentor(pool, joined_at=now() - 30 * DAY)
    await pool.execute("UPDATE peer_mentor SET timezone = 'utc' WHERE id = $1", bad)
    env = {"SCENARIO_DATABASE_URL": db_url}

    out = await run_cli("sweep", "--dry-run", "--output", "json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert str(bad) in report["quarantined"]
    assert "mentor_quarantined" in out.stderr
    decisions = [d for d in report["decisions"] if d["mentor_id"] == str(good)]
    assert {d["scenario_type"] for d in decisions} == {"inactivity", "certification_expiry"}
    for d in decisions:
        assert isinstance(d["inputs"], dict) and d["inputs"], d
    inactivity = next(d for d in decisions if d["scenario_type"] == "inactivity")
    assert inactivity["inputs"]["since"] == "joined"

    out = await run_cli("sweep", "--dry-run", "--output", "csv", env=env)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert {r["mentor_id"] for r in rows} == {str(good)}  # no log line among the rows
    assert (
        json.loads(next(r for r in rows if r["scenario_type"] == "inactivity")["inputs"])
        == (inactivity["inputs"])
    )


async def test_dispatch_once_rejects_since() -> None:
    out = await run_cli("dispatch", "--once", "--since", "2026-01-01")
    assert out.returncode == 2
    assert "--since applies only to --retry-dead" in out.stderr
    assert out.stderr.startswith("usage: scenario-engine dispatch")


def documented_metrics() -> tuple[dict[str, str], set[str]]:
    """(name → type) from the Metrics table; names the alerts use."""
    text = OPERATIONS.read_text()
    table: dict[str, str] = {}
    for line in _section(text, "Metrics").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`scenario"):
            for name in re.findall(r"`(scenario_\w+)(?:\{[^}]*\})?`", cells[0]):
                table[name] = cells[1]
    alerts = set(re.findall(r"\b(scenario_\w+)", _section(text, "Alerts worth setting")))
    return table, alerts


def exported_metrics(body: str) -> dict[str, str]:
    """name → type of every family in a /metrics page (prometheus_client's own *_created
    series are left out)."""
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, flags=re.M))
    return {name: kind for name, kind in families.items() if not name.endswith("_created")}


@pytest.mark.acceptance
async def test_every_documented_metric_is_exported_by_a_running_daemon(daemons: Any, pool: Any) -> None:
    started = now().timestamp()
    d = daemons()
    await d.wait_ready()
    with anyio.fail_after(30):  # the first sweep runs at start
        while not await d.metric("scenario_last_sweep_finished_timestamp_seconds"):
            await anyio.sleep(0.05)
    code, raw = await d.http("/metrics")
    assert code == 200
    body = raw.decode()
    exported = exported_metrics(body)
    table, alerts = documented_metrics()

    assert table, "no metrics table found in docs/OPERATIONS.md"
    assert {name: exported.get(name) for name in table} == table, "documented but not exported"
    assert alerts - set(exported) == set(), "an alert uses a metric that does not exist"
    assert set(exported) - set(table) == set(), "exported but not documented in docs/OPERATIONS.md"

    assert f'scenario_engine_build_info{{version="{VERSION}"}} 1.0' in body.splitlines()
    finished = await d.metric("scenario_last_sweep_finished_timestamp_seconds")
    assert started <= finished <= now().timestamp()
