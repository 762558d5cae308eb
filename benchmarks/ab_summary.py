"""Ratios to InMemorySaver of interleaved before/after --quick runs
(benchmarks/ab_quick.sh): graph throughput per mode and kind, op latency p50.

    python -m benchmarks.ab_summary FOLDER ROUNDS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HYBRIDS = ("Hybrid[postgres]", "Hybrid[sqlite]")
OPS = (
    "aput_2kb",
    "aput_writes",
    "aget_latest",
    "aget_by_id",
    "alist_10",
    "aput_140kb",
    "aget_140kb",
)


def p50(row: Any) -> float | None:
    return row.get("p50_us") or row.get("p50") if isinstance(row, dict) else None


def main() -> None:
    folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
    names = [f"{side}{r}" for r in range(1, rounds + 1) for side in ("before", "after")]
    runs = {n: json.loads((folder / n / "results.json").read_text()) for n in names}
    print("graph throughput, Hybrid / InMemorySaver (higher is better)\n")
    print("| row | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for mode in ("sync", "async", "exit"):
        for kind in ("seq", "conc"):
            for saver in HYBRIDS:
                cells = []
                for n in names:
                    m = runs[n]["graph"]["modes"][mode][kind]
                    cells.append(f"{m[saver]['inv_s'] / m['InMemorySaver']['inv_s']:.2f}")
                print(f"| {mode} {kind} {saver} | " + " | ".join(cells) + " |")
    print("\noperation p50, Hybrid / InMemorySaver (lower is better)\n")
    print("| op | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for op in OPS:
        for saver in HYBRIDS:
            cells = []
            for n in names:
                row = runs[n]["ops"].get(op, {})
                h, im = p50(row.get(saver)), p50(row.get("InMemorySaver"))
                cells.append(f"{h / im:.2f}" if h and im else "-")
            print(f"| {op} {saver} | " + " | ".join(cells) + " |")
    loads = ", ".join(f"{n} {runs[n]['machine'].get('loadavg_start')}" for n in names)
    print(f"\nload average at each start: {loads}")


if __name__ == "__main__":
    main()
