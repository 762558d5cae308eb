"""The targets of issues #6 and #20, evaluated on one run's results.

Every target is a ratio measured in the same run; `evaluate` returns one row
per (target, hybrid backend[, durability mode]) with PASS/MISS, or n/a when a
reference saver was unavailable or its phase did not run. The rows of issue
#20 (against AsyncValkeySaver, the multi-turn chat, the bare GET, Redis
memory of the 140 KB state) say "#20".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.competitors import (
    BASELINE,
    HYBRID_LAYOUT,
    INMEMORY,
    POSTGRES,
    VALKEY,
    WORKER,
    backend_of,
    is_hybrid,
)
from benchmarks.ops import FLOOR, FLOOR_GET


@dataclass
class TargetRow:
    key: str  # what profile workload explains a miss
    target: str
    saver: str
    measured: float
    threshold: float
    op: str  # "<=" or ">="
    detail: str

    @property
    def status(self) -> str:
        if math.isnan(self.measured):
            return "n/a"
        ok = self.measured <= self.threshold if self.op == "<=" else self.measured >= self.threshold
        return "PASS" if ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status}


def _p50(results: dict[str, Any], op: str, name: str) -> float:
    entry = results["ops"].get(op, {}).get(name)
    return float(entry["p50"]) if entry and entry.get("n") else float("nan")


def _div(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else float("nan")


def evaluate(results: dict[str, Any]) -> list[TargetRow]:
    rows: list[TargetRow] = []
    hybrids = [n for n in results["available"] if is_hybrid(n)]
    graph = results.get("graph", {})
    for h in hybrids:
        for mode, by_scenario in graph.get("modes", {}).items():
            seq, conc = by_scenario.get("seq", {}), by_scenario.get("conc", {})

            def thr(table: dict[str, Any], name: str) -> float:
                return float(table[name]["inv_s"]) if name in table else float("nan")

            def ceiling(table: dict[str, Any], ref: str) -> str:
                # What a zero-cost checkpointer (no checkpointer at all) reaches.
                return (
                    f"; no-checkpointer ceiling {_div(thr(table, BASELINE), thr(table, ref)):.2f}x"
                )

            rows.append(TargetRow(
                "graph_seq", f"graph sequential ({mode}) >= 4x AsyncPostgresSaver", h,
                _div(thr(seq, h), thr(seq, POSTGRES)), 4.0, ">=",
                f"{thr(seq, h):.0f} vs {thr(seq, POSTGRES):.0f} inv/s" + ceiling(seq, POSTGRES),
            ))  # fmt: skip
            rows.append(TargetRow(
                "graph_seq", f"graph sequential ({mode}) >= 0.6x InMemorySaver", h,
                _div(thr(seq, h), thr(seq, INMEMORY)), 0.6, ">=",
                f"{thr(seq, h):.0f} vs {thr(seq, INMEMORY):.0f} inv/s" + ceiling(seq, INMEMORY),
            ))  # fmt: skip
            rows.append(TargetRow(
                "graph_conc", f"graph 16 concurrent ({mode}) >= 0.75x InMemorySaver", h,
                _div(thr(conc, h), thr(conc, INMEMORY)), 0.75, ">=",
                f"{thr(conc, h):.0f} vs {thr(conc, INMEMORY):.0f} inv/s" + ceiling(conc, INMEMORY),
            ))  # fmt: skip
        floor = _p50(results, "aput_2kb", FLOOR)
        v = _p50(results, "aput_2kb", h)
        rows.append(TargetRow(
            "aput_2kb", "aput 2 KB p50 <= 1.5x bare pipelined Redis round trip", h,
            _div(v, floor), 1.5, "<=", f"{v * 1e6:.0f} vs {floor * 1e6:.0f} us",
        ))  # fmt: skip
        floor = _p50(results, "aget_latest", FLOOR)
        v = _p50(results, "aget_latest", h)
        rows.append(TargetRow(
            "aget_latest", "aget_tuple latest p50 <= 2x the round trip", h,
            _div(v, floor), 2.0, "<=", f"{v * 1e6:.0f} vs {floor * 1e6:.0f} us",
        ))  # fmt: skip
        v, ref = _p50(results, "alist_10", h), _p50(results, "alist_10", POSTGRES)
        rows.append(TargetRow(
            "alist_10", "alist(limit=10) p50 <= 0.2x AsyncPostgresSaver", h,
            _div(v, ref), 0.2, "<=", f"{v * 1e6:.0f} vs {ref * 1e6:.0f} us",
        ))  # fmt: skip
        v = _p50(results, "aput_140kb", h)
        ref = _p50(results, "aput_140kb", INMEMORY) + _p50(results, "aput_140kb", FLOOR)
        rows.append(TargetRow(
            "aput_140kb", "aput 140 KB p50 <= 1.3x (InMemorySaver + one round trip)", h,
            _div(v, ref), 1.3, "<=", f"{v * 1e6:.0f} vs {ref * 1e6:.0f} us",
        ))  # fmt: skip
        backend = backend_of(h)
        if backend == "postgres" and not h.endswith(WORKER) and backend in results.get("drain", {}):
            rate = float(results["drain"]["postgres"]["rate"])
            ref_rate = _div(1.0, _p50(results, "aput_2kb", POSTGRES))
            rows.append(TargetRow(
                "drain", "reconciler drain into PostgreSQL >= 3x AsyncPostgresSaver aput rate",
                h, _div(rate, ref_rate), 3.0, ">=",
                f"{rate:.0f} vs {ref_rate:.0f} checkpoints/s",
            ))  # fmt: skip
        lag = results.get("lag", {}).get(h)
        if lag is not None:
            rows.append(TargetRow(
                "lag", "reconcile lag p99 <= 100 ms under 16-concurrent load", h,
                float(lag["entry_p99_ms"]), 100.0, "<=",
                f"p50 {lag['entry_p50_ms']:.1f} ms, p99 {lag['entry_p99_ms']:.1f} ms "
                f"over {lag['entries']} entries ({lag['reconciler']} reconciler)",
            ))  # fmt: skip
        rows += _issue20(results, h)
    big = results.get("memory_140kb", {}).get(HYBRID_LAYOUT)
    if big is not None:
        rows.append(TargetRow(
            "memory_140kb", "#20 Redis memory of the 140 KB state <= 0.5x its uncompressed size",
            HYBRID_LAYOUT, _div(big["redis_bytes"], big["state_bytes"]), 0.5, "<=",
            f"{big['redis_bytes'] / 1024:,.0f} KiB in {big['keys']} keys before the reconciler "
            f"applies it ({big['redis_bytes_after_drain'] / 1024:,.0f} KiB after) vs "
            f"{big['state_bytes'] / 1024:,.0f} KiB serialized",
        ))  # fmt: skip
    return rows


def _thr(table: dict[str, Any], name: str) -> float:
    return float(table[name]["inv_s"]) if name in table else float("nan")


def _issue20(results: dict[str, Any], h: str) -> list[TargetRow]:
    """Issue #20's rows for hybrid saver `h`."""
    rows: list[TargetRow] = []
    scenarios = (("seq", "sequential"), ("conc", "16 concurrent"))
    for mode, by_scenario in results.get("graph", {}).get("modes", {}).items():
        for scenario, label in scenarios:
            table = by_scenario.get(scenario, {})
            for ref, need in ((VALKEY, 1.25), (POSTGRES, 2.5)):
                rows.append(TargetRow(
                    f"graph_{scenario}", f"#20 support graph {label} ({mode}) >= {need:g}x {ref}",
                    h, _div(_thr(table, h), _thr(table, ref)), need, ">=",
                    f"{_thr(table, h):.0f} vs {_thr(table, ref):.0f} inv/s",
                ))  # fmt: skip
    for mode, by_scenario in results.get("chat", {}).get("modes", {}).items():
        for scenario, label in scenarios:
            table = by_scenario.get(scenario, {})
            rows.append(TargetRow(
                f"chat_{scenario}", f"#20 multi-turn chat {label} ({mode}) >= 1.5x {VALKEY}", h,
                _div(_thr(table, h), _thr(table, VALKEY)), 1.5, ">=",
                f"{_thr(table, h):.0f} vs {_thr(table, VALKEY):.0f} inv/s",
            ))  # fmt: skip
    floor = _p50(results, "aget_new", FLOOR_GET)
    v = _p50(results, "aget_new", h)
    rows.append(TargetRow(
        "aget_new", "#20 aget_tuple of a new thread p50 <= 1.1x a bare GET", h,
        _div(v, floor), 1.1, "<=", f"{v * 1e6:.0f} vs {floor * 1e6:.0f} us",
    ))  # fmt: skip
    floor = _p50(results, "aget_latest", FLOOR_GET)
    v = _p50(results, "aget_latest", h)
    rows.append(TargetRow(
        "aget_latest", "#20 aget_tuple latest (returning thread) p50 <= 0.3x a bare GET", h,
        _div(v, floor), 0.3, "<=", f"{v * 1e6:.0f} vs {floor * 1e6:.0f} us",
    ))  # fmt: skip
    v, ref = _p50(results, "aput_2kb", h), _p50(results, "aput_2kb", VALKEY)
    rows.append(TargetRow(
        "aput_2kb", f"#20 aput 2 KB p50 <= {VALKEY}'s", h, _div(v, ref), 1.0, "<=",
        f"{v * 1e6:.0f} vs {ref * 1e6:.0f} us",
    ))  # fmt: skip
    return rows
