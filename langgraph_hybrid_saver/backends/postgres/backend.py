"""`PostgresBackend`: the DurableBackend on PostgreSQL (psycopg 3 async,
psycopg_pool): connecting, setup, the reads and the deletes; `apply` writes
through `apply.py`."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langgraph.checkpoint.postgres.base import MIGRATIONS as OFFICIAL_MIGRATIONS
from psycopg import AsyncConnection, AsyncCursor, OperationalError
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.backends._apply import refuse_delta_threads
from langgraph_hybrid_saver.backends._prune import ChainRow, PrunedKey, doomed_checkpoints
from langgraph_hybrid_saver.backends._sql import get_clause
from langgraph_hybrid_saver.backends.postgres.apply import Watermarks, apply_batch
from langgraph_hybrid_saver.backends.postgres.read import stored
from langgraph_hybrid_saver.backends.postgres.refusals import refusal
from langgraph_hybrid_saver.backends.postgres.sql import (
    CHAIN_INDEX_SQL,
    CHECKPOINT_INDEX_SQL,
    DELETE_CHECKPOINTS_SQL,
    DELETE_ORPHAN_BLOBS_SQL,
    DELETE_RUNS_SQL,
    DELETE_WRITES_OF_SQL,
    DELTA_THREADS_SQL,
    LOCK_THREADS_SQL,
    MIGRATIONS,
    SELECT_BLOBS_SQL,
    SELECT_SQL,
    SELECT_WATERMARK_SQL,
    SERVER_VERSION_SQL,
    SETUP_LOCK_SQL,
    SETUP_UNLOCK_SQL,
    TEMP_PRIVILEGE_SQL,
    THREAD_IDS_SQL,
    UNLINK_PRUNED_PARENTS_SQL,
)
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    list_conditions,
)
from langgraph_hybrid_saver.errors import ConfigError, DurableStoreError, ServerUnreachableError
from langgraph_hybrid_saver.outbox.ops import Op


class PostgresBackend:
    """Durable store on PostgreSQL (psycopg 3 async, psycopg_pool)."""

    stats = None  # no usage counters: PostgreSQL does not bill per request

    def __init__(
        self, pool: AsyncConnectionPool[Any], *, owns_pool: bool = False, where: str = ""
    ) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.where = where or "PostgreSQL"
        self.marks = Watermarks()

    @classmethod
    def from_url(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> PostgresBackend:
        pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        return cls(pool, owns_pool=True, where=redact(url))

    async def open(self) -> None:
        if not self.owns_pool:
            return
        try:
            # One direct attempt first: a refused connection fails at once
            # instead of after the pool's retry timeout.
            probe = await AsyncConnection.connect(str(self.pool.conninfo), connect_timeout=10)
            await probe.close()
            await self.pool.open(wait=True, timeout=10.0)
        except Exception as e:
            await self.pool.close()
            if message := refusal(e, self.where):
                raise ConfigError(message) from e
            raise ServerUnreachableError(
                f"PostgreSQL at {self.where} is unreachable ({type(e).__name__}): "
                "start it or fix durable_url"
            ) from e

    async def setup(self) -> None:
        async with self.pool.connection() as conn:
            # apply stages every batch in a temporary table
            temp = cast(DictRow, await (await conn.execute(TEMP_PRIVILEGE_SQL)).fetchone())
            if not temp["ok"]:
                raise DurableStoreError(
                    f"PostgreSQL at {self.where}: user {temp['usr']!r} may not create temporary "
                    f"tables in database {temp['db']!r}, and the reconciler stages each batch "
                    f'in one; grant it: GRANT TEMPORARY ON DATABASE "{temp["db"]}" TO '
                    f'"{temp["usr"]}"'
                )
            while not cast(DictRow, await (await conn.execute(SETUP_LOCK_SQL)).fetchone())["ok"]:
                await asyncio.sleep(0.05)
            try:
                await _migrate(conn, OFFICIAL_MIGRATIONS, "checkpoint_migrations")
                await _migrate(conn, MIGRATIONS, "hybrid_saver_migrations")
            finally:
                await conn.execute(SETUP_UNLOCK_SQL)

    async def apply(self, ops: Sequence[Op]) -> int:
        if not ops:
            return 0
        # A small batch: one round trip (apply.py). Staged: four, BEGIN and
        # the lock (whose watermarks decide what is written; one more where
        # the session lacks the staging table); the COPY (two); then, in a
        # pipeline, each run's statement and delete, the watermarks and the
        # COMMIT. A delete splits the batch: what was queued before it
        # lands first. On an error the pool's connection context rolls back.
        async with self.pool.connection() as conn:
            return await apply_batch(conn, ops, self.marks)

    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        where, args = get_clause(thread_id, checkpoint_ns, checkpoint_id, "%s")
        rows = await self._fetch(SELECT_SQL + where, args)
        return stored(rows[0]) if rows else None

    async def watermark(self, thread_id: str) -> str:
        rows = await self._fetch(SELECT_WATERMARK_SQL, (thread_id,))
        return str(rows[0]["applied_seq"]) if rows else ""

    async def thread_ids(self, after: str, limit: int) -> builtins.list[str]:
        rows = await self._fetch(THREAD_IDS_SQL, (after, limit))
        return [r["thread_id"] for r in rows]

    async def _fetch(
        self, sql: str, args: Sequence[Any] | Mapping[str, Any]
    ) -> builtins.list[DictRow]:
        """Run a read; once more if the server had closed the pooled
        connection (a PostgreSQL restart): checking every connection at
        checkout would cost a round trip per read."""
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(sql, args, binary=True)
                    return cast(builtins.list[DictRow], await cur.fetchall())
            except OperationalError:
                if attempt == 2:
                    raise
                await self.pool.check()  # drop the connections the server closed
        raise AssertionError("unreachable")

    async def get_blobs(
        self, thread_id: str, checkpoint_ns: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[str, bytes | None]]:
        args = (thread_id, checkpoint_ns, [c for c, _ in refs], [v for _, v in refs])
        rows = await self._fetch(SELECT_BLOBS_SQL, args)
        return {r["channel"]: (r["type"], r["blob"]) for r in rows}

    async def list(self, query: ListQuery) -> list[StoredCheckpoint]:
        conditions = list_conditions(query)
        wheres = [f"{column} {op} %s" for column, op, _ in conditions]
        args: builtins.list[Any] = [value for _, _, value in conditions]
        if query.filter:
            wheres.append("metadata @> %s")
            args.append(Jsonb(query.filter))
        sql = SELECT_SQL + ("WHERE " + " AND ".join(wheres) if wheres else "")
        sql += " ORDER BY checkpoint_id DESC"
        if query.limit is not None:
            sql += " LIMIT %s"
            args.append(query.limit)
        return [stored(r) for r in await self._fetch(sql, args)]

    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[PrunedKey]:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(DELETE_RUNS_SQL, (list(run_ids),))
            gone = cast(builtins.list[DictRow], await cur.fetchall())
            if not gone:
                return []
            await _delete_writes_of(cur, gone)
            threads = sorted({r["thread_id"] for r in gone})
            await cur.execute(DELETE_ORPHAN_BLOBS_SQL, (threads,))
        return [_key(r, True) for r in gone]

    async def checkpoint_index(
        self, thread_ids: Sequence[str]
    ) -> builtins.list[tuple[str, str, str, bool]]:
        rows = await self._fetch(CHECKPOINT_INDEX_SQL, (sorted(set(thread_ids)),))
        return [(r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"], r["delta"]) for r in rows]

    async def chain_index(self, thread_ids: Sequence[str]) -> builtins.list[ChainRow]:
        threads = sorted(set(thread_ids))
        args = {"threads": threads, "delta": threads}
        return _chain_rows(await self._fetch(CHAIN_INDEX_SQL, args))

    async def prune_keep_latest(
        self, thread_ids: Sequence[str], keep: int = 1, *, delta_chains: bool = False
    ) -> builtins.list[PrunedKey]:
        threads = sorted(set(thread_ids))
        async with self.pool.connection() as conn, conn.transaction():
            # Lock the threads against a concurrent reconcile, like `apply`.
            cur = await conn.execute(LOCK_THREADS_SQL, (threads,))
            await cur.execute(DELTA_THREADS_SQL, (threads,))
            delta = sorted(cast(DictRow, r)["thread_id"] for r in await cur.fetchall())
            if not delta_chains:
                refuse_delta_threads(delta)
            await cur.execute(CHAIN_INDEX_SQL, {"threads": threads, "delta": delta})
            rows = _chain_rows(cast(builtins.list[DictRow], await cur.fetchall()))
            changed: builtins.list[PrunedKey] = []
            if doomed := doomed_checkpoints(rows, keep):
                keys = tuple([key[i] for key in doomed] for i in range(3))
                await cur.execute(DELETE_CHECKPOINTS_SQL, keys)
                await _delete_writes_of(cur, cast(builtins.list[DictRow], await cur.fetchall()))
                changed += [(*key, True) for key in doomed]
            await cur.execute(UNLINK_PRUNED_PARENTS_SQL, (threads,))
            changed += [_key(r, False) for r in await cur.fetchall()]
            await cur.execute(DELETE_ORPHAN_BLOBS_SQL, (threads,))
        return changed

    async def server_version(self) -> str:
        """The server's version, e.g. "PostgreSQL 15.6" (for `setup` and `status`)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(SERVER_VERSION_SQL)
            return f"PostgreSQL {cast(DictRow, await cur.fetchone())['server_version']}"

    async def count_rows(self, thread_id: str | None = None) -> dict[str, int]:
        """Rows per table, of one thread or of all (for `status` and tests)."""
        where, args = ("", ()) if thread_id is None else (" WHERE thread_id = %s", (thread_id,))
        out = {}
        async with self.pool.connection() as conn:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                cur = await conn.execute(f"SELECT count(*) AS n FROM {table}{where}", args)
                out[table] = cast(DictRow, await cur.fetchone())["n"]
        return out

    async def close(self) -> None:
        if self.owns_pool:
            await self.pool.close()


