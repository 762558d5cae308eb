"""Operation-level workloads: the saver API called directly.

Each workload prepares its own thread per saver (untimed), then times single
calls. Checkpoints are built the way LangGraph builds them (uuid6 ids, the
saver's own `get_next_version`, only changed channels in `new_versions`), and
outside the timed region, so only the saver call is measured.
"""

from __future__ import annotations

import itertools
import random
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.base.id import uuid6
from langgraph.pregel._checkpoint import LATEST_VERSION
from redis.asyncio import Redis

from benchmarks.harness import Batch

CHANNELS = [f"ch{i}" for i in range(10)]
# The format LangGraph 1.x graphs write (empty_checkpoint() says 2: a v < 4
# checkpoint makes every saver read its parent's pending sends as well).
CHECKPOINT_V = LATEST_VERSION
_rng = random.Random(6)


def filler(n: int, rng: random.Random = _rng) -> str:
    return "".join(rng.choices(string.ascii_letters + "     ", k=n))


SMALL_TEXT = [filler(170) for _ in CHANNELS]


def small_values(step: int) -> dict[str, Any]:
    """Ten channel values of ~200 bytes each: a ~2 KB checkpoint."""
    return {ch: {"text": SMALL_TEXT[i], "n": step} for i, ch in enumerate(CHANNELS)}


def big_messages(n: int = 200, size: int = 500) -> list[BaseMessage]:
    """200 chat messages of 500 characters: ~130 KB serialized (~140 KB stored)."""
    rng = random.Random(140)
    return [
        (HumanMessage if i % 2 == 0 else AIMessage)(content=filler(size, rng), id=f"m{i}")
        for i in range(n)
    ]


BIG = big_messages()


