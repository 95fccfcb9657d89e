"""Run the real ``scenario-engine`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    return {**base, **(extra or {})}


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scenario_engine", *args],
            capture_output=True,
            text=True,
            env=cli_env(env),
            timeout=timeout,
            check=False,
        )

    return await anyio.to_thread.run_sync(call)
