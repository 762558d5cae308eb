"""Redis high availability: Sentinel URLs, replica-acknowledged writes
(`replicas_ack`) and failovers under a graph load.

Servers of their own (scripts/ha.py): a primary with two replicas behind
three sentinels (down-after 1 s), and a Redis Cluster of three masters with
a replica each (node timeout 1 s); PostgreSQL is the durable store. A
failover test runs a LangGraph graph on 16 threads, fails the primary, lets
the load go on, then compares every checkpoint and pending write the saver
acknowledged with what PostgreSQL holds after `aflush`.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from langgraph_hybrid_saver import (
    AsyncHybridSaver,
    ConfigError,
    ReplicationTimeoutError,
    ServerUnreachableError,
    ThreadBusyError,
)
from langgraph_hybrid_saver.hot.client import connect_redis
from langgraph_hybrid_saver.hot.sentinel import parse_sentinel_url
from scripts.ha import FAST_SYNC, ReplicatedCluster, SentinelGroup, build_graph, failover_run
from scripts.servers import free_port, kill_pid, wait_port
from tests.conftest import start_reconciler
from tests.helpers import valkey_binary

# The README's bound on what a failover loses without replicas_ack, as a
# share of the acknowledged checkpoints ("Redis high availability").
LOSS_BOUND_WITHOUT_ACK = 0.02


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ReplicatedCluster]:
    cluster = ReplicatedCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- the URL and the options ----------------------------------------------------


def test_sentinel_url_parts() -> None:
    t = parse_sentinel_url(
        "rediss+sentinel://app:pw@10.0.0.1:26379,[::1]:26380,sentinel-c/svc/3"
        "?sentinel_password=s3&ssl_ca_certs=/ca.pem&socket_timeout=2.5"
    )
    assert t.sentinels == [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379)]
    assert (t.service, t.db, t.username, t.password) == ("svc", 3, "app", "pw")
    assert t.sentinel_kwargs == {
        "password": "s3",
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
        "socket_timeout": 2.5,
    }
    assert t.server_kwargs == {"ssl": True, "ssl_ca_certs": "/ca.pem", "socket_timeout": 2.5}
    plain = parse_sentinel_url("redis+sentinel://:pw@h:1/svc")
    assert (plain.db, plain.username, plain.password, plain.server_kwargs) == (0, None, "pw", {})


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+sentinel://:hunter2@h:1", "/service_name"),
        ("redis+sentinel://:hunter2@h:1/svc/x", "db 'x'"),
        ("redis+sentinel://:hunter2@h:1/a/0/b", "/service_name"),
        ("redis+sentinel://:hunter2@h:port/svc", "'h:port'"),
        ("redis+sentinel://:hunter2@h:99999/svc", "'h:99999'"),
        ("redis+sentinel://:hunter2@h:1/svc?color=red", "unknown option 'color'"),
        ("redis+sentinel://:hunter2@h:1/svc?ssl=maybe", "ssl='maybe'"),
        ("redis+sentinel://:hunter2@h:1/svc?ssl_ca_certs=/ca", "rediss+sentinel://"),
        ("redis+sentinel://:hunter2@h:1/svc?socket_timeout=soon", "socket_timeout='soon'"),
    ],
)
async def test_bad_sentinel_urls(url: str, names: str) -> None:
    with pytest.raises(ConfigError) as e:
        await connect_redis(url)
    message = str(e.value)
    assert names in message and "redis+sentinel://" in message
    assert "hunter2" not in message  # redacted
    assert "use e.g. redis+sentinel://:password@127.0.0.1:26379" in message


async def test_sentinel_unreachable_is_typed() -> None:
    port = free_port()
    with pytest.raises(ServerUnreachableError, match=r"no sentinel of .* named a reachable"):
        await connect_redis(f"redis+sentinel://:pw@127.0.0.1:{port}/mymaster/0")


async def test_sentinel_credentials(tmp_path: Path, pg_url: str, key_prefix: str) -> None:
    """The servers' password in the URL's user info, the sentinels' own in
    the query; a refused one is a ConfigError that names what to fix and
    neither password."""
    group = SentinelGroup(tmp_path, replicas=1, password="srv-pw", sentinel_password="sen-pw")
    try:
        group.start()
        url = group.url(password="srv-pw", sentinel_password="sen-pw")
        async with AsyncHybridSaver.from_conn_string(
            url, pg_url, key_prefix=key_prefix, replicas_ack=1
        ) as saver:
            out = await build_graph(saver).ainvoke(
                {"log": []}, {"configurable": {"thread_id": "a"}}
            )
            assert out["n"] == 1
        for url, fix in [
            (group.url(password="srv-pw", sentinel_password="bad-sen-pw"), "sentinel_password"),
            (group.url(password="srv-pw"), "sentinel_password"),
            (group.url(password="bad-srv-pw", sentinel_password="sen-pw"), "password (or user)"),
        ]:
            with pytest.raises(ConfigError, match="refused the credentials") as e:
                await connect_redis(url)
            assert fix in str(e.value)
            assert not any(pw in str(e.value) for pw in ("srv-pw", "sen-pw"))
    finally:
        group.stop()


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"replicas_ack": 0}, "replicas_ack=0"),
        ({"replicas_ack": "1"}, "replicas_ack='1'"),
        ({"replicas_ack": True}, "replicas_ack=True"),
        ({"replicas_ack": 1, "replicas_ack_timeout": 0}, "replicas_ack_timeout=0"),
        ({"replicas_ack": 1, "replicas_ack_timeout": "1s"}, "replicas_ack_timeout='1s'"),
        ({"replicas_ack": 1, "replicas_ack_fsync": "yes"}, "replicas_ack_fsync='yes'"),
    ],
)
async def test_bad_replicas_ack(
    redis_url: str, pg_url: str, options: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        async with AsyncHybridSaver.from_conn_string(redis_url, pg_url, **options):
            pass


async def test_ack_timeout_says_the_write_is_on_the_primary(
    private_redis: Any, pg_url: str, key_prefix: str
) -> None:
    """No replica: every write times out with ReplicationTimeoutError, and is
    on the primary (readable, reconciled)."""
    async with AsyncHybridSaver.from_conn_string(
        private_redis.url, pg_url, key_prefix=key_prefix, replicas_ack=1, replicas_ack_timeout=0.05
    ) as saver:
        graph = build_graph(saver)
        config = {"configurable": {"thread_id": "lonely"}}
        with pytest.raises(ReplicationTimeoutError) as e:
            await graph.ainvoke({"log": []}, config)
        assert "reached the Redis primary" in str(e.value)
        assert "0 of the replicas_ack=1 replicas" in str(e.value)
        tup = await saver.aget_tuple(config)
        assert tup is not None  # the input checkpoint is in Redis
        await saver.aflush()
        assert await saver.backend.get("lonely", "", None) is not None
        with pytest.raises(ReplicationTimeoutError):  # deletes wait too
            await saver.adelete_thread("lonely")


async def test_replicas_ack_fsync_needs_waitaof(redis_url: str, pg_url: str) -> None:
    """Refused where the server lacks WAITAOF (Redis < 7.2), taken where it
    has it (the Valkey test below covers the acknowledgements)."""
    try:
        redis.Redis.from_url(redis_url).execute_command("WAITAOF", 0, 0, 0)
    except redis.ResponseError:
        with pytest.raises(ConfigError, match="replicas_ack_fsync=True needs WAITAOF"):
            async with AsyncHybridSaver.from_conn_string(
                redis_url, pg_url, replicas_ack=1, replicas_ack_fsync=True
            ):
                pass
        return
    async with AsyncHybridSaver.from_conn_string(
        redis_url, pg_url, replicas_ack=1, replicas_ack_fsync=True
    ) as saver:
        assert saver.hot.run.ack is not None


def _valkey(tmp_path: Path, name: str, *extra: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    folder = tmp_path / name
    folder.mkdir()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)]
    args += [*FAST_SYNC, "--appendonly", "yes", "--appendfsync", "always", *extra]
    proc = subprocess.Popen(
        [valkey_binary(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc, name)
    return port, proc


async def test_waitaof_on_valkey(tmp_path: Path, pg_url: str, key_prefix: str) -> None:
    """replicas_ack_fsync: WAITAOF on a Valkey primary with an AOF replica."""
    primary, p1 = _valkey(tmp_path, "primary")
    _, p2 = _valkey(tmp_path, "replica", "--replicaof", "127.0.0.1", str(primary))
    try:
        client = redis.Redis(port=primary)
        deadline = time.monotonic() + 20
        while (
            client.info("replication")["connected_slaves"] < 1
            or not client.info("replication")["slave0"].get("state") == "online"
        ):
            assert time.monotonic() < deadline, "the Valkey replica did not sync"
            time.sleep(0.1)
        url = f"redis://127.0.0.1:{primary}/0"
        async with AsyncHybridSaver.from_conn_string(
            url,
            pg_url,
            key_prefix=key_prefix,
            replicas_ack=1,
            replicas_ack_fsync=True,
            replicas_ack_timeout=5,
        ) as saver:
            graph = build_graph(saver)
            config = {"configurable": {"thread_id": "fsynced"}}
            out = await graph.ainvoke({"log": []}, config)
            assert out["log"] == ["first", "left", "right"]
    finally:
        kill_pid(p2)
        kill_pid(p1)


# --- failovers under load --------------------------------------------------------


async def retrying(call: Any, attempts: int = 20) -> Any:
    """`call()`, again after the typed, retryable errors of a failover (the
    replicas resync with the new primary before they acknowledge)."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except (ServerUnreachableError, ReplicationTimeoutError):
            await asyncio.sleep(0.2)
    return await call()


