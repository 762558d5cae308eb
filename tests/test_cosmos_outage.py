"""Cosmos DB unavailable while checkpoints keep coming: puts go on (Redis
acknowledges them), the outbox backlog grows, the in-process reconciler counts
its failures, and once the server is back the backlog drains with nothing
lost and nothing written twice.

Each test runs a private stand-in (`.ci/cosmos/cosmos-standin.js` on a free
port, never the shared one of `COSMOS_ENDPOINT`) and kills it by PID at the
end. The stand-in keeps its data in memory, so the two outages are:

- hung server: the node process is stopped (SIGSTOP) and later continued
  (SIGCONT). Connections stay open and requests get no answer, like a
  black-holed network or a frozen gateway; the data survives, as on a real
  account. With the SDK's default timeouts and retries one request to a
  hung server takes 22 s (a batch) to 88 s (a point read) to fail, so a
  short outage would only stall the reconciler: the durable URL sets
  `connection_timeout=1&read_timeout=1`, so that requests fail, and the
  reconciler counts and retries them, within the outage. Requests the
  client gave up on may still be in the socket buffers when the server
  continues, so it may apply a batch the reconciler already counted as
  failed; the retry then loses the watermark race (412) and skips what was
  applied: the "no duplicates" half of the test covers exactly that.
- refused connections: the process is killed (SIGKILL) and the port refuses
  connections until a new stand-in starts on it. A new stand-in is empty (a
  real account never loses its data), so the database and container are
  created again with `saver.setup()`, and the test checks only what was put
  from the kill on: everything put before was flushed and checked against
  the old server first, so the new server must hold exactly the puts made
  during the outage, once each. A request the reconciler makes between the
  restart and `setup()` would fail with 404 and count as an error too (an
  artefact of the stand-in; the test asserts errors counted while the port
  refused, before the restart).

The figures (outage seconds, puts acknowledged during the outage, backlog
peak, drain seconds, reconciler errors) are printed: `pytest -s` shows them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError
from langgraph_hybrid_saver.backends.cosmos import CosmosBackend
from langgraph_hybrid_saver.core import ListQuery

from .conftest import free_port

pytestmark = pytest.mark.timeout(90)

STANDIN_DIR = Path(__file__).resolve().parent.parent / ".ci" / "cosmos"
THREADS = 4
PUT_PAUSE_S = 0.05  # between rounds of one put per thread
WARMUP_S = 1.5
HUNG_S = 15.0  # a request fails after 6-10 s with the URL's timeouts
REFUSED_S = 5.0  # a request fails after ~2 s (connect retries)
TIMEOUTS = "&connection_timeout=1&read_timeout=1"  # seconds
FLUSH_TIMEOUT_S = 40.0


# --- a private stand-in --------------------------------------------------------------


def _answers(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the stand-in's certificate is self-signed
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=ctx, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an HTTP answer, whatever its status
    except OSError:
        return False
    return True


class PrivateStandIn:
    """`node cosmos-standin.js PORT` in `.ci/cosmos`, on a port of its own."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"cosmos-standin-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @staticmethod
    def install() -> None:
        """What `.ci/cosmos/start.sh` does first: the pinned npm packages."""
        if shutil.which("node") is None:
            pytest.fail("node is not on PATH; the Cosmos DB stand-in needs Node.js >= 18")
        if (STANDIN_DIR / "node_modules" / "@vercel" / "cosmosdb-server").is_dir():
            return
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not on PATH; run .ci/cosmos/start.sh to install the stand-in")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=STANDIN_DIR,
            stdin=subprocess.DEVNULL,
            check=True,
        )

    def start(self) -> float:
        """Start it and wait until it answers; returns the seconds that took."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", "cosmos-standin.js", str(self.port)],
                cwd=STANDIN_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < 30:
            if _answers(self.port):
                return time.monotonic() - started
            if self.proc.poll() is not None:
                pytest.fail(
                    f"cosmos stand-in on port {self.port} exited ({self.proc.returncode}): "
                    f"{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        pytest.fail(f"cosmos stand-in did not answer on port {self.port} within 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL, by PID; works on a stopped process too
            self.proc.wait(timeout=10)
        self.proc, self.paused = None, False

    def url(self, database: str) -> str:
        return f"cosmos+https://127.0.0.1:{self.port}/?database={database}{TIMEOUTS}"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[PrivateStandIn]:
    PrivateStandIn.install()
    server = PrivateStandIn(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- load and observation ------------------------------------------------------------


@dataclass
class Load:
    """One put per thread per round until stopped; every acknowledgement kept."""

    saver: AsyncHybridSaver
    threads: list[str]
    configs: dict[str, RunnableConfig] = field(default_factory=dict)
    # thread -> [(checkpoint id, monotonic time aput returned)], in put order
    acked: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    step: int = 0

    def __post_init__(self) -> None:
        for t in self.threads:
            self.configs[t] = generate_config(t)
            self.acked[t] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.step += 1
            s = self.step
            for t in self.threads:
                cp = generate_checkpoint(
                    channel_values={"messages": [f"m{s}"], "step": s},
                    channel_versions={"messages": str(s), "step": str(s)},
                )
                self.configs[t] = await self.saver.aput(
                    self.configs[t],
                    cp,
                    generate_metadata(step=s),
                    {"messages": str(s), "step": str(s)},
                )
                self.acked[t].append((cp["id"], time.monotonic()))
            await asyncio.sleep(PUT_PAUSE_S)

    def count(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for puts in self.acked.values() for _, at in puts if start <= at <= end)


class Running:
    """A task started now and stopped (and awaited, errors raised) by `stop()`."""

    def __init__(self, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self.event = asyncio.Event()
        self.task = asyncio.create_task(run(self.event))

    async def stop(self) -> None:
        self.event.set()
        await self.task


@dataclass
class Samples:
    """`astats()` every 0.1 s: (monotonic time, backlog, reconciler errors)."""

    saver: AsyncHybridSaver
    rows: list[tuple[float, int, int]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            st = await self.saver.astats()
            self.rows.append((time.monotonic(), st["backlog"], st["errors"]))
            await asyncio.sleep(0.1)

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((b for at, b, _ in self.rows if start <= at <= end), default=0)

    def first_error_after(self, start: float, errors_before: int) -> float | None:
        """Seconds from `start` to the first sample with a new reconciler error."""
        at = next((at for at, _, e in self.rows if at >= start and e > errors_before), None)
        return None if at is None else round(at - start, 1)


async def check_durable(
    saver: AsyncHybridSaver, load: Load, since: dict[str, int] | None = None
) -> int:
    """Every acknowledged checkpoint (of each thread, from index `since[t]` on)
    is in the durable store exactly once, with its parent and blobs; returns
    how many were checked."""
    backend = saver.backend
    assert isinstance(backend, CosmosBackend)
    checked = 0
    for t in load.threads:
        puts = load.acked[t]
        first = (since or {}).get(t, 0)
        expected = [cid for cid, _ in puts[first:]]
        rows = await backend.list(ListQuery(t, "", None, None, None, None))
        ids = [r.checkpoint_id for r in rows]
        assert len(ids) == len(set(ids)), f"thread {t}: a checkpoint listed twice"
        assert sorted(ids) == sorted(expected), (
            f"thread {t}: {len(set(expected) - set(ids))} acknowledged checkpoints missing, "
            f"{len(set(ids) - set(expected))} unexpected"
        )
        counts = await backend.count_rows(t)  # documents, not just distinct ids
        assert counts["checkpoints"] == len(expected), (t, counts, len(expected))
        parent = {cid: (puts[i - 1][0] if i else None) for i, (cid, _) in enumerate(puts)}
        for r in rows:
            assert r.parent_checkpoint_id == parent[r.checkpoint_id], (t, r.checkpoint_id)
            step = r.metadata["step"]
            kind, blob = r.blobs["messages"]  # `step`, an int, stays inline
            assert blob is not None and f"m{step}".encode() in blob, (t, r.checkpoint_id, kind)
            assert r.checkpoint["channel_versions"] == {"messages": str(step), "step": str(step)}
        if expected:
            last = await backend.get(t, "", expected[-1])
            assert last is not None and last.checkpoint_id == expected[-1]
        checked += len(expected)
    return checked


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\nFIGURES {name}: {json.dumps(figures)}", flush=True)


async def cleanup(saver: AsyncHybridSaver, key_prefix: str) -> None:
    keys = [k async for k in saver.hot.redis.scan_iter(f"{key_prefix}:*")]
    if keys:
        await saver.hot.redis.delete(*keys)


# --- the tests ---------------------------------------------------------------------------


def test_timeouts_come_from_the_durable_url() -> None:
    url = "cosmos+https://127.0.0.1:1/?database=d&connection_timeout=1&read_timeout=2.5"
    client = CosmosBackend.from_url(url).client
    assert client is not None
    policy = client.client_connection.connection_policy
    assert (policy.RequestTimeout, policy.ReadTimeout) == (1, 2.5)
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ConfigError, match="positive number of seconds"):
            CosmosBackend.from_url(f"cosmos+https://127.0.0.1:1/?database=d&read_timeout={bad}")


async def test_hung_cosmos_puts_go_on_and_the_backlog_drains_exactly_once(
    standin: PrivateStandIn, redis_url: str, key_prefix: str
) -> None:
    url = standin.url(f"t_outage_{uuid.uuid4().hex[:8]}")
    async with AsyncHybridSaver.from_conn_string(redis_url, url, key_prefix=key_prefix) as saver:
        try:
            load = Load(saver, [f"hung-{i}-{uuid.uuid4().hex[:6]}" for i in range(THREADS)])
            samples = Samples(saver)
            sampler, putter = Running(samples.run), Running(load.run)
            await asyncio.sleep(WARMUP_S)
            errors_before = (await saver.astats())["errors"]

            standin.pause()
            down = time.monotonic()
            await asyncio.sleep(HUNG_S)
            during = await saver.astats()
            standin.resume()
            up = time.monotonic()
            await putter.stop()  # puts went on throughout: none raised

            await saver.aflush(timeout=FLUSH_TIMEOUT_S)
            drained = time.monotonic()
            await sampler.stop()
            after = await saver.astats()
            figures = {
                "outage s": round(up - down, 1),
                "puts acknowledged during the outage": load.count(down, up),
                "puts acknowledged in all": load.count(),
                "backlog at the end of the outage": during["backlog"],
                "backlog peak": samples.peak(down, drained),
                "backlog peak before the outage": samples.peak(0, down),
                "drain s after recovery": round(drained - up, 1),
                "reconciler errors before the outage": errors_before,
                "reconciler errors": after["errors"],
                "first error counted after s": samples.first_error_after(down, errors_before),
                "last error": after["last_error"],
            }
            assert load.count(down, up) > 0
            assert during["backlog"] > 0
            assert after["backlog"] == 0
            assert after["errors"] > errors_before
            figures["checkpoints checked in Cosmos DB"] = await check_durable(saver, load)
            report("cosmos hung (SIGSTOP/SIGCONT)", figures)
        finally:
            standin.resume()  # if an assertion failed mid-outage: let the saver close
            await cleanup(saver, key_prefix)


async def test_refused_cosmos_puts_go_on_and_the_backlog_drains_exactly_once(
    standin: PrivateStandIn, redis_url: str, key_prefix: str
) -> None:
    url = standin.url(f"t_outage_{uuid.uuid4().hex[:8]}")
    async with AsyncHybridSaver.from_conn_string(redis_url, url, key_prefix=key_prefix) as saver:
        try:
            load = Load(saver, [f"refused-{i}-{uuid.uuid4().hex[:6]}" for i in range(THREADS)])
            putter = Running(load.run)
            await asyncio.sleep(WARMUP_S)
            await putter.stop()
            await saver.aflush(timeout=FLUSH_TIMEOUT_S)
            before = await check_durable(saver, load)  # on the first server
            since = {t: len(puts) for t, puts in load.acked.items()}
            errors_before = (await saver.astats())["errors"]

            samples = Samples(saver)
            sampler = Running(samples.run)
            standin.kill()  # connections reset, the port refuses new ones
            down = time.monotonic()
            putter = Running(load.run)
            await asyncio.sleep(REFUSED_S)
            during = await saver.astats()
            restart_s = await asyncio.to_thread(standin.start)  # same port, empty
            up = time.monotonic()
            await putter.stop()
            await saver.setup()  # the new stand-in has no database: create it again

            await saver.aflush(timeout=FLUSH_TIMEOUT_S)
            drained = time.monotonic()
            await sampler.stop()
            after = await saver.astats()
            figures = {
                "outage s (kill until the new server answers)": round(up - down, 1),
                "of which the restart s": round(restart_s, 1),
                "puts acknowledged during the outage": load.count(down, up),
                "checkpoints checked before the kill": before,
                "backlog when the restart began": during["backlog"],
                "backlog peak": samples.peak(down, drained),
                "drain s after recovery (setup included)": round(drained - up, 1),
                "reconciler errors before the outage": errors_before,
                "reconciler errors": after["errors"],
                "reconciler errors while the port refused": during["errors"] - errors_before,
                "first error counted after s": samples.first_error_after(down, errors_before),
                "last error": after["last_error"],
            }
            assert before > 0
            assert load.count(down, up) > 0
            assert during["backlog"] > 0
            assert during["errors"] > errors_before  # refused while down, not only 404 after
            assert after["backlog"] == 0
            figures["checkpoints checked in Cosmos DB"] = await check_durable(saver, load, since)
            report("cosmos refused (SIGKILL, new stand-in on the port)", figures)
        finally:
            await cleanup(saver, key_prefix)
