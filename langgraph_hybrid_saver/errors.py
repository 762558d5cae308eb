"""Errors raised by langgraph-hybrid-saver.

Every error derives from `HybridSaverError` and from the built-in exception a
caller would naturally catch (`ValueError`, `ConnectionError`, ...). Messages
name the offending value and the fix, and never contain a password.
"""

from __future__ import annotations

__all__ = [
    "BacklogError",
    "ConfigError",
    "CorruptDataError",
    "DurableStoreError",
    "FlushTimeoutError",
    "HybridSaverError",
    "MissingExtraError",
    "NotDurableError",
    "NotFoundError",
    "ReplicationTimeoutError",
    "SaverClosedError",
    "SerializationError",
    "ServerUnreachableError",
    "ThreadBusyError",
]


class HybridSaverError(Exception):
    """Root of every error this package raises."""


class ConfigError(HybridSaverError, ValueError):
    """A bad argument or setting, for the user to fix: a config without
    `thread_id`, an unknown URL scheme, credentials a server refused, ..."""


class ConfigTypeError(ConfigError, TypeError):
    """An argument of the wrong type, such as one str where a list of ids
    is expected: a TypeError, as the official savers raise there."""


class MissingExtraError(HybridSaverError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class ServerUnreachableError(HybridSaverError, ConnectionError):
    """Redis or the durable store could not be reached (host:port named)."""


class NotFoundError(HybridSaverError, LookupError):
    """A thread or checkpoint an operator asked for does not exist."""


class DurableStoreError(HybridSaverError, RuntimeError):
    """The durable store rejected or failed an operation."""


class NotDurableError(DurableStoreError):
    """A write-through write did not reach the durable store: it was refused
    there (and dead-lettered) or lost with Redis; the message says which."""


class CorruptDataError(HybridSaverError, ValueError):
    """Stored data could not be decoded; the message names the key."""


class SerializationError(HybridSaverError, TypeError):
    """A checkpoint or its metadata could not be encoded."""


class FlushTimeoutError(HybridSaverError, TimeoutError):
    """`flush`/`aflush` gave up before the outbox drained."""


class HotTierFullError(HybridSaverError, RuntimeError):
    """Redis refused a write because it reached `maxmemory`; nothing was written."""


class ThreadDeletedError(HybridSaverError, LookupError):
    """A late write named a checkpoint of a thread deleted since."""


class ThreadBusyError(HybridSaverError, RuntimeError):
    """Another process holds the thread's lease (or ours expired)."""


class BacklogError(HybridSaverError, RuntimeError):
    """The outbox is past `max_backlog`/`max_lag_seconds` and the policy is "raise"."""


class ReplicationTimeoutError(HybridSaverError, TimeoutError):
    """Under `replicas_ack`, a write reached the Redis primary but not the
    number of replicas asked for within `replicas_ack_timeout`. It is in
    Redis, with its outbox entry: the durable store gets it unless the
    primary is lost before a replica has it."""


class SaverClosedError(HybridSaverError, RuntimeError):
    """The saver was used after `close`/`aclose`."""


for _cls in list(map(globals().get, __all__)):
    _cls.__module__ = "langgraph_hybrid_saver"
