"""Replicated Redis for failover tests: a primary with replicas behind three
sentinels, a Redis Cluster with a replica per master, and a graph load that
runs through a failover and counts what the durable store lost.

Used by tests/test_ha.py and the `failover_*` scenarios of
scripts/fault_injection.py. Every server listens on a free port of
127.0.0.1 and is stopped by PID (scripts.servers.RedisServer).
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import psycopg
import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver, HybridSaverError
from scripts.servers import RedisServer, free_port, kill_pid, wait_port

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
CLUSTER_NODE_TIMEOUT_MS = 1000
# A replica (re)syncs at once, not after the default 5 s wait for others.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {timeout}s")


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=2, decode_responses=True)


class SentinelGroup:
    """A primary, `replicas` replicas and three sentinels (quorum 2);
    `password` is the servers' (requirepass), `sentinel_password` the
    sentinels' own."""

    def __init__(
        self,
        folder: Path,
        replicas: int = 2,
        sentinels: int = 3,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.folder = folder
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = RedisServer(folder, password=password, extra=FAST_SYNC)
        self.replicas = [RedisServer(folder, password=password) for _ in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    @property
    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    def url(
        self, db: int = 0, password: str | None = None, sentinel_password: str | None = None
    ) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        auth = f":{quote(password, safe='')}@" if password else ""
        query = (
            f"?{urlencode({'sentinel_password': sentinel_password})}" if sentinel_password else ""
        )
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/{db}{query}"

    def _client(self, port: int) -> redis.Redis:
        return _client(port, self.password)

    def _sentinel(self, port: int) -> redis.Redis:
        return _client(port, self.sentinel_password)

    def start(self) -> None:
        self.primary.start()
        for r in self.replicas:
            auth = ("--masterauth", self.password) if self.password else ()
            r.extra = (*FAST_SYNC, *auth, "--replicaof", "127.0.0.1", str(self.primary.port))
            r.start()
        _wait(
            lambda: all(
                self._client(r.port).info("replication")["master_link_status"] == "up"
                for r in self.replicas
            ),
            20,
            "the replicas did not sync",
        )
        for port in self.sentinel_ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} {len(self.replicas)}\n"
            )
            if self.password:
                conf.write_text(
                    conf.read_text() + f"sentinel auth-pass {SERVICE} {self.password}\n"
                )
            if self.sentinel_password:
                sp = self.sentinel_password
                conf.write_text(
                    conf.read_text() + f"requirepass {sp}\nsentinel sentinel-pass {sp}\n"
                )
            log = open(self.folder / f"sentinel-{port}.log", "ab")
            proc = subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"], stdout=log, stderr=log
            )
            log.close()
            self.sentinel_procs.append(proc)
            wait_port(port, proc, "redis-sentinel")
        for port in self.sentinel_ports:  # each knows the replicas and its peers
            _wait(
                lambda port=port: (
                    self._master_state(port)["num-other-sentinels"] == len(self.sentinel_ports) - 1
                    and self._master_state(port)["num-slaves"] == len(self.replicas)
                ),
                30,
                "the sentinels did not discover each other and the replicas",
            )

    def _master_state(self, port: int) -> dict[str, Any]:
        state: dict[str, Any] = self._sentinel(port).sentinel_master(SERVICE)
        return state

    def primary_port(self) -> int:
        return int(self._master_state(self.sentinel_ports[0])["port"])

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary; its port."""
        port = self.primary_port()
        self.server(port).kill()
        return port

    def demote_primary(self) -> int:
        """SENTINEL FAILOVER: the primary becomes a replica of a promoted one."""
        port = self.primary_port()
        self._sentinel(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", SERVICE)
        return port

    def wait_promoted(self, old_port: int, timeout: float = 30) -> int:
        """Until every sentinel names a primary other than `old_port` that says
        it is one; its port."""

        def promoted() -> bool:  # SENTINEL MASTER's address: what redis-py's client asks
            ports = {int(self._master_state(p)["port"]) for p in self.sentinel_ports}
            if len(ports) != 1 or old_port in ports:
                return False
            return self._client(ports.pop()).info("replication")["role"] == "master"

        _wait(promoted, timeout, f"no replica of 127.0.0.1:{old_port} was promoted")
        return self.primary_port()

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            kill_pid(proc)
        for s in self.servers:
            s.kill()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port < 55000:
            with contextlib.suppress(OSError), socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
                return port
    raise RuntimeError("no free port pair for a cluster node")


def _cluster_ok(port: int) -> bool:
    info = _client(port).execute_command("CLUSTER", "INFO")
    return "cluster_state:ok" in (info if isinstance(info, str) else str(info))


class ReplicatedCluster:
    """A Redis Cluster of `masters` masters with one replica each."""

    def __init__(self, folder: Path, masters: int = 3) -> None:
        conf = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        timeout = ("--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), *FAST_SYNC)
        self.nodes = []
        for _ in range(masters * 2):
            node = RedisServer(folder, extra=(*conf, *timeout))
            node.port = cluster_port()
            node.folder = folder / f"node-{node.port}"
            node.folder.mkdir(parents=True, exist_ok=True)
            self.nodes.append(node)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        create = ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes]]
        subprocess.run(
            [*create, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait(self._settled, 30, "the test cluster did not reach cluster_state:ok")

    def _settled(self) -> bool:
        masters = self.masters()
        return all(_cluster_ok(n.port) for n in self.nodes if n.proc is not None) and all(
            _client(m).info("replication")["connected_slaves"] >= 1
            for m in masters
            if self._alive(m)
        )

    def _alive(self, port: int) -> bool:
        return any(n.port == port and n.proc is not None for n in self.nodes)

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots, as a live node sees them."""
        live = next(n for n in self.nodes if n.proc is not None)
        slots = _client(live.port).execute_command("CLUSTER", "SLOTS")
        return sorted({int(s[2][1]) for s in slots})

    def master_of(self, key: str) -> int:
        live = next(n for n in self.nodes if n.proc is not None)
        slot = int(_client(live.port).execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in _client(live.port).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise RuntimeError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        next(n for n in self.nodes if n.port == port).kill()

    def wait_promoted(self, old_port: int, timeout: float = 30) -> None:
        _wait(
            lambda: (
                old_port not in self.masters()
                and all(_cluster_ok(n.port) for n in self.nodes if n.proc is not None)
            ),
            timeout,
            f"no replica of 127.0.0.1:{old_port} was promoted",
        )

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()


# --- the load --------------------------------------------------------------------


class State(TypedDict, total=False):
    n: int
    log: Annotated[list[str], operator.add]


def build_graph(saver: Any) -> Any:
    """Three steps, one with two parallel branches (pending writes)."""

    def first(state: State) -> State:
        return {"n": state.get("n", 0) + 1, "log": ["first"]}

    def left(state: State) -> State:
        return {"log": ["left"]}

    def right(state: State) -> State:
        return {"log": ["right"]}

    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("left", left)
    g.add_node("right", right)
    g.add_edge(START, "first")
    g.add_edge("first", "left")
    g.add_edge("first", "right")
    g.add_edge(["left", "right"], END)
    return g.compile(checkpointer=saver)


class AckedSaver(AsyncHybridSaver):
    """Records every put and put_writes the saver acknowledged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acked_puts: set[tuple[str, str, str]] = set()
        self.acked_writes: set[tuple[str, str, str, str]] = set()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored = await super().aput(config, checkpoint, metadata, new_versions)
        c = stored["configurable"]
        self.acked_puts.add((c["thread_id"], c.get("checkpoint_ns", ""), c["checkpoint_id"]))
        return stored

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await super().aput_writes(config, writes, task_id, task_path)
        c = config["configurable"]
        key = (c["thread_id"], c.get("checkpoint_ns", ""), c["checkpoint_id"], task_id)
        self.acked_writes.add(key)


@dataclass
class Load:
    """What the graph load saw."""

    invocations: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # type name -> count
    untyped: list[str] = field(default_factory=list)  # errors not from this package
    longest_failing_call_s: float = 0.0


async def run_load(saver: Any, threads: list[str], stop: asyncio.Event, load: Load) -> None:
    """Invoke the graph in a loop on every thread until `stop`; a call that
    fails with a typed error is counted and the loop goes on."""
    graph = build_graph(saver)

    async def drive(thread: str) -> None:
        config = {"configurable": {"thread_id": thread}}
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(graph.ainvoke({"log": []}, config), 60)
                load.invocations += 1
            except HybridSaverError as e:
                load.errors[type(e).__name__] += 1
                load.longest_failing_call_s = max(
                    load.longest_failing_call_s, time.monotonic() - t0
                )
                await asyncio.sleep(0.05)
            except Exception as e:
                load.untyped.append(f"{type(e).__name__}: {e}")
                load.errors[type(e).__name__] += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(drive(t) for t in threads))


def durable_rows(url: str, prefix: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(thread, ns, checkpoint_id) and (thread, ns, checkpoint_id, task_id) in
    PostgreSQL for the threads whose ids start with `prefix`."""
    with psycopg.connect(url) as conn:
        cps = conn.execute(
            "SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints"
            " WHERE thread_id LIKE %s",
            (prefix + "%",),
        )
        checkpoints = {tuple(r) for r in cps}
        ws = conn.execute(
            "SELECT DISTINCT thread_id, checkpoint_ns, checkpoint_id, task_id"
            " FROM checkpoint_writes WHERE thread_id LIKE %s",
            (prefix + "%",),
        )
        writes = {tuple(r) for r in ws}
    return checkpoints, writes


async def failover_run(
    redis_url: str,
    durable_url: str,
    key_prefix: str,
    fail: Any,
    *,
    threads: int = 16,
    warmup_s: float = 2.0,
    after_s: float = 2.0,
    **options: Any,
) -> dict[str, Any]:
    """Run the graph load on `threads` threads; after `warmup_s`, call
    `fail()` (in a thread: it kills a server and waits for the promotion);
    go on `after_s` more; stop, flush and compare what was acknowledged with
    what the durable store holds."""
    names = [f"{key_prefix}-t{i:03d}" for i in range(threads)]
    load = Load()
    async with AckedSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, flush_timeout=60, **options
    ) as saver:
        stop = asyncio.Event()
        task = asyncio.create_task(run_load(saver, names, stop, load))
        await asyncio.sleep(warmup_s)
        before = load.invocations
        t0 = time.monotonic()
        await asyncio.to_thread(fail)
        promoted_s = time.monotonic() - t0
        await asyncio.sleep(after_s)
        stop.set()
        await task
        await saver.aflush(timeout=60)
        checkpoints, writes = durable_rows(durable_url, key_prefix)
        lost_puts = saver.acked_puts - checkpoints
        lost_writes = saver.acked_writes - writes
        return {
            "threads": threads,
            "invocations": load.invocations,
            "invocations before the kill": before,
            "seconds from the kill to the promotion": round(promoted_s, 1),
            "acknowledged checkpoints": len(saver.acked_puts),
            "acknowledged pending-write calls": len(saver.acked_writes),
            "lost checkpoints": len(lost_puts),
            "lost pending writes": len(lost_writes),
            "errors seen by the load": dict(load.errors),
            "errors not from this package": len(load.untyped),
            "longest failing call s": round(load.longest_failing_call_s, 1),
            "_untyped": load.untyped[:5],
        }
