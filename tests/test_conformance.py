"""The official LangGraph checkpointer conformance suite, against real servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from langgraph_hybrid_saver import AsyncHybridSaver

ALL_CAPABILITIES = {
    "put",
    "put_writes",
    "get_tuple",
    "list",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
}


async def run_conformance(redis_url: str, durable_url: str) -> None:
    """validate() on a fresh key prefix per capability suite: 8/8 must pass."""

    @checkpointer_test(name="AsyncHybridSaver")
    async def factory() -> AsyncIterator[AsyncHybridSaver]:
        prefix = f"conf{uuid.uuid4().hex[:10]}"
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=prefix
        ) as s:
            yield s

    report = await validate(factory, progress=ProgressCallbacks.verbose())
    report.print_report()
    detected = {cap for cap, r in report.results.items() if r.detected}
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert detected == ALL_CAPABILITIES
    assert failures == {}
    assert report.passed_all()


async def test_conformance(redis_url: str, durable_url: str) -> None:
    await run_conformance(redis_url, durable_url)
