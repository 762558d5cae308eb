"""How large a thread's state is and how it grows: the largest channels of
the newest checkpoint, the growth per step, and a hint for a channel that
keeps growing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver.history.load import Loaded, Report, require_history
from langgraph_hybrid_saver.history.values import channel_sizes, channel_value
from langgraph_hybrid_saver.ops import Target


@dataclass(slots=True)
class ChannelSize:
    channel: str
    size: int  # in the newest checkpoint
    share: float  # of the newest checkpoint's state
    items: int | None  # length, for lists and dicts
    versions: int  # distinct versions in the history read
    stored: int  # bytes of those versions: what the durable store keeps


@dataclass(slots=True)
class StepSize:
    checkpoint_id: str
    step: int | None
    source: str | None
    size: int
    delta: int
    top_channel: str | None  # the channel that grew most in this step
    top_delta: int


@dataclass(slots=True)
class SizeReport(Report):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    total: int
    channels: list[ChannelSize]  # largest first
    steps: list[StepSize]  # oldest first
    hints: list[str] = field(default_factory=list)


GROWTH_HINT_MIN_STEPS = 5
GROWTH_HINT_SHARE = 0.8
GROWTH_HINT_MIN_BYTES = 1024


def size_report_of(
    history: Sequence[Loaded], serde: SerializerProtocol | None = None
) -> SizeReport:
    """Largest channels of the newest checkpoint and growth per step.

    `history` newest first, as `load_history` returns it.
    """
    serde = serde or JsonPlusSerializer()
    oldest_first = [h.stored for h in reversed(history)]
    latest = oldest_first[-1]
    sizes = [channel_sizes(s) for s in oldest_first]
    stored_versions: dict[str, dict[str, int]] = {}
    for s in oldest_first:
        versions = s.checkpoint.get("channel_versions") or {}
        for ch, (type_, blob) in s.blobs.items():
            size = 0 if type_ == "empty" else len(blob or b"")
            stored_versions.setdefault(ch, {})[str(versions.get(ch))] = size
    total = sum(sizes[-1].values())
    channels = []
    for ch, size in sorted(sizes[-1].items(), key=lambda kv: (-kv[1], kv[0])):
        value = channel_value(serde, latest, ch)
        held = stored_versions.get(ch, {})
        channels.append(
            ChannelSize(
                ch,
                size,
                round(size / total, 4) if total else 0.0,
                len(value) if isinstance(value, (list, tuple, dict)) else None,
                len(held) or 1,
                sum(held.values()) or size,
            )
        )
    steps: list[StepSize] = []
    changed: dict[str, int] = {}
    grew: dict[str, int] = {}
    for i, s in enumerate(oldest_first):
        prev = sizes[i - 1] if i else {}
        deltas = {ch: n - prev.get(ch, 0) for ch, n in sizes[i].items()}
        top = max(deltas.items(), key=lambda kv: kv[1], default=(None, 0))
        for ch, d in deltas.items():
            if ch in prev and d:
                changed[ch] = changed.get(ch, 0) + 1
                grew[ch] = grew.get(ch, 0) + (d > 0)
        steps.append(
            StepSize(
                s.checkpoint_id,
                s.metadata.get("step"),
                s.metadata.get("source"),
                sum(sizes[i].values()),
                sum(sizes[i].values()) - sum(prev.values()) if i else 0,
                top[0] if top[1] > 0 else None,
                max(top[1], 0),
            )
        )
    # A collection that grows nearly every time it changes will keep growing
    # (a rolling window shrinks about as often as it grows).
    hints = []
    for c in channels:
        n_changed, n_grew = changed.get(c.channel, 0), grew.get(c.channel, 0)
        if (
            c.items is not None
            and c.size >= GROWTH_HINT_MIN_BYTES
            and n_changed >= GROWTH_HINT_MIN_STEPS
            and n_grew >= GROWTH_HINT_SHARE * n_changed
        ):
            hints.append(
                f"channel {c.channel!r} grew {n_grew} of the {n_changed} times it changed "
                f"({c.items} items, {c.size} bytes now, {c.stored} bytes stored): cap it "
                "with Annotated[list, langgraph_hybrid_saver.reducers.rolling_window(n)] "
                "or summarize it"
            )
    return SizeReport(
        latest.thread_id, latest.checkpoint_ns, latest.checkpoint_id, total, channels, steps, hints
    )


async def size_report(
    target: Target,
    thread_id: str,
    ns: str = "",
    *,
    limit: int | None = None,
    serde: SerializerProtocol | None = None,
) -> SizeReport:
    return size_report_of(await require_history(target, thread_id, ns, limit), serde)
