"""A/B experiments behind the findings on missed targets.

Each runs variants of the hybrid saver in one process, interleaved in rounds
like the main suite, each variant on its own Redis client, key prefix and
PostgreSQL schema:

* `parser`: redis-py's pure-Python RESP3 reply parser vs hiredis
  (`parser_class=`); hiredis must be importable (`pip install hiredis`, or
  `--extra-site DIR`).
* `placement`: where the reconciler runs: as a task on the saver's event
  loop (a saver built on injected clients), on its own thread and loop (the
  default of `from_conn_string`/`open`; with and without the 10 ms linger),
  in a worker process, or nowhere (reconciler="external" and no worker: the
  hot path alone, the outbox just grows) — with the floor.
* `bulk`: a reconcile batch's rows into PostgreSQL: executemany in
  pipeline mode vs one INSERT ... SELECT FROM unnest(arrays).
* `lanes`: the hot-path scripts on the saver's own connection
  (langgraph_hybrid_saver/lanes.py, written and read directly; connections
  per call in flight when lanes.md was measured) vs through redis-py's
  command layer (`saver.hot.run.lanes = None`), with the floor.
* `pipelining`: the hot-path scripts on one pipelined connection (the
  package's lanes.py: calls of one loop turn share a write, replies are read
  as they arrive) vs a prototype of the lanes it replaced (a connection per
  call in flight, each written and read by its caller) vs redis-py's
  command layer; ops, sequential and 16-concurrent graphs.
* `acks`: reconcile lag under the 16-concurrent graph load with the
  in-process reconciler deleting each batch's entries in the same round trip
  as its next read (`run`'s default) or in a round trip of their own,
  alternating on one saver.
* `hotpath`: one aput taken apart (no reconciler running): encoding, the
  put script's round trip, a no-op script with the same arguments, the floor;
  and prototypes of the put script (the package's own script edited in
  memory: without the blob copies in the outbox entry, without the PEXPIRE
  refresh) to price each part on the server.
* `pinned`: blob values of 4-140 KB sent beside the put script (a SET in
  the same MULTI) vs through it as Lua arguments: aput and aget_tuple.
* `toast`: a 140 KB blob into PostgreSQL with the column's TOAST
  compression pglz (the default), lz4 (what setup sets) or none.

    python -m benchmarks.experiments NAME [--quick] [--out FILE]

NAME: parser, placement, lanes, pipelining, acks, linger, hotpath, bulk, pinned
or toast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# redis-py decides at import whether hiredis is there (and langgraph imports
# redis-py), so --extra-site must be on sys.path before any other import.
for _i, _arg in enumerate(sys.argv[:-1]):
    if _arg == "--extra-site":
        sys.path.append(str(Path(sys.argv[_i + 1]).resolve()))

from benchmarks import competitors as comp  # noqa: E402
from benchmarks.harness import interleave, summarize  # noqa: E402
from benchmarks.report import table  # noqa: E402

PURE, HIREDIS = "pure-Python RESP3", "hiredis"
IN_PROCESS, WORKER, NONE = "task on the loop", "worker process", "no reconciler"
THREAD, THREAD_NO_LINGER = "own thread", "own thread, no linger"
TASK_NO_LINGER = "task, no linger"


def parser_class(name: str) -> Any:
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP3Parser

    return _AsyncHiredisParser if name == HIREDIS else _AsyncRESP3Parser


@asynccontextmanager
async def open_saver(
    env: comp.Env,
    label: str,
    *,
    parser: str = PURE,
    placement: str = IN_PROCESS,
    linger_ms: int | None = None,
) -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    from langgraph_hybrid_saver import AsyncHybridSaver, open_backend

    prefix = f"bench{env.run_id}x{label}"
    in_process = (IN_PROCESS, TASK_NO_LINGER, THREAD, THREAD_NO_LINGER)
    reconciler = "in_process" if placement in in_process else "external"
    linger = 0 if placement in (THREAD_NO_LINGER, TASK_NO_LINGER) else 10
    linger = linger if linger_ms is None else linger_ms
    async with comp.pg_durable(env) as url:
        if placement in (THREAD, THREAD_NO_LINGER):
            opened = await comp.open_retrying(
                lambda: AsyncHybridSaver.open(
                    env.redis_url, url, key_prefix=prefix, reconcile_linger_ms=linger
                )
            )
            try:
                yield opened
            finally:
                await opened.aclose()
                await comp.drop_prefix_url(env.redis_url, prefix)
            return
        redis = Redis.from_url(env.redis_url, parser_class=parser_class(parser))
        backend = open_backend(url)
        await backend.open()
        saver = AsyncHybridSaver(
            redis,
            backend,
            key_prefix=prefix,
            reconciler=reconciler,  # type: ignore[arg-type]
            reconcile_linger_ms=linger,
        )
        await comp.open_retrying(saver.setup)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if placement == WORKER:
                    await stack.enter_async_context(comp.reconciler_worker(env, url, prefix))
                yield saver
        finally:
            await comp.drop_prefix(redis, prefix)
            await saver.aclose()
            await backend.close()
            await redis.aclose()


async def drain_rate(saver: Any, run_id: str, n: int) -> float:
    from benchmarks.ops import Chain, small_values
    from langgraph_hybrid_saver import Reconciler

    chains = [Chain(saver, f"{run_id}-xdrain-{i}-{time.monotonic_ns()}") for i in range(20)]
    for chain in chains:
        for step in range(n // 20):
            await chain.put(small_values(step))
    worker = Reconciler(saver.hot, saver.backend)
    t0 = time.perf_counter()
    while await worker.step(None) > 0:
        pass
    seconds = time.perf_counter() - t0
    await worker.release_all()
    return (n // 20) * 20 / seconds


def _header(names: Sequence[str], last: str) -> list[str]:
    """The columns `_row` fills: each variant, each against the first, `last`."""
    return ["metric", *names, *(f"{n} / {names[0]}" for n in names[1:]), last]


def _row(metric: str, values: dict[str, float], names: Sequence[str], fmt: str) -> list[str]:
    base = values[names[0]]
    return [metric, *(format(values[n], fmt) for n in names)] + [
        f"{values[n] / base:.2f}x" for n in names[1:]
    ]


async def compare(
    savers: dict[str, Any], env: comp.Env, ops: Sequence[str], graph_modes: Sequence[str],
    rounds: int, warmup: int, batch: int, extra: dict[str, Any] | None = None,
    concurrent_modes: Sequence[str] = (), redis_cpu: Any = None,
) -> list[list[str]]:  # fmt: skip
    """Interleaved op latencies and sequential (and, for `concurrent_modes`,
    16-worker) graph throughput of each variant; with `redis_cpu` (a client of
    the savers' Redis), the server's CPU time per graph invocation too."""
    from benchmarks.graphs import GraphRunner
    from benchmarks.ops import batch_of, make_runner, prepare_reads

    rng = random.Random(6)
    names = list(savers)
    rows: list[list[str]] = []
    threads = {}
    # Deferred reconciler work finishes untimed after each variant's batch.
    settle = {n: s.aflush for n, s in savers.items() if n != NONE}
    for n, s in savers.items():
        # With no reconciler nothing drains: aflush would wait forever.
        threads[n] = await prepare_reads(s, f"{env.run_id}-{n[:6]}", flush=n != NONE)
    for op in ops:
        runners: dict[str, Any] = {
            n: make_runner(op, s, f"{env.run_id}-{n[:6]}", threads[n]) for n, s in savers.items()
        }
        runners |= extra or {}
        size = max(batch // 3, 2) if "140kb" in op else batch
        samples = await interleave(
            {n: batch_of(r, size) for n, r in runners.items()},
            rounds=rounds, warmup=warmup, rng=rng, settle=settle,
        )  # fmt: skip
        p50 = {n: summarize(samples[n])["p50"] * 1e6 for n in runners}
        rows.append(_row(f"{op} p50 µs", p50, names, ",.0f"))
        if extra:
            rows[-1].append("; ".join(f"{f}: {p50[f]:,.0f}" for f in extra))
    shapes = [("sequential", m) for m in graph_modes]
    shapes += [("16 concurrent", m) for m in concurrent_modes]
    tail = [""] if extra else []  # the floors column
    for shape, mode in shapes:
        graphs = {
            n: GraphRunner(s, mode, f"{env.run_id}-{n[:6]}-g{mode}{shape[:3]}")
            for n, s in savers.items()
        }
        per_batch = max(batch // 2, 3) if shape == "sequential" else max(batch // 8, 1)
        invocations = per_batch if shape == "sequential" else per_batch * 16
        cpu: dict[str, list[float]] = {n: [] for n in names}
        samples = await interleave(
            {n: with_redis_cpu(redis_cpu, cpu[n], invocations,
                               g.sequential(per_batch, [], 0) if shape == "sequential"
                               else g.concurrent(per_batch)) for n, g in graphs.items()},
            rounds=rounds, warmup=warmup, rng=rng, settle=settle,
        )  # fmt: skip
        thr = {n: 1 / summarize(samples[n])["p50"] for n in names}
        rows.append([*_row(f"graph {shape} ({mode}) inv/s", thr, names, ",.0f"), *tail])
        if redis_cpu is not None:
            used = {n: statistics.median(cpu[n][warmup:]) for n in names}
            metric = f"graph {shape} ({mode}) Redis CPU µs/inv"
            rows.append([*_row(metric, used, names, ",.0f"), *tail])
    return rows


async def redis_cpu_seconds(redis: Any) -> float:
    """The Redis server's CPU time so far (INFO's used_cpu_sys + used_cpu_user)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def with_redis_cpu(redis: Any, out: list[float], invocations: int, run: Any) -> Any:
    """`run`, appending the Redis server's CPU µs per invocation of each batch
    to `out` (nothing when `redis` is None)."""
    if redis is None:
        return run

    async def timed() -> list[float]:
        before = await redis_cpu_seconds(redis)
        samples = await run()
        out.append((await redis_cpu_seconds(redis) - before) * 1e6 / invocations)
        return samples

    return timed


