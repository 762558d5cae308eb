"""Dead letters: outbox entries that are not durable, for operators to list,
show, retry or drop (`langgraph-hybrid-saver dead-letters ...`).

The reconciler moves an outbox entry to its shard's dead-letter stream
(`Outbox.dead_letter`) when the durable store refuses its data or the entry
cannot be decoded, so that one bad entry never holds up the others. A dead
letter keeps every field of the entry (prefixed `entry:`), the entry's id
(`outbox_id`) and why (`reason`); the large values of a put stay in the
thread's `v` keys (`<thread base>:p:<outbox id>:<field>` keys for entries
older layouts wrote); and the entry still counts as
pending for its thread (`<thread base>:o`), so the thread's hot copy neither
expires nor is trimmed while something of it is not durable.

* `retry` puts the entry back at the tail of its shard's outbox as a new
  entry with its original fields (an older entry's `p` keys renamed to the
  new id) and deletes the dead letter; the thread stays pending. The reconciler
  then applies it like any other entry (its new id is above the thread's
  durable watermark).
* `drop` deletes the dead letter (and an older entry's `p` keys) and uncounts it from
  the thread's pending entries as an applied entry is (`ack.lua`): a thread
  left with none gets the TTL and window held back. Its checkpoint (or
  writes, or delete) will never be durable.

Reading (`list_dead_letters`, `find`, `show`: `read.py`) changes nothing;
`change.py` holds `retry` and `drop`, `letters.py` the data they return.
"""

from langgraph_hybrid_saver.outbox.deadletters.change import drop, retry
from langgraph_hybrid_saver.outbox.deadletters.letters import (
    ALL,
    DeadLetter,
    DeadLetterDetail,
    FieldView,
    Outcome,
    Selection,
)
from langgraph_hybrid_saver.outbox.deadletters.read import find, list_dead_letters, show

__all__ = [
    "ALL",
    "DeadLetter",
    "DeadLetterDetail",
    "FieldView",
    "Outcome",
    "Selection",
    "drop",
    "find",
    "list_dead_letters",
    "retry",
    "show",
]
