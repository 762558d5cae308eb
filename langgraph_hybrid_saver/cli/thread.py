"""`inspect` and `size`: one thread read from both tiers. What they show
comes from `langgraph_hybrid_saver.history`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from langgraph_hybrid_saver.cli import render as ui
from langgraph_hybrid_saver.cli.options import (
    Servers,
    number_option,
    print_json,
    run_coro,
    server_options,
    thread_options,
)

if TYPE_CHECKING:
    from rich.console import Console

    from langgraph_hybrid_saver.history import CheckpointDiff, SizeReport, ThreadHistory


@click.command(name="inspect", short_help="A thread's audit trail: who changed what, when; --diff.")
@thread_options(limit=50, limit_help="Newest checkpoints to show; 0 for all.")
@click.option(
    "--diff",
    nargs=2,
    metavar="A B",
    default=None,
    help="What changed from checkpoint A to B (ids or unique parts of ids).",
)
@server_options(durable=False, read_only=True)
def inspect_cmd(
    thread: str,
    ns: str,
    limit: int,
    diff: tuple[str, str] | None,
    servers: Servers,
    as_json: bool,
) -> None:
    """A thread's checkpoint history: the audit trail of who changed what, when.

    One row per checkpoint, newest first: id, step, source, time, tier (hot
    in Redis, durable, or both) and, per node, the channels it wrote (with
    serialized sizes) to produce that checkpoint. Writes of a step still in
    progress or interrupted show as "pending". Node names come from the
    writes' task paths (and Send packets); see langgraph_hybrid_saver.history.

    --diff A B compares two checkpoints channel by channel: added, removed,
    changed, with versions and sizes.
    """
    from langgraph_hybrid_saver.history import ThreadHistory, diff_checkpoints, thread_history

    async def run() -> ThreadHistory | CheckpointDiff:
        async with servers.open() as t:
            with ui.spinner(f"reading thread {thread}…"):
                if diff is not None:
                    return await diff_checkpoints(t, thread, ns, diff[0], diff[1])
                return await thread_history(t, thread, ns, limit=limit or None)

    result = run_coro(run())
    if as_json:
        print_json(result.to_json())
        return
    console = ui.make_console()
    if isinstance(result, ThreadHistory):
        _render_history(console, result)
    else:
        _render_diff(console, result)
    if servers.durable_url is None:
        ui.print_line(
            console, ("durable store not read (no --durable): tiers show Redis only", "dim")
        )


def _task_cells(tasks: Sequence[Any]) -> tuple[str, str]:
    nodes, writes = [], []
    for task in tasks:
        nodes.append(task.node)
        writes.append(", ".join(_write_cell(w) for w in task.writes))
    return "\n".join(nodes) or "-", "\n".join(writes) or "-"


def _write_cell(w: Any) -> str:
    times = f" x{w.count}" if w.count > 1 else ""
    return f"{w.channel}{times} {ui.fmt_size(w.size)}"


def _render_history(console: Console, h: ThreadHistory) -> None:
    hot_ns = ", ".join(repr(n) for n in h.namespaces) or "none"
    ui.print_line(
        console,
        (f"thread {h.thread_id}", "bold"),
        f" · namespace {h.checkpoint_ns!r} · {len(h.checkpoints)} checkpoints, newest first"
        f" · namespaces in Redis: {hot_ns}",
    )
    table = ui.new_table("checkpoint", "step", "source", "time (UTC)", "tier", "node", "wrote")
    table.columns[0].no_wrap = True
    parents = {c.parent_checkpoint_id for c in h.checkpoints}
    for c in h.checkpoints:
        if c.pending and c.checkpoint_id not in parents:
            node, wrote = _task_cells(c.pending)
            ui.add_row(table, ui.styled("(pending)", "dim"), "", "next", "", "", node, wrote)
        node, wrote = _task_cells(c.changes)
        tier = c.tier if c.hot_complete or c.tier == "durable" else f"{c.tier} (partial in Redis)"
        ui.add_row(
            table,
            c.checkpoint_id,
            "-" if c.step is None else str(c.step),
            c.source or "-",
            ui.fmt_ts(c.ts),
            tier,
            node,
            wrote,
        )
    console.print(table)


def _render_diff(console: Console, d: CheckpointDiff) -> None:
    ui.print_line(console, (f"thread {d.thread_id}", "bold"), f" · namespace {d.checkpoint_ns!r}")
    ui.print_line(console, f"diff {d.a} -> {d.b}")
    if not d.changes:
        console.print("no channel changed")
    else:
        table = ui.new_table("channel", "change", "detail", "size", "before", "after")
        for c in d.changes:
            ui.add_row(
                table,
                c.channel,
                c.change,
                c.detail,
                f"{ui.fmt_size(c.size_a)} -> {ui.fmt_size(c.size_b)}",
                c.before or "-",
                c.after or "-",
            )
        console.print(table)
    if d.unchanged:
        ui.print_line(console, (f"unchanged: {', '.join(d.unchanged)}", "dim"))


@click.command(short_help="A thread's largest channels and growth per step.")
@thread_options(limit=100, limit_help="Newest checkpoints to read for the growth table; 0 for all.")
@number_option("--top", default=10, minimum=1, help="Largest channels to list.")
@server_options(durable=False, read_only=True)
def size(
    thread: str,
    ns: str,
    limit: int,
    top: int,
    servers: Servers,
    as_json: bool,
) -> None:
    """A thread's state size: the largest channels and the growth per step.

    Sizes are serialized bytes. "versions" and "stored" count the distinct
    versions of a channel in the checkpoints read and their bytes: each is
    kept once in Redis and in the durable store, so a list that grows at
    every step is stored again at every step. Cap message lists with
    langgraph_hybrid_saver.reducers.rolling_window(n).
    """
    from langgraph_hybrid_saver.history import size_report

    async def run() -> SizeReport:
        async with servers.open() as t:
            with ui.spinner(f"reading thread {thread}…"):
                return await size_report(t, thread, ns, limit=limit or None)

    report = run_coro(run())
    if as_json:
        data = report.to_json()
        data["channels"] = data["channels"][:top]
        print_json(data)
        return
    console = ui.make_console()
    ui.print_line(
        console,
        (f"thread {report.thread_id}", "bold"),
        f" · namespace {report.checkpoint_ns!r} · newest checkpoint {report.checkpoint_id}"
        f" · state {ui.fmt_size(report.total)}",
    )
    table = ui.new_table(
        "channel", "size", "share", "items", "versions", "stored", title="Largest channels"
    )
    for c in report.channels[:top]:
        ui.add_row(
            table,
            c.channel,
            ui.fmt_size(c.size),
            f"{c.share:.0%}",
            "-" if c.items is None else str(c.items),
            str(c.versions),
            ui.fmt_size(c.stored),
        )
    console.print(table)
    steps = ui.new_table(
        "step", "checkpoint", "source", "state", "growth", "grew most", title="Growth per step"
    )
    steps.columns[1].no_wrap = True
    for s in report.steps:
        grew = f"{s.top_channel} {ui.fmt_signed_size(s.top_delta)}" if s.top_channel else "-"
        ui.add_row(
            steps,
            "-" if s.step is None else str(s.step),
            s.checkpoint_id,
            s.source or "-",
            ui.fmt_size(s.size),
            ui.fmt_signed_size(s.delta),
            grew,
        )
    console.print(steps)
    for hint in report.hints:
        ui.print_line(console, ("hint: ", "yellow"), hint)
