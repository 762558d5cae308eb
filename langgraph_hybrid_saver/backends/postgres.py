"""PostgreSQL durable store, in the tables of `langgraph-checkpoint-postgres`.

The official MIGRATIONS are applied as they are (same `checkpoint_migrations`
versions), so `PostgresSaver` reads what we reconcile and we read what it
wrote. Our one extra table holds the per-thread watermark.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import shlex
from collections.abc import Sequence
from typing import Any, cast

from langgraph.checkpoint.postgres.base import MIGRATIONS as OFFICIAL_MIGRATIONS
from psycopg import AsyncConnection, AsyncCursor, OperationalError
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.backends._apply import (
    batch_threads,
    plan_apply,
    refuse_delta_threads,
)
from langgraph_hybrid_saver.core import (
    DeleteThreadOp,
    ListQuery,
    Op,
    PutOp,
    StoredCheckpoint,
    WriteRow,
    list_conditions,
)
from langgraph_hybrid_saver.errors import (
    ConfigError,
    DurableStoreError,
    HybridSaverError,
    ServerUnreachableError,
)

# Append-only; the index is the version (as in checkpoint-postgres).
MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS hybrid_saver_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_threads (
    thread_id TEXT PRIMARY KEY,
    applied_seq TEXT NOT NULL DEFAULT ''
)""",
    # Values over ~2 KB are compressed by TOAST: inserting the 140 KB state's
    # 132 KB blob takes 2.8 ms with pglz (the default, which then stores it
    # uncompressed), 0.9 ms with lz4, 0.78x the size
    # (benchmarks/results/experiments/toast.md). New values only, no
    # rewrite; readers (PostgresSaver too) see no difference. A server older
    # than 14 or built without lz4 keeps pglz.
    """DO $$ BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        ALTER TABLE checkpoint_blobs ALTER COLUMN blob SET COMPRESSION lz4;
        ALTER TABLE checkpoint_writes ALTER COLUMN blob SET COMPRESSION lz4;
    END IF;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$""",
]

# One setup at a time per schema. Taken with try-and-sleep, never a blocking
# wait: the official migrations run CREATE INDEX CONCURRENTLY, which waits for
# every open transaction, including a session blocked on the lock.
SETUP_LOCK_SQL = "SELECT pg_try_advisory_lock(8842001, hashtext(current_schema())) AS ok"
SETUP_UNLOCK_SQL = "SELECT pg_advisory_unlock(8842001, hashtext(current_schema()))"

