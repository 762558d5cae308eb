"""What the fault-injection harness runs inside the processes it kills.

Every function named `*_main` is the body of one child process (forked by the
harness' forkserver, so a restart costs a fork, not an interpreter start). A
child appends what it has observed to its own log file, one line per event,
each with a single `os.write` on an O_APPEND descriptor, so that a SIGKILL
never leaves half a line:

    P <thread> <ns> <checkpoint_id> <t0> <t1>   `aput` returned (acknowledged)
    W <thread> <ns> <checkpoint_id> <task_id> <t1>   `aput_writes` returned
    B <thread> <task_id> <t>                    a graph task started executing
    E <thread> <key> <new>                      side effect attempted (new: 1/0)
    R <thread>                                  an interrupted run is resumed
    C <thread> <run>                            a run completed
    X <thread> <error>                          a run failed (the loop goes on)
    D <thread> <t>                              a write refused: the thread was deleted

Side effects go to a ledger (SQLite, standing for an external system that
honours idempotency keys): a retried node cannot charge twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import random
import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    empty_checkpoint,
)
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver

LEDGER_SQL = "CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, thread TEXT, pid INT)"


class EventLog:
    """One append-only file per process; each line is written by one syscall."""

    def __init__(self, folder: str, kind: str) -> None:
        path = Path(folder) / f"{kind}-{os.getpid()}.log"
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, fields)) + "\n").encode())


def _ids(config: RunnableConfig) -> tuple[str, str, str]:
    c = config["configurable"]
    return str(c["thread_id"]), c.get("checkpoint_ns", ""), c.get("checkpoint_id", "")


class LoggingSaver(AsyncHybridSaver):
    """The saver under test, logging every acknowledged put and put_writes."""

    def __init__(self, *args: Any, events: EventLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events = events

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        t0 = time.time()
        stored = await super().aput(config, checkpoint, metadata, new_versions)
        self.events.write("P", *_ids(stored), f"{t0:.6f}", f"{time.time():.6f}")
        return stored

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await super().aput_writes(config, writes, task_id, task_path)
        thread, ns, cid = _ids(config)
        self.events.write("W", thread, ns, cid, task_id, f"{time.time():.6f}")


class Ledger:
    """Side effects keyed by an idempotency key (INSERT OR IGNORE)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(LEDGER_SQL)

    def charge(self, key: str, thread: str) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO ledger (key, thread, pid) VALUES (?, ?, ?)",
            (key, thread, os.getpid()),
        )
        return cur.rowcount == 1


class State(TypedDict, total=False):
    run: int
    items: list[int]
    results: Annotated[list[str], operator.add]
    done: Annotated[list[int], operator.add]


class Branch(TypedDict):
    run: int
    item: int


def build_graph(
    saver: Any,
    events: EventLog,
    ledger: Ledger,
    fanout: int,
    pause: float,
    seed: str,
    min_pause: float = 0.0,
) -> Any:
    """prepare -> fanout x branch (Send, parallel: pending writes of one
    checkpoint) -> charge (side effect with an idempotency key) -> finish."""
    rng = random.Random(seed)

    def task_started(config: RunnableConfig) -> str:
        thread = config["configurable"]["thread_id"]
        events.write("B", thread, config["configurable"]["__pregel_task_id"], f"{time.time():.6f}")
        return str(thread)

    async def nap() -> None:
        await asyncio.sleep(rng.uniform(min_pause, pause))

    async def prepare(state: State, config: RunnableConfig) -> State:
        task_started(config)
        await nap()
        return {"items": list(range(fanout))}

    def fan_out(state: State) -> list[Send]:
        return [Send("branch", {"run": state["run"], "item": i}) for i in state["items"]]

    async def branch(arg: Branch, config: RunnableConfig) -> State:
        task_started(config)
        await nap()
        return {"results": [f"{arg['run']}:{arg['item']}"]}

    async def charge(state: State, config: RunnableConfig) -> State:
        thread = task_started(config)
        key = f"{thread}:{state['run']}"
        new = ledger.charge(key, thread)
        events.write("E", thread, key, int(new))
        await nap()
        return {}

    async def finish(state: State, config: RunnableConfig) -> State:
        task_started(config)
        await nap()
        return {"done": [state["run"]]}

    g = StateGraph(State)
    g.add_node("prepare", prepare)
    g.add_node("branch", branch)
    g.add_node("charge", charge)
    g.add_node("finish", finish)
    g.add_edge(START, "prepare")
    g.add_conditional_edges("prepare", fan_out, ["branch"])
    g.add_edge("branch", "charge")
    g.add_edge("charge", "finish")
    g.add_edge("finish", END)
    return g.compile(checkpointer=saver)


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def _open_saver(spec: dict[str, Any], events: EventLog) -> Any:
    return LoggingSaver.from_conn_string(
        spec["redis_url"],
        spec["durable_url"],
        key_prefix=spec["key_prefix"],
        reconciler="external",
        durability=spec.get("durability", "write_behind"),
        flush_timeout=spec.get("flush_timeout", 30.0),
        events=events,
        **spec.get("saver_options", {}),
    )


