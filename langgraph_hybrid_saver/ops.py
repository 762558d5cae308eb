"""Read-only facts for operators: versions, outbox backlog and lag, reconciler
workers and their shards, hot threads, Redis memory, durable row counts.

Everything here reads; nothing writes (no `check_layout`, no TTL refresh), so
`status` is safe to run against production at any time. The CLI
(`langgraph_hybrid_saver.cli`) only renders what these functions return.

Costs, so an operator knows what a refresh does to Redis:

* backlog and lag: per shard one `XLEN`, and one read-only Lua script that
  returns the ids (not the payloads) of at most `sample` oldest entries and
  the newest id. Entry ids are XADD times, so an id is the entry's age.
* workers and leases: one `ZRANGE` and `GET`/`PTTL` per shard.
* hot threads and the large values outbox entries hold (`p` keys): one
  `SCAN` over the key prefix (`COUNT 1000`; every primary of a cluster) and
  `MEMORY USAGE` of each `p` key found. SCAN is never used on the saver's hot
  path; for an operator command it is acceptable, but it walks the whole
  keyspace of the database, so `--no-scan` skips it.
* memory: `INFO memory` (of every primary of a cluster), `MEMORY USAGE` of
  each outbox stream.
* durable rows: the backend's `count_rows()` (PostgreSQL: `count(*)` per
  table), only when a durable URL is given.

The durable server's version comes from the backend's `server_version()`;
a backend that reports none (None) shows as "version unknown".
"""

from __future__ import annotations

import importlib.metadata
import re
import statistics
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis, RedisCluster

from langgraph_hybrid_saver.backends import DurableBackend, open_backend, redact
from langgraph_hybrid_saver.errors import ConfigError, ServerUnreachableError
from langgraph_hybrid_saver.hot import DEFAULT_SHARDS, HotTier
from langgraph_hybrid_saver.hot.client import connect_redis
from langgraph_hybrid_saver.hot.keys import Keys
from langgraph_hybrid_saver.hot.lua import source
from langgraph_hybrid_saver.outbox.stream import Outbox

PACKAGE = "langgraph-hybrid-saver"
DEFAULT_LAG_SAMPLE = 1000
SCAN_COUNT = 1000

# Policies that may evict keys without a TTL, i.e. outbox streams: lost
# entries never reach the durable store.
_UNSAFE_EVICTION = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


def glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# --- connections --------------------------------------------------------------


@dataclass(slots=True)
class Target:
    """The servers one command looks at."""

    redis: Any  # Redis | RedisCluster, as connect_redis returns it
    hot: HotTier
    backend: DurableBackend | None
    redis_url: str
    durable_url: str | None
    layout_recorded: bool  # a saver or reconciler has used this prefix
    durable_error: str | None = None  # why the durable store is not read


async def recorded_shards(redis: Redis | RedisCluster, prefix: str) -> int | None:
    """The shard count the savers of `prefix` agreed on (None: prefix unused)."""
    raw = await redis.hget(Keys(prefix, 1).meta, "shards")
    return None if raw is None else int(raw)


@asynccontextmanager
async def open_target(
    redis_url: str,
    durable_url: str | None,
    *,
    prefix: str,
    shards: int | None = None,
    durable_optional: bool = False,
) -> AsyncIterator[Target]:
    """Connect read-only: the shard count comes from the prefix's layout record
    unless given, and a given one must match it (else every key is wrong).

    With `durable_optional`, an unreachable durable store is reported in
    `Target.durable_error` instead of raised: Redis can still be inspected.
    """
    async with AsyncExitStack() as stack:
        backend: DurableBackend | None = None
        durable_error = None
        if durable_url is not None:
            backend = open_backend(durable_url)
            try:
                await backend.open()
            except ServerUnreachableError as e:
                if not durable_optional:
                    raise
                backend, durable_error = None, str(e)
            else:
                stack.push_async_callback(backend.close)
        redis = await connect_redis(redis_url)
        stack.push_async_callback(redis.aclose)
        recorded = await recorded_shards(redis, prefix)
        if shards is not None and recorded is not None and shards != recorded:
            raise ConfigError(
                f"key prefix {prefix!r} is in use with shards={recorded}, not {shards}: "
                f"pass --shards {recorded} (every process sharing a prefix must use the "
                "same) or another --key-prefix"
            )
        hot = HotTier(redis, prefix=prefix, shards=shards or recorded or DEFAULT_SHARDS)
        stack.push_async_callback(hot.aclose)
        yield Target(
            redis, hot, backend, redis_url, durable_url, recorded is not None, durable_error
        )


