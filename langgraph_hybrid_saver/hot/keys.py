"""The one Redis key schema (LAYOUT_VERSION in every key, so a later layout
can migrate). A thread is assigned to one of `shards` hash tags by crc32;
every key of the thread and the outbox streams of its shard carry that tag,
so each Lua script touches one slot and works on Redis Cluster.

    {prefix}:v1:{<shard>}:<len>:<thread_id>           thread base
      base:n                  set     namespaces of the thread
      base:g                  string  generation, bumped by delete/invalidate
      base:L / base:T         string  per-thread lease "token|owner" / token counter
      base:x                  string  tombstone of the last delete (a checkpoint id)
      base:o                  hash    n: outbox entries not yet durable (dead letters
                                      included), d: dead letters, t/w: ttl and window
                                      to apply once n is back to 0
      base:i:<len>:<ns>       zset    checkpoint ids (score 0, ordered by id)
      base:c:<len>:<ns>       hash    checkpoint id -> record
      base:b:<len>:<ns>       hash    channel NUL version -> type NUL blob, or '' when
                                      the value is large and in a key of its own:
      base:v:<len>:<ns>:<field>  string  a large blob value (type NUL blob)
      base:V:<len>:<ns>       set     the fields whose values are in such keys
      base:h                  set     `v` keys a drop of the thread left for its pending
                                      entries to read; deleted when the thread settles
      base:p:<entry id>:<field>  string  a large value of an outbox entry (record 'R',
                                      older layouts: entries now read the `v` key)
      base:t:<random>:<i>     string  a large value on its way into the put script
      base:w:<len>:<ns>       hash    checkpoint id NUL task NUL idx -> write
      base:z:<len>:<ns>       zset    the same write fields, for a range by id
      base:f:<len>:<ns>       string  set while Redis holds every checkpoint of the ns
    {prefix}:v1:s:{<shard>}:<len>:<thread_id>    string  the thread's stamp: written
                                      after every script that changes what a read of
                                      the thread returns (local caches track the prefix)
    {prefix}:v1:{<shard>}:outbox    stream  entries not yet in the durable store
    {prefix}:v1:{<shard>}:dead      stream  entries the durable store refused
    {prefix}:v1:{<shard>}:dead:idx  hash    outbox entry id -> its dead letter's id
    {prefix}:v1:{<shard>}:threads   set     thread index: the shard's threads, and
                                      '\0complete' once the durable store's are in
    {prefix}:v1:lease:<shard>       string  the reconciler that owns the shard
    {prefix}:v1:meta                hash    layout facts every process must share
    {prefix}:v1:meta:workers        zset    live reconcilers, by heartbeat deadline
    {prefix}:v1:meta:index-build    string  the thread index build lease

The Lua scripts build a thread's keys from its base with the same rules
(`nk` in scripts/prelude.lua). Lengths are UTF-8 byte lengths (Lua's `#`).
"""

from __future__ import annotations

import secrets
import zlib

LAYOUT_VERSION = "v1"


class Keys:
    """Key names for one prefix and shard count."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.shards = shards
        self.root = f"{prefix}:{LAYOUT_VERSION}"
        self.meta = f"{self.root}:meta"
        self.workers = f"{self.meta}:workers"
        self.outboxes = [f"{self.shard_root(s)}outbox" for s in range(shards)]
        self.dead = [f"{self.shard_root(s)}dead" for s in range(shards)]
        self.dead_index = [f"{self.shard_root(s)}dead:idx" for s in range(shards)]
        self.leases = [f"{self.root}:lease:{s}" for s in range(shards)]
        self.thread_index = [f"{self.shard_root(s)}threads" for s in range(shards)]
        self.index_build = f"{self.meta}:index-build"
        self.stamps = f"{self.root}:s:"  # the prefix local caches track

    def stamp(self, thread_id: str) -> str:
        """The thread's stamp key (same slot as its base)."""
        shard = self.shard(thread_id)
        return f"{self.stamps}{{{shard}}}:{len(thread_id.encode())}:{thread_id}"

    def stamped_thread(self, key: bytes) -> str | None:
        """The thread of a stamp key, or None for another key."""
        text = key.decode("utf-8", "surrogateescape")
        if not text.startswith(self.stamps):
            return None
        _, _, rest = text[len(self.stamps) :].partition("}:")
        length, _, thread_id = rest.partition(":")
        return thread_id if length.isdigit() else None

    def shard(self, thread_id: str) -> int:
        return zlib.crc32(thread_id.encode()) % self.shards

    def shard_root(self, shard: int) -> str:
        """What every key of a shard starts with (the hash tag)."""
        return f"{self.root}:{{{shard}}}:"

    def base(self, thread_id: str) -> str:
        shard = self.shard(thread_id)
        return f"{self.shard_root(shard)}{len(thread_id.encode())}:{thread_id}"

    def ns_key(self, thread_id: str, kind: str, ns: str) -> str:
        """A namespace's key of `kind` (i, c, b, w, z, f, V), as `nk` builds it."""
        return f"{self.base(thread_id)}:{kind}:{len(ns.encode())}:{ns}"

    def large(self, thread_id: str, ns: str, field: bytes) -> bytes:
        """The key of a large blob value, `large_key` in the scripts."""
        return f"{self.ns_key(thread_id, 'v', ns)}:".encode() + field

    def entry_value(self, entry_id: str, entry: dict[bytes, bytes], field: bytes) -> bytes | None:
        """The key holding the value of a large field of outbox entry `entry`:
        the thread's `v` key (record 'V'), the entry's own `p` key (record
        'R', written by older layouts), None when the entry has none."""
        thread_id = entry.get(b"t")
        if thread_id is None:
            return None
        tid = thread_id.decode(errors="replace")
        if b"V" in entry and b"n" in entry:
            return self.large(tid, entry[b"n"].decode(errors="replace"), field)
        if b"R" in entry:
            return f"{self.base(tid)}:p:{entry_id}:".encode() + field
        return None

    @property
    def threads_pattern_root(self) -> str:
        """What every thread key starts with, up to its shard number."""
        return f"{self.root}:{{"

    def after_thread(self, key: bytes) -> bytes | None:
        """What follows `<root>:{<shard>}:<len>:<thread_id>` in a key (`:n`,
        `:p:<entry>:<field>`, ...), or None when the key is not a thread's."""
        root = self.threads_pattern_root.encode()
        if not key.startswith(root):
            return None
        shard, sep, rest = key[len(root) :].partition(b"}:")
        length, sep2, rest = rest.partition(b":")
        if not (sep and sep2 and shard.isdigit() and length.isdigit()):
            return None
        n = int(length)
        return rest[n:] if len(rest) > n else None

    def temporary(self, thread_id: str) -> str:
        """A fresh prefix for the large values of one put (secrets, not uuid4:
        LangGraph's deterministic tests patch uuid4)."""
        return f"{self.base(thread_id)}:t:{secrets.token_hex(16)}:"
