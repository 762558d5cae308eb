"""`HybridSaver`: the sync saver, an `AsyncHybridSaver` whose event loop is
a private thread (as `PostgresSaver` is the sync face of one connection)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph_hybrid_saver.clients import open_clients
from langgraph_hybrid_saver.saver import AsyncHybridSaver


class HybridSaver(AsyncHybridSaver):
    """The sync saver: an `AsyncHybridSaver` whose loop is a private thread.

    Works with `invoke`/`stream` and, from any event loop, with
    `ainvoke`/`astream`; has every method of `AsyncHybridSaver` (sync and
    async) besides `setup()` and `close()`, which are sync here as on
    `PostgresSaver`. Takes the same options as `AsyncHybridSaver`.
    Call `close()` (or use `from_conn_string`) to stop it.
    """

    def __init__(self, redis_url: str, durable_url: str, **options: Any) -> None:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="hybrid-saver-loop", daemon=True
        )
        self._thread.start()
        serde = options.pop("serde", None)
        try:
            opened = asyncio.run_coroutine_threadsafe(
                open_clients(redis_url, durable_url, serde), loop
            ).result()
        except BaseException:
            self._stop_loop(loop)
            raise
        redis, backend = opened
        super().__init__(redis, backend, serde=serde, loop=loop, **options)
        self._on_close += [backend.close, redis.aclose]
        try:
            self.setup()
        except BaseException:
            self.close()
            raise

    @classmethod
    @contextmanager
    def from_conn_string(  # type: ignore[override]
        cls, redis_url: str, durable_url: str, **options: Any
    ) -> Iterator[HybridSaver]:
        """Open a saver for the URLs (schema set up) and close it on exit."""
        saver = cls(redis_url, durable_url, **options)
        try:
            yield saver
        finally:
            saver.close()

    def setup(self) -> None:  # type: ignore[override]
        """Create or migrate the durable schema and check the Redis layout.

        Idempotent; the constructor has run it already.
        """
        self._sync(AsyncHybridSaver.setup(self))

    def close(self, drain_timeout: float = 10.0) -> None:
        """Drain the in-process reconciler, close clients, stop the loop
        thread. Idempotent; every call afterwards raises `SaverClosedError`."""
        if not self._thread.is_alive():
            return
        try:
            if not self._closed:
                asyncio.run_coroutine_threadsafe(self.aclose(drain_timeout), self.loop).result()
        finally:
            self._stop_loop(self.loop)

    def _stop_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> HybridSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> HybridSaver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)
