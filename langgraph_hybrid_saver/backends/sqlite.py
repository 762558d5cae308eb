"""SQLite durable store, in the tables of `langgraph-checkpoint-sqlite`.

The embedded default for a laptop or CI: one database file, shared by the
saver and its reconciler (in-process or `python -m langgraph_hybrid_saver
reconcile` on the same machine). Not for several hosts: SQLite's locking
needs a local filesystem, so use PostgreSQL once workers run on more than one
machine.

URLs: `sqlite:///relative/path.db` (relative to the working directory when the
backend is created) or `sqlite:////absolute/path.db`. `sqlite:///:memory:` is
refused: an in-memory database lives inside one connection, and the saver, the
reconciler and other processes must all see the same file.

Layout. The official `checkpoints` and `writes` tables, created exactly as
`AsyncSqliteSaver.setup()` creates them, hold complete rows: `checkpoints.type`
and `checkpoints.checkpoint` are the WHOLE checkpoint serialized with the serde
(so the backend needs the saver's serde: `open_backend(url, serde=...)`), and
`metadata` is UTF-8 JSON, which the official `list` filters with
`json_extract`. `SqliteSaver`/`AsyncSqliteSaver` therefore read what we
reconciled. Our own additions:

* `checkpoints.hybrid_checkpoint` (TEXT, nullable): the checkpoint as our core
  stores it (JSON, inline primitive values only), so our reads never decode
  the whole checkpoint. It is NULL on rows the official saver wrote, and an
  official `INSERT OR REPLACE` of a row resets it to NULL: such rows are read by
  decoding the whole checkpoint.
* `hybrid_saver_blobs`: channel values once per (thread, ns, channel,
  version), as `checkpoint_blobs` in PostgreSQL. An outbox entry only carries
  the blobs of channels that changed; the unchanged ones come from here when
  the whole checkpoint is assembled.
* `hybrid_saver_threads`: the per-thread watermark (see `backends/__init__`).

We also read what the official saver wrote, and a thread it started can be
continued: when a reconciled checkpoint refers to channel versions that are
not in `hybrid_saver_blobs` and its parent row was written by the official
saver, the values are taken from that parent and stored as blobs.

Durability: WAL journal with `synchronous=FULL` by default. The reconciler
deletes an outbox entry from Redis as soon as the transaction that applied it
commits, so a commit must survive a power loss, not only a process crash (which
`NORMAL` already survives in WAL mode). Since the reconciler applies hundreds of
entries per transaction, the extra fsync per commit is cheap; pass
`synchronous="NORMAL"` to trade the last commits before an OS crash for
latency, e.g. in CI.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aiosqlite
import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.serde.base import SerializerProtocol, maybe_add_typed_methods
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.backends import redact
from langgraph_hybrid_saver.backends._apply import (
    batch_threads,
    plan_apply,
    refuse_delta_threads,
)
from langgraph_hybrid_saver.core import (
    BlobRow,
    ListQuery,
    Op,
    PutOp,
    StoredCheckpoint,
    WriteRow,
    WritesOp,
    encode_put,
    json_contains,
    list_conditions,
    to_tuple,
)
from langgraph_hybrid_saver.errors import (
    ConfigError,
    CorruptDataError,
    DurableStoreError,
    ServerUnreachableError,
)

SYNCHRONOUS_MODES = ("FULL", "NORMAL")

BlobKey = tuple[str, str, str, str]  # thread_id, checkpoint_ns, channel, version

# Append-only; the index is the version. 1-3 are the official tables exactly as
# `AsyncSqliteSaver.setup()` (langgraph-checkpoint-sqlite 3.x) creates them, so
# both savers can share a file whichever set it up first.
MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS hybrid_saver_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
)""",
    """CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
)""",
    # A `writes` table made by an official saver older than `task_path`.
    "ALTER TABLE writes ADD COLUMN task_path TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE checkpoints ADD COLUMN hybrid_checkpoint TEXT",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
)""",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_threads (
    thread_id TEXT PRIMARY KEY,
    applied_seq TEXT NOT NULL DEFAULT ''
)""",
]

