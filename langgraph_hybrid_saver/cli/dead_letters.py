"""`dead-letters list|show|retry|drop`: outbox entries that are not durable.
What they read and change is `langgraph_hybrid_saver.outbox.deadletters`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from langgraph_hybrid_saver.cli.options import (
    EXIT_CONFIG,
    PROG,
    CliError,
    F,
    print_json,
    run_coro,
    server_options,
)
from langgraph_hybrid_saver.cli.render import (
    add_row,
    fmt_age,
    fmt_size,
    make_console,
    new_table,
    print_line,
    styled,
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


def _selection_options(f: F) -> F:
    f = click.option(
        "--thread", default=None, help="With --all: only the dead letters of this thread."
    )(f)
    f = click.option("--all", "every", is_flag=True, help="Every dead letter there now.")(f)
    return click.argument("ids", nargs=-1, metavar="[ID]...")(f)


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


@dead_letters.command(name="list", short_help="The dead letters, oldest first.")
@click.option("--thread", default=None, help="Only the dead letters of this thread.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Oldest dead letters to show; 0 for all.",
)
@server_options(durable=None, read_only=True)
def dead_letters_list(
    thread: str | None,
    limit: int,
    redis_url: str,
    key_prefix: str,
    shards: int | None,
    as_json: bool,
) -> None:
    """The dead letters, oldest first: which entry (thread, namespace,
    checkpoint), why it is not durable, since when, and its size (its
    fields and large values). Read-only."""
    from langgraph_hybrid_saver.ops import open_target
    from langgraph_hybrid_saver.outbox.deadletters import list_dead_letters

    async def run() -> list[DeadLetter]:
        async with open_target(redis_url, None, prefix=key_prefix, shards=shards) as t:
            return await list_dead_letters(t.hot, thread=thread, limit=limit or None)

    letters = run_coro(run())
    if as_json:
        print_json({"count": len(letters), "dead_letters": [d.to_json() for d in letters]})
        return
    console = make_console()
    of = f" of thread {thread!r}" if thread is not None else ""
    if not letters:
        print_line(console, f"no dead letters{of} under key prefix {key_prefix!r}")
        return
    more = " (--limit reached)" if limit and len(letters) >= limit else ""
    print_line(
        console,
        (f"{len(letters)} dead letters{of}", "bold"),
        f" · prefix {key_prefix!r} · oldest first{more}",
    )
    # Two lines a row, so that ids never shrink and the reason keeps its width.
    table = new_table("dead letter", "entry", "age", "size", "reason")
    table.columns[0].no_wrap = True
    table.columns[1].overflow = table.columns[4].overflow = "fold"
    for d in letters:
        what = f"{d.kind} {d.checkpoint_id}" if d.checkpoint_id else d.kind
        where = f"thread {d.thread_id}" if d.thread_id is not None else "thread -"
        if d.checkpoint_ns:
            where += f" · ns {d.checkpoint_ns!r}"
        add_row(
            table,
            f"{d.ref}\noutbox {d.outbox_id}",
            f"{what}\n{where}",
            fmt_age(d.age_seconds),
            fmt_size(d.size),
            d.reason,
        )
    console.print(table)
    print_line(
        console,
        ("next: ", "dim"),
        f"{PROG} dead-letters show ID | retry ID... | drop ID... --yes (or --all); "
        "an ID is a dead letter as shown (SHARD:ID) or an outbox entry's id",
    )


@dead_letters.command(name="show", short_help="One dead letter, its entry decoded.")
@click.argument("dead_id", metavar="ID")
@server_options(durable=None, read_only=True)
def dead_letters_show(
    dead_id: str, redis_url: str, key_prefix: str, shards: int | None, as_json: bool
) -> None:
    """One dead letter (by its id or its outbox entry's id): why it is not
    durable, its fields, and the entry decoded as the reconciler would apply
    it (the checkpoint with its metadata and channel sizes, or the pending
    writes). Read-only."""
    from langgraph_hybrid_saver.ops import open_target
    from langgraph_hybrid_saver.outbox.deadletters import show

    async def run() -> DeadLetterDetail:
        async with open_target(redis_url, None, prefix=key_prefix, shards=shards) as t:
            return await show(t.hot, dead_id)

    detail = run_coro(run())
    if as_json:
        print_json(detail.to_json())
        return
    _render_dead_letter(make_console(), detail)


def _render_dead_letter(console: Console, detail: DeadLetterDetail) -> None:
    d = detail.letter
    print_line(console, (f"dead letter {d.ref}", "bold"), f" · outbox entry {d.outbox_id}")
    summary = new_table("", "")
    summary.show_header = False
    add_row(summary, "Thread", d.thread_id if d.thread_id is not None else "- (none)")
    add_row(summary, "Kind", d.kind)
    add_row(summary, "Namespace", repr(d.checkpoint_ns) if d.checkpoint_ns is not None else "-")
    add_row(summary, "Checkpoint", d.checkpoint_id or "-")
    add_row(summary, "Dead-lettered", f"{fmt_age(d.age_seconds)} ago")
    add_row(summary, "Size", fmt_size(d.size))
    add_row(summary, "Reason", d.reason)
    console.print(summary)
    fields = new_table("field", "size", "value", title="Entry fields")
    for f in detail.fields:
        if f.large_key is not None:
            value: str | Text = f"in {f.large_key}"
            if f.missing:
                value = styled(f"{value}: gone from Redis", "red")
        else:
            value = f.value if f.value is not None else styled("(binary)", "dim")
        add_row(fields, f.name, fmt_size(f.size), value)
    console.print(fields)
    op = detail.operation
    if op is None:
        print_line(console, ("cannot be decoded: ", "red"), detail.decode_error or "-")
    elif op["op"] == "checkpoint":
        md = op["metadata"] if isinstance(op["metadata"], dict) else {}
        print_line(
            console,
            ("checkpoint ", "bold"),
            f"{op['checkpoint_id']} · parent {op['parent_checkpoint_id'] or '-'}"
            f" · step {md.get('step', '-')} · source {md.get('source', '-')}",
        )
        if op["blobs"]:
            blobs = new_table("channel", "version", "type", "size", title="Channel values")
            for b in op["blobs"]:
                add_row(blobs, b["channel"], b["version"], b["type"], fmt_size(b["size"]))
            console.print(blobs)
    elif op["op"] == "writes":
        print_line(
            console,
            ("pending writes ", "bold"),
            f"of checkpoint {op['checkpoint_id']}" + (" (upsert)" if op["upsert"] else ""),
        )
        writes = new_table("task", "idx", "channel", "type", "size", title="Writes")
        for w in op["writes"]:
            add_row(
                writes, w["task_id"], str(w["idx"]), w["channel"], w["type"], fmt_size(w["size"])
            )
        console.print(writes)
    else:
        print_line(console, ("delete ", "bold"), f"of thread {op['thread_id']!r}")


_OUTCOME_STYLE = {"retried": "green", "dropped": "yellow", "refused": "red", "gone": "dim"}


def _render_outcomes(outcomes: Sequence[Outcome], as_json: bool, none: str) -> None:
    """Print what retry/drop did; exit 1 when any dead letter was refused."""
    if as_json:
        print_json({"count": len(outcomes), "results": [o.to_json() for o in outcomes]})
    else:
        console = make_console()
        if not outcomes:
            print_line(console, none)
        else:
            table = new_table("dead letter", "entry", "result")
            table.columns[0].no_wrap = True
            table.columns[1].overflow = table.columns[2].overflow = "fold"
            for o in outcomes:
                what = f"{o.kind} {o.checkpoint_id}" if o.checkpoint_id else o.kind
                where = f"thread {o.thread_id}" if o.thread_id is not None else "thread -"
                add_row(
                    table,
                    f"{o.ref}\noutbox {o.outbox_id}",
                    f"{what}\n{where}",
                    styled(o.message, _OUTCOME_STYLE.get(o.status, "")),
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
    ids: tuple[str, ...],
    every: bool,
    thread: str | None,
    redis_url: str,
    key_prefix: str,
    shards: int | None,
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
    from langgraph_hybrid_saver.ops import open_target
    from langgraph_hybrid_saver.outbox.deadletters import retry

    selection = _selection(ids, every, thread)

    async def run() -> list[Outcome]:
        async with open_target(redis_url, None, prefix=key_prefix, shards=shards) as t:
            return await retry(t.hot, selection, thread=thread)

    _render_outcomes(run_coro(run()), as_json, "no dead letters to retry")


@dead_letters.command(name="drop", short_help="Delete dead letters for good (never durable).")
@_selection_options
@click.option("--yes", is_flag=True, help="Do not ask: their checkpoints will never be durable.")
@server_options(durable=None, read_only=True)
def dead_letters_drop(
    ids: tuple[str, ...],
    every: bool,
    thread: str | None,
    yes: bool,
    redis_url: str,
    key_prefix: str,
    shards: int | None,
    as_json: bool,
) -> None:
    """Delete dead letters for good, with their large values, and uncount them
    from their threads' pending entries (a thread left with none gets its TTL
    back). What they held will NEVER be in the durable store: once the
    thread's hot copy expires, it is gone.

    Asks for confirmation on a terminal; elsewhere --yes is required.
    """
    from langgraph_hybrid_saver.ops import open_target
    from langgraph_hybrid_saver.outbox.deadletters import ALL, drop, find, list_dead_letters

    selection = _selection(ids, every, thread)
    if not yes and not sys.stdin.isatty():
        raise CliError(
            "drop deletes dead letters for good (their checkpoints will never be "
            "durable): pass --yes to confirm",
            EXIT_CONFIG,
        )

    async def count() -> int:
        async with open_target(redis_url, None, prefix=key_prefix, shards=shards) as t:
            if selection == ALL:
                return len(await list_dead_letters(t.hot, thread=thread))
            return len(await find(t.hot, selection))

    if not yes:
        n = run_coro(count())
        if n == 0:
            _render_outcomes([], as_json, "no dead letters to drop")
            return
        which = "every dead letter" + (f" of thread {thread!r}" if thread else "")
        what = f"{which} ({n} now)" if selection == ALL else f"{n} dead letters"
        click.confirm(
            f"Drop {what}? What they hold will never be in the durable store",
            abort=True,
            err=True,
        )

    async def run() -> list[Outcome]:
        async with open_target(redis_url, None, prefix=key_prefix, shards=shards) as t:
            return await drop(t.hot, selection, thread=thread)

    _render_outcomes(run_coro(run()), as_json, "no dead letters to drop")
