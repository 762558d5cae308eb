"""The SQL of the PostgreSQL backend: our migrations and every statement.

Statements name the official tables of `langgraph-checkpoint-postgres`
(`checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) and ours
(`hybrid_saver_threads`: the per-thread watermark; the session's temporary
`hybrid_saver_stage`).
"""

# Append-only; the index is the version (as in checkpoint-postgres).
MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS hybrid_saver_migrations (v INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS hybrid_saver_threads (
    thread_id TEXT PRIMARY KEY,
    applied_seq TEXT NOT NULL DEFAULT ''
)""",
    # Large values are compressed by TOAST; lz4 is faster than pglz (the
    # default) and compresses checkpoint blobs smaller
    # (benchmarks/results/experiments/toast.md). New values only, no
    # rewrite; readers (PostgresSaver too) see no difference. A server older
    # than 14 or built without lz4 keeps pglz.
    """DO $$ BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        ALTER TABLE checkpoint_blobs ALTER COLUMN blob SET COMPRESSION lz4;
        ALTER TABLE checkpoint_writes ALTER COLUMN blob SET COMPRESSION lz4;
    END IF;
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$""",
    # A small batch in one statement (APPLY_SQL): the lock, the check that
    # the watermarks are those the batch was planned with, each run's rows
    # and delete, the new watermarks. `batch`: {"t": thread ids, "e":
    # {thread: watermark planned with}, "m": {thread: new watermark}, "d":
    # one entry per run (the thread its delete empties, or null), "r": rows
    # as `staged_rows` makes them, blob in base64}. Returns false, having
    # written nothing but the lock's watermark rows, when a watermark
    # differs: the caller plans again from the stored ones. Its statements
    # are STAGED_SQL's and DELETE_THREAD_SQL's over the batch's rows (a
    # migration's text stays as applied, so they are written out here);
    # tests/test_pg_apply.py runs every case both ways.
    """CREATE OR REPLACE FUNCTION hybrid_saver_apply(batch jsonb) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_seg int;
    v_del text;
BEGIN
    INSERT INTO hybrid_saver_threads (thread_id)
    SELECT t FROM jsonb_array_elements_text(batch -> 't') AS t ORDER BY 1
    ON CONFLICT (thread_id) DO UPDATE SET thread_id = EXCLUDED.thread_id;
    IF EXISTS (
        SELECT 1 FROM hybrid_saver_threads h
        JOIN jsonb_each_text(batch -> 'e') AS e(thread_id, seq) ON h.thread_id = e.thread_id
        WHERE h.applied_seq <> e.seq
    ) THEN
        RETURN false;
    END IF;
    FOR v_seg, v_del IN
        SELECT o - 1, d FROM jsonb_array_elements_text(batch -> 'd') WITH ORDINALITY AS x(d, o)
        ORDER BY o
    LOOP
        WITH r AS (
            SELECT e ->> 1 AS kind, e ->> 2 AS thread_id, e ->> 3 AS checkpoint_ns,
                e ->> 4 AS checkpoint_id, e ->> 5 AS parent_checkpoint_id,
                e ->> 6 AS checkpoint, e ->> 7 AS metadata, e ->> 8 AS channel,
                e ->> 9 AS version, e ->> 10 AS task_id, e ->> 11 AS task_path,
                (e ->> 12)::int AS idx, e ->> 13 AS type, decode(e ->> 14, 'base64') AS blob
            FROM jsonb_array_elements(batch -> 'r') AS e WHERE (e ->> 0)::int = v_seg
        ), b AS (
            INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
            SELECT r.thread_id, r.checkpoint_ns, r.channel, r.version, r.type, r.blob
            FROM r WHERE r.kind = 'b'
            ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
        ), c AS (
            INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                parent_checkpoint_id, checkpoint, metadata)
            SELECT r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.parent_checkpoint_id,
                r.checkpoint::jsonb, r.metadata::jsonb
            FROM r WHERE r.kind = 'c'
            ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
            DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
        ), w AS (
            INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
                task_path, idx, channel, type, blob)
            SELECT r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.task_id, r.task_path,
                r.idx, r.channel, r.type, r.blob
            FROM r WHERE r.kind = 'w'
            ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
        )
        INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id,
            task_path, idx, channel, type, blob)
        SELECT r.thread_id, r.checkpoint_ns, r.checkpoint_id, r.task_id, r.task_path, r.idx,
            r.channel, r.type, r.blob
        FROM r WHERE r.kind = 'u'
        ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
        DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob;
        IF v_del IS NOT NULL THEN
            DELETE FROM checkpoints WHERE thread_id = v_del;
            DELETE FROM checkpoint_blobs WHERE thread_id = v_del;
            DELETE FROM checkpoint_writes WHERE thread_id = v_del;
        END IF;
    END LOOP;
    UPDATE hybrid_saver_threads h SET applied_seq = m.seq
    FROM jsonb_each_text(batch -> 'm') AS m(thread_id, seq)
    WHERE h.thread_id = m.thread_id;
    RETURN true;
