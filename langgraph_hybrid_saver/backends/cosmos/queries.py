"""The Cosmos DB SQL queries of the backend (parameters: @name)."""

LATEST_SQL = (
    "SELECT TOP 1 * FROM c WHERE c.kind = 'checkpoint' AND c.checkpoint_ns = @ns "
    "ORDER BY c.checkpoint_id DESC"
)
BY_IDS_SQL = "SELECT * FROM c WHERE ARRAY_CONTAINS(@ids, c.id)"
WRITES_OF_SQL = "SELECT * FROM c WHERE c.kind = 'write' AND ARRAY_CONTAINS(@ids, c.cp)"
WRITE_IDS_OF_SQL = "SELECT VALUE c.id FROM c WHERE c.kind = 'write' AND ARRAY_CONTAINS(@ids, c.cp)"
# Everything of a thread but payloads: enough to plan deletes.
INDEX_SQL = (
    "SELECT c.id, c.kind, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, "
    "c.run_id, c.delta, c.refs, c.cp, c.owner FROM c WHERE c.kind != 'watermark'"
)
COUNT_KIND_SQL = "SELECT VALUE COUNT(1) FROM c WHERE c.kind = @kind"
THREAD_IDS_SQL = (
    "SELECT VALUE c.thread_id FROM c WHERE c.kind = 'checkpoint' AND c.thread_id > @after"
)
RUNS_SQL = (
    "SELECT VALUE c.thread_id FROM c "
    "WHERE c.kind = 'checkpoint' AND ARRAY_CONTAINS(@runs, c.run_id)"
)
DELTA_THREADS_SQL = (
    "SELECT VALUE c.thread_id FROM c WHERE c.kind = 'checkpoint' "
    "AND c.delta = true AND ARRAY_CONTAINS(@threads, c.thread_id)"
)
CHECKPOINT_INDEX_SQL = (
    "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.delta FROM c "
    "WHERE c.kind = 'checkpoint' AND ARRAY_CONTAINS(@threads, c.thread_id)"
)
# What `backends._prune` plans a prune from: a thread's checkpoint documents
# with their payloads, the blobs that hold a value, and the checkpoints with
# pending sends.
CHECKPOINT_DOCS_SQL = "SELECT * FROM c WHERE c.kind = 'checkpoint'"
VALUE_BLOB_IDS_SQL = "SELECT VALUE c.id FROM c WHERE c.kind = 'blob' AND c.type != 'empty'"
SENDS_SQL = "SELECT VALUE c.cp FROM c WHERE c.kind = 'write' AND c.channel = '__pregel_tasks'"