# --- versions (setup) -----------------------------------------------------------


@dataclass(slots=True)
class ServerFacts:
    """What `setup` reports."""

    package_version: str
    redis_url: str
    redis_server: str  # "redis 7.2.4" or "valkey 8.0.1"
    redis_mode: str
    durable_url: str | None
    durable_server: str
    key_prefix: str
    shards: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def redis_server(redis: Redis | RedisCluster) -> tuple[str, str]:
    """("redis 7.2.4" | "valkey 8.0.1", "standalone" | "cluster" | ...)."""
    info: dict[str, Any] = await redis.info("server")
    name = str(info.get("server_name") or "redis")
    version = info.get(f"{name}_version") or info.get("redis_version") or "unknown"
    return f"{name} {version}", str(info.get("redis_mode") or "standalone")


async def durable_server(backend: DurableBackend | None) -> str:
    if backend is None:
        return "not configured"
    version = await backend.server_version()
    return version or f"{type(backend).__name__} (version unknown)"


async def memory_infos(redis: Redis | RedisCluster) -> list[dict[str, Any]]:
    """INFO memory of the server, or of every primary of a cluster.

    INFO rather than CONFIG GET: managed Redis services often disable CONFIG.
    """
    if isinstance(redis, RedisCluster):
        per_node: dict[str, dict[str, Any]] = await redis.info(
            "memory", target_nodes=RedisCluster.PRIMARIES
        )
        return list(per_node.values())
    return [await redis.info("memory")]


async def redis_warnings(redis: Redis | RedisCluster) -> list[str]:
    """Settings under which the outbox can lose entries."""
    out = []
    policies = {str(info.get("maxmemory_policy", "")) for info in await memory_infos(redis)}
    for policy in sorted(policies & set(_UNSAFE_EVICTION)):
        out.append(
            f"maxmemory-policy is {policy}: Redis may evict outbox streams (they have "
            "no TTL) and lose entries before they reach the durable store; use "
            "noeviction or a volatile-* policy"
        )
    return out


async def server_facts(target: Target) -> ServerFacts:
    server, mode = await redis_server(target.redis)
    return ServerFacts(
        package_version=package_version(),
        redis_url=redact(target.redis_url),
        redis_server=server,
        redis_mode=mode,
        durable_url=redact(target.durable_url) if target.durable_url else None,
        durable_server=await durable_server(target.backend),
        key_prefix=target.hot.prefix,
        shards=target.hot.shards,
        warnings=await redis_warnings(target.redis),
    )


# --- status ---------------------------------------------------------------------


@dataclass(slots=True)
class ShardStatus:
    shard: int
    backlog: int
    oldest_age_s: float | None
    owner: str | None
    lease_ttl_ms: int | None


@dataclass(slots=True)
class WorkerStatus:
    owner: str
    expires_in_s: float  # negative: the heartbeat ran out (the worker died)
    alive: bool
    shards: list[int]


@dataclass(slots=True)
class Status:
    """One snapshot of the saver's state, as `status` shows it."""

    taken_at: float  # Redis server time, seconds since the epoch
    key_prefix: str
    shards: int
    layout_recorded: bool
    backlog: int
    dead_letters: int  # entries not durable (refused by the store or undecodable), moved aside
    lag_p50_s: float | None
    lag_max_s: float | None
    lag_estimated: bool  # a shard held more entries than were sampled
    per_shard: list[ShardStatus]
    workers: list[WorkerStatus]
    unowned_shards: list[int]
    hot_threads: int | None  # None: not scanned
    outbox_large_values: int | None  # bytes of the outbox's large values; None: not scanned
    redis_used_memory: int
    redis_maxmemory: int
    redis_eviction_policy: str
    outbox_memory: int | None
    durable_rows: dict[str, int] | None
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def redis_now_ms(redis: Redis | RedisCluster) -> int:
    sec, usec = await redis.time()
    return int(sec) * 1000 + int(usec) // 1000


