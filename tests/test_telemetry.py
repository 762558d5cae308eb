"""OpenTelemetry: the spans and metrics of a real graph run, captured with
the SDK's in-memory exporter and reader (Redis + PostgreSQL); the reconcile
worker's Prometheus endpoint scraped over HTTP while a load runs; the
package without opentelemetry installed (a subprocess that hides it)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.types import Command
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis as AsyncRedis

from langgraph_hybrid_saver import AsyncHybridSaver, ServerUnreachableError, telemetry
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.outbox.stream import Outbox
from scripts.servers import PostgresCluster

from .conftest import ROOT, free_port, hybrid_saver, start_reconciler
from .helpers import build, put_chain


class Captured:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    async def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points. Collected from another thread, as
        an exporter does: the outbox gauges read Redis on the saver's loop."""
        data: MetricsData | None = await asyncio.to_thread(self.reader.get_metrics_data)
        assert data is not None
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def captured() -> Iterator[Captured]:
    c = Captured()
    telemetry.configure(tracer_provider=c.tracer_provider, meter_provider=c.meter_provider)
    try:
        yield c
    finally:
        telemetry.configure()  # back to the global (unset: no-op) providers
        c.tracer_provider.shutdown()
        c.meter_provider.shutdown()


def total(points: list[Any], **attributes: Any) -> float:
    return sum(
        p.value for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())
    )


async def test_graph_run_spans_and_metrics(
    captured: Captured, redis_url: str, pg_url: str, key_prefix: str
) -> None:
    thread = f"otel-{uuid.uuid4()}"
    cfg = {"configurable": {"thread_id": thread}}
    parent_tracer = captured.tracer_provider.get_tracer("the-app")
    async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
        graph = build(saver)
        with parent_tracer.start_as_current_span("agent-turn") as turn:
            first = await graph.ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)
            assert "__interrupt__" in first
            done = await graph.ainvoke(Command(resume="yes"), cfg)
        assert done["steps"] == ["billing", "review", "respond:True"]
        await saver.aflush(timeout=10)

        # A thread that is no longer hot is read through from PostgreSQL.
        await saver.hot.drop_thread(thread, queue=False)
        assert await saver.aget_tuple(cfg) is not None
        assert await saver.aget_tuple(cfg) is not None  # from memory: the local cache
        listed = [t async for t in saver.alist(cfg, limit=2)]
        assert len(listed) == 2
        metrics = await captured.metrics()
        stats = await saver.astats()

    puts = captured.named("hybrid_saver.aput")
    assert puts, [s.name for s in captured.spans.get_finished_spans()]
    for span in puts:
        attrs = span.attributes or {}
        assert attrs[telemetry.THREAD_ID] == thread
        assert attrs[telemetry.BACKEND] == "postgres"
        assert attrs[telemetry.KEY_PREFIX] == key_prefix
        assert isinstance(attrs[telemetry.BYTES], int) and attrs[telemetry.BYTES] > 0
        # the graph's own context is the parent: spans join the app's trace
        assert span.context.trace_id == turn.get_span_context().trace_id
    namespaces = {(s.attributes or {})[telemetry.CHECKPOINT_NS] for s in puts}
    assert "" in namespaces and len(namespaces) > 1  # the subgraph's namespace too

    writes = captured.named("hybrid_saver.aput_writes")
    assert writes and all((s.attributes or {})[telemetry.COUNT] >= 1 for s in writes)
    assert all((s.attributes or {})[telemetry.BYTES] > 0 for s in writes)

    gets = captured.named("hybrid_saver.aget_tuple")
    reads = [(s.attributes or {}).get(telemetry.READ) for s in gets]
    assert reads[-2:] == ["read_through", "local"]
    assert "hot" in reads[:-2]  # the graph's resume read its thread from Redis

    [alist] = captured.named("hybrid_saver.alist")
    assert (alist.attributes or {})[telemetry.COUNT] == 2
    assert captured.named("hybrid_saver.aflush")

    batches = captured.named(telemetry.RECONCILE_SPAN)
    assert batches
    assert sum((b.attributes or {})[telemetry.ENTRIES] for b in batches) == stats["applied"]
    assert all((b.attributes or {})[telemetry.BATCH_SIZE] >= 1 for b in batches)
    assert {(b.attributes or {})[telemetry.BACKEND] for b in batches} == {"postgres"}

    assert total(metrics[telemetry.APPLIED], **{telemetry.BACKEND: "postgres"}) == stats["applied"]
    durations = metrics[telemetry.APPLY_DURATION]
    assert sum(p.count for p in durations) >= len(batches)
    assert total(metrics[telemetry.READ_THROUGHS], **{telemetry.READ: "read_through"}) == 1
    for gauge in (telemetry.BACKLOG, telemetry.LAG, telemetry.DEAD_LETTERS):
        mine = [p for p in metrics[gauge] if p.attributes[telemetry.KEY_PREFIX] == key_prefix]
        assert [p.value for p in mine] == [0], gauge  # flushed: nothing waits


