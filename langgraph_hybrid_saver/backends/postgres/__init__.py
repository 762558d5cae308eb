"""PostgreSQL durable store, in the tables of `langgraph-checkpoint-postgres`.

The official MIGRATIONS are applied as they are (same `checkpoint_migrations`
versions), so `PostgresSaver` reads what we reconcile and we read what it
wrote. Our additions: a table of per-thread watermarks
(`hybrid_saver_threads`) and the function that applies a small batch in one
statement (`hybrid_saver_apply`, apply.py).
"""

from psycopg import OperationalError

from langgraph_hybrid_saver.backends.postgres.backend import PostgresBackend

__all__ = ["OperationalError", "PostgresBackend"]
