"""The operations CLI against real Redis and a real durable store.

Commands run in-process through click's CliRunner (each runs its own event
loop, so these tests are sync and seed data with `asyncio.run`); the
reconcile worker runs as a real subprocess and is stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
import redis
from click.testing import CliRunner, Result
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages
from langgraph.types import Command, Send, interrupt
from redis.asyncio import Redis as AsyncRedis
from typing_extensions import TypedDict

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError
from langgraph_hybrid_saver.cli import cli, main
from langgraph_hybrid_saver.cli import launch as cli_module
from langgraph_hybrid_saver.hot import HotTier
from langgraph_hybrid_saver.outbox.reconciler import Reconciler
from langgraph_hybrid_saver.outbox.stream import Outbox
from langgraph_hybrid_saver.reducers import rolling_window

from .conftest import free_port, start_reconciler
from .helpers import build, put_chain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_redis(redis_url: str, key_prefix: str) -> Iterator[None]:
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{key_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def conn(redis_url: str, durable_url: str, key_prefix: str, clean_redis: None) -> list[str]:
    """Connection options for every command."""
    return ["--redis", redis_url, "--durable", durable_url, "--key-prefix", key_prefix]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reconcile_all(redis_url: str, durable_url: str, key_prefix: str) -> None:
    """Apply the whole outbox once (one in-test reconciler step)."""

    async def go() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            worker = Reconciler(saver.hot, saver.backend, batch_size=10_000)
            while await worker.step():
                pass
            await worker.release_all()

    asyncio.run(go())


# --- help, errors, exit codes ---------------------------------------------------

COMMANDS = ["setup", "status", "inspect", "size", "reconcile", "dead-letters", "demo", "bench"]


def test_help_for_every_command() -> None:
    top = run("--help")
    assert top.exit_code == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = run(name, "--help")
        assert sub.exit_code == 0, sub.output
        assert f"Usage: cli {name}" in sub.stdout
    assert "HYBRID_SAVER_REDIS_URL" in run("status", "--help").stdout
    assert run("--version").stdout.startswith("langgraph-hybrid-saver, version ")


def test_errors_are_one_line_with_exit_codes(redis_url: str, pg_url: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    dead_pg = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x"
    cases = [
        (["status", "--redis", dead_redis], 3, "Redis at redis://127.0.0.1:"),
        (["setup", "--redis", redis_url, "--durable", dead_pg], 3, "PostgreSQL at"),
        (["setup", "--redis", redis_url, "--durable", "mysql://h/db"], 2, "unsupported scheme"),
        (["inspect", "t", "--redis", "http://x"], 2, "is not a Redis URL"),
        (["status"], 2, "Missing option '--redis'"),
        (["status", "--redis", redis_url, "--key-prefix", "a{b"], 2, "key_prefix"),
        # A schema nobody set up: the driver's error, one line, with the fix.
        (["inspect", "t", "--redis", redis_url, "--durable", pg_url], 1, "run `langgraph"),
    ]
    for args, code, text in cases:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
        assert "secret" not in result.output
        if code != 2 or "Missing" not in text:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # main() is what the console script and `python -m` call: it returns the code.
    assert main(["status", "--redis", dead_redis]) == 3
    assert main(["--help"]) == 0
    # --debug lets the exception through, for a traceback.
    debug = CliRunner().invoke(cli, ["--debug", "status", "--redis", dead_redis])
    assert type(debug.exception).__name__ == "ServerUnreachableError"


def test_tables_without_rich_ask_for_the_extra(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)
    result = CliRunner().invoke(cli, ["status", "--redis", f"redis://127.0.0.1:{free_port()}/0"])
    assert result.exit_code == 2
    assert "pip install 'langgraph-hybrid-saver[cli]'" in result.stderr


# --- setup ----------------------------------------------------------------------


def test_setup_creates_the_schema_and_prints_versions(
    redis_url: str, durable_url: str, conn: list[str]
) -> None:
    first = run("setup", *conn)
    assert first.exit_code == 0, first.output
    assert "schema up to date" in first.stdout
    assert "redis " in first.stdout or "valkey " in first.stdout
    facts = run_json("setup", *conn)  # idempotent
    assert facts["package_version"] == "0.1.0"
    assert facts["redis_server"].split()[1][0].isdigit()
    assert facts["shards"] == 16
    if durable_url.startswith("postgres"):
        assert facts["durable_server"].startswith("PostgreSQL ")
        with psycopg.connect(durable_url) as c:
            assert c.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
    # The prefix now records its shard count: another count is refused.
    clash = CliRunner().invoke(cli, ["setup", *conn, "--shards", "4"])
    assert clash.exit_code == 2
    assert "pass --shards 16" in clash.stderr


# --- status ---------------------------------------------------------------------


def test_status_backlog_lag_workers_threads_rows(
    redis_url: str, durable_url: str, key_prefix: str, conn: list[str]
) -> None:
    threads = [f"st-{i}-{uuid.uuid4()}" for i in range(3)]

    async def seed() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            for t in threads:
                await put_chain(saver, t, 4)

    asyncio.run(seed())
    before = run_json("status", *conn)
    assert before["backlog"] == 3 * 4 * 2  # a put and a put_writes per checkpoint
    assert 0 <= before["lag_p50_s"] <= before["lag_max_s"]
    assert before["lag_estimated"] is False
    assert before["hot_threads"] == 3
    assert before["workers"] == []
    assert before["durable_rows"]["checkpoints"] == 0
    assert any("no reconciler is alive" in w for w in before["warnings"])
    sampled = run_json("status", *conn, "--sample", "1", "--no-scan")
    assert sampled["lag_estimated"] is True and sampled["hot_threads"] is None
    assert sampled["lag_max_s"] == pytest.approx(before["lag_max_s"], abs=5)

    table = run("status", *conn)
    assert table.exit_code == 0
    assert "24 entries" in table.stdout and "0 alive" in table.stdout
    assert "Shards with a backlog" in table.stdout

    async def work() -> str:
        """One reconciler step: it takes every shard's lease and applies all."""
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            worker = Reconciler(saver.hot, saver.backend, lease_ms=60_000, batch_size=1000)
            await worker.step()
            return worker.owner

    owner = asyncio.run(work())  # its lease and heartbeat outlive the process
    after = run_json("status", *conn)
    assert after["backlog"] == 0 and after["lag_max_s"] is None
    assert [(w["owner"], w["alive"], w["shards"]) for w in after["workers"]] == [
        (owner, True, list(range(16)))
    ]
    assert after["unowned_shards"] == []
    assert after["durable_rows"]["checkpoints"] == 12
    assert after["warnings"] == []
    table = run("status", *conn)
    assert owner in table.stdout and "0-15" in table.stdout and "1 alive" in table.stdout