async def compare_with_floors(
    savers: dict[str, Any], env: comp.Env, ops: Sequence[str], graph_modes: Sequence[str],
    rounds: int, warmup: int, batch: int, floor_names: Sequence[str],
) -> list[list[str]]:  # fmt: skip
    """`compare`, with the named bare-Redis floors measured in the same rounds."""
    from redis.asyncio import Redis

    from benchmarks.ops import floor_runners

    floor_redis, prefix = Redis.from_url(env.redis_url), f"bench{env.run_id}xf"
    try:
        floors = floor_runners(floor_redis, prefix)
        extra = {name: floors[name] for name in floor_names}
        return await compare(savers, env, ops, graph_modes, rounds, warmup, batch, extra)
    finally:
        await comp.drop_prefix(floor_redis, prefix)
        await floor_redis.aclose()


async def parser_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    rounds, warmup, batch = (3, 1, 5) if quick else (15, 2, 25)
    async with contextlib.AsyncExitStack() as stack:
        savers = {p: await stack.enter_async_context(open_saver(env, p[:4].lower(), parser=p))
                  for p in (PURE, HIREDIS)}  # fmt: skip
        rows = await compare(
            savers, env, ("aput_2kb", "aput_writes", "aget_latest", "alist_10"), ("sync",),
            rounds, warmup, batch,
        )  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        ext = {p: await stack.enter_async_context(
                   open_saver(env, f"d{p[:4].lower()}", parser=p, placement=NONE))
               for p in (PURE, HIREDIS)}  # fmt: skip
        n = 400 if quick else 3000
        rates = {p: await drain_rate(ext[p], env.run_id, n) for p in (PURE, HIREDIS)}
        rows.append(_row("reconciler drain checkpoints/s", rates, [PURE, HIREDIS], ",.0f"))
    import hiredis  # type: ignore[import-not-found, unused-ignore]
    import redis

    note = (
        f"redis-py {redis.__version__}, hiredis {hiredis.__version__}; Hybrid[postgres] with "
        "its in-process reconciler; the drain: reconciler='external', then one timed Reconciler."
    )
    return note, ["metric", PURE, HIREDIS, "hiredis / pure"], rows