async def saved_state(graph: Any, thread: str) -> Any:
    """The state of the thread's latest *saved* checkpoint.

    Not `aget_state(thread)`: when every task of the last step has written,
    that applies the pending writes and reports `next == ()` although the
    checkpoint that completes the step was never saved (a crash under
    durability "async"); new input would then discard those writes. Asking
    for the checkpoint by id shows its unfinished tasks.
    """
    config = {"configurable": {"thread_id": thread}}
    latest = await graph.checkpointer.aget_tuple(config)
    return await graph.aget_state(latest.config if latest else config)


async def advance(graph: Any, thread: str, durability: str, events: EventLog) -> None:
    """Resume the thread's interrupted run, or else start its next run."""
    config = {"configurable": {"thread_id": thread}}
    state = await saved_state(graph, thread)
    if state.next:
        events.write("R", thread)
        result = await graph.ainvoke(None, config, durability=durability)
    else:
        run = len(state.values.get("done", [])) + 1
        result = await graph.ainvoke({"run": run}, config, durability=durability)
    events.write("C", thread, result["run"])


async def _worker(spec: dict[str, Any]) -> None:
    events = EventLog(spec["log_dir"], "worker")
    stop = _stop_on_sigterm()
    rng = random.Random(f"{spec['seed']}-{os.getpid()}")
    async with _open_saver(spec, events) as saver:
        graph = build_graph(
            saver,
            events,
            Ledger(spec["ledger"]),
            spec["fanout"],
            spec["pause"],
            f"{spec['seed']}-{os.getpid()}",
        )
        modes = spec.get("graph_durability", ["sync", "async", "exit"])
        max_runs = spec.get("max_runs")

        async def drive(thread: str) -> None:
            while not stop.is_set():
                try:
                    state = await saved_state(graph, thread)
                    if (
                        not state.next
                        and max_runs
                        and len(state.values.get("done", [])) >= max_runs
                    ):
                        return
                    await advance(graph, thread, rng.choice(modes), events)
                except Exception as e:  # a fault under test: record it and go on
                    events.write("X", thread, repr(f"{type(e).__name__}: {e}")[:300])
                    await asyncio.sleep(0.2)

        threads = list(spec["threads"])
        rng.shuffle(threads)
        await asyncio.gather(*(drive(t) for t in threads))


def worker_main(spec: dict[str, Any]) -> None:
    """Run graphs on `spec["threads"]` until SIGTERM (or SIGKILL)."""
    asyncio.run(_worker(spec))


async def _finish(spec: dict[str, Any]) -> None:
    events = EventLog(spec["log_dir"], "finisher")
    async with _open_saver(spec, events) as saver:
        ledger = Ledger(spec["ledger"])
        graph = build_graph(saver, events, ledger, spec["fanout"], 0.0, "finish")
        for thread in spec["threads"]:
            if (await saved_state(graph, thread)).next:
                await advance(graph, thread, "sync", events)
            # A run killed under durability "exit"/"async" may have charged
            # before its progress was saved: run it again; its key is known.
            done = (await saved_state(graph, thread)).values.get("done", [])
            key = f"{thread}:{len(done) + 1}"
            if ledger.db.execute("SELECT 1 FROM ledger WHERE key = ?", (key,)).fetchone():
                await advance(graph, thread, "sync", events)