def test_status_watch_prints_one_json_document_per_refresh(conn: list[str]) -> None:
    result = run("status", *conn, "--json", "--watch", "--interval", "0.05", "--count", "3")
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 3 and docs[0]["taken_at"] <= docs[2]["taken_at"]
    # No setup ran on this schema: Redis is still reported, with a hint.
    assert docs[0]["durable_rows"] is None
    assert any("run `langgraph-hybrid-saver setup`" in w for w in docs[0]["warnings"])


def test_status_reports_redis_while_the_durable_store_is_down(
    redis_url: str, key_prefix: str
) -> None:
    dead_pg = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    args = ["status", "--redis", redis_url, "--durable", dead_pg, "--key-prefix", key_prefix]
    s = run_json(*args)
    assert s["backlog"] == 0 and s["durable_rows"] is None
    assert any("durable store not read: PostgreSQL at" in w for w in s["warnings"])


def test_status_and_inspect_on_a_redis_cluster(
    redis_cluster: str,
    durable_url: str,
    key_prefix: str,
) -> None:
    """Keys of one thread share a slot, but outboxes, leases and threads are
    spread over the masters: SCAN, INFO and the pipelines must visit them all."""
    threads = [f"cl-{i}-{uuid.uuid4()}" for i in range(6)]

    async def seed() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_cluster, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            for t in threads:
                await put_chain(saver, t, 2)

    asyncio.run(seed())
    conn = ["--redis", redis_cluster, "--durable", durable_url, "--key-prefix", key_prefix]
    s = run_json("status", *conn)
    assert s["backlog"] == 6 * 2 * 2 and s["hot_threads"] == 6
    assert s["redis_used_memory"] > 0
    assert len({p["shard"] for p in s["per_shard"] if p["backlog"]}) > 1
    h = run_json("inspect", threads[0], *conn)
    assert [c["tier"] for c in h["checkpoints"]] == ["hot", "hot"]
    reconcile_all(redis_cluster, durable_url, key_prefix)
    assert run_json("status", *conn)["durable_rows"]["checkpoints"] == 12