async def _migrate(conn: AsyncConnection[Any], migrations: Sequence[str], table: str) -> None:
    await conn.execute(migrations[0])
    cur = await conn.execute(f"SELECT v FROM {table} ORDER BY v DESC LIMIT 1")
    row = await cur.fetchone()
    version = -1 if row is None else row["v"]
    for v in range(version + 1, len(migrations)):
        await conn.execute(migrations[v])
        await conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (v,))


def _key(r: Any, deleted: bool) -> PrunedKey:
    return (r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"], deleted)


def _chain_rows(rows: Sequence[DictRow]) -> builtins.list[ChainRow]:
    return [
        ChainRow(
            r["thread_id"],
            r["checkpoint_ns"],
            r["checkpoint_id"],
            r["parent_checkpoint_id"],
            frozenset(r["delta"]),
            frozenset(r["versioned"]),
            frozenset(r["stored"]),
            r["root"],
            r["pre_v4"],
            r["sends"],
        )
        for r in rows
    ]


async def _delete_writes_of(cur: AsyncCursor[Any], rows: Sequence[DictRow]) -> None:
    if rows:
        await cur.execute(
            DELETE_WRITES_OF_SQL,
            (
                [r["thread_id"] for r in rows],
                [r["checkpoint_ns"] for r in rows],
                [r["checkpoint_id"] for r in rows],
            ),
        )
