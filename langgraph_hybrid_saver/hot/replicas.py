"""Replica-acknowledged hot writes (`replicas_ack`): a write, then WAIT.

Redis replicates asynchronously: a write the primary acknowledged may be
missing from the replica a failover promotes. `WAIT n timeout` returns once
`n` replicas have every write its connection sent before it (`WAITAOF 0 n
timeout`: once they have fsynced it to their append-only file). It counts the
writes of its own connection only, so it is sent right after the write on the
connection that carried it, in the same network write: on the saver's lane,
on one connection of redis-py's pool, or on a Redis Cluster on one
connection to the master of the thread's slot. When the connection fails
between the two, both are sent again (every hot write is idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from langgraph_hybrid_saver.errors import ConfigError, ReplicationTimeoutError
from langgraph_hybrid_saver.hot.connection import LaneBroken, raise_queued

if TYPE_CHECKING:
    from langgraph_hybrid_saver.hot.runner import ScriptRunner

# A cluster write whose slot is moving (a failover) is retried this many times,
# backing off from 50 ms to 1 s, before it fails as unreachable.
CLUSTER_ATTEMPTS = 12
_SLOT_MOVING = (AskError, ClusterDownError, MovedError, TryAgainError, ReadOnlyError)
# AttributeError: redis-py closed the connection under us (it drops a failed
# node's connections, in use or not).
_CONNECTION_LOST = (RedisConnectionError, RedisTimeoutError, OSError, AttributeError)


class ReplicaAck:
    """The acknowledgement every hot write waits for."""

    def __init__(self, replicas: int, timeout: float, fsync: bool = False) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(
                f"replicas_ack={replicas!r}: use a positive int (replicas that must have each "
                "write before it returns) or None"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigError(
                f"replicas_ack_timeout={timeout!r}: use a positive number of seconds, e.g. 1.0"
            )
        if not isinstance(fsync, bool):
            raise ConfigError(f"replicas_ack_fsync={fsync!r}: use True or False")
        self.replicas = replicas
        self.timeout = float(timeout)
        self.fsync = fsync
        ms = max(1, round(self.timeout * 1000))
        self.command: tuple[Any, ...] = (
            ("WAITAOF", 0, replicas, ms) if fsync else ("WAIT", replicas, ms)
        )

    async def check_server(self, redis: Any, where: str) -> None:
        """Refuse `replicas_ack_fsync` on a server without WAITAOF (Redis < 7.2)."""
        if not self.fsync:
            return
        try:
            await redis.execute_command("WAITAOF", 0, 0, 0)  # returns at once
        except ResponseError as e:
            raise ConfigError(
                f"replicas_ack_fsync=True needs WAITAOF, which Redis at {where} lacks (it "
                "came with Redis 7.2 and Valkey 8): upgrade it or use replicas_ack alone"
            ) from e

    def check(self, reply: Any, what: str, where: str) -> None:
        """Raise unless `reply` (WAIT's or WAITAOF's) counts enough replicas."""
        if isinstance(reply, Exception):
            raise reply
        count = int(reply[1] if isinstance(reply, list) else reply)
        if count < self.replicas:
            synced = "fsynced" if self.fsync else "acknowledged"
            raise ReplicationTimeoutError(
                f"{what} reached the Redis primary at {where} but {count} of the "
                f"replicas_ack={self.replicas} replicas {synced} it within "
                f"replicas_ack_timeout={self.timeout}s: it is in Redis with its outbox entry "
                "and reaches the durable store unless the primary is lost before a replica "
                "has it; check the replicas (INFO replication) or raise replicas_ack_timeout"
            )

    async def run(
        self,
        runner: ScriptRunner,
        script: Any,
        keys: list[str],
        args: list[Any],
        sets: Sequence[tuple[str, bytes]],
        set_ttl_ms: int,
        what: str,
        stamp: Sequence[Any] = (),
    ) -> Any:
        """Run `script` (in MULTI after plain SETs of `sets` when there are
        any), then `stamp` (a command), then the acknowledgement, on one
        connection; the script's reply."""
        write: list[Sequence[Any]] = [("SET", k, v, "PX", set_ttl_ms) for k, v in sets]
        write.append(("EVALSHA", script.sha, len(keys), *keys, *args))
        if sets:
            write = [("MULTI",), *write, ("EXEC",)]
        if stamp:
            write.append(stamp)
        load: list[tuple[Any, ...]] = []
        for _ in range(2):  # again with the script loaded, on the same connection
            try:
                replies = await self._send(runner, keys[0], [*load, *write])
                replies = replies[len(load) :]
                body = replies[: len(write) - 1] if stamp else replies[: len(write)]
                reply = raise_queued(body)[-1] if sets else body[0]
                if isinstance(reply, Exception):
                    raise reply
                if stamp and isinstance(replies[len(write) - 1], Exception):
                    raise replies[len(write) - 1]
            except NoScriptError:
                load = [("SCRIPT", "LOAD", script.script)]
                continue
            self.check(replies[-1], what, runner.where)
            return reply
        raise NoScriptError(f"the server refused to keep script {script.sha}")

    async def _send(self, runner: ScriptRunner, key: str, write: list[Sequence[Any]]) -> list[Any]:
        """The replies of `write` and of the acknowledgement after it, on one
        connection. WAITAOF goes once the write's reply is in: sent with the
        write, it waits for the replica's next periodic acknowledgement of
        its fsync instead of the one the write's own GETACK brings."""
        lanes = runner.lanes
        commands: list[Sequence[Any]] = [*write, self.command]
        for _ in range(2):  # a broken lane reopens (on the new primary after a failover)
            if lanes is None:
                break
            try:
                if self.fsync:
                    return await lanes.send(write, then=[self.command])
                return await lanes.send(commands)
            except LaneBroken as e:
                runner.lane_failed(e)
                lanes = runner.lanes
        if runner.cluster:
            groups: list[list[Sequence[Any]]] = (
                [write, [self.command]] if self.fsync else [commands]
            )
            return await _cluster_send(runner.redis, key, groups)
        async with runner.redis.pipeline(transaction=False) as pipe:  # one pooled connection
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, ReadOnlyError) for r in replies):
            raise RedisConnectionError("READONLY: the server is a replica now (a failover)")
        return replies


