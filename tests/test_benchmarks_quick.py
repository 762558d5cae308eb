"""The benchmark suite's smallest configuration, for correctness only.

No timing is asserted: this checks that the suite runs against the real
servers, reads the hybrid saver's data back intact, and writes its report.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from benchmarks.run import main

SAVERS = ["no checkpointer", "InMemorySaver", "AsyncPostgresSaver", "Hybrid[postgres]"]
VALKEY = "AsyncValkeySaver"  # in the bench extra, not the test extra: may be absent


def test_smoke_run_writes_report(redis_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--scale", "smoke", "--out", str(out), "--no-progress", "--no-profile", "--no-plots"]
    argv += ["--redis-url", redis_url, "--pg-url", pg_admin_url, "--only", *SAVERS, VALKEY]
    assert main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    available = list(results["available"])
    if importlib.util.find_spec("langgraph_checkpoint_aws") is None:
        assert "pip install" in results["unavailable"].pop(VALKEY)
    else:
        results["available"].remove(VALKEY)
        assert results["readback"].pop(VALKEY) == "ok"
    assert results["available"] == SAVERS, results["unavailable"]
    assert results["readback"] == {n: "ok" for n in SAVERS[1:]}
    assert results["drain"]["postgres"]["readback"] == "ok"
    assert results["drain"]["postgres"]["backlog_after"] == 0
    assert len(results["drain"]["postgres"]["seconds_all"]) == 2  # the median of 2 repeats
    assert results["lag"]["Hybrid[postgres]"]["entries"] > 0
    assert results["memory"]["Hybrid (any backend: Redis layout)"]["thread_bytes"] > 0
    big = results["memory_140kb"]["Hybrid (any backend: Redis layout)"]
    assert big["redis_bytes"] > 0 and big["state_bytes"] > 100_000
    chat_thread = results["memory_chat"]["Hybrid (any backend: Redis layout)"]
    assert chat_thread["turns"] == 4 and chat_thread["redis_bytes"] > 0
    chat = results["chat"]["modes"]["sync"]  # every saver but the baseline, both scenarios
    assert set(chat["seq"]) == set(chat["conc"]) == set(available) - {SAVERS[0]}
    assert all(t["inv_s"] > 0 for t in [*chat["seq"].values(), *chat["conc"].values()])
    for op, by_saver in results["ops"].items():
        assert by_saver["Hybrid[postgres]"]["n"] > 0, op
    assert {r["status"] for r in results["targets"]} <= {"PASS", "MISS", "n/a"}
    for mode in results["graph"]["modes"].values():  # CPU per concurrent invocation
        assert all(t["cpu_own_us"] > 0 for t in mode["conc"].values()), mode["conc"]
    report = (out / "README.md").read_text()
    assert "## Targets" in report and "Hybrid[postgres]" in report
    assert "CPU per invocation" in report and "## Multi-turn chat" in report
    assert "-turn chat thread" in report
    assert json.loads((out / "machine.json").read_text())["cpu_count"] >= 1