# The whole serialized checkpoint is only needed for rows the official saver
# wrote (no `hybrid_checkpoint`).
SELECT_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata,
    hybrid_checkpoint,
    CASE WHEN hybrid_checkpoint IS NULL THEN type END,
    CASE WHEN hybrid_checkpoint IS NULL THEN checkpoint END
FROM checkpoints
"""
# ? 1: JSON array of [thread_id, checkpoint_ns, channel, version]. CROSS JOIN
# keeps json_each the outer loop, so each element is one primary-key search;
# with a plain JOIN the planner scans every blob of the thread (0.7 ms at
# 1,000 blobs, growing with the thread, against 10 µs).
SELECT_BLOB_KEYS_SQL = """
SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob FROM json_each(?) AS v
CROSS JOIN hybrid_saver_blobs AS b
    ON b.thread_id = json_extract(v.value, '$[0]')
    AND b.checkpoint_ns = json_extract(v.value, '$[1]')
    AND b.channel = json_extract(v.value, '$[2]')
    AND b.version = json_extract(v.value, '$[3]')
"""
# ? 1: JSON array of [thread_id, checkpoint_ns, checkpoint_id]: which of these
# rows the official saver wrote.
SELECT_OFFICIAL_KEYS_SQL = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id FROM json_each(?) AS v
CROSS JOIN checkpoints AS c
    ON c.thread_id = json_extract(v.value, '$[0]')
    AND c.checkpoint_ns = json_extract(v.value, '$[1]')
    AND c.checkpoint_id = json_extract(v.value, '$[2]')
WHERE c.hybrid_checkpoint IS NULL
"""
SELECT_WRITES_SQL = """
SELECT task_id, idx, task_path, channel, type, value FROM writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
"""
SELECT_OFFICIAL_SQL = """
SELECT type, checkpoint FROM checkpoints
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND hybrid_checkpoint IS NULL
"""

# Parameters that are lists are passed as one JSON array: `IN (SELECT value
# FROM json_each(?))`.
SELECT_WATERMARKS_SQL = """
SELECT thread_id, applied_seq FROM hybrid_saver_threads
WHERE thread_id IN (SELECT value FROM json_each(?))
"""
SELECT_WATERMARK_SQL = "SELECT applied_seq FROM hybrid_saver_threads WHERE thread_id = ?"
SET_WATERMARK_SQL = """
INSERT INTO hybrid_saver_threads (thread_id, applied_seq) VALUES (?, ?)
ON CONFLICT (thread_id) DO UPDATE SET applied_seq = excluded.applied_seq
"""

INSERT_BLOBS_SQL = """
INSERT OR IGNORE INTO hybrid_saver_blobs
    (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES (?, ?, ?, ?, ?, ?)
"""
UPSERT_CHECKPOINT_SQL = """
INSERT OR REPLACE INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
     metadata, hybrid_checkpoint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
# As the official `aput_writes`: special channels overwrite, others insert once.
_WRITES_INSERT = """INTO writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPSERT_WRITES_SQL = "INSERT OR REPLACE " + _WRITES_INSERT
INSERT_WRITES_SQL = "INSERT OR IGNORE " + _WRITES_INSERT

DELETE_THREAD_SQL = (
    "DELETE FROM checkpoints WHERE thread_id = ?",
    "DELETE FROM writes WHERE thread_id = ?",
    "DELETE FROM hybrid_saver_blobs WHERE thread_id = ?",
)