def lag_percentiles(ages: Sequence[float]) -> tuple[float | None, float | None]:
    if not ages:
        return None, None
    return statistics.median(ages), max(ages)


async def outbox_ages(
    target: Target, now_ms: int, sample: int
) -> tuple[list[int], list[list[float]], bool]:
    """Per shard: backlog, and the ages in seconds of its pending entries.

    Exact when a shard holds at most `sample` entries. Past that, the ages of
    the unsampled (newer) entries are spread evenly between the newest sampled
    one and the newest entry: an estimate, flagged as such.
    """
    hot = target.hot
    script = target.redis.register_script(source("outbox_ids"))
    async with target.redis.pipeline(transaction=False) as pipe:
        for stream in hot.keys.outboxes:
            pipe.xlen(stream)
        lengths = [int(n) for n in await pipe.execute()]
    ages: list[list[float]] = []
    estimated = False
    for shard, length in enumerate(lengths):
        if length == 0:
            ages.append([])
            continue
        reply = await script(keys=[hot.keys.outboxes[shard]], args=[sample])
        *oldest, newest = [_s(r) if r else None for r in reply]
        shard_ages = [max(now_ms - _ms(i), 0) / 1000 for i in oldest if i]
        rest = length - len(shard_ages)
        if rest > 0 and newest is not None and shard_ages:
            estimated = True
            lo, hi = shard_ages[-1], max(now_ms - _ms(newest), 0) / 1000
            shard_ages += [lo + (hi - lo) * (k + 1) / rest for k in range(rest)]
        ages.append(shard_ages)
    return lengths, ages, estimated


async def leases(target: Target) -> list[tuple[str | None, int | None]]:
    """(owner, remaining ms) of every shard's lease."""
    async with target.redis.pipeline(transaction=False) as pipe:
        for key in target.hot.keys.leases:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
    out = []
    for i in range(0, len(replies), 2):
        owner, ttl = replies[i], int(replies[i + 1])
        out.append((_s(owner) if owner is not None else None, ttl if ttl >= 0 else None))
    return out


async def workers(target: Target, now_ms: int) -> list[tuple[str, float]]:
    """(owner, seconds until its heartbeat expires) from the workers zset."""
    key = target.hot.keys.workers
    rows: list[Any] = await target.redis.zrange(key, 0, -1, withscores=True)
    return [(_s(owner), (float(score) - now_ms) / 1000) for owner, score in rows]


async def scan_threads(target: Target) -> tuple[int, int]:
    """Threads with a hot copy (their namespace sets, `base:n`) and the bytes
    of the large values held for unreconciled outbox entries (the `v` keys of
    threads with pending entries, `base:o`, and the `p` keys older layouts
    wrote), in one SCAN of the prefix.

    A key matches the prefix's pattern also when a thread id or namespace
    happens to contain ":n" or ":p:", so each match is parsed:
    `<len>:<thread_id>` must come first and the kind right after it.
    """
    keys = target.hot.keys
    root = keys.threads_pattern_root
    count, large, pending = 0, [], set()
    values: list[tuple[bytes, bytes]] = []  # (thread base, `v` or `h`-held key)
    async for raw in target.redis.scan_iter(match=f"{glob_escape(root)}*", count=SCAN_COUNT):
        key: bytes = raw if isinstance(raw, bytes) else raw.encode()
        kind = keys.after_thread(key)
        if kind == b":n":
            count += 1
        elif kind == b":o":
            pending.add(key[:-2])
        elif kind is not None and kind.startswith(b":p:"):
            large.append(key)
        elif kind is not None and kind.startswith(b":v:"):
            values.append((key[: -len(kind)], key))
    large += [key for base, key in values if base in pending]
    held = 0
    for i in range(0, len(large), SCAN_COUNT):
        async with target.redis.pipeline(transaction=False) as pipe:
            for key in large[i : i + SCAN_COUNT]:
                pipe.memory_usage(key)
            held += sum(int(u or 0) for u in await pipe.execute())
    return count, held


