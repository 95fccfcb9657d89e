"""structlog set-up: JSON lines for machines, readable console output on a terminal."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

from scenario_engine.redaction import scrub

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LIBRARY_HANDLER = "scenario_engine.library_logs"
REPEAT_SECONDS = 10.0  # a library's repeated message is printed once per this many seconds


class RepeatLimiter(logging.Filter):
    """Lets one record per (logger, message template) through every ``interval`` seconds and
    drops the repeats in between; the next record let through says how many were dropped
    (``suppressed``). A library that logs per connection or per failed accept (asyncio's
    "socket.accept() out of system resource" with a traceback, aiohttp's "Error handling
    request") thus costs a line every few seconds under attack, not one per attempt."""

    def __init__(self, interval: float = REPEAT_SECONDS, max_keys: int = 1000):
        super().__init__()
        self.interval = interval
        self.max_keys = max_keys
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # the template's first line: varying arguments (and asyncio's context lines) are one message
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (-math.inf, 0))
        if now - last < self.interval:
            self._seen[key] = (last, suppressed + 1)
            return False
        if len(self._seen) >= self.max_keys and key not in self._seen:
            self._seen.clear()  # bounded memory; at worst a repeat gets through early
        self._seen[key] = (now, 0)
        if suppressed:
            record.suppressed = suppressed
        return True


class SecretScrubber:
    """Replaces every configured secret in a log event with ***: whatever a library's error
    message quotes (a URL with its query string, a DSN, a gateway echoing a request), the line
    carries no secret. Runs after format_exc_info, so tracebacks are covered too."""

    def __init__(self, secrets: Iterable[str]):
        self.secrets = list(secrets)  # Config.secrets(): long enough to mask, longest first

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value, self.secrets)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        text = str(value)
        return self._clean(text) if any(secret in text for secret in self.secrets) else value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if self.secrets:
            for key, value in event.items():
                event[key] = self._clean(value)
        return event


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: str = "info",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    library_logs: bool = False,
) -> None:
    """Log events go to ``stream``: stdout for ``run`` (a daemon's output is its log), stderr
    for the one-shot commands, whose stdout is their result (JSON, CSV, a summary line).

    ``library_logs`` (the daemon) also routes the standard ``logging`` records of libraries
    (asyncio, aiohttp, asyncpg), warnings and up, through the same renderer and scrubber,
    rate-limited by ``RepeatLimiter``: otherwise Python prints them as raw multi-line text
    (not JSON lines), one per occurrence."""
    out = sys.stdout if stream is None else stream
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SecretScrubber(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    if library_logs:
        _route_library_logs(out, renderer, secrets)


def _route_library_logs(out: TextIO, renderer: structlog.types.Processor, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(out)
    handler.set_name(LIBRARY_HANDLER)
    handler.setLevel(logging.WARNING)
    handler.addFilter(RepeatLimiter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(allow=["suppressed"]),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                SecretScrubber(secrets),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == LIBRARY_HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
