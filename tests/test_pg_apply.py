"""PostgreSQL apply, both ways: a small batch in one statement
(`hybrid_saver_apply`, planned with the watermarks this process last saw),
a large one through a binary COPY into a temporary staging table and one
statement per run. Either way rows repeated within one batch land as if
applied in entry order, a session that lost the staging table (DISCARD ALL,
a pooler) still applies, and a failed batch writes nothing; a watermark
another applier moved makes the batch planned again from the stored one."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from langgraph_hybrid_saver.backends.postgres import PostgresBackend
from langgraph_hybrid_saver.backends.postgres.apply import ONE_STATEMENT_MAX_BYTES, staged_rows
from langgraph_hybrid_saver.core import (
    CheckpointRow,
    StoredCheckpoint,
    WriteRow,
)
from langgraph_hybrid_saver.errors import DurableStoreError
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
    WritesOp,
    seq_key,
)

from .conftest import pg_schema
from .helpers import put_op


def writes(n: int, tid: str, cid: str, upsert: bool, *rows: tuple[str, int, bytes]) -> WritesOp:
    return WritesOp(
        seq_key(f"{n}-0"), tid, "", cid, upsert,
        tuple(WriteRow(task, idx, "~p", "ch", "bytes", blob) for task, idx, blob in rows),
    )  # fmt: skip


@pytest.fixture(params=["one statement", "staged"])
async def backends(
    pg_admin_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[PostgresBackend, PostgresBackend]]:
    """Two stores in schemas of their own, one connection each, applying
    small batches in one statement or, as large ones, staged."""
    with pg_schema(pg_admin_url) as a_url, pg_schema(pg_admin_url) as b_url:
        pair = (
            PostgresBackend.from_url(a_url, max_size=1),
            PostgresBackend.from_url(b_url, max_size=1),
        )
        for b in pair:
            await b.open()
            await b.setup()
            b.marks.one_statement = request.param == "one statement"
        try:
            yield pair
        finally:
            for b in pair:
                await b.close()


async def state(backend: PostgresBackend, tid: str, cids: list[str]) -> list[object]:
    got: list[StoredCheckpoint | None] = [await backend.get(tid, "", c) for c in cids]
    return [
        None
        if s is None
        else (
            s.checkpoint_id,
            s.metadata,
            sorted(s.blobs.items()),
            sorted(s.writes, key=lambda w: (w.task_id, w.idx)),
        )
        for s in got
    ]


async def test_repeated_rows_in_one_batch_land_as_in_entry_order(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    """The same ops as one batch and one batch per op give the same rows:
    a re-put checkpoint keeps its last metadata, an insert-once write its
    first value, an upserted write its last, a blob version its first; a
    delete in the middle splits the batch."""
    one, each = backends
    tid = str(uuid.uuid4())
    ops: list[Op] = [
        put_op(1, tid, "c1", {"a": b"a1"}, metadata={"v": "first"}),
        writes(2, tid, "c1", False, ("t1", 0, b"w-first"), ("t1", 0, b"w-dup-in-call")),
        writes(3, tid, "c1", False, ("t1", 0, b"w-second"), ("t2", 0, b"t2")),
        writes(4, tid, "c1", True, ("t3", -1, b"u-first")),
        writes(5, tid, "c1", True, ("t3", -1, b"u-second")),
        writes(6, tid, "c1", True, ("t2", 0, b"t2-upserted")),
        put_op(7, tid, "c1", {"a": b"a1"}, metadata={"v": "second"}),
        put_op(8, tid, "c2", {"b": b"b8"}, parent="c1"),
    ]
    again = ops[-1]
    assert isinstance(again, PutOp)  # the same blob version with another value: first wins
    ops.append(PutOp(seq_key("9-0"), again.row, (replace(again.blobs[0], blob=b"other"),)))
    ops.append(writes(10, tid, "c1", False, ("t3", -1, b"insert-after-upsert")))  # a no-op
    await one.apply(ops)
    for op in ops:
        await each.apply([op])
    cids = ["c1", "c2"]
    got = await state(one, tid, cids)
    assert got == await state(each, tid, cids)
    c1, c2 = got
    assert c1 is not None and c1[1]["v"] == "second"  # type: ignore[index]
    assert [w.blob for w in c1[3]] == [b"w-first", b"t2-upserted", b"u-second"]  # type: ignore[index]
    assert c2 is not None and c2[2] == [("b", ("bytes", b"b8"))]  # type: ignore[index]

    # A delete in the middle of a batch: what came before it is gone, what
    # came after it stays.
    tid2 = str(uuid.uuid4())
    split: list[Op] = [
        put_op(1, tid2, "c1", {"a": b"x"}),
        DeleteThreadOp(seq_key("2-0"), tid2),
        put_op(3, tid2, "c3", {"a": b"y"}),
    ]
    assert await one.apply(split) == 3
    assert await state(one, tid2, ["c1", "c3"]) == [
        None,
        ("c3", {"step": 3}, [("a", ("bytes", b"y"))], []),
    ]


async def test_a_session_without_the_staging_table_still_applies(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    backend, _ = backends
    tid = str(uuid.uuid4())
    await backend.apply([put_op(1, tid, "c1")])
    async with backend.pool.connection() as conn:  # the pool's only connection
        await conn.execute("DISCARD ALL")  # drops temporary tables
    await backend.apply([put_op(2, tid, "c2")])
    assert [s[0] if s else None for s in await state(backend, tid, ["c1", "c2"])] == ["c1", "c2"]


async def test_a_failed_batch_writes_nothing_and_the_connection_goes_on(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    """A checkpoint whose JSON PostgreSQL rejects fails the batch in the
    INSERT ... SELECT, after the COPY staged every row: nothing lands, the
    watermark stays, and the same connection applies the next batch."""
    backend, _ = backends
    tid = str(uuid.uuid4())
    good = put_op(1, tid, "c1", {"a": b"a"})
    bad_row = CheckpointRow(tid, "", "c2", "c1", "{not json", "{}")
    bad = PutOp(seq_key("2-0"), bad_row, ())
    with pytest.raises(Exception, match="json"):
        await backend.apply([good, bad])
    assert await state(backend, tid, ["c1"]) == [None]
    assert await watermark_rows(backend) == 0
    assert await backend.apply([good]) == 1
    assert [s[0] if s else None for s in await state(backend, tid, ["c1"])] == ["c1"]


async def test_setup_names_a_missing_temporary_table_privilege(pg_admin_url: str) -> None:
    """apply needs TEMPORARY on the database (granted to PUBLIC by default;
    hardened servers revoke it): setup says so, with the GRANT to run, instead
    of every batch failing later in the reconciler."""
    import psycopg

    name = f"hs_notemp_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as admin:
        await admin.execute(f"CREATE ROLE {name} LOGIN")
        await admin.execute(f"CREATE DATABASE {name} OWNER {name}")
        await admin.execute(f"REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC, {name}")
        try:
            url = psycopg.conninfo.make_conninfo(pg_admin_url, user=name, dbname=name)
            backend = PostgresBackend.from_url(url)
            await backend.open()
            try:
                with pytest.raises(DurableStoreError) as e:
                    await backend.setup()
                assert f'GRANT TEMPORARY ON DATABASE "{name}" TO "{name}"' in str(e.value)
                async with backend.pool.connection() as conn:  # nothing was created
                    cur = await conn.execute("SELECT count(*) AS n FROM pg_tables "
                                             "WHERE tablename = 'checkpoints'")  # fmt: skip
                    assert (await cur.fetchone())["n"] == 0
                await admin.execute(f"GRANT TEMPORARY ON DATABASE {name} TO {name}")
                await backend.setup()
                tid = str(uuid.uuid4())
                assert await backend.apply([put_op(1, tid, "c1")]) == 1
            finally:
                await backend.close()
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"DROP ROLE IF EXISTS {name}")


async def staged_table(backend: PostgresBackend) -> bool:
    """Whether the session of the pool's only connection has the staging table."""
    async with backend.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT to_regclass('pg_temp.hybrid_saver_stage') IS NOT NULL AS staged"
        )
        return bool((await cur.fetchone())["staged"])


