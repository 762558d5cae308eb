"""One process of the support workflow: run, resume, or answer the review.

The demo (`python -m examples.support_workflow`) starts this module as a
child process and reads its stdout: one JSON event per line (`started`,
`node`, `checkpoint`, `effect`, `hold`, `interrupt`, `finished`). With
`--hold-after NODE` the worker stops right after the checkpoint that follows
NODE has been acknowledged by Redis, prints a `hold` event and waits: the demo
answers with SIGKILL. The kill comes from another process while this one is
alive, connected and running its reconciler, as a real crash would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.types import Command

from langgraph_hybrid_saver import AsyncHybridSaver

from .graph import THREAD_ID, build_graph, initial_state
from .ledger import Ledger

HOLD_LIMIT_SECONDS = 60.0  # a parent that never kills us must not leave us hanging


class WorkerTimeline:
    """Prints events as JSON lines and holds at the chosen crash point."""

    def __init__(self, hold_after: str | None, flush_at_hold: bool) -> None:
        self.hold_after = hold_after
        self.flush_at_hold = flush_at_hold
        self.saver: AsyncHybridSaver | None = None

    def emit(self, event: str, **fields: Any) -> None:
        line = {"event": event, "pid": os.getpid(), "t": time.time(), **fields}
        print(json.dumps(line, default=str), flush=True)

    async def reached(self, point: str) -> None:
        if point != self.hold_after:
            return
        if self.flush_at_hold and self.saver is not None:
            # Wait for the reconciler to copy everything into the durable
            # store, so that wiping Redis after the kill loses nothing.
            await self.saver.aflush()
        self.emit("hold", point=point, durable=self.flush_at_hold)
        await asyncio.sleep(HOLD_LIMIT_SECONDS)
        raise SystemExit(f"held at {point!r} for {HOLD_LIMIT_SECONDS}s and nobody killed us")


class TimelineSaver(AsyncHybridSaver):
    """The package's saver, reporting each checkpoint once Redis has it."""

    def __init__(self, *args: Any, timeline: WorkerTimeline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeline = timeline

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        stored = await super().aput(config, checkpoint, metadata, new_versions)
        # Here the atomic Redis write (checkpoint + outbox entry) has returned.
        steps = checkpoint["channel_values"].get("completed_steps") or []
        updated = checkpoint.get("updated_channels") or []
        after = steps[-1] if steps and "completed_steps" in updated else None
        self.timeline.emit(
            "checkpoint",
            checkpoint_id=stored["configurable"]["checkpoint_id"],
            step=metadata.get("step"),
            source=metadata.get("source"),
            after=after,
        )
        if after is not None:
            await self.timeline.reached(after)
        return stored


async def run(args: argparse.Namespace) -> None:
    timeline = WorkerTimeline(args.hold_after, args.flush_at_hold)
    timeline.emit("started", mode=args.mode)
    ledger = Ledger(args.ledger)
    async with TimelineSaver.from_conn_string(
        args.redis_url, args.durable_url, key_prefix=args.key_prefix, timeline=timeline
    ) as saver:
        timeline.saver = saver
        graph = build_graph(ledger, saver, timeline)
        config: RunnableConfig = {"configurable": {"thread_id": THREAD_ID}}
        graph_input: Any
        if args.mode == "run":
            graph_input = initial_state()
        elif args.mode == "resume":
            graph_input = None  # continue from the last checkpoint
        else:
            graph_input = Command(
                resume={
                    "approved": args.mode == "approve",
                    "reviewer": args.reviewer,
                    "note": args.note,
                }
            )
        # durability="sync": each checkpoint is stored before the next node
        # starts, which puts a checkpoint boundary in front of every side effect.
        result = await graph.ainvoke(graph_input, config, durability="sync")
        if "__interrupt__" in result:
            timeline.emit("interrupt", value=result["__interrupt__"][0].value)
        else:
            timeline.emit(
                "finished",
                final_response=result.get("final_response"),
                completed_steps=result.get("completed_steps"),
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.support_workflow.worker")
    parser.add_argument("mode", choices=["run", "resume", "approve", "reject"])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--durable-url", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--hold-after", help="node (or 'refund') to stop at, awaiting SIGKILL")
    parser.add_argument("--flush-at-hold", action="store_true")
    parser.add_argument("--reviewer", default="maria.g@billing")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
