"""PostgreSQL setup: run by several processes at once it must not deadlock;
it makes large blobs cheap to store.

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


async def test_blob_columns_compress_with_lz4(pg_admin_url: str) -> None:
    """Setup moves the official tables' blob columns to lz4 (PostgreSQL 14+
    built with lz4, as Debian's is): values written after it are lz4."""
    with pg_schema(pg_admin_url) as url:
        backend = open_backend(url)
        await backend.open()
        try:
            await backend.setup()
            await backend.setup()  # a second setup changes nothing
            async with backend.pool.connection() as conn:  # type: ignore[attr-defined]
                cur = await conn.execute(
                    """SELECT c.relname, a.attcompression FROM pg_attribute a
                       JOIN pg_class c ON c.oid = a.attrelid
                       WHERE c.relnamespace = current_schema()::regnamespace
                       AND a.attname = 'blob' ORDER BY c.relname"""
                )
                rows = [(r["relname"], r["attcompression"]) for r in await cur.fetchall()]
                assert rows == [("checkpoint_blobs", "l"), ("checkpoint_writes", "l")]
                await conn.execute(
                    """INSERT INTO checkpoint_blobs VALUES ('t', '', 'c', '1', 'bytes', %s)""",
                    (b"abc" * 50_000,),
                )
                cur = await conn.execute(
                    "SELECT pg_column_compression(blob) AS m FROM checkpoint_blobs"
                )
                assert (await cur.fetchone())["m"] == "lz4"
        finally:
            await backend.close()