async def watermark_rows(backend: PostgresBackend) -> int:
    async with backend.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM hybrid_saver_threads")
        return int((await cur.fetchone())["n"])


async def test_a_small_batch_goes_in_one_statement_a_large_one_is_staged(
    pg_admin_url: str,
) -> None:
    with pg_schema(pg_admin_url) as url:
        backend = PostgresBackend.from_url(url, max_size=1)
        await backend.open()
        try:
            await backend.setup()
            tid = str(uuid.uuid4())
            assert await backend.apply([put_op(1, tid, "c1", {"a": b"x" * 100})]) == 1
            assert not await staged_table(backend)
            big = b"y" * (ONE_STATEMENT_MAX_BYTES + 1)
            assert await backend.apply([put_op(2, tid, "c2", {"a": big}, parent="c1")]) == 1
            assert await staged_table(backend)
            async with backend.pool.connection() as conn:  # a new session: no staging table
                await conn.execute("DISCARD ALL")
            assert not await staged_table(backend)
            inline = put_op(3, tid, "c3", parent="c2")  # a large str inline in the document
            doc = json.loads(inline.row.checkpoint)
            doc["channel_values"]["text"] = "z" * (ONE_STATEMENT_MAX_BYTES + 1)
            inline = replace(inline, row=replace(inline.row, checkpoint=json.dumps(doc)))
            assert await backend.apply([inline]) == 1
            assert await staged_table(backend)
            got = await state(backend, tid, ["c1", "c2"])
            assert [g[2] if g else None for g in got] == [  # type: ignore[index]
                [("a", ("bytes", b"x" * 100))],
                [("a", ("bytes", big))],
            ]
        finally:
            await backend.close()