DELETE_RUNS_SQL = """
DELETE FROM checkpoints
WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') IN (SELECT value FROM json_each(?))
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
DELETE_WRITES_OF_SQL = """
DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
"""
THREAD_DOCS_SQL = """
SELECT thread_id, checkpoint_ns, hybrid_checkpoint FROM checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?)) AND hybrid_checkpoint IS NOT NULL
"""
THREAD_BLOBS_SQL = """
SELECT thread_id, checkpoint_ns, channel, version FROM hybrid_saver_blobs
WHERE thread_id IN (SELECT value FROM json_each(?))
"""
DELETE_BLOB_SQL = """
DELETE FROM hybrid_saver_blobs
WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?
"""
DELTA_THREADS_SQL = """
SELECT DISTINCT thread_id FROM checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?))
    AND json_type(CAST(metadata AS TEXT), '$.counters_since_delta_snapshot') IS NOT NULL
"""
PRUNE_OLDER_SQL = """
DELETE FROM checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?)) AND checkpoint_id <> (
    SELECT max(k.checkpoint_id) FROM checkpoints AS k
    WHERE k.thread_id = checkpoints.thread_id AND k.checkpoint_ns = checkpoints.checkpoint_ns
)
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
# A kept checkpoint whose parent was pruned becomes a root, as in PostgresSaver.
UNLINK_PRUNED_PARENTS_SQL = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id IN (SELECT value FROM json_each(?)) AND parent_checkpoint_id IS NOT NULL
    AND NOT EXISTS (
        SELECT 1 FROM checkpoints AS p
        WHERE p.thread_id = checkpoints.thread_id AND p.checkpoint_ns = checkpoints.checkpoint_ns
            AND p.checkpoint_id = checkpoints.parent_checkpoint_id
    )
