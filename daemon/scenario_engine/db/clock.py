"""The database's clock: the one source of time for decisions.

The platform's triggers stamp events and activity with the server's ``now()``; a decision taken
with another clock compares instants from two clocks (docs/RELIABILITY.md, "The clock rule").
Every decision whose caller names no instant therefore reads this, on the connection it decides
on, after whatever it decides about was read or claimed.
"""

from __future__ import annotations

import datetime as dt

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import query


async def database_now(conn: Conn) -> dt.datetime:
    """The server's clock now (``clock_timestamp()``, not the transaction's start)."""
    at: dt.datetime = await conn.fetchval(query("database_now"))
    return at
