"""What is acknowledged stays readable until it is durable, whatever the
durable store refuses, wherever the reconciler runs and whatever the TTL,
window, durability mode and LangGraph run durability.

* A batch the store refuses for its data is applied entry by entry: the
  refused entry is dead-lettered (its thread stays readable from Redis, past
  its TTL), every other entry is applied; nothing blocks the outbox.
* A thread with entries not yet reconciled keeps no TTL and no window trims
  it; once durable, both apply and reads come back whole from the store.
* `write_through` returns only once the checkpoint is durable, under every
  LangGraph `durability` ("sync", "async", "exit") and for both classes,
  without false errors (writes applied before their checkpoint).
* Histories agree with LangGraph's own savers (InMemorySaver and the official
  AsyncPostgresSaver) on the same graph and inputs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import operator
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import ERROR
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver, HybridSaver, SerializationError
from langgraph_hybrid_saver.encode import encode_put
from langgraph_hybrid_saver.outbox.ops import Op
from langgraph_hybrid_saver.outbox.reconciler import Reconciler

from .conftest import hybrid_saver, pg_schema
from .helpers import put_chain, reconcile

T = TypeVar("T")
RunDurability = Literal["sync", "async", "exit"]
MODES: list[RunDurability] = ["sync", "async", "exit"]
NODES = ("billing", "account", "policy", "response")
NS_KEYS = (":i:0:", ":c:0:", ":n")  # root-namespace keys of any thread
BLOB_KEYS = (*NS_KEYS, ":b:0:")  # ... and of one with a blob (the graph's list)


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def build(checkpointer: Any) -> Any:
    """billing -> account -> policy -> response, each appending its name."""
    g = StateGraph(State)
    for name in NODES:
        g.add_node(name, lambda s, name=name: {"steps": [name]})
    g.add_edge(START, NODES[0])
    for a, b in itertools.pairwise(NODES):
        g.add_edge(a, b)
    g.add_edge(NODES[-1], END)
    return g.compile(checkpointer=checkpointer)


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def tid(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def final(n_runs: int = 1) -> list[str]:
    return [x for i in range(n_runs) for x in (f"in{i}", *NODES)]


Summary = list[tuple[dict[str, Any], tuple[str, ...], int, str]]


def summarize(snapshots: Sequence[Any]) -> Summary:
    """What must agree between savers: values, next, step and source, newest first."""
    return [(s.values, s.next, s.metadata["step"], s.metadata["source"]) for s in snapshots]


async def history(graph: Any, cfg: RunnableConfig) -> list[Any]:
    snaps = [s async for s in graph.aget_state_history(cfg)]
    ids = [s.config["configurable"]["checkpoint_id"] for s in snaps]
    assert len(set(ids)) == len(ids), f"a checkpoint listed twice: {ids}"
    return snaps


async def reference_history(
    inputs: Sequence[dict[str, Any] | None], mode: RunDurability = "sync"
) -> Summary:
    """The same runs on LangGraph's InMemorySaver."""
    graph, cfg = build(InMemorySaver()), config("ref")
    for value in inputs:
        await graph.ainvoke(value, cfg, durability=mode)
    return summarize(await history(graph, cfg))


@asynccontextmanager
async def reconciler_task(saver: AsyncHybridSaver, **options: Any) -> AsyncIterator[Reconciler]:
    """An external reconciler, run as a task of this loop until the block ends."""
    worker = Reconciler(saver.hot, saver.backend, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def pttls(
    saver: AsyncHybridSaver, thread_id: str, keys: Sequence[str] = BLOB_KEYS
) -> list[int]:
    """PTTL of a thread's keys: -1 no TTL, -2 gone."""
    base = saver.hot.base(thread_id)
    return [await saver.hot.redis.pttl(base + k) for k in keys]


async def until_expired(
    saver: AsyncHybridSaver, thread_id: str, keys: Sequence[str], within: float
) -> None:
    """Wait until the thread's `keys` have expired (failing after `within` s)."""
    deadline = asyncio.get_running_loop().time() + within
    while await pttls(saver, thread_id, keys) != [-2] * len(keys):
        assert asyncio.get_running_loop().time() < deadline, await pttls(saver, thread_id, keys)
        await asyncio.sleep(0.1)


async def durable_latest(saver: AsyncHybridSaver, thread_id: str) -> str | None:
    stored = await saver.backend.get(thread_id, "", None)
    return stored.checkpoint_id if stored else None


def refuse_thread(monkeypatch: pytest.MonkeyPatch, saver: AsyncHybridSaver, poison: str) -> None:
    """The durable store refuses, for its data, any batch holding an entry of
    `poison` (a fake of the store's refusal; the rest is real)."""
    real = saver.backend.apply

    async def apply(ops: Sequence[Op]) -> int:
        if any(op.thread_id == poison for op in ops):
            raise SerializationError(f"test: the store refuses a value of {poison}")
        return await real(ops)

    monkeypatch.setattr(saver.backend, "apply", apply)


async def put_one(saver: AsyncHybridSaver, thread_id: str, note: str) -> RunnableConfig:
    """One checkpoint (a single outbox entry) with an inline channel value."""
    cp = empty_checkpoint()
    cp["channel_values"] = {"note": note}
    cp["channel_versions"] = {"note": saver.get_next_version(None, None)}
    md: Any = {"source": "input", "step": -1, "parents": {}}
    return await saver.aput(
        {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}},
        cp,
        md,
        dict(cp["channel_versions"]),
    )


