"""The hot tier in Redis: the key schema (keys.py), the Lua scripts
(scripts/, loaded by lua.py), value packing (codec.py), opening the client
(client.py), the pipelined connection (connection.py) and the store that
uses them (store.py). The outbox streams' side is outbox/stream.py."""

from langgraph_hybrid_saver.hot.keys import LAYOUT_VERSION
from langgraph_hybrid_saver.hot.store import (
    DEFAULT_PREFIX,
    DEFAULT_SHARDS,
    PIN_MIN_BYTES,
    HotRead,
    HotTier,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_SHARDS",
    "LAYOUT_VERSION",
    "PIN_MIN_BYTES",
    "HotRead",
    "HotTier",
]
