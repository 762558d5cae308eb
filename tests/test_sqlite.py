"""The SQLite backend: interop with the official saver, idempotency, WAL, URLs."""

from __future__ import annotations

import datetime
import json
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import StateGraph

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    MissingExtraError,
    ServerUnreachableError,
    open_backend,
)
from langgraph_hybrid_saver.backends.sqlite import (
    SELECT_BLOB_KEYS_SQL,
    SqliteBackend,
    splice_checkpoint,
)
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    to_tuple,
)
from langgraph_hybrid_saver.encode import (
    encode_put,
    encode_writes,
)
from langgraph_hybrid_saver.outbox.ops import (
    DeleteThreadOp,
    Op,
    PutOp,
    WritesOp,
    seq_key,
)

from .helpers import put_chain

SERDE = JsonPlusSerializer()


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    b = SqliteBackend(str(tmp_path / "b.db"))
    await b.open()
    await b.setup()
    yield b
    await b.close()


def chain_ops(thread_id: str, n: int, first_seq: int = 1) -> list[Op]:
    """Outbox entries of n puts (a blob channel and an inline one) with one write each."""
    ops: list[Op] = []
    parent: str | None = None
    for i in range(n):
        config = generate_config(thread_id)
        if parent:
            config["configurable"]["checkpoint_id"] = parent
        version = f"{i + 1:032}.0"
        cp = generate_checkpoint(
            channel_values={"messages": [f"m{j}" for j in range(i + 1)], "step": i},
            channel_versions={"messages": version, "step": version},
        )
        row, _, blobs = encode_put(
            SERDE,
            config,
            cp,
            generate_metadata(step=i, run_id=f"run-{i % 2}"),
            {"messages": version},
        )
        writes, upsert = encode_writes(SERDE, [("messages", f"w{i}")], f"task-{i}", "~p")
        seq = first_seq + 2 * i
        ops.append(PutOp(seq_key(f"{seq}-0"), row, tuple(blobs)))
        ops.append(
            WritesOp(
                seq_key(f"{seq + 1}-0"), thread_id, "", row.checkpoint_id, upsert, tuple(writes)
            )
        )
        parent = row.checkpoint_id
    return ops


def everything(thread_id: str | None = None) -> ListQuery:
    return ListQuery(thread_id, None, None, None, None, None)


# --- interop with langgraph-checkpoint-sqlite ----------------------------------


async def test_official_saver_reads_what_we_reconciled_and_vice_versa(
    redis_url: str, tmp_path: Path, key_prefix: str
) -> None:
    path = tmp_path / "x.db"
    tid, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    # The official saver writes into the file while this saver runs: a thread
    # index in Redis would not know its thread (README: thread_index).
    async with AsyncHybridSaver.from_conn_string(
        redis_url, f"sqlite:///{path}", key_prefix=key_prefix, thread_index=False
    ) as s:
        await put_chain(s, tid, 3)
        await put_chain(s, tid, 2, ns="child:1")
        await s.aflush(timeout=10)
        ours = [t async for t in s.alist({"configurable": {"thread_id": tid}})]
        assert len(ours) == 5
        async with AsyncSqliteSaver.from_conn_string(str(path)) as official:
            official_list = [t async for t in official.alist({"configurable": {"thread_id": tid}})]
            assert official_list == ours
            root = [t for t in ours if t.config["configurable"]["checkpoint_ns"] == ""]
            assert await official.aget_tuple(generate_config(tid)) == root[0]
            # Its metadata filter (json_extract) works on our rows.
            found = [t async for t in official.alist(None, filter={"step": 1})]
            assert {t.config["configurable"]["checkpoint_ns"] for t in found} == {"", "child:1"}
            await put_chain(official, theirs, 3)  # type: ignore[arg-type]
            expected = [t async for t in official.alist(generate_config(theirs))]
        assert [t async for t in s.alist(generate_config(theirs))] == expected
        assert await s.aget_tuple(generate_config(theirs)) == expected[0]


class State(TypedDict):
    # A plain last-value channel: its value is only ever in the checkpoint
    # (a reducer channel could be rebuilt from the history of writes).
    items: list[str]
    count: int


def build_graph() -> StateGraph[State]:
    def step(state: State) -> dict[str, Any]:
        return {"items": [*state["items"], f"item{state['count']}"], "count": state["count"] + 1}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.set_entry_point("step")
    builder.set_finish_point("step")
    return builder


