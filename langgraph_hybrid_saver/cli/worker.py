"""`reconcile`: a reconciler worker, the process that drains the outbox into
the durable store. Needs only click (no rich)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import click

from langgraph_hybrid_saver.cli.options import Servers, number_option, run_coro, server_options


@click.command(short_help="Run a reconciler worker (drains the outbox; SIGTERM-safe).")
@server_options(durable=True, read_only=False, as_json=False)
@number_option(
    "--batch-size", default=512, minimum=1, help="Outbox entries applied per transaction."
)
@number_option(
    "--linger-ms",
    default=10,
    minimum=0,
    help="After a partial batch, wait this long for more entries (fewer, larger commits).",
)
@click.option("--setup", "run_setup", is_flag=True, help="Create or migrate the schema first.")
@number_option(
    "--drain-timeout",
    default=10.0,
    minimum=0,
    integer=False,
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
    "--retention",
    metavar="POLICY",
    default=None,
    help='Run retention on a schedule, e.g. "idle=30d,keep-latest=1" (see `prune`).',
)
@click.option(
    "--retention-every",
    metavar="DURATION",
    default="1h",
    show_default=True,
    help="Time between retention runs (the first runs at start): 1h, 30m, 1d.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level of the worker (logs go to stderr).",
)
def reconcile(
    servers: Servers,
    batch_size: int,
    linger_ms: int,
    run_setup: bool,
    drain_timeout: float,
    log_level: str,
    metrics_port: int | None,
    metrics_host: str,
    retention: str | None,
    retention_every: str,
) -> None:
    """Run a reconciler worker: drain the Redis outbox into the durable store.

    Several workers may run at once; they split the shards between them and
    take over the shards of a worker that died (when its lease expires). On
    SIGTERM or SIGINT the worker applies what its shards hold (up to
    --drain-timeout), releases its leases and exits 0, so another worker takes
    over at once.
    """
    from langgraph_hybrid_saver.outbox.reconciler import Reconciler
    from langgraph_hybrid_saver.retention import RetentionPolicy, parse_duration, run_every

    policy = None if retention is None else RetentionPolicy.parse(retention)
    every = parse_duration(retention_every, "--retention-every")

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    # The Azure SDK logs every HTTP request and response at INFO: only its
    # warnings, whatever the worker's own level.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))
    if metrics_port is not None:  # served until the process exits (a daemon thread)
        from langgraph_hybrid_saver.prometheus import serve_prometheus

        click.echo(f"metrics on {serve_prometheus(metrics_port, metrics_host).url}")

    async def run() -> None:
        async with servers.open() as t:
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
            schedule = None
            if policy is not None:
                assert t.backend is not None
                job = run_every(t.hot, t.backend, policy, every, stop)
                schedule = asyncio.get_running_loop().create_task(job)
            await worker.run(stop, drain_timeout=drain_timeout)
            if schedule is not None:  # a run in progress stops; the next worker runs it again
                schedule.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await schedule
            click.echo(
                f"reconciler {worker.owner} stopped: {worker.stats.applied} applied, "
                f"{worker.stats.errors} errors, leases released"
            )
            sys.stdout.flush()

    run_coro(run())
