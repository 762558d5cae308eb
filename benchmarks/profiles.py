"""pyinstrument profiles of the hybrid saver's hot path, for missed targets.

Each target key has a workload; it runs twice after the measurements (never
during them): once with `async_mode="enabled"` (a call tree of the awaited
work, network waits shown as [await]) and once as a flat list of self time
over the whole thread (including the in-process reconciler task and the
event loop), written to `profiles/<key>.txt` and `profiles/<key>.flat.txt`.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.competitors import Env
from benchmarks.graphs import WORKERS, ChatRunner, GraphRunner
from benchmarks.ops import make_runner
from benchmarks.reconcile import drain, lag_under_load

_chat_runs = itertools.count()  # each chat workload on threads of its own


def workload(
    key: str, saver: Any, env: Env, threads: dict[str, Any], backend: str, n: int
) -> Callable[[], Awaitable[Any]] | None:
    """A fresh zero-argument coroutine function per call (state advances)."""
    tag = f"{env.run_id}-prof"
    if key in ("aput_2kb", "aget_latest", "aget_new", "alist_10", "aput_140kb"):
        runner = make_runner(key, saver, tag, threads)
        count = n // 5 if key in ("alist_10", "aput_140kb") else n
        return lambda: runner.batch(count)
    if key == "graph_seq":
        return GraphRunner(saver, "sync", f"{tag}-gs").sequential(max(n // 10, 10), [], 0)
    if key == "graph_conc":
        return GraphRunner(saver, "async", f"{tag}-gc").concurrent(max(n // 160, 2))
    if key in ("chat_seq", "chat_conc"):
        runner = ChatRunner(saver, "async", f"{tag}-chat{next(_chat_runs)}", WORKERS)
        turn = runner.sequential() if key == "chat_seq" else runner.concurrent()

        async def turns() -> None:
            for _ in range(max(n // 100, 5)):
                await turn()

        return turns
    if key == "drain":
        return lambda: drain(env, backend, n * 2)
    if key == "lag":
        lag_file = env.lag_files.get(saver.hot.prefix)
        return lambda: lag_under_load(saver, f"{tag}-lag", max(n // 160, 4), lag_file=lag_file)
    return None


async def profile(
    key: str, saver: Any, env: Env, threads: dict[str, Any], backend: str, n: int, out: Path
) -> list[str]:
    """Profile one target's workload; returns the files written (relative to out)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for mode, suffix, flat in (("enabled", "", False), ("disabled", ".flat", True)):
        work = workload(key, saver, env, threads, backend, n)
        if work is None:
            return []
        profiler = Profiler(interval=0.0002, async_mode=mode)  # type: ignore[arg-type]
        profiler.start()
        await work()
        profiler.stop()
        text = profiler.output_text(
            unicode=True, color=False, flat=flat, time="percent_of_total" if flat else "seconds",
            short_mode=False,
        )  # fmt: skip
        name = f"{key}{suffix}.txt"
        (out / name).write_text(text)
        written.append(name)
    return written
