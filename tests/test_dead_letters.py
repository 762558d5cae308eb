"""Dead letters on real Redis and every durable store: list and show them,
retry them (the reconciler then applies them and the thread gets its TTL
back), drop them (gone for good, the thread released), refuse what would
bring a deleted thread back, and keep a large value across a retry.

Dead letters are made as the reconciler makes them: entries a saver wrote are
read from the outbox and moved with `HotTier.dead_letter`. The CLI runs
in-process through click's CliRunner, in a thread (it runs its own loop).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from langgraph_hybrid_saver import AsyncHybridSaver, ConfigError, NotFoundError
from langgraph_hybrid_saver.cli import cli
from langgraph_hybrid_saver.hot import PIN_MIN_BYTES
from langgraph_hybrid_saver.ops import open_target
from langgraph_hybrid_saver.outbox import deadletters as dl
from langgraph_hybrid_saver.outbox.stream import Outbox

from .conftest import hybrid_saver
from .helpers import BIG, reconcile

HOT_KEYS = (":i:0:", ":c:0:", ":n")  # root-namespace keys of a thread


@pytest.fixture
async def saver(
    redis_url: str, durable_url: str, key_prefix: str
) -> AsyncIterator[AsyncHybridSaver]:
    async with hybrid_saver(redis_url, durable_url, key_prefix, reconciler="external", ttl=2) as s:
        yield s


@pytest.fixture
def conn(redis_url: str, key_prefix: str) -> list[str]:
    return ["--redis", redis_url, "--key-prefix", key_prefix]


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def invoke_json(*args: str) -> Any:
    result = await invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def put(saver: AsyncHybridSaver, tid: str, note: str, *, big: bool = False) -> Any:
    """A checkpoint with a `note` channel (and a large `messages` one), and a
    pending write to it; returns its config."""
    version = saver.get_next_version(None, None)
    values: dict[str, Any] = {"note": [note]}  # a list: a blob, not inline
    if big:
        values["messages"] = BIG
    cp = generate_checkpoint(channel_values=values, channel_versions=dict.fromkeys(values, version))
    config = await saver.aput(
        generate_config(tid), cp, generate_metadata(step=0), dict.fromkeys(values, version)
    )
    if not big:
        await saver.aput_writes(config, [("note", f"w-{note}")], "task-1")
    return config


async def dead_letter_outbox(saver: AsyncHybridSaver) -> list[str]:
    """Move every outbox entry to the dead-letter streams, as the reconciler
    does with entries the store refuses; returns their outbox ids."""
    outbox = saver.outbox
    entries = await outbox.read(list(range(outbox.shards)), 1000, None)
    # Stream ids are per stream: past the millisecond of the last outbox
    # entry, no dead letter id equals an outbox entry's id of its shard.
    await asyncio.sleep(0.005)
    for shard, sid, _ in entries:
        await outbox.dead_letter(shard, sid, f"test reason for {sid}")
    return [sid for _, sid, _ in entries]


async def dead_count(saver: AsyncHybridSaver) -> int:
    return await saver.outbox.dead_letters()


async def pending(saver: AsyncHybridSaver, tid: str) -> bytes | None:
    result: bytes | None = await saver.hot.redis.hget(f"{saver.hot.base(tid)}:o", "n")
    return result


async def pttls(saver: AsyncHybridSaver, tid: str) -> list[int]:
    base = saver.hot.base(tid)
    return [await saver.hot.redis.pttl(f"{base}{k}") for k in HOT_KEYS]


async def v_keys(saver: AsyncHybridSaver, tid: str) -> list[bytes]:
    pattern = f"{saver.hot.base(tid)}:v:*"
    return sorted([k async for k in saver.hot.redis.scan_iter(pattern)])


# --- reading --------------------------------------------------------------------


async def test_list_and_show_dead_letters(
    saver: AsyncHybridSaver, conn: list[str], redis_url: str, key_prefix: str
) -> None:
    tid, other = f"dl-{uuid.uuid4()}", f"dl-{uuid.uuid4()}"
    config = await put(saver, tid, "a")
    await put(saver, other, "b")
    sids = await dead_letter_outbox(saver)
    assert len(sids) == 4  # a put and a writes entry per thread
    cid = config["configurable"]["checkpoint_id"]

    letters = await dl.list_dead_letters(saver.hot, thread=tid)
    assert [(d.kind, d.thread_id, d.checkpoint_ns, d.checkpoint_id) for d in letters] == [
        ("checkpoint", tid, "", cid),
        ("writes", tid, "", cid),
    ]
    put_letter = letters[0]
    assert (
        put_letter.outbox_id in sids
        and put_letter.reason == f"test reason for {put_letter.outbox_id}"
    )
    assert put_letter.shard == saver.hot.shard(tid) and put_letter.size > 0
    assert 0 <= put_letter.age_seconds < 30
    assert len(await dl.list_dead_letters(saver.hot)) == 4
    assert len(await dl.list_dead_letters(saver.hot, limit=3)) == 3

    # show: by the dead letter's id or the outbox entry's, decoded
    by_dead = await dl.show(saver.hot, put_letter.ref)
    by_outbox = await dl.show(saver.hot, f"{put_letter.shard}:{put_letter.outbox_id}")
    assert by_dead.letter.dead_id == by_outbox.letter.dead_id
    assert by_dead.operation == by_outbox.operation
    op = by_dead.operation
    assert op is not None and op["op"] == "checkpoint" and op["checkpoint_id"] == cid
    assert [b["channel"] for b in op["blobs"]] == ["note"]
    assert {f.name: f.value for f in by_dead.fields}["t"] == tid
    writes = (await dl.show(saver.hot, letters[1].ref)).operation
    assert writes is not None and writes["op"] == "writes"
    assert [(w["task_id"], w["channel"]) for w in writes["writes"]] == [("task-1", "note")]

    # the CLI: JSON and tables; status names the command
    listed = await invoke_json("dead-letters", "list", *conn, "--thread", tid)
    assert listed["count"] == 2
    assert [d["ref"] for d in listed["dead_letters"]] == [d.ref for d in letters]
    table = await invoke("dead-letters", "list", *conn)
    assert table.exit_code == 0, table.output
    assert (
        "4 dead letters" in table.stdout and tid in table.stdout and "test reason" in table.stdout
    )
    by_entry = f"{put_letter.shard}:{put_letter.outbox_id}"
    shown = await invoke_json("dead-letters", "show", by_entry, *conn)
    assert shown["dead_id"] == put_letter.dead_id and shown["operation"]["checkpoint_id"] == cid
    rendered = await invoke("dead-letters", "show", put_letter.ref, *conn)
    assert rendered.exit_code == 0, rendered.output
    assert cid in rendered.stdout and "Channel values" in rendered.stdout
    status = await invoke("status", "--no-scan", *conn)
    assert "4 entries not durable (refused or undecodable)" in status.stdout
    assert "dead-letters list" in status.stdout

    # unknown and malformed ids
    with pytest.raises(NotFoundError):
        await dl.show(saver.hot, "1-0")
    for command in ("show", "retry", "drop"):
        extra = ["--yes"] if command == "drop" else []
        unknown = await invoke("dead-letters", command, "1-0", *conn, *extra)
        assert unknown.exit_code == 4, unknown.output
        assert "no dead letter has id 1-0" in unknown.output
    malformed = await invoke("dead-letters", "show", "nope", *conn)
    assert malformed.exit_code == 2, malformed.output
    assert await dead_count(saver) == 4  # reading changed nothing
    empty = await invoke(
        "dead-letters", "list", "--redis", redis_url, "--key-prefix", key_prefix + "x"
    )
    assert empty.exit_code == 0 and "no dead letters" in empty.stdout


async def test_an_id_several_shards_have_needs_its_shard(
    redis_url: str, key_prefix: str, conn: list[str]
) -> None:
    """Stream ids are per stream: the same outbox id in two shards (here set
    explicitly; under load, entries of one millisecond) is ambiguous alone."""
    async with open_target(redis_url, None, prefix=key_prefix) as target:
        hot = target.hot
        tids = [next(t for t in (f"t{i}" for i in range(999)) if hot.shard(t) == s) for s in (0, 1)]
        try:
            for shard, tid in enumerate(tids):  # undecodable entries: no namespace
                await hot.redis.xadd(hot.keys.outboxes[shard], {"k": "p", "t": tid}, id="1-1")
                await Outbox(hot).dead_letter(shard, "1-1", "cannot be decoded")
            with pytest.raises(ConfigError, match="names 2 dead letters"):
                await dl.show(hot, "1-1")
            ambiguous = await invoke("dead-letters", "retry", "1-1", *conn)
            assert ambiguous.exit_code == 2 and "SHARD:ID" in ambiguous.output
            detail = await dl.show(hot, "1:1-1")
            assert detail.letter.shard == 1 and detail.letter.thread_id == tids[1]
            assert detail.operation is None and "cannot be decoded" in (detail.decode_error or "")
            refs = [d.ref for d in await dl.list_dead_letters(hot)]
            dropped = await invoke_json("dead-letters", "drop", *refs, "--yes", *conn)
            assert [r["status"] for r in dropped["results"]] == ["dropped", "dropped"]
            assert await Outbox(hot).dead_letters() == 0
        finally:
            keys = [k async for k in hot.redis.scan_iter(f"{key_prefix}:*")]
            if keys:
                await hot.redis.delete(*keys)


# --- retry ----------------------------------------------------------------------


async def test_retry_is_applied_and_releases_the_thread(
    saver: AsyncHybridSaver, conn: list[str]
) -> None:
    tid = f"dl-{uuid.uuid4()}"
    config = await put(saver, tid, "a")
    cid = config["configurable"]["checkpoint_id"]
    await dead_letter_outbox(saver)
    assert await pending(saver, tid) == b"2"  # both entries still count
    assert await reconcile(saver) == 0

    result = await invoke_json("dead-letters", "retry", "--all", "--thread", tid, *conn)
    assert [r["status"] for r in result["results"]] == ["retried", "retried"]
    assert await dead_count(saver) == 0
    assert await saver.hot.redis.hlen(saver.hot.keys.dead_index[saver.hot.shard(tid)]) == 0
    assert await pending(saver, tid) == b"2"  # still pending, now in the outbox
    assert await pttls(saver, tid) == [-1, -1, -1]

    assert await reconcile(saver) == 2
    stored = await saver.backend.get(tid, "", cid)
    assert stored is not None and stored.checkpoint_id == cid
    assert [(w.task_id, w.channel) for w in stored.writes] == [("task-1", "note")]
    assert await pending(saver, tid) is None  # settled ...
    assert all(t > 0 for t in await pttls(saver, tid))  # ... and its TTL applies again
    again = await invoke_json("dead-letters", "retry", "--all", *conn)
    assert again == {"count": 0, "results": []}


async def test_retry_keeps_a_large_value(saver: AsyncHybridSaver) -> None:
    assert saver.hot.pin_min == PIN_MIN_BYTES
    tid = f"dl-{uuid.uuid4()}"
    config = await put(saver, tid, "big", big=True)
    (sid,) = await dead_letter_outbox(saver)
    (value,) = await v_keys(saver, tid)  # the hot copy is what the entry reads
    assert await saver.hot.redis.pttl(value) == -1
    shown = await dl.show(saver.hot, sid)
    assert shown.operation is not None
    sizes = {b["channel"]: b["size"] for b in shown.operation["blobs"]}
    assert sizes["messages"] > PIN_MIN_BYTES
    assert [f.missing for f in shown.fields if f.large_key] == [False]

    (outcome,) = await dl.retry(saver.hot, [sid])
    assert outcome.status == "retried" and outcome.new_outbox_id is not None
    assert await v_keys(saver, tid) == [value]
    assert await reconcile(saver) == 1
    stored = await saver.backend.get(tid, "", config["configurable"]["checkpoint_id"])
    assert stored is not None
    latest = await saver.aget_tuple(generate_config(tid))
    assert latest is not None and latest.checkpoint["channel_values"]["messages"] == BIG
    assert len(stored.blobs["messages"][1] or b"") > PIN_MIN_BYTES
    assert await v_keys(saver, tid) == [value]  # the hot copy, now with a TTL
    assert await saver.hot.redis.pttl(value) > 0
    assert await pending(saver, tid) is None


async def test_retry_refuses_what_would_undo_a_delete(
    saver: AsyncHybridSaver, conn: list[str]
) -> None:
    # An entry of a thread deleted since it was written: refused, nothing changes.
    tid = f"dl-{uuid.uuid4()}"
    await put(saver, tid, "a")
    sids = await dead_letter_outbox(saver)
    await saver.adelete_thread(tid)
    before = await dl.list_dead_letters(saver.hot)
    refused = await invoke("dead-letters", "retry", *sids, *conn, "--json")
    assert refused.exit_code == 1, refused.output
    assert "2 of 2 dead letters were refused" in refused.stderr
    results = json.loads(refused.stdout)["results"]
    assert [r["status"] for r in results] == ["refused", "refused"]
    assert all("was deleted after this entry was written" in r["message"] for r in results)
    table = await invoke("dead-letters", "retry", *sids, *conn)
    assert table.exit_code == 1 and "refused" in table.stdout
    assert [d.dead_id for d in await dl.list_dead_letters(saver.hot)] == [d.dead_id for d in before]
    await reconcile(saver)  # the delete entry; no put comes back
    assert await saver.backend.get(tid, "", None) is None
    assert await pending(saver, tid) == b"2"

    # A delete entry retried after the thread was written again: refused; once
    # nothing was written since, it may go.
    tid2 = f"dl-{uuid.uuid4()}"
    # A delete whose durable half failed (the store was down): its entry
    # waits in the outbox for the reconciler.
    await saver.hot.drop_thread(tid2, queue=True)
    (delete_sid,) = await dead_letter_outbox(saver)
    assert (await dl.show(saver.hot, delete_sid)).operation == {
        "op": "delete",
        "thread_id": tid2,
    }
    config = await put(saver, tid2, "after")
    (no,) = await dl.retry(saver.hot, [delete_sid])
    assert no.status == "refused" and "written after this delete" in no.message
    await reconcile(saver)
    assert await saver.backend.get(tid2, "", config["configurable"]["checkpoint_id"]) is not None
    tid3 = f"dl-{uuid.uuid4()}"
    await put(saver, tid3, "before")
    await reconcile(saver)
    await saver.hot.drop_thread(tid3, queue=True)
    (delete3,) = await dead_letter_outbox(saver)
    (yes,) = await dl.retry(saver.hot, [delete3])  # nothing written since the delete
    assert yes.status == "retried"
    assert await reconcile(saver) == 1
    assert await pending(saver, tid3) is None

    # A put whose checkpoint Redis holds a newer record of (put again since).
    tid4 = f"dl-{uuid.uuid4()}"
    config4 = await put(saver, tid4, "old")
    await dead_letter_outbox(saver)
    cid4 = config4["configurable"]["checkpoint_id"]
    await saver.hot.redis.hset(f"{saver.hot.base(tid4)}:c:0:", cid4, b"newer record")
    (put4,) = [
        d for d in await dl.list_dead_letters(saver.hot, thread=tid4) if d.kind == "checkpoint"
    ]
    (superseded,) = await dl.retry(saver.hot, [put4.ref])
    assert superseded.status == "refused" and "written again since" in superseded.message
    assert await dl.show(saver.hot, put4.ref)  # still there

    # What is refused can still be dropped.
    dropped = await invoke_json("dead-letters", "drop", "--all", "--yes", *conn)
    results = dropped["results"]
    assert sorted(r["thread_id"] for r in results) == sorted([tid, tid, tid2, tid4, tid4])
    assert {r["status"] for r in results} == {"dropped"}
    assert await dead_count(saver) == 0
    assert await pending(saver, tid) is None and await pending(saver, tid2) is None


# --- drop -----------------------------------------------------------------------


async def test_drop_forgets_the_entry_and_releases_the_thread(
    saver: AsyncHybridSaver, conn: list[str]
) -> None:
    tid = f"dl-{uuid.uuid4()}"
    config = await put(saver, tid, "big", big=True)
    (sid,) = await dead_letter_outbox(saver)
    (value,) = await v_keys(saver, tid)
    assert await saver.hot.redis.pttl(value) == -1

    unconfirmed = await invoke("dead-letters", "drop", sid, *conn)
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    usage = await invoke("dead-letters", "drop", "--yes", *conn)
    assert usage.exit_code == 2 and "--all" in usage.output
    assert await dead_count(saver) == 1 and await pending(saver, tid) == b"1"

    dropped = await invoke("dead-letters", "drop", sid, "--yes", *conn)
    assert dropped.exit_code == 0, dropped.output
    assert "will never be durable" in dropped.stdout
    assert await dead_count(saver) == 0
    assert await saver.hot.redis.hlen(saver.hot.keys.dead_index[saver.hot.shard(tid)]) == 0
    assert await saver.hot.redis.pttl(value) > 0  # the hot copy expires with the thread
    assert await pending(saver, tid) is None
    assert all(t > 0 for t in await pttls(saver, tid))  # the TTL held back applies
    assert await reconcile(saver) == 0
    cid = config["configurable"]["checkpoint_id"]
    assert await saver.backend.get(tid, "", cid) is None  # never durable
    gone = await invoke("dead-letters", "drop", sid, "--yes", *conn)
    assert gone.exit_code == 4
