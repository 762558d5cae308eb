"""`dead-letters list|show|retry|drop`: outbox entries that are not durable.
What they read and change is `langgraph_hybrid_saver.outbox.deadletters`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import click

from langgraph_hybrid_saver.cli import render as ui
from langgraph_hybrid_saver.cli.options import (
    EXIT_CONFIG,
    PROG,
    CliError,
    F,
    Servers,
    number_option,
    print_json,
    run_coro,
    server_options,
    stack,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from langgraph_hybrid_saver.outbox.deadletters import DeadLetter, DeadLetterDetail, Outcome


@click.group(
    name="dead-letters",
    short_help="List, show, retry or drop outbox entries that are not durable.",
)
def dead_letters() -> None:
    """Outbox entries that are not durable: the durable store refused them
    (for their data, not an outage) or they could not be decoded. The
    reconciler moved each aside to its shard's dead-letter stream so that
    the other entries go on; the thread's hot copy keeps no TTL while one of
    its entries is there.

    list and show only read. retry puts entries back in the outbox once the
    cause is fixed (schema, constraint, a newer reconciler); drop deletes
    them for good: what they held will never be in the durable store.
    Dead letters are named as list shows them (SHARD:ID), or by their id or
    their outbox entry's id alone when no other shard has the same id.
    """


def _selection(ids: tuple[str, ...], every: bool, thread: str | None) -> Sequence[str]:
    from langgraph_hybrid_saver.outbox.deadletters import ALL

    if every and ids:
        raise click.UsageError("give dead letter ids or --all, not both")
    if not every and not ids:
        raise click.UsageError(
            f"give the ids of dead letters (see `{PROG} dead-letters list`) or --all"
        )
    if thread is not None and not every:
        raise click.UsageError("--thread selects dead letters only with --all")
    return ALL if every else list(ids)


def _chosen_argument(f: F) -> F:
    """Pass IDS and --all to `f` as one `chosen` argument: the ids or ALL."""

    @functools.wraps(f)
    def command(*args: Any, ids: tuple[str, ...], every: bool, **kwargs: Any) -> Any:
        return f(*args, chosen=_selection(ids, every, kwargs["thread"]), **kwargs)

    return cast(F, command)


_selection_options = stack(
    click.argument("ids", nargs=-1, metavar="[ID]..."),
    click.option("--all", "every", is_flag=True, help="Every dead letter there now."),
    click.option(
        "--thread", default=None, help="With --all: only the dead letters of this thread."
    ),
    _chosen_argument,
)


@dead_letters.command(name="list", short_help="The dead letters, oldest first.")
@click.option("--thread", default=None, help="Only the dead letters of this thread.")
@number_option("--limit", default=100, minimum=0, help="Oldest dead letters to show; 0 for all.")
@server_options(durable=None, read_only=True)
def dead_letters_list(
    thread: str | None,
    limit: int,
    servers: Servers,
    as_json: bool,
) -> None:
    """The dead letters, oldest first: which entry (thread, namespace,
    checkpoint), why it is not durable, since when, and its size (its
    fields and large values). Read-only."""
    from langgraph_hybrid_saver.outbox.deadletters import list_dead_letters

    async def run() -> list[DeadLetter]:
        async with servers.open() as t:
            return await list_dead_letters(t.hot, thread=thread, limit=limit or None)

    letters = run_coro(run())
    if as_json:
        print_json({"count": len(letters), "dead_letters": [d.to_json() for d in letters]})
        return
    console = ui.make_console()
    of = f" of thread {thread!r}" if thread is not None else ""
    if not letters:
        ui.print_line(console, f"no dead letters{of} under key prefix {servers.key_prefix!r}")
        return
    more = " (--limit reached)" if limit and len(letters) >= limit else ""
    ui.print_line(
        console,
        (f"{len(letters)} dead letters{of}", "bold"),
        f" · prefix {servers.key_prefix!r} · oldest first{more}",
    )
    # Two lines a row, so that ids never shrink and the reason keeps its width.
    table = ui.new_table("dead letter", "entry", "age", "size", "reason")
    table.columns[0].no_wrap = True
    table.columns[1].overflow = table.columns[4].overflow = "fold"
    for d in letters:
        what = f"{d.kind} {d.checkpoint_id}" if d.checkpoint_id else d.kind
        where = f"thread {d.thread_id}" if d.thread_id is not None else "thread -"
        if d.checkpoint_ns:
            where += f" · ns {d.checkpoint_ns!r}"
        ui.add_row(
            table,
            f"{d.ref}\noutbox {d.outbox_id}",
            f"{what}\n{where}",
            ui.fmt_age(d.age_seconds),
            ui.fmt_size(d.size),
            d.reason,
        )
    console.print(table)
    ui.print_line(
        console,
        ("next: ", "dim"),
        f"{PROG} dead-letters show ID | retry ID... | drop ID... --yes (or --all); "
        "an ID is a dead letter as shown (SHARD:ID) or an outbox entry's id",
    )


@dead_letters.command(name="show", short_help="One dead letter, its entry decoded.")
@click.argument("dead_id", metavar="ID")
@server_options(durable=None, read_only=True)
def dead_letters_show(dead_id: str, servers: Servers, as_json: bool) -> None:
    """One dead letter (by its id or its outbox entry's id): why it is not
    durable, its fields, and the entry decoded as the reconciler would apply
    it (the checkpoint with its metadata and channel sizes, or the pending
    writes). Read-only."""
    from langgraph_hybrid_saver.outbox.deadletters import show

    async def run() -> DeadLetterDetail:
        async with servers.open() as t:
            return await show(t.hot, dead_id)

    detail = run_coro(run())
    if as_json:
        print_json(detail.to_json())
        return
    _render_dead_letter(ui.make_console(), detail)


def _render_dead_letter(console: Console, detail: DeadLetterDetail) -> None:
    d = detail.letter
    ui.print_line(console, (f"dead letter {d.ref}", "bold"), f" · outbox entry {d.outbox_id}")
    summary = ui.new_table("", "")
    summary.show_header = False
    ui.add_row(summary, "Thread", d.thread_id if d.thread_id is not None else "- (none)")
    ui.add_row(summary, "Kind", d.kind)
    ui.add_row(summary, "Namespace", repr(d.checkpoint_ns) if d.checkpoint_ns is not None else "-")
    ui.add_row(summary, "Checkpoint", d.checkpoint_id or "-")
    ui.add_row(summary, "Dead-lettered", f"{ui.fmt_age(d.age_seconds)} ago")
    ui.add_row(summary, "Size", ui.fmt_size(d.size))
    ui.add_row(summary, "Reason", d.reason)
    console.print(summary)
    fields = ui.new_table("field", "size", "value", title="Entry fields")
    for f in detail.fields:
        if f.large_key is not None:
            value: str | Text = f"in {f.large_key}"
            if f.missing:
                value = ui.styled(f"{value}: gone from Redis", "red")
        else:
            value = f.value if f.value is not None else ui.styled("(binary)", "dim")
        ui.add_row(fields, f.name, ui.fmt_size(f.size), value)
    console.print(fields)
    op = detail.operation
    if op is None:
        ui.print_line(console, ("cannot be decoded: ", "red"), detail.decode_error or "-")
    elif op["op"] == "checkpoint":
        md = op["metadata"] if isinstance(op["metadata"], dict) else {}
        ui.print_line(
            console,
            ("checkpoint ", "bold"),
            f"{op['checkpoint_id']} · parent {op['parent_checkpoint_id'] or '-'}"
            f" · step {md.get('step', '-')} · source {md.get('source', '-')}",
        )
        if op["blobs"]:
            blobs = ui.new_table("channel", "version", "type", "size", title="Channel values")
            for b in op["blobs"]:
                ui.add_row(blobs, b["channel"], b["version"], b["type"], ui.fmt_size(b["size"]))
            console.print(blobs)
    elif op["op"] == "writes":
        ui.print_line(
            console,
            ("pending writes ", "bold"),
            f"of checkpoint {op['checkpoint_id']}" + (" (upsert)" if op["upsert"] else ""),
        )
        writes = ui.new_table("task", "idx", "channel", "type", "size", title="Writes")
        for w in op["writes"]:
            ui.add_row(
                writes, w["task_id"], str(w["idx"]), w["channel"], w["type"], ui.fmt_size(w["size"])
            )
        console.print(writes)
    else:
        ui.print_line(console, ("delete ", "bold"), f"of thread {op['thread_id']!r}")


_OUTCOME_STYLE = {"retried": "green", "dropped": "yellow", "refused": "red", "gone": "dim"}


def _render_outcomes(outcomes: Sequence[Outcome], as_json: bool, none: str) -> None:
    """Print what retry/drop did; exit 1 when any dead letter was refused."""
    if as_json:
        print_json({"count": len(outcomes), "results": [o.to_json() for o in outcomes]})
    else:
        console = ui.make_console()
        if not outcomes:
            ui.print_line(console, none)
        else:
            table = ui.new_table("dead letter", "entry", "result")
            table.columns[0].no_wrap = True
            table.columns[1].overflow = table.columns[2].overflow = "fold"
            for o in outcomes:
                what = f"{o.kind} {o.checkpoint_id}" if o.checkpoint_id else o.kind
                where = f"thread {o.thread_id}" if o.thread_id is not None else "thread -"
                ui.add_row(
                    table,
                    f"{o.ref}\noutbox {o.outbox_id}",
                    f"{what}\n{where}",
                    ui.styled(o.message, _OUTCOME_STYLE.get(o.status, "")),
                )
            console.print(table)
    refused = [o for o in outcomes if o.status == "refused"]
    if refused:
        raise CliError(
            f"{len(refused)} of {len(outcomes)} dead letters were refused and left as "
            "they were (see why above)"
        )


@dead_letters.command(name="retry", short_help="Put dead letters back in the outbox.")
@_selection_options
@server_options(durable=None, read_only=True)
def dead_letters_retry(
    chosen: Sequence[str],
    thread: str | None,
    servers: Servers,
    as_json: bool,
) -> None:
    """Put dead letters back at the tail of their shard's outbox, each as a
    new entry with its original fields, atomically; a reconciler then applies
    them (fix what made the durable store refuse them first, or they come
    back here). A retried entry lands after later entries of its thread:
    puts and writes are idempotent upserts, so this is safe.

    Refused, changing nothing: an entry of a thread deleted since it was
    written (it would bring the deleted checkpoint back), a delete of a
    thread written since (it would erase the later checkpoints), an upsert
    Redis holds a newer value of (it would overwrite it), an entry that
    names no thread. Exit 1 when any is refused, 4 for an unknown id.
    """
    from langgraph_hybrid_saver.outbox.deadletters import retry

    async def run() -> list[Outcome]:
        async with servers.open() as t:
            return await retry(t.hot, chosen, thread=thread)

    _render_outcomes(run_coro(run()), as_json, "no dead letters to retry")


@dead_letters.command(name="drop", short_help="Delete dead letters for good (never durable).")
@_selection_options
@click.option("--yes", is_flag=True, help="Do not ask: their checkpoints will never be durable.")
@server_options(durable=None, read_only=True)
def dead_letters_drop(
    chosen: Sequence[str],
    thread: str | None,
    yes: bool,
    servers: Servers,
    as_json: bool,
) -> None:
    """Delete dead letters for good, with their large values, and uncount them
    from their threads' pending entries (a thread left with none gets its TTL
    back). What they held will NEVER be in the durable store: once the
    thread's hot copy expires, it is gone.

    Asks for confirmation on a terminal; elsewhere --yes is required.
    """
    from langgraph_hybrid_saver.outbox.deadletters import ALL, drop, find, list_dead_letters

    if not yes and not sys.stdin.isatty():
        raise CliError(
            "drop deletes dead letters for good (their checkpoints will never be "
            "durable): pass --yes to confirm",
            EXIT_CONFIG,
        )

    async def count() -> int:
        async with servers.open() as t:
            if chosen == ALL:
                return len(await list_dead_letters(t.hot, thread=thread))
            return len(await find(t.hot, chosen))

    if not yes:
        n = run_coro(count())
        if n == 0:
            _render_outcomes([], as_json, "no dead letters to drop")
            return
        which = "every dead letter" + (f" of thread {thread!r}" if thread else "")
        what = f"{which} ({n} now)" if chosen == ALL else f"{n} dead letters"
        click.confirm(
            f"Drop {what}? What they hold will never be in the durable store",
            abort=True,
            err=True,
        )

    async def run() -> list[Outcome]:
        async with servers.open() as t:
            return await drop(t.hot, chosen, thread=thread)

    _render_outcomes(run_coro(run()), as_json, "no dead letters to drop")