async def placement_experiment(
    env: comp.Env, quick: bool
) -> tuple[str, list[str], list[list[str]]]:
    from benchmarks.ops import FLOOR, FLOOR_BIG

    rounds, warmup, batch = (3, 1, 5) if quick else (15, 2, 25)
    names = (IN_PROCESS, TASK_NO_LINGER, THREAD, THREAD_NO_LINGER, WORKER, NONE)
    async with contextlib.AsyncExitStack() as stack:
        savers = {p: await stack.enter_async_context(open_saver(env, f"p{i}", placement=p))
                  for i, p in enumerate(names)}  # fmt: skip
        rows = await compare_with_floors(
            savers, env, ("aput_2kb", "aput_writes", "aget_latest", "aput_140kb"),
            ("sync", "exit"), rounds, warmup, batch, (FLOOR, FLOOR_BIG),
        )  # fmt: skip
    note = (
        "Hybrid[postgres], redis-py's default parser (hiredis when installed). "
        "'no reconciler': reconciler='external' "
        "with no worker, so only the hot path runs (the outbox just grows): its distance to "
        "the floor is what the hot path itself costs."
    )
    header = _header(names, "floors")
    return note, header, rows


async def lag_rows(savers: dict[str, Any], env: comp.Env, quick: bool) -> list[list[str]]:
    """Reconcile lag p50 and p99 of each variant under the 16-worker graph load
    (`async` durability), the variants in a random order per repeat."""
    from benchmarks.reconcile import lag_under_load

    names = list(savers)
    per_worker, repeats = (3, 1) if quick else (25, 3)
    lags: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    rng = random.Random(6)
    for i in range(repeats):
        for k, name in enumerate(rng.sample(names, len(names))):
            r = await lag_under_load(savers[name], f"{env.run_id}-lg{i}x{k}", per_worker)
            lags[name].append((r["entry_p50_ms"], r["entry_p99_ms"]))
    rows = []
    for k, label in ((0, "lag p50 ms"), (1, "lag p99 ms")):
        values = {n: statistics.median(v[k] for v in lags[n]) for n in names}
        rows.append([*_row(f"{label} (16 workers, median of {repeats})", values, names, ".1f"), ""])
    return rows


async def linger_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    from benchmarks.ops import FLOOR

    rounds, warmup, batch = (3, 1, 5) if quick else (15, 2, 25)
    lingers = (10, 25, 50, 100)
    names = [f"linger {ms} ms" for ms in lingers]
    async with contextlib.AsyncExitStack() as stack:
        savers = {
            name: await stack.enter_async_context(
                open_saver(env, f"l{ms}", parser=HIREDIS, linger_ms=ms)
            )
            for name, ms in zip(names, lingers, strict=True)
        }
        rows = await compare_with_floors(
            savers, env, ("aput_2kb", "aput_writes"), ("sync", "exit"), rounds, warmup, batch,
            (FLOOR,),
        )  # fmt: skip
        rows += await lag_rows(savers, env, quick)
    note = (
        "Hybrid[postgres] with its in-process reconciler (a task on the saver's loop), hiredis "
        "parser, `reconcile_linger_ms` varied: after a partial batch the reconciler waits until "
        "linger_ms after the step began before reading again. Lag: outbox entry creation to the "
        "durable commit of its batch, 16 workers invoking the support graph (`async` durability)."
    )
    header = _header(names, "floor")
    return note, header, rows


LANES, NO_LANES = "lanes", "redis-py command layer"