"""

URL_FORMS = "sqlite:///relative/path.db or sqlite:////absolute/path.db"


def path_from_url(url: str) -> str:
    """The absolute database path of a `sqlite:///...` URL.

    Raises:
        ConfigError: The URL has a host, a query, no file name, or names the
            in-memory database.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"durable_url {redact(url)!r} is not a SQLite URL: use {URL_FORMS}")
    if parts.netloc:
        raise ConfigError(
            f"durable_url {redact(url)!r} names a host, but SQLite is a local file: use {URL_FORMS}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"durable_url {url!r} has options ({parts.query or parts.fragment!r}), which the "
            f"SQLite backend does not take: use {URL_FORMS}"
        )
    path = unquote(parts.path)
    if not path.startswith("/") or path in ("/", "//") or path.endswith("/"):
        raise ConfigError(f"durable_url {url!r} names no database file: use {URL_FORMS}")
    path = path[1:]
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"durable_url {url!r}: an in-memory SQLite database is private to one "
            "connection, but the saver and its reconciler must share the database: "
            f"use a file, {URL_FORMS}"
        )
    return os.path.abspath(path)


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
                await self._write_segment(conn, run)
                if delete is not None:
                    for sql in DELETE_THREAD_SQL:
                        await conn.execute(sql, (delete.thread_id,))
            if plan.watermarks:
                await conn.executemany(SET_WATERMARK_SQL, list(plan.watermarks.items()))
        return plan.applied

    async def _write_segment(self, conn: aiosqlite.Connection, ops: Sequence[Op]) -> None:
        """Rows of consecutive puts and writes, one statement per table (each
        keeps entry order). Every put's row is the whole checkpoint, so it needs
        the values of its unchanged channels too: those no put of the segment
        carries are read in one query for the whole segment."""
        puts = []
        for op in ops:
            if isinstance(op, PutOp):
                doc = json.loads(op.row.checkpoint)
                versions = doc.get("channel_versions") or {}
                puts.append((op, doc, _blob_keys(op.row.thread_id, op.row.checkpoint_ns, versions)))
        known: dict[BlobKey, tuple[str, bytes | None]] = {}
        blobs: list[tuple[Any, ...]] = []
        for op, _, _ in puts:
            r = op.row
            for b in op.blobs:
                key = (r.thread_id, r.checkpoint_ns, b.channel, b.version)
                known[key] = (b.type, b.blob)
                blobs.append((*key, b.type, b.blob))
        known |= await _blob_rows(
            conn, {k: None for _, _, ks in puts for k in ks if k not in known}
        )
        # Values no blob holds are either empty channels or, on a thread the
        # official saver started, values only its parent row holds: ask once
        # which parents outside the segment are official rows.
        ours = {_row_key(op.row.checkpoint_id, op) for op, _, _ in puts}
        parents = {
            parent: None
            for op, doc, keys in puts
            if op.row.parent_checkpoint_id
            and _missing(doc, keys, known)
            and (parent := _row_key(op.row.parent_checkpoint_id, op)) not in ours
        }
        official: set[tuple[str, ...]] = set()
        if parents:
            rows = await conn.execute_fetchall(
                SELECT_OFFICIAL_KEYS_SQL, (json.dumps(list(parents)),)
            )
            official = {tuple(row) for row in rows}
        checkpoints = [
            await self._official_row(conn, op, doc, keys, known, official) for op, doc, keys in puts
        ]
        inserts: list[tuple[Any, ...]] = []
        upserts: list[tuple[Any, ...]] = []
        for w in ops:
            if isinstance(w, WritesOp):
                (upserts if w.upsert else inserts).extend(w.params())
        for sql, params in (
            (INSERT_BLOBS_SQL, blobs),
            (UPSERT_CHECKPOINT_SQL, checkpoints),
            (INSERT_WRITES_SQL, inserts),
            (UPSERT_WRITES_SQL, upserts),
        ):
            if params:
                await conn.executemany(sql, params)

    async def _official_row(
        self,
        conn: aiosqlite.Connection,
        op: PutOp,
        doc: dict[str, Any],
        keys: list[BlobKey],
        known: dict[BlobKey, tuple[str, bytes | None]],
        official: set[tuple[str, ...]],
    ) -> tuple[Any, ...]:
        """The `checkpoints` row of a put: the whole checkpoint, serialized.
        `keys`: its `_blob_keys`; `official`: the parents (thread, ns, id) the
        official saver wrote."""
        r = op.row
        versions: dict[str, Any] = doc.get("channel_versions") or {}
        blobs = {k[2]: known[k] for k in keys if k in known}
        missing = _missing(doc, keys, known)
        if missing and r.parent_checkpoint_id and _row_key(r.parent_checkpoint_id, op) in official:
            adopted = await self._adopt_official_parent(conn, op, versions, missing)
            known.update((k, adopted[k[2]]) for k in keys if k[2] in adopted)
            blobs |= adopted
        stored = StoredCheckpoint(
            r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id, doc, {}, blobs
        )
        spliced = splice_checkpoint(doc, blobs) if type(self.serde) is JsonPlusSerializer else None
        try:
            if spliced is not None:
                type_, data = "msgpack", spliced
            else:
                type_, data = self.serde.dumps_typed(to_tuple(self.serde, stored).checkpoint)
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {r.checkpoint_id!r} of thread {r.thread_id!r}: the SQLite "
                f"backend cannot assemble it with its serializer ({type(e).__name__}: {e}); "
                "give the backend the saver's serde (open_backend(url, serde=...))"
            ) from e
        return (
            r.thread_id,
            r.checkpoint_ns,
            r.checkpoint_id,
            r.parent_checkpoint_id,
            type_,
            data,
            r.metadata.encode(),
            r.checkpoint,
        )

    async def _adopt_official_parent(
        self, conn: aiosqlite.Connection, op: PutOp, versions: dict[str, Any], missing: list[str]
    ) -> dict[str, tuple[str, bytes | None]]:
        """Blobs of unchanged channels whose values only the parent holds, because
        the official saver wrote it (a thread it started, continued by us)."""
        r = op.row
        rows = await conn.execute_fetchall(
            SELECT_OFFICIAL_SQL, (r.thread_id, r.checkpoint_ns, r.parent_checkpoint_id)
        )
        if not rows:
            return {}
        parent = self._decode_official(r.thread_id, str(r.parent_checkpoint_id), *next(iter(rows)))
        values, parent_versions = parent["channel_values"], parent["channel_versions"]
        adopted = []
        for ch in missing:
            if ch in values and str(parent_versions.get(ch)) == str(versions[ch]):
                adopted.append(BlobRow(ch, str(versions[ch]), *self.serde.dumps_typed(values[ch])))
        await conn.executemany(
            INSERT_BLOBS_SQL,
            [(r.thread_id, r.checkpoint_ns, b.channel, b.version, b.type, b.blob) for b in adopted],
        )
        return {b.channel: (b.type, b.blob) for b in adopted}

    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        if checkpoint_id:
            where = "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
            args: tuple[Any, ...] = (thread_id, checkpoint_ns, checkpoint_id)
        else:
            where = "WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1"
            args = (thread_id, checkpoint_ns)
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(SELECT_SQL + where, args))
            return await self._load(conn, rows[0]) if rows else None

    async def watermark(self, thread_id: str) -> str:
        async with self._reading() as conn:
            rows = list(await conn.execute_fetchall(SELECT_WATERMARK_SQL, (thread_id,)))
            return str(rows[0][0]) if rows else ""

    async def get_blobs(
        self, thread_id: str, checkpoint_ns: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[str, bytes | None]]:
        async with self._reading() as conn:
            return await _blobs(conn, thread_id, checkpoint_ns, dict(refs))

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
                        _metadata(row[4]), query.filter
                    ):
                        continue
                    picked.append(row)
                    if query.limit is not None and len(picked) >= query.limit:
                        break
            return [await self._load(conn, row) for row in picked]

    async def _load(self, conn: aiosqlite.Connection, row: Any) -> StoredCheckpoint:
        thread_id, ns, cid, parent, metadata, doc_text, type_, data = row
        if doc_text is None:  # written by the official saver
            doc, blobs = self._split_official(thread_id, ns, cid, type_, data)
        else:
            doc = json.loads(doc_text)
            blobs = await _blobs(conn, thread_id, ns, doc.get("channel_versions") or {})
        writes = [
            WriteRow(task_id, int(idx), task_path, channel, t, value)
            for task_id, idx, task_path, channel, t, value in await conn.execute_fetchall(
                SELECT_WRITES_SQL, (thread_id, ns, cid)
            )
        ]
        return StoredCheckpoint(thread_id, ns, cid, parent, doc, _metadata(metadata), blobs, writes)

    def _decode_official(self, thread_id: str, checkpoint_id: str, type_: str, data: bytes) -> Any:
        try:
            return self.serde.loads_typed((type_, data))
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {checkpoint_id!r} of thread {thread_id!r} in {self.path!r} "
                f"cannot be decoded ({type(e).__name__}: {e}); was it written with "
                "another serde?"
            ) from e

    def _split_official(
        self, thread_id: str, ns: str, cid: str, type_: str, data: bytes
    ) -> tuple[dict[str, Any], dict[str, tuple[str, bytes | None]]]:
        """Our shape (inline document + blobs) of a whole official checkpoint."""
        checkpoint = cast(Checkpoint, self._decode_official(thread_id, cid, type_, data))
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        try:
            row, _, blob_rows = encode_put(
                self.serde, config, checkpoint, {}, checkpoint["channel_versions"]
            )
        except Exception as e:
            raise CorruptDataError(
                f"checkpoint {cid!r} of thread {thread_id!r} in {self.path!r} is not a "
                f"valid checkpoint ({type(e).__name__}: {e})"
            ) from e
        return json.loads(row.checkpoint), {b.channel: (b.type, b.blob) for b in blob_rows}

    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[str]:
        async with self._writing() as conn:
            gone = list(await conn.execute_fetchall(DELETE_RUNS_SQL, (json.dumps(list(run_ids)),)))
            if not gone:
                return []
            await conn.executemany(DELETE_WRITES_OF_SQL, gone)
            threads = sorted({r[0] for r in gone})
            await _delete_orphan_blobs(conn, threads)
        return threads

    async def prune_keep_latest(self, thread_ids: Sequence[str]) -> None:
        threads = json.dumps(sorted(set(thread_ids)))
        # BEGIN IMMEDIATE holds off a concurrent reconcile, as in `apply`.
        async with self._writing() as conn:
            delta = await conn.execute_fetchall(DELTA_THREADS_SQL, (threads,))
            refuse_delta_threads(r[0] for r in delta)
            gone = await conn.execute_fetchall(PRUNE_OLDER_SQL, (threads,))
            await conn.executemany(DELETE_WRITES_OF_SQL, gone)
            await conn.execute(UNLINK_PRUNED_PARENTS_SQL, (threads,))
            await _delete_orphan_blobs(conn, json.loads(threads))

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


