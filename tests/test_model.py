"""Model-based test: hypothesis drives random LangGraph runs and operations
against the hybrid saver (options drawn per example) and, fed the same runs,
the official AsyncPostgresSaver; after every step the saver's durability
invariants are checked.

Each example: a private Redis (restartable), a fresh PostgreSQL schema for the
hybrid saver and another for the reference, and a hybrid saver with `ttl`
None/1.0, `hot_window` None/2, `durability` write_behind/write_through,
`reconciler` in_process/external (external: this test drives a
`Reconciler(saver.hot, saver.backend)` itself) and the sync or async class.

Rules, on a pool of three threads:
    run_graph      invoke (or resume after an interrupt) a four-node graph with
                   durability sync/async/exit; the value (text incl. unicode,
                   ints incl. past 64 bits, floats incl. -0.0/nan/inf) is
                   appended to a list channel and set as a scalar channel
    delete_thread, copy_thread (replaces the target), prune (keep_latest)
    sleep_past_ttl (ttl=1.0 only), reconcile_some / stall (external only),
    restart_redis (write_behind: after a flush), flush
Invariants:
    every checkpoint the hybrid saver acknowledged (a put that returned) and
    that was not deleted or pruned is readable by id, and listing the thread
    gives exactly those ids, newest first, with the values the model predicts
    (bit-exact: -0.0 stays -0.0, nan stays nan);
    threads the reference stored identically list the same checkpoints as the
    reference (paired in order: checkpoint ids are made by LangGraph per
    saver), with equal channel values (nan-aware), metadata step/source,
    parents and pending writes;
    after a flush (rule or teardown) the durable store holds exactly the
    acknowledged checkpoints of every thread, with no backlog and no dead
    letters.
A value one side refuses (the hybrid saver raises SerializationError, the
reference whatever PostgreSQL or its serializer raises) only stops the
comparison with the reference for that thread (and the model's prediction if
the hybrid saver stored part of the run); every other invariant still holds,
and the hybrid saver may refuse only what it documents refusing (ints past 64
bits, lone surrogates).

The two tests at the end are the repros of what this model found first (a
float >= 1e16 came back from PostgreSQL as an int, and a thread whose state
held 1e20 could no longer run once read back), fixed in 5dc21f8.

Budget: HYBRID_MODEL_EXAMPLES (default 4) x HYBRID_MODEL_STEPS (default 8);
a summary is printed (visible with -s):

    HYBRID_MODEL_EXAMPLES=50 HYBRID_MODEL_STEPS=20 python -m pytest tests/test_model.py -s
"""

from __future__ import annotations

import asyncio
import copy
import math
import operator
import os
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from langgraph.checkpoint.base import CheckpointTuple, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from langgraph_hybrid_saver import AsyncHybridSaver, HybridSaver, Reconciler, SerializationError
from langgraph_hybrid_saver.core import ListQuery

from .conftest import PrivateRedis, pg_schema

T = TypeVar("T")
EXAMPLES = int(os.environ.get("HYBRID_MODEL_EXAMPLES", "4"))
STEPS = int(os.environ.get("HYBRID_MODEL_STEPS", "8"))
THREADS = ("t0", "t1", "t2")
TTL = 1.0
FLUSH_TIMEOUT = 20.0
CALL_TIMEOUT = 60.0  # one call on the sync saver's loop thread
MISSING: Any = object()  # a channel that has no value
# Every rule but the graph runs is enabled once per graph run: hypothesis
# favours rules with fewer arguments (it sorts them first), so otherwise
# flush, delete_thread, ... would crowd the runs out.
GATED_RULES = frozenset(
    {
        "copy_thread",
        "delete_thread",
        "flush",
        "prune",
        "reconcile_some",
        "restart_redis",
        "sleep_past_ttl",
        "stall",
    }
)

