"""The outbox: entries in Redis streams (codec.py), the reconciler that is
the only path from them to a durable store (reconciler.py), and the dead
letters an operator retries or drops (deadletters/)."""