def finisher_main(spec: dict[str, Any]) -> None:
    """Resume every interrupted run of `spec["threads"]` to completion, and
    redo a run that charged but whose progress was never saved."""
    asyncio.run(_finish(spec))


def make_checkpoint(step: int, writer: int) -> Checkpoint:
    """A checkpoint with one blob channel, `log` = [writer, step]."""
    cp = empty_checkpoint()
    version = f"{step + 1:032}.{writer:016}"
    cp["channel_values"] = {"log": [writer, step]}
    cp["channel_versions"] = {"log": version}
    return cp


async def _writer(spec: dict[str, Any]) -> None:
    """One of N concurrent writers of one thread.

    `same_checkpoint`: pending writes (`tasks` tasks x 2 writes) for the one
    checkpoint `spec["checkpoint_id"]`. `chain`: checkpoints of its own chain,
    each with a pending write, until SIGTERM.
    """
    events = EventLog(spec["log_dir"], "writer")
    stop = _stop_on_sigterm()
    slot, thread = spec["slot"], spec["thread"]
    async with _open_saver(spec, events) as saver:
        if spec["mode"] == "same_checkpoint":
            config = {
                "configurable": {
                    "thread_id": thread,
                    "checkpoint_ns": "",
                    "checkpoint_id": spec["checkpoint_id"],
                }
            }

            async def task(j: int) -> None:
                writes = [("results", f"{slot}-{j}"), ("aux", {"slot": slot, "j": j})]
                await saver.aput_writes(config, writes, f"w{slot}-{j}")

            for start in range(0, spec["tasks"], 8):
                await asyncio.gather(
                    *(task(j) for j in range(start, min(start + 8, spec["tasks"])))
                )
            return
        from langgraph_hybrid_saver import ThreadDeletedError

        parent: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        step = 0
        while not stop.is_set():
            cp = make_checkpoint(step, slot)
            metadata: CheckpointMetadata = {"source": "loop", "step": step, "writer": slot}
            try:
                stored = await saver.aput(parent, cp, metadata, cp["channel_versions"])
                await saver.aput_writes(stored, [("results", f"{slot}-{step}")], f"w{slot}-{step}")
            except ThreadDeletedError:  # a late writer told its thread is gone: it stops
                events.write("D", thread, f"{time.time():.6f}")
                return
            parent, step = stored, step + 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), spec.get("pause", 0.005))


def writer_main(spec: dict[str, Any]) -> None:
    asyncio.run(_writer(spec))


async def _contend(spec: dict[str, Any]) -> None:
    """Take the thread's lease, then resume its interrupted run (or run the
    next one): a retry that may have been dispatched twice. Logs
    `L <thread> <token> <what>`.

    Modes: "run"; "hang" (hold the lease and never finish: to be killed);
    "wait" (retry until the lease is free, then run). `hold_s` keeps the
    lease that long after the run.
    """
    from langgraph_hybrid_saver import ThreadBusyError

    events = EventLog(spec["log_dir"], "contender")
    thread, mode = spec["thread"], spec["mode"]
    async with _open_saver(spec, events) as saver:
        graph = build_graph(
            saver,
            events,
            Ledger(spec["ledger"]),
            spec["fanout"],
            spec["pause"],
            thread,
            spec.get("min_pause", 0.0),
        )
        if go := spec.get("go_file"):  # a start line shared with the other contender
            events.write("L", thread, "-", "ready")
            while not os.path.exists(go):
                await asyncio.sleep(0.002)
        busy = 0
        while True:
            try:
                async with saver.alease(thread, ttl=spec["ttl"]) as token:
                    events.write("L", thread, token, f"acquired {busy} {time.time():.6f}")
                    if mode == "hang":
                        await asyncio.sleep(3600)
                    try:
                        await advance(graph, thread, "sync", events)
                        events.write("L", thread, token, "ran")
                    except ThreadBusyError:
                        events.write("L", thread, token, "fenced")
                        return
                    await asyncio.sleep(spec.get("hold_s", 0))
                    return
            except ThreadBusyError:
                busy += 1
                if mode != "wait":
                    events.write("L", thread, "-", "busy")
                    return
                await asyncio.sleep(0.05)


def contender_main(spec: dict[str, Any]) -> None:
    asyncio.run(_contend(spec))