SELECT_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata,
    (
        SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        FROM jsonb_each_text(checkpoint -> 'channel_versions')
        INNER JOIN checkpoint_blobs bl
            ON bl.thread_id = checkpoints.thread_id
            AND bl.checkpoint_ns = checkpoints.checkpoint_ns
            AND bl.channel = jsonb_each_text.key
            AND bl.version = jsonb_each_text.value
    ) AS channel_values,
    (
        SELECT array_agg(array[cw.task_id::bytea, cw.channel::bytea, cw.type::bytea,
            cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        FROM checkpoint_writes cw
        WHERE cw.thread_id = checkpoints.thread_id
            AND cw.checkpoint_ns = checkpoints.checkpoint_ns
            AND cw.checkpoint_id = checkpoints.checkpoint_id
    ) AS pending_writes
FROM checkpoints
"""

SELECT_BLOBS_SQL = """
SELECT channel, type, blob FROM checkpoint_blobs
WHERE thread_id = %s AND checkpoint_ns = %s
  AND (channel, version) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""

# Taken in thread order by every writer, so concurrent batches cannot deadlock.
# Creates the threads' watermark rows if needed and locks them (in thread_id
# order, so concurrent appliers cannot deadlock), returning the watermarks:
# one round trip. The no-op update is what takes the lock on existing rows.
LOCK_THREADS_SQL = """
INSERT INTO hybrid_saver_threads (thread_id)
SELECT unnest(%s::text[]) ORDER BY 1
ON CONFLICT (thread_id) DO UPDATE SET thread_id = EXCLUDED.thread_id
RETURNING thread_id, applied_seq,
    to_regclass('pg_temp.hybrid_saver_stage') IS NOT NULL AS staged
"""
SELECT_WATERMARK_SQL = "SELECT applied_seq FROM hybrid_saver_threads WHERE thread_id = %s"

SET_WATERMARKS_SQL = """
UPDATE hybrid_saver_threads t SET applied_seq = v.seq
FROM unnest(%s::text[], %s::text[]) AS v(thread_id, seq)
WHERE t.thread_id = v.thread_id
"""

# A batch's rows reach the official tables through one binary COPY into a
# temporary staging table and one statement per run (STAGED_SQL): psycopg's
# executemany spends ~11 us of client CPU per row, a binary COPY under 1 us
# (benchmarks/results/experiments/bulk.md), CPU an in-process reconciler
# takes from the application's event loop. The table is created by the first
# batch of a session that lacks it (the watermark lock says whether it
# exists: a pooler or DISCARD may hand us a session without it); ON COMMIT
# DELETE ROWS empties it with the transaction. Named with its schema
# (pg_temp) wherever used, so no table of the search path can stand in.
# `seg` is the run of `apply_order` a row belongs to, `kind` its table:
# b(lob), c(heckpoint), w(rite, insert-once), u(pserted write).
STAGE_SQL = """
CREATE TEMP TABLE hybrid_saver_stage (
    seg int, kind text, thread_id text, checkpoint_ns text, checkpoint_id text,
    parent_checkpoint_id text, checkpoint text, metadata text, channel text, version text,
    task_id text, task_path text, idx int, type text, blob bytea
) ON COMMIT DELETE ROWS
"""
STAGE_TYPES = ["int4", "text", "text", "text", "text", "text", "text", "text", "text", "text",
               "text", "text", "int4", "text", "bytea"]  # fmt: skip
TEMP_PRIVILEGE_SQL = """
SELECT has_database_privilege(current_database(), 'TEMP') AS ok, current_database() AS db,
    current_user AS usr
"""
COPY_STAGE_SQL = "COPY pg_temp.hybrid_saver_stage FROM STDIN (FORMAT BINARY)"

# One segment's rows into the three tables, one statement (one statement
# per kind cost a round of psycopg's pipeline machinery each). The kinds
# write disjoint rows (`_staged_rows` drops an insert-once write whose key an
# upsert of the same run overwrites), so the sub-statements, which run on one
# snapshot, cannot meet.
STAGED_SQL = """
WITH b AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM pg_temp.hybrid_saver_stage
    WHERE seg = %(seg)s AND kind = 'b'
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), c AS (
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint::jsonb,
        metadata::jsonb
    FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'c'
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
), w AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
    FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'w'
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
)
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'u'
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
"""

SERVER_VERSION_SQL = "SHOW server_version"

DELETE_THREAD_SQL = (
    "DELETE FROM checkpoints WHERE thread_id = %s",
    "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
    "DELETE FROM checkpoint_writes WHERE thread_id = %s",
)

DELETE_RUNS_SQL = """
DELETE FROM checkpoints WHERE metadata ->> 'run_id' = ANY(%s)
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
DELETE_WRITES_OF_SQL = """
DELETE FROM checkpoint_writes w
USING unnest(%s::text[], %s::text[], %s::text[]) AS d(thread_id, checkpoint_ns, checkpoint_id)
WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
  AND w.checkpoint_id = d.checkpoint_id
"""
# Blobs no remaining checkpoint of the thread refers to.
DELETE_ORPHAN_BLOBS_SQL = """
DELETE FROM checkpoint_blobs b
WHERE b.thread_id = ANY(%s) AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
)
"""
DELTA_THREADS_SQL = """
SELECT DISTINCT thread_id FROM checkpoints
WHERE thread_id = ANY(%s) AND metadata ? 'counters_since_delta_snapshot'
"""
PRUNE_OLDER_SQL = """
DELETE FROM checkpoints c
WHERE c.thread_id = ANY(%s) AND c.checkpoint_id <> (
    SELECT max(k.checkpoint_id) FROM checkpoints k
    WHERE k.thread_id = c.thread_id AND k.checkpoint_ns = c.checkpoint_ns
)
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
# A kept checkpoint whose parent was pruned becomes a root, as in PostgresSaver.
UNLINK_PRUNED_PARENTS_SQL = """
UPDATE checkpoints c SET parent_checkpoint_id = NULL
WHERE c.thread_id = ANY(%s) AND c.parent_checkpoint_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM checkpoints p
    WHERE p.thread_id = c.thread_id AND p.checkpoint_ns = c.checkpoint_ns
      AND p.checkpoint_id = c.parent_checkpoint_id
)
"""


def _stored(row: DictRow) -> StoredCheckpoint:
    blobs = {ch.decode(): (t.decode(), b) for ch, t, b in row["channel_values"] or []}
    writes = [
        WriteRow(tid.decode(), int(idx), path.decode(), ch.decode(), t.decode(), b)
        for tid, ch, t, b, path, idx in row["pending_writes"] or []
    ]
    return StoredCheckpoint(
        row["thread_id"],
        row["checkpoint_ns"],
        row["checkpoint_id"],
        row["parent_checkpoint_id"],
        row["checkpoint"],
        row["metadata"],
        blobs,
        writes,
    )


class PostgresBackend:
    """Durable store on PostgreSQL (psycopg 3 async, psycopg_pool)."""

    stats = None  # no usage counters: PostgreSQL does not bill per request

    def __init__(
        self, pool: AsyncConnectionPool[Any], *, owns_pool: bool = False, where: str = ""
    ) -> None:
        self.pool = pool
        self.owns_pool = owns_pool
        self.where = where or "PostgreSQL"

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
            if refused := _refusal(e, self.where):
                error, message = refused
                raise error(message) from e
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
        # Four round trips: BEGIN and the lock (whose watermarks decide what
        # is written; one more where the session lacks the staging table);
        # the COPY (two); then, in a pipeline, each run's statement and
        # delete, the watermarks and the COMMIT. A delete splits the
        # batch: what was queued before it lands first. On an error the
        # pool's connection context rolls back.
        async with self.pool.connection() as conn:
            return await _apply_staged(conn, ops)

    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        if checkpoint_id:
            where = "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
            args: tuple[Any, ...] = (thread_id, checkpoint_ns, checkpoint_id)
        else:
            where = (
                "WHERE thread_id = %s AND checkpoint_ns = %s ORDER BY checkpoint_id DESC LIMIT 1"
            )
            args = (thread_id, checkpoint_ns)
        rows = await self._fetch(SELECT_SQL + where, args)
        return _stored(rows[0]) if rows else None

    async def watermark(self, thread_id: str) -> str:
        rows = await self._fetch(SELECT_WATERMARK_SQL, (thread_id,))
        return str(rows[0]["applied_seq"]) if rows else ""

    async def _fetch(self, sql: str, args: Sequence[Any]) -> builtins.list[DictRow]:
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
        return [_stored(r) for r in await self._fetch(sql, args)]

    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[str]:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(DELETE_RUNS_SQL, (list(run_ids),))
            gone = cast(builtins.list[DictRow], await cur.fetchall())
            if not gone:
                return []
            await _delete_writes_of(cur, gone)
            threads = sorted({r["thread_id"] for r in gone})
            await cur.execute(DELETE_ORPHAN_BLOBS_SQL, (threads,))
        return threads

    async def prune_keep_latest(self, thread_ids: Sequence[str]) -> None:
        threads = sorted(set(thread_ids))
        async with self.pool.connection() as conn, conn.transaction():
            # Lock the threads against a concurrent reconcile, like `apply`.
            cur = await conn.execute(LOCK_THREADS_SQL, (threads,))
            await cur.execute(DELTA_THREADS_SQL, (threads,))
            refuse_delta_threads(cast(DictRow, r)["thread_id"] for r in await cur.fetchall())
            await cur.execute(PRUNE_OLDER_SQL, (threads,))
            await _delete_writes_of(cur, cast(builtins.list[DictRow], await cur.fetchall()))
            await cur.execute(UNLINK_PRUNED_PARENTS_SQL, (threads,))
            await cur.execute(DELETE_ORPHAN_BLOBS_SQL, (threads,))

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


# What a server that answered says when it will not take the connection: a
# config problem (a database or role it does not have, pg_hba.conf), not an
# outage: ConfigError. Wrong credentials stay ServerUnreachableError, as for
# Redis (the server refused us; exit code 3 in the CLI). libpq reports a
# failed connection without its SQLSTATE (the code in each row below), so
# the server's (English) message decides; a code alone, where an error
# carries one, gets its generic message; a localized message without a code
# reads as unreachable.
_REFUSALS: list[tuple[str, re.Pattern[str], str]] = [
    (
        "3D000",
        re.compile(r'database "(?P<name>[^"]*)" does not exist'),
        "{where}: database {name!r} does not exist: create it (createdb {arg}) or fix durable_url",
    ),
    (
        "28000",
        re.compile(r'role "(?P<name>[^"]*)" does not exist'),
        "{where}: role {name!r} does not exist: create it (createuser {arg}) or fix the user "
        "in durable_url",
    ),
    (
        "28P01",
        re.compile(r'password authentication failed for user "(?P<name>[^"]*)"'),
        "{where} refused the credentials: password authentication failed for user {name!r}: "
        "fix the user/password in durable_url",
    ),
    (  # peer, ident, cert, ...: the method pg_hba.conf chose for this user and host
        "28000",
        re.compile(r'(?P<how>\w+) authentication failed for user "(?P<name>[^"]*)"'),
        "{where}: {how} authentication failed for user {name!r}: connect as a user that "
        "method accepts or fix the server's pg_hba.conf",
    ),
    (
        "28000",
        re.compile(r'no pg_hba\.conf entry for host "[^"]*", user "(?P<name>[^"]*)"'),
        "{where} has no pg_hba.conf entry that lets user {name!r} connect from this host: "
        "allow it in the server's pg_hba.conf or fix durable_url",
    ),
    (
        "42501",
        re.compile(r'permission denied for database "(?P<name>[^"]*)"'),
        "{where}: the user may not connect to database {name!r} (no CONNECT privilege): "
        "grant it (GRANT CONNECT ON DATABASE) or fix durable_url",
    ),
]
_REFUSED_CODES = {
    "3D000": "{where}: the database in durable_url does not exist: create it or fix durable_url",
    "28000": "{where} refused the user in durable_url: fix it (or the server's pg_hba.conf)",
    "28P01": "{where} refused the credentials (password authentication failed): fix the "
    "user/password in durable_url",
    "42501": "{where}: the user in durable_url may not connect to its database: grant it "
    "CONNECT or fix durable_url",
}


def _refusal(e: BaseException, where: str) -> tuple[type[HybridSaverError], str] | None:
    """The error class and message for a connection the server refused for
    a reason in the URL (database, user, password, pg_hba.conf), else None.
    Names come from the server's message, which never holds the password."""
    text = str(e)
    where = f"PostgreSQL at {where}"
    message = None
    code = getattr(e, "sqlstate", None) or ""
    for row_code, pattern, template in _REFUSALS:
        if m := pattern.search(text):
            fields = m.groupdict()
            message = template.format(where=where, arg=shlex.quote(fields["name"]), **fields)
            code = row_code
            break
    else:
        if code in _REFUSED_CODES:
            message = _REFUSED_CODES[code].format(where=where)
    if message is None:
        return None
    return (ServerUnreachableError if code == "28P01" else ConfigError), message


async def _migrate(conn: AsyncConnection[Any], migrations: Sequence[str], table: str) -> None:
    await conn.execute(migrations[0])
    cur = await conn.execute(f"SELECT v FROM {table} ORDER BY v DESC LIMIT 1")
    row = await cur.fetchone()
    version = -1 if row is None else row["v"]
    for v in range(version + 1, len(migrations)):
        await conn.execute(migrations[v])
        await conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (v,))


