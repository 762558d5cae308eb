"""Bytes a 200-turn chat thread takes in PostgreSQL, with and without
retention, with `add_messages` and with LangGraph's `DeltaChannel`.

Each variant runs the chat graph (benchmarks/chat_graph.py: one user and
one AI message per turn) on its own thread in a fresh schema, through the
hybrid saver, then measures the thread's rows as stored (`pg_column_size`:
after TOAST compression, without page and index overhead), then runs
retention (`keep_latest=1`, timed) and measures again. On the DeltaChannel
thread retention also keeps the checkpoints back to the snapshot the latest
one's messages are rebuilt from (LangGraph's default: a snapshot every 100
updates).

    python -m benchmarks.retention_size [--pg URL] [--redis URL] [--turns N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import START, StateGraph
from langgraph.graph.message import _messages_delta_reducer, add_messages
from redis.asyncio import Redis
from typing_extensions import TypedDict

from benchmarks.chat_graph import REPLY_TEXT, USER_TEXT
from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.retention import RetentionPolicy, retain

TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


class AddMessagesState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class DeltaState(TypedDict):
    messages: Annotated[list[AnyMessage], DeltaChannel(_messages_delta_reducer)]


def build(state: type[Any], checkpointer: Any) -> Any:
    def reply(s: dict[str, Any]) -> dict[str, Any]:
        n = len(s["messages"])
        return {"messages": [AIMessage(f"reply {n // 2}: " + REPLY_TEXT[n % len(REPLY_TEXT)])]}

    g = StateGraph(state)
    g.add_node("reply", reply)
    g.add_edge(START, "reply")
    return g.compile(checkpointer=checkpointer)


def thread_bytes(admin: str, schema: str) -> dict[str, int]:
    """Rows and their stored bytes per table of the schema (one thread)."""
    out: dict[str, int] = {}
    with psycopg.connect(admin, autocommit=True) as conn:
        for table in TABLES:
            row = conn.execute(
                f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {schema}.{table} t"
            ).fetchone()
            assert row is not None
            out[f"{table} rows"], out[table] = int(row[0]), int(row[1])
    return out


async def run_variant(name: str, state: type[Any], args: argparse.Namespace) -> None:
    schema = f"bench_ret_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.pg else "?"
    url = f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        async with AsyncHybridSaver.from_conn_string(args.redis, url, key_prefix=schema) as saver:
            await saver.setup()
            graph = build(state, saver)
            config = {"configurable": {"thread_id": "chat"}}
            for turn in range(args.turns):
                text = USER_TEXT[turn % len(USER_TEXT)]
                await graph.ainvoke({"messages": [HumanMessage(text)]}, config)
            await saver.aflush()
            messages = len((await graph.aget_state(config)).values["messages"])
            before = thread_bytes(args.pg, schema)
            started = time.perf_counter()
            report = await retain(
                saver.hot,
                saver.outbox,
                saver.backend,
                RetentionPolicy(keep_latest=1),
                flush=saver.aflush,
            )
            took = time.perf_counter() - started
            after = thread_bytes(args.pg, schema)
            left = len((await graph.aget_state(config)).values["messages"])
            await saver.adelete_thread("chat")
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        redis = Redis.from_url(args.redis)
        try:  # the thread index, meta and outbox keys of the run's prefix
            if keys := [k async for k in redis.scan_iter(f"{schema}:*")]:
                await redis.delete(*keys)
        finally:
            await redis.aclose()
    total_before = sum(before[t] for t in TABLES)
    total_after = sum(after[t] for t in TABLES)
    kept = report.checkpoints_kept_for_delta
    older = f" ({kept} older kept for the DeltaChannel)" if kept else ""
    print(
        f"{name:13} {args.turns} turns, {messages} messages: "
        f"{before['checkpoints rows']} checkpoints, {total_before:>11,} bytes; "
        f"after keep_latest=1: {after['checkpoints rows']} checkpoints{older}, "
        f"{total_after:>11,} bytes, state {left} messages; retention took {took:.2f} s"
    )
    for table in TABLES:
        print(f"{'':13}   {table:18} {before[table]:>11,} -> {after[table]:>11,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run_variant("add_messages", AddMessagesState, args))
    asyncio.run(run_variant("DeltaChannel", DeltaState, args))


if __name__ == "__main__":
    main()
