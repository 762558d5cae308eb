"""Retention (`langgraph_hybrid_saver.retention`, `prune`): on every durable
store, thousands of threads on PostgreSQL, what is kept and removed: the
latest N checkpoints of every namespace, idle threads whole, their writes
and the blobs no kept checkpoint uses; on DeltaChannel threads also the
older checkpoints back to the snapshot their values are rebuilt from (real
graphs read the same state afterwards, from the durable store alone too);
the hot copies and the thread index in Redis; a dry run changes nothing; a
second run changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
from click.testing import CliRunner
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import _messages_delta_reducer
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.backends import DurableBackend
from langgraph_hybrid_saver.cli import cli
from langgraph_hybrid_saver.core import BlobRow, CheckpointRow, ListQuery, WriteRow
from langgraph_hybrid_saver.errors import ConfigError
from langgraph_hybrid_saver.outbox.ops import Op, PutOp, WritesOp, seq_key
from langgraph_hybrid_saver.retention import (
    RetentionPolicy,
    checkpoint_id_at,
    parse_duration,
    retain,
    wait_outbox,
)

from .conftest import hybrid_saver, start_reconciler
from .helpers import durable_ids, put_chain, reconcile

HOUR = 3600.0
DAY = 86400.0
DELTA = {"counters_since_delta_snapshot": {"messages": 1}}
# Threads per kind on each store: thousands on PostgreSQL, fewer elsewhere.
SCALE = {"postgres": (2000, 900, 100), "sqlite": (150, 60, 10), "cosmos": (8, 4, 2)}


def cid(t: float, i: int = 0) -> str:
    """A uuid6 checkpoint id of time `t` (distinct per `i`)."""
    return checkpoint_id_at(t + i * 1e-6)


class Ops:
    """Outbox entries built by hand, with increasing stream ids."""

    def __init__(self) -> None:
        self.n = 0
        self.ops: list[Op] = []

    def seq(self) -> str:
        self.n += 1
        return seq_key(f"{self.n}-0")

    def put(
        self,
        thread_id: str,
        checkpoint_id: str,
        versions: dict[str, str],
        new: dict[str, str],
        *,
        parent: str | None = None,
        ns: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """A checkpoint referring to blob `versions`, of which `new` are written now."""
        checkpoint = {**empty_checkpoint(), "id": checkpoint_id, "channel_versions": versions}
        row = CheckpointRow(
            thread_id,
            ns,
            checkpoint_id,
            parent,
            json.dumps(checkpoint),
            json.dumps({"step": 1, **(metadata or {})}),
        )
        blobs = tuple(BlobRow(ch, v, "bytes", f"{ch}{v}".encode()) for ch, v in new.items())
        self.ops.append(PutOp(self.seq(), row, blobs))

    def write(self, thread_id: str, checkpoint_id: str, ns: str = "") -> None:
        row = WriteRow("task", 0, "~p", "ch", "bytes", checkpoint_id.encode())
        self.ops.append(WritesOp(self.seq(), thread_id, ns, checkpoint_id, False, (row,)))

    def active(self, thread_id: str, now: float) -> None:
        """Four checkpoints in '' (blob `keep` written once and referred to by
        all, `msg` new at each; writes on the first and the last) and two in
        'sub'."""
        ids = [cid(now - h * HOUR) for h in (4, 3, 2, 1)]
        parent = None
        for k, c in enumerate(ids, 1):
            new = {"msg": str(k), **({"keep": "1"} if k == 1 else {})}
            self.put(thread_id, c, {"keep": "1", "msg": str(k)}, new, parent=parent)
            parent = c
        self.write(thread_id, ids[0])
        self.write(thread_id, ids[-1])
        s1, s2 = cid(now - 2 * HOUR, 1), cid(now - HOUR, 1)
        self.put(thread_id, s1, {"x": "1"}, {"x": "1"}, ns="sub")
        self.put(thread_id, s2, {"x": "2"}, {"x": "2"}, ns="sub", parent=s1)

    def delta_chain(self, thread_id: str, start: float) -> None:
        """c0 <- ... <- c4 of a DeltaChannel `messages`: snapshots (a blob at
        the version) at c0 and c2, the others a new version with the delta
        counters only; a write on each. c4 rebuilds `messages` from c2's
        snapshot and the writes of c2 and c3."""
        parent = None
        for k in range(5):
            c = cid(start + k * HOUR)
            snapshot = k in (0, 2)
            new = {"messages": str(k)} if snapshot else {}
            self.put(
                thread_id,
                c,
                {"messages": str(k)},
                new,
                parent=parent,
                metadata={} if snapshot else DELTA,
            )
            self.write(thread_id, c)
            parent = c

    def chain(self, thread_id: str, start: float, n: int, metadata: dict[str, Any]) -> None:
        parent = None
        for k in range(n):
            c = cid(start + k * HOUR)
            self.put(thread_id, c, {"m": str(k)}, {"m": str(k)}, parent=parent, metadata=metadata)
            self.write(thread_id, c)
            parent = c


def dataset(kind: str, now: float) -> tuple[Ops, list[str], list[str], list[str]]:
    n_active, n_idle, n_delta = SCALE[kind]
    ops = Ops()
    active = [f"a{i:05d}" for i in range(n_active)]
    idle = [f"i{i:05d}" for i in range(n_idle)] + ["idle-delta"]
    delta = [f"d{i:05d}" for i in range(n_delta)]
    for t in active:
        ops.active(t, now)
    for t in idle[:-1]:
        ops.chain(t, now - 40 * DAY, 2, {})
    ops.chain("idle-delta", now - 40 * DAY, 3, DELTA)  # idle: deleted whole
    for t in delta:
        ops.delta_chain(t, now - 6 * HOUR)
    return ops, active, idle, delta


async def load(backend: DurableBackend, ops: Ops) -> None:
    for i in range(0, len(ops.ops), 2000):
        await backend.apply(ops.ops[i : i + 2000])


def kind_of(durable_url: str) -> str:
    return next(k for k in SCALE if durable_url.startswith(k))


async def rows(backend: DurableBackend, thread_id: str) -> list[tuple[str, str | None]]:
    """(namespace, parent) of a thread's checkpoints in the store, newest first."""
    found = await backend.list(ListQuery(thread_id, None, None, None, None, None))
    return [(s.checkpoint_ns, s.parent_checkpoint_id) for s in found]