async def test_sentinel_url_follows_a_failover(
    sentinel_group: SentinelGroup, pg_url: str, key_prefix: str
) -> None:
    """A demoted primary (SENTINEL FAILOVER: it answers READONLY) and then a
    killed one: the saver's lane and redis-py's pool both end on the new
    primary; a lease taken before the failovers still fences other writers."""
    url = sentinel_group.url()
    async with (
        AsyncHybridSaver.from_conn_string(
            url, pg_url, key_prefix=key_prefix, replicas_ack=2
        ) as saver,
        AsyncHybridSaver.from_conn_string(url, pg_url, key_prefix=key_prefix) as other,
    ):
        graph = build_graph(saver)
        intruder = build_graph(other)
        config = {"configurable": {"thread_id": "leased"}}
        async with saver.alease("leased"):
            await graph.ainvoke({"log": []}, config)
            old = sentinel_group.demote_primary()
            new = await asyncio.to_thread(sentinel_group.wait_promoted, old)
            for _ in range(3):  # READONLY on the lane, then the new primary
                await retrying(lambda: graph.ainvoke({"log": []}, config))
            assert saver.hot.run.lanes is not None
            assert saver.hot.run.lanes.pipe is not None
            assert saver.hot.run.lanes.pipe.conn.port == new
            assert (await saver.hot.redis.execute_command("ROLE"))[0] == b"master"
            with pytest.raises(ThreadBusyError):
                await intruder.ainvoke({"log": []}, config)
        state = await graph.aget_state(config)
        assert state.values["n"] >= 4 and not state.next
        await saver.aflush()
        assert (await saver.backend.get("leased", "", None)) is not None


