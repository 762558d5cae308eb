"""SQLite durable store, in the tables of `langgraph-checkpoint-sqlite`.

The embedded default for a laptop or CI: one database file, shared by the
saver and its reconciler (in-process or `python -m langgraph_hybrid_saver
reconcile` on the same machine). Not for several hosts: SQLite's locking
needs a local filesystem, so use PostgreSQL once workers run on more than one
machine.

URLs: `sqlite:///relative/path.db` (relative to the working directory when the
backend is created) or `sqlite:////absolute/path.db`. `sqlite:///:memory:` is
refused: an in-memory database lives inside one connection, and the saver, the
reconciler and other processes must all see the same file.

Layout. The official `checkpoints` and `writes` tables, created exactly as
`AsyncSqliteSaver.setup()` creates them, hold complete rows: `checkpoints.type`
and `checkpoints.checkpoint` are the WHOLE checkpoint serialized with the serde
(so the backend needs the saver's serde: `open_backend(url, serde=...)`), and
`metadata` is UTF-8 JSON, which the official `list` filters with
`json_extract`. `SqliteSaver`/`AsyncSqliteSaver` therefore read what we
reconciled. Our own additions:

* `checkpoints.hybrid_checkpoint` (TEXT, nullable): the checkpoint as our core
  stores it (JSON, inline primitive values only), so our reads never decode
  the whole checkpoint. It is NULL on rows the official saver wrote, and an
  official `INSERT OR REPLACE` of a row resets it to NULL: such rows are read by
  decoding the whole checkpoint.
* `hybrid_saver_blobs`: channel values once per (thread, ns, channel,
  version), as `checkpoint_blobs` in PostgreSQL. An outbox entry only carries
  the blobs of channels that changed; the unchanged ones come from here when
  the whole checkpoint is assembled.
* `hybrid_saver_threads`: the per-thread watermark (see `backends/protocol.py`).

We also read what the official saver wrote, and a thread it started can be
continued: when a reconciled checkpoint refers to channel versions that are
not in `hybrid_saver_blobs` and its parent row was written by the official
saver, the values are taken from that parent and stored as blobs.

Durability: WAL journal with `synchronous=FULL` by default. The reconciler
deletes an outbox entry from Redis as soon as the transaction that applied it
commits, so a commit must survive a power loss, not only a process crash (which
`NORMAL` already survives in WAL mode). Since the reconciler applies hundreds of
entries per transaction, the extra fsync per commit is cheap; pass
`synchronous="NORMAL"` to trade the last commits before an OS crash for
latency, e.g. in CI.
"""

import aiosqlite  # noqa: F401  (the extra this backend needs: missing, the import fails here)

from langgraph_hybrid_saver.backends.sqlite.backend import SYNCHRONOUS_MODES, SqliteBackend
from langgraph_hybrid_saver.backends.sqlite.official_rows import splice_checkpoint
from langgraph_hybrid_saver.backends.sqlite.sql import SELECT_BLOB_KEYS_SQL
from langgraph_hybrid_saver.backends.sqlite.url import path_from_url

__all__ = [
    "SELECT_BLOB_KEYS_SQL",
    "SYNCHRONOUS_MODES",
    "SqliteBackend",
    "path_from_url",
    "splice_checkpoint",
]