# --- inspect: the audit trail ---------------------------------------------------


class FanState(TypedDict):
    steps: Annotated[list[str], operator.add]
    detail: str


def fan_graph(checkpointer: Any) -> Any:
    """billing fans out to two Send workers, then review interrupts."""

    def review(state: FanState) -> dict[str, Any]:
        return {"steps": ["review:" + interrupt("approve?")]}

    g = StateGraph(FanState)
    g.add_node("billing", lambda s: {"steps": ["billing"], "detail": "charge"})
    g.add_node("worker", lambda s: {"steps": s["steps"]})
    g.add_node("review", review)
    g.add_edge(START, "billing")
    g.add_conditional_edges(
        "billing",
        lambda s: [Send("worker", {"steps": [f"w{i}"], "detail": ""}) for i in range(2)],
        ["worker"],
    )
    g.add_edge("worker", "review")
    g.add_edge("review", END)
    return g.compile(checkpointer=checkpointer)


def tasks(view: dict[str, Any], key: str = "changes") -> list[tuple[str, list[str]]]:
    return [(t["node"], [w["channel"] for w in t["writes"]]) for t in view[key]]


def test_inspect_shows_who_changed_what_and_where_it_lives(
    redis_url: str, durable_url: str, key_prefix: str, conn: list[str]
) -> None:
    thread = f"audit-{uuid.uuid4()}"
    cfg: Any = {"configurable": {"thread_id": thread}}

    async def until_interrupt() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            await fan_graph(saver).ainvoke({"steps": [], "detail": ""}, cfg)

    asyncio.run(until_interrupt())
    h = run_json("inspect", thread, *conn)
    cps = h["checkpoints"]
    assert [(c["step"], c["source"]) for c in cps] == [
        (2, "loop"),
        (1, "loop"),
        (0, "loop"),
        (-1, "input"),
    ]
    assert {c["tier"] for c in cps} == {"hot"}  # no reconciler has run
    assert tasks(cps[3]) == [("input", ["__start__"])]
    assert tasks(cps[2]) == [("__start__", ["steps", "detail", "branch:to:billing"])]
    assert tasks(cps[1]) == [("billing", ["steps", "detail", "__pregel_tasks"])]
    assert cps[1]["changes"][0]["writes"][2]["count"] == 2  # two Send packets
    # The Send tasks are named after Send.node, not their task ids.
    assert tasks(cps[0]) == [("worker", ["steps", "branch:to:review"])] * 2
    # The interrupted step: review's writes wait on the newest checkpoint.
    assert tasks(cps[0], "pending") == [("review", ["__interrupt__"])]
    assert all(w["size"] > 0 for t in cps[1]["changes"] for w in t["writes"][:2])

    table = run("inspect", thread, *conn)
    assert table.exit_code == 0
    out = table.stdout
    assert "(pending)" in out and "review" in out and "__interrupt__" in out
    assert "billing" in out and "__pregel_tasks x2" in out
    assert all(c["checkpoint_id"] in out for c in cps)

    reconcile_all(redis_url, durable_url, key_prefix)
    assert {c["tier"] for c in run_json("inspect", thread, *conn)["checkpoints"]} == {"both"}

    async def resume_update_and_drop_hot() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix
        ) as saver:
            graph = fan_graph(saver)
            await graph.ainvoke(Command(resume="yes"), cfg)
            await graph.aupdate_state(cfg, {"detail": "manual"}, as_node="review")
            await saver.aflush()
            await saver.hot.drop_thread(thread, queue=False)

    asyncio.run(resume_update_and_drop_hot())
    h = run_json("inspect", thread, *conn)
    cps = h["checkpoints"]
    assert [(c["step"], c["source"]) for c in cps[:2]] == [(4, "update"), (3, "loop")]
    assert {c["tier"] for c in cps} == {"durable"}  # read from the durable store alone
    assert tasks(cps[0]) == [("update_state", ["detail"])]
    assert tasks(cps[1]) == [
        ("command", ["__resume__"]),
        ("review", ["__resume__", "__interrupt__", "steps"]),
    ]
    # Reading did not copy anything back into Redis.
    assert run_json("status", *conn)["hot_threads"] == 0

    limited = run_json("inspect", thread, *conn, "--limit", "2")["checkpoints"]
    assert [c["step"] for c in limited] == [4, 3]
    assert tasks(limited[1])[1][0] == "review"  # the parent outside the window was read

    missing = CliRunner().invoke(cli, ["inspect", "no-such-thread", *conn])
    assert missing.exit_code == 4
    assert "has no checkpoints" in missing.stderr


