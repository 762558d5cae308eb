"""Invariant 5: a process crash loses nothing. Real processes, real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from langgraph.checkpoint.conformance.test_utils import generate_config

from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.core import ListQuery
from langgraph_hybrid_saver.outbox.reconciler import Reconciler

from .conftest import start_reconciler
from .helpers import put_chain

ROOT = Path(__file__).resolve().parents[1]


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_graph_killed_mid_run_resumes_in_a_new_process(
    redis_url: str, durable_url: str, key_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "nodes.log"
    thread = f"crash-{uuid.uuid4()}"
    args = [
        sys.executable,
        "-m",
        "tests.crash_child",
        redis_url,
        durable_url,
        key_prefix,
        thread,
        str(log),
    ]
    child = subprocess.Popen([*args, "run"], cwd=ROOT)
    try:
        wait_for(lambda: log.exists() and "c " in log.read_text(), 30, "node c to start")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        resumed = subprocess.run(
            [*args, "resume"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert resumed.returncode == 0, resumed.stderr
        assert "RESULT a,b,c,d" in resumed.stdout
    finally:
        child.kill()
    lines = [line.split() for line in log.read_text().splitlines()]
    ran = [name for name, _ in lines]
    assert ran == ["a", "b", "c", "c", "d"]  # a and b never re-ran; c restarted once
    pids = {name: pid for name, pid in lines}
    assert pids["a"] == str(child.pid) and pids["d"] != str(child.pid)


async def test_killed_reconciler_leaves_nothing_behind(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, reconciler="external", flush_timeout=30
    ) as saver:
        worker = start_reconciler(
            redis_url, durable_url, "--key-prefix", key_prefix, "--batch-size", "5", stderr=None
        )
        try:
            assert worker.stdout is not None
            assert "started" in worker.stdout.readline()
            threads = [f"rk-{i}-{uuid.uuid4()}" for i in range(8)]
            await asyncio.gather(*(put_chain(saver, t, 10) for t in threads))
            os.kill(worker.pid, signal.SIGKILL)  # whatever it was doing
            assert worker.wait(timeout=10) == -signal.SIGKILL
            more = [f"rk-late-{i}-{uuid.uuid4()}" for i in range(4)]
            await asyncio.gather(*(put_chain(saver, t, 10) for t in more))
            backlog, _ = await saver.outbox.backlog()
            assert backlog > 0  # queued while the dead worker still holds the leases
        finally:
            worker.kill()
        # Its leases are still held; a new reconciler takes over when they expire.
        successor = Reconciler(saver.hot, saver.backend, lease_ms=1000)
        stop = asyncio.Event()
        task = asyncio.create_task(successor.run(stop))
        await saver.aflush(timeout=30)
        stop.set()
        await task
        for t in threads + more:
            rows = await saver.backend.list(ListQuery(t, None, None, None, None, None))
            assert len(rows) == 10
            assert all(len(r.writes) == 1 for r in rows)
            hot = await saver.aget_tuple(generate_config(t))
            assert (
                hot is not None
                and hot.config["configurable"]["checkpoint_id"] == rows[0].checkpoint_id
            )


async def test_close_drains_the_shards_of_a_dead_reconciler(
    redis_url: str, durable_url: str, key_prefix: str
) -> None:
    async with AsyncHybridSaver.from_conn_string(
        redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
    ) as writer:
        threads = [f"orphan-{i}-{uuid.uuid4()}" for i in range(6)]
        for t in threads:
            await put_chain(writer, t, 2)
        for lease in writer.hot.keys.leases:  # a reconciler that died holding every shard
            await writer.hot.redis.set(lease, "dead-worker", px=1500)
        assert (await writer.outbox.backlog())[0] == 24
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix
        ) as short_lived:
            pass  # closes at once: its drain waits for the dead leases, then applies
        assert (await writer.outbox.backlog())[0] == 0
        assert short_lived.reconciler is not None and short_lived.reconciler.stats.applied == 24
        for t in threads:
            assert len(await writer.backend.list(ListQuery(t, None, None, None, None, None))) == 2
