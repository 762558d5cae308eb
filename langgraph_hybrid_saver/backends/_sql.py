"""What the SQL stores (PostgreSQL, SQLite) build alike, given their
driver's placeholder (`%s`, `?`)."""

from __future__ import annotations

from typing import Any


def get_clause(
    thread_id: str, checkpoint_ns: str, checkpoint_id: str | None, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (with order and limit) and arguments of `get`: one
    checkpoint by id, or the newest of the namespace when no id is given."""
    if checkpoint_id:
        where = f"WHERE thread_id = {mark} AND checkpoint_ns = {mark} AND checkpoint_id = {mark}"
        return where, (thread_id, checkpoint_ns, checkpoint_id)
    where = (
        f"WHERE thread_id = {mark} AND checkpoint_ns = {mark} ORDER BY checkpoint_id DESC LIMIT 1"
    )
    return where, (thread_id, checkpoint_ns)