def test_inspect_diff_between_two_checkpoints(
    redis_url: str, durable_url: str, key_prefix: str, conn: list[str]
) -> None:
    thread = f"diff-{uuid.uuid4()}"
    cfg: Any = {"configurable": {"thread_id": thread}}

    async def go() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix
        ) as saver:
            await fan_graph(saver).ainvoke({"steps": [], "detail": ""}, cfg)

    asyncio.run(go())
    cps = run_json("inspect", thread, *conn)["checkpoints"]
    step1, step2 = cps[1]["checkpoint_id"], cps[0]["checkpoint_id"]
    # Ids or unique parts of ids (the last 12 characters are random per checkpoint).
    d = run_json("inspect", thread, *conn, "--diff", step1[-12:], step2)
    assert (d["a"], d["b"]) == (step1, step2)
    changes = {c["channel"]: c for c in d["changes"]}
    assert changes["steps"]["change"] == "changed"
    assert changes["steps"]["detail"] == "+2 items appended"
    assert changes["steps"]["after"] == "['w0', 'w1']"
    assert changes["steps"]["version_a"] != changes["steps"]["version_b"]
    assert changes["branch:to:review"]["change"] == "added"
    assert "detail" in d["unchanged"]

    table = run("inspect", thread, *conn, "--diff", step1, step2)
    assert table.exit_code == 0
    assert "+2 items appended" in table.stdout and f"{step1} -> {step2}" in table.stdout
    unknown = CliRunner().invoke(cli, ["inspect", thread, *conn, "--diff", step1, "zzzz"])
    assert unknown.exit_code == 4 and "matches 'zzzz'" in unknown.stderr
    ambiguous = CliRunner().invoke(cli, ["inspect", thread, *conn, "--diff", "-", step1])
    assert ambiguous.exit_code == 4 and "ambiguous" in ambiguous.stderr
    empty = CliRunner().invoke(cli, ["inspect", thread, *conn, "--diff", "", step1])
    assert empty.exit_code == 4 and "matches ''" in empty.stderr


def test_inspect_a_subgraph_namespace(
    redis_url: str, durable_url: str, key_prefix: str, conn: list[str]
) -> None:
    thread = f"sub-{uuid.uuid4()}"

    async def go() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix
        ) as saver:
            cfg: Any = {"configurable": {"thread_id": thread}}
            await build(saver).ainvoke({"steps": [], "approved": None, "detail": ""}, cfg)

    asyncio.run(go())
    root = run_json("inspect", thread, *conn)
    sub_ns = next(n for n in root["namespaces"] if n.startswith("details:"))
    sub = run_json("inspect", thread, *conn, "--ns", sub_ns)
    assert sub["checkpoint_ns"] == sub_ns
    assert any(t["node"] == "enrich" for c in sub["checkpoints"] for t in c["changes"])