@pytest.fixture
async def saver(
    redis_url: str, durable_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    async with hybrid_saver(redis_url, durable_url, key_prefix) as s:
        yield s


async def run(saver: AsyncHybridSaver, policy: RetentionPolicy, **given: Any) -> Any:
    return await retain(
        saver.hot,
        saver.outbox,
        saver.backend,
        policy,
        flush=lambda: saver.writes.flush(None),
        **given,
    )


async def test_retention_keeps_the_latest_and_deletes_idle_threads(
    saver: AsyncHybridSaver, durable_url: str
) -> None:
    now = time.time()
    ops, active, idle, delta = dataset(kind_of(durable_url), now)
    await load(saver.backend, ops)
    # Two threads through the saver, so Redis holds them: one active (three
    # checkpoints), one idle (its ids from 40 days ago).
    await put_chain(saver, "hot-active", 3)
    config = {"configurable": {"thread_id": "hot-idle", "checkpoint_ns": ""}}
    old = {**empty_checkpoint(), "id": cid(now - 40 * DAY)}
    await saver.aput(config, old, {"step": 0}, {})
    await saver.writes.flush(None)
    index = saver.hot.keys.thread_index[saver.hot.shard("hot-idle")]
    assert await saver.hot.redis.sismember(index, "hot-idle")
    before = await saver.backend.count_rows()
    policy = RetentionPolicy(idle=30 * DAY, keep_latest=1)

    dry = await run(saver, policy, dry_run=True, now=now)
    assert await saver.backend.count_rows() == before  # a dry run changes nothing
    assert dry.threads_scanned == len(active) + len(idle) + len(delta) + 2
    assert dry.threads_deleted == len(idle) + 1
    assert dry.checkpoints_of_deleted == 2 * (len(idle) - 1) + 3 + 1
    assert dry.threads_pruned == len(active) + 1 + len(delta)
    assert dry.checkpoints_pruned == 4 * len(active) + 2 + 2 * len(delta)
    assert (dry.threads_kept_for_delta, dry.checkpoints_kept_for_delta) == (
        len(delta),
        2 * len(delta),
    )

    done = await run(saver, policy, now=now, batch=100)
    assert {**done.to_json(), "dry_run": True} == dry.to_json()  # what the dry run said

    for t in [*idle, "hot-idle"]:
        assert await saver.backend.count_rows(t) == {k: 0 for k in before}
    assert await saver.aget_tuple(config) is None
    assert not await saver.hot.redis.sismember(index, "hot-idle")  # left the thread index
    for t in delta:  # the chain back to the snapshot c4 is rebuilt from is kept
        assert await durable_ids(saver, t) == [cid(now - h * HOUR) for h in (2, 3, 4)]
        assert [p is None for _, p in await rows(saver.backend, t)] == [False, False, True]
        c2 = await saver.backend.get(t, "", cid(now - 4 * HOUR))
        assert c2 is not None and c2.blobs == {"messages": ("bytes", b"messages2")}
        assert [w.blob for w in c2.writes] == [c2.checkpoint_id.encode()]
        counts = await saver.backend.count_rows(t)
        assert sorted(n for n in counts.values() if n) == [1, 3, 3]  # blobs, writes, checkpoints
    for t in [*active[:3], *active[-3:]]:
        kept = await saver.backend.get(t, "", None)
        assert kept is not None and kept.checkpoint_id == cid(now - HOUR)
        assert kept.parent_checkpoint_id is None  # its parent is gone: now a root
        assert kept.blobs == {"keep": ("bytes", b"keep1"), "msg": ("bytes", b"msg4")}
        assert [w.blob for w in kept.writes] == [kept.checkpoint_id.encode()]
        assert sorted(await rows(saver.backend, t)) == [("", None), ("sub", None)]
        counts = await saver.backend.count_rows(t)
        assert counts["checkpoints"] == 2
        # 2 checkpoints, 3 blobs (keep1, msg4, x2), 1 write; names differ per store
        assert sorted(n for n in counts.values() if n) == [1, 2, 3]
        # the blobs of the pruned checkpoints are gone
        assert await saver.backend.get_blobs(t, "", [("msg", "1"), ("msg", "3")]) == {}
    # The hot copy was dropped: reads come from the store, with one checkpoint.
    hot = [c async for c in saver.alist({"configurable": {"thread_id": "hot-active"}})]
    assert len(hot) == 1

    after = await saver.backend.count_rows()
    again = await run(saver, policy, now=now)  # idempotent
    assert await saver.backend.count_rows() == after
    assert (again.threads_deleted, again.threads_pruned, again.checkpoints_pruned) == (0, 0, 0)
    assert again.threads_scanned == len(active) + len(delta) + 1
    assert again.checkpoints_kept_for_delta == dry.checkpoints_kept_for_delta  # still kept


async def test_keep_latest_two_and_idle_only(saver: AsyncHybridSaver) -> None:
    now = time.time()
    ops = Ops()
    ops.active("a", now)
    ops.chain("old", now - 3 * DAY, 2, {})
    await load(saver.backend, ops)
    report = await run(saver, RetentionPolicy(keep_latest=2), now=now)
    assert (report.threads_pruned, report.checkpoints_pruned, report.threads_deleted) == (1, 2, 0)
    kept = await saver.backend.list(ListQuery("a", "", None, None, None, None))
    assert [k.checkpoint_id for k in kept] == [cid(now - HOUR), cid(now - 2 * HOUR)]
    assert kept[1].parent_checkpoint_id is None and kept[0].parent_checkpoint_id is not None
    report = await run(saver, RetentionPolicy(idle=2 * DAY), now=now)
    assert (report.threads_deleted, report.checkpoints_of_deleted) == (1, 2)
    assert (await saver.backend.count_rows("old"))["checkpoints"] == 0
    assert (await saver.backend.count_rows("a"))["checkpoints"] == 4  # 2 in "", 2 in "sub"


async def test_keep_latest_makes_a_root_of_a_checkpoint_whose_parent_a_run_deletion_took(
    saver: AsyncHybridSaver,
) -> None:
    """The parent went with delete_for_runs before the prune: the kept
    checkpoint still becomes a root, as PostgresSaver's prune leaves it."""
    first = await put_chain(saver, "orphan", 1, run_id="gone")
    last = await put_chain(
        saver, "orphan", 1, run_id="kept", parent=first[0]["configurable"]["checkpoint_id"]
    )
    config = {"configurable": {"thread_id": "orphan", "checkpoint_ns": ""}}
    await saver.adelete_for_runs(["gone"])
    before = await saver.aget_tuple(config)
    assert before is not None and before.parent_config is not None  # a dangling parent
    await saver.aprune(["orphan"], strategy="keep_latest")
    after = await saver.aget_tuple(config)
    assert after is not None and after.config == last[0]
    assert after.parent_config is None
    assert [p for _, p in await rows(saver.backend, "orphan")] == [None]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * DAY), ("12h", 12 * HOUR), ("90m", 5400), ("2w", 14 * DAY)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5h", "-1d", "0d", "30 days", ""])