async def test_spans_of_deletes_copies_prunes_and_errors(
    captured: Captured, redis_url: str, pg_url: str, key_prefix: str
) -> None:
    src, dst = f"src-{uuid.uuid4()}", f"dst-{uuid.uuid4()}"
    async with hybrid_saver(redis_url, pg_url, key_prefix) as saver:
        await put_chain(saver, src, 3, run_id="run-a")
        await saver.acopy_thread(src, dst)
        await saver.aprune([dst])
        await saver.adelete_for_runs(["run-a"])
        await saver.adelete_thread(src)
        with pytest.raises(Exception, match="thread_id"):
            await saver.aget_tuple({"configurable": {}})

    def attrs(name: str) -> dict[str, Any]:
        [span] = captured.named(name)
        return dict(span.attributes or {})

    copy = attrs("hybrid_saver.acopy_thread")
    assert copy[telemetry.THREAD_ID] == src and copy[telemetry.TARGET_THREAD_ID] == dst
    assert attrs("hybrid_saver.aprune")[telemetry.COUNT] == 1
    assert attrs("hybrid_saver.adelete_for_runs")[telemetry.COUNT] == 1
    assert attrs("hybrid_saver.adelete_thread")[telemetry.THREAD_ID] == src
    [bad] = [s for s in captured.named("hybrid_saver.aget_tuple")]
    assert not bad.status.is_ok and bad.events[0].name == "exception"


async def test_durable_outage_counts_errors(
    captured: Captured, throwaway_pg: PostgresCluster, redis_url: str, key_prefix: str
) -> None:
    """A read-through with the durable store stopped fails with the typed
    error, its span records it, and the error counter counts it."""
    url = throwaway_pg.schema_url(f"s_{uuid.uuid4().hex[:8]}")
    thread = str(uuid.uuid4())
    async with hybrid_saver(redis_url, url, key_prefix, durable_timeout=2.0) as saver:
        await put_chain(saver, thread, 2)
        await saver.aflush(timeout=10)
        await saver.hot.drop_thread(thread, queue=False)  # only the store has it now
        throwaway_pg.stop()
        try:
            with pytest.raises(ServerUnreachableError):
                await saver.aget_tuple({"configurable": {"thread_id": thread}})
            metrics = await captured.metrics()
        finally:
            throwaway_pg.start()
    assert total(metrics[telemetry.ERRORS], **{telemetry.TIER: "durable"}) == 1
    [failed] = [s for s in captured.named("hybrid_saver.aget_tuple") if not s.status.is_ok]
    assert failed.events[0].attributes["exception.type"].endswith("ServerUnreachableError")


# --- the worker's Prometheus endpoint ----------------------------------------------


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def sample(text: str, metric: str, key_prefix: str | None = None) -> float | None:
    """The value of `metric` (summed over its label sets, or the one with
    key_prefix), or None when absent."""
    found = None
    for line in text.splitlines():
        m = re.match(rf"^{metric}(\{{.*\}})? (\S+)$", line)
        if m and (key_prefix is None or f'key_prefix="{key_prefix}"' in (m.group(1) or "")):
            found = (found or 0.0) + float(m.group(2))
    return found


HOLDER = "test-holder"  # a lease owner that is not a worker: its shard waits