async def dead_reasons(saver: AsyncHybridSaver) -> list[str]:
    out = []
    for stream in saver.hot.keys.dead:
        for _, fields in await saver.hot.redis.xrange(stream):
            out.append(fields[b"reason"].decode())
    return out


# --- 1. a value the store refuses blocks nothing ----------------------------


async def test_refused_batch_dead_letters_one_entry_and_applies_the_rest(
    redis_url: str, durable_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One shard, so the poison entry heads the only outbox and shares one
    batch with the innocent threads' entries (the reconciler starts after)."""
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, ttl=1, shards=1, reconciler="external"
    ) as saver:
        poison, innocents = tid("poison"), [tid("innocent"), tid("innocent")]
        refuse_thread(monkeypatch, saver, poison)
        await put_one(saver, poison, "refused")
        graph = build(saver)
        for t in innocents:
            await graph.ainvoke({"steps": ["in0"]}, config(t))
        expected = await reference_history([{"steps": ["in0"]}])
        async with reconciler_task(saver) as worker:
            await saver.aflush(timeout=10)  # blocked forever before the fix
        assert worker.stats.dead_lettered == 1
        stats = await saver.astats()
        assert stats["dead_letters"] == 1 and stats["backlog"] == 0
        (why,) = await dead_reasons(saver)
        assert poison in why and "SerializationError" in why
        assert await durable_latest(saver, poison) is None
        for t in innocents:
            state = await graph.aget_state(config(t))
            assert await durable_latest(saver, t) == state.config["configurable"]["checkpoint_id"]
        await asyncio.sleep(1.5)  # past the ttl
        assert await pttls(saver, poison, NS_KEYS) == [-1] * len(NS_KEYS)  # kept: not durable
        hot = await saver.hot.get(poison, "", None)
        assert hot.stored is not None and hot.stored.checkpoint["channel_values"] == {
            "note": "refused"
        }
        tup = await saver.aget_tuple(config(poison))
        assert tup is not None and tup.checkpoint["channel_values"]["note"] == "refused"
        for t in innocents:
            assert (await graph.aget_state(config(t))).values == {"steps": final()}
            assert summarize(await history(graph, config(t))) == expected


