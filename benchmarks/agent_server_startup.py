"""Startup of LangGraph Agent Server (`langgraph dev`) with this saver against
the official `AsyncPostgresSaver`: the time from launching the server to its
first 200 on `/ok`, each saver started in turn, in random order per round.

    python -m benchmarks.agent_server_startup [--rounds 7]

Needs `pip install -e ".[test]"` (langgraph-cli[inmem]), Redis and PostgreSQL
(`--redis`, `--durable`; defaults: 127.0.0.1, database `test`). Each server
starts in a fresh app directory (nothing persisted) with the graph of
tests/agent_server; the hybrid saver uses a fresh key prefix per start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "tests" / "agent_server" / "graph.py"
LANGGRAPH = Path(sys.executable).with_name("langgraph")

# The official saver as a user wires it: a module beside langgraph.json.
OFFICIAL = """\
import os
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver


@asynccontextmanager
async def checkpointer():
    async with AsyncPostgresSaver.from_conn_string(os.environ["DURABLE_URL"]) as saver:
        await saver.setup()
        yield saver
"""

SAVERS = {
    "hybrid": "langgraph_hybrid_saver.agent_server.checkpointer",
    "AsyncPostgresSaver": "./official.py:checkpointer",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def phases(log: str) -> tuple[float, float]:
    """From the server's log: seconds importing the checkpointer's module
    (the server's own timer) and seconds from then until the saver was open
    and set up."""
    stamps: dict[str, datetime] = {}
    load = math.nan
    for line in ANSI.sub("", log).splitlines():
        for mark in ("Loading checkpointer", "Using custom checkpointer"):
            if mark in line and mark not in stamps:
                stamps[mark] = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
                if found := re.search(r"elapsed_seconds=([0-9.]+)", line):
                    load = float(found[1])
    if len(stamps) < 2:
        return load, math.nan
    opened = stamps["Using custom checkpointer"] - stamps["Loading checkpointer"]
    return load, opened.total_seconds()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: unlike the wall time,
    it hardly moves when other processes load the machine (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_once(saver: str, redis_url: str, durable_url: str) -> tuple[float, float, float, float]:
    """Seconds from launching `langgraph dev` to its first 200 on /ok, the
    server's CPU seconds by then, and the import and open phases of the
    checkpointer (`phases`)."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        shutil.copy(GRAPH, app / "graph.py")
        (app / "official.py").write_text(OFFICIAL)
        config = {
            "dependencies": ["."],
            "graphs": {"agent": "./graph.py:graph"},
            "checkpointer": {"path": SAVERS[saver]},
        }
        (app / "langgraph.json").write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_SAVER_")}
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        env.update(
            HYBRID_SAVER_REDIS_URL=redis_url,
            HYBRID_SAVER_DURABLE_URL=durable_url,
            HYBRID_SAVER_KEY_PREFIX=prefix,
            DURABLE_URL=durable_url,
            LANGSMITH_TRACING="false",
            LANGGRAPH_CLI_NO_ANALYTICS="1",
        )
        port = free_port()
        cmd = [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(port)]
        log = app / "server.log"
        with log.open("wb") as out:
            began = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    sys.exit(f"{saver}: langgraph dev exited:\n{log.read_text()}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ok", timeout=5).status_code == 200:
                        ok = time.perf_counter() - began
                        return (ok, cpu_seconds(proc.pid), *phases(log.read_text()))
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            with redis.Redis.from_url(redis_url) as r:  # the saver's layout record
                for key in r.scan_iter(match=f"{prefix}:*"):
                    r.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--durable", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    times: dict[str, list[tuple[float, ...]]] = {name: [] for name in SAVERS}
    for name in SAVERS:  # warm-up: first imports and schema setup, discarded
        start_once(name, args.redis, args.durable)
    for n in range(args.rounds):
        for name in random.sample(list(SAVERS), len(SAVERS)):
            times[name].append(start_once(name, args.redis, args.durable))
        print(f"round {n + 1}: " + ", ".join(f"{k} {times[k][-1][0]:.2f} s" for k in SAVERS))
    print(f"\n{args.rounds} rounds, medians (min-max), seconds:\n")
    print(
        "| saver | until /ok answers | server CPU until then "
        "| import of the checkpointer | its open and setup |"
    )
    print("|---|---|---|---|---|")
    medians: dict[str, list[float]] = {}
    for name, runs in times.items():
        cols = []
        for i in range(4):
            ts = [r[i] for r in runs]
            medians.setdefault(name, []).append(statistics.median(ts))
            cols.append(f"{statistics.median(ts):.2f} ({min(ts):.2f}-{max(ts):.2f})")
        print(f"| {name} | " + " | ".join(cols) + " |")
    hybrid, official = medians["hybrid"], medians["AsyncPostgresSaver"]
    print(
        f"\nhybrid - AsyncPostgresSaver, medians: {hybrid[0] - official[0]:+.2f} s until /ok, "
        f"{hybrid[1] - official[1]:+.2f} s of server CPU"
    )


if __name__ == "__main__":
    main()
