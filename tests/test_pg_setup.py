"""PostgreSQL setup run by several processes at once must not deadlock.

The official migrations use CREATE INDEX CONCURRENTLY, which waits for every
open transaction of the database; a setup blocked in pg_advisory_lock() is one,
so a blocking setup lock made concurrent setups deadlock (2 of 3 setups failed
with DeadlockDetected before the try-and-sleep lock).
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from langgraph_hybrid_saver import open_backend

from .conftest import pg_schema


async def test_concurrent_setups_on_fresh_schemas(pg_admin_url: str) -> None:
    for _ in range(2):
        with ExitStack() as stack:
            urls = [stack.enter_context(pg_schema(pg_admin_url)) for _ in range(3)]
            backends = [open_backend(url) for url in urls]
            for b in backends:
                await b.open()
            try:
                await asyncio.gather(*(b.setup() for b in backends))
            finally:
                for b in backends:
                    await b.close()