# --- size and the rolling window ------------------------------------------------


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class WindowedChatState(TypedDict):
    messages: Annotated[list[AnyMessage], rolling_window(6)]


def chat_graph(state: type, checkpointer: Any) -> Any:
    def bot(s: dict[str, Any]) -> dict[str, Any]:
        question = s["messages"][-1].content
        return {"messages": [AIMessage(f"answer to {question}: " + "x" * 200)]}

    g = StateGraph(state)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_edge("bot", END)
    return g.compile(checkpointer=checkpointer)


def test_size_reports_growth_and_rolling_window_caps_it(
    redis_url: str, durable_url: str, key_prefix: str, conn: list[str]
) -> None:
    plain, windowed = f"chat-{uuid.uuid4()}", f"window-{uuid.uuid4()}"

    async def chat() -> list[AnyMessage]:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix
        ) as saver:
            for thread, state in ((plain, ChatState), (windowed, WindowedChatState)):
                graph = chat_graph(state, saver)
                cfg: Any = {"configurable": {"thread_id": thread}}
                first = [SystemMessage("you are terse", id="sys"), HumanMessage("q0")]
                await graph.ainvoke({"messages": first}, cfg)
                for i in range(1, 12):
                    await graph.ainvoke({"messages": [HumanMessage(f"q{i}")]}, cfg)
            return list((await graph.aget_state(cfg)).values["messages"])

    messages = asyncio.run(chat())
    assert len(messages) == 6
    assert messages[0].id == "sys"  # the system prompt stays
    assert [m.content for m in messages[-2:]] == ["q11", f"answer to q11: {'x' * 200}"]

    grows = run_json("size", plain, *conn)
    top = grows["channels"][0]
    assert (top["channel"], top["items"]) == ("messages", 25)  # system + 12 q&a pairs
    assert top["versions"] > 20 and top["stored"] > 10 * top["size"]
    assert len(grows["steps"]) == 12 * 3  # input, __start__, bot per invoke
    assert grows["steps"][-1]["delta"] > 0
    assert any("rolling_window" in h and "'messages'" in h for h in grows["hints"])

    capped = run_json("size", windowed, *conn)
    assert capped["channels"][0]["items"] == 6
    assert capped["channels"][0]["size"] < top["size"] / 3
    assert capped["hints"] == []

    table = run("size", plain, *conn)
    assert table.exit_code == 0
    assert "Largest channels" in table.stdout and "Growth per step" in table.stdout
    assert "hint:" in table.stdout
    assert "rolling_window(n)" in table.stdout  # printed as text, not as rich markup
    assert len(run_json("size", plain, *conn, "--limit", "5")["steps"]) == 5


def test_rolling_window_keeps_add_messages_semantics() -> None:
    window = rolling_window(3)
    msgs = [HumanMessage(str(i), id=str(i)) for i in range(5)]
    assert [m.id for m in window([], msgs)] == ["2", "3", "4"]
    # Replace by id, as add_messages does.
    left = window([], msgs[:3])
    replaced = window(left, [HumanMessage("new", id="1")])
    assert [(m.id, m.content) for m in replaced] == [("0", "0"), ("1", "new"), ("2", "2")]
    # Remove by id, and a removal of a message already out of the window is a no-op.
    kept = window(left, [RemoveMessage(id="1")])
    assert [m.id for m in kept] == ["0", "2"]
    shifted = window(left, msgs[3:])
    assert [m.id for m in window(shifted, [RemoveMessage(id="0")])] == ["2", "3", "4"]
    with pytest.raises(ValueError):
        add_messages(shifted, [RemoveMessage(id="0")])  # what the window spares users
    assert window(left, [RemoveMessage(id=REMOVE_ALL_MESSAGES), msgs[4]])[0].id == "4"
    # The system prompt stays; the window never opens with an orphan tool result.
    chat = [
        SystemMessage("sys", id="s"),
        HumanMessage("q", id="q"),
        AIMessage("", id="a", tool_calls=[{"name": "f", "args": {}, "id": "c1"}]),
        ToolMessage("r", tool_call_id="c1", id="t"),
        AIMessage("done", id="d"),
    ]
    assert [m.id for m in rolling_window(3)([], chat)] == ["s", "d"]
    assert [m.id for m in rolling_window(4)([], chat)] == ["s", "a", "t", "d"]
    assert [m.id for m in rolling_window(2, keep_system=False)([], chat)] == ["d"]
    # Plain lists with another reducer.
    assert rolling_window(2, reducer=operator.add)([1, 2], [3]) == [2, 3]
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ConfigError):
            rolling_window(bad)  # type: ignore[arg-type]