class Chain:
    """Successive checkpoints of one thread on one saver, as LangGraph writes them."""

    def __init__(self, saver: Any, thread_id: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.values: dict[str, Any] = {}
        self.versions: dict[str, Any] = {}
        self.config: dict[str, Any] = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ""}
        }
        self.step = -1
        self.ids: list[str] = []

    def next(self, update: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        self.step += 1
        self.values.update(update)
        new_versions = {}
        for ch in update:
            v = self.saver.get_next_version(self.versions.get(ch), None)
            self.versions[ch] = new_versions[ch] = v
        checkpoint = {
            "v": CHECKPOINT_V,
            "id": str(uuid6(clock_seq=self.step)),
            "ts": datetime.now(timezone.utc).isoformat(),
            "channel_values": dict(self.values),
            "channel_versions": dict(self.versions),
            "versions_seen": {"__input__": {}},
            "updated_channels": list(update),
        }
        metadata = {"source": "loop", "step": self.step, "parents": {}}
        return self.config, checkpoint, metadata, new_versions

    def stored(self, config: dict[str, Any]) -> None:
        self.config = config
        self.ids.append(config["configurable"]["checkpoint_id"])

    async def put(self, update: dict[str, Any]) -> dict[str, Any]:
        config = await self.saver.aput(*self.next(update))
        self.stored(config)
        return config


def step_update(step: int, all_channels: bool) -> dict[str, Any]:
    """The channels a step changes: all ten, or two of them in turn."""
    values = small_values(step)
    if all_channels:
        return values
    return {ch: values[ch] for ch in (CHANNELS[step % 10], CHANNELS[(step + 5) % 10])}


def three_writes(i: int) -> list[tuple[str, Any]]:
    return [(CHANNELS[k], {"text": SMALL_TEXT[k][:60], "i": i}) for k in range(3)]


class OpRunner:
    """A batch of one op on one saver: untimed `prepare(i)`, timed `call(prepared)`."""

    def __init__(
        self,
        prepare: Callable[[int], Any],
        call: Callable[[Any], Awaitable[Any]],
        after: Callable[[Any, Any], None] | None = None,
    ) -> None:
        self.prepare = prepare
        self.call = call
        self.after = after

    async def batch(self, n: int) -> list[float]:
        clock = time.perf_counter
        out = []
        for i in range(n):
            arg = self.prepare(i)
            t0 = clock()
            result = await self.call(arg)
            out.append(clock() - t0)
            if self.after is not None:
                self.after(arg, result)
        return out


async def prepare_reads(
    saver: Any, tid: str, list_len: int = 200, *, flush: bool = True
) -> dict[str, Any]:
    """The threads read by the get/list ops (written once, untimed)."""
    read = Chain(saver, f"{tid}-read")
    for step in range(10):
        await read.put(step_update(step, all_channels=step == 0))
    await saver.aput_writes(read.config, three_writes(0), str(uuid.uuid4()))
    listed = Chain(saver, f"{tid}-list")
    for step in range(list_len):
        await listed.put(step_update(step, all_channels=step == 0))
    big = Chain(saver, f"{tid}-bigget")
    await big.put({"messages": BIG, "turn": 1})
    writes = Chain(saver, f"{tid}-writes")  # aput_writes attaches to its checkpoint
    await writes.put(small_values(0))
    if flush and hasattr(saver, "aflush"):  # hybrid: steady state, durable copy in place
        await saver.aflush()
    return {"read": read, "list": listed, "big": big, "writes": writes}


def cfg(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        c["checkpoint_id"] = checkpoint_id
    return {"configurable": c}


async def alist_all(saver: Any, config: dict[str, Any], limit: int) -> list[Any]:
    return [t async for t in saver.alist(config, limit=limit)]


async def check_readback(saver: Any, threads: dict[str, Any]) -> str:
    """Read back what the prepared threads hold; 'ok' or what is wrong."""
    read, listed, big = threads["read"], threads["list"], threads["big"]
    problems = []
    tup = await saver.aget_tuple(cfg(read.thread_id))
    if tup is None or tup.checkpoint["id"] != read.ids[-1]:
        problems.append("aget_tuple latest returned the wrong checkpoint")
    else:
        if tup.checkpoint["channel_values"].get("ch0") != read.values["ch0"]:
            problems.append("aget_tuple latest: channel ch0 differs")
        if len(tup.pending_writes or []) != 3:
            problems.append(f"aget_tuple latest: {len(tup.pending_writes or [])} writes, not 3")
    tup = await saver.aget_tuple(cfg(read.thread_id, read.ids[4]))
    if tup is None or tup.checkpoint["id"] != read.ids[4]:
        problems.append("aget_tuple by id returned the wrong checkpoint")
    listed_ids = [t.checkpoint["id"] for t in await alist_all(saver, cfg(listed.thread_id), 10)]
    if listed_ids != listed.ids[::-1][:10]:
        problems.append("alist(limit=10) is not the 10 newest, newest first")
    tup = await saver.aget_tuple(cfg(big.thread_id))
    msgs = tup.checkpoint["channel_values"].get("messages") if tup else None
    if not msgs or len(msgs) != len(BIG) or msgs[-1].content != BIG[-1].content:
        problems.append("140 KB state did not read back intact")
    return "ok" if not problems else "; ".join(problems)


def make_runner(op: str, saver: Any, tid: str, threads: dict[str, Any]) -> OpRunner:
    """The runner of op `op` on `saver` (threads from `prepare_reads`)."""
    if op == "aput_2kb":
        chain = Chain(saver, f"{tid}-aput")
        return OpRunner(
            lambda i: chain.next(small_values(chain.step + 1)),
            lambda args: saver.aput(*args),
            lambda args, config: chain.stored(config),
        )
    if op == "aput_writes":
        wchain = threads["writes"]
        state = {"i": 0}

        def prep_writes(i: int) -> tuple[Any, Any, str]:
            state["i"] += 1
            return wchain.config, three_writes(state["i"]), str(uuid.uuid4())

        return OpRunner(prep_writes, lambda a: saver.aput_writes(*a))
    if op == "aget_latest":
        c = cfg(threads["read"].thread_id)
        return OpRunner(lambda i: c, saver.aget_tuple)
    if op == "aget_new":  # a thread never written: a new id per call
        fresh = itertools.count()
        return OpRunner(lambda i: cfg(f"{tid}-new-{next(fresh)}"), saver.aget_tuple)
    if op == "aget_by_id":
        c = cfg(threads["read"].thread_id, threads["read"].ids[4])
        return OpRunner(lambda i: c, saver.aget_tuple)
    if op == "alist_10":
        c = cfg(threads["list"].thread_id)
        return OpRunner(lambda i: c, lambda c: alist_all(saver, c, 10))
    if op == "aput_140kb":
        bchain = Chain(saver, f"{tid}-bigput")
        return OpRunner(
            lambda i: bchain.next({"messages": BIG, "turn": bchain.step + 1}),
            lambda args: saver.aput(*args),
            lambda args, config: bchain.stored(config),
        )
    if op == "aget_140kb":
        c = cfg(threads["big"].thread_id)
        return OpRunner(lambda i: c, saver.aget_tuple)
    raise KeyError(op)


OPS: dict[str, str] = {
    "aput_2kb": "aput (2 KB, 10 channels)",
    "aput_writes": "aput_writes (3 writes)",
    "aget_latest": "aget_tuple latest",
    "aget_new": "aget_tuple of a new thread (never written)",
    "aget_by_id": "aget_tuple by id",
    "alist_10": "alist(limit=10), 200-checkpoint thread",
    "aput_140kb": "aput 140 KB state (200 msgs x 500 chars)",
    "aget_140kb": "aget_tuple 140 KB state",
}

# --- the floor: bare redis-py round trips in the same run --------------------------

FLOOR_PING = "floor: PING"
FLOOR_GET = "floor: GET"  # the bare read round trip of the issue #20 targets
FLOOR_PIPE = "floor: pipeline(SET+PEXPIRE)"
FLOOR_BIG = "floor: SET 140 KB"
FLOOR = FLOOR_PIPE  # the round trip the targets compare against


def floor_runners(redis: Redis, prefix: str) -> dict[str, OpRunner]:
    key = f"{prefix}:floor"
    big_value = b"x" * 140_000

    async def pipe2(_: Any) -> Any:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, b"v")
            pipe.pexpire(key, 60_000)
            return await pipe.execute()

    return {
        FLOOR_PING: OpRunner(lambda i: None, lambda _: redis.ping()),
        FLOOR_GET: OpRunner(lambda i: None, lambda _: redis.get(key)),
        FLOOR_PIPE: OpRunner(lambda i: None, pipe2),
        FLOOR_BIG: OpRunner(
            lambda i: None, lambda _: redis.set(f"{key}:big", big_value, px=60_000)
        ),
    }


def batch_of(runner: OpRunner, n: int) -> Batch:
    async def run() -> list[float]:
        return await runner.batch(n)

    return run
