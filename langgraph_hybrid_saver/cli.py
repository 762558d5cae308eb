"""Command line for operators: `langgraph-hybrid-saver COMMAND` or
`python -m langgraph_hybrid_saver COMMAND`.

This module parses options and renders; what it shows comes from
`langgraph_hybrid_saver.ops` (servers, outbox, workers) and
`langgraph_hybrid_saver.history` (a thread's audit trail and size). The
reconcile worker needs only click; tables need rich (the `[cli]` extra), and
`--json` output needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect as pyinspect
import json
import logging
import runpy
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from langgraph_hybrid_saver.errors import (
    ConfigError,
    HybridSaverError,
    MissingExtraError,
    NotFoundError,
    ServerUnreachableError,
)
from langgraph_hybrid_saver.hot import DEFAULT_PREFIX, DEFAULT_SHARDS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from langgraph_hybrid_saver.history import CheckpointDiff, SizeReport, ThreadHistory
    from langgraph_hybrid_saver.ops import ServerFacts, Status
    from langgraph_hybrid_saver.outbox.deadletters import DeadLetter, DeadLetterDetail, Outcome

PROG = "langgraph-hybrid-saver"
ENV_REDIS = "HYBRID_SAVER_REDIS_URL"
ENV_DURABLE = "HYBRID_SAVER_DURABLE_URL"
ENV_PREFIX = "HYBRID_SAVER_KEY_PREFIX"

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # also click's usage errors
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4

# Launchers for modules that live in the source repository, not the wheel.
DEMO_MODULE = "examples.support_workflow"
BENCH_MODULE = "benchmarks.run"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar, but reads it from the instance.
        self.exit_code = exit_code  # type: ignore[misc]


def _exit_code(e: HybridSaverError) -> int:
    if isinstance(e, ServerUnreachableError):
        return EXIT_UNREACHABLE
    if isinstance(e, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(e, (ConfigError, MissingExtraError)):
        return EXIT_CONFIG
    return EXIT_FAILURE


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _Group(click.Group):
    """Turns every error into one line and an exit code (`--debug`: traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except HybridSaverError as e:
            if ctx.params.get("debug"):
                raise
            raise CliError(_one_line(e), _exit_code(e)) from e
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            hint = "run with --debug for the traceback"
            if type(e).__name__ == "UndefinedTable":  # psycopg: no schema yet
                hint = "is the schema set up? run `langgraph-hybrid-saver setup`"
            raise CliError(f"{type(e).__name__}: {_one_line(e)} ({hint})") from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=PROG, prog_name=PROG)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Operate a langgraph-hybrid-saver deployment: Redis hot tier, outbox,
    reconcilers and the durable store.

    Connection options can come from the environment: HYBRID_SAVER_REDIS_URL,
    HYBRID_SAVER_DURABLE_URL, HYBRID_SAVER_KEY_PREFIX.

    Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 a server is
    unreachable, 4 thread or checkpoint not found.
    """


# --- shared options and helpers -------------------------------------------------


def _redis_option(f: F) -> F:
    return click.option(
        "--redis",
        "redis_url",
        required=True,
        envvar=ENV_REDIS,
        show_envvar=True,
        metavar="URL",
        help="Redis URL, e.g. redis://127.0.0.1:6379/0.",
    )(f)


def _durable_option(required: bool) -> Callable[[F], F]:
    extra = "" if required else " Optional: without it only Redis is read."
    return click.option(
        "--durable",
        "durable_url",
        required=required,
        envvar=ENV_DURABLE,
        show_envvar=True,
        metavar="URL",
        help=f"Durable store URL: postgresql://user@host:5432/db or sqlite:///file.db.{extra}",
    )


def _prefix_option(f: F) -> F:
    return click.option(
        "--key-prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        envvar=ENV_PREFIX,
        show_envvar=True,
        help="Redis key prefix the savers use.",
    )(f)


def _shards_option(read_only: bool) -> Callable[[F], F]:
    if read_only:
        return click.option(
            "--shards",
            type=click.IntRange(1, 16384),
            default=None,
            help="Outbox shards; default: what the savers recorded in Redis.",
        )
    return click.option(
        "--shards",
        type=click.IntRange(1, 16384),
        default=DEFAULT_SHARDS,
        show_default=True,
        help="Outbox shards; the same in every process sharing the prefix.",
    )


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, ensure_ascii=False))


def _console() -> Console:
    try:
        from rich.console import Console
    except ImportError as e:
        raise MissingExtraError(
            "tables need rich: pip install 'langgraph-hybrid-saver[cli]' (or use --json)"
        ) from e
    # Piped output gets a wide console: checkpoint ids must not wrap.
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=160, soft_wrap=False)


@contextlib.contextmanager
def _spinner(message: str) -> Iterator[None]:
    """A progress spinner on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    try:
        from rich.console import Console
    except ImportError:
        yield
        return
    with Console(stderr=True).status(message):
        yield


