"""Request charges (RU) of Cosmos DB: every HTTP response, throttled ones
included, added up in `stats`, in total and per public backend method."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from azure.core.pipeline import PipelineResponse

P = ParamSpec("P")
R = TypeVar("R")

# The public method a request is made for, so `stats` can charge it.
_OPERATION: contextvars.ContextVar[str] = contextvars.ContextVar("cosmos_operation", default="")


def metered(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Charge every request made during the call to the method's name."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        backend = args[0]
        assert isinstance(backend, Metered)
        backend._op_stats(fn.__name__)["calls"] += 1
        token = _OPERATION.set(fn.__name__)
        try:
            return await fn(*args, **kwargs)
        finally:
            _OPERATION.reset(token)

    return wrapper


class Metered:
    """What `metered` and the `raw_response_hook` need: the `stats` counters."""

    stats: dict[str, Any]

    def _op_stats(self, name: str) -> dict[str, Any]:
        ops: dict[str, dict[str, Any]] = self.stats["operations"]
        return ops.setdefault(name, {"calls": 0, "requests": 0, "request_charge": 0.0})

    def _charge(self, response: PipelineResponse[Any, Any]) -> None:
        """`raw_response_hook`: sees every HTTP response, throttled ones included."""
        headers = response.http_response.headers
        charge = float(headers.get("x-ms-request-charge") or 0)
        op = self._op_stats(_OPERATION.get() or "other")
        for counters in (self.stats, op):
            counters["request_charge"] += charge
            counters["requests"] += 1
        if response.http_response.status_code == 429:
            self.stats["throttled"] += 1
