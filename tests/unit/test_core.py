"""The pure core (`langgraph_hybrid_saver.core`): list semantics shared by the
hot tier and every durable store, outbox ordering, config parsing, channel
versions and decoding a stored checkpoint. No server.

Refusing unstorable values and ids (NUL, lone surrogates) is in
tests/test_poison_values.py.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from langgraph_hybrid_saver import ConfigError, CorruptDataError
from langgraph_hybrid_saver.core import (
    ListQuery,
    StoredCheckpoint,
    WriteRow,
    json_contains,
    list_conditions,
    list_query,
    matches,
    merge_newest_first,
    next_version,
    normalize_id,
    parse_config,
    sort_writes,
    to_tuple,
)
from langgraph_hybrid_saver.outbox.ops import (
    apply_order,
    seq_key,
)

from ..helpers import delete_op, put_op, writes_op

SERDE = JsonPlusSerializer()


def stored(
    cid: str,
    metadata: dict[str, Any] | None = None,
    *,
    thread_id: str = "t",
    ns: str = "",
    tier: str = "",
) -> StoredCheckpoint:
    """A checkpoint as read back; `tier` tags the copy (in its document)."""
    return StoredCheckpoint(thread_id, ns, cid, None, {"id": cid, "tier": tier}, metadata or {})


def query(**given: Any) -> ListQuery:
    fields = dict.fromkeys(
        ("thread_id", "checkpoint_ns", "checkpoint_id", "filter", "before", "limit")
    )
    return ListQuery(**{**fields, **given})


# --- json_contains: PostgreSQL jsonb @> -------------------------------------------------
# Every expectation was checked against PostgreSQL 15 (`SELECT doc::jsonb @> pattern::jsonb`).


@pytest.mark.parametrize(
    ("doc", "pattern", "contained"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": 1}, {}, True),
        ({}, {"a": None}, False),  # a missing key is not a null
        ({"a": None}, {"a": None}, True),
        ({"a": 1}, {"a": 1.0}, True),  # numbers compare as numbers
        ({"a": True}, {"a": 1}, False),  # a bool is not a number
        ({"a": 1}, {"a": True}, False),
        ({"a": 0}, {"a": False}, False),
        ({"a": False}, {"a": False}, True),
        ({"a": "1"}, {"a": 1}, False),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, True),
        ({"a": {"b": 1, "c": 2}}, {"a": {}}, True),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}, False),
        ({"a": 1}, {"a": {}}, False),
        ({"a": [1, 2, 3]}, {"a": [3, 1, 1]}, True),  # any order, repeats
        ({"a": [1, 2, 3]}, {"a": [4]}, False),
        ({"a": [1]}, {"a": []}, True),
        ({"a": 1}, {"a": []}, False),
        ({"a": [[1, 2], [3]]}, {"a": [[2]]}, True),  # nested lists: element-wise
        ({"a": [[1, 2]]}, {"a": [1]}, False),  # a list is not its elements
        ({"a": [{"b": 1, "c": 2}]}, {"a": [{"b": 1}]}, True),
        ({"a": [{"b": 1}]}, {"a": [{"b": 2}]}, False),
        ({"a": [True]}, {"a": [1]}, False),
        ({"a": [1]}, {"a": [True]}, False),
    ],
)
def test_json_contains_is_jsonb_containment(doc: Any, pattern: Any, contained: bool) -> None:
    assert json_contains(doc, pattern) is contained


# --- list_conditions / matches ------------------------------------------------------------


def test_list_conditions_name_only_what_the_query_gives() -> None:
    assert list_conditions(query()) == []
    assert list_conditions(query(thread_id="t", checkpoint_ns="", before="c5", limit=3)) == [
        ("thread_id", "=", "t"),
        ("checkpoint_ns", "=", ""),  # the root namespace is a value, not "any"
        ("checkpoint_id", "<", "c5"),
    ]
    assert list_conditions(query(thread_id="t", checkpoint_id="c2", filter={"a": 1})) == [
        ("thread_id", "=", "t"),
        ("checkpoint_id", "=", "c2"),
    ]


def test_matches_applies_id_before_and_filter() -> None:
    s = stored("c2", {"source": "loop", "step": 1})
    assert matches(query(), s)
    assert matches(query(checkpoint_id="c2"), s)
    assert not matches(query(checkpoint_id="c1"), s)
    assert matches(query(before="c3"), s)
    assert not matches(query(before="c2"), s)  # strictly before
    assert not matches(query(before="c1"), s)
    assert matches(query(filter={"source": "loop"}), s)
    assert not matches(query(filter={"source": "input"}), s)
    assert not matches(query(filter={"step": True}), s)
    assert not matches(query(before="c3", filter={"missing": None}), s)


# --- merge_newest_first ----------------------------------------------------------------


def test_merge_dedupes_prefers_hot_and_sorts_newest_first() -> None:
    hot = [stored("c3", tier="hot"), stored("c1", tier="hot")]
    durable = [stored("c4", tier="durable"), stored("c3", tier="durable"), stored("c2")]
    merged = merge_newest_first(hot, durable, None)
    assert [(s.checkpoint_id, s.checkpoint["tier"]) for s in merged] == [
        ("c4", "durable"),
        ("c3", "hot"),
        ("c2", ""),
        ("c1", "hot"),
    ]


def test_merge_keeps_the_same_id_in_other_namespaces_and_threads() -> None:
    merged = merge_newest_first(
        [stored("c1"), stored("c1", ns="sub")], [stored("c1", thread_id="u"), stored("c1")], None
    )
    assert sorted((s.thread_id, s.checkpoint_ns) for s in merged) == [
        ("t", ""),
        ("t", "sub"),
        ("u", ""),
    ]


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(None, ["c3", "c2", "c1"]), (9, ["c3", "c2", "c1"]), (2, ["c3", "c2"]), (0, []), (-1, [])],
)
def test_merge_limit(limit: int | None, expected: list[str]) -> None:
    """The limit counts distinct checkpoints, after the merge."""
    merged = merge_newest_first([stored("c1"), stored("c3")], [stored("c2"), stored("c3")], limit)
    assert [s.checkpoint_id for s in merged] == expected


# --- seq_key ----------------------------------------------------------------------------------


def test_seq_key_is_fixed_width() -> None:
    assert seq_key("1700000000000-2") == "0001700000000000-0000000002"
    assert seq_key("5") == seq_key("5-0") == "0000000000000005-0000000000"


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("9-0", "10-0"),  # "9-0" > "10-0" as text
        ("1-9", "1-10"),
        ("1-99999", "2-0"),
        ("1700000000000-0", "1700000000000-1"),
        ("999999999999-5", "1000000000000-0"),
    ],
)
def test_seq_key_sorts_as_stream_ids(earlier: str, later: str) -> None:
    assert seq_key(earlier) < seq_key(later)


def test_seq_key_refuses_what_is_no_stream_id() -> None:
    with pytest.raises(ValueError):
        seq_key("abc-1")


# --- apply_order ------------------------------------------------------------------------------


def test_apply_order_skips_what_the_watermark_covers_and_advances_it() -> None:
    ops = [put_op(1, "t", "c1"), writes_op(2, "t", "c1", b"w", False), put_op(3, "t", "c2")]
    marks = {"t": seq_key("2-0")}
    assert apply_order(ops, marks) == [([ops[2]], None)]
    assert marks == {"t": seq_key("3-0")}
    # The same batch again: everything is at or below the watermark now.
    assert apply_order(ops, marks) == [([], None)]
    assert marks == {"t": seq_key("3-0")}


def test_apply_order_splits_runs_at_deletes() -> None:
    p1, w2, d3 = put_op(1, "t", "c1"), writes_op(2, "t", "c1", b"w", False), delete_op(3, "t")
    p4, d5, u6 = put_op(4, "t", "c4"), delete_op(5, "u"), put_op(6, "u", "c6")
    marks = {"t": "", "u": ""}
    assert apply_order([p1, w2, d3, p4, d5, u6], marks) == [
        ([p1, w2], d3),
        ([p4], d5),
        ([u6], None),
    ]
    assert marks == {"t": p4.seq, "u": u6.seq}


def test_apply_order_keeps_threads_apart() -> None:
    """A thread's watermark skips its own entries only; a repeated entry
    within one batch is applied once."""
    t1, u2, t3, t3_again = (
        put_op(1, "t", "c1"),
        put_op(2, "u", "c2"),
        put_op(3, "t", "c3"),
        put_op(3, "t", "c3"),
    )
    marks = {"t": "", "u": seq_key("7-0")}
    assert apply_order([t1, u2, t3, t3_again], marks) == [([t1, t3], None)]
    assert marks == {"t": t3.seq, "u": seq_key("7-0")}


def test_apply_order_of_nothing() -> None:
    assert apply_order([], {}) == [([], None)]


# --- list_query ----------------------------------------------------------------------------


def test_list_query_of_a_thread() -> None:
    q = list_query({"configurable": {"thread_id": 7}}, {"source": "loop"}, None, 5)
    # ns None: every namespace of the thread; given as "", only the root one.
    assert q == ListQuery("7", None, None, {"source": "loop"}, None, 5)
    q = list_query(
        {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}},
        {},
        None,
        None,
    )
    assert q == ListQuery("t", "", "c1", None, None, None)  # an empty filter is none


@pytest.mark.parametrize("config", [None, {}, {"configurable": {}}])
def test_list_query_without_a_thread_lists_every_thread(config: Any) -> None:
    assert list_query(config, None, None, None) == ListQuery(None, None, None, None, None, None)


@pytest.mark.parametrize(
    "before",
    [{"configurable": {"checkpoint_id": "c9"}}, {"checkpoint_id": "c9"}],
    ids=["configurable", "bare"],
)
def test_list_query_before_in_either_form(before: Any) -> None:
    assert list_query(None, None, before, None).before == "c9"


@pytest.mark.parametrize(
    ("filter_", "before", "limit", "message"),
    [
        ([("a", 1)], None, None, "filter must be a dict"),
        ({"a": object()}, None, None, "not JSON"),
        ({"a": {1, 2}}, None, None, "not JSON"),
        (None, {"configurable": {}}, None, "names no checkpoint"),
        (None, {"checkpoint_id": ""}, None, "names no checkpoint"),
        (None, {"configurable": {"checkpoint_id": 5}}, None, "names no checkpoint"),
        (None, None, "5", "limit must be an int"),
        (None, None, 2.0, "limit must be an int"),
        (None, None, True, "limit must be an int"),
    ],
)
def test_list_query_refuses(filter_: Any, before: Any, limit: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        list_query({"configurable": {"thread_id": "t"}}, filter_, before, limit)


# --- parse_config / normalize_id ----------------------------------------------------------


def test_parse_config() -> None:
    assert parse_config({"configurable": {"thread_id": "t"}}) == ("t", "", None)
    given = {"thread_id": "t", "checkpoint_ns": "sub:1", "checkpoint_id": "c1", "other": 1}
    assert parse_config({"configurable": given}) == ("t", "sub:1", "c1")
    empty = {"thread_id": "t", "checkpoint_ns": None, "checkpoint_id": ""}
    assert parse_config({"configurable": empty}) == ("t", "", None)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "thread_id'\\] is missing"),
        ({}, "thread_id'\\] is missing"),
        ({"configurable": None}, "thread_id'\\] is missing"),
        ({"configurable": {"checkpoint_ns": ""}}, "thread_id'\\] is missing"),
        ({"configurable": {"thread_id": ""}}, "thread_id must be a non-empty str"),
        ({"configurable": {"thread_id": True}}, "thread_id must be a non-empty str"),
        ({"configurable": {"thread_id": 1.5}}, "thread_id must be a non-empty str"),
        ({"configurable": {"thread_id": "t", "checkpoint_ns": 3}}, "checkpoint_ns must be a str"),
        ({"configurable": {"thread_id": "t", "checkpoint_id": 3}}, "checkpoint_id must be a str"),
    ],
)
def test_parse_config_refuses(config: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_normalize_id_accepts_str_int_and_uuid() -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert normalize_id("abc", "thread_id") == "abc"
    assert normalize_id(42, "thread_id") == "42"
    assert normalize_id(0, "thread_id") == "0"
    assert normalize_id(u, "thread_id") == str(u)
    for bad in (False, None, b"t", 1.0, ["t"]):
        with pytest.raises(ConfigError, match="run_id must be a non-empty str"):
            normalize_id(bad, "run_id")


# --- next_version ---------------------------------------------------------------------


def test_next_version_format_and_order() -> None:
    shape = re.compile(r"^\d{32}\.\S+$")
    v1 = next_version(None)
    assert shape.match(v1) and v1.startswith("0" * 31 + "1.")
    v2 = next_version(v1)
    assert shape.match(v2) and v2.startswith("0" * 31 + "2.")
    assert next_version(41).startswith("0" * 30 + "42.")
    assert next_version(41.9).startswith("0" * 30 + "42.")  # the integer part counts
    assert next_version("9.123").startswith("0" * 30 + "10.")
    versions = [None]
    for _ in range(12):
        versions.append(next_version(versions[-1]))
    text = versions[1:]
    assert text == sorted(text)  # as strings, as LangGraph compares them
    assert len(set(text)) == len(text)


# --- sort_writes / to_tuple --------------------------------------------------------------


def write(task_path: str, task_id: str, idx: int, channel: str, value: Any) -> WriteRow:
    type_, blob = SERDE.dumps_typed(value)
    return WriteRow(task_id, idx, task_path, channel, type_, blob)


WRITES = [
    write("~b", "a", 1, "x", "b-a-1"),
    write("~a", "z", 0, "x", "a-z-0"),
    write("~b", "a", 0, "x", "b-a-0"),
    write("~a", "b", -1, "__error__", "a-b-err"),  # special channels have idx < 0
    write("~a", "b", 2, "x", "a-b-2"),
]


def test_sort_writes_follows_writes_sort_key() -> None:
    """(task_path, task_id, idx): the order LangGraph applies a super-step's writes."""
    ordered = [SERDE.loads_typed((w.type, w.blob)) for w in sort_writes(WRITES)]
    assert ordered == ["a-b-err", "a-b-2", "a-z-0", "b-a-0", "b-a-1"]