async def hold_shard(redis_url: str, key_prefix: str, shard: int, hold: bool) -> None:
    """Take (or give back) one shard's lease, as a stalled reconciler would
    hold it: the worker leaves that shard's entries in the outbox."""
    client = AsyncRedis.from_url(redis_url)
    try:
        outbox = Outbox(HotTier(client, prefix=key_prefix))
        if hold:
            assert await outbox.try_leases([shard], HOLDER, 120_000) == [shard]
        else:
            await outbox.release([shard], HOLDER)
    finally:
        await client.aclose()


def test_worker_serves_prometheus_metrics_that_move_under_load(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    """Scraped over HTTP while 8 threads write: the applied counter rises;
    with one shard's lease held elsewhere, the backlog and lag gauges rise;
    once it is given back and the outbox flushed, they read 0 and the
    counter holds every entry."""
    threads = [f"prom-{i}-{uuid.uuid4()}" for i in range(8)]
    stalled = HotTier(AsyncRedis(), prefix=key_prefix).shard(threads[0])
    asyncio.run(hold_shard(redis_url, key_prefix, stalled, hold=True))
    port = free_port()
    worker = start_reconciler(
        redis_url, pg_url, "--key-prefix", key_prefix, "--setup", "--metrics-port", str(port)
    )
    url = f"http://127.0.0.1:{port}/metrics"
    applied_seen: list[float] = []
    backlog_seen: list[float] = []
    lag_seen: list[float] = []

    def observe() -> None:
        text = scrape(url)
        applied_seen.append(sample(text, "hybrid_saver_reconcile_applied_total") or 0.0)
        backlog = sample(text, "hybrid_saver_outbox_backlog", key_prefix)
        assert backlog is not None, text
        backlog_seen.append(backlog)
        lag_seen.append(sample(text, "hybrid_saver_reconcile_lag_seconds", key_prefix) or 0.0)

    async def load_and_scrape() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, pg_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            load = asyncio.gather(*(put_chain(saver, t, 25) for t in threads))
            while not load.done():
                await asyncio.to_thread(observe)
                await asyncio.sleep(0.05)
            await load
            # The gauges are read afresh at most every second: wait for the
            # held shard's entries to show (a wait, bounded by the test timeout).
            while not (backlog_seen[-1] > 0 and lag_seen[-1] > 0):
                await asyncio.sleep(0.2)
                await asyncio.to_thread(observe)
            await hold_shard(redis_url, key_prefix, stalled, hold=False)
            await saver.aflush(timeout=30)

    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == f"metrics on {url}"
        assert "started" in worker.stdout.readline()
        while sample(scrape(url), "hybrid_saver_outbox_backlog", key_prefix) is None:
            pass  # the gauges report once the worker's loop runs
        asyncio.run(load_and_scrape())
        after = scrape(url)
        while sample(after, "hybrid_saver_outbox_backlog", key_prefix) != 0:
            after = scrape(url)  # the cached reading is up to a second old
        # every entry applied: 8 threads x 25 checkpoints, each with one write
        assert sample(after, "hybrid_saver_reconcile_applied_total") == 8 * 25 * 2
        assert (sample(after, "hybrid_saver_reconcile_apply_duration_seconds_count") or 0) >= 1
        assert sample(after, "hybrid_saver_reconcile_lag_seconds", key_prefix) == 0
        assert sample(after, "hybrid_saver_outbox_dead_letters", key_prefix) == 0
        assert "process_cpu_seconds_total" in after  # prometheus_client's process metrics
        os.kill(worker.pid, signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
        asyncio.run(hold_shard(redis_url, key_prefix, stalled, hold=False))
    assert worker.returncode == 0, err
    assert applied_seen == sorted(applied_seen) and len(set(applied_seen)) > 1, applied_seen
    assert applied_seen[-1] < 8 * 25 * 2  # the held shard's entries were not applied yet
    assert backlog_seen[-1] > 0 and lag_seen[-1] > 0


def test_worker_metrics_port_in_use_is_a_one_line_error(
    redis_url: str, pg_url: str, key_prefix: str
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_reconciler(
            redis_url, pg_url, "--key-prefix", key_prefix, "--metrics-port", str(port)
        )
        _, err = worker.communicate(timeout=60)
    assert worker.returncode != 0
    assert f"127.0.0.1:{port}" in err and "--metrics-port" in err, err
    assert "Traceback" not in err


# --- without the extra -------------------------------------------------------------


def test_without_opentelemetry_everything_is_the_plain_method(
    redis_url: str, key_prefix: str, tmp_path: Any
) -> None:
    """With opentelemetry hidden, the decorators return the methods
    themselves, the saver works, and the Prometheus endpoint names the extra."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"):
            sys.modules[name] = None  # import fails as when not installed
        from langgraph_hybrid_saver import AsyncHybridSaver, MissingExtraError, telemetry
        from langgraph_hybrid_saver.bridge import on_own_loop
        from langgraph_hybrid_saver.prometheus import serve_prometheus
        assert telemetry.ENABLED is False
        async def f(self): pass
        assert telemetry.traced("x")(f) is f
        assert AsyncHybridSaver.aput.__wrapped__.__name__ == "aput"  # on_own_loop only
        assert not hasattr(AsyncHybridSaver.aput.__wrapped__, "__wrapped__")
        try:
            serve_prometheus(0)
        except MissingExtraError as e:
            assert "[otel]" in str(e), e
        else:
            raise AssertionError("serve_prometheus without the extra")

        async def main():
            async with AsyncHybridSaver.from_conn_string(
                {redis_url!r}, "sqlite:///{tmp_path}/x.db", key_prefix={key_prefix!r}
            ) as saver:
                from tests.helpers import put_chain
                await put_chain(saver, "t", 3)
                assert await saver.aget_tuple({{"configurable": {{"thread_id": "t"}}}})
                await saver.aflush()
                await saver.adelete_thread("t")
        asyncio.run(main())
        assert not any(m.startswith("opentelemetry") and sys.modules[m] for m in sys.modules)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_global_sdk_provider_set_after_the_first_calls_is_used(
    redis_url: str, key_prefix: str, tmp_path: Any
) -> None:
    """The production path: the app sets the global providers (here only after
    the saver has served calls on the no-op ones), and the saver's spans and
    metrics go there. A process of its own: a global provider is set once."""
    script = textwrap.dedent(
        f"""
        import asyncio, time
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from langgraph_hybrid_saver import AsyncHybridSaver, telemetry
        from tests.helpers import put_chain

        async def main():
            async with AsyncHybridSaver.from_conn_string(
                {redis_url!r}, "sqlite:///{tmp_path}/x.db", key_prefix={key_prefix!r}
            ) as saver:
                await put_chain(saver, "before", 2)  # no SDK yet: no-op
                spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(spans))
                trace.set_tracer_provider(provider)
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                time.sleep(telemetry.NOOP_RECHECK)  # the no-op verdict expires
                await put_chain(saver, "after", 2)
                await saver.aflush()
                puts = [s for s in spans.get_finished_spans() if s.name == "hybrid_saver.aput"]
                threads = {{s.attributes.get(telemetry.THREAD_ID) for s in puts}}
                assert threads == {{"after"}}, threads
                data = await asyncio.to_thread(reader.get_metrics_data)
                names = {{m.name for r in data.resource_metrics for s in r.scope_metrics
                         for m in s.metrics}}
                assert telemetry.APPLIED in names and telemetry.BACKLOG in names, names
                keys = [k async for k in saver.hot.redis.scan_iter({key_prefix!r} + ":*")]
                await saver.hot.redis.delete(*keys)
        asyncio.run(main())
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_reconciler_that_never_ends_leaves_no_gauge_source_behind() -> None:
    """`watch` without its `unwatch` (a cancelled reconciler): the source
    holds its outbox and loop weakly and goes at the next watch once its
    loop is closed, so closed loops do not pile up in a long process."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    outbox = Outbox(HotTier(AsyncRedis(), prefix=prefix))

    async def watch() -> None:
        telemetry.watch(outbox)

    asyncio.run(watch())
    asyncio.run(watch())  # the first one's loop is closed by now
    mine = [s for s in telemetry._sources if s.prefix == prefix]
    assert len(mine) == 1
    loop = mine[0].loop()
    assert loop is None or loop.is_closed()