END $fn$""",
]

# One setup at a time per schema. Taken with try-and-sleep, never a blocking
# wait: the official migrations run CREATE INDEX CONCURRENTLY, which waits for
# every open transaction, including a session blocked on the lock.
SETUP_LOCK_SQL = "SELECT pg_try_advisory_lock(8842001, hashtext(current_schema())) AS ok"
SETUP_UNLOCK_SQL = "SELECT pg_advisory_unlock(8842001, hashtext(current_schema()))"

SELECT_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata,
    (
        SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        FROM jsonb_each_text(checkpoint -> 'channel_versions')
        INNER JOIN checkpoint_blobs bl
            ON bl.thread_id = checkpoints.thread_id
            AND bl.checkpoint_ns = checkpoints.checkpoint_ns
            AND bl.channel = jsonb_each_text.key
            AND bl.version = jsonb_each_text.value
    ) AS channel_values,
    (
        SELECT array_agg(array[cw.task_id::bytea, cw.channel::bytea, cw.type::bytea,
            cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        FROM checkpoint_writes cw
        WHERE cw.thread_id = checkpoints.thread_id
            AND cw.checkpoint_ns = checkpoints.checkpoint_ns
            AND cw.checkpoint_id = checkpoints.checkpoint_id
    ) AS pending_writes
FROM checkpoints
"""

SELECT_BLOBS_SQL = """
SELECT channel, type, blob FROM checkpoint_blobs
WHERE thread_id = %s AND checkpoint_ns = %s
  AND (channel, version) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""

# Taken in thread order by every writer, so concurrent batches cannot deadlock.
# Creates the threads' watermark rows if needed and locks them (in thread_id
# order, so concurrent appliers cannot deadlock), returning the watermarks:
# one round trip. The no-op update is what takes the lock on existing rows.
LOCK_THREADS_SQL = """
INSERT INTO hybrid_saver_threads (thread_id)
SELECT unnest(%s::text[]) ORDER BY 1
ON CONFLICT (thread_id) DO UPDATE SET thread_id = EXCLUDED.thread_id
RETURNING thread_id, applied_seq,
    to_regclass('pg_temp.hybrid_saver_stage') IS NOT NULL AS staged
"""
THREAD_IDS_SQL = (
    "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > %s ORDER BY thread_id LIMIT %s"
)
SELECT_WATERMARK_SQL = "SELECT applied_seq FROM hybrid_saver_threads WHERE thread_id = %s"

APPLY_SQL = "SELECT hybrid_saver_apply(%s::jsonb) AS applied"

SET_WATERMARKS_SQL = """
UPDATE hybrid_saver_threads t SET applied_seq = v.seq
FROM unnest(%s::text[], %s::text[]) AS v(thread_id, seq)
WHERE t.thread_id = v.thread_id
"""

# A batch's rows reach the official tables through one binary COPY into a
# temporary staging table and one statement per run (STAGED_SQL): psycopg's
# executemany spends an order of magnitude more client CPU per row than a
# binary COPY (benchmarks/results/experiments/bulk.md), CPU an in-process
# reconciler takes from the application's event loop. The table is created by the first
# batch of a session that lacks it (the watermark lock says whether it
# exists: a pooler or DISCARD may hand us a session without it); ON COMMIT
# DELETE ROWS empties it with the transaction. Named with its schema
# (pg_temp) wherever used, so no table of the search path can stand in.
# `seg` is the run of `apply_order` a row belongs to, `kind` its table:
# b(lob), c(heckpoint), w(rite, insert-once), u(pserted write).
STAGE_SQL = """
CREATE TEMP TABLE hybrid_saver_stage (
    seg int, kind text, thread_id text, checkpoint_ns text, checkpoint_id text,
    parent_checkpoint_id text, checkpoint text, metadata text, channel text, version text,
    task_id text, task_path text, idx int, type text, blob bytea
) ON COMMIT DELETE ROWS
"""
STAGE_TYPES = ["int4", "text", "text", "text", "text", "text", "text", "text", "text", "text",
               "text", "text", "int4", "text", "bytea"]  # fmt: skip
TEMP_PRIVILEGE_SQL = """
SELECT has_database_privilege(current_database(), 'TEMP') AS ok, current_database() AS db,
    current_user AS usr