# The official saver has no copy_thread: the reference copies its own rows.
COPY_SQL = (
    """INSERT INTO checkpoints SELECT %(dst)s, checkpoint_ns, checkpoint_id,
       parent_checkpoint_id, type, checkpoint, metadata
       FROM checkpoints WHERE thread_id = %(src)s""",
    """INSERT INTO checkpoint_blobs SELECT %(dst)s, checkpoint_ns, channel, version, type, blob
       FROM checkpoint_blobs WHERE thread_id = %(src)s""",
    """INSERT INTO checkpoint_writes SELECT %(dst)s, checkpoint_ns, checkpoint_id, task_id, idx,
       channel, type, blob, task_path FROM checkpoint_writes WHERE thread_id = %(src)s""",
)


# --- the graph --------------------------------------------------------------------


class State(TypedDict, total=False):
    items: Annotated[list[Any], operator.add]
    last: Any
    ask: bool
    count: int


def _first(state: State) -> State:
    return {"count": state.get("count", 0) + 1}


def _gate(state: State) -> State:
    if state.get("ask"):
        answer = interrupt("a value, please")
        return {"items": [answer], "last": answer, "ask": False}
    return {}


def _done(state: State) -> State:
    return {"count": state.get("count", 0) + 1}


def build_graph() -> StateGraph[State]:
    builder = StateGraph(State)
    builder.add_node("first", _first)
    builder.add_node("gate", _gate)
    builder.add_node("done", _done)
    builder.add_edge(START, "first")
    builder.add_edge("first", "gate")
    builder.add_edge("gate", "done")
    builder.add_edge("done", END)
    return builder


# --- values -----------------------------------------------------------------------

_PLAIN_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
EDGE_VALUES = [
    2**63 - 1,
    2**63,  # past int64: a blob in the hybrid saver, numeric in jsonb
    -(2**63),
    2**64,  # past 64 bits: msgpack refuses it
    10**30,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    5e-324,
    1e308,
    "",
    "a\x00b",  # NUL: no jsonb or text column holds it
    "\ud800",  # lone surrogates
    "x\udc80y",
    "\U0001f600 \u2028 \u00e9\u0301",
]
RUN_THREAD = st.sampled_from(THREADS)
RUN_DURABILITY = st.sampled_from(["sync", "async", "exit"])
VALUES = st.one_of(
    _PLAIN_TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.one_of(st.booleans(), st.none()),
    st.one_of(
        st.sampled_from(EDGE_VALUES),
        st.integers(),
        st.floats(),
        st.text(st.characters(codec=None, categories=["L", "N", "Cc", "Cs", "Zs"]), max_size=6),
    ),
)