def test_to_tuple_decodes_blobs_writes_and_configs() -> None:
    s = StoredCheckpoint(
        "t",
        "sub:1",
        "c2",
        "c1",
        {"v": 1, "id": "c2", "channel_values": {"step": 3}, "channel_versions": {}},
        {"step": 3, "source": "loop"},
        blobs={
            "messages": SERDE.dumps_typed(["m1", "m2"]),
            "gone": ("empty", None),  # a channel emptied at this version
        },
        writes=list(WRITES),
    )
    t = to_tuple(SERDE, s)
    assert t.config == {
        "configurable": {"thread_id": "t", "checkpoint_ns": "sub:1", "checkpoint_id": "c2"}
    }
    assert t.parent_config == {
        "configurable": {"thread_id": "t", "checkpoint_ns": "sub:1", "checkpoint_id": "c1"}
    }
    assert t.checkpoint["channel_values"] == {"step": 3, "messages": ["m1", "m2"]}
    assert t.checkpoint["id"] == "c2"
    assert t.metadata == {"step": 3, "source": "loop"}
    assert t.pending_writes == [
        ("b", "__error__", "a-b-err"),
        ("b", "x", "a-b-2"),
        ("z", "x", "a-z-0"),
        ("a", "x", "b-a-0"),
        ("a", "x", "b-a-1"),
    ]
    assert s.checkpoint["channel_values"] == {"step": 3}  # the input is left as it was


def test_to_tuple_of_a_root_checkpoint_has_no_parent() -> None:
    t = to_tuple(SERDE, StoredCheckpoint("t", "", "c1", None, {"channel_values": {}}, {}))
    assert t.parent_config is None and t.pending_writes == []


@pytest.mark.parametrize(
    ("blobs", "writes", "named"),
    [
        ({"messages": ("msgpack", b"\xc1")}, [], "channel 'messages' of checkpoint 'c1'"),
        ({}, [WriteRow("task", 0, "~p", "x", "nope", b"")], "write to 'x' by task 'task'"),
    ],
)
def test_to_tuple_names_what_cannot_be_decoded(
    blobs: dict[str, tuple[str, bytes]], writes: list[WriteRow], named: str
) -> None:
    s = StoredCheckpoint("t", "", "c1", None, {"channel_values": {}}, {}, blobs, writes)
    with pytest.raises(CorruptDataError) as err:
        to_tuple(SERDE, s)
    assert named in str(err.value) and "thread 't'" in str(err.value)