def _metadata(raw: bytes | str | None) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(raw)) if raw is not None else {}


def splice_checkpoint(
    doc: dict[str, Any], blobs: dict[str, tuple[str, bytes | None]]
) -> bytes | None:
    """What `JsonPlusSerializer().dumps_typed` writes for the whole checkpoint
    (the document with every channel value), built from the blobs' own msgpack
    bytes instead of decoding and re-encoding each value: msgpack values do not
    depend on what contains them. None when a blob is not plain msgpack, null
    or bytes (the caller then decodes and encodes)."""
    values = {ch: _pack(v) for ch, v in (doc.get("channel_values") or {}).items()}
    for ch, (type_, blob) in blobs.items():
        if type_ == "msgpack" and blob is not None:
            values[ch] = blob
        elif type_ in ("null", "bytes"):
            values[ch] = _pack(None if type_ == "null" else blob or b"")
        elif type_ != "empty":
            return None
    channel_values = _map_header(len(values)) + b"".join(_pack(ch) + v for ch, v in values.items())
    fields = [
        _pack(k) + (channel_values if k == "channel_values" else _pack(v)) for k, v in doc.items()
    ]
    if "channel_values" not in doc:
        fields.append(_pack("channel_values") + channel_values)
    return _map_header(len(fields)) + b"".join(fields)


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _row_key(checkpoint_id: str, op: PutOp) -> tuple[str, str, str]:
    return (op.row.thread_id, op.row.checkpoint_ns, checkpoint_id)