def test_bad_durations_name_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match=f"--idle={text!r}.*e.g. 30d"):
        parse_duration(text)


def test_policies() -> None:
    assert RetentionPolicy.parse("idle=30d,keep-latest=1") == RetentionPolicy(30 * DAY, 1)
    assert RetentionPolicy.parse("keep-latest=3") == RetentionPolicy(None, 3)
    with pytest.raises(ConfigError, match="'keep=1' is not idle=DURATION or keep-latest=N"):
        RetentionPolicy.parse("keep=1")
    with pytest.raises(ConfigError, match="keep_latest=0"):
        RetentionPolicy(keep_latest=0)
    with pytest.raises(ConfigError, match="needs a rule"):
        RetentionPolicy.parse("")


def test_prune_command(pg_url: str, redis_url: str, key_prefix: str) -> None:
    now = time.time()
    ops = Ops()
    for t in ("a1", "a2"):
        ops.active(t, now)
    ops.chain("old", now - 40 * DAY, 2, {})
    ops.delta_chain("d", now - 6 * HOUR)

    async def prepare() -> None:
        async with hybrid_saver(redis_url, pg_url, key_prefix) as s:
            await load(s.backend, ops)

    asyncio.run(prepare())
    conn = ["--redis", redis_url, "--durable", pg_url, "--key-prefix", key_prefix]
    runner = CliRunner()
    args = ["prune", *conn, "--idle", "30d", "--keep-latest", "1"]
    dry = runner.invoke(cli, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "threads_scanned": 4,
        "threads_deleted": 1,
        "checkpoints_of_deleted": 2,
        "threads_pruned": 3,
        "checkpoints_pruned": 10,
        "threads_kept_for_delta": 1,
        "checkpoints_kept_for_delta": 2,
    }
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "idle, deleted whole" in table.stdout and "prune (deleted)" in table.stdout
    assert re.search(r"older, kept for DeltaChannel\W+1\W+2\W", table.stdout), table.stdout
    again = runner.invoke(cli, [*args, "--json"])
    assert json.loads(again.stdout)["checkpoints_pruned"] == 0
    assert json.loads(again.stdout)["threads_scanned"] == 3

    bad = runner.invoke(cli, ["prune", *conn, "--idle", "30 days"])
    assert bad.exit_code == 2
    assert "--idle='30 days' is not a duration" in bad.output and "e.g. 30d" in bad.output
    none = runner.invoke(cli, ["prune", *conn])
    assert none.exit_code == 2 and "needs a rule" in none.output


