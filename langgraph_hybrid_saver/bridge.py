"""One implementation, two faces: every method is async and runs on the
saver's own loop (where its connections live); the sync methods of the
checkpointer contract and calls from other loops reach it through here.

`on_own_loop` makes an async method refuse at once on a closed saver and
run on the saver's loop whatever loop awaits it. `SyncBridge` gives each
async method of the contract its sync twin, run on that loop from another
thread, as `AsyncPostgresSaver` runs its sync calls.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from langgraph_hybrid_saver.errors import SaverClosedError

T = TypeVar("T")
S = TypeVar("S", bound="SyncBridge")
P = ParamSpec("P")


def on_own_loop(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """An async method that refuses at once when the saver is closed and
    runs on the saver's own loop (where its connections live) from any loop."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self._check_open()
        return await self._on_own_loop(method(self, *args, **kwargs))

    functools.update_wrapper(run, method)
    return run


async def _gather(items: AsyncIterator[T]) -> builtins.list[T]:
    return [item async for item in items]


class SyncBridge(BaseCheckpointSaver[str]):
    """The sync methods of `BaseCheckpointSaver`, each its async twin run on
    `self.loop` from the calling thread."""

    loop: asyncio.AbstractEventLoop
    _closed: bool

    def _check_open(self) -> None:
        if self._closed:
            raise SaverClosedError(
                "this saver is closed; open a new one with from_conn_string(...)"
            )

    async def _on_own_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the saver's loop, whatever loop the caller is on."""
        loop = self.loop
        if asyncio.get_running_loop() is loop or not loop.is_running():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the saver's loop and wait for it in this thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "synchronous calls to AsyncHybridSaver are not allowed on its own "
                "event loop (they would block it): use the async methods (ainvoke, "
                "aget_tuple, ...) or HybridSaver from sync code"
            )
        if self._closed or not self.loop.is_running():
            coro.close()
            self._check_open()
            raise SaverClosedError(
                "this saver's event loop is not running, so a sync call would wait "
                "forever: call the async methods on that loop, or use HybridSaver"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        listed = self.alist(config, filter=filter, before=before, limit=limit)
        return iter(self._sync(_gather(listed)))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        return self._sync(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        return self._sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        return self._sync(self.adelete_for_runs(run_ids))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        return self._sync(self.aprune(thread_ids, strategy=strategy))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        return self._sync(self.acopy_thread(source_thread_id, target_thread_id))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._sync(self.aget_delta_channel_history(config=config, channels=channels))