async def lanes_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    from redis.asyncio import Redis

    from benchmarks.ops import FLOOR, FLOOR_BIG, floor_runners

    rounds, warmup, batch = (3, 1, 5) if quick else (15, 2, 25)
    async with contextlib.AsyncExitStack() as stack:
        savers = {
            v: await stack.enter_async_context(open_saver(env, f"l{i}", parser=HIREDIS))
            for i, v in enumerate((LANES, NO_LANES))
        }
        savers[NO_LANES].hot.run.lanes = None  # every script through redis-py
        floor_redis = Redis.from_url(env.redis_url)
        stack.push_async_callback(floor_redis.aclose)
        floors = floor_runners(floor_redis, f"bench{env.run_id}xlf")
        rows = await compare(
            savers, env, ("aput_2kb", "aput_writes", "aget_latest", "alist_10", "aput_140kb"),
            ("sync",), rounds, warmup, batch,
            extra={FLOOR: floors[FLOOR], FLOOR_BIG: floors[FLOOR_BIG]},
        )  # fmt: skip
        await comp.drop_prefix(floor_redis, f"bench{env.run_id}xlf")
    note = "Hybrid[postgres] with its in-process reconciler, hiredis parser."
    return note, _header((LANES, NO_LANES), "floors"), rows


PIPELINED, PER_CALL = "one pipelined connection", "a connection per call (before)"


def per_call_lanes(redis: Any) -> Any:
    """A prototype of the lanes the pipelined connection replaced (lanes.py
    before it): a free list of connections, one per call in flight, each
    written and read by its caller. No timeouts: a benchmark prototype."""
    import hiredis
    from redis._parsers.base import BaseParser

    from langgraph_hybrid_saver.hot.connection import Lanes

    class PerCallLanes(Lanes):
        idle: list[tuple[Any, Any]]

        async def call(self, *args: Any) -> Any:
            if self.idle:
                conn, reader = self.idle.pop()
            else:
                conn = self.pool.make_connection()
                await conn.connect()
                reader = hiredis.Reader(replyError=BaseParser.parse_error)
            conn._writer.write(hiredis.pack_command(args))
            while (reply := reader.gets()) is False:
                reader.feed(await conn._reader.read(65536))
            self.idle.append((conn, reader))
            if isinstance(reply, Exception):
                raise reply
            return reply

        async def aclose(self) -> None:
            idle, self.idle = self.idle, []
            for conn, _ in idle:
                await conn.disconnect()

    lanes = PerCallLanes(redis)
    lanes.idle = []
    return lanes


async def pipelining_experiment(
    env: comp.Env, quick: bool
) -> tuple[str, list[str], list[list[str]]]:
    from redis.asyncio import Redis

    from benchmarks.ops import FLOOR, floor_runners

    rounds, warmup, batch = (3, 1, 8) if quick else (15, 2, 32)
    names = (PIPELINED, PER_CALL, NO_LANES)
    async with contextlib.AsyncExitStack() as stack:
        savers = {
            v: await stack.enter_async_context(open_saver(env, f"pl{i}", parser=HIREDIS))
            for i, v in enumerate(names)
        }
        savers[PER_CALL].hot.run.lanes = per_call_lanes(savers[PER_CALL].hot.redis)
        savers[NO_LANES].hot.run.lanes = None  # every script through redis-py
        floor_redis = Redis.from_url(env.redis_url)
        stack.push_async_callback(floor_redis.aclose)
        floors = floor_runners(floor_redis, f"bench{env.run_id}xpf")
        rows = await compare(
            savers, env, ("aput_2kb", "aput_writes", "aget_latest"), ("sync",), rounds, warmup,
            batch, extra={FLOOR: floors[FLOOR]}, concurrent_modes=("sync", "async", "exit"),
            redis_cpu=floor_redis,
        )  # fmt: skip
        rows += await lag_rows(savers, env, quick)
        await comp.drop_prefix(floor_redis, f"bench{env.run_id}xpf")
    note = (
        "Hybrid[postgres] with its in-process reconciler, hiredis parser. 16 concurrent: 16 "
        "asyncio workers on the saver's loop invoking the support graph (a new thread each). "
        "Redis CPU: the server's used_cpu_sys + used_cpu_user (INFO) over each batch, per "
        "invocation, median over the batches (its in-process reconciler's reads included). "
        "Lag: outbox entry creation to the durable commit of its batch, 16 workers invoking "
        "the support graph (`async` durability)."
    )
    header = _header(names, "floor")
    return note, header, rows


async def acks_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:

    from benchmarks.reconcile import lag_under_load

    deferred, own = "with the next read", "own round trip"
    pairs, per_worker = (1, 3) if quick else (4, 25)
    rows: list[list[str]] = []
    lags: dict[str, list[tuple[float, float]]] = {deferred: [], own: []}
    async with open_saver(env, "acks", parser=HIREDIS) as saver:
        reconciler = saver.reconciler
        step = reconciler.step

        async def undeferred(block_ms: int | None = None, *, defer_ack: bool = False) -> int:
            return int(await step(block_ms, defer_ack=False))

        await lag_under_load(saver, f"{env.run_id}-acks-warmup", per_worker)  # discarded
        for i in range(pairs):
            for mode in (deferred, own) if i % 2 == 0 else (own, deferred):
                reconciler.step = step if mode == deferred else undeferred
                r = await lag_under_load(saver, f"{env.run_id}-acks{i}{mode[:3]}", per_worker)
                lags[mode].append((r["entry_p50_ms"], r["entry_p99_ms"]))
                p50, p99, rate = r["entry_p50_ms"], r["entry_p99_ms"], r["invocations_per_s"]
                rows.append([f"{i + 1}", mode, f"{p50:.1f}", f"{p99:.1f}", f"{rate:.0f}"])
        reconciler.step = step
    for mode, v in lags.items():
        p50 = statistics.median(a for a, _ in v)
        p99 = statistics.median(b for _, b in v)
        rows.append(["median", mode, f"{p50:.1f}", f"{p99:.1f}", ""])
    note = (
        "Hybrid[postgres], in-process reconciler, 16 workers invoking the support graph "
        f"({per_worker} invocations each, `async` durability); the two ways alternate on one "
        "saver, in swapped order every other pair, after one discarded warm-up run. Lag: outbox "
        "entry creation to the durable commit of its batch."
    )
    return note, ["pair", "applied entries deleted", "lag p50 ms", "lag p99 ms", "inv/s"], rows