async def test_a_watermark_moved_by_another_applier_is_planned_from_the_store(
    pg_admin_url: str,
) -> None:
    """Two appliers on one store (a shard that changed hands): each applies
    in one statement what it planned with the watermark it last saw; where
    the other moved it since, the batch is planned again from the stored
    watermark, so no entry is applied twice or skipped."""
    with pg_schema(pg_admin_url) as url:
        a = PostgresBackend.from_url(url, max_size=1)
        b = PostgresBackend.from_url(url, max_size=1)
        for backend in (a, b):
            await backend.open()
        try:
            await a.setup()
            tid = str(uuid.uuid4())
            ops: list[Op] = [
                put_op(1, tid, "c1", {"a": b"1"}),
                writes(2, tid, "c1", False, ("t", 0, b"first")),
                writes(3, tid, "c1", True, ("u", -1, b"u3")),
                writes(4, tid, "c1", False, ("t", 0, b"second")),  # a no-op: t/0 is written
                writes(5, tid, "c1", True, ("u", -1, b"u5")),
                put_op(6, tid, "c2", {"a": b"6"}, parent="c1"),
            ]
            assert await a.apply(ops[:3]) == 3  # a: watermark 3
            assert await b.apply(ops[:5]) == 2  # b knew none: 4 and 5 only
            assert await a.apply(ops[3:]) == 1  # a saw 3, the store has 5: 6 only
            assert await b.apply(ops) == 0
            assert a.marks.of([tid]) == b.marks.of([tid]) == {tid: ops[-1].seq}
            c1, c2 = await state(a, tid, ["c1", "c2"])
            assert c1 is not None and c2 is not None
            assert [(w.task_id, w.blob) for w in c1[3]] == [  # type: ignore[index]
                ("t", b"first"),
                ("u", b"u5"),
            ]
            # A thread deleted and written again by the other applier.
            assert await b.apply([DeleteThreadOp(seq_key("7-0"), tid)]) == 1
            assert await a.apply([put_op(8, tid, "c8")]) == 1
            assert await state(a, tid, ["c1", "c8"]) == [None, ("c8", {"step": 8}, [], [])]
        finally:
            for backend in (a, b):
                await backend.close()


async def test_a_schema_without_the_function_applies_staged(pg_admin_url: str) -> None:
    """A store whose migrations predate `hybrid_saver_apply` (setup not run
    since): the batch goes staged, and so does every later one."""
    with pg_schema(pg_admin_url) as url:
        backend = PostgresBackend.from_url(url, max_size=1)
        await backend.open()
        try:
            await backend.setup()
            async with backend.pool.connection() as conn:
                await conn.execute("DROP FUNCTION hybrid_saver_apply(jsonb)")
            tid = str(uuid.uuid4())
            assert await backend.apply([put_op(1, tid, "c1")]) == 1
            assert await staged_table(backend) and not backend.marks.one_statement
            assert await backend.apply([put_op(2, tid, "c2", parent="c1")]) == 1
            got = await state(backend, tid, ["c1", "c2"])
            assert [g[0] if g else None for g in got] == ["c1", "c2"]
        finally:
            await backend.close()


def test_staged_rows_hold_each_key_once() -> None:
    """The staged statement's sub-statements run on one snapshot: a key
    staged twice (as an insert-once and an upserted write, or twice in one
    kind) could meet itself. Pure logic, no server."""
    tid = "t"
    ops: list[Op] = [
        writes(1, tid, "c1", False, ("a", 0, b"1"), ("b", 0, b"1")),
        writes(2, tid, "c1", True, ("a", 0, b"2")),  # overwrites a/0
        writes(3, tid, "c1", False, ("a", 0, b"3"), ("b", 0, b"3")),  # no-ops
        writes(4, tid, "c1", True, ("a", 0, b"4")),
    ]
    first = put_op(5, tid, "c1", {"x": b"1"})
    again = PutOp(  # the same checkpoint and blob version again
        seq_key("6-0"),
        replace(first.row, metadata='{"step": 6}'),
        (replace(first.blobs[0], blob=b"2"),),
    )
    ops += [first, again]
    rows = staged_rows(0, ops)
    keys = [(r[1], r[4], r[10], r[12], r[8], r[9]) for r in rows]  # kind, cid, task, idx, ch, ver
    assert len(keys) == len(set(keys))
    by_kind = {(r[1], r[10] or r[8]): r for r in rows}
    assert by_kind[("u", "a")][14] == b"4" and ("w", "a") not in by_kind
    assert by_kind[("w", "b")][14] == b"1"
    assert by_kind[("b", "x")][14] == b"1"  # first value of a blob version
    assert by_kind[("c", None)][7] == '{"step": 6}'  # last metadata of a checkpoint
