"""Interleaved timing and statistics.

Every measurement runs all participants in one process and one event loop,
in rounds: each round runs one batch of every participant, in a fresh random
order, so drift on a shared machine (other test suites, CPU frequency) hits
every participant alike. The first `warmup` rounds are discarded.
"""

from __future__ import annotations

import gc
import os
import random
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Batch = Callable[[], Awaitable[list[float]]]
"""Runs one batch and returns the latency of every operation in it (seconds)."""


def cpu_seconds() -> tuple[float, float | None]:
    """CPU seconds used so far by this process (every thread) and by the whole
    machine (user, nice, system, irq and softirq of every core in /proc/stat:
    the servers, a reconciler worker, anything else running; None where there
    is no /proc/stat)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    except (OSError, ValueError):
        return ru.ru_utime + ru.ru_stime, None
    busy = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    return ru.ru_utime + ru.ru_stime, busy


def metered(run: Batch, invocations: int, out: list[tuple[float, float | None]]) -> Batch:
    """`run`, appending (this process, whole machine) CPU µs per invocation
    of each batch to `out`."""

    async def batch() -> list[float]:
        own0, all0 = cpu_seconds()
        samples = await run()
        own1, all1 = cpu_seconds()
        machine = None if all0 is None or all1 is None else (all1 - all0) * 1e6 / invocations
        out.append(((own1 - own0) * 1e6 / invocations, machine))
        return samples

    return batch


class Progress:
    """A tqdm bar when tqdm is installed, a line per phase otherwise."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self._bar: Any = None
        self._done = 0
        self.total = total
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="batch", dynamic_ncols=True, mininterval=0.5)

    def phase(self, name: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_description(name[:40])
        else:
            print(f"[{self._done}/{self.total}] {name}", flush=True)

    def update(self, n: int = 1) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class Series:
    """Latency samples of one participant in one measurement (seconds)."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return summarize(self.samples)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
    }


async def interleave(
    participants: Mapping[str, Batch],
    *,
    rounds: int,
    warmup: int,
    rng: random.Random,
    progress: Progress | None = None,
    settle: Mapping[str, Callable[[], Awaitable[Any]]] | None = None,
) -> dict[str, list[float]]:
    """Run `warmup + rounds` rounds of every participant's batch, in a random
    order per round; return the samples of the measured rounds.

    `settle[name]`, when given, runs untimed after each of that participant's
    batches (a write-behind saver's `aflush`): work it deferred during its
    batch finishes before the next participant's batch starts, instead of
    being charged to that one."""
    samples: dict[str, list[float]] = {name: [] for name in participants}
    names = list(participants)
    for r in range(warmup + rounds):
        rng.shuffle(names)
        for name in names:
            gc.collect()  # collect between batches, not inside one
            lat = await participants[name]()
            if settle and name in settle:
                await settle[name]()
            if r >= warmup:
                samples[name].extend(lat)
            if progress is not None:
                progress.update()
    return samples


async def timed_calls(fn: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    """Latency of `n` sequential awaits of fn(i)."""
    out = []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        await fn(i)
        out.append(clock() - t0)
    return out