async def test_thread_started_by_the_official_saver_continues_durably(
    redis_url: str, tmp_path: Path, key_prefix: str
) -> None:
    """The values of channels we did not change come from the official parent row."""
    path = tmp_path / "x.db"
    config = {"configurable": {"thread_id": "migrated"}}
    async with AsyncSqliteSaver.from_conn_string(str(path)) as official:
        graph = build_graph().compile(checkpointer=official)
        await graph.ainvoke({"items": ["a"], "count": 0}, config)
    async with AsyncHybridSaver.from_conn_string(
        redis_url, f"sqlite:///{path}", key_prefix=key_prefix
    ) as s:
        graph = build_graph().compile(checkpointer=s)
        # Our first checkpoint changes `count` only: `items` is the official row's.
        await graph.aupdate_state(config, {"count": 5})
        await graph.ainvoke({"items": ["a", "item0", "b"]}, config)
        await s.aflush(timeout=10)
        expected = [h.values async for h in graph.aget_state_history(config)]
    assert expected[0] == {"items": ["a", "item0", "b", "item5"], "count": 6}
    assert expected[2] == {"items": ["a", "item0"], "count": 5}  # after update_state
    # A fresh Redis prefix: every read comes from the SQLite file.
    async with AsyncHybridSaver.from_conn_string(
        redis_url, f"sqlite:///{path}", key_prefix=key_prefix + "x"
    ) as fresh:
        graph = build_graph().compile(checkpointer=fresh)
        assert [h.values async for h in graph.aget_state_history(config)] == expected
    async with AsyncSqliteSaver.from_conn_string(str(path)) as official:
        graph = build_graph().compile(checkpointer=official)
        assert [h.values async for h in graph.aget_state_history(config)] == expected


# --- apply -------------------------------------------------------------------


async def test_apply_twice_changes_nothing(backend: SqliteBackend) -> None:
    ops = chain_ops("t1", 3) + chain_ops("t2", 2, first_seq=100)
    assert await backend.apply(ops) == 10
    first = await backend.list(everything())
    counts = await backend.count_rows()
    # `messages` stored once per version; `step` stays inline.
    assert counts == {"checkpoints": 5, "hybrid_saver_blobs": 5, "writes": 5}
    assert await backend.apply(ops) == 0
    assert await backend.apply(ops[3:]) == 0
    assert await backend.list(everything()) == first
    assert await backend.count_rows() == counts
    latest = await backend.get("t1", "", None)
    assert latest == next(s for s in first if s.thread_id == "t1")


async def test_apply_keeps_entry_order_around_a_delete(backend: SqliteBackend) -> None:
    before, after = chain_ops("t", 2), chain_ops("t", 1, first_seq=10)
    batch = [*before, DeleteThreadOp(seq_key("5-0"), "t"), *after]
    assert await backend.apply(batch) == 7
    assert [s.checkpoint_id for s in await backend.list(everything("t"))] == [
        after[0].row.checkpoint_id  # type: ignore[union-attr]
    ]
    # Entries from before the delete, applied late, cannot resurrect anything.
    assert await backend.apply(before) == 0
    assert await backend.count_rows() == {"checkpoints": 1, "hybrid_saver_blobs": 1, "writes": 1}


def two_channel_puts(thread_id: str, changes: list[str]) -> list[PutOp]:
    """Puts of a chain with channels `a` and `b`; `changes[i]` names the one
    put i changes (the first put carries both), so the official row of a later
    put needs the other channel's value from an earlier put."""
    ops, parent, versions = [], None, {"a": 0, "b": 0}
    values: dict[str, list[str]] = {"a": [], "b": []}
    for i, changed in enumerate(changes):
        carried = ("a", "b") if i == 0 else (changed,)
        for ch in carried:
            versions[ch] = i + 1
            values[ch] = [*values[ch], f"{ch}{i}"]
        config = generate_config(thread_id)
        if parent:
            config["configurable"]["checkpoint_id"] = parent
        cp = generate_checkpoint(
            channel_values={ch: list(v) for ch, v in values.items()},
            channel_versions={ch: f"{v:032}.0" for ch, v in versions.items()},
        )
        new_versions = {ch: f"{versions[ch]:032}.0" for ch in carried}
        row, _, blobs = encode_put(SERDE, config, cp, generate_metadata(step=i), new_versions)
        ops.append(PutOp(seq_key(f"{i + 1}-0"), row, tuple(blobs)))
        parent = row.checkpoint_id
    return ops


