"""`prune`: a retention run over the durable store and Redis
(`langgraph_hybrid_saver.retention`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from langgraph_hybrid_saver.cli import render as ui
from langgraph_hybrid_saver.cli.options import (
    Servers,
    number_option,
    print_json,
    run_coro,
    server_options,
)

if TYPE_CHECKING:
    from langgraph_hybrid_saver.retention import RetentionReport


@click.command(short_help="Retention: delete idle threads, keep the latest N checkpoints.")
@server_options(durable=True, read_only=True)
@click.option(
    "--idle",
    metavar="DURATION",
    default=None,
    help="Delete threads with no checkpoint newer than this: 30d, 12h, 90m, 45s, 2w.",
)
@number_option(
    "--keep-latest",
    default=None,
    minimum=1,
    help="Keep this many newest checkpoints of every thread and namespace; delete the rest.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@number_option("--batch", default=100, minimum=1, help="Threads per transaction.")
@number_option(
    "--flush-timeout",
    default=60.0,
    minimum=0,
    integer=False,
    help="Seconds to wait for the reconcilers to apply the outbox entries written before the run.",
)
def prune(
    servers: Servers,
    as_json: bool,
    idle: str | None,
    keep_latest: int | None,
    dry_run: bool,
    batch: int,
    flush_timeout: float,
) -> None:
    """Apply a retention policy to every thread of the durable store and Redis.

    --idle deletes whole threads whose newest checkpoint is older than the
    duration (by checkpoint id: LangGraph's ids are time-ordered uuid6);
    --keep-latest deletes all but the newest N checkpoints of every namespace
    of the others, with their writes and the blobs no kept checkpoint uses.
    On threads that use a DeltaChannel it also keeps the older checkpoints
    the kept ones rebuild their DeltaChannel values from (back to the
    nearest snapshot of each), and counts them. Runs after the outbox
    entries written before it are applied (a reconciler must be running),
    BATCH threads per transaction; safe to run again.
    """
    from langgraph_hybrid_saver.outbox.stream import Outbox
    from langgraph_hybrid_saver.retention import (
        RetentionPolicy,
        parse_duration,
        retain,
        wait_outbox,
    )

    policy = RetentionPolicy(None if idle is None else parse_duration(idle), keep_latest)

    async def run() -> RetentionReport:
        async with servers.open() as t:
            assert t.backend is not None
            outbox = Outbox(t.hot)
            with _progress(not as_json) as tick:
                return await retain(
                    t.hot,
                    outbox,
                    t.backend,
                    policy,
                    flush=lambda: wait_outbox(outbox, flush_timeout),
                    dry_run=dry_run,
                    batch=batch,
                    progress=tick,
                )

    report = run_coro(run())
    if as_json:
        print_json(report.to_json())
        return
    console = ui.make_console()
    verb = "would delete" if dry_run else "deleted"
    table = ui.new_table("", "threads", "checkpoints", title=f"prune ({verb})")
    ui.add_row(table, "scanned", str(report.threads_scanned), "")
    ui.add_row(
        table,
        "idle, deleted whole",
        str(report.threads_deleted),
        str(report.checkpoints_of_deleted),
    )
    ui.add_row(
        table, "older checkpoints", str(report.threads_pruned), str(report.checkpoints_pruned)
    )
    ui.add_row(
        table,
        "older, kept for DeltaChannel",
        str(report.threads_kept_for_delta),
        str(report.checkpoints_kept_for_delta),
    )
    console.print(table)
    if dry_run:
        ui.print_line(console, ("dry run: nothing was changed", "dim"))


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Callable[[RetentionReport], None]]:
    """A progress bar of threads scanned on stderr, when stderr is a
    terminal and rich is installed; else a no-op."""
    try:
        from rich.progress import Progress
    except ImportError:
        show = False
    if not (show and sys.stderr.isatty()):
        yield lambda report: None
        return
    from rich.console import Console

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("threads scanned", total=None)

        def tick(report: RetentionReport) -> None:
            bar.update(task, completed=report.threads_scanned)

        yield tick