def _missing(doc: dict[str, Any], keys: list[BlobKey], known: dict[BlobKey, Any]) -> list[str]:
    """Channels of a put with a version but neither an inline value nor a known blob."""
    inline = doc.get("channel_values") or {}
    return [key[2] for key in keys if key not in known and key[2] not in inline]


def _blob_keys(thread_id: str, ns: str, versions: dict[str, Any]) -> list[BlobKey]:
    """The blob keys of a checkpoint's channels at its versions."""
    return [(thread_id, ns, ch, str(v)) for ch, v in versions.items()]


async def _blobs(
    conn: aiosqlite.Connection, thread_id: str, ns: str, versions: dict[str, Any]
) -> dict[str, tuple[str, bytes | None]]:
    """The stored values of a checkpoint's channels at its versions."""
    found = await _blob_rows(conn, _blob_keys(thread_id, ns, versions))
    return {key[2]: value for key, value in found.items()}


async def _blob_rows(
    conn: aiosqlite.Connection, keys: Iterable[BlobKey]
) -> dict[BlobKey, tuple[str, bytes | None]]:
    """The stored blobs of these keys, in one query."""
    wanted = list(keys)
    if not wanted:
        return {}
    rows = await conn.execute_fetchall(SELECT_BLOB_KEYS_SQL, (json.dumps(wanted),))
    return {(t, ns, ch, v): (type_, blob) for t, ns, ch, v, type_, blob in rows}


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