def test_reconcile_worker_runs_retention_on_a_schedule(
    pg_url: str, redis_url: str, key_prefix: str
) -> None:
    worker = start_reconciler(
        redis_url,
        pg_url,
        "--key-prefix",
        key_prefix,
        "--setup",
        "--retention",
        "keep-latest=1",
        "--retention-every",
        "1s",
    )

    async def write_and_watch() -> list[str]:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, pg_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            await put_chain(saver, "w", 5)
            await saver.aflush()  # applied by the worker
            for _ in range(600):  # until a scheduled run has pruned (bounded wait)
                ids = await durable_ids(saver, "w")
                if len(ids) == 1:
                    break
                await asyncio.sleep(0.05)
            return [c.config["configurable"]["checkpoint_id"] async for c in saver.alist(None)]

    try:
        listed = asyncio.run(write_and_watch())
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert len(listed) == 1  # the durable store and Redis (its hot copy dropped) agree
    # Each scheduled run logs its report; together they pruned the four older ones.
    pruned = [int(n) for n in re.findall(r"retention: \{.*'checkpoints_pruned': (\d+)", err)]
    assert pruned and sum(pruned) == 4, err


def test_reconcile_worker_refuses_a_bad_retention_policy(pg_url: str, redis_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["reconcile", "--redis", redis_url, "--durable", pg_url, "--retention", "idle=30"]
    )
    assert result.exit_code == 2
    assert "idle='30' is not a duration" in result.output


