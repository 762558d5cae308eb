"""The one key schema (hot/keys.py): names the Lua scripts rebuild from a
thread's base, and the parsing the operators' views use. No server."""

from __future__ import annotations

import pytest

from langgraph_hybrid_saver.hot.keys import Keys


@pytest.mark.parametrize("thread_id", ["t1", "a:b:n", "p:x:y", "ünï", "x}:{y"])
def test_every_thread_key_parses_back_to_its_kind(thread_id: str) -> None:
    keys = Keys("app", 16)
    base = keys.base(thread_id)
    assert keys.after_thread(f"{base}:n".encode()) == b":n"
    old = keys.entry_value("5-0", {b"t": thread_id.encode(), b"R": b""}, b"messages\x001")
    assert old is not None and keys.after_thread(old) == b":p:5-0:messages\x001"
    entry = {b"t": thread_id.encode(), b"n": b"", b"V": b""}
    large = keys.entry_value("5-0", entry, b"messages\x001")
    assert large is not None and keys.after_thread(large) == b":v:0::messages\x001"
    assert keys.after_thread(keys.ns_key(thread_id, "c", "").encode()) == b":c:0:"


def test_keys_that_are_not_a_threads_do_not_parse() -> None:
    keys = Keys("app", 16)
    for key in (keys.meta, keys.workers, keys.outboxes[3], keys.thread_index[3], "other:key"):
        assert keys.after_thread(key.encode()) is None
    assert keys.after_thread(keys.base("t").encode()) is None  # the base alone: no kind


def test_every_key_of_a_shard_shares_its_hash_tag() -> None:
    keys = Keys("app", 16)
    s = keys.shard("thread-7")
    tag = f"{{{s}}}"
    for key in (keys.base("thread-7"), keys.outboxes[s], keys.dead[s], keys.thread_index[s]):
        assert tag in key
    assert keys.index_build.startswith(keys.meta)
