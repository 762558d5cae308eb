"""Outbox entries as operations a durable store applies, and their order.

`seq` is the entry's stream id made sortable (`seq_key`); every store keeps,
per thread, the `seq` of the last entry it applied (its watermark), so an
entry at or below it is skipped: applying twice changes nothing, and nothing
queued before a delete can bring the thread back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph_hybrid_saver.core import (
    BlobRow,
    CheckpointRow,
    WriteRow,
)


@dataclass(frozen=True, slots=True)
class PutOp:
    """Outbox entry of one `put`: the checkpoint and its new blobs."""

    seq: str
    row: CheckpointRow
    blobs: tuple[BlobRow, ...]

    @property
    def thread_id(self) -> str:
        return self.row.thread_id


@dataclass(frozen=True, slots=True)
class WritesOp:
    """Outbox entry of one `put_writes` call."""

    seq: str
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    upsert: bool  # True when every write is a special channel (WRITES_IDX_MAP)
    writes: tuple[WriteRow, ...]

    def params(self) -> list[tuple[Any, ...]]:
        """Rows in the column order of `checkpoint_writes`/`writes` inserts:
        thread_id, ns, checkpoint_id, task_id, task_path, idx, channel, type, blob."""
        return [
            (
                self.thread_id,
                self.checkpoint_ns,
                self.checkpoint_id,
                w.task_id,
                w.task_path,
                w.idx,
                w.channel,
                w.type,
                w.blob,
            )
            for w in self.writes
        ]


@dataclass(frozen=True, slots=True)
class DeleteThreadOp:
    """Outbox entry of `delete_thread`: a fence for everything queued before it."""

    seq: str
    thread_id: str


Op = PutOp | WritesOp | DeleteThreadOp


def apply_order(
    ops: Sequence[Op], marks: dict[str, str]
) -> list[tuple[list[Op], DeleteThreadOp | None]]:
    """The ops past their thread's watermark in `marks` (advanced in place),
    as runs of puts and writes, each run followed by the delete that ends it
    (None after the last run): a delete must land after what was queued
    before it, and a run can be written one statement per table."""
    parts: list[tuple[list[Op], DeleteThreadOp | None]] = []
    run: list[Op] = []
    for op in ops:
        if op.seq <= marks[op.thread_id]:
            continue
        marks[op.thread_id] = op.seq
        if isinstance(op, DeleteThreadOp):
            parts.append((run, op))
            run = []
        else:
            run.append(op)
    parts.append((run, None))
    return parts


def seq_key(stream_id: str) -> str:
    """A Redis stream id ("ms-seq") as a fixed-width string that sorts in order."""
    ms, _, n = stream_id.partition("-")
    return f"{int(ms):016d}-{int(n or 0):010d}"