async def script_call(
    hot_tier: Any, row: Any, refs: Any, blobs: Any
) -> tuple[list[str], list[Any]]:
    """The keys and arguments `HotTier.put` sends to its script (captured, so
    the experiment follows the package's argument layout)."""
    captured: dict[str, Any] = {}

    async def capture(script: Any, thread_id: str, args: list[Any]) -> str:
        captured["keys"] = [hot_tier.base(thread_id), hot_tier.outbox(thread_id)]
        captured["args"] = args
        return "0-0"

    real = hot_tier._fenced
    hot_tier._fenced = capture
    try:
        await hot_tier.put(row, refs, blobs)
    finally:
        hot_tier._fenced = real
    return captured["keys"], captured["args"]


async def hotpath_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:

    from benchmarks.ops import BIG, Chain, small_values
    from langgraph_hybrid_saver.core import encode_put
    from langgraph_hybrid_saver.hot.lua import source

    put = source("put")

    copy_loop = re.search(r"for i = (\w+), #ARGV do entry\[#entry \+ 1\] = ARGV\[i\] end", put)
    variants = {
        "put script": put,
        "put script, entry without blob copies": put.replace(
            copy_loop.group(0),
            f"for i = {copy_loop.group(1)}, #ARGV, 2 do entry[#entry + 1] = ARGV[i]; "
            "entry[#entry + 1] = '' end",
        )
        if copy_loop
        else put,
        "put script without PEXPIRE refresh": put.replace(
            "expire_ns(ns, ttl)\nreturn id", "return id"
        ),
        "no-op script, same arguments": "return redis.call('PING')",
    }
    if len(set(variants.values())) != len(variants):
        raise RuntimeError("the put script changed: update the prototypes in hotpath_experiment")
    n = 60 if quick else 400
    rows: list[list[str]] = []
    rng = random.Random(6)
    async with open_saver(env, "hp", parser=HIREDIS, placement=NONE) as saver:
        redis = saver.hot.redis
        scripts = {k: redis.register_script(v) for k, v in variants.items()}
        floor_key = f"bench{env.run_id}xhp:floor"
        for label, update in (
            ("2 KB, 10 channels", small_values),
            ("140 KB", lambda step: {"messages": BIG, "turn": step}),
        ):
            chain = Chain(saver, f"{env.run_id}-hp-{label[:3]}")
            res: dict[str, list[float]] = {
                k: [] for k in ("encode_put", *variants, "pipeline floor", "whole aput")
            }
            for _ in range(n):
                call = chain.next(update(chain.step + 1))
                row, refs, blobs = encode_put(saver.serde, *call)
                keys, args = await script_call(saver.hot, row, refs, blobs)
                order = list(res)
                rng.shuffle(order)
                for what in order:
                    t0 = time.perf_counter()
                    if what == "encode_put":
                        encode_put(saver.serde, *call)
                    elif what in scripts:
                        await scripts[what](keys=keys, args=args)
                    elif what == "pipeline floor":
                        async with redis.pipeline(transaction=False) as pipe:
                            pipe.set(floor_key, b"v")
                            pipe.pexpire(floor_key, 60_000)
                            await pipe.execute()
                    else:
                        config = await saver.aput(*call)
                    res[what].append(time.perf_counter() - t0)
                chain.stored(config)
            p50 = {k: statistics.median(v) * 1e6 for k, v in res.items()}
            for k, v in p50.items():
                rows.append([label, k, f"{v:,.0f}", f"{v / p50['pipeline floor']:.2f}x"])
    note = (
        "Hybrid[postgres] with reconciler='external' and no worker (only the hot path runs), "
        "hiredis parser (a core dependency). The script rows call the scripts through redis-py; "
        "'whole aput' is the saver's own call, on its lanes. The prototypes are the package's "
        "put script edited in memory, not package code."
    )
    return note, ["checkpoint", "step", "p50 µs", "x floor"], rows


