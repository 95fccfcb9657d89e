"""The ``log`` provider: writes each push to the log (the demo's default)."""

from __future__ import annotations

import aiohttp

from scenario_engine.logs import get_logger
from scenario_engine.push.base import PushMessage, SendResult

log = get_logger("scenario_engine.push")


class LogProvider:
    name = "log"

    async def send(self, message: PushMessage, session: aiohttp.ClientSession) -> SendResult:
        log.info(
            "push_delivered",
            provider="log",
            push_id=message.id,
            mentor_id=str(message.mentor_id),
            scenario=message.scenario_type,
            title=message.title,
            body=message.body,
        )
        return SendResult.delivered(f"log-{message.id}")

    async def close(self) -> None:
        return None