async def _apply_staged(conn: AsyncConnection[Any], ops: Sequence[Op]) -> int:
    cur: AsyncCursor[Any] = conn.cursor()
    async with conn.pipeline():
        await cur.execute("BEGIN")
        await cur.execute(LOCK_THREADS_SQL, (batch_threads(ops),))
        rows = cast(builtins.list[DictRow], await cur.fetchall())
    if not rows[0]["staged"]:
        await cur.execute(STAGE_SQL)
    plan = plan_apply(ops, {r["thread_id"]: r["applied_seq"] for r in rows})
    staged = [row for seg, (run, _) in enumerate(plan.runs) for row in _staged_rows(seg, run)]
    if staged:
        async with cur.copy(COPY_STAGE_SQL) as copy:
            copy.set_types(STAGE_TYPES)
            for row in staged:
                await copy.write_row(row)
    async with conn.pipeline():
        for seg, (run, delete) in enumerate(plan.runs):
            if run:
                await cur.execute(STAGED_SQL, {"seg": seg})
            if delete is not None:
                for sql in DELETE_THREAD_SQL:
                    await cur.execute(sql, (delete.thread_id,))
        if plan.watermarks:
            moved = plan.watermarks
            await cur.execute(SET_WATERMARKS_SQL, (list(moved), list(moved.values())))
        await cur.execute("COMMIT")
    return plan.applied