def _add_notes(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(note for w in writes for note in w)]


class DeltaState(TypedDict):
    messages: Annotated[
        list[AnyMessage], DeltaChannel(_messages_delta_reducer, snapshot_frequency=4)
    ]


class TwoDeltaState(TypedDict):
    """Two DeltaChannels whose snapshots fall on different checkpoints: the
    latest checkpoint's `notes` is rebuilt from further back than its
    `messages`."""

    messages: Annotated[
        list[AnyMessage], DeltaChannel(_messages_delta_reducer, snapshot_frequency=4)
    ]
    notes: Annotated[list[str], DeltaChannel(_add_notes, snapshot_frequency=3)]


def _reply(state: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [AIMessage(f"reply {len(state['messages'])}")]}


def _reply_and_note(state: dict[str, Any]) -> dict[str, Any]:
    """A reply, and a note every third turn."""
    n = len(state["messages"])
    return {
        "messages": [AIMessage(f"reply {n}")],
        **({"notes": [f"note {n}"]} if n % 6 == 1 else {}),
    }


def delta_graph(state: type[Any], checkpointer: AsyncHybridSaver) -> Any:
    g = StateGraph(state)
    g.add_node("reply", _reply if state is DeltaState else _reply_and_note)
    g.add_edge(START, "reply")
    return g.compile(checkpointer=checkpointer)


@pytest.mark.parametrize("state", [DeltaState, TwoDeltaState], ids=["one", "two"])
async def test_keep_latest_keeps_what_a_delta_channel_graph_reads(
    saver: AsyncHybridSaver, redis_url: str, durable_url: str, key_prefix: str, state: type[Any]
) -> None:
    """A real DeltaChannel graph run for 13 turns (snapshots every 4 and 3
    updates): keep_latest=1 removes most checkpoints, and the state reads the
    same afterwards through the saver and from the durable store alone."""
    graph = delta_graph(state, saver)
    config: Any = {"configurable": {"thread_id": "delta-graph"}}
    for turn in range(13):  # the last snapshot of `messages` is in turn 12: a chain
        await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config)
    await put_chain(saver, "plain", 3)
    await saver.aflush()
    before = (await graph.aget_state(config)).values
    assert len(before["messages"]) == 26
    tuple_before = await saver.aget_tuple(config)
    assert tuple_before is not None
    history = {
        s.config["configurable"]["checkpoint_id"]: s.values
        async for s in graph.aget_state_history(config)
    }
    stored = await durable_ids(saver, "delta-graph")
    policy = RetentionPolicy(keep_latest=1)
    with pytest.raises(NotImplementedError, match="delta-graph"):  # as PostgresSaver's
        await saver.aprune(["delta-graph"], strategy="keep_latest")
    assert await durable_ids(saver, "delta-graph") == stored

    dry = await run(saver, policy, dry_run=True)
    assert await durable_ids(saver, "delta-graph") == stored  # a dry run changes nothing
    done = await run(saver, policy)
    assert done.to_json() == {**dry.to_json(), "dry_run": False}  # what the dry run said
    assert done.threads_pruned == 2  # "plain" and "delta-graph"
    left = await durable_ids(saver, "delta-graph")
    assert 1 < len(left) < len(stored) // 3
    # the latest, its parent and the last snapshot of `messages`; with
    # `notes`, back to its own snapshot, further back
    assert len(left) == 3 if state is DeltaState else len(left) > 3
    assert len(stored) - len(left) == done.checkpoints_pruned - 2
    assert done.threads_kept_for_delta == 1
    assert done.checkpoints_kept_for_delta == len(left) - 1

    # through the saver: its hot copy was dropped, read from the store
    assert (await graph.aget_state(config)).values == before
    after = await saver.aget_tuple(config)
    assert after is not None and after.config == tuple_before.config
    assert after.checkpoint == tuple_before.checkpoint
    assert after.metadata == tuple_before.metadata
    assert after.pending_writes == tuple_before.pending_writes
    # from the durable store alone: a new saver with nothing in Redis
    async with hybrid_saver(redis_url, durable_url, key_prefix + "-fresh") as fresh:
        reread = delta_graph(state, fresh)
        values = (await reread.aget_state(config)).values
        assert values == before
        assert [m.content for m in values["messages"]] == [m.content for m in before["messages"]]
        if state is DeltaState:  # one DeltaChannel: every checkpoint left reads as before
            async for s in reread.aget_state_history(config):
                assert s.values == history[s.config["configurable"]["checkpoint_id"]]

    again = await run(saver, policy)  # idempotent
    assert (again.threads_pruned, again.checkpoints_pruned) == (0, 0)
    assert again.checkpoints_kept_for_delta == done.checkpoints_kept_for_delta
    assert await durable_ids(saver, "delta-graph") == left