async def test_nul_escape_in_checkpoint_json_is_dead_lettered_on_postgres(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    """A real refusal: jsonb has no \\u0000 (UntranslatableCharacter). The
    entry is written straight to Redis, past the encode checks."""
    async with hybrid_saver(redis_url, pg_url, key_prefix, ttl=2, shards=1) as saver:
        poison, innocent = tid("poison"), tid("innocent")
        cp = empty_checkpoint()
        cp["channel_values"] = {"note": "clean"}
        cp["channel_versions"] = {"note": saver.get_next_version(None, None)}
        row, refs, blobs = encode_put(
            saver.serde,
            {"configurable": {"thread_id": poison, "checkpoint_ns": ""}},
            cp,
            {"source": "input", "step": -1, "parents": {}},
            dict(cp["channel_versions"]),
        )
        assert not refs and not blobs  # the value is inline in the document
        bad = dataclasses.replace(row, checkpoint=row.checkpoint.replace('"clean"', '"a\\u0000b"'))
        assert "\\u0000" in bad.checkpoint
        sid = await saver.hot.put(bad, refs, blobs)
        assert isinstance(sid, str)
        graph = build(saver)
        await graph.ainvoke({"steps": ["in0"]}, config(innocent))
        await saver.aflush(timeout=10)
        stats = await saver.astats()
        assert stats["dead_letters"] == 1 and stats["backlog"] == 0, stats
        why = await saver.outbox.dead_reason(saver.hot.shard(poison), sid)
        assert why is not None and poison in why and "Untranslatable" in why, why
        state = await graph.aget_state(config(innocent))
        assert (
            await durable_latest(saver, innocent) == state.config["configurable"]["checkpoint_id"]
        )
        assert await durable_latest(saver, poison) is None
        await asyncio.sleep(3)  # past the ttl
        hot = await saver.hot.get(poison, "", None)
        assert hot.stored is not None, "the refused thread expired from Redis: lost"
        assert hot.stored.checkpoint["channel_values"] == {"note": "a\x00b"}
        tup = await saver.aget_tuple(config(poison))
        assert tup is not None and tup.checkpoint["channel_values"]["note"] == "a\x00b"
        assert (await graph.aget_state(config(innocent))).values == {"steps": final()}
        expected = await reference_history([{"steps": ["in0"]}])
        assert summarize(await history(graph, config(innocent))) == expected


# --- 2. unreconciled: no TTL; durable: TTL, then read-through ---------------


async def test_unreconciled_thread_outlives_its_ttl_then_expires_once_durable(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, ttl=2, reconciler="external"
    ) as saver:
        t = tid("ext")
        graph = build(saver)
        await graph.ainvoke({"steps": ["in0"]}, config(t))
        expected = await reference_history([{"steps": ["in0"]}])
        await asyncio.sleep(3.5)  # past the ttl, nothing reconciled
        assert await pttls(saver, t) == [-1] * len(BLOB_KEYS)
        assert await durable_latest(saver, t) is None
        assert (await graph.aget_state(config(t))).values == {"steps": final()}
        assert summarize(await history(graph, config(t))) == expected
        async with reconciler_task(saver):
            await saver.aflush(timeout=10)
        # Durable now: the hot copy got its TTL back (the ack settled it).
        for left in await pttls(saver, t):
            assert 0 < left <= 2000, await pttls(saver, t)
        latest = (await graph.aget_state(config(t))).config["configurable"]["checkpoint_id"]
        assert await durable_latest(saver, t) == latest
        await until_expired(saver, t, BLOB_KEYS, 3)
        assert (await graph.aget_state(config(t))).values == {"steps": final()}
        assert summarize(await history(graph, config(t))) == expected


async def test_a_write_queued_after_the_checkpoint_left_redis_is_listed(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    """The checkpoint expired from Redis (durable, past its ttl); a write to
    it waits in the outbox (no reconciler runs). Every read shows it: the
    listing of the thread, of its namespace, with a filter, with a limit."""
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, ttl=1, reconciler="external"
    ) as saver:
        t = tid("late")
        graph = build(saver)
        await graph.ainvoke({"steps": ["in0"]}, config(t))
        await reconcile(saver)
        await until_expired(saver, t, BLOB_KEYS, 5)
        history_ = [s async for s in saver.alist(config(t))]
        target = history_[2].config
        await saver.aput_writes(target, [("steps", ["late"])], "task-late")
        write = ("task-late", "steps", ["late"])
        got = await saver.aget_tuple(target)
        assert got is not None and write in got.pending_writes
        target_id = target["configurable"]["checkpoint_id"]
        for cfg, options in [
            (config(t), {}),
            ({"configurable": {"thread_id": t, "checkpoint_ns": ""}}, {}),
            (config(t), {"filter": {"step": got.metadata["step"]}}),
            (config(t), {"limit": 3}),
        ]:
            listed = {
                s.config["configurable"]["checkpoint_id"]: s.pending_writes
                async for s in saver.alist(cfg, **options)
            }
            assert write in listed[target_id], options
        assert await reconcile(saver) == 1  # still queued until now
        again = {s.config["configurable"]["checkpoint_id"]: s async for s in saver.alist(config(t))}
        assert write in again[target_id].pending_writes


async def test_a_write_sent_again_after_the_checkpoint_left_redis_reads_as_stored(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    """A task's write sent again under the same (task, idx) once the
    checkpoint left Redis: a regular write reads as the first (the store
    keeps it, as PostgresSaver's insert-once does), a special one (ERROR)
    as the last (it overwrites), before and after the entry is applied."""
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, ttl=1, reconciler="external"
    ) as saver:
        t = tid("again")
        cfg = await saver.aput(config(t), empty_checkpoint(), {"step": -1}, {})
        await saver.aput_writes(cfg, [("log", "FIRST")], "task-1")
        await saver.aput_writes(cfg, [(ERROR, "FIRST")], "task-2")
        await reconcile(saver)
        await until_expired(saver, t, NS_KEYS, 5)
        await saver.aput_writes(cfg, [("log", "SECOND")], "task-1")
        await saver.aput_writes(cfg, [(ERROR, "SECOND")], "task-2")
        expected = [("task-1", "log", "FIRST"), ("task-2", ERROR, "SECOND")]
        for applied in (False, True):
            listed = [s.pending_writes async for s in saver.alist(config(t))]
            got = await saver.aget_tuple(cfg)
            assert got is not None
            assert sorted(got.pending_writes) == sorted(listed[0]) == expected, applied
            await reconcile(saver)


async def test_a_prune_keeps_what_the_thread_gained_after_its_flush(
    redis_url: str, durable_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run writes to the thread between aprune's flush and the durable
    store's prune: Redis still serves what it wrote (not yet durable), and
    only what the prune deleted leaves Redis."""
    async with hybrid_saver(redis_url, durable_url, key_prefix, reconciler="external") as saver:
        t = tid("prune")
        graph = build(saver)
        await graph.ainvoke({"steps": ["in0"]}, config(t))
        before = [s.config["configurable"]["checkpoint_id"] async for s in saver.alist(config(t))]
        real = saver.backend.prune_keep_latest
        late: list[RunnableConfig] = []

        async def prune_after_a_run(*args: Any, **kwargs: Any) -> Any:
            state = await graph.aget_state(config(t))
            late.append(await graph.aupdate_state(state.config, {"steps": ["late"]}))
            await saver.aput_writes(late[0], [("steps", ["pending"])], "task-late")
            return await real(*args, **kwargs)

        monkeypatch.setattr(saver.backend, "prune_keep_latest", prune_after_a_run)
        async with reconciler_task(saver):  # what aprune's flush waits for
            await saver.aflush(timeout=10)
        await saver.aprune([t])  # no reconciler: the run's writes stay pending
        latest = await saver.aget_tuple(config(t))
        assert latest is not None and latest.config == late[0]
        assert ("task-late", "steps", ["pending"]) in latest.pending_writes
        assert (await graph.aget_state(config(t))).values == {"steps": [*final(), "late"]}
        listed = [s.config["configurable"]["checkpoint_id"] async for s in saver.alist(config(t))]
        assert listed == [late[0]["configurable"]["checkpoint_id"], before[0]]
        for gone in before[1:]:  # neither tier has them
            by_id = {"configurable": {"thread_id": t, "checkpoint_ns": "", "checkpoint_id": gone}}
            assert await saver.aget_tuple(by_id) is None
        async with reconciler_task(saver):
            await saver.aflush(timeout=10)
        assert [
            s.config["configurable"]["checkpoint_id"] async for s in saver.alist(config(t))
        ] == listed


async def test_delete_for_runs_keeps_what_the_thread_gained_after_its_flush(
    redis_url: str, durable_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run writes to the thread between adelete_for_runs's flush and
    the durable store's delete: its checkpoint and pending write stay
    readable; the deleted run's checkpoints are gone from both tiers."""
    async with hybrid_saver(redis_url, durable_url, key_prefix, reconciler="external") as saver:
        t = tid("runs")
        first = await put_chain(saver, t, 3, run_id="run-a")
        real = saver.backend.delete_for_runs
        late: list[dict[str, Any]] = []

        async def delete_after_a_run(*args: Any, **kwargs: Any) -> Any:
            parent = first[-1]["configurable"]["checkpoint_id"]
            late.extend(await put_chain(saver, t, 1, run_id="run-b", parent=parent))
            return await real(*args, **kwargs)

        monkeypatch.setattr(saver.backend, "delete_for_runs", delete_after_a_run)
        async with reconciler_task(saver):  # what the delete's flush waits for
            await saver.aflush(timeout=10)
        await saver.adelete_for_runs(["run-a"])  # no reconciler: run-b's stay pending
        listed = [s async for s in saver.alist(config(t))]
        assert [s.config for s in listed] == late
        assert [w[1:] for w in listed[0].pending_writes] == [("messages", "w0")]
        for gone in first:
            assert await saver.aget_tuple(gone) is None
        async with reconciler_task(saver):
            await saver.aflush(timeout=10)
        assert [s.config async for s in saver.alist(config(t))] == late


@pytest.mark.parametrize("mode", ["sync", "async", "exit"])
async def test_aprune_while_the_thread_runs_loses_nothing(
    redis_url: str, durable_url: str, key_prefix: str, mode: RunDurability
) -> None:
    """aprune in a loop while runs go on the thread (an Agent Server TTL
    sweep, a retention job): every run ends as it would alone."""
    async with hybrid_saver(redis_url, durable_url, key_prefix) as saver:
        graph = build(saver)
        for k in range(4):
            t = tid("busy")
            stop = asyncio.Event()

            async def prune_until_stopped(thread_id: str = t, stop: asyncio.Event = stop) -> None:
                while not stop.is_set():
                    await saver.aprune([thread_id])
                    await asyncio.sleep(0)

            pruning = asyncio.create_task(prune_until_stopped())
            try:
                for i in range(2):
                    await graph.ainvoke({"steps": [f"in{i}"]}, config(t), durability=mode)
            finally:
                stop.set()
                await pruning
            assert (await graph.aget_state(config(t))).values == {"steps": final(2)}, k


# --- 3. hot_window trims only what is durable -------------------------------


@pytest.mark.parametrize("placement", ["in_process", "external"])
async def test_hot_window_keeps_history_and_time_travel_whole(
    redis_url: str, durable_url: str, key_prefix: str, placement: str
) -> None:
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, hot_window=2, reconciler=placement
    ) as saver:
        t = tid("window")
        graph, ref = build(saver), build(InMemorySaver())
        await graph.ainvoke({"steps": ["in0"]}, config(t))
        await ref.ainvoke({"steps": ["in0"]}, config("ref"))
        ref_snaps = await history(ref, config("ref"))
        snaps = await history(graph, config(t))
        assert len(snaps) == len(ref_snaps) == 6
        assert summarize(snaps) == summarize(ref_snaps)
        # Time travel to the oldest (the input checkpoint) and fork from it.
        oldest, ref_oldest = snaps[-1], ref_snaps[-1]
        assert oldest.metadata["step"] == -1
        got = await graph.aget_state(oldest.config)
        want = await ref.aget_state(ref_oldest.config)
        assert (got.values, got.next) == (want.values, want.next)
        forked = await graph.ainvoke(None, oldest.config)
        assert forked == await ref.ainvoke(None, ref_oldest.config) == {"steps": final()}
        ref_after = summarize(await history(ref, config("ref")))
        assert summarize(await history(graph, config(t))) == ref_after
        if placement == "external":
            async with reconciler_task(saver):
                await saver.aflush(timeout=10)
        else:
            await saver.aflush(timeout=10)
        assert await saver.hot.redis.zcard(saver.hot.base(t) + ":i:0:") == 2
        assert summarize(await history(graph, config(t))) == ref_after
        # The fork's parent (trimmed from Redis) still reads back whole.
        got = await graph.aget_state(oldest.config)
        assert (got.values, got.next) == (want.values, want.next)


# --- 4. write_through under every LangGraph run durability ------------------

WRITE_THROUGH_CASES = [
    pytest.param(backend, mode, id=f"{backend}-{mode}")
    for backend in ("pg", "sqlite")
    for mode in MODES
] + [pytest.param("cosmos", "async", id="cosmos-async")]


@pytest.mark.parametrize(("durable_url", "mode"), WRITE_THROUGH_CASES, indirect=["durable_url"])
async def test_write_through_async_class_every_run_durability(
    redis_url: str, durable_url: str, key_prefix: str, mode: RunDurability
) -> None:
    async with hybrid_saver(
        redis_url, durable_url, key_prefix, durability="write_through", flush_timeout=10
    ) as saver:
        t = tid("wt")
        graph = build(saver)
        for i in range(5):
            await graph.ainvoke({"steps": [f"in{i}"]}, config(t), durability=mode)
            state = await graph.aget_state(config(t))
            assert state.values == {"steps": final(i + 1)}
            assert await durable_latest(saver, t) == state.config["configurable"]["checkpoint_id"]
        assert (await saver.astats())["dead_letters"] == 0


def _on_loop(saver: HybridSaver, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, saver.loop).result()


async def _drop_keys(saver: AsyncHybridSaver, prefix: str) -> None:
    keys = [k async for k in saver.hot.redis.scan_iter(f"{prefix}:*")]
    if keys:
        await saver.hot.redis.delete(*keys)


@pytest.mark.parametrize(("durable_url", "mode"), WRITE_THROUGH_CASES, indirect=["durable_url"])
def test_write_through_sync_class_every_run_durability(
    redis_url: str, durable_url: str, key_prefix: str, mode: RunDurability
) -> None:
    with HybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, durability="write_through", flush_timeout=10
    ) as saver:
        try:
            t = tid("wt-sync")
            graph = build(saver)
            for i in range(5):
                graph.invoke({"steps": [f"in{i}"]}, config(t), durability=mode)
                state = graph.get_state(config(t))
                assert state.values == {"steps": final(i + 1)}
                stored = _on_loop(saver, saver.backend.get(t, "", None))
                assert stored is not None
                assert stored.checkpoint_id == state.config["configurable"]["checkpoint_id"]
            assert saver.stats()["dead_letters"] == 0
        finally:
            _on_loop(saver, _drop_keys(saver, key_prefix))