# --- reconcile worker: real process, real SIGTERM --------------------------------


def test_reconcile_worker_drains_releases_and_exits_0_on_sigterm(
    redis_url: str, durable_url: str, key_prefix: str, clean_redis: None
) -> None:
    worker = start_reconciler(
        redis_url, durable_url, "--key-prefix", key_prefix, "--batch-size", "5", "--setup"
    )
    threads = [f"sig-{i}-{uuid.uuid4()}" for i in range(6)]

    async def write_then_stop() -> None:
        async with AsyncHybridSaver.from_conn_string(
            redis_url, durable_url, key_prefix=key_prefix, reconciler="external"
        ) as saver:
            await asyncio.gather(*(put_chain(saver, t, 10) for t in threads))
            os.kill(worker.pid, signal.SIGTERM)  # with entries still queued

    try:
        assert worker.stdout is not None
        assert "started" in worker.stdout.readline()
        asyncio.run(write_then_stop())
        out, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "stopped: " in out and "leases released" in out
    assert "Traceback" not in err

    async def check() -> None:
        client = AsyncRedis.from_url(redis_url)
        hot = HotTier(client, prefix=key_prefix)
        try:
            assert (await Outbox(hot).backlog())[0] == 0  # drained before exiting
            assert await client.exists(*hot.keys.leases) == 0  # leases released at once
            assert await client.zcard(hot.keys.workers) == 0
        finally:
            await client.aclose()

    asyncio.run(check())
    rows = run_json(
        "status", "--redis", redis_url, "--durable", durable_url, "--key-prefix", key_prefix
    )
    assert rows["durable_rows"]["checkpoints"] == 60


# --- demo and bench launchers ---------------------------------------------------


def test_demo_launches_the_repository_example() -> None:
    result = run("demo", "--", "--help")  # argparse of examples/support_workflow
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("usage: ")


def test_launchers_run_the_module_or_say_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "DEMO_MODULE", "lhs_absent_examples.support_workflow")
    missing = CliRunner().invoke(cli, ["demo"])
    assert missing.exit_code == 2
    assert missing.stderr.count("\n") == 1
    assert "the demo is not available: module lhs_absent_examples.support_workflow" in (
        missing.stderr
    )

    pkg = tmp_path / f"lhs_fake_{uuid.uuid4().hex[:8]}"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text(
        textwrap.dedent(
            """
            import sys
            def main(argv):
                print("bench", argv)
                return 3
            """
        )
    )
    app = pkg / "app"  # a package run like `python -m`, as examples/support_workflow is
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "__main__.py").write_text(
        textwrap.dedent(
            """
            import sys
            print("demo", sys.argv[1:])
            sys.exit(5)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli_module, "BENCH_MODULE", f"{pkg.name}.run")
    monkeypatch.setattr(cli_module, "DEMO_MODULE", f"{pkg.name}.app")
    bench = CliRunner().invoke(cli, ["bench", "--", "--quick", "x"])
    assert bench.exit_code == 3  # the suite's own exit code
    assert "bench ['--quick', 'x']" in bench.stdout
    demo = CliRunner().invoke(cli, ["demo", "--", "--thread", "t1"])
    assert demo.exit_code == 5, demo.output  # its sys.exit code
    assert "demo ['--thread', 't1']" in demo.stdout
