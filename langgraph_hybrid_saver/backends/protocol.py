"""The `DurableBackend` protocol: what the saver, the reconciler and the
operators' views need from a durable store.

Every backend keeps, per thread, the outbox sequence number up to which it
has applied entries (its *watermark*), inside the same transaction as the
rows, which makes `apply` idempotent and keeps a deleted thread deleted: an
entry at or below the watermark is skipped.

Optional capabilities (`stats`, `server_version`) are members of the
protocol like the others, and a backend without one says so with the
member's "absent" value: `stats` is None, `server_version()` returns None.
A value rather than an exception because every caller has a plain fallback
(leave the durable section out of `astats()`, print "version unknown" in
`status`): an absent capability is not an error to recover from. Callers
use the members directly, never `getattr` or `isinstance` on a narrower
protocol, so mypy checks every backend against every capability.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from langgraph_hybrid_saver.backends._prune import ChainRow, PrunedKey
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
)
from langgraph_hybrid_saver.outbox.ops import Op


@runtime_checkable
class DurableBackend(Protocol):
    """What the saver and the reconciler need from a durable store."""

    where: str  # host:port (or file) for error messages, never a password

    async def open(self) -> None:
        """Connect; raise `ServerUnreachableError` (naming host:port) if it can't."""

    async def setup(self) -> None:
        """Create or migrate the schema; idempotent, safe to run concurrently."""

    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply outbox entries in order, in one transaction.

        Entries at or below their thread's watermark are skipped; the watermark
        then moves to the last applied entry. Returns how many were applied.
        """

    async def watermark(self, thread_id: str) -> str:
        """The thread's watermark: the `seq` of the last entry applied ('' if none)."""

    async def get(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
    ) -> StoredCheckpoint | None:
        """One checkpoint with blobs and writes; the latest when no id is given."""

    async def get_blobs(
        self, thread_id: str, checkpoint_ns: str, refs: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[str, bytes | None]]:
        """Blobs by (channel, version), keyed by channel; absent ones are left out."""

    async def list(self, query: ListQuery) -> list[StoredCheckpoint]:
        """Checkpoints newest first, with blobs and writes."""

    async def thread_ids(self, after: str, limit: int) -> builtins.list[str]:
        """Up to `limit` thread ids that sort after `after` ('' first), in the
        store's order: pages of every thread the store holds (for the thread
        index in Redis)."""

    async def delete_for_runs(self, run_ids: Sequence[str]) -> builtins.list[PrunedKey]:
        """Delete checkpoints (and their writes) created by the runs; returns
        the checkpoints deleted (what Redis must forget)."""

    async def prune_keep_latest(
        self, thread_ids: Sequence[str], keep: int = 1, *, delta_chains: bool = False
    ) -> builtins.list[PrunedKey]:
        """Keep only the newest `keep` checkpoints of every namespace of the
        threads (their writes and the blobs they refer to), by PostgresSaver's
        rules (`backends._prune.kept_checkpoints`), in one transaction; a kept
        checkpoint whose parent goes becomes a root. Returns the checkpoints
        it deleted and those it made roots (what Redis must forget).

        A thread whose metadata has `counters_since_delta_snapshot` (it uses
        a DeltaChannel) is refused with `NotImplementedError`, as
        PostgresSaver's `prune` refuses it, unless `delta_chains`: then it
        also keeps the ancestors its kept checkpoints' DeltaChannel values
        are rebuilt from (`backends._prune.kept_checkpoints`, planned in the
        same transaction from `chain_index`'s rows)."""

    async def checkpoint_index(
        self, thread_ids: Sequence[str]
    ) -> builtins.list[tuple[str, str, str, bool]]:
        """(thread_id, checkpoint_ns, checkpoint_id, delta) of every checkpoint
        of the threads, no payloads; `delta` says its metadata has
        `counters_since_delta_snapshot` (what retention plans from)."""

    async def chain_index(self, thread_ids: Sequence[str]) -> builtins.list[ChainRow]:
        """A `ChainRow` of every checkpoint of the threads: its parent and
        which channels it counts as DeltaChannels, versions and stores (what
        keep-latest plans a DeltaChannel thread from)."""

    # --- optional capabilities: a backend without one returns None ---------

    @property
    def stats(self) -> dict[str, Any] | None:
        """The store's own usage counters (Cosmos DB: request units per
        operation), reported by `astats()["durable"]`; None where the store
        keeps none."""

    async def server_version(self) -> str | None:
        """The server's name and version, e.g. "PostgreSQL 16.4" (for
        `setup` and `status`); None where the store does not report one."""

    async def count_rows(self, thread_id: str | None = None) -> dict[str, int]:
        """Rows (documents) per table (kind) of the store, named as the
        store names them; of one thread, or of all when `thread_id` is None
        (for `status` and tests)."""

    async def close(self) -> None:
        """Release connections."""
