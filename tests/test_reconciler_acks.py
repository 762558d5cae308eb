"""When the reconciler deletes what it applied, against real Redis and
PostgreSQL: after the commit (`step()`), or with the next read
(`step(defer_ack=True)`, what `run` does), and never before the commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError

from langgraph_hybrid_saver import AsyncHybridSaver, Reconciler

from .conftest import PrivateRedis, hybrid_saver
from .helpers import durable_ids, put_chain


@pytest.fixture
async def external(redis_url: str, pg_url: str, key_prefix: str) -> AsyncIterator[AsyncHybridSaver]:
    async with hybrid_saver(redis_url, pg_url, key_prefix, reconciler="external") as s:
        yield s


async def test_deferred_deletes_go_with_the_next_read(external: AsyncHybridSaver) -> None:
    await put_chain(external, "t-acks", 3)  # 3 puts + 3 writes entries
    worker = Reconciler(external.hot, external.backend, batch_size=4)
    seen: list[Sequence[tuple[int, str]]] = []
    worker.on_applied = seen.append

    assert await worker.step(None, defer_ack=True) == 4
    assert len(await durable_ids(external, "t-acks")) == 2  # committed ...
    assert (await external.outbox.backlog())[0] == 6  # ... and still queued
    assert await worker.step(None, defer_ack=True) == 2  # read after deleting the 4
    assert (await external.outbox.backlog())[0] == 2
    await worker.flush_acks()
    assert (await external.outbox.backlog())[0] == 0
    assert [len(batch) for batch in seen] == [4, 2]
    assert len(await durable_ids(external, "t-acks")) == 3
    await worker.release_all()


async def test_plain_steps_delete_after_each_commit(external: AsyncHybridSaver) -> None:
    await put_chain(external, "t-acks2", 2)
    worker = Reconciler(external.hot, external.backend, batch_size=3)
    assert await worker.step(None) == 3
    assert (await external.outbox.backlog())[0] == 1
    assert await worker.step(None) == 1
    assert (await external.outbox.backlog())[0] == 0
    await worker.release_all()


async def test_release_deletes_what_a_deferred_step_applied(external: AsyncHybridSaver) -> None:
    await put_chain(external, "t-acks3", 1)
    worker = Reconciler(external.hot, external.backend)
    assert await worker.step(None, defer_ack=True) == 2
    await worker.release_all()
    assert (await external.outbox.backlog())[0] == 0
    assert await durable_ids(external, "t-acks3")


async def test_acks_and_leases_survive_a_script_flush(external: AsyncHybridSaver) -> None:
    """The outbox sends its scripts as plain EVALSHA in its pipelines: after
    Redis forgot them (a restart, SCRIPT FLUSH) it loads them and runs the
    pipeline again, so the deferred deletes, the lease renewal and the
    release still happen."""
    await put_chain(external, "t-acks4", 2)  # 2 puts + 2 writes entries
    worker = Reconciler(external.hot, external.backend, batch_size=3)
    assert await worker.step(None, defer_ack=True) == 3
    await external.hot.redis.script_flush()
    worker._renewed_at = 0.0  # the next step renews its leases first
    assert await worker.step(None, defer_ack=True) == 1  # after deleting the 3
    assert (await external.outbox.backlog())[0] == 1
    await external.hot.redis.script_flush()
    await worker.release_all()
    assert (await external.outbox.backlog())[0] == 0
    leases = [await external.hot.redis.get(k) for k in external.hot.keys.leases]
    assert leases == [None] * len(leases)
    assert len(await durable_ids(external, "t-acks4")) == 2


async def reading_clients(admin: Redis) -> int:
    """Connections whose last command was an XREAD: the reconciler's."""
    return sum(1 for c in await admin.client_list() if c["cmd"] == "xread")


async def test_a_demoted_server_is_left_for_a_new_connection(
    private_redis: PrivateRedis, tmp_path: Path, pg_url: str, key_prefix: str
) -> None:
    """A failover demotes the server under the reconciler's pooled
    connection: its deletes are refused (READONLY), and that connection is
    dropped, so the next read opens a new one, which a DNS or Sentinel
    failover points at the new primary."""
    primary = PrivateRedis(tmp_path)
    primary.start()
    admin = Redis.from_url(private_redis.url)
    try:
        async with hybrid_saver(private_redis.url, pg_url, key_prefix, reconciler="external") as s:
            await put_chain(s, "t-ro", 1)
            worker = Reconciler(s.hot, s.backend, lease_ms=60_000)  # no renewal in the test
            assert await worker.step(None, defer_ack=True) == 2  # deletes go with the next read
            assert await reading_clients(admin) == 1
            await admin.replicaof("127.0.0.1", primary.port)  # read-only from now on
            with pytest.raises(ReadOnlyError):
                await worker.step(None, defer_ack=True)
            assert await reading_clients(admin) == 0
            await admin.replicaof("NO", "ONE")
            await worker.step(None)  # a new connection, on a primary again
            assert (await s.outbox.backlog())[0] == 0  # (the sync may have emptied it first)
            await worker.release_all()
    finally:
        await admin.aclose()
        primary.stop()