async def test_reconcile_worker_on_a_sentinel_url_resumes_after_a_failover(
    sentinel_group: SentinelGroup, pg_url: str, key_prefix: str
) -> None:
    """`python -m langgraph_hybrid_saver reconcile --redis redis+sentinel://...`
    applies what savers wrote, goes on on the promoted replica after the
    primary is killed, and stops cleanly."""
    url = sentinel_group.url()
    worker = start_reconciler(url, pg_url, "--key-prefix", key_prefix, "--setup")
    try:
        assert worker.stdout is not None
        assert "started" in worker.stdout.readline()
        async with AsyncHybridSaver.from_conn_string(
            url, pg_url, key_prefix=key_prefix, reconciler="external", replicas_ack=1
        ) as saver:
            graph = build_graph(saver)
            for i in range(4):
                await graph.ainvoke({"log": []}, {"configurable": {"thread_id": f"w{i}"}})
            await saver.aflush(timeout=30)
            await asyncio.to_thread(sentinel_group.wait_promoted, sentinel_group.kill_primary())
            for i in range(4, 8):
                config = {"configurable": {"thread_id": f"w{i}"}}
                await retrying(lambda config=config: graph.ainvoke({"log": []}, config))
            await saver.aflush(timeout=60)  # only the worker applies entries
            for i in range(8):
                assert await saver.backend.get(f"w{i}", "", None) is not None
        worker.terminate()
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert "Traceback" not in err
    finally:
        worker.kill()