async def pinned_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    """Large blob values beside the put script (a SET in the same MULTI) or
    through it (a Lua argument), by size: what sets PIN_MIN_BYTES; and at
    140 KB with the in-process reconciler running too."""
    from benchmarks.ops import BIG, Chain, big_messages

    beside, through = "beside the script", "through Lua"
    sizes = [
        (f"{len(m) * 500 // 1000} KB of messages", m)
        for m in (big_messages(n) for n in (8, 16, 32, 64))
    ]
    sizes.append(("140 KB state (200 messages)", BIG))
    n = 40 if quick else 300
    rng = random.Random(6)
    rows: list[list[str]] = []
    pin_min = {beside: 2048, through: 0}  # beside: every value over 2 KB
    for placement, cases in ((NONE, sizes), (IN_PROCESS, sizes[-1:])):
        async with open_saver(env, "pn", parser=HIREDIS, placement=placement) as saver:
            redis = saver.hot.redis
            for label, messages in cases:
                where = "" if placement == NONE else ", in-process reconciler"
                chains = {
                    v: Chain(saver, f"{env.run_id}-pn{placement[:3]}{label[:3]}{v[:3]}")
                    for v in pin_min
                }
                res: dict[tuple[str, str], list[float]] = {
                    (v, op): [] for v in pin_min for op in ("aput", "aget_tuple", "cpu")
                }
                for i in range(n + n // 10):
                    order = list(pin_min)
                    rng.shuffle(order)
                    for v in order:
                        saver.hot.pin_min = pin_min[v]
                        call = chains[v].next({"messages": messages, "turn": i})
                        c0 = await redis_cpu_seconds(redis)
                        t0 = time.perf_counter()
                        config = await saver.aput(*call)
                        t1 = time.perf_counter()
                        c1 = await redis_cpu_seconds(redis)
                        t2 = time.perf_counter()
                        got = await saver.aget_tuple(config)
                        t3 = time.perf_counter()
                        chains[v].stored(config)
                        if got is None or len(got.checkpoint["channel_values"]["messages"]) != len(
                            messages
                        ):
                            raise RuntimeError(f"{v}: the checkpoint did not read back whole")
                        if i >= n // 10:  # warm-up discarded
                            res[(v, "aput")].append(t1 - t0)
                            res[(v, "aget_tuple")].append(t3 - t2)
                            res[(v, "cpu")].append(c1 - c0)
                for op, metric in (
                    ("aput", "aput p50 µs"),
                    ("aget_tuple", "aget_tuple p50 µs"),
                    ("cpu", "Redis CPU per aput, median µs"),
                ):
                    p50 = {v: statistics.median(res[(v, op)]) * 1e6 for v in pin_min}
                    rows.append(_row(f"{label}{where}: {metric}", p50, [through, beside], ",.0f"))
    note = (
        "Hybrid[postgres] with reconciler='external' and no worker (only the hot path runs; "
        "the last rows: its reconciler in process, on the same loop), hiredis. Each round "
        "puts one checkpoint on each variant's thread (a new version of the messages "
        "channel and a small `turn` channel) and reads it back. 'beside the script': every "
        "blob value over 2 KB goes in a plain SET in the put's MULTI (hot.pin_min = 2048); "
        "'through Lua': as a script argument (hot.pin_min = 0). Redis CPU: INFO cpu "
        "(used_cpu_sys + used_cpu_user) before and after the aput (so it includes one INFO "
        "and, with a reconciler, whatever it asked of Redis meanwhile). The package sends "
        "values of PIN_MIN_BYTES (16 KiB) and more beside the script."
    )
    return note, _header([through, beside], "")[:-1], rows


async def toast_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    """A 140 KB state's blob into PostgreSQL under each TOAST compression of
    the blob column: pglz (the default), lz4 (what setup sets) or none."""
    import psycopg
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from benchmarks.ops import BIG

    _, blob = JsonPlusSerializer().dumps_typed(BIG)
    variants = {
        "pglz (default)": "SET COMPRESSION pglz",
        "lz4 (setup)": "SET COMPRESSION lz4",
        "no compression": "SET STORAGE EXTERNAL",
    }
    n = 20 if quick else 100
    samples = {(v, op): [] for v in variants for op in ("insert", "read")}  # type: ignore[var-annotated]
    rng = random.Random(6)
    async with comp.pg_schema(env, "toast") as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for i, clause in enumerate(variants.values()):
                await conn.execute(f"CREATE TABLE toast{i} (id int PRIMARY KEY, blob bytea)")
                await conn.execute(f"ALTER TABLE toast{i} ALTER COLUMN blob {clause}")
            table = {v: f"toast{i}" for i, v in enumerate(variants)}
            for r in range(n + n // 10):
                order = list(variants)
                rng.shuffle(order)
                for v in order:
                    t0 = time.perf_counter()
                    await conn.execute(f"INSERT INTO {table[v]} VALUES (%s, %s)", (r, blob))
                    t1 = time.perf_counter()
                    await (
                        await conn.execute(f"SELECT blob FROM {table[v]} WHERE id = %s", (r,))
                    ).fetchone()
                    t2 = time.perf_counter()
                    if r >= n // 10:
                        samples[(v, "insert")].append(t1 - t0)
                        samples[(v, "read")].append(t2 - t1)
            sizes = {}
            for v, t in table.items():
                cur = await conn.execute(f"SELECT pg_total_relation_size('{t}') AS b")
                sizes[v] = (await cur.fetchone())[0] / (n + n // 10) / 1024  # type: ignore[index]
    names = list(variants)
    rows = [
        _row(
            f"{op} p50 µs",
            {v: statistics.median(samples[(v, op)]) * 1e6 for v in names},
            names,
            ",.0f",
        )
        for op in ("insert", "read")
    ]
    rows.append(_row("KiB per row on disk", sizes, names, ",.0f"))
    note = (
        f"One connection, autocommit; the blob is the 140 KB state's messages channel as the "
        f"default serializer writes it ({len(blob):,} bytes of msgpack), one row per insert, "
        "read back by primary key. The column's compression is set with ALTER TABLE."
    )
    return note, _header(names, "")[:-1], rows


async def bulk_experiment(env: comp.Env, quick: bool) -> tuple[str, list[str], list[list[str]]]:
    """Inserting a reconcile batch's blob rows: psycopg's executemany in
    pipeline mode (what `PostgresBackend.apply` did before) against one
    INSERT ... SELECT FROM unnest(arrays), multi-row VALUES and a COPY into
    a temporary table (binary: what `PostgresBackend.apply` does); wall time
    and this process's CPU."""
    import os

    import psycopg

    n = 2000 if quick else 20000
    rows = [
        (f"t{i % 50}", "", f"ch{i % 10}", f"{i:032}", "msgpack", os.urandom(200)) for i in range(n)
    ]
    cols = "(thread_id, checkpoint_ns, channel, version, type, blob)"
    insert = f"INSERT INTO bulk {cols} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    unnest = (
        f"INSERT INTO bulk {cols} SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::bytea[]) ON CONFLICT DO NOTHING"
    )
    variants = (
        "executemany (pipeline)", "unnest, text parameters", "unnest, binary parameters",
        "multi-row VALUES, 128-row statements (pipeline)",
        "COPY into a temporary table, then INSERT ... SELECT",
        "COPY (binary) into a temporary table, then INSERT ... SELECT",
    )  # fmt: skip

    def values_sql(k: int) -> str:
        groups = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * k)
        return f"INSERT INTO bulk {cols} VALUES {groups} ON CONFLICT DO NOTHING"

    async def copy_in(conn: Any, v: str) -> None:
        fmt = " (FORMAT BINARY)" if "binary" in v else ""
        async with conn.transaction():
            cur = conn.cursor()
            await cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS bulk_in (LIKE bulk) ON COMMIT DELETE ROWS"
            )
            async with cur.copy(f"COPY bulk_in {cols} FROM STDIN{fmt}") as copy:
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(
                f"INSERT INTO bulk {cols} SELECT * FROM bulk_in ON CONFLICT DO NOTHING"
            )

    async def statements(conn: Any, v: str) -> None:
        async with conn.pipeline(), conn.transaction():
            cur = conn.cursor()
            if v == variants[0]:
                await cur.executemany(insert, rows)
            elif v.startswith("multi-row"):
                for i in range(0, n, 128):
                    chunk = rows[i : i + 128]
                    await cur.execute(values_sql(len(chunk)), [x for row in chunk for x in row])
            else:
                params = [list(c) for c in zip(*rows, strict=True)]
                await cur.execute(unnest, params, binary="binary" in v)

    seconds: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    rng = random.Random(6)
    async with comp.pg_schema(env, "bulk") as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE bulk (thread_id text, checkpoint_ns text, channel text, "
                "version text, type text, blob bytea, "
                "PRIMARY KEY (thread_id, checkpoint_ns, channel, version))"
            )
            for r in range(3 if quick else 6):  # round 0: warm-up
                order = list(variants)
                rng.shuffle(order)
                for v in order:
                    await conn.execute("TRUNCATE bulk")
                    t0, c0 = time.perf_counter(), time.process_time()
                    await (copy_in(conn, v) if v.startswith("COPY") else statements(conn, v))
                    if r:
                        seconds[v].append(time.perf_counter() - t0)
                        cpu[v].append(time.process_time() - c0)
    base = summarize(seconds[variants[0]])["p50"]
    base_cpu = statistics.median(cpu[variants[0]])
    table_rows = []
    for v, s in seconds.items():
        p50, c = summarize(s)["p50"], statistics.median(cpu[v])
        table_rows.append([v, f"{p50 * 1e3:,.0f}", f"{p50 / base:.2f}x", f"{c * 1e3:,.0f}",
                           f"{c / base_cpu:.2f}x"])  # fmt: skip
    note = f"{n:,} rows of 200-byte blobs into a table shaped like checkpoint_blobs, one "
    note += "transaction each."
    note += " Client CPU: this process's CPU time (median), the part an in-process reconciler "
    note += "takes from the application's event loop."
    header = ["variant", "ms (p50)", "x executemany", "client CPU ms", "x executemany"]
    return note, header, table_rows


