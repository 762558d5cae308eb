"""`demo` and `bench`: run the example and the benchmark suite, which live in
the source repository, not in the wheel. Without a checkout they exit 2 with
the commands that get one."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import runpy
import sys
from collections.abc import Awaitable
from pathlib import Path
from types import ModuleType

import click

from langgraph_hybrid_saver.cli.options import EXIT_CONFIG, EXIT_FAILURE, PROG, CliError, T

DEMO_MODULE = "examples.support_workflow"
BENCH_MODULE = "benchmarks.run"

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command(context_settings=_PASS_THROUGH, short_help="Run the support-workflow example.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the support-workflow example (examples/support_workflow in the
    source repository). Arguments after `--` go to the example."""
    code = _launch(DEMO_MODULE, "the demo", list(args), extra="example", command="demo")
    if code:
        raise click.exceptions.Exit(code)


@click.command(context_settings=_PASS_THROUGH, short_help="Run the benchmark suite.")
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
        root = Path(__file__).resolve().parents[2]
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
            result = entry(argv) if inspect.signature(entry).parameters else entry()
            if inspect.isawaitable(result):
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