async def test_sentinel_kill_with_replicas_ack_loses_nothing(
    sentinel_group: SentinelGroup, pg_url: str, key_prefix: str
) -> None:
    def fail() -> None:
        sentinel_group.wait_promoted(sentinel_group.kill_primary())

    figures = await failover_run(sentinel_group.url(), pg_url, key_prefix, fail, replicas_ack=1)
    print(figures)
    assert figures["invocations before the kill"] > 0
    assert figures["invocations"] > figures["invocations before the kill"]  # the load went on
    assert figures["errors not from this package"] == 0, figures["_untyped"]
    assert set(figures["errors seen by the load"]) <= {
        "ServerUnreachableError",
        "ReplicationTimeoutError",
    }
    assert figures["lost checkpoints"] == 0
    assert figures["lost pending writes"] == 0


async def test_sentinel_kill_without_replicas_ack_stays_in_bound(
    sentinel_group: SentinelGroup, pg_url: str, key_prefix: str
) -> None:
    def fail() -> None:
        sentinel_group.wait_promoted(sentinel_group.kill_primary())

    figures = await failover_run(sentinel_group.url(), pg_url, key_prefix, fail)
    print(figures)
    assert figures["invocations"] > figures["invocations before the kill"] > 0
    assert figures["errors not from this package"] == 0, figures["_untyped"]
    bound = LOSS_BOUND_WITHOUT_ACK * figures["acknowledged checkpoints"]
    assert figures["lost checkpoints"] <= bound
    assert figures["lost pending writes"] <= bound


async def test_cluster_master_killed_with_replicas_ack_loses_nothing(
    replicated_cluster: ReplicatedCluster, pg_url: str, key_prefix: str
) -> None:
    """A master of a Redis Cluster killed, its replica promoted: no MOVED,
    ASK or CROSSSLOT reaches the graphs (only typed, retryable errors), and
    nothing acknowledged is lost."""

    def fail() -> None:  # 16 threads and 16 outbox shards: some live on each master
        master = replicated_cluster.masters()[0]
        replicated_cluster.kill(master)
        replicated_cluster.wait_promoted(master)

    figures = await failover_run(replicated_cluster.url(), pg_url, key_prefix, fail, replicas_ack=1)
    print(figures)
    assert figures["invocations"] > figures["invocations before the kill"] > 0
    assert figures["errors not from this package"] == 0, figures["_untyped"]
    assert set(figures["errors seen by the load"]) <= {
        "ServerUnreachableError",
        "ReplicationTimeoutError",
    }
    assert figures["lost checkpoints"] == 0
    assert figures["lost pending writes"] == 0