"""
COPY_STAGE_SQL = "COPY pg_temp.hybrid_saver_stage FROM STDIN (FORMAT BINARY)"

# One segment's rows into the three tables, one statement (one statement
# per kind cost a round of psycopg's pipeline machinery each). The kinds
# write disjoint rows (`staged_rows` drops an insert-once write whose key an
# upsert of the same run overwrites), so the sub-statements, which run on one
# snapshot, cannot meet.
STAGED_SQL = """
WITH b AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM pg_temp.hybrid_saver_stage
    WHERE seg = %(seg)s AND kind = 'b'
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), c AS (
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint::jsonb,
        metadata::jsonb
    FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'c'
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
), w AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
    FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'w'
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
)
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM pg_temp.hybrid_saver_stage WHERE seg = %(seg)s AND kind = 'u'
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
"""

SERVER_VERSION_SQL = "SHOW server_version"

DELETE_THREAD_SQL = (
    "DELETE FROM checkpoints WHERE thread_id = %s",
    "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
    "DELETE FROM checkpoint_writes WHERE thread_id = %s",
)

DELETE_RUNS_SQL = """
DELETE FROM checkpoints WHERE metadata ->> 'run_id' = ANY(%s)
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""
DELETE_WRITES_OF_SQL = """
DELETE FROM checkpoint_writes w
USING unnest(%s::text[], %s::text[], %s::text[]) AS d(thread_id, checkpoint_ns, checkpoint_id)
WHERE w.thread_id = d.thread_id AND w.checkpoint_ns = d.checkpoint_ns
  AND w.checkpoint_id = d.checkpoint_id
"""
# Blobs no remaining checkpoint of the thread refers to.
DELETE_ORPHAN_BLOBS_SQL = """
DELETE FROM checkpoint_blobs b
WHERE b.thread_id = ANY(%s) AND NOT EXISTS (
    SELECT 1 FROM checkpoints c
    WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
)
"""
DELTA_THREADS_SQL = """
SELECT DISTINCT thread_id FROM checkpoints
WHERE thread_id = ANY(%s) AND metadata ? 'counters_since_delta_snapshot'
"""
CHECKPOINT_INDEX_SQL = """
SELECT thread_id, checkpoint_ns, checkpoint_id, metadata ? 'counters_since_delta_snapshot' AS delta
FROM checkpoints WHERE thread_id = ANY(%s)
"""
# What `backends._prune` plans a prune from, per checkpoint: the root
# checkpoint a subgraph call started from, whether its format predates v4
# and whether it has pending sends; and the channels of its delta counters,
# of its versions, and those it stores (an inline value other than null, or
# a blob at its version that is not "empty": PostgresSaver writes those for
# a version without a value). One primary-key probe per versioned channel,
# as PostgresSaver's delta walk, and only for a DeltaChannel thread's rows.
CHAIN_INDEX_SQL = """
SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id,
    c.metadata -> 'parents' ->> '' AS root,
    coalesce(jsonb_typeof(c.checkpoint -> 'v') = 'number'
        AND (c.checkpoint ->> 'v')::numeric < 4, false) AS pre_v4,
    EXISTS (
        SELECT 1 FROM checkpoint_writes w
        WHERE w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
          AND w.checkpoint_id = c.checkpoint_id AND w.channel = '__pregel_tasks'
    ) AS sends,
    ARRAY(SELECT jsonb_object_keys(CASE
        WHEN jsonb_typeof(c.metadata -> 'counters_since_delta_snapshot') = 'object'
        THEN c.metadata -> 'counters_since_delta_snapshot' END)) AS delta,
    ARRAY(SELECT jsonb_object_keys(CASE
        WHEN jsonb_typeof(c.checkpoint -> 'channel_versions') = 'object'
        AND c.thread_id = ANY(%(delta)s)
        THEN c.checkpoint -> 'channel_versions' END)) AS versioned,
    ARRAY(
        SELECT i.key FROM jsonb_each(CASE
            WHEN jsonb_typeof(c.checkpoint -> 'channel_values') = 'object'
            AND c.thread_id = ANY(%(delta)s)
            THEN c.checkpoint -> 'channel_values' END) AS i
        WHERE jsonb_typeof(i.value) <> 'null'
        UNION
        SELECT v.key FROM jsonb_each_text(CASE
            WHEN jsonb_typeof(c.checkpoint -> 'channel_versions') = 'object'
            AND c.thread_id = ANY(%(delta)s)
            THEN c.checkpoint -> 'channel_versions' END) AS v
        WHERE EXISTS (
            SELECT 1 FROM checkpoint_blobs b
            WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns
              AND b.channel = v.key AND b.version = v.value AND b.type <> 'empty'
        )
    ) AS stored
FROM checkpoints c WHERE c.thread_id = ANY(%(threads)s)
"""
# The checkpoints `backends._prune` planned to delete, by key.
DELETE_CHECKPOINTS_SQL = """
DELETE FROM checkpoints c
USING unnest(%s::text[], %s::text[], %s::text[]) AS d(thread_id, checkpoint_ns, checkpoint_id)
WHERE c.thread_id = d.thread_id AND c.checkpoint_ns = d.checkpoint_ns
  AND c.checkpoint_id = d.checkpoint_id
RETURNING c.thread_id, c.checkpoint_ns, c.checkpoint_id
"""
# A kept checkpoint whose parent was pruned becomes a root, as in PostgresSaver.
UNLINK_PRUNED_PARENTS_SQL = """
UPDATE checkpoints c SET parent_checkpoint_id = NULL
WHERE c.thread_id = ANY(%s) AND c.parent_checkpoint_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM checkpoints p
    WHERE p.thread_id = c.thread_id AND p.checkpoint_ns = c.checkpoint_ns
      AND p.checkpoint_id = c.parent_checkpoint_id
)
RETURNING c.thread_id, c.checkpoint_ns, c.checkpoint_id
"""
