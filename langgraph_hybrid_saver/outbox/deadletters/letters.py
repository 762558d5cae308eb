"""The data of the dead letters: what `list` shows (`DeadLetter`), what
`show` adds (`FieldView`, `DeadLetterDetail`), what `retry` and `drop` report
(`Outcome`), and a dead letter as read from its stream (`Raw`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langgraph_hybrid_saver.hot import HotTier

ALL: Literal["all"] = "all"
Selection = Sequence[str] | Literal["all"]

KINDS = {b"p": "checkpoint", b"w": "writes", b"d": "delete"}
PAGE = 200  # dead letters read (and changed) per round trip

_ID = re.compile(r"^(?:(\d+):)?(\d+-\d+)$")  # [shard:]stream id


def as_text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def stream_ms(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


def stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Named:
    """A dead letter's name: its shard and its id in that shard's stream."""

    __slots__ = ()
    shard: int
    dead_id: str

    @property
    def ref(self) -> str:
        """SHARD:DEAD_ID, which names it unambiguously (stream ids are per shard)."""
        return f"{self.shard}:{self.dead_id}"

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, **asdict(self)}  # type: ignore[call-overload]


@dataclass(slots=True)
class DeadLetter(Named):
    """One dead letter, as `list` shows it."""

    shard: int
    dead_id: str  # its id in the shard's dead-letter stream
    outbox_id: str  # the id the entry had in the outbox
    thread_id: str | None  # None: the entry names none (undecodable)
    kind: str  # "checkpoint", "writes", "delete" or "unknown"
    checkpoint_ns: str | None
    checkpoint_id: str | None
    reason: str
    age_seconds: float  # since it was dead-lettered (Redis time)
    size: int  # bytes of the entry's fields and values, large values included


@dataclass(slots=True)
class FieldView:
    """One field of the original entry, printable."""

    name: str  # NUL (between a channel and its version) shown as "\\0"
    size: int  # bytes of the value (of the large value, when it has its own key)
    value: str | None  # the text of short text fields; None for binary payloads
    large_key: str | None = None  # the key holding the value
    missing: bool = False  # that key is gone: the entry cannot be applied whole


@dataclass(slots=True)
class DeadLetterDetail:
    """One dead letter with its entry decoded where possible (`show`)."""

    letter: DeadLetter
    fields: list[FieldView]
    operation: dict[str, Any] | None  # the decoded entry; None when it cannot be
    decode_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.letter.to_json(),
            "fields": [asdict(f) for f in self.fields],
            "operation": self.operation,
            "decode_error": self.decode_error,
        }


@dataclass(slots=True)
class Outcome(Named):
    """What `retry` or `drop` did to one dead letter."""

    dead_id: str
    outbox_id: str
    shard: int
    thread_id: str | None
    kind: str
    checkpoint_id: str | None
    status: str  # "retried", "dropped", "refused" or "gone" (retried or dropped meanwhile)
    message: str
    new_outbox_id: str | None = None  # retried: its id in the outbox now
    pending: int | None = None  # dropped: the thread's entries still pending


@dataclass(slots=True)
class Raw:
    """A dead letter as read: its stream position and fields."""

    shard: int
    dead_id: str
    fields: dict[bytes, bytes]
    entry: dict[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.entry = {k[6:]: v for k, v in self.fields.items() if k.startswith(b"entry:")}

    @property
    def outbox_id(self) -> str:
        return as_text(self.fields.get(b"outbox_id", b""))

    @property
    def thread_id(self) -> str | None:
        t = self.entry.get(b"t")
        return None if t is None else as_text(t)

    def text(self, name: bytes) -> str | None:
        v = self.entry.get(name)
        return None if v is None else as_text(v)

    @property
    def kind(self) -> str:
        return KINDS.get(self.entry.get(b"k", b""), "unknown")

    def large_fields(self) -> list[bytes]:
        """The fields whose values are in keys of their own."""
        return [f for f, v in self.entry.items() if v == b"" and b"\x00" in f]

    def large_key(self, hot: HotTier, name: bytes) -> bytes | None:
        """The key holding the value of large field `name`."""
        return hot.keys.entry_value(self.outbox_id, self.entry, name)
