"""The reconciler's linger, as pure logic: `step` is replaced by a fake that
takes a given time and returns a given batch size, and `_pause` records how
long the loop would wait."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from langgraph_hybrid_saver import Reconciler


class Timed(Reconciler):
    def __init__(self, step_s: float, batch: int, steps: int = 3) -> None:
        redis = SimpleNamespace(register_script=lambda text: None)
        keys = SimpleNamespace(shards=1)
        hot = SimpleNamespace(redis=redis, cluster=False, keys=keys, shards=1, prefix="p")
        super().__init__(hot, None, linger_ms=20, batch_size=10)  # type: ignore[arg-type]
        self.step_s, self.batch, self.left = step_s, batch, steps
        self.pauses: list[float] = []
        self.stop = asyncio.Event()

    async def step(self, block_ms: int | None = None, *, defer_ack: bool = False) -> int:
        await asyncio.sleep(self.step_s)
        self.left -= 1
        if self.left == 0:
            self.stop.set()
        return self.batch

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        self.pauses.append(seconds)

    async def drain(self, timeout: float) -> None:
        pass

    async def release_all(self) -> None:
        pass


async def run(r: Timed) -> list[float]:
    await r.run(r.stop)
    return r.pauses


async def test_a_quick_partial_batch_lingers_the_rest_of_linger_ms() -> None:
    pauses = await run(Timed(step_s=0.002, batch=3))
    assert len(pauses) == 3
    assert all(0.005 < p < 0.0185 for p in pauses), pauses


@pytest.mark.parametrize(("step_s", "batch"), [(0.03, 3), (0.002, 10), (0.002, 0)])
async def test_no_linger_after_a_slow_step_a_full_batch_or_nothing(
    step_s: float, batch: int
) -> None:
    # A step slower than linger_ms already gathered its entries; a full batch
    # means more are waiting; an empty read already blocked for block_ms.
    assert await run(Timed(step_s=step_s, batch=batch)) == []
