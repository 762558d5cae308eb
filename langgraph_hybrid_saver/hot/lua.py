"""The hot tier's Lua scripts, one file each in `scripts/`: each file's
header says its KEYS, ARGV and reply."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

# Scripts that name a thread's keys or settle a thread start with the shared
# helpers of scripts/prelude.lua.
WITH_PRELUDE = frozenset(
    {"put", "put_writes", "copy", "get", "list_full", "list", "repopulate", "drop_thread", "ack"}
)


@cache
def source(name: str) -> str:
    """The text of scripts/<name>.lua, after the prelude when it needs it."""
    text = files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")
    return source("prelude") + text if name in WITH_PRELUDE else text