async def apply_in_one_pipeline(conn: Any, ops: Sequence[Any]) -> int:
    """`apply_staged` with the batch's rows sent in the pipeline of the
    statements that read them (INSERT ... SELECT FROM unnest(arrays), binary
    parameters) instead of a COPY of their own: one round trip fewer."""
    from langgraph_hybrid_saver.backends._apply import batch_threads, plan_apply
    from langgraph_hybrid_saver.backends.postgres import apply as pg_apply
    from langgraph_hybrid_saver.backends.postgres import sql

    stage = """INSERT INTO pg_temp.hybrid_saver_stage SELECT * FROM unnest(%b::int4[],
        %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
        %b::text[], %b::text[], %b::text[], %b::text[], %b::int4[], %b::text[], %b::bytea[])"""
    cur = conn.cursor()
    async with conn.pipeline():
        await cur.execute("BEGIN")
        await cur.execute(sql.LOCK_THREADS_SQL, (batch_threads(ops),))
        rows = await cur.fetchall()
    if not rows[0]["staged"]:
        await cur.execute(sql.STAGE_SQL)
    plan = plan_apply(ops, {r["thread_id"]: r["applied_seq"] for r in rows})
    runs = enumerate(plan.runs)
    staged = [row for seg, (run, _) in runs for row in pg_apply.staged_rows(seg, run)]
    async with conn.pipeline():
        if staged:
            await cur.execute(stage, [list(c) for c in zip(*staged, strict=True)])
        for seg, (run, delete) in enumerate(plan.runs):
            if run:
                await cur.execute(sql.STAGED_SQL, {"seg": seg})
            if delete is not None:
                for statement in sql.DELETE_THREAD_SQL:
                    await cur.execute(statement, (delete.thread_id,))
        if plan.watermarks:
            moved = plan.watermarks
            await cur.execute(sql.SET_WATERMARKS_SQL, (list(moved), list(moved.values())))
        await cur.execute("COMMIT")
    return plan.applied


