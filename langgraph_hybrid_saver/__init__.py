"""langgraph-hybrid-saver: a LangGraph checkpointer with Redis speed and
durable-store safety.

    async with AsyncHybridSaver.from_conn_string(
        "redis://127.0.0.1:6379/0", "postgresql://postgres@127.0.0.1:5432/app"
    ) as saver:
        graph = builder.compile(checkpointer=saver)
"""

from langgraph_hybrid_saver.backends import DurableBackend, open_backend
from langgraph_hybrid_saver.errors import (
    BacklogError,
    ConfigError,
    ConfigTypeError,
    CorruptDataError,
    DurableStoreError,
    FlushTimeoutError,
    HotTierFullError,
    HybridSaverError,
    MissingExtraError,
    NotDurableError,
    NotFoundError,
    ReplicationTimeoutError,
    SaverClosedError,
    SerializationError,
    ServerUnreachableError,
    ThreadBusyError,
    ThreadDeletedError,
)
from langgraph_hybrid_saver.outbox.reconciler import Reconciler
from langgraph_hybrid_saver.saver import AsyncHybridSaver
from langgraph_hybrid_saver.sync_saver import HybridSaver

__all__ = [
    "AsyncHybridSaver",
    "BacklogError",
    "ConfigError",
    "ConfigTypeError",
    "CorruptDataError",
    "DurableBackend",
    "DurableStoreError",
    "FlushTimeoutError",
    "HotTierFullError",
    "HybridSaver",
    "HybridSaverError",
    "MissingExtraError",
    "NotDurableError",
    "NotFoundError",
    "Reconciler",
    "ReplicationTimeoutError",
    "SaverClosedError",
    "SerializationError",
    "ServerUnreachableError",
    "ThreadBusyError",
    "ThreadDeletedError",
    "open_backend",
]
