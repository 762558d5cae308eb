"""`setup` and `status`: the servers, the outbox, the reconcilers. What they
show comes from `langgraph_hybrid_saver.ops`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click

from langgraph_hybrid_saver.cli import render as ui
from langgraph_hybrid_saver.cli.options import (
    PROG,
    Servers,
    number_option,
    print_json,
    run_coro,
    server_options,
)

if TYPE_CHECKING:
    from rich.console import Console

    from langgraph_hybrid_saver.ops import ServerFacts, Status


@click.command(short_help="Create or migrate the schema; check servers; print versions.")
@server_options(durable=True, read_only=False)
def setup(servers: Servers, as_json: bool) -> None:
    """Create or migrate the durable schema, check both servers, print versions.

    Idempotent: safe to run on every deploy. Also records the shard count of
    the key prefix in Redis (every process sharing it must use the same).
    """
    from langgraph_hybrid_saver.ops import server_facts

    async def run() -> ServerFacts:
        async with servers.open() as t:
            await t.hot.check_layout()
            assert t.backend is not None
            await t.backend.setup()
            return await server_facts(t)

    facts = run_coro(run())
    if as_json:
        print_json(facts.to_json())
        return
    console = ui.make_console()
    table = ui.new_table("", "", "")
    table.show_header = False
    ui.add_row(
        table, "Redis", str(facts.redis_url), f"{facts.redis_server} ({facts.redis_mode}) ok"
    )
    ui.add_row(
        table, "Durable", str(facts.durable_url), f"{facts.durable_server}, schema up to date"
    )
    ui.add_row(table, "Key prefix", repr(facts.key_prefix), f"{facts.shards} shards")
    ui.add_row(table, "Package", PROG, facts.package_version)
    console.print(table)
    ui.print_warnings(console, facts.warnings)


@click.command(short_help="Backlog, lag, reconcilers, hot threads, memory, row counts.")
@server_options(durable=False, read_only=True)
@click.option("--watch", is_flag=True, help="Refresh until interrupted (Ctrl-C).")
@number_option(
    "--interval",
    default=2.0,
    minimum=0.05,
    integer=False,
    help="Seconds between refreshes with --watch.",
)
@number_option(
    "--count", default=None, minimum=1, help="With --watch: stop after this many refreshes."
)
@number_option(
    "--sample",
    default=1000,
    minimum=1,
    help="Entry ids read per shard for the lag percentiles (beyond: estimated).",
)
@click.option(
    "--no-scan",
    is_flag=True,
    help="Skip counting hot threads (a SCAN over the key prefix).",
)
def status(
    servers: Servers,
    as_json: bool,
    watch: bool,
    interval: float,
    count: int | None,
    sample: int,
    no_scan: bool,
) -> None:
    """Outbox backlog, reconcile lag, reconcilers and their shards, hot
    threads, Redis memory and durable row counts.

    Read-only. Lag is the age of the entries still in the outbox (p50 and
    max). Hot threads are counted with SCAN over the key prefix: fine for an
    operator, never done on the saver's hot path; --no-scan skips it. With
    --json, --watch prints one JSON document per line.
    """
    from langgraph_hybrid_saver.ops import collect_status

    console = None if as_json else ui.make_console()

    def show(snapshot: Status) -> None:
        if as_json:
            print_json(snapshot.to_json())
        else:
            assert console is not None
            _render_status(console, snapshot)

    async def run() -> None:
        async with servers.open(durable_optional=True) as t:
            if not watch:
                with ui.spinner("reading status…"):
                    show(await collect_status(t, sample=sample, scan=not no_scan))
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            shown = 0
            while not stop.is_set():
                snapshot = await collect_status(t, sample=sample, scan=not no_scan)
                if console is not None and console.is_terminal:
                    console.clear()
                show(snapshot)
                shown += 1
                if count is not None and shown >= count:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    run_coro(run())


def _render_status(console: Console, s: Status) -> None:
    when = datetime.fromtimestamp(s.taken_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = "" if s.layout_recorded else " (no saver has used this prefix yet)"
    ui.print_line(
        console,
        (f"{PROG} status", "bold"),
        f" · prefix {s.key_prefix!r} · {s.shards} shards{note} · {when}",
    )
    summary = ui.new_table("", "")
    summary.show_header = False
    lag = f"p50 {ui.fmt_age(s.lag_p50_s)}, max {ui.fmt_age(s.lag_max_s)}"
    if s.lag_estimated:
        lag += " (p50 estimated)"
    held = ui.fmt_size(s.outbox_memory)
    if s.outbox_large_values:
        held += f" + {ui.fmt_size(s.outbox_large_values)} of large values"
    # An empty stream still takes memory: its size says nothing then.
    ui.add_row(summary, "Outbox backlog", f"{s.backlog} entries ({held})" if s.backlog else "empty")
    ui.add_row(summary, "Reconcile lag", lag if s.backlog else "none (outbox empty)")
    if s.dead_letters:
        ui.add_row(
            summary,
            "Dead letters",
            f"{s.dead_letters} entries not durable (refused or undecodable): "
            f"{PROG} dead-letters list",
        )
    alive = [w for w in s.workers if w.alive]
    ui.add_row(summary, "Reconcilers", f"{len(alive)} alive")
    ui.add_row(
        summary,
        "Hot threads",
        "not counted (--no-scan)" if s.hot_threads is None else str(s.hot_threads),
    )
    limit = ui.fmt_size(s.redis_maxmemory) if s.redis_maxmemory else "no limit"
    ui.add_row(
        summary,
        "Redis memory",
        f"{ui.fmt_size(s.redis_used_memory)} used, maxmemory {limit}, {s.redis_eviction_policy}",
    )
    if s.durable_rows is None:
        ui.add_row(summary, "Durable rows", "not read (no --durable)")
    else:
        ui.add_row(
            summary, "Durable rows", ", ".join(f"{k} {v}" for k, v in s.durable_rows.items())
        )
    console.print(summary)
    if s.workers:
        table = ui.new_table("reconciler", "state", "heartbeat", "shards", title="Reconcilers")
        for w in s.workers:
            state = ui.styled("alive", "green") if w.alive else ui.styled("gone", "red")
            beat = f"expires in {ui.fmt_age(w.expires_in_s)}" if w.alive else "expired"
            ui.add_row(table, w.owner, state, beat, _ranges(w.shards) or "-")
        console.print(table)
    busy = [p for p in s.per_shard if p.backlog]
    if busy:
        table = ui.new_table("shard", "backlog", "oldest", "owner", title="Shards with a backlog")
        for p in busy:
            ui.add_row(
                table, str(p.shard), str(p.backlog), ui.fmt_age(p.oldest_age_s), p.owner or "-"
            )
        console.print(table)
    ui.print_warnings(console, s.warnings)


def _ranges(shards: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    out: list[str] = []
    for s in sorted(shards):
        if out and "-" in out[-1] and int(out[-1].split("-")[1]) == s - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        elif out and "-" not in out[-1] and int(out[-1]) == s - 1:
            out[-1] = f"{out[-1]}-{s}"
        else:
            out.append(str(s))
    return ", ".join(out)
