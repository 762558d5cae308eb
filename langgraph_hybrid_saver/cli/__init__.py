"""Command line for operators: `langgraph-hybrid-saver COMMAND` or
`python -m langgraph_hybrid_saver COMMAND`.

This package parses options and renders; what it shows comes from
`langgraph_hybrid_saver.ops` (servers, outbox, workers),
`langgraph_hybrid_saver.history` (a thread's audit trail and size) and
`langgraph_hybrid_saver.outbox.deadletters`. One module per command group:
`servers` (setup, status), `thread` (inspect, size), `dead_letters`,
`retention` (prune), `worker` (reconcile), `launch` (demo, bench); `options` holds what they
share, `render` the tables. The reconcile worker needs only click; tables
need rich (the `[cli]` extra), and `--json` output needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from langgraph_hybrid_saver.cli.dead_letters import dead_letters
from langgraph_hybrid_saver.cli.launch import bench, demo
from langgraph_hybrid_saver.cli.options import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    PROG,
    CliError,
)
from langgraph_hybrid_saver.cli.retention import prune
from langgraph_hybrid_saver.cli.servers import setup, status
from langgraph_hybrid_saver.cli.thread import inspect_cmd, size
from langgraph_hybrid_saver.cli.worker import reconcile
from langgraph_hybrid_saver.errors import (
    ConfigError,
    HybridSaverError,
    MissingExtraError,
    NotFoundError,
    ServerUnreachableError,
)

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]

# The exit code of each kind of error, first match wins; any other error
# exits EXIT_FAILURE. The same kind of error exits with the same code
# whichever server or backend raised it.
EXIT_CODES: tuple[tuple[type[HybridSaverError], int], ...] = (
    (ServerUnreachableError, EXIT_UNREACHABLE),
    (NotFoundError, EXIT_NOT_FOUND),
    (ConfigError, EXIT_CONFIG),
    (MissingExtraError, EXIT_CONFIG),
)


def exit_code(e: HybridSaverError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(e, kind)), EXIT_FAILURE)


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
            raise CliError(_one_line(e), exit_code(e)) from e
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


# click lists them sorted by name in --help.
for command in (setup, status, inspect_cmd, size, prune, dead_letters, reconcile, demo, bench):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m langgraph_hybrid_saver`."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name=PROG)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_FAILURE)
    return 0
