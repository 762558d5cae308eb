"""The official LangGraph checkpointer conformance suite, against real servers."""

from __future__ import annotations

from .helpers import run_conformance


async def test_conformance(redis_url: str, durable_url: str) -> None:
    await run_conformance(redis_url, durable_url)