async def _read_replies(conn: Any, n: int) -> list[Any]:
    """`n` replies, an error reply in its place (as a pipeline's); a moving
    slot or a lost connection is raised."""
    replies: list[Any] = []
    for _ in range(n):
        try:
            replies.append(await conn.read_response())
        except (*_SLOT_MOVING, RedisConnectionError, RedisTimeoutError):
            raise
        except ResponseError as e:
            replies.append(e)
    return replies


async def _cluster_send(
    cluster: RedisCluster, key: str, groups: list[list[Sequence[Any]]]
) -> list[Any]:
    """`groups` of commands on one connection to the master of `key`'s slot,
    each sent once the replies of the one before are in; while the
    slot moves (a failover, a reshard) the topology is read again and the
    commands sent again, up to CLUSTER_ATTEMPTS times."""
    delay = 0.05
    for attempt in range(CLUSTER_ATTEMPTS):
        node = cluster.get_node_from_key(key)
        if node is None:
            raise RedisConnectionError(f"no master known for the slot of {key!r}")
        conn = node.acquire_connection()
        try:
            replies = []
            for commands in groups:
                await conn.send_packed_command(conn.pack_commands(commands))
                replies += await _read_replies(conn, len(commands))
            return replies
        except (*_SLOT_MOVING, *_CONNECTION_LOST) as e:
            await conn.disconnect()
            if attempt == CLUSTER_ATTEMPTS - 1:
                if isinstance(e, RedisConnectionError | RedisTimeoutError):
                    raise
                raise RedisConnectionError(
                    f"the slot of {key!r} did not settle on a master ({type(e).__name__}: {e})"
                ) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                await cluster.nodes_manager.initialize()
            except (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError):
                pass
        finally:
            node.release(conn)
    raise AssertionError("unreachable")