async def small_batch_experiment(
    env: comp.Env, quick: bool
) -> tuple[str, list[str], list[list[str]]]:
    """The in-process reconciler's CPU per batch when invocations run one
    after another: each batch holds one support-graph invocation's entries.
    Apply variants, alternating batch by batch on one saver: the package's
    (`apply_batch`: one statement, `hybrid_saver_apply`), the staged way it
    takes for large batches (a COPY of the rows, then the statements in a
    pipeline) and `apply_in_one_pipeline`; the read (with the previous
    batch's ack) is the same."""
    from benchmarks.support_graph import build_support_graph, ticket
    from langgraph_hybrid_saver import Reconciler
    from langgraph_hybrid_saver.backends.postgres import apply as pg_apply
    from langgraph_hybrid_saver.backends.postgres import backend as pg_backend

    package = pg_backend.apply_batch  # type: ignore[attr-defined]

    async def staged(conn: Any, ops: Sequence[Any], marks: Any) -> int:
        return (await pg_apply.apply_staged(conn, ops))[0]

    async def one_pipeline(conn: Any, ops: Sequence[Any], marks: Any) -> int:
        return await apply_in_one_pipeline(conn, ops)

    variants = {
        "one statement": package,
        "COPY, then a pipeline": staged,
        "one pipeline": one_pipeline,
    }
    names = list(variants)
    cpu: dict[str, dict[str, list[float]]] = {n: {"read": [], "apply": []} for n in names}
    n = 100 if quick else 600
    async with open_saver(env, "small", placement=NONE) as saver:
        graph = build_support_graph(saver)
        worker = Reconciler(saver.hot, saver.backend)
        read, apply = worker.outbox.read, worker._apply
        phase: dict[str, float] = {}

        async def timed_read(*args: Any, **kwargs: Any) -> Any:
            c0 = time.thread_time()
            out = await read(*args, **kwargs)
            phase["read"] = time.thread_time() - c0
            return out

        async def timed_apply(*args: Any) -> Any:
            c0 = time.thread_time()
            out = await apply(*args)
            phase["apply"] = time.thread_time() - c0
            return out

        worker.outbox.read, worker._apply = timed_read, timed_apply  # type: ignore[method-assign]
        try:
            for i in range(n):
                name = names[i % len(names)]
                await graph.ainvoke(ticket(i), {"configurable": {"thread_id": f"small-{i}"}})
                pg_backend.apply_batch = variants[name]  # type: ignore[attr-defined]
                await worker.step(None, defer_ack=True)
                if i >= 20:  # warm-up
                    for key in ("read", "apply"):
                        cpu[name][key].append(phase[key])
        finally:
            pg_backend.apply_batch = package  # type: ignore[attr-defined]
            await worker.flush_acks()
            await worker.release_all()
    rows = []
    for key in ("read", "apply"):
        medians = {v: statistics.median(cpu[v][key]) * 1e6 for v in names}
        rows.append(_row(f"{key} CPU µs per batch (median)", medians, names, ",.0f"))
    note = f"{n} support-graph invocations, one after another, each on a new thread; after "
    note += "each, one reconciler step (this process's thread CPU of the step's read, which "
    note += "also deletes the previous batch's entries, and of its apply), the apply "
    note += "variants alternating. No reconciler runs otherwise (reconciler='external')."
    return note, _header(names, "")[:-1], rows


EXPERIMENTS = {
    "parser": parser_experiment,
    "placement": placement_experiment,
    "lanes": lanes_experiment,
    "acks": acks_experiment,
    "linger": linger_experiment,
    "pipelining": pipelining_experiment,
    "hotpath": hotpath_experiment,
    "bulk": bulk_experiment,
    "pinned": pinned_experiment,
    "toast": toast_experiment,
    "small_batch": small_batch_experiment,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiments")
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--extra-site", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    shown = list(argv) if argv is not None else sys.argv[1:]
    if args.experiment == "parser":
        try:
            import hiredis  # noqa: F401
        except ImportError:
            print("hiredis is not importable: pip install hiredis (or --extra-site DIR)")
            return 2
    env = comp.Env(run_id=comp.new_run_id(), tmpdir=Path(tempfile.mkdtemp(prefix="lhs-x-")))
    try:
        note, header, rows = asyncio.run(EXPERIMENTS[args.experiment](env, args.quick))
    finally:
        comp.rmtree(env.tmpdir)
    text = "\n".join([
        f"# Experiment: {args.experiment}", "",
        f"Command: `python -m benchmarks.experiments {' '.join(shown)}`. One process, "
        "variants interleaved in rounds with a random order per round, warm-up discarded. "
        + note, "",
        table(header, rows), "",
    ])  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
