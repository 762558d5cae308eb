"""OpenTelemetry traces and metrics (the `[otel]` extra).

Spans: one per saver operation (`hybrid_saver.aput`, `hybrid_saver.aget_tuple`,
...) and one per reconcile batch (`hybrid_saver.reconcile.batch`). Metrics:
the outbox backlog, reconcile lag and dead letters (observable gauges read
from Redis when a reader collects), apply latency, applied entries,
read-throughs and errors by tier. Names are the module constants below.

Everything goes through the OpenTelemetry API: while no SDK tracer provider
is set, a traced call goes straight to the method (no span; a global
provider set later is picked up within NOOP_RECHECK seconds), and without
`opentelemetry-api` installed the decorators return the methods unchanged
and every hook returns at once, allocating nothing.
`configure()` sends this package's telemetry to given providers instead of
the global ones; prometheus.py serves the metrics for scraping (the
`reconcile --metrics-port` worker option).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from langgraph_hybrid_saver.errors import MissingExtraError

if TYPE_CHECKING:
    from langgraph_hybrid_saver.outbox.stream import Outbox

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # the extra is not installed: every hook below is a no-op
    otel_metrics = None  # type: ignore[assignment]
    otel_trace = None  # type: ignore[assignment]

ENABLED = otel_trace is not None
# The global tracer providers before an SDK is set: spans would not record.
_NOOP_PROVIDERS: tuple[type, ...] = (
    (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider) if ENABLED else ()
)
SCOPE = "langgraph_hybrid_saver"
INSTALL = "pip install 'langgraph-hybrid-saver[otel]'"

# Span names: SPAN_PREFIX + the saver method ("hybrid_saver.aput"), and:
SPAN_PREFIX = "hybrid_saver."
RECONCILE_SPAN = "hybrid_saver.reconcile.batch"

# Span attributes
THREAD_ID = "langgraph.thread_id"
CHECKPOINT_NS = "langgraph.checkpoint_ns"
TARGET_THREAD_ID = "hybrid_saver.target_thread_id"  # acopy_thread
BACKEND = "hybrid_saver.backend"  # postgres | sqlite | cosmos
KEY_PREFIX = "hybrid_saver.key_prefix"
BYTES = "hybrid_saver.bytes"  # serialized size written (aput, aput_writes)
READ = "hybrid_saver.read"  # aget_tuple: local | hot | read_through | absent
COUNT = "hybrid_saver.count"  # writes, runs, threads or checkpoints the call handled
BATCH_SIZE = "hybrid_saver.batch_size"  # entries read for a reconcile batch
ENTRIES = "hybrid_saver.entries"  # entries of the batch applied (the rest: dead letters)
TIER = "hybrid_saver.tier"  # errors: redis | durable
HIT = "hybrid_saver.hit"  # local cache lookups: true | false

# Metric names
BACKLOG = "hybrid_saver.outbox.backlog"
LAG = "hybrid_saver.reconcile.lag"
DEAD_LETTERS = "hybrid_saver.outbox.dead_letters"
APPLIED = "hybrid_saver.reconcile.applied"
APPLY_DURATION = "hybrid_saver.reconcile.apply.duration"
DEAD_LETTERED = "hybrid_saver.reconcile.dead_lettered"
READ_THROUGHS = "hybrid_saver.read_throughs"
ERRORS = "hybrid_saver.errors"
LOCAL_CACHE = "hybrid_saver.local_cache.lookups"

# Seconds: durable applies take from under a millisecond to seconds.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STATE_MAX_AGE = 1.0  # seconds one outbox read serves the three gauges
NOOP_RECHECK = 1.0  # seconds between looks for a global SDK tracer provider
STATE_TIMEOUT = 2.0  # seconds a collection waits for the outbox read

P = ParamSpec("P")
T = TypeVar("T")
Attributes = Iterable[tuple[str, Any]]
_NOTHING = contextlib.nullcontext()  # stateless: shared by every disabled call


class _Instruments:
    """The tracer and instruments of one pair of providers (None: global)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = otel_trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        self.global_tracer = tracer_provider is None
        self.sdk_seen = False  # the global provider was found to be an SDK's
        meter = otel_metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self.applied = meter.create_counter(
            APPLIED, "{entry}", "Outbox entries applied to the durable store"
        )
        self.apply_duration = meter.create_histogram(
            APPLY_DURATION,
            "s",
            "Duration of one durable-store transaction applying outbox entries",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.dead_lettered = meter.create_counter(
            DEAD_LETTERED, "{entry}", "Outbox entries the durable store refused (dead-lettered)"
        )
        self.read_throughs = meter.create_counter(
            READ_THROUGHS,
            "{read}",
            "Checkpoint reads that went to the durable store (not hot in Redis), by "
            "result: read_through (found, copied back to Redis) or absent",
        )
        self.errors = meter.create_counter(
            ERRORS, "{error}", "Failed calls to Redis or the durable store, by tier"
        )
        self.local_cache = meter.create_counter(
            LOCAL_CACHE, "{lookup}", "Local-cache lookups, by hit (hit ratio: hit=true / all)"
        )
        meter.create_observable_gauge(
            BACKLOG, [_observe(0)], "{entry}", "Outbox entries not yet in the durable store"
        )
        meter.create_observable_gauge(
            LAG, [_observe(1)], "s", "Age of the oldest outbox entry (0 when empty)"
        )
        meter.create_observable_gauge(
            DEAD_LETTERS, [_observe(2)], "{entry}", "Entries in the dead-letter streams"
        )


# The instruments in use (None without opentelemetry-api); made at the end
# of the module, once the gauges' callbacks are defined.
_inst: _Instruments | None = None
_noop_until = 0.0  # time.monotonic() before which the global tracer is known to be a no-op


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Send this package's spans and metrics to these providers (None: the
    global ones, set with opentelemetry's `set_tracer_provider` and
    `set_meter_provider`, the default)."""
    global _inst, _noop_until
    if not ENABLED:
        raise MissingExtraError(f"telemetry needs opentelemetry-api: {INSTALL}")
    _inst = _Instruments(tracer_provider, meter_provider)
    _noop_until = 0.0


# --- spans -----------------------------------------------------------------------


def traced(
    name: str, describe: Callable[..., Attributes] | None = None
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A saver method (coroutine or async generator) in a span named
    SPAN_PREFIX + `name`, with the backend, the key prefix and what
    `describe(*args, **kwargs)` yields as attributes. Without
    opentelemetry-api: the method itself."""

    def wrap(method: Callable[P, T]) -> Callable[P, T]:
        if not ENABLED:
            return method
        span_name = SPAN_PREFIX + name
        if inspect.isasyncgenfunction(method):
            return _traced_generator(span_name, describe, method)  # type: ignore[return-value]

        async def run(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            tracer = _tracer()
            if tracer is None:
                return await method(self, *args, **kwargs)  # type: ignore[misc]
            attributes = _attributes(self, describe, args, kwargs)
            with tracer.start_as_current_span(span_name, attributes=attributes):
                return await method(self, *args, **kwargs)  # type: ignore[misc]

        functools.update_wrapper(run, method)
        return run  # type: ignore[return-value]

    return wrap


def _traced_generator(
    span_name: str,
    describe: Callable[..., Attributes] | None,
    method: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """An async generator in a span that is current only while the generator
    runs (never across a `yield`, where the caller's code runs); COUNT is the
    number of items it yielded."""

    async def run(self: Any, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        tracer = _tracer()
        if tracer is None:
            async for item in method(self, *args, **kwargs):
                yield item
            return
        span = tracer.start_span(span_name, attributes=_attributes(self, describe, args, kwargs))
        items = method(self, *args, **kwargs)
        n = 0
        try:
            while True:
                with otel_trace.use_span(span):
                    try:
                        item = await anext(items)
                    except StopAsyncIteration:
                        break
                n += 1
                yield item
        finally:
            span.set_attribute(COUNT, n)
            await items.aclose()  # type: ignore[attr-defined]
            span.end()

    functools.update_wrapper(run, method)
    return run


def _tracer() -> Any:
    """The tracer to use, or None while tracing is the global no-op (no SDK
    tracer provider set): then a call skips the span machinery altogether.
    Asking for the global provider costs microseconds, so while it is the
    no-op it is asked again at most every NOOP_RECHECK seconds (a provider
    set later is used from then on); once it is real, it stays."""
    global _noop_until
    inst = _inst
    if inst is None:
        return None
    if not inst.global_tracer or inst.sdk_seen:
        return inst.tracer
    now = time.monotonic()
    if now < _noop_until:
        return None
    if isinstance(otel_trace.get_tracer_provider(), _NOOP_PROVIDERS):
        _noop_until = now + NOOP_RECHECK
        return None
    inst.sdk_seen = True
    return inst.tracer


def _attributes(
    saver: Any,
    describe: Callable[..., Attributes] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """A span's starting attributes (given at once: one lock, not one per key)."""
    out: dict[str, Any] = {}
    backend = getattr(saver, "backend", None)
    if backend is not None:
        out[BACKEND] = backend_name(backend)
    hot = getattr(saver, "hot", None)
    if hot is not None:
        out[KEY_PREFIX] = hot.prefix
    if describe is not None:
        try:
            out.update((k, v) for k, v in describe(*args, **kwargs) if v is not None)
        except Exception:  # bad input: the method itself raises the typed error
            pass
    return out


_backend_names: dict[type, str] = {}


def backend_name(backend: object) -> str:
    """The backend's name: "postgres", "sqlite" or "cosmos" (its class name less `Backend`)."""
    cls = type(backend)
    name = _backend_names.get(cls)
    if name is None:
        name = cls.__name__.removesuffix("Backend").lower()
        _backend_names[cls] = name
    return name


def recording() -> bool:
    """Whether the current span records (compute costly attributes only then)."""
    return ENABLED and otel_trace.get_current_span().is_recording()


def note(key: str, value: Any) -> None:
    """Set an attribute on the current span (nothing when it does not record)."""
    if ENABLED:
        otel_trace.get_current_span().set_attribute(key, value)


def reconcile_batch(backend: object, size: int) -> contextlib.AbstractContextManager[Any]:
    """The span of one reconcile batch of `size` entries read."""
    tracer = _tracer()
    if tracer is None:
        return _NOTHING
    span: contextlib.AbstractContextManager[Any] = tracer.start_as_current_span(
        RECONCILE_SPAN, attributes={BACKEND: backend_name(backend), BATCH_SIZE: size}
    )
    return span


# --- metrics ---------------------------------------------------------------------


def clock() -> float:
    """A start time for `applied` (0.0 without opentelemetry-api)."""
    return time.perf_counter() if ENABLED else 0.0


def applied(backend: object, entries: int, started: float) -> None:
    """A durable transaction that applied `entries` entries, begun at `clock()`."""
    if _inst is not None:
        attributes = {BACKEND: backend_name(backend)}
        _inst.applied.add(entries, attributes)
        _inst.apply_duration.record(time.perf_counter() - started, attributes)


def dead_lettered(backend: object) -> None:
    """An entry the durable store refused, moved to the dead-letter stream."""
    if _inst is not None:
        _inst.dead_lettered.add(1, {BACKEND: backend_name(backend)})


def read(source: str) -> None:
    """Where a checkpoint read was served from: "local" (the local cache),
    "hot", "read_through" (the durable store, then copied back to Redis;
    counted) or "absent"."""
    if _inst is not None:
        otel_trace.get_current_span().set_attribute(READ, source)
        if source in ("read_through", "absent"):
            _inst.read_throughs.add(1, {READ: source})


def error(tier: str) -> None:
    """A failed call to "redis" or to the "durable" store."""
    if _inst is not None:
        _inst.errors.add(1, {TIER: tier})


def local_cache(hit: bool) -> None:
    """A lookup in the local cache of latest checkpoints (hot/local_cache.py)."""
    if _inst is not None:
        _inst.local_cache.add(1, {HIT: hit})


# --- outbox gauges ---------------------------------------------------------------


@dataclass(eq=False)
class _Source:
    """An outbox whose state the gauges report, read on its own loop (both
    held weakly: a reconciler that never reached its end leaks nothing)."""

    outbox: weakref.ref[Outbox]
    loop: weakref.ref[asyncio.AbstractEventLoop]
    prefix: str
    state: tuple[int, float | None, int] | None = None
    read_at: float = -STATE_MAX_AGE


_sources: list[_Source] = []


def watch(outbox: Outbox) -> Callable[[], None]:
    """Report `outbox`'s backlog, lag and dead letters in the gauges (read
    on the running loop when a reader collects); returns the function that
    stops it. Sources of one key prefix report once."""
    if not ENABLED:
        return _unwatched
    loop = weakref.ref(asyncio.get_running_loop())
    source = _Source(weakref.ref(outbox), loop, outbox.hot.prefix)
    _sources[:] = [s for s in _sources if _alive(s) is not None]
    _sources.append(source)
    return functools.partial(_unwatch, source)


def _unwatched() -> None:
    pass


def _unwatch(source: _Source) -> None:
    if source in _sources:
        _sources.remove(source)


def _alive(source: _Source) -> tuple[Outbox, asyncio.AbstractEventLoop] | None:
    """The source's outbox and loop, or None once either is gone or closed."""
    outbox, loop = source.outbox(), source.loop()
    if outbox is None or loop is None or loop.is_closed():
        return None
    return outbox, loop


def _observe(index: int) -> Callable[[Any], Iterator[Any]]:
    def callback(options: Any) -> Iterator[Any]:
        seen: set[str] = set()
        for source in list(_sources):
            if source.prefix in seen:
                continue
            state = _state(source)
            if state is not None:
                seen.add(source.prefix)
                value = state[index]
                yield otel_metrics.Observation(value or 0, {KEY_PREFIX: source.prefix})

    return callback


def _state(source: _Source) -> tuple[int, float | None, int] | None:
    """The outbox state, read at most every STATE_MAX_AGE seconds. From the
    outbox's own loop thread (which cannot wait for itself) or once its loop
    has stopped: the last value read, if any."""
    alive = _alive(source)
    if alive is None:
        _unwatch(source)
        return None
    outbox, loop = alive
    if time.monotonic() - source.read_at < STATE_MAX_AGE:
        return source.state
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        return source.state
    future = asyncio.run_coroutine_threadsafe(outbox.state(), loop)
    try:
        source.state = future.result(STATE_TIMEOUT)
    except Exception:
        future.cancel()
        error("redis")
        return None
    source.read_at = time.monotonic()
    return source.state


# --- what each saver method's span describes ---------------------------------------


def _configurable(config: Any) -> dict[str, Any]:
    if isinstance(config, dict):
        conf = config.get("configurable")
        if isinstance(conf, dict):
            return conf
    return {}


def of_config(config: Any = None, *args: Any, **kwargs: Any) -> Attributes:
    """aput, aget_tuple, alist: the config's thread and namespace."""
    conf = _configurable(config)
    return ((THREAD_ID, _text(conf.get("thread_id"))), (CHECKPOINT_NS, conf.get("checkpoint_ns")))


def of_writes(config: Any = None, writes: Any = (), *args: Any, **kwargs: Any) -> Attributes:
    """aput_writes: the config's thread and namespace, the number of writes."""
    return (*of_config(config), (COUNT, len(writes) if isinstance(writes, Sequence) else None))


def of_thread(thread_id: Any = None, *args: Any, **kwargs: Any) -> Attributes:
    """adelete_thread."""
    return ((THREAD_ID, _text(thread_id)),)


def of_ids(ids: Any = (), *args: Any, **kwargs: Any) -> Attributes:
    """adelete_for_runs, aprune: how many runs or threads."""
    return ((COUNT, len(ids) if isinstance(ids, Sequence) else None),)


def of_copy(source: Any = None, target: Any = None, *args: Any, **kwargs: Any) -> Attributes:
    """acopy_thread: the source thread and the target."""
    return ((THREAD_ID, _text(source)), (TARGET_THREAD_ID, _text(target)))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def put_size(row: Any, blobs: Sequence[Any]) -> int:
    """Serialized bytes of a put: the checkpoint and metadata JSON and the blobs."""
    return len(row.checkpoint) + len(row.metadata) + sum(len(b.blob or b"") for b in blobs)


def writes_size(rows: Sequence[Any]) -> int:
    """Serialized bytes of pending writes."""
    return sum(len(r.blob) for r in rows)


if ENABLED:
    _inst = _Instruments()

__all__ = [
    "ENABLED",
    "configure",
    "traced",
    "watch",
]