def _staged_rows(seg: int, ops: Sequence[Op]) -> list[tuple[Any, ...]]:
    """One run's rows in the staging table's column order, one row per key:
    one statement cannot update a row twice, so where applying the
    entries in order would have written a key twice, the row that would
    have stayed: the first of an insert-once key (blobs, writes), the last
    of an upserted one (checkpoints, special writes), an upsert over an
    insert-once write of the same key."""
    blobs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    checkpoints: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    writes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    upserts: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for op in ops:
        if isinstance(op, PutOp):
            r = op.row
            for b in op.blobs:
                key = (r.thread_id, r.checkpoint_ns, b.channel, b.version)
                blobs.setdefault(key, (seg, "b", r.thread_id, r.checkpoint_ns, None, None, None,
                                       None, b.channel, b.version, None, None, None, b.type,
                                       b.blob))  # fmt: skip
            checkpoints[(r.thread_id, r.checkpoint_ns, r.checkpoint_id)] = (
                seg, "c", r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id,
                r.checkpoint, r.metadata, None, None, None, None, None, None, None,
            )  # fmt: skip
        elif not isinstance(op, DeleteThreadOp):
            kind = "u" if op.upsert else "w"
            for t, ns, cid, task, path, idx, channel, type_, blob in op.params():
                row = (seg, kind, t, ns, cid, None, None, None, channel, None, task, path, idx,
                       type_, blob)  # fmt: skip
                if op.upsert:
                    upserts[(t, ns, cid, task, idx)] = row
                else:
                    writes.setdefault((t, ns, cid, task, idx), row)
    writes = {key: row for key, row in writes.items() if key not in upserts}
    return [*blobs.values(), *checkpoints.values(), *writes.values(), *upserts.values()]


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


__all__ = ["OperationalError", "PostgresBackend"]