def _table(*columns: str, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for c in columns:
        table.add_column(c)
    return table


def _styled(text: str, style: str) -> Text:
    from rich.text import Text

    return Text(text, style=style)


def _row(table: Table, *cells: str | Text) -> None:
    """Add a row; plain strings are data, never rich markup."""
    from rich.text import Text

    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _line(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line of data (no markup); (text, style) pairs are styled."""
    from rich.text import Text

    console.print(Text.assemble(*parts), soft_wrap=True)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _signed_size(n: int) -> str:
    return ("+" if n > 0 else "") + _size(n) if n else "0"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _ts(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        moment = datetime.fromisoformat(ts).astimezone(timezone.utc)
    except ValueError:
        return ts
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _warn(console: Console, warnings: Sequence[str]) -> None:
    for w in warnings:
        _line(console, ("warning: ", "yellow"), w)


# --- setup ----------------------------------------------------------------------


@cli.command(short_help="Create or migrate the schema; check servers; print versions.")
@_redis_option
@_durable_option(required=True)
@_prefix_option
@_shards_option(read_only=False)
@_json_option
def setup(redis_url: str, durable_url: str, key_prefix: str, shards: int, as_json: bool) -> None:
    """Create or migrate the durable schema, check both servers, print versions.

    Idempotent: safe to run on every deploy. Also records the shard count of
    the key prefix in Redis (every process sharing it must use the same).
    """
    from langgraph_hybrid_saver.ops import open_target, server_facts

    async def run() -> ServerFacts:
        async with open_target(redis_url, durable_url, prefix=key_prefix, shards=shards) as t:
            await t.hot.check_layout()
            assert t.backend is not None
            await t.backend.setup()
            return await server_facts(t)

    facts = _run(run())
    if as_json:
        _print_json(facts.to_json())
        return
    console = _console()
    table = _table("", "", "")
    table.show_header = False
    _row(table, "Redis", str(facts.redis_url), f"{facts.redis_server} ({facts.redis_mode}) ok")
    _row(table, "Durable", str(facts.durable_url), f"{facts.durable_server}, schema up to date")
    _row(table, "Key prefix", repr(facts.key_prefix), f"{facts.shards} shards")
    _row(table, "Package", PROG, facts.package_version)
    console.print(table)
    _warn(console, facts.warnings)


# --- status ---------------------------------------------------------------------


@cli.command(short_help="Backlog, lag, reconcilers, hot threads, memory, row counts.")
@_redis_option
@_durable_option(required=False)
@_prefix_option
@_shards_option(read_only=True)
@_json_option
@click.option("--watch", is_flag=True, help="Refresh until interrupted (Ctrl-C).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after this many refreshes.",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Entry ids read per shard for the lag percentiles (beyond: estimated).",
)
@click.option(
    "--no-scan",
    is_flag=True,
    help="Skip counting hot threads (a SCAN over the key prefix).",
)
def status(
    redis_url: str,
    durable_url: str | None,
    key_prefix: str,
    shards: int | None,
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
    from langgraph_hybrid_saver.ops import collect_status, open_target

    console = None if as_json else _console()

    def show(snapshot: Status) -> None:
        if as_json:
            _print_json(snapshot.to_json())
        else:
            assert console is not None
            _render_status(console, snapshot)

    async def run() -> None:
        async with open_target(
            redis_url, durable_url, prefix=key_prefix, shards=shards, durable_optional=True
        ) as t:
            if not watch:
                with _spinner("reading status…"):
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

    _run(run())


def _render_status(console: Console, s: Status) -> None:
    when = datetime.fromtimestamp(s.taken_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    note = "" if s.layout_recorded else " (no saver has used this prefix yet)"
    _line(
        console,
        (f"{PROG} status", "bold"),
        f" · prefix {s.key_prefix!r} · {s.shards} shards{note} · {when}",
    )
    summary = _table("", "")
    summary.show_header = False
    lag = f"p50 {_age(s.lag_p50_s)}, max {_age(s.lag_max_s)}"
    if s.lag_estimated:
        lag += " (p50 estimated)"
    held = _size(s.outbox_memory)
    if s.outbox_large_values:
        held += f" + {_size(s.outbox_large_values)} of large values"
    # An empty stream still takes memory: its size says nothing then.
    _row(summary, "Outbox backlog", f"{s.backlog} entries ({held})" if s.backlog else "empty")
    _row(summary, "Reconcile lag", lag if s.backlog else "none (outbox empty)")
    if s.dead_letters:
        _row(
            summary,
            "Dead letters",
            f"{s.dead_letters} entries not durable (refused or undecodable): "
            f"{PROG} dead-letters list",
        )
    alive = [w for w in s.workers if w.alive]
    _row(summary, "Reconcilers", f"{len(alive)} alive")
    _row(
        summary,
        "Hot threads",
        "not counted (--no-scan)" if s.hot_threads is None else str(s.hot_threads),
    )
    limit = _size(s.redis_maxmemory) if s.redis_maxmemory else "no limit"
    _row(
        summary,
        "Redis memory",
        f"{_size(s.redis_used_memory)} used, maxmemory {limit}, {s.redis_eviction_policy}",
    )
    if s.durable_rows is None:
        _row(summary, "Durable rows", "not read (no --durable)")
    else:
        _row(summary, "Durable rows", ", ".join(f"{k} {v}" for k, v in s.durable_rows.items()))
    console.print(summary)
    if s.workers:
        table = _table("reconciler", "state", "heartbeat", "shards", title="Reconcilers")
        for w in s.workers:
            state = _styled("alive", "green") if w.alive else _styled("gone", "red")
            beat = f"expires in {_age(w.expires_in_s)}" if w.alive else "expired"
            _row(table, w.owner, state, beat, _ranges(w.shards) or "-")
        console.print(table)
    busy = [p for p in s.per_shard if p.backlog]
    if busy:
        table = _table("shard", "backlog", "oldest", "owner", title="Shards with a backlog")
        for p in busy:
            _row(table, str(p.shard), str(p.backlog), _age(p.oldest_age_s), p.owner or "-")
        console.print(table)
    _warn(console, s.warnings)


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


# --- inspect --------------------------------------------------------------------


@cli.command(name="inspect", short_help="A thread's audit trail: who changed what, when; --diff.")
@click.argument("thread")
@click.option("--ns", default="", show_default=True, help="Checkpoint namespace (subgraphs).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Newest checkpoints to show; 0 for all.",
)
@click.option(
    "--diff",
    nargs=2,
    metavar="A B",
    default=None,
    help="What changed from checkpoint A to B (ids or unique parts of ids).",
)
@_redis_option
@_durable_option(required=False)
@_prefix_option
@_shards_option(read_only=True)
@_json_option
def inspect_cmd(
    thread: str,
    ns: str,
    limit: int,
    diff: tuple[str, str] | None,
    redis_url: str,
    durable_url: str | None,
    key_prefix: str,
    shards: int | None,
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
    from langgraph_hybrid_saver.ops import open_target

    async def run() -> ThreadHistory | CheckpointDiff:
        async with open_target(redis_url, durable_url, prefix=key_prefix, shards=shards) as t:
            with _spinner(f"reading thread {thread}…"):
                if diff is not None:
                    return await diff_checkpoints(t, thread, ns, diff[0], diff[1])
                return await thread_history(t, thread, ns, limit=limit or None)

    result = _run(run())
    if as_json:
        _print_json(result.to_json())
        return
    console = _console()
    if isinstance(result, ThreadHistory):
        _render_history(console, result)
    else:
        _render_diff(console, result)
    if durable_url is None:
        _line(console, ("durable store not read (no --durable): tiers show Redis only", "dim"))


def _task_cells(tasks: Sequence[Any]) -> tuple[str, str]:
    nodes, writes = [], []
    for task in tasks:
        nodes.append(task.node)
        writes.append(", ".join(_write_cell(w) for w in task.writes))
    return "\n".join(nodes) or "-", "\n".join(writes) or "-"


def _write_cell(w: Any) -> str:
    times = f" x{w.count}" if w.count > 1 else ""
    return f"{w.channel}{times} {_size(w.size)}"


def _render_history(console: Console, h: ThreadHistory) -> None:
    hot_ns = ", ".join(repr(n) for n in h.namespaces) or "none"
    _line(
        console,
        (f"thread {h.thread_id}", "bold"),
        f" · namespace {h.checkpoint_ns!r} · {len(h.checkpoints)} checkpoints, newest first"
        f" · namespaces in Redis: {hot_ns}",
    )
    table = _table("checkpoint", "step", "source", "time (UTC)", "tier", "node", "wrote")
    table.columns[0].no_wrap = True
    parents = {c.parent_checkpoint_id for c in h.checkpoints}
    for c in h.checkpoints:
        if c.pending and c.checkpoint_id not in parents:
            node, wrote = _task_cells(c.pending)
            _row(table, _styled("(pending)", "dim"), "", "next", "", "", node, wrote)
        node, wrote = _task_cells(c.changes)
        tier = c.tier if c.hot_complete or c.tier == "durable" else f"{c.tier} (partial in Redis)"
        _row(
            table,
            c.checkpoint_id,
            "-" if c.step is None else str(c.step),
            c.source or "-",
            _ts(c.ts),
            tier,
            node,
            wrote,
        )
    console.print(table)


def _render_diff(console: Console, d: CheckpointDiff) -> None:
    _line(console, (f"thread {d.thread_id}", "bold"), f" · namespace {d.checkpoint_ns!r}")
    _line(console, f"diff {d.a} -> {d.b}")
    if not d.changes:
        console.print("no channel changed")
    else:
        table = _table("channel", "change", "detail", "size", "before", "after")
        for c in d.changes:
            _row(
                table,
                c.channel,
                c.change,
                c.detail,
                f"{_size(c.size_a)} -> {_size(c.size_b)}",
                c.before or "-",
                c.after or "-",
            )
        console.print(table)
    if d.unchanged:
        _line(console, (f"unchanged: {', '.join(d.unchanged)}", "dim"))


# --- size -----------------------------------------------------------------------


@cli.command(short_help="A thread's largest channels and growth per step.")
@click.argument("thread")
@click.option("--ns", default="", show_default=True, help="Checkpoint namespace (subgraphs).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Newest checkpoints to read for the growth table; 0 for all.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Largest channels to list.",
)
@_redis_option
@_durable_option(required=False)
@_prefix_option
@_shards_option(read_only=True)
@_json_option
def size(
    thread: str,
    ns: str,
    limit: int,
    top: int,
    redis_url: str,
    durable_url: str | None,
    key_prefix: str,
    shards: int | None,
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
    from langgraph_hybrid_saver.ops import open_target

    async def run() -> SizeReport:
        async with open_target(redis_url, durable_url, prefix=key_prefix, shards=shards) as t:
            with _spinner(f"reading thread {thread}…"):
                return await size_report(t, thread, ns, limit=limit or None)

    report = _run(run())
    if as_json:
        data = report.to_json()
        data["channels"] = data["channels"][:top]
        _print_json(data)
        return
    console = _console()
    _line(
        console,
        (f"thread {report.thread_id}", "bold"),
        f" · namespace {report.checkpoint_ns!r} · newest checkpoint {report.checkpoint_id}"
        f" · state {_size(report.total)}",
    )
    table = _table(
        "channel", "size", "share", "items", "versions", "stored", title="Largest channels"
    )
    for c in report.channels[:top]:
        _row(
            table,
            c.channel,
            _size(c.size),
            f"{c.share:.0%}",
            "-" if c.items is None else str(c.items),
            str(c.versions),
            _size(c.stored),
        )
    console.print(table)
    steps = _table(
        "step", "checkpoint", "source", "state", "growth", "grew most", title="Growth per step"
    )
    steps.columns[1].no_wrap = True
    for s in report.steps:
        grew = f"{s.top_channel} {_signed_size(s.top_delta)}" if s.top_channel else "-"
        _row(
            steps,
            "-" if s.step is None else str(s.step),
            s.checkpoint_id,
            s.source or "-",
            _size(s.size),
            _signed_size(s.delta),
            grew,
        )
    console.print(steps)
    for hint in report.hints:
        _line(console, ("hint: ", "yellow"), hint)


# --- dead letters ---------------------------------------------------------------


@cli.group(
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


def _dead_letter_options(f: F) -> F:
    for option in (_json_option, _shards_option(read_only=True), _prefix_option, _redis_option):
        f = option(f)
    return f


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
@_dead_letter_options
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

    letters = _run(run())
    if as_json:
        _print_json({"count": len(letters), "dead_letters": [d.to_json() for d in letters]})
        return
    console = _console()
    of = f" of thread {thread!r}" if thread is not None else ""
    if not letters:
        _line(console, f"no dead letters{of} under key prefix {key_prefix!r}")
        return
    more = " (--limit reached)" if limit and len(letters) >= limit else ""
    _line(
        console,
        (f"{len(letters)} dead letters{of}", "bold"),
        f" · prefix {key_prefix!r} · oldest first{more}",
    )
    # Two lines a row, so that ids never shrink and the reason keeps its width.
    table = _table("dead letter", "entry", "age", "size", "reason")
    table.columns[0].no_wrap = True
    table.columns[1].overflow = table.columns[4].overflow = "fold"
    for d in letters:
        what = f"{d.kind} {d.checkpoint_id}" if d.checkpoint_id else d.kind
        where = f"thread {d.thread_id}" if d.thread_id is not None else "thread -"
        if d.checkpoint_ns:
            where += f" · ns {d.checkpoint_ns!r}"
        _row(
            table,
            f"{d.ref}\noutbox {d.outbox_id}",
            f"{what}\n{where}",
            _age(d.age_seconds),
            _size(d.size),
            d.reason,
        )
    console.print(table)
    _line(
        console,
        ("next: ", "dim"),
        f"{PROG} dead-letters show ID | retry ID... | drop ID... --yes (or --all); "
        "an ID is a dead letter as shown (SHARD:ID) or an outbox entry's id",
    )


@dead_letters.command(name="show", short_help="One dead letter, its entry decoded.")
@click.argument("dead_id", metavar="ID")
@_dead_letter_options
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

    detail = _run(run())
    if as_json:
        _print_json(detail.to_json())
        return
    _render_dead_letter(_console(), detail)


def _render_dead_letter(console: Console, detail: DeadLetterDetail) -> None:
    d = detail.letter
    _line(console, (f"dead letter {d.ref}", "bold"), f" · outbox entry {d.outbox_id}")
    summary = _table("", "")
    summary.show_header = False
    _row(summary, "Thread", d.thread_id if d.thread_id is not None else "- (none)")
    _row(summary, "Kind", d.kind)
    _row(summary, "Namespace", repr(d.checkpoint_ns) if d.checkpoint_ns is not None else "-")
    _row(summary, "Checkpoint", d.checkpoint_id or "-")
    _row(summary, "Dead-lettered", f"{_age(d.age_seconds)} ago")
    _row(summary, "Size", _size(d.size))
    _row(summary, "Reason", d.reason)
    console.print(summary)
    fields = _table("field", "size", "value", title="Entry fields")
    for f in detail.fields:
        if f.large_key is not None:
            value: str | Text = f"in {f.large_key}"
            if f.missing:
                value = _styled(f"{value}: gone from Redis", "red")
        else:
            value = f.value if f.value is not None else _styled("(binary)", "dim")
        _row(fields, f.name, _size(f.size), value)
    console.print(fields)
    op = detail.operation
    if op is None:
        _line(console, ("cannot be decoded: ", "red"), detail.decode_error or "-")
    elif op["op"] == "checkpoint":
        md = op["metadata"] if isinstance(op["metadata"], dict) else {}
        _line(
            console,
            ("checkpoint ", "bold"),
            f"{op['checkpoint_id']} · parent {op['parent_checkpoint_id'] or '-'}"
            f" · step {md.get('step', '-')} · source {md.get('source', '-')}",
        )
        if op["blobs"]:
            blobs = _table("channel", "version", "type", "size", title="Channel values")
            for b in op["blobs"]:
                _row(blobs, b["channel"], b["version"], b["type"], _size(b["size"]))
            console.print(blobs)
    elif op["op"] == "writes":
        _line(
            console,
            ("pending writes ", "bold"),
            f"of checkpoint {op['checkpoint_id']}" + (" (upsert)" if op["upsert"] else ""),
        )
        writes = _table("task", "idx", "channel", "type", "size", title="Writes")
        for w in op["writes"]:
            _row(writes, w["task_id"], str(w["idx"]), w["channel"], w["type"], _size(w["size"]))
        console.print(writes)
    else:
        _line(console, ("delete ", "bold"), f"of thread {op['thread_id']!r}")


_OUTCOME_STYLE = {"retried": "green", "dropped": "yellow", "refused": "red", "gone": "dim"}


def _render_outcomes(outcomes: Sequence[Outcome], as_json: bool, none: str) -> None:
    """Print what retry/drop did; exit 1 when any dead letter was refused."""
    if as_json:
        _print_json({"count": len(outcomes), "results": [o.to_json() for o in outcomes]})
    else:
        console = _console()
        if not outcomes:
            _line(console, none)
        else:
            table = _table("dead letter", "entry", "result")
            table.columns[0].no_wrap = True
            table.columns[1].overflow = table.columns[2].overflow = "fold"
            for o in outcomes:
                what = f"{o.kind} {o.checkpoint_id}" if o.checkpoint_id else o.kind
                where = f"thread {o.thread_id}" if o.thread_id is not None else "thread -"
                _row(
                    table,
                    f"{o.ref}\noutbox {o.outbox_id}",
                    f"{what}\n{where}",
                    _styled(o.message, _OUTCOME_STYLE.get(o.status, "")),
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
@_dead_letter_options
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

    _render_outcomes(_run(run()), as_json, "no dead letters to retry")


@dead_letters.command(name="drop", short_help="Delete dead letters for good (never durable).")
@_selection_options
@click.option("--yes", is_flag=True, help="Do not ask: their checkpoints will never be durable.")
@_dead_letter_options
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
        n = _run(count())
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

    _render_outcomes(_run(run()), as_json, "no dead letters to drop")


# --- reconcile ------------------------------------------------------------------


@cli.command(short_help="Run a reconciler worker (drains the outbox; SIGTERM-safe).")
@_redis_option
@_durable_option(required=True)
@_prefix_option
@_shards_option(read_only=False)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Outbox entries applied per transaction.",
)
@click.option(
    "--linger-ms",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="After a partial batch, wait this long for more entries (fewer, larger commits).",
)
@click.option("--setup", "run_setup", is_flag=True, help="Create or migrate the schema first.")
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to keep draining after SIGTERM before giving the shards up.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level of the worker (logs go to stderr).",
)
def reconcile(
    redis_url: str,
    durable_url: str,
    key_prefix: str,
    shards: int,
    batch_size: int,
    linger_ms: int,
    run_setup: bool,
    drain_timeout: float,
    log_level: str,
) -> None:
    """Run a reconciler worker: drain the Redis outbox into the durable store.

    Several workers may run at once; they split the shards between them and
    take over the shards of a worker that died (when its lease expires). On
    SIGTERM or SIGINT the worker applies what its shards hold (up to
    --drain-timeout), releases its leases and exits 0, so another worker takes
    over at once.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    _run(
        _reconcile(
            redis_url,
            durable_url,
            key_prefix,
            shards,
            batch_size,
            linger_ms,
            run_setup,
            drain_timeout,
        )
    )


async def _reconcile(
    redis_url: str,
    durable_url: str,
    key_prefix: str,
    shards: int,
    batch_size: int,
    linger_ms: int,
    run_setup: bool,
    drain_timeout: float,
) -> None:
    from langgraph_hybrid_saver.ops import open_target
    from langgraph_hybrid_saver.outbox.reconciler import Reconciler

    async with open_target(redis_url, durable_url, prefix=key_prefix, shards=shards) as t:
        assert t.backend is not None
        await t.hot.check_layout()
        if run_setup:
            await t.backend.setup()
        worker = Reconciler(t.hot, t.backend, batch_size=batch_size, linger_ms=linger_ms)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"reconciler {worker.owner} started", nl=True)
        sys.stdout.flush()
        await worker.run(stop, drain_timeout=drain_timeout)
        click.echo(
            f"reconciler {worker.owner} stopped: {worker.stats.applied} applied, "
            f"{worker.stats.errors} errors, leases released"
        )
        sys.stdout.flush()


# --- launchers ------------------------------------------------------------------

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@cli.command(context_settings=_PASS_THROUGH, short_help="Run the support-workflow example.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the support-workflow example (examples/support_workflow in the
    source repository). Arguments after `--` go to the example."""
    code = _launch(DEMO_MODULE, "the demo", list(args), extra="example", command="demo")
    if code:
        raise click.exceptions.Exit(code)


@cli.command(context_settings=_PASS_THROUGH, short_help="Run the benchmark suite.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmark suite (benchmarks/ in the source repository).
    Arguments after `--` go to `benchmarks.run`."""
    code = _launch(BENCH_MODULE, "the benchmark suite", list(args), extra="bench", command="bench")
    if code:
        raise click.exceptions.Exit(code)


def _import_launched(name: str) -> ModuleType:
    """Import `name`; in a source checkout also when run as a console script
    (whose sys.path lacks the repository root)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        top = name.split(".")[0]
        root = Path(__file__).resolve().parents[1]
        if e.name not in (top, name) or not (root / top).is_dir() or str(root) in sys.path:
            raise
        sys.path.insert(0, str(root))
        return importlib.import_module(name)


def _repository_url() -> str | None:
    """The source repository named in the installed package's metadata
    (a `Project-URL` labelled Repository, Source or Homepage), if any."""
    import importlib.metadata

    try:
        entries = importlib.metadata.metadata("langgraph-hybrid-saver").get_all("Project-URL")
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = dict(
        (label.strip().lower(), url.strip())
        for label, _, url in (entry.partition(",") for entry in entries or [])
    )
    return next((urls[k] for k in ("repository", "source", "homepage") if k in urls), None)


def _launch(name: str, what: str, argv: list[str], *, extra: str, command: str) -> int:
    parts = name.split(".")
    install = f'pip install -e ".[{extra}]"'
    try:
        module = _import_launched(name)
    except ModuleNotFoundError as e:
        if e.name in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            repo = _repository_url() or "<the langgraph-hybrid-saver git repository>"
            raise CliError(
                f"{what} is not available: module {name} is not importable (it ships with "
                "the source repository, not the installed package); get a checkout and run "
                f"it there: git clone {repo} langgraph-hybrid-saver && cd "
                f"langgraph-hybrid-saver && {install} && {PROG} {command}",
                EXIT_CONFIG,
            ) from e
        raise CliError(
            f"{what} needs the module {e.name!r}, which is not installed: in the source "
            f"checkout run {install}",
            EXIT_CONFIG,
        ) from e
    entry = getattr(module, "main", None)
    saved = sys.argv
    sys.argv = [name, *argv]
    try:
        if callable(entry):
            result = entry(argv) if pyinspect.signature(entry).parameters else entry()
            if pyinspect.isawaitable(result):
                result = asyncio.run(_await(result))
        else:  # a package run as `python -m`: its __main__
            try:
                runpy.run_module(name, run_name="__main__", alter_sys=False)
            except ImportError as e:
                raise CliError(
                    f"{what}: module {name} has no main() and no __main__ to run", EXIT_CONFIG
                ) from e
            result = 0
    except SystemExit as e:  # argparse's --help and errors, sys.exit(...)
        if isinstance(e.code, str):
            click.echo(e.code, err=True)
        result = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILURE)
    finally:
        sys.argv = saved
    return result if isinstance(result, int) else 0


async def _await(value: Awaitable[T]) -> T:
    return await value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m langgraph_hybrid_saver`."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name=PROG)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILURE)
    return 0