async def test_backlog_bound_write_through_with_external_reconciler_no_false_error(
    redis_url: str, durable_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hybrid_saver(
        redis_url,
        durable_url,
        key_prefix,
        reconciler="external",
        max_backlog=1,
        on_backlog="write_through",
        flush_timeout=10,
    ) as saver:
        waits = 0
        real_wait = saver.writes.wait_applied

        async def counted(*args: Any) -> None:
            nonlocal waits
            waits += 1
            await real_wait(*args)

        monkeypatch.setattr(saver.writes, "wait_applied", counted)
        # Sustained overload: the bound is always reached (the backlog the
        # monitor sees is at least 1), so every write waits for the durable
        # store; the outbox and the reconciler are real.
        real_backlog = saver.outbox.backlog

        async def backlog() -> tuple[int, float | None]:
            n, age = await real_backlog()
            return max(n, 1), age

        monkeypatch.setattr(saver.outbox, "backlog", backlog)
        await asyncio.sleep(0.3)  # the monitor sees it
        assert saver.overloaded
        graph = build(saver)
        async with reconciler_task(saver):
            for mode in MODES:
                t = tid(f"bound-{mode}")
                for i in range(2):
                    await graph.ainvoke({"steps": [f"in{i}"]}, config(t), durability=mode)
                assert (await graph.aget_state(config(t))).values == {"steps": final(2)}
                expected = await reference_history([{"steps": ["in0"]}, {"steps": ["in1"]}], mode)
                assert summarize(await history(graph, config(t))) == expected
            assert saver.overloaded and waits >= 30  # every write waited (no aflush yet)
            await saver.aflush(timeout=10)
        assert (await saver.astats())["dead_letters"] == 0


# --- LangGraph's histories, compared with the official PostgreSQL saver -----


@pytest.mark.parametrize("mode", MODES)
async def test_history_matches_official_postgres_saver(
    redis_url: str, pg_admin_url: str, pg_url: str, key_prefix: str, mode: RunDurability
) -> None:
    inputs = [{"steps": ["in0"]}, {"steps": ["in1"]}]
    t = tid("diff")
    with pg_schema(pg_admin_url) as ref_url:
        async with AsyncPostgresSaver.from_conn_string(ref_url) as official:
            await official.setup()
            ref = build(official)
            for value in inputs:
                await ref.ainvoke(value, config(t), durability=mode)
            expected = summarize(await history(ref, config(t)))
        assert expected == await reference_history(inputs, mode)
        async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
            graph = build(saver)
            for value in inputs:
                await graph.ainvoke(value, config(t), durability=mode)
            assert summarize(await history(graph, config(t))) == expected
            await saver.aflush(timeout=10)
            assert summarize(await history(graph, config(t))) == expected
        # From the durable store alone: a saver with empty Redis, and the
        # official saver reading the hybrid's tables.
        async with hybrid_saver(redis_url, pg_url, key_prefix + "x") as cold:
            assert summarize(await history(build(cold), config(t))) == expected
        async with AsyncPostgresSaver.from_conn_string(pg_url) as official:
            assert summarize(await history(build(official), config(t))) == expected
