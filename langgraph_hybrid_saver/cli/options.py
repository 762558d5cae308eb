"""What every command shares: the program's name, its exit codes, the one-line
error, and the option groups (servers, a thread) declared once."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from langgraph_hybrid_saver.hot import DEFAULT_PREFIX, DEFAULT_SHARDS

if TYPE_CHECKING:
    from langgraph_hybrid_saver.ops import Target

PROG = "langgraph-hybrid-saver"
ENV_REDIS = "HYBRID_SAVER_REDIS_URL"
ENV_DURABLE = "HYBRID_SAVER_DURABLE_URL"
ENV_PREFIX = "HYBRID_SAVER_KEY_PREFIX"

EXIT_FAILURE = 1
EXIT_CONFIG = 2  # also click's usage errors
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        # click types exit_code as a ClassVar, but reads it from the instance.
        self.exit_code = exit_code  # type: ignore[misc]


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """The decorators applied as if written one above the other in this order
    (click lists options in that order in --help)."""

    def apply(f: F) -> F:
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return apply


def redis_option(f: F) -> F:
    return click.option(
        "--redis",
        "redis_url",
        required=True,
        envvar=ENV_REDIS,
        show_envvar=True,
        metavar="URL",
        help="Redis URL, e.g. redis://127.0.0.1:6379/0 (behind Sentinel: "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]).",
    )(f)


def durable_option(required: bool) -> Callable[[F], F]:
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


def prefix_option(f: F) -> F:
    return click.option(
        "--key-prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        envvar=ENV_PREFIX,
        show_envvar=True,
        help="Redis key prefix the savers use.",
    )(f)


def shards_option(read_only: bool) -> Callable[[F], F]:
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


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


@dataclass(frozen=True, slots=True)
class Servers:
    """Where a command looks: its --redis, --durable, --key-prefix and --shards."""

    redis_url: str
    durable_url: str | None
    key_prefix: str
    shards: int | None

    def open(self, *, durable_optional: bool = False) -> AbstractAsyncContextManager[Target]:
        from langgraph_hybrid_saver.ops import open_target

        return open_target(
            self.redis_url,
            self.durable_url,
            prefix=self.key_prefix,
            shards=self.shards,
            durable_optional=durable_optional,
        )


def _servers_argument(f: F) -> F:
    """Pass the server options to `f` as one `servers` argument."""

    @functools.wraps(f)
    def command(
        *args: Any,
        redis_url: str,
        key_prefix: str,
        shards: int | None,
        durable_url: str | None = None,
        **kwargs: Any,
    ) -> Any:
        return f(*args, servers=Servers(redis_url, durable_url, key_prefix, shards), **kwargs)

    return cast(F, command)


def server_options(
    *, durable: bool | None, read_only: bool, as_json: bool = True
) -> Callable[[F], F]:
    """--redis, --durable (required: True, optional: False, absent: None),
    --key-prefix, --shards (read-only commands default to the recorded count),
    passed to the command as `servers: Servers`; and --json (`as_json`)."""
    options: list[Callable[[F], F]] = [redis_option]
    if durable is not None:
        options.append(durable_option(required=durable))
    options += [prefix_option, shards_option(read_only=read_only)]
    if as_json:
        options.append(json_option)
    return stack(*options, _servers_argument)


def number_option(
    name: str, *, default: float | None, minimum: float, help: str, integer: bool = True
) -> Callable[[F], F]:
    """An integer (or, `integer=False`, a float) option of at least `minimum`."""
    kind = click.IntRange(min=int(minimum)) if integer else click.FloatRange(min=minimum)
    return click.option(
        name, type=kind, default=default, show_default=default is not None, help=help
    )


def thread_options(*, limit: int, limit_help: str) -> Callable[[F], F]:
    """THREAD, --ns and --limit (0 for all) of the commands that read a thread."""
    return stack(
        click.argument("thread"),
        click.option(
            "--ns", default="", show_default=True, help="Checkpoint namespace (subgraphs)."
        ),
        number_option("--limit", default=limit, minimum=0, help=limit_help),
    )


def run_coro(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, ensure_ascii=False))
