"""The business ledger: the customer's charges, and every side effect issued.

One SQLite file, separate from the checkpoint stores. It stands in for the
payment provider and the mailer: a real refund API takes the same idempotency
key (Stripe's `Idempotency-Key`, Adyen's, ...) and answers a repeated call with
the first result instead of moving money twice.

`perform()` is the only way a node causes a side effect. The key names the
thread, the node and the object (`case_8842:issue_refund:ch_1002`), so a node
that LangGraph re-runs after a crash asks for the same key and gets the
original record back; `attempts` counts every ask, `performed_by_pid` says
which process actually did it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    charge_id    TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    description  TEXT NOT NULL,
    charged_at   TEXT NOT NULL          -- ISO 8601, UTC
);
CREATE TABLE IF NOT EXISTS side_effects (
    idempotency_key  TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,     -- 'refund' | 'password_reset_email'
    thread_id        TEXT NOT NULL,
    node             TEXT NOT NULL,
    target           TEXT NOT NULL,     -- charge id or e-mail address
    amount_cents     INTEGER,
    performed_by_pid INTEGER NOT NULL,
    performed_at     REAL NOT NULL,
    attempts         INTEGER NOT NULL
);
"""

# (charge_id, amount_cents, description, charged_at) per scenario. Both sets
# hold one genuine duplicate (same amount and description, seconds apart) and
# one look-alike a month earlier that is *not* a duplicate.
CHARGE_SETS: dict[str, list[tuple[str, int, str, str]]] = {
    "small": [
        ("ch_0987", 12_900, "Pro plan (monthly)", "2025-02-03T09:14:03Z"),
        ("ch_1001", 12_900, "Pro plan (monthly)", "2025-03-03T09:14:03Z"),
        ("ch_1002", 12_900, "Pro plan (monthly)", "2025-03-03T09:14:05Z"),
    ],
    "large": [
        ("ch_0990", 4_900, "Seat add-on (monthly)", "2025-02-10T11:00:00Z"),
        ("ch_1101", 75_000, "Team plan (annual)", "2025-03-03T09:14:03Z"),
        ("ch_1102", 75_000, "Team plan (annual)", "2025-03-03T09:14:07Z"),
    ],
}


@dataclass(frozen=True)
class Charge:
    charge_id: str
    customer_id: str
    amount_cents: int
    description: str
    charged_at: str


@dataclass(frozen=True)
class Effect:
    idempotency_key: str
    kind: str
    thread_id: str
    node: str
    target: str
    amount_cents: int | None
    performed_by_pid: int
    performed_at: float
    attempts: int
    performed_now: bool = False  # True only for the call that did it


class Ledger:
    """Charges and side effects in one SQLite file, safe across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.executescript(SCHEMA)  # runs its own transaction
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so two processes asking
        # for the same key can't both see it missing.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def seed_charges(self, customer_id: str, charge_set: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM charges WHERE customer_id = ?", (customer_id,))
            rows = [(c, customer_id, amt, d, at) for c, amt, d, at in CHARGE_SETS[charge_set]]
            db.executemany("INSERT INTO charges VALUES (?, ?, ?, ?, ?)", rows)

    def charges(self, customer_id: str) -> list[Charge]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT charge_id, customer_id, amount_cents, description, charged_at "
                "FROM charges WHERE customer_id = ? ORDER BY charged_at, charge_id",
                (customer_id,),
            ).fetchall()
        return [Charge(*row) for row in rows]

    def perform(
        self,
        key: str,
        *,
        kind: str,
        thread_id: str,
        node: str,
        target: str,
        amount_cents: int | None = None,
    ) -> Effect:
        """Do the side effect once per key; a repeated call returns the first record."""
        with self._tx() as db:
            updated = db.execute(
                "UPDATE side_effects SET attempts = attempts + 1 WHERE idempotency_key = ?",
                (key,),
            ).rowcount
            if not updated:
                db.execute(
                    "INSERT INTO side_effects VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (key, kind, thread_id, node, target, amount_cents, os.getpid(), time.time()),
                )
            row = db.execute(
                "SELECT * FROM side_effects WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return replace(Effect(*row), performed_now=not updated)

    def effects(self) -> list[Effect]:
        with self._tx() as db:
            rows = db.execute("SELECT * FROM side_effects ORDER BY performed_at").fetchall()
        return [Effect(*row) for row in rows]
