"""The reconcile worker's Prometheus endpoint (`reconcile --metrics-port`):
this package's OpenTelemetry metrics (telemetry.py) served for scraping."""

from __future__ import annotations

from typing import Any

from langgraph_hybrid_saver.errors import ConfigError, MissingExtraError
from langgraph_hybrid_saver.telemetry import INSTALL, configure


class MetricsServer:
    """A Prometheus endpoint serving this package's metrics at /metrics."""

    def __init__(self, server: Any, thread: Any, provider: Any) -> None:
        self._server = server
        self._thread = thread
        self._provider = provider
        self.host: str = server.server_address[0]
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        configure()  # back to the global providers
        self._provider.shutdown()


def serve_prometheus(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve this package's metrics (and the process's, from
    prometheus_client) on http://host:port/metrics; port 0 picks a free one.

    The metrics go to an SDK `MeterProvider` with a `PrometheusMetricReader`
    (opentelemetry-exporter-prometheus), so one set of instruments serves
    both OTLP and Prometheus; the HTTP server is prometheus_client's.

    Raises:
        MissingExtraError: the `[otel]` extra is not installed.
        ConfigError: the port cannot be bound (in use, not allowed).
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as e:
        raise MissingExtraError(
            f"the Prometheus endpoint needs opentelemetry-sdk, "
            f"opentelemetry-exporter-prometheus and prometheus_client: {INSTALL}"
        ) from e
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"metrics port {port!r}: use an int from 0 (any free port) to 65535")
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as e:
        provider.shutdown()
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({e.strerror or e}): choose a free "
            "--metrics-port or another --metrics-host"
        ) from None
    configure(meter_provider=provider)
    return MetricsServer(server, thread, provider)
