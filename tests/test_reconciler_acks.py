"""When the reconciler deletes what it applied, against real Redis and
PostgreSQL: after the commit (`step()`), or with the next read
(`step(defer_ack=True)`, what `run` does), and never before the commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from langgraph_hybrid_saver import AsyncHybridSaver, Reconciler

from .conftest import hybrid_saver
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
