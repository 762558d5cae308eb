"""The saver on LangGraph Agent Server (`langgraph dev`, in-memory runtime),
configured only by `langgraph.json` and `HYBRID_SAVER_*` variables, driven
with `langgraph_sdk`; and the factory's reading of those variables.

The server test runs every client operation that reaches the checkpointer,
stops the server, wipes the saver's Redis keys, starts it again and checks
every thread's state and history came back from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.schema import Command

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError
from langgraph_hybrid_saver.agent_server import VARIABLES, checkpointer, options_from_env
from tests.conftest import free_port

GRAPH = Path(__file__).parent / "agent_server" / "graph.py"
LANGGRAPH = Path(sys.executable).with_name("langgraph")
FACTORY = "langgraph_hybrid_saver.agent_server.checkpointer"
# Logged by langgraph-api when the checkpointer lacks one of the methods it
# probes at startup (adelete_thread, adelete_for_runs, acopy_thread, aprune).
CAPABILITY_WARNING = "Custom checkpointer missing"
URLS = {
    "HYBRID_SAVER_REDIS_URL": "redis://127.0.0.1:6379/0",
    "HYBRID_SAVER_DURABLE_URL": "postgresql://postgres@127.0.0.1:5432/test",
}


# --- the factory's configuration -------------------------------------------


def test_every_saver_option_has_a_variable() -> None:
    params = inspect.signature(AsyncHybridSaver.__init__).parameters
    options = set(params) - {"self", "redis", "backend", "serde", "loop"}
    assert {option for option, _ in VARIABLES.values()} == options
    assert all(name.startswith("HYBRID_SAVER_") for name in VARIABLES)


def test_options_are_parsed_from_the_variables() -> None:
    env = {
        **URLS,
        "HYBRID_SAVER_KEY_PREFIX": "app1",
        "HYBRID_SAVER_TTL": "none",
        "HYBRID_SAVER_REFRESH_TTL_ON_READ": "Yes",
        "HYBRID_SAVER_SHARDS": "8",
        "HYBRID_SAVER_RECONCILER": "external",
        "HYBRID_SAVER_RECONCILE_LINGER_MS": "0",
        "HYBRID_SAVER_DURABILITY": "write_through",
        "HYBRID_SAVER_HOT_WINDOW": "20",
        "HYBRID_SAVER_MAX_BACKLOG": "None",
        "HYBRID_SAVER_MAX_LAG_SECONDS": "2.5",
        "HYBRID_SAVER_ON_BACKLOG": "raise",
        "HYBRID_SAVER_FLUSH_TIMEOUT": "60",
        "HYBRID_SAVER_DURABLE_TIMEOUT": " 1.5 ",
    }
    assert options_from_env(env) == (
        URLS["HYBRID_SAVER_REDIS_URL"],
        URLS["HYBRID_SAVER_DURABLE_URL"],
        {
            "key_prefix": "app1",
            "ttl": None,
            "refresh_ttl_on_read": True,
            "shards": 8,
            "reconciler": "external",
            "reconcile_linger_ms": 0,
            "durability": "write_through",
            "hot_window": 20,
            "max_backlog": None,
            "max_lag_seconds": 2.5,
            "on_backlog": "raise",
            "flush_timeout": 60.0,
            "durable_timeout": 1.5,
        },
    )


def test_unset_and_empty_variables_keep_the_saver_defaults() -> None:
    env = {**URLS, "HYBRID_SAVER_TTL": "", "HYBRID_SAVER_SHARDS": "  "}
    assert options_from_env(env)[2] == {}


@pytest.mark.parametrize("missing", sorted(URLS))
def test_a_missing_url_is_named(missing: str) -> None:
    env = {name: url for name, url in URLS.items() if name != missing}
    with pytest.raises(ConfigError, match=f"^{missing} is not set: .*{missing}=") as e:
        options_from_env(env)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    ("name", "raw", "fix"),
    [
        ("HYBRID_SAVER_TTL", "1h", "a number of seconds > 0 or 'none'"),
        ("HYBRID_SAVER_TTL", "0", "a number of seconds > 0 or 'none'"),
        ("HYBRID_SAVER_TTL", "nan", "a number of seconds > 0 or 'none'"),
        ("HYBRID_SAVER_FLUSH_TIMEOUT", "none", "a number of seconds > 0;"),
        ("HYBRID_SAVER_SHARDS", "2.0", "a whole number >= 1;"),
        ("HYBRID_SAVER_SHARDS", "0", "a whole number >= 1;"),
        ("HYBRID_SAVER_RECONCILE_LINGER_MS", "-1", "a whole number >= 0;"),
        ("HYBRID_SAVER_HOT_WINDOW", "many", "a whole number >= 1 or 'none'"),
        ("HYBRID_SAVER_REFRESH_TTL_ON_READ", "maybe", "one of 1, true, yes, on, 0, false"),
        ("HYBRID_SAVER_RECONCILER", "worker", "one of in_process, external"),
        ("HYBRID_SAVER_DURABILITY", "sync", "one of write_behind, write_through"),
        ("HYBRID_SAVER_ON_BACKLOG", "block", "one of write_through, raise"),
    ],
)
def test_a_bad_value_is_refused_naming_variable_value_and_fix(
    name: str, raw: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as e:
        options_from_env({**URLS, name: raw})
    message = str(e.value)
    assert message.startswith(f"{name}={raw!r}: use ")
    assert fix in message
    assert message.endswith("fix or unset the variable")


# --- the server --------------------------------------------------------------


class Server:
    """`langgraph dev` on a free port, in an app directory holding
    langgraph.json and the graph, as a user lays it out."""

    def __init__(self, app: Path, env: dict[str, str]) -> None:
        self.app = app
        self.env = env
        self.log = app / "server.log"
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @contextmanager
    def running(self) -> Iterator[str]:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(port)],
                cwd=self.app,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ok()
            yield self.url
        finally:
            self.stop()

    def fails_to_start(self) -> str:
        """Start the server, expecting it to exit; returns its log."""
        proc = subprocess.run(
            [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(free_port())],
            cwd=self.app,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert proc.returncode != 0
        return proc.stdout + proc.stderr

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 90  # a hung start fails here, not in pytest-timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"langgraph dev exited {self.proc.returncode}:\n{self.text()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"langgraph dev did not answer /ok:\n{self.text()}")

    def stop(self) -> None:
        """SIGTERM: the server exits its lifespan, which drains and closes the saver."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"langgraph dev ignored SIGTERM:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(tmp_path: Path, redis_url: str, pg_url: str, key_prefix: str) -> Iterator[Server]:
    if not LANGGRAPH.exists():
        pytest.fail(f"{LANGGRAPH} is missing: pip install -e '.[test]' (langgraph-cli[inmem])")
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(GRAPH, app / "graph.py")
    config = {
        "dependencies": ["."],
        "graphs": {"agent": "./graph.py:graph"},
        "checkpointer": {"path": FACTORY},
    }
    (app / "langgraph.json").write_text(json.dumps(config, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_SAVER_")}
    env.update(
        HYBRID_SAVER_REDIS_URL=redis_url,
        HYBRID_SAVER_DURABLE_URL=pg_url,
        HYBRID_SAVER_KEY_PREFIX=key_prefix,
        LANGSMITH_TRACING="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
    )
    yield Server(app, env)
    with redis.Redis.from_url(redis_url) as r:
        for key in r.scan_iter(match=f"{key_prefix}:*", count=1000):
            r.delete(key)


@asynccontextmanager
async def client_of(url: str) -> AsyncIterator[LangGraphClient]:
    client = get_client(url=url)
    try:
        yield client
    finally:
        await client.aclose()


async def to_interrupt(client: LangGraphClient, topic: str, **meta: Any) -> str:
    thread = await client.threads.create(metadata=meta)
    out = await client.runs.wait(thread["thread_id"], "agent", input={"topic": topic})
    assert out["__interrupt__"][0]["value"] == {"question": f"publish {topic}?"}
    return str(thread["thread_id"])


async def snapshot(client: LangGraphClient, thread_ids: list[str]) -> dict[str, Any]:
    """Each thread's state and whole history, as the API serves them."""
    out = {}
    for tid in thread_ids:
        out[tid] = (
            await client.threads.get_state(tid),
            await client.threads.get_history(tid, limit=1000),
        )
    return out


def run_ids(history: list[dict[str, Any]]) -> set[str]:
    return {h["metadata"].get("run_id") for h in history}


async def exercise(client: LangGraphClient) -> tuple[list[str], list[str], str]:
    """Every client operation that reaches the checkpointer; returns the live
    threads, the threads left at the interrupt and the deleted thread."""
    threads = client.threads
    # Run to the interrupt; state, history, `before` and metadata filters.
    a = await to_interrupt(client, "a", case="a")
    state = await threads.get_state(a)
    assert state["next"] == ["review"]
    assert state["tasks"][0]["interrupts"][0]["value"] == {"question": "publish a?"}
    history = await threads.get_history(a)
    assert [h["metadata"]["step"] for h in history] == [1, 0, -1]
    assert [
        h["checkpoint"] for h in await threads.get_history(a, before=history[0]["checkpoint"])
    ] == [h["checkpoint"] for h in history[1:]]
    [input_step] = await threads.get_history(a, metadata={"source": "input"})
    assert input_step["checkpoint"] == history[-1]["checkpoint"]
    [step_one] = await threads.get_history(a, metadata={"step": 1})
    assert step_one["checkpoint"] == history[0]["checkpoint"]

    # Resume with Command, then update_state.
    out = await client.runs.wait(a, "agent", command=Command(resume="yes"))
    assert out["log"] == ["draft:a", "review:yes", "publish:yes"]
    await threads.update_state(a, {"verdict": "edited"}, as_node="publish")
    state = await threads.get_state(a)
    assert state["values"]["verdict"] == "edited"
    assert state["metadata"]["source"] == "update"

    # Copy, then delete the copy.
    b = str((await threads.copy(a))["thread_id"])
    assert (await threads.get_state(b))["values"] == state["values"]
    copied = await threads.get_history(b)
    assert [h["values"] for h in copied] == [h["values"] for h in await threads.get_history(a)]
    await threads.delete(b)
    with pytest.raises(NotFoundError):
        await threads.get_state(b)

    # runs.delete removes the run's checkpoints (adelete_for_runs); the
    # checkpoint it resumed from is the latest again. (The resumed task's
    # writes stay on that checkpoint: the contract keys writes by checkpoint,
    # not by run, as the official savers do.)
    c = await to_interrupt(client, "c")
    interrupted = await threads.get_history(c)
    resumed = await client.runs.create(c, "agent", command=Command(resume="no"))
    await client.runs.join(c, resumed["run_id"])
    assert (await threads.get_state(c))["values"]["verdict"] == "no"
    assert resumed["run_id"] in run_ids(await threads.get_history(c))
    await client.runs.delete(c, resumed["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(c, resumed["run_id"])
    history = await threads.get_history(c)
    assert [h["checkpoint"] for h in history] == [h["checkpoint"] for h in interrupted]
    assert resumed["run_id"] not in run_ids(history)

    # multitask_strategy="rollback": the run in progress and its checkpoints go.
    d = str((await threads.create())["thread_id"])
    slow = await client.runs.create(d, "agent", input={"topic": "slow", "delay": 60})
    while (await client.runs.get(d, slow["run_id"]))["status"] != "running":
        await asyncio.sleep(0.05)
    while not await threads.get_history(d):  # its input checkpoint is written
        await asyncio.sleep(0.05)
    fast = await client.runs.create(
        d, "agent", input={"topic": "fast"}, multitask_strategy="rollback"
    )
    await client.runs.join(d, fast["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(d, slow["run_id"])
    state = await threads.get_state(d)
    assert state["values"]["topic"] == "fast"
    assert slow["run_id"] not in run_ids(await threads.get_history(d))

    # 20 concurrent runs to the interrupt, half of them resumed concurrently.
    many = await asyncio.gather(*(to_interrupt(client, f"m{i}") for i in range(20)))
    outs = await asyncio.gather(
        *(client.runs.wait(t, "agent", command=Command(resume=t)) for t in many[:10])
    )
    for tid, out in zip(many[:10], outs, strict=True):
        assert out["log"] == [f"draft:{out['topic']}", f"review:{tid}", f"publish:{tid}"]

    # A streamed run.
    e = str((await threads.create())["thread_id"])
    updates = [
        chunk.data
        async for chunk in client.runs.stream(
            e, "agent", input={"topic": "e"}, stream_mode="updates"
        )
        if chunk.event == "updates"
    ]
    assert updates[0] == {"draft": {"log": ["draft:e"]}}
    assert "__interrupt__" in updates[-1]

    live = [a, c, d, e, *many]
    return live, [e, *many[10:]], b


def test_agent_server_startup_names_a_missing_variable(server: Server) -> None:
    del server.env["HYBRID_SAVER_DURABLE_URL"]
    log = server.fails_to_start()
    assert "ConfigError: HYBRID_SAVER_DURABLE_URL is not set" in log


@pytest.mark.timeout(600)
async def test_agent_server_runs_on_the_saver_and_recovers_from_the_durable_store(
    server: Server, redis_url: str, key_prefix: str
) -> None:
    with server.running() as url:
        async with client_of(url) as client:
            live, waiting, deleted = await exercise(client)
            before = await snapshot(client, live)

    log = server.text()
    assert "Using custom checkpointer: AsyncHybridSaver" in log
    assert CAPABILITY_WARNING not in log

    # The server drained and closed the saver on SIGTERM; wipe Redis.
    with redis.Redis.from_url(redis_url) as r:
        keys = list(r.scan_iter(match=f"{key_prefix}:*", count=1000))
        assert keys  # the prefix is the saver's
        r.delete(*keys)
        assert not list(r.scan_iter(match=f"{key_prefix}:*"))

    with server.running() as url:
        async with client_of(url) as client:
            after = await snapshot(client, live)
            for tid in live:
                assert after[tid] == before[tid], tid
            with pytest.raises(NotFoundError):
                await client.threads.get_state(deleted)
            # A thread waiting at the interrupt resumes from the durable copy.
            out = await client.runs.wait(waiting[0], "agent", command=Command(resume="later"))
            assert out["log"] == ["draft:e", "review:later", "publish:later"]

    assert CAPABILITY_WARNING not in server.text()


async def test_the_factory_opens_a_saver_with_the_servers_serializer(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, pg_url: str, key_prefix: str
) -> None:
    # langgraph_api's own modules read the server's settings at import, so a
    # module of that name stands in for it here; the server test above runs
    # the saver with the real one.
    class Serializer(JsonPlusSerializer):
        pass

    server_serde = types.ModuleType("langgraph_api.serde")
    server_serde.Serializer = Serializer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "langgraph_api", types.ModuleType("langgraph_api"))
    monkeypatch.setitem(sys.modules, "langgraph_api.serde", server_serde)
    monkeypatch.setenv("HYBRID_SAVER_REDIS_URL", redis_url)
    monkeypatch.setenv("HYBRID_SAVER_DURABLE_URL", pg_url)
    monkeypatch.setenv("HYBRID_SAVER_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HYBRID_SAVER_RECONCILER", "external")
    async with checkpointer() as saver:
        assert isinstance(saver, AsyncHybridSaver)
        assert isinstance(saver.serde, Serializer)
        assert saver.placement == "external"
        assert saver.hot.prefix == key_prefix


async def test_outside_the_server_the_factory_keeps_the_default_serializer(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, pg_url: str, key_prefix: str
) -> None:
    monkeypatch.delitem(sys.modules, "langgraph_api", raising=False)
    monkeypatch.setenv("HYBRID_SAVER_REDIS_URL", redis_url)
    monkeypatch.setenv("HYBRID_SAVER_DURABLE_URL", pg_url)
    monkeypatch.setenv("HYBRID_SAVER_KEY_PREFIX", key_prefix)
    async with checkpointer() as saver:
        assert type(saver.serde) is JsonPlusSerializer
        assert saver.placement == "in_process"


def test_the_readme_lists_every_variable() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Deploy on LangGraph Agent Server", 1)[1].split("\n## ", 1)[0]
    for name in [*URLS, *VARIABLES]:
        assert f"| `{name}` |" in section, name
