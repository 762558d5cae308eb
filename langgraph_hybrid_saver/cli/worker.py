"""`reconcile`: a reconciler worker, the process that drains the outbox into
the durable store. Needs only click (no rich)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from langgraph_hybrid_saver.cli.options import run_coro, server_options


@click.command(short_help="Run a reconciler worker (drains the outbox; SIGTERM-safe).")
@server_options(durable=True, read_only=False, as_json=False)
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
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (the [otel] extra; 0: a free port).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint listens on (0.0.0.0: every interface).",
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
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a reconciler worker: drain the Redis outbox into the durable store.

    Several workers may run at once; they split the shards between them and
    take over the shards of a worker that died (when its lease expires). On
    SIGTERM or SIGINT the worker applies what its shards hold (up to
    --drain-timeout), releases its leases and exits 0, so another worker takes
    over at once.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    if metrics_port is not None:  # served until the process exits (a daemon thread)
        from langgraph_hybrid_saver.telemetry import serve_prometheus

        click.echo(f"metrics on {serve_prometheus(metrics_port, metrics_host).url}")
    run_coro(
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