async def test_official_rows_take_unchanged_values_from_the_batch_and_the_file(
    backend: SqliteBackend,
) -> None:
    # Puts 2-3 take `a` from put 1 in the same batch; put 4 (a later batch)
    # takes `b` from the file; put 5 shares its batch with put 4.
    ops = two_channel_puts("t", ["a", "b", "b", "a", "a"])
    assert await backend.apply(ops[:3]) == 3
    assert await backend.apply(ops[3:]) == 2
    async with AsyncSqliteSaver.from_conn_string(backend.path) as official:
        got = [t.checkpoint["channel_values"] async for t in official.alist(generate_config("t"))]
    assert got[::-1] == [
        {"a": ["a0"], "b": ["b0"]},
        {"a": ["a0"], "b": ["b0", "b1"]},
        {"a": ["a0"], "b": ["b0", "b1", "b2"]},
        {"a": ["a0", "a3"], "b": ["b0", "b1", "b2"]},
        {"a": ["a0", "a3", "a4"], "b": ["b0", "b1", "b2"]},
    ]


async def test_a_batch_is_a_few_statements_however_many_puts(backend: SqliteBackend) -> None:
    """Unchanged values are looked up once per batch, and a channel with a
    version but no value (consumed, as LangGraph's branch channels) does not
    send each put to look for an official parent: under a 16-worker load the
    per-put lookups put the in-process reconciler seconds behind."""
    ops = two_channel_puts("t", ["a", "b", "a", "b", "a", "b"])
    for op in ops:  # every checkpoint also names a channel that has no value
        doc = json.loads(op.row.checkpoint)
        doc["channel_versions"]["branch:to:x"] = f"{1:032}.0"
        object.__setattr__(op.row, "checkpoint", json.dumps(doc))
    await backend.apply(ops[:2])
    statements: list[str] = []
    assert backend._writer is not None
    await backend._writer.set_trace_callback(statements.append)
    assert await backend.apply(ops[2:]) == 4
    await backend._writer.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3, selects  # watermarks, unknown blobs, official parents
    async with AsyncSqliteSaver.from_conn_string(backend.path) as official:
        latest = await official.aget_tuple(generate_config("t"))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {
        "a": ["a0", "a2", "a4"],
        "b": ["b0", "b1", "b3", "b5"],
    }


def test_spliced_checkpoint_is_byte_for_byte_what_the_serializer_writes() -> None:
    """The official row is assembled from the blobs' msgpack bytes, not by
    decoding and re-encoding every value; it must be the same bytes."""
    values: dict[str, Any] = {
        "messages": [HumanMessage("hi", id="1"), AIMessage("yo", id="2")],
        "count": 3, "ratio": 1.5, "name": "x", "raw": b"\x00raw", "nothing": None,
        "nested": {"a": [1, 2, {"b": None}]}, "ids": {1, 2}, "uid": uuid.UUID(int=5),
        "when": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    } | {f"c{i}": [i] for i in range(12)}  # fmt: skip
    versions = {ch: f"{1:032}.0" for ch in values} | {"branch:to:x": f"{1:032}.0"}
    cp = generate_checkpoint(channel_values=values, channel_versions=versions)
    row, _, blobs = encode_put(SERDE, generate_config("t"), cp, generate_metadata(), versions)
    doc = json.loads(row.checkpoint)
    stored = {b.channel: (b.type, b.blob) for b in blobs}
    assert {t for t, _ in stored.values()} == {"msgpack", "bytes"}
    whole = StoredCheckpoint("t", "", row.checkpoint_id, None, doc, {}, stored)
    expected = SERDE.dumps_typed(to_tuple(SERDE, whole).checkpoint)
    assert ("msgpack", splice_checkpoint(doc, stored)) == expected
    # A value that is not plain msgpack (pickled, encrypted) is decoded and re-encoded.
    assert splice_checkpoint(doc, stored | {"raw": ("pickle", b"...")}) is None


@pytest.mark.parametrize(("sql", "args"), [(SELECT_BLOB_KEYS_SQL, ("[]",))])
async def test_blob_lookup_is_one_primary_key_search_per_channel(
    backend: SqliteBackend, sql: str, args: tuple[str, ...]
) -> None:
    """With a plain JOIN the planner scanned every blob of the thread per
    lookup (0.7 ms at 1,000 blobs, growing with the thread)."""
    with sqlite3.connect(backend.path) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
    steps = [row[-1] for row in plan]
    assert steps[0].startswith("SCAN v"), steps
    assert "thread_id=? AND checkpoint_ns=? AND channel=? AND version=?" in steps[1], steps