def kind(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf"
        return "-0.0" if value == 0 and math.copysign(1, value) < 0 else "float"
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return "int"
        return "uint64" if 0 <= value < 2**64 else "int>64bit"
    if isinstance(value, str):
        if "\x00" in value:
            return "str(NUL)"
        if any("\ud800" <= c <= "\udfff" for c in value):
            return "str(surrogate)"
        return "str" if value.isascii() else "str(unicode)"
    return type(value).__name__


# What the hybrid saver refuses by design (SerializationError): ints msgpack
# cannot hold and lone surrogates (the serializer would store "?").
REFUSED_KINDS = frozenset({"int>64bit", "str(surrogate)"})


def same(a: Any, b: Any) -> bool:
    """Bit-exact equality: types, the sign of zero and nan count."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def equal(a: Any, b: Any) -> bool:
    """Equality as PostgreSQL's jsonb keeps values: nan equals nan, numbers
    compare by value (-0.0 == 0, 1e16 == 10**16)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if type(a) is not type(b):  # jsonb gave an integral float back as an int
            return float(a) == float(b)
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


# --- what the test tracks ---------------------------------------------------------


@dataclass
class Thread:
    """One thread of the pool as the model sees it."""

    acked: list[str] = field(default_factory=list)  # hybrid ids, oldest first
    # (hybrid id, reference id) in order while the reference stored the same
    # runs; None once the two sides diverged (a value one of them refused)
    pairs: list[tuple[str, str]] | None = field(default_factory=list)
    # what the latest hybrid checkpoint holds; None: unknown (a run the hybrid
    # saver refused after storing part of it)
    items: list[Any] | None = field(default_factory=list)
    last: Any = MISSING
    interrupted: bool = False


@dataclass
class Summary:
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    options: Counter[str] = field(default_factory=Counter)
    combos: set[tuple[Any, ...]] = field(default_factory=set)
    rules: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    seconds_in: Counter[str] = field(default_factory=Counter)

    def report(self) -> str:
        lines = [
            f"model test: {self.examples} examples, {self.steps} steps "
            f"(budget {EXAMPLES} x {STEPS}), {self.seconds:.1f}s",
            f"  option combinations covered: {len(self.combos)} of 32",
            "  options: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.options.items())),
            "  rules: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rules.items())),
            "  graph invocations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.runs.items())),
            "  values: " + ", ".join(f"{k} {v}" for k, v in sorted(self.values.items())),
            "  refused: " + (", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "-"),
            "  seconds in: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds_in.most_common()),
            "  invariant checks passed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.checks.items())),
        ]
        return "\n".join(lines)


SUMMARY = Summary()


def thread_config(thread: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def recorded(saver: Any, log: dict[tuple[str, str], None]) -> None:
    """Record (thread, checkpoint id) of every put the saver acknowledged
    (returned from), in the order they returned (the sync `put` may run
    through `aput`: each is recorded once)."""
    aput = saver.aput

    async def recording_aput(config: Any, checkpoint: Any, *args: Any) -> Any:
        out = await aput(config, checkpoint, *args)
        log[config["configurable"]["thread_id"], checkpoint["id"]] = None
        return out

    saver.aput = recording_aput
    if isinstance(saver, HybridSaver):
        put = saver.put

        def recording_put(config: Any, checkpoint: Any, *args: Any) -> Any:
            out = put(config, checkpoint, *args)
            log[config["configurable"]["thread_id"], checkpoint["id"]] = None
            return out

        saver.put = recording_put  # type: ignore[method-assign]


# --- the machine ------------------------------------------------------------------


class HybridModel(RuleBasedStateMachine):
    admin_url: str = ""
    workdir: Path = Path()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.resources = ExitStack()
        self.aresources = AsyncExitStack()
        self.ready = False
        self.sync, self.ttl, self.durability, self.placement = False, None, "", ""
        self.pending: set[str] = set(GATED_RULES)
        self.threads = {t: Thread() for t in THREADS}
        self.idmap: dict[str, str] = {}  # hybrid id -> reference id, never forgotten
        self.acked_log: dict[tuple[str, str], None] = {}
        self.ref_log: dict[tuple[str, str], None] = {}
        self.started = self.mark = time.monotonic()
        self.timing = "setup"

    # --- plumbing ---------------------------------------------------------------

    def count(self, rule: str) -> None:
        """A rule runs: a graph run enables every other rule once more."""
        if rule in GATED_RULES:
            self.pending.discard(rule)
        else:
            self.pending |= GATED_RULES
        SUMMARY.steps += 1
        SUMMARY.rules[rule] += 1
        self.close_timing(rule)

    def close_timing(self, name: str) -> None:
        """Time spent since the last call goes to what ran before `name`."""
        now = time.monotonic()
        SUMMARY.seconds_in[self.timing] += now - self.mark
        self.timing, self.mark = name, now

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this machine's loop (the reference's, and the
        async hybrid saver's)."""
        return self.loop.run_until_complete(coro)

    def on_hybrid(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop that owns the hybrid saver's clients."""
        if self.sync:
            future = asyncio.run_coroutine_threadsafe(coro, self.saver.loop)
            return future.result(timeout=CALL_TIMEOUT)
        return self.run(coro)

    @contextmanager
    def reconciling(self) -> Iterator[None]:
        """With reconciler="external": a reconciler of ours runs meanwhile
        (write-through waits, prune and flush need one)."""
        if self.placement == "in_process":
            yield
            return
        rec = Reconciler(self.saver.hot, self.saver.backend, linger_ms=0)
        stop = asyncio.Event()
        if self.sync:
            future: Any = asyncio.run_coroutine_threadsafe(
                rec.run(stop, drain_timeout=5), self.saver.loop
            )
        else:
            future = self.loop.create_task(rec.run(stop, drain_timeout=5))
        try:
            yield
        finally:
            if self.sync:
                self.saver.loop.call_soon_threadsafe(stop.set)
                future.result(timeout=CALL_TIMEOUT)
            else:
                stop.set()
                self.run(future)

    def pause(self, seconds: float) -> None:
        if self.sync:
            time.sleep(seconds)
        else:  # the in-process reconciler runs on this loop meanwhile
            self.run(asyncio.sleep(seconds))

    # hybrid reads, through the sync API for the sync class
    def h_list(self, thread: str) -> list[CheckpointTuple]:
        if self.sync:
            return list(self.saver.list(thread_config(thread)))

        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.saver.alist(thread_config(thread))]

        return self.run(collect())

    def h_get(self, thread: str, cid: str | None) -> CheckpointTuple | None:
        if self.sync:
            return self.saver.get_tuple(thread_config(thread, cid))
        return self.run(self.saver.aget_tuple(thread_config(thread, cid)))

    def r_list(self, thread: str) -> list[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.ref.alist(thread_config(thread))]

        return self.run(collect())

    def h_interrupted(self, thread: str) -> bool:
        if self.sync:
            return bool(self.graph_h.get_state(thread_config(thread)).interrupts)
        return bool(self.run(self.graph_h.aget_state(thread_config(thread))).interrupts)

    def r_interrupted(self, thread: str) -> bool:
        return bool(self.run(self.graph_r.aget_state(thread_config(thread))).interrupts)

    # --- setup ------------------------------------------------------------------

    @initialize(
        cls=st.sampled_from(["async", "sync"]),
        ttl=st.sampled_from([None, TTL]),
        hot_window=st.sampled_from([None, 2]),
        durability=st.sampled_from(["write_behind", "write_through"]),
        reconciler=st.sampled_from(["in_process", "external"]),
        seed=st.lists(VALUES, min_size=len(THREADS), max_size=len(THREADS)),
    )
    def open(
        self,
        cls: str,
        ttl: float | None,
        hot_window: int | None,
        durability: str,
        reconciler: str,
        seed: list[Any],
    ) -> None:
        """Open both savers, then run the graph once on every thread."""
        self.sync = cls == "sync"
        self.ttl = ttl
        self.durability = durability
        self.placement = reconciler
        options = {
            "ttl": ttl,
            "hot_window": hot_window,
            "durability": durability,
            "reconciler": reconciler,
            "flush_timeout": FLUSH_TIMEOUT,
        }
        SUMMARY.examples += 1
        SUMMARY.combos.add((cls, ttl, hot_window, durability, reconciler))
        for name, value in [("class", cls), *options.items()]:
            if name != "flush_timeout":
                SUMMARY.options[f"{name}={value}"] += 1
        self.redis = PrivateRedis(self.workdir)
        self.redis.start()
        self.resources.callback(self.redis.stop)
        hybrid_url = self.resources.enter_context(pg_schema(self.admin_url))
        ref_url = self.resources.enter_context(pg_schema(self.admin_url))
        if self.sync:
            self.saver: Any = HybridSaver(self.redis.url, hybrid_url, **options)
        else:
            self.saver = self.run(AsyncHybridSaver.open(self.redis.url, hybrid_url, **options))
        self.ref: AsyncPostgresSaver = self.run(
            self.aresources.enter_async_context(AsyncPostgresSaver.from_conn_string(ref_url))
        )
        self.run(self.ref.setup())
        recorded(self.saver, self.acked_log)
        recorded(self.ref, self.ref_log)
        builder = build_graph()
        self.graph_h = builder.compile(checkpointer=self.saver)
        self.graph_r = builder.compile(checkpointer=self.ref)
        self.ready = True
        for thread, value in zip(THREADS, seed, strict=True):
            self._run_graph(thread, "sync", value, False)

    def teardown(self) -> None:
        self.close_timing("teardown")
        try:
            if self.ready:
                self.flush_and_check_durable("teardown")
        finally:
            try:
                saver = getattr(self, "saver", None)
                if isinstance(saver, HybridSaver):
                    saver.close()
                elif saver is not None:
                    self.run(saver.aclose())
            finally:
                self.run(self.aresources.aclose())
                self.resources.close()
                self.loop.close()
                self.close_timing("done")

    # --- rules ------------------------------------------------------------------

    @rule(thread=RUN_THREAD, durability=RUN_DURABILITY, value=VALUES, ask=st.booleans())
    def run_graph(self, thread: str, durability: str, value: Any, ask: bool) -> None:
        self.count("run_graph")
        self._run_graph(thread, durability, value, ask)

    @rule(
        runs=st.lists(
            st.tuples(RUN_THREAD, RUN_DURABILITY, VALUES, st.booleans()), min_size=2, max_size=4
        )
    )
    def run_graphs(self, runs: list[tuple[str, str, Any, bool]]) -> None:
        """A burst of runs (graph runs are what the other rules work on)."""
        self.count("run_graphs")
        for run in runs:
            self._run_graph(*run)

    def _run_graph(self, thread: str, durability: str, value: Any, ask: bool) -> None:
        """Invoke the graph on both savers (resume it where it waits at its
        interrupt), then update the model with what each side acknowledged."""
        SUMMARY.values[kind(value)] += 1
        model = self.threads[thread]
        cfg = thread_config(thread)
        resume_h = self.h_interrupted(thread)
        if model.items is not None:
            assert resume_h == model.interrupted, f"{thread}: interrupted={resume_h} vs the model"
        resume_r = self.r_interrupted(thread)
        if model.pairs is not None:
            assert resume_h == resume_r, f"{thread}: interrupted {resume_h} vs reference {resume_r}"

        # Command(resume=None) does not resume (LangGraph 1.2 fails with
        # UnboundLocalError in SyncPregelLoop._first): resume with a str then.
        answer = "None" if value is None else value

        def graph_input(resume: bool) -> Any:
            if resume:
                return Command(resume=answer)
            return {"items": [value], "last": value, "ask": ask}

        snap_h = [(t.checkpoint["id"], len(t.pending_writes or [])) for t in self.h_list(thread)]
        snap_r = [(t.checkpoint["id"], len(t.pending_writes or [])) for t in self.r_list(thread)]
        self.acked_log.clear()
        self.ref_log.clear()
        refused_h: SerializationError | None = None
        with self.reconciling() if self.durability == "write_through" else _nothing():
            try:
                if self.sync:
                    self.graph_h.invoke(graph_input(resume_h), cfg, durability=durability)
                else:
                    run = self.graph_h.ainvoke(graph_input(resume_h), cfg, durability=durability)
                    self.run(run)
            except SerializationError as e:
                refused_h = e
        refused_r: Exception | None = None
        try:
            self.run(self.graph_r.ainvoke(graph_input(resume_r), cfg, durability=durability))
        except Exception as e:
            refused_r = e
        SUMMARY.runs[f"durability={durability}"] += 1
        SUMMARY.runs["resumed" if resume_h else "new input"] += 1
        if refused_h is not None:
            SUMMARY.refused[f"hybrid {kind(value)}"] += 1
        if refused_r is not None:
            SUMMARY.refused[f"reference {kind(value)} ({type(refused_r).__name__})"] += 1

        new_h = sorted(cid for t, cid in self.acked_log if t == thread)
        new_r = sorted(cid for t, cid in self.ref_log if t == thread)
        model.acked = sorted(set(model.acked) | set(new_h))
        changed_h = bool(new_h) or snap_h != [
            (t.checkpoint["id"], len(t.pending_writes or [])) for t in self.h_list(thread)
        ]
        changed_r = bool(new_r) or snap_r != [
            (t.checkpoint["id"], len(t.pending_writes or [])) for t in self.r_list(thread)
        ]
        used = answer if resume_h else value
        if refused_h is not None:  # only what the hybrid saver documents refusing
            assert kind(used) in REFUSED_KINDS, (
                f"{thread}: the hybrid saver refused a storable {kind(used)} {used!r}: {refused_h}"
            )
        if refused_h is None and model.items is not None:
            appended = used
            model.items = [*model.items, appended]
            model.last = appended
            model.interrupted = ask and not resume_h
        elif refused_h is not None and changed_h:
            model.items = None  # part of the run is stored: the model cannot say what
        if model.pairs is not None:
            if refused_h is None and refused_r is None:
                assert len(new_h) == len(new_r), (
                    f"{thread}: the run stored {len(new_h)} checkpoints, the reference {len(new_r)}"
                )
                model.pairs += list(zip(new_h, new_r, strict=True))
                self.idmap.update(zip(new_h, new_r, strict=True))
            elif refused_h is None or refused_r is None or changed_h or changed_r:
                model.pairs = None  # one side refused what the other stored

    @precondition(lambda self: "delete_thread" in self.pending)
    @rule(thread=st.sampled_from(THREADS))
    def delete_thread(self, thread: str) -> None:
        self.count("delete_thread")
        self._delete(thread)

    def _delete(self, thread: str) -> None:
        if self.sync:
            self.saver.delete_thread(thread)
        else:
            self.run(self.saver.adelete_thread(thread))
        self.run(self.ref.adelete_thread(thread))
        self.threads[thread] = Thread()

    @precondition(lambda self: "copy_thread" in self.pending)
    @rule(src=st.sampled_from(THREADS), dst=st.sampled_from(THREADS))
    def copy_thread(self, src: str, dst: str) -> None:
        """Copy src over dst (dst deleted first on both sides: the reference
        copies rows and would collide with dst's own)."""
        if src == dst:
            return
        self.count("copy_thread")
        self._delete(dst)
        with self.reconciling() if self.durability == "write_through" else _nothing():
            if self.sync:
                self.saver.copy_thread(src, dst)
            else:
                self.run(self.saver.acopy_thread(src, dst))

        async def ref_copy() -> None:
            async with self.ref.lock:
                for sql in COPY_SQL:
                    await self.ref.conn.execute(sql, {"src": src, "dst": dst})

        self.run(ref_copy())
        self.threads[dst] = copy.deepcopy(self.threads[src])

    @precondition(lambda self: "prune" in self.pending)
    @rule(thread=st.sampled_from(THREADS))
    def prune(self, thread: str) -> None:
        self.count("prune")
        with self.reconciling():  # prune flushes the outbox first
            if self.sync:
                self.saver.prune([thread], strategy="keep_latest")
            else:
                self.run(self.saver.aprune([thread], strategy="keep_latest"))
        self.run(self.ref.aprune([thread], strategy="keep_latest"))
        model = self.threads[thread]
        model.acked = model.acked[-1:]
        if model.pairs is not None:
            model.pairs = model.pairs[-1:]

    @precondition(lambda self: self.ttl is not None and "sleep_past_ttl" in self.pending)
    @rule()
    def sleep_past_ttl(self) -> None:
        self.count("sleep_past_ttl")
        self.pause(TTL * 1.2)

    @precondition(lambda self: self.placement == "external" and "reconcile_some" in self.pending)
    @rule(steps=st.integers(1, 3), batch=st.integers(1, 4))
    def reconcile_some(self, steps: int, batch: int) -> None:
        """A few steps of a reconciler of ours, `batch` entries per shard each."""
        self.count("reconcile_some")
        rec = Reconciler(self.saver.hot, self.saver.backend, batch_size=batch, linger_ms=0)

        async def some() -> int:
            done = 0
            try:
                for _ in range(steps):
                    done += await rec.step(None)
            finally:
                await rec.release_all()
            return done

        SUMMARY.checks["reconciled entries (reconcile_some)"] += self.on_hybrid(some())

    @precondition(lambda self: self.placement == "external" and "stall" in self.pending)
    @rule()
    def stall(self) -> None:
        """The external reconciler is not running: nothing happens."""
        self.count("stall")

    @precondition(lambda self: "restart_redis" in self.pending)
    @rule()
    def restart_redis(self) -> None:
        """Restart Redis empty. Write-behind first flushes: what is still in
        the outbox is the documented loss window. Write-through acknowledged
        only what the durable store holds, so it restarts as is."""
        self.count("restart_redis")
        if self.durability == "write_behind":
            with self.reconciling():
                if self.sync:
                    self.saver.flush(FLUSH_TIMEOUT)
                else:
                    self.run(self.saver.aflush(FLUSH_TIMEOUT))
        self.redis.stop()
        self.redis.start()

    @precondition(lambda self: "flush" in self.pending)
    @rule()
    def flush(self) -> None:
        self.count("flush")
        self.flush_and_check_durable("flush")

    # --- invariants -------------------------------------------------------------

    def flush_and_check_durable(self, where: str) -> None:
        """After a flush (the reconciler running) the durable store holds
        exactly the acknowledged checkpoints; nothing waits, nothing died."""
        with self.reconciling():
            if self.sync:
                self.saver.flush(FLUSH_TIMEOUT)
            else:
                self.run(self.saver.aflush(FLUSH_TIMEOUT))
        backend = self.saver.backend
        for thread, model in self.threads.items():
            query = ListQuery(thread, None, None, None, None, None)
            rows = self.on_hybrid(backend.list(query))
            durable = [r.checkpoint_id for r in rows]
            assert durable == model.acked[::-1], (
                f"{where}: durable store holds {durable} for {thread}, "
                f"acknowledged {model.acked[::-1]}"
            )
            SUMMARY.checks["durable store == acknowledged (per thread, after flush)"] += 1
        stats = self.on_hybrid(self.saver.astats())
        assert stats["dead_letters"] == 0, f"{where}: dead letters {stats}"
        assert stats["backlog"] == 0, f"{where}: backlog after flush {stats}"
        SUMMARY.checks["no backlog, no dead letters (after flush)"] += 1

    @invariant()
    def acknowledged_checkpoints_are_readable_and_match(self) -> None:
        if not self.ready:
            return
        self.close_timing("invariants")
        for thread, model in self.threads.items():
            listed = self.h_list(thread)
            ids = [t.checkpoint["id"] for t in listed]
            assert ids == model.acked[::-1], (
                f"{thread}: listed {ids}, acknowledged {model.acked[::-1]}"
            )
            SUMMARY.checks["list == acknowledged, newest first"] += 1
            by_id = {t.checkpoint["id"]: t for t in listed}
            for cid in model.acked:
                got = self.h_get(thread, cid)
                assert got is not None, f"{thread}: acknowledged checkpoint {cid} is not readable"
                assert got.config["configurable"]["checkpoint_id"] == cid
                assert same(
                    got.checkpoint["channel_values"], by_id[cid].checkpoint["channel_values"]
                ), f"{thread}/{cid}: get_tuple and list disagree"
                SUMMARY.checks["acknowledged checkpoint readable by id"] += 1
            latest = self.h_get(thread, None)
            assert (latest.checkpoint["id"] if latest else None) == (
                model.acked[-1] if model.acked else None
            ), f"{thread}: latest is not the newest acknowledged checkpoint"
            if model.items is not None and listed:
                values = listed[0].checkpoint["channel_values"]
                assert same(values.get("items", []), model.items), (
                    f"{thread}: items {values.get('items')!r}, the model says {model.items!r}"
                )
                assert same(values.get("last", MISSING), model.last), (
                    f"{thread}: last {values.get('last', MISSING)!r}, the model says {model.last!r}"
                )
                SUMMARY.checks["latest values == model (bit-exact)"] += 1
            if model.pairs is not None:
                self.compare_with_reference(thread, listed, model.pairs)

    def compare_with_reference(
        self, thread: str, ours: list[CheckpointTuple], pairs: list[tuple[str, str]]
    ) -> None:
        theirs = self.r_list(thread)
        assert [t.checkpoint["id"] for t in theirs] == [r for _, r in pairs][::-1], (
            f"{thread}: the reference lists other checkpoints than it acknowledged"
        )
        assert [t.checkpoint["id"] for t in ours] == [h for h, _ in pairs][::-1]
        for a, b in zip(ours, theirs, strict=True):
            where = f"{thread}/{a.checkpoint['id']} (reference {b.checkpoint['id']})"
            assert equal(a.checkpoint["channel_values"], b.checkpoint["channel_values"]), (
                f"{where}: values {a.checkpoint['channel_values']!r} vs "
                f"{b.checkpoint['channel_values']!r}"
            )
            assert a.checkpoint.get("updated_channels") == b.checkpoint.get("updated_channels")
            for key in ("source", "step", "parents"):
                assert a.metadata.get(key) == b.metadata.get(key), f"{where}: metadata {key}"
            parent_a = a.parent_config["configurable"]["checkpoint_id"] if a.parent_config else None
            parent_b = b.parent_config["configurable"]["checkpoint_id"] if b.parent_config else None
            mapped = self.idmap.get(parent_a) if parent_a else None
            assert mapped == parent_b, f"{where}: parent {parent_a} -> {mapped}, not {parent_b}"
            writes_a = sorted(w[1] for w in a.pending_writes or [])
            writes_b = sorted(w[1] for w in b.pending_writes or [])
            assert writes_a == writes_b, f"{where}: pending writes {writes_a} vs {writes_b}"
            SUMMARY.checks["checkpoint == reference's"] += 1


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.timeout(max(120, EXAMPLES * STEPS * 5))
def test_model(pg_admin_url: str, tmp_path: Path) -> None:
    HybridModel.admin_url = pg_admin_url
    HybridModel.workdir = tmp_path
    global SUMMARY
    SUMMARY = Summary()
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            HybridModel,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        SUMMARY.seconds = time.monotonic() - started
        print("\n" + SUMMARY.report())


async def test_float_of_1e16_or_more_reads_back_as_a_float(
    redis_url: str, pg_admin_url: str, key_prefix: str
) -> None:
    """The same checkpoint read 1e+16 from Redis and 10000000000000000 once
    only the durable store had it (jsonb writes 1e+16 as integer digits)."""
    with pg_schema(pg_admin_url) as url:
        async with AsyncHybridSaver.from_conn_string(redis_url, url, key_prefix=key_prefix) as s:
            cp = empty_checkpoint()
            cp["channel_values"] = {"x": 1e16}
            cp["channel_versions"] = {"x": s.get_next_version(None, None)}
            config = await s.aput(thread_config("t"), cp, {"step": 0}, cp["channel_versions"])
            hot = await s.aget_tuple(config)
            assert hot is not None and type(hot.checkpoint["channel_values"]["x"]) is float
            await s.aflush(timeout=10)
            keys = [k async for k in s.hot.redis.scan_iter(f"{key_prefix}:*")]
            await s.hot.redis.delete(*keys)  # the hot copy is gone (TTL, restart)
            durable = await s.aget_tuple(config)
            assert durable is not None
            value = durable.checkpoint["channel_values"]["x"]
            assert type(value) is float and value == 1e16, f"read back {value!r}"


async def test_thread_with_a_float_of_1e20_continues_after_a_durable_read(
    redis_url: str, pg_admin_url: str, key_prefix: str
) -> None:
    """The state held 1e20 inline; once its hot copy was gone the durable read
    gave int 10**20, which the next checkpoint (even of a run that overwrites
    the channel) had to store as a blob, and msgpack refuses ints past 64
    bits: SerializationError at every run of the thread."""
    with pg_schema(pg_admin_url) as url:
        async with AsyncHybridSaver.from_conn_string(redis_url, url, key_prefix=key_prefix) as s:
            graph = build_graph().compile(checkpointer=s)
            config = thread_config("t")
            await graph.ainvoke({"items": [1], "last": 1e20}, config)
            await s.aflush(timeout=10)
            keys = [k async for k in s.hot.redis.scan_iter(f"{key_prefix}:*")]
            await s.hot.redis.delete(*keys)  # the hot copy is gone (TTL, restart)
            out = await graph.ainvoke({"items": [2], "last": "plain"}, config)
            assert out["items"] == [1, 2]