# An "empty" blob at every version without one, the row PostgresSaver's
# `_dump_blobs` makes for a version whose value it does not store (3.2's
# `put` passes it stored values only; its delta walk still skips such rows):
# no seed.
EMPTY_BLOBS_SQL = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT c.thread_id, c.checkpoint_ns, v.key, v.value, 'empty', NULL
FROM checkpoints c, jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
WHERE c.thread_id = %s
ON CONFLICT DO NOTHING
"""


@pytest.mark.parametrize("store", ["pg", "sqlite"])
async def test_keep_latest_on_a_delta_channel_thread_the_official_saver_wrote(
    store: str, pg_url: str, tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    """The official saver's rows (PostgresSaver's "empty" blobs for versions
    without a value, SqliteSaver's whole serialized checkpoints): after
    keep_latest=1 the official saver reads the same state."""
    path = tmp_path / "official.db"
    url = pg_url if store == "pg" else f"sqlite:///{path}"
    official_saver = (
        AsyncPostgresSaver.from_conn_string(pg_url)
        if store == "pg"
        else AsyncSqliteSaver.from_conn_string(str(path))
    )
    config: Any = {"configurable": {"thread_id": "official"}}
    async with official_saver as official:
        await official.setup()
        graph = delta_graph(DeltaState, official)
        for turn in range(13):
            await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config)
        before = (await graph.aget_state(config)).values
        written = [c.config async for c in official.alist(config)]
        if store == "pg":  # what `_dump_blobs` writes for a version without a value
            async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
                await conn.execute(EMPTY_BLOBS_SQL, ("official",))
        async with hybrid_saver(redis_url, url, key_prefix) as saver:
            await saver.setup()
            done = await run(saver, RetentionPolicy(keep_latest=1))
            again = await run(saver, RetentionPolicy(keep_latest=1))
        left = [c.config async for c in official.alist(config)]
        assert done.checkpoints_pruned == len(written) - len(left) > 0
        assert done.checkpoints_kept_for_delta == len(left) - 1 > 0
        assert again.checkpoints_pruned == 0
        assert (await graph.aget_state(config)).values == before


async def test_a_dry_run_counts_the_entries_not_yet_applied(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    """A dry run waits for the outbox as the run does: the checkpoints still
    queued count (a reconciler starts only after the dry run began)."""
    async with hybrid_saver(redis_url, durable_url, key_prefix, reconciler="external") as saver:
        await put_chain(saver, "queued", 3)
        policy = RetentionPolicy(keep_latest=1)

        async def reconcile_later() -> None:
            await asyncio.sleep(0.3)
            await reconcile(saver)

        later = asyncio.create_task(reconcile_later())
        dry = await retain(
            saver.hot,
            saver.outbox,
            saver.backend,
            policy,
            flush=lambda: wait_outbox(saver.outbox, 10),
            dry_run=True,
        )
        await later
        assert (dry.threads_pruned, dry.checkpoints_pruned) == (1, 2)
        done = await run(saver, policy)
        assert done.to_json() == {**dry.to_json(), "dry_run": False}