async def test_get_blobs_by_channel_version(backend: SqliteBackend) -> None:
    await backend.apply(chain_ops("t", 2))
    v1, v2 = f"{1:032}.0", f"{2:032}.0"
    found = await backend.get_blobs("t", "", [("messages", v1), ("step", v1), ("x", v2)])
    assert list(found) == ["messages"]  # `step` is inline, `x` was never stored
    assert SERDE.loads_typed(found["messages"]) == ["m0"]  # type: ignore[arg-type]
    assert await backend.get_blobs("t", "child:1", [("messages", v1)]) == {}


async def test_list_applies_the_limit_after_the_filter(backend: SqliteBackend) -> None:
    await backend.apply(chain_ops("t", 5))  # run ids alternate: run-0, run-1, ...
    q = ListQuery("t", None, None, {"run_id": "run-1"}, None, 1)
    [only] = await backend.list(q)
    assert only.metadata["step"] == 3
    q = ListQuery("t", "", None, {"run_id": "run-0"}, None, None)
    assert [s.metadata["step"] for s in await backend.list(q)] == [4, 2, 0]


async def test_deletes_drop_blobs_no_checkpoint_refers_to(backend: SqliteBackend) -> None:
    await backend.apply(chain_ops("t", 4))
    assert [key[0] for key in await backend.delete_for_runs(["run-1"])] == ["t", "t"]
    assert await backend.count_rows() == {"checkpoints": 2, "hybrid_saver_blobs": 2, "writes": 2}
    await backend.prune_keep_latest(["t"])
    assert await backend.count_rows() == {"checkpoints": 1, "hybrid_saver_blobs": 1, "writes": 1}


# --- connection settings and URLs -------------------------------------------------


async def test_wal_mode_and_pragmas(backend: SqliteBackend) -> None:
    with sqlite3.connect(backend.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn_ = backend._writer
    assert conn_ is not None
    [(synchronous,)] = await conn_.execute_fetchall("PRAGMA synchronous")
    [(busy_timeout,)] = await conn_.execute_fetchall("PRAGMA busy_timeout")
    assert (synchronous, busy_timeout) == (2, 10_000)  # 2: FULL


async def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = open_backend("sqlite:///data/rel.db")
    absolute = open_backend(f"sqlite:///{tmp_path}/abs%20file.db")
    assert isinstance(relative, SqliteBackend) and isinstance(absolute, SqliteBackend)
    assert relative.path == str(tmp_path / "data" / "rel.db")
    assert absolute.path == str(tmp_path / "abs file.db")
    for b in (relative, absolute):
        await b.open()
        await b.setup()
        await b.setup()  # idempotent
        await b.close()
        assert Path(b.path).exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://", "names no database file"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///data/", "names no database file"),
        ("sqlite:relative.db", "names no database file"),
        ("sqlite:///x.db?mode=ro", "options"),
        ("sqlite://dbhost/x.db", "names a host"),
    ],
)
def test_bad_urls_are_config_errors_naming_the_value(url: str, shown: str) -> None:
    with pytest.raises(ConfigError, match=shown) as err:
        open_backend(url)
    assert isinstance(err.value, ValueError)
    expected = url
    assert repr(expected) in str(err.value)


def test_host_url_does_not_show_a_password() -> None:
    with pytest.raises(ConfigError) as err:
        open_backend("sqlite://user:s3cret@dbhost/x.db")
    assert "s3cret" not in str(err.value)


def test_unknown_scheme_lists_sqlite() -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_backend("mysql://db/x")


async def test_unusable_files_name_the_path(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no-such-dir" / "x.db"
    with pytest.raises(ServerUnreachableError, match="no-such-dir"):
        await open_backend(f"sqlite:///{missing_dir}").open()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ServerUnreachableError, match=r"junk\.db"):
        await open_backend(f"sqlite:///{junk}").open()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiosqlite", None)
    monkeypatch.delitem(sys.modules, "langgraph_hybrid_saver.backends.sqlite")
    with pytest.raises(MissingExtraError, match=r"\[sqlite\]"):
        open_backend("sqlite:///x.db")
