"""Channel values of a stored checkpoint as the views show them: decoded,
sized (serialized bytes) and previewed on one line."""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from langgraph_hybrid_saver.core import StoredCheckpoint


def decode_channel(serde: SerializerProtocol, stored: StoredCheckpoint, channel: str) -> Any:
    """A channel value of a stored checkpoint; raises KeyError when it has none."""
    if channel in stored.blobs:
        type_, blob = stored.blobs[channel]
        if type_ == "empty":
            raise KeyError(channel)
        return serde.loads_typed((type_, blob or b""))
    return stored.checkpoint.get("channel_values", {})[channel]


def channel_sizes(stored: StoredCheckpoint) -> dict[str, int]:
    sizes = {
        ch: len(json.dumps(v, separators=(",", ":")))
        for ch, v in (stored.checkpoint.get("channel_values") or {}).items()
    }
    for ch, (type_, blob) in stored.blobs.items():
        sizes[ch] = 0 if type_ == "empty" else len(blob or b"")
    return sizes


class _Undecodable:
    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<not decodable here: {self.why}>"


class _Empty:
    """A channel with a version but no value (consumed, like `__start__`)."""

    def __repr__(self) -> str:
        return "(empty)"


EMPTY = _Empty()


def channel_value(serde: SerializerProtocol, stored: StoredCheckpoint, channel: str) -> Any:
    try:
        return decode_channel(serde, stored, channel)
    except KeyError:
        return EMPTY
    except Exception as e:
        return _Undecodable(f"{type(e).__name__}: {e}")


def preview(value: Any, limit: int = 100) -> str:
    """A one-line preview of a channel value (messages as `type: content`)."""
    content = getattr(value, "content", None)
    if isinstance(getattr(value, "type", None), str) and content is not None:
        text = f"{value.type}: {content if isinstance(content, str) else repr(content)}"
    elif isinstance(value, (list, tuple)):
        items = [preview(v, 40) for v in value[:3]]
        more = f", … ({len(value)} items)" if len(value) > 3 else ""
        text = f"[{', '.join(items)}{more}]"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
