"""The SQL of the SQLite backend: our migrations (which create the official
tables of `langgraph-checkpoint-sqlite` exactly as `AsyncSqliteSaver.setup()`
does) and every statement. Parameters that are lists are passed as one JSON
array: `IN (SELECT value FROM json_each(?))`.
"""

# Append-only; the index is the version. 1-3 are the official tables exactly as
# `AsyncSqliteSaver.setup()` (langgraph-checkpoint-sqlite 3.x) creates them, so
# both savers can share a file whichever set it up first.
MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS hybrid_saver_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
)""",
    """CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
)""",
    # A `writes` table made by an official saver older than `task_path`.
    "ALTER TABLE writes ADD COLUMN task_path TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE checkpoints ADD COLUMN hybrid_checkpoint TEXT",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
)""",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_threads (
    thread_id TEXT PRIMARY KEY,
    applied_seq TEXT NOT NULL DEFAULT ''
)""",
]

# The whole serialized checkpoint is only needed for rows the official saver
# wrote (no `hybrid_checkpoint`).
SELECT_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata,
    hybrid_checkpoint,
    CASE WHEN hybrid_checkpoint IS NULL THEN type END,
    CASE WHEN hybrid_checkpoint IS NULL THEN checkpoint END
FROM checkpoints
"""
# ? 1: JSON array of [thread_id, checkpoint_ns, channel, version]. CROSS JOIN
# keeps json_each the outer loop, so each element is one primary-key search;
# with a plain JOIN the planner scans every blob of the thread, a cost that
# grows with the thread.
SELECT_BLOB_KEYS_SQL = """
SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob FROM json_each(?) AS v
CROSS JOIN hybrid_saver_blobs AS b
    ON b.thread_id = json_extract(v.value, '$[0]')
    AND b.checkpoint_ns = json_extract(v.value, '$[1]')
    AND b.channel = json_extract(v.value, '$[2]')
    AND b.version = json_extract(v.value, '$[3]')
"""
# ? 1: JSON array of [thread_id, checkpoint_ns, checkpoint_id]: which of these
# rows the official saver wrote.
SELECT_OFFICIAL_KEYS_SQL = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id FROM json_each(?) AS v
CROSS JOIN checkpoints AS c
    ON c.thread_id = json_extract(v.value, '$[0]')
    AND c.checkpoint_ns = json_extract(v.value, '$[1]')
    AND c.checkpoint_id = json_extract(v.value, '$[2]')
WHERE c.hybrid_checkpoint IS NULL
"""
SELECT_WRITES_SQL = """
SELECT task_id, idx, task_path, channel, type, value FROM writes
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
"""
SELECT_OFFICIAL_SQL = """
SELECT type, checkpoint FROM checkpoints
WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? AND hybrid_checkpoint IS NULL
"""

# Parameters that are lists are passed as one JSON array: `IN (SELECT value
# FROM json_each(?))`.
SELECT_WATERMARKS_SQL = """
SELECT thread_id, applied_seq FROM hybrid_saver_threads
WHERE thread_id IN (SELECT value FROM json_each(?))
"""
THREAD_IDS_SQL = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > ? ORDER BY thread_id LIMIT ?"
)
SELECT_WATERMARK_SQL = "SELECT applied_seq FROM hybrid_saver_threads WHERE thread_id = ?"
SET_WATERMARK_SQL = """
INSERT INTO hybrid_saver_threads (thread_id, applied_seq) VALUES (?, ?)
ON CONFLICT (thread_id) DO UPDATE SET applied_seq = excluded.applied_seq
"""

INSERT_BLOBS_SQL = """
INSERT OR IGNORE INTO hybrid_saver_blobs
    (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES (?, ?, ?, ?, ?, ?)
"""
UPSERT_CHECKPOINT_SQL = """
INSERT OR REPLACE INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
     metadata, hybrid_checkpoint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
# As the official `aput_writes`: special channels overwrite, others insert once.
_WRITES_INSERT = """INTO writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPSERT_WRITES_SQL = "INSERT OR REPLACE " + _WRITES_INSERT
INSERT_WRITES_SQL = "INSERT OR IGNORE " + _WRITES_INSERT

DELETE_THREAD_SQL = (
    "DELETE FROM checkpoints WHERE thread_id = ?",
    "DELETE FROM writes WHERE thread_id = ?",
    "DELETE FROM hybrid_saver_blobs WHERE thread_id = ?",
)

DELETE_RUNS_SQL = """
DELETE FROM checkpoints
WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') IN (SELECT value FROM json_each(?))
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
DELETE_WRITES_OF_SQL = """
DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
"""
THREAD_DOCS_SQL = """
SELECT thread_id, checkpoint_ns, hybrid_checkpoint FROM checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?)) AND hybrid_checkpoint IS NOT NULL
"""
THREAD_BLOBS_SQL = """
SELECT thread_id, checkpoint_ns, channel, version FROM hybrid_saver_blobs
WHERE thread_id IN (SELECT value FROM json_each(?))
"""
DELETE_BLOB_SQL = """
DELETE FROM hybrid_saver_blobs
WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?
"""
DELTA_THREADS_SQL = """
SELECT DISTINCT thread_id FROM checkpoints
WHERE thread_id IN (SELECT value FROM json_each(?))
    AND json_type(CAST(metadata AS TEXT), '$.counters_since_delta_snapshot') IS NOT NULL
"""
CHECKPOINT_INDEX_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id,
    json_type(CAST(metadata AS TEXT), '$.counters_since_delta_snapshot') IS NOT NULL
FROM checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))
"""
# What `backends._prune` plans a prune from (sqlite/read.py: `chain_rows`):
# every checkpoint's metadata and document (the whole serialized checkpoint
# of a row the official saver wrote), whether it has pending sends, and
# which blobs hold a value.
CHAIN_DOCS_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata,
    hybrid_checkpoint,
    CASE WHEN hybrid_checkpoint IS NULL THEN type END,
    CASE WHEN hybrid_checkpoint IS NULL THEN checkpoint END,
    EXISTS (
        SELECT 1 FROM writes AS w
        WHERE w.thread_id = checkpoints.thread_id AND w.checkpoint_ns = checkpoints.checkpoint_ns
            AND w.checkpoint_id = checkpoints.checkpoint_id AND w.channel = '__pregel_tasks'
    )
FROM checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))
"""
VALUE_BLOBS_SQL = """
SELECT thread_id, checkpoint_ns, channel, version FROM hybrid_saver_blobs
WHERE thread_id IN (SELECT value FROM json_each(?)) AND type <> 'empty'
"""
DELETE_CHECKPOINT_SQL = """
DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?
"""
# A kept checkpoint whose parent was pruned becomes a root, as in PostgresSaver.
UNLINK_PRUNED_PARENTS_SQL = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id IN (SELECT value FROM json_each(?)) AND parent_checkpoint_id IS NOT NULL
    AND NOT EXISTS (
        SELECT 1 FROM checkpoints AS p
        WHERE p.thread_id = checkpoints.thread_id AND p.checkpoint_ns = checkpoints.checkpoint_ns
            AND p.checkpoint_id = checkpoints.parent_checkpoint_id
    )
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