async def redis_memory(target: Target) -> tuple[int, int, str, int | None]:
    """used_memory, maxmemory, eviction policy, bytes held by the outbox streams
    (memory summed over the primaries of a cluster)."""
    infos = await memory_infos(target.redis)
    policies = sorted({str(i.get("maxmemory_policy", "unknown")) for i in infos})
    outbox: int | None = 0
    async with target.redis.pipeline(transaction=False) as pipe:
        for stream in target.hot.keys.outboxes:
            pipe.memory_usage(stream)
        for usage in await pipe.execute():
            outbox = None if outbox is None else outbox + int(usage or 0)
    return (
        sum(int(i.get("used_memory", 0)) for i in infos),
        sum(int(i.get("maxmemory", 0)) for i in infos),
        ", ".join(policies),
        outbox,
    )


async def collect_status(
    target: Target, *, sample: int = DEFAULT_LAG_SAMPLE, scan: bool = True
) -> Status:
    """One snapshot; see the module docstring for what it costs."""
    now_ms = await redis_now_ms(target.redis)
    lengths, ages, estimated = await outbox_ages(target, now_ms, sample)
    owners = await leases(target)
    heartbeats = await workers(target, now_ms)
    used, maxmemory, policy, outbox_bytes = await redis_memory(target)
    scanned = await scan_threads(target) if scan else None
    all_ages = [a for shard_ages in ages for a in shard_ages]
    p50, worst = lag_percentiles(all_ages)
    per_shard = [
        ShardStatus(s, lengths[s], max(ages[s]) if ages[s] else None, *owners[s])
        for s in range(target.hot.shards)
    ]
    by_owner: dict[str, list[int]] = {}
    for s, (owner, _) in enumerate(owners):
        if owner is not None:
            by_owner.setdefault(owner, []).append(s)
    worker_rows = [
        WorkerStatus(owner, round(left, 3), left > 0, by_owner.pop(owner, []))
        for owner, left in heartbeats
    ]
    # A lease whose owner is not in the zset: a worker of an older version or
    # one whose heartbeat entry was trimmed; show it rather than hide it.
    worker_rows += [WorkerStatus(o, 0.0, False, s) for o, s in sorted(by_owner.items())]
    unowned = [s for s, (owner, _) in enumerate(owners) if owner is None]
    warnings = await redis_warnings(target.redis)
    durable_rows = None
    if target.durable_error is not None:
        warnings.append(f"durable store not read: {target.durable_error}")
    elif target.backend is not None:
        # A failing durable store must not hide what Redis can tell.
        try:
            durable_rows = await target.backend.count_rows()
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            warnings.append(
                f"durable row counts unavailable ({type(e).__name__}: {first}); if the "
                "schema is missing, run `langgraph-hybrid-saver setup`"
            )
    alive = [w for w in worker_rows if w.alive]
    if sum(lengths) and not alive:
        warnings.append(
            "entries are waiting and no reconciler is alive: start one with "
            "`langgraph-hybrid-saver reconcile --redis URL --durable URL` or open a "
            "saver with reconciler='in_process'"
        )
    dead = await Outbox(target.hot).dead_letters()
    if dead:
        warnings.append(
            f"{dead} outbox entries are not durable (the durable store refused them or "
            "they could not be decoded) and wait in the dead-letter streams; their "
            "threads stay in Redis without a TTL: `langgraph-hybrid-saver dead-letters "
            "list` says why, then `dead-letters retry` (once the cause is fixed) or "
            "`dead-letters drop`"
        )
    stuck = [s for s in unowned if lengths[s]]
    if stuck and alive:
        warnings.append(
            f"shards {', '.join(map(str, stuck))} have entries but no lease owner yet "
            "(normal for a few seconds after a worker starts or stops)"
        )
    return Status(
        taken_at=now_ms / 1000,
        key_prefix=target.hot.prefix,
        shards=target.hot.shards,
        layout_recorded=target.layout_recorded,
        backlog=sum(lengths),
        dead_letters=dead,
        lag_p50_s=None if p50 is None else round(p50, 3),
        lag_max_s=None if worst is None else round(worst, 3),
        lag_estimated=estimated,
        per_shard=per_shard,
        workers=worker_rows,
        unowned_shards=unowned,
        hot_threads=scanned[0] if scanned else None,
        outbox_large_values=scanned[1] if scanned else None,
        redis_used_memory=used,
        redis_maxmemory=maxmemory,
        redis_eviction_policy=policy,
        outbox_memory=outbox_bytes,
        durable_rows=durable_rows,
        warnings=warnings,
    )
