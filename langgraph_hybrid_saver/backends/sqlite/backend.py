"""`SqliteBackend`: the DurableBackend in one SQLite file (aiosqlite):
connections and transactions, setup, the reads and the deletes; `apply`
writes through `apply.py`, whole checkpoints through `official_rows.py`."""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import aiosqlite
from langgraph.checkpoint.serde.base import SerializerProtocol, maybe_add_typed_methods
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.backends._apply import (
    batch_threads,
    plan_apply,
    refuse_delta_threads,
)
from langgraph_hybrid_saver.backends._prune import ChainRow, PrunedKey, doomed_checkpoints
from langgraph_hybrid_saver.backends._sql import get_clause
from langgraph_hybrid_saver.backends.sqlite.apply import write_run
from langgraph_hybrid_saver.backends.sqlite.official_rows import OfficialRows
from langgraph_hybrid_saver.backends.sqlite.read import chain_rows, load, parse_metadata, read_blobs
from langgraph_hybrid_saver.backends.sqlite.sql import (
    CHECKPOINT_INDEX_SQL,
    DELETE_BLOB_SQL,
    DELETE_CHECKPOINT_SQL,
    DELETE_RUNS_SQL,
    DELETE_THREAD_SQL,
    DELETE_WRITES_OF_SQL,
    DELTA_THREADS_SQL,
    MIGRATIONS,
    SELECT_SQL,
    SELECT_WATERMARK_SQL,
    SELECT_WATERMARKS_SQL,
    SET_WATERMARK_SQL,
    THREAD_BLOBS_SQL,
    THREAD_DOCS_SQL,
    THREAD_IDS_SQL,
    UNLINK_PRUNED_PARENTS_SQL,
)
from langgraph_hybrid_saver.backends.sqlite.url import path_from_url
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    json_contains,
    list_conditions,
)
from langgraph_hybrid_saver.errors import ConfigError, DurableStoreError, ServerUnreachableError
from langgraph_hybrid_saver.outbox.ops import Op

SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class SqliteBackend:
    """Durable store in one SQLite file (aiosqlite), the official tables plus ours.

    Args:
        path: Database file (created if missing; its directory must exist).
        serde: The saver's serializer: whole checkpoints are stored serialized,
            as the official saver stores them. Defaults to `JsonPlusSerializer`,
            the default of every saver.
        busy_timeout_ms: How long a statement waits for another writer (the
            reconciler, another process) before failing.
        synchronous: "FULL" (default: a commit survives a power loss) or
            "NORMAL" (survives a process crash only; faster).
    """

    def __init__(
        self,
        path: str,
        *,
        serde: SerializerProtocol | None = None,
        busy_timeout_ms: int = 10_000,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ConfigError(f"synchronous={synchronous!r}: use one of {SYNCHRONOUS_MODES}")
        self.path = path
        self.where = f"SQLite file {path}"
        self.serde = maybe_add_typed_methods(serde or JsonPlusSerializer())
        self.official = OfficialRows(self.serde, path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous.upper()
        # Two connections: WAL lets reads run beside an open write transaction.
        # Each one runs one transaction at a time (aiosqlite has no per-task
        # transactions), hence a lock each.
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    stats = None  # no usage counters: a local file costs nothing per request

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteBackend:
        """A backend for `sqlite:///relative.db` or `sqlite:////absolute.db`."""
        return cls(path_from_url(url), **options)

    async def open(self) -> None:
        try:
            self._writer = await self._connect()
            mode = await _one(self._writer, "PRAGMA journal_mode=WAL")
            self._reader = await self._connect()
        except sqlite3.Error as e:
            await self.close()
            raise ServerUnreachableError(
                f"SQLite database {self.path!r} cannot be opened ({type(e).__name__}: {e}): "
                "check that its directory exists and is writable and that it is a database"
            ) from e
        if str(mode).lower() != "wal":
            await self.close()
            raise ConfigError(
                f"SQLite database {self.path!r} cannot use WAL mode (journal_mode={mode!r}); "
                "put it on a local filesystem"
            )

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions, ours are explicit.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            await conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def setup(self) -> None:
        async with self._writing() as conn:
            await conn.execute(MIGRATIONS[0])
            version = await _one(conn, "SELECT max(v) FROM hybrid_saver_migrations")
            for v in range((-1 if version is None else int(version)) + 1, len(MIGRATIONS)):
                try:
                    await conn.execute(MIGRATIONS[v])
                except sqlite3.OperationalError as e:
                    # SQLite has no ADD COLUMN IF NOT EXISTS.
                    if "duplicate column name" not in str(e):
                        raise
                await conn.execute("INSERT INTO hybrid_saver_migrations (v) VALUES (?)", (v,))

    async def apply(self, ops: Sequence[Op]) -> int:
        if not ops:
            return 0
        threads = json.dumps(batch_threads(ops))
        async with self._writing() as conn:
            rows = await conn.execute_fetchall(SELECT_WATERMARKS_SQL, (threads,))
            plan = plan_apply(ops, dict(cast(Any, rows)))
            for run, delete in plan.runs:
                await write_run(conn, run, self.official)
                if delete is not None:
                    for sql in DELETE_THREAD_SQL:
                        await conn.execute(sql, (delete.thread_id,))
            if plan.watermarks:
                await conn.executemany(SET_WATERMARK_SQL, list(plan.watermarks.items()))
        return plan.applied

    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        where, args = get_clause(thread_id, checkpoint_ns, checkpoint_id, "?")
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(SELECT_SQL + where, args))
            return await load(conn, rows[0], self.official) if rows else None

    async def watermark(self, thread_id: str) -> str:
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(SELECT_WATERMARK_SQL, (thread_id,)))
            return str(rows[0][0]) if rows else ""

    async def thread_ids(self, after: str, limit: int) -> builtins.list[str]:
        async with self._reading() as conn:
            rows = await conn.execute_fetchall(THREAD_IDS_SQL, (after, limit))
            return [r[0] for r in rows]

    async def get_blobs(
        self, thread_id: str, checkpoint_ns: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[str, bytes | None]]:
        async with self._reading() as conn:
            return await read_blobs(conn, thread_id, checkpoint_ns, dict(refs))

    async def list(self, query: ListQuery) -> builtins.list[StoredCheckpoint]:
        if query.limit is not None and query.limit <= 0:
            return []
        conditions = list_conditions(query)
        wheres = [f"{column} {op} ?" for column, op, _ in conditions]
        args: builtins.list[Any] = [value for _, _, value in conditions]
        sql = SELECT_SQL + ("WHERE " + " AND ".join(wheres) if wheres else "")
        sql += " ORDER BY checkpoint_id DESC"
        # jsonb `@>` has no SQLite equivalent: filter in Python, so the limit
        # can only go into SQL when there is no filter.
        if query.limit is not None and query.filter is None:
            sql += " LIMIT ?"
            args.append(query.limit)
        picked: builtins.list[sqlite3.Row] = []
        async with self._reading() as conn:
            async with conn.execute(sql, args) as cur:
                async for row in cur:
                    if query.filter is not None and not json_contains(
                        parse_metadata(row[4]), query.filter
                    ):
                        continue
                    picked.append(row)
                    if query.limit is not None and len(picked) >= query.limit:
                        break
            return [await load(conn, row, self.official) for row in picked]

    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[PrunedKey]:
        async with self._writing() as conn:
            gone = list(await conn.execute_fetchall(DELETE_RUNS_SQL, (json.dumps(list(run_ids)),)))
            if not gone:
                return []
            await conn.executemany(DELETE_WRITES_OF_SQL, gone)
            await _delete_orphan_blobs(conn, sorted({r[0] for r in gone}))
        return [(t, ns, cid, True) for t, ns, cid in gone]

    async def checkpoint_index(
        self, thread_ids: Sequence[str]
    ) -> builtins.list[tuple[str, str, str, bool]]:
        async with self._reading() as conn:
            arg = json.dumps(builtins.list(thread_ids))
            rows = await conn.execute_fetchall(CHECKPOINT_INDEX_SQL, (arg,))
        return [(t, ns, cid, bool(delta)) for t, ns, cid, delta in rows]

    async def chain_index(self, thread_ids: Sequence[str]) -> builtins.list[ChainRow]:
        async with self._reading() as conn:
            return await chain_rows(conn, thread_ids, self.official)

    async def prune_keep_latest(
        self, thread_ids: Sequence[str], keep: int = 1, *, delta_chains: bool = False
    ) -> builtins.list[PrunedKey]:
        threads = sorted(set(thread_ids))
        # BEGIN IMMEDIATE holds off a concurrent reconcile, as in `apply`.
        async with self._writing() as conn:
            rows = await conn.execute_fetchall(DELTA_THREADS_SQL, (json.dumps(threads),))
            delta = sorted(r[0] for r in rows)
            if not delta_chains:
                refuse_delta_threads(delta)
            doomed = doomed_checkpoints(await chain_rows(conn, threads, self.official), keep)
            await conn.executemany(DELETE_CHECKPOINT_SQL, doomed)
            await conn.executemany(DELETE_WRITES_OF_SQL, doomed)
            unlinked = await conn.execute_fetchall(
                UNLINK_PRUNED_PARENTS_SQL, (json.dumps(threads),)
            )
            await _delete_orphan_blobs(conn, threads)
        return [(*key, True) for key in doomed] + [(t, ns, cid, False) for t, ns, cid in unlinked]

    async def server_version(self) -> str:
        """The library's version, e.g. "SQLite 3.40.1" (for `setup` and `status`)."""
        return f"SQLite {sqlite3.sqlite_version}"

    async def count_rows(self, thread_id: str | None = None) -> dict[str, int]:
        """Rows per table, of one thread or of all (for `status` and tests)."""
        where, args = ("", ()) if thread_id is None else (" WHERE thread_id = ?", (thread_id,))
        async with self._reading() as conn:
            return {
                table: int(await _one(conn, f"SELECT count(*) FROM {table}{where}", args))
                for table in ("checkpoints", "hybrid_saver_blobs", "writes")
            }

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # --- transactions ---------------------------------------------------------

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction. IMMEDIATE takes the write lock up front, so
        writers queue on busy_timeout instead of failing on upgrade."""
        async with self._write_lock:
            conn = self._open(self._writer)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: every query of one get/list sees one snapshot."""
        async with self._read_lock:
            conn = self._open(self._reader)
            await conn.execute("BEGIN")
            try:
                yield conn
            finally:
                await conn.rollback()

    def _open(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise DurableStoreError(
                f"the SQLite backend for {self.path!r} is not open: call `await backend.open()`"
            )
        return conn


async def _one(conn: aiosqlite.Connection, sql: str, args: Sequence[Any] = ()) -> Any:
    rows = list(await conn.execute_fetchall(sql, args))
    return rows[0][0]


async def _delete_orphan_blobs(conn: aiosqlite.Connection, threads: Iterable[str]) -> None:
    """Delete the threads' blobs that no remaining checkpoint refers to.

    Compared in Python: `str(version)` is how blobs were keyed, and SQLite's
    text form of a JSON number can differ from Python's.
    """
    arg = (json.dumps(builtins.list(threads)),)
    keep = {
        (t, ns, ch, str(v))
        for t, ns, doc in await conn.execute_fetchall(THREAD_DOCS_SQL, arg)
        for ch, v in (json.loads(doc).get("channel_versions") or {}).items()
    }
    stored = await conn.execute_fetchall(THREAD_BLOBS_SQL, arg)
    await conn.executemany(DELETE_BLOB_SQL, [b for b in stored if tuple(b) not in keep])
