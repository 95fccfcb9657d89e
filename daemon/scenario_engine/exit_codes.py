"""The process exit codes, in one place (docs/OPERATIONS.md and docs/RELIABILITY.md list them;
the systemd units refuse to restart on EXIT_CONFIG)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # a failure the command could not work around, or a bug
EXIT_CONFIG = 2  # bad configuration: restarting cannot fix it
EXIT_NEEDS_DBA = 3  # migrate: applied what it may; a DBA must run the statements it printed
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader left
