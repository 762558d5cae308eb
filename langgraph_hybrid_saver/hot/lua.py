"""The hot tier's Lua scripts, one file each in `scripts/`: each file's
header says its KEYS, ARGV and reply."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

# Scripts that name a thread's keys or settle a thread start with the shared
# helpers of scripts/prelude.lua.
WITH_PRELUDE = frozenset(
    {
        "put",
        "put_writes",
        "copy",
        "get",
        "list_full",
        "list",
        "repopulate",
        "drop_thread",
        "forget",
        "ack",
    }
)


# The dead-letter scripts also share the reading of a dead letter.
WITH_DEAD_LETTER_READ = frozenset({"dead_letter_retry", "dead_letter_drop"})


@cache
def source(name: str) -> str:
    """The text of scripts/<name>.lua, after the shared helpers it needs."""
    text = files(__package__).joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")
    if name in WITH_DEAD_LETTER_READ:
        return source("prelude") + source("dead_letter_read") + text
    return source("prelude") + text if name in WITH_PRELUDE else text
