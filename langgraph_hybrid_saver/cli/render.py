"""Rendering for people: rich tables and lines (the `[cli]` extra), sizes,
ages and times. `--json` output does not come through here."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from langgraph_hybrid_saver.errors import MissingExtraError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text


def make_console() -> Console:
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
def spinner(message: str) -> Iterator[None]:
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


def new_table(*columns: str, title: str | None = None) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for c in columns:
        table.add_column(c)
    return table


def styled(text: str, style: str) -> Text:
    from rich.text import Text

    return Text(text, style=style)


def add_row(table: Table, *cells: str | Text) -> None:
    """Add a row; plain strings are data, never rich markup."""
    from rich.text import Text

    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def print_line(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line of data (no markup); (text, style) pairs are styled."""
    from rich.text import Text

    console.print(Text.assemble(*parts), soft_wrap=True)


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_signed_size(n: int) -> str:
    return ("+" if n > 0 else "") + fmt_size(n) if n else "0"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def fmt_ts(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        moment = datetime.fromisoformat(ts).astimezone(timezone.utc)
    except ValueError:
        return ts
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def print_warnings(console: Console, warnings: Sequence[str]) -> None:
    for w in warnings:
        print_line(console, ("warning: ", "yellow"), w)
