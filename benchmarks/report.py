"""Machine facts, the markdown report and the PNG plots."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.competitors import BASELINE, INMEMORY, POSTGRES, VALKEY, VALKEY_POOL_SIZE, Env
from benchmarks.graphs import RETURNING
from benchmarks.ops import FLOOR, FLOOR_BIG, FLOOR_GET, FLOOR_PING, OPS

PACKAGES = [
    "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres",
    "langgraph-checkpoint-sqlite", "langgraph-checkpoint-redis", "redisvl",
    "langchain-core", "redis", "hiredis", "psycopg", "psycopg-binary", "psycopg-pool",
    "aiosqlite", "ormsgpack", "matplotlib", "tqdm", "pyinstrument", "langgraph-checkpoint-aws",
    "valkey", "libvalkey",
]  # fmt: skip


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""


async def machine_facts(env: Env) -> dict[str, Any]:
    import psycopg
    from redis.asyncio import Redis

    client = Redis.from_url(env.redis_url, decode_responses=True)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    async with await psycopg.AsyncConnection.connect(env.pg_url) as conn:
        pg = (await (await conn.execute("SELECT version()")).fetchone() or ["?"])[0]
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory": _mem_total(),
        "loadavg_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {p: _version(p) for p in PACKAGES},
        "redis_server": f"{info.get('redis_version')} ({env.redis_url}, plain, "
        f"modules: {env.facts.get('plain_redis_modules') or 'none'})",
        "redis_stack_server": env.redis_stack_version or f"unavailable: {env.redis_stack_reason}",
        "postgresql": pg,
        "sqlite": sqlite3.sqlite_version,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(
            _git("status", "--porcelain", "--", "benchmarks", "langgraph_hybrid_saver")
        ),
        "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
    }


# --- formatting -------------------------------------------------------------------


def us(seconds: float) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1e6:,.0f}"


def ratio(a: float, b: float) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def render_markdown(results: dict[str, Any], plots: list[str]) -> str:
    meta, machine = results["meta"], results["machine"]
    names = [n for n in results["available"] if n != BASELINE]
    hybrids = [n for n in names if n.startswith("Hybrid[")]
    md: list[str] = [
        "# Benchmarks: langgraph-hybrid-saver against the official LangGraph savers",
        "",
        f"Command: `{meta['command']}` (scale `{meta['scale']}`), run {meta['run_id']}, "
        f"{meta['started']} UTC, {meta['duration_s']:.0f} s.",
        "",
        "All savers ran in one process and one event loop, interleaved: each round runs one "
        "batch of every saver in a fresh random order; warm-up rounds are discarded. "
        "Latencies are per call (p50 / p99); ratios compare p50s measured in the same run. "
        f"The floor is a bare redis-py round trip in the same rounds: `{FLOOR}` "
        '(the targets\' "round trip").',
        "",
    ]
    # --- targets
    md += ["## Targets", ""]
    rows = [
        [r["status"], r["target"], r["saver"],
         "-" if math.isnan(r["measured"]) else f"{r['measured']:.2f}"
         + ("" if r["key"] == "lag" else "x"),
         f"{r['op']} {r['threshold']:g}" + ("" if r["key"] == "lag" else "x"), r["detail"]]
        for r in results["targets"]
    ]  # fmt: skip
    md += [table(["", "target", "saver", "measured", "needed", "detail"], rows), ""]
    passed = sum(1 for r in results["targets"] if r["status"] == "PASS")
    md += [f"{passed} of {len(results['targets'])} target rows pass.", ""]
    if results.get("findings"):
        md += [
            f"Profile findings for the misses: [{results['findings']}]({results['findings']}).",
            "",
        ]
    # --- competitors
    md += ["## Savers", ""]
    rows = [[n, "available", results["readback"].get(n, "")] for n in results["available"]]
    rows += [[n, f"unavailable: {why}", ""] for n, why in results["unavailable"].items()]
    md += [table(["saver", "status", "read-back check"], rows), ""]
    for name, error in results.get("phase_errors", {}).items():
        md += [f"- {name}: its reconciler measurements (drain, lag) failed: {error}"]
    md += [""] if results.get("phase_errors") else []
    # --- ops
    ops = results["ops"]
    if ops:
        md += ["## Operation latency, µs (p50 / p99)", ""]
        floors = [FLOOR_PING, FLOOR_GET, FLOOR, FLOOR_BIG]
        header = ["operation", *names, *floors]
        rows = []
        for key, label in OPS.items():
            if key not in ops:
                continue
            cells = [label]
            for n in header[1:]:
                s = ops[key].get(n)
                cells.append(f"{us(s['p50'])} / {us(s['p99'])}" if s and s["n"] else "-")
            rows.append(cells)
        md += [table(header, rows), ""]
        md += [
            "## Operation ratios (p50): x AsyncPostgresSaver / x InMemorySaver / x floor / "
            f"x {VALKEY}",
            "",
        ]
        rows = []
        for key, label in OPS.items():
            if key not in ops:
                continue
            cells = [label]
            for n in names:
                v = ops[key].get(n, {}).get("p50", float("nan"))
                pg = ops[key].get(POSTGRES, {}).get("p50", float("nan"))
                im = ops[key].get(INMEMORY, {}).get("p50", float("nan"))
                fl = ops[key].get(FLOOR, {}).get("p50", float("nan"))
                vk = ops[key].get(VALKEY, {}).get("p50", float("nan"))
                cells.append(f"{ratio(v, pg)} / {ratio(v, im)} / {ratio(v, fl)} / {ratio(v, vk)}")
            rows.append(cells)
        md += [table(["operation", *names], rows), ""]
    # --- graph
    graph = results.get("graph", {})
    if graph.get("modes"):
        gnames = [n for n in results["available"] if n in _graph_names(graph)]
        md += [
            "## Graph throughput, invocations/s (support graph, 4 nodes; a new thread per "
            f"invocation, except 'returning': the invocations cycle through {RETURNING} "
            "existing threads, a conversation's next turn)", "",
            "Checkpoints per invocation: "
            + ", ".join(f"{m}: {c:g}" for m, c in graph["checkpoints_per_invocation"].items())
            + f". Sequential: {graph['seq_invocations']} invocations; concurrent: "
            f"{graph['workers']} workers, {graph['conc_invocations']} invocations.", "",
        ]  # fmt: skip
        rows = []
        for mode, sc in graph["modes"].items():
            for scen, label in (
                ("seq", "sequential"),
                ("returning", f"sequential, {RETURNING} returning threads"),
                ("conc", f"{graph['workers']} concurrent"),
            ):
                tbl = sc.get(scen, {})
                cells = [f"{mode}, {label}"]
                for n in gnames:
                    t = tbl.get(n)
                    if t is None:
                        cells.append("-")
                        continue
                    cells.append(_throughput(tbl, n))
                rows.append(cells)
        md += [table(["mode", *gnames], rows), ""]
        md += ["Overhead per checkpoint against the no-checkpointer baseline, µs "
               "(sequential, (p50 invocation - baseline p50) / checkpoints per invocation); "
               "sequential invocation latency p50 / p99, ms:", ""]  # fmt: skip

        def overhead(t: dict[str, Any]) -> str:
            oh = t.get("overhead_us_per_checkpoint")
            lat = f"{t['lat_p50'] * 1e3:.2f} / {t['lat_p99'] * 1e3:.2f} ms"
            return lat if oh is None else f"{oh:,.0f} µs; {lat}"

        md += [_mode_table(graph, "seq", gnames, overhead), ""]
        md += [f"CPU per invocation, {graph['workers']} concurrent, µs: this process (the "
               "graph, the saver, an in-process reconciler) / the whole machine (the servers, "
               "a reconciler worker and anything else running too; "
               f"{results.get('machine', {}).get('cpu_count', '?')} cores; /proc/stat counts in "
               "10 ms ticks). Medians over the measured batches:", ""]  # fmt: skip

        def cpu(t: dict[str, Any]) -> str:
            own, whole = t.get("cpu_own_us"), t.get("cpu_machine_us")
            return " / ".join("-" if v is None else f"{v:,.0f}" for v in (own, whole))

        md += [_mode_table(graph, "conc", gnames, cpu), ""]
    # --- multi-turn chat
    chat = results.get("chat", {})
    if chat.get("modes"):
        cnames = [n for n in results["available"] if n in _graph_names(chat)]
        md += [
            f"## Multi-turn chat, invocations/s ({chat['threads']} threads x {chat['turns']} "
            "turns; each turn a new invocation on the same thread with one user message, "
            "one node appending an AI reply, so the message list grows by 2 per turn)", "",
            "Each round is the next turn of every thread of every saver, the savers in a "
            f"random order per round; the first {chat['warmup_turns']} turn(s) (new threads) "
            "are the discarded warm-up, so the figures are the returning-thread case. "
            "Sequential: one invocation at a time; concurrent: "
            f"{chat['workers']} workers taking the threads of a turn. Checkpoints per "
            "invocation: "
            + ", ".join(f"{m}: {c:g}" for m, c in chat["checkpoints_per_invocation"].items())
            + ". No baseline: without a checkpointer a thread has no history.", "",
        ]  # fmt: skip
        rows = []
        for mode, sc in chat["modes"].items():
            for scen, label in (("seq", "sequential"), ("conc", f"{chat['workers']} concurrent")):
                tbl = sc.get(scen, {})
                rows.append([f"{mode}, {label}", *(_throughput(tbl, n) for n in cnames)])
        md += [table(["mode", *cnames], rows), ""]
    # --- reconciler
    if results.get("drain"):
        md += ["## Reconciler drain (N checkpoints written with reconciler='external', "
               "then one Reconciler timed until the outbox is empty)", ""]  # fmt: skip
        pg_rate = (
            1 / ops["aput_2kb"][POSTGRES]["p50"] if POSTGRES in ops.get("aput_2kb", {}) else None
        )
        rows = []
        for b, d in results["drain"].items():
            rows.append([
                b, str(d["checkpoints"]), _drain_seconds(d), f"{d['rate']:,.0f}",
                f"{d['rate'] / pg_rate:.1f}x" if pg_rate else "-",
                f"{d['batches']} (p50 {d['batch_p50']:.0f}, max {d['batch_max']})",
                f"{d['write_rate_16']:,.0f}", d["readback"],
            ])  # fmt: skip
        md += [table(["durable store", "checkpoints", "drain s (median; each)",
                      "checkpoints/s", "x AsyncPostgresSaver seq aput rate", "batches",
                      "hot write rate (16 tasks)", "read-back"], rows), ""]  # fmt: skip
    if results.get("lag"):
        md += ["## Reconcile lag under the 16-concurrent graph load", "",
               "Per entry: from the outbox entry's creation (stream id, ms) to the durable "
               "commit of its batch. Sampled: `astats()['lag_seconds']` (age of the "
               "oldest pending entry) every 100 ms.",
               ""]  # fmt: skip
        rows = []
        for n, lag in results["lag"].items():
            rows.append([
                n, lag["reconciler"], lag["mode"], str(lag["invocations"]),
                f"{lag['invocations_per_s']:.0f}",
                str(lag["entries"]),
                f"{lag['entry_p50_ms']:.1f} / {lag['entry_p99_ms']:.1f} / "
                f"{lag['entry_max_ms']:.1f}",
                f"{lag['sampled_p50_ms']:.1f} / {lag['sampled_p99_ms']:.1f} / "
                f"{lag['sampled_max_ms']:.1f}",
                str(lag["backlog_max"]),
            ])  # fmt: skip
        md += [table(["saver", "reconciler", "durability", "invocations", "inv/s", "entries",
                      "entry lag p50/p99/max ms", "sampled lag p50/p99/max ms",
                      "max backlog"], rows), ""]  # fmt: skip
    if results.get("memory"):
        md += ["## Redis memory per thread (MEMORY USAGE of the thread's keys)", "",
               "Each step: a checkpoint (2 of 10 ~200-byte channels changed) and 3 pending "
               "writes.", ""]  # fmt: skip
        rows = []
        for n, m in results["memory"].items():
            rows.append([
                n, str(m["steps"]), str(m["thread_keys"]), f"{m['thread_bytes'] / 1024:,.0f}",
                f"{m['bytes_per_step']:,.0f}",
                f"{m['outbox_bytes_before_drain'] / 1024:,.0f}" if "outbox_bytes_before_drain" in m
                else "-",
            ])  # fmt: skip
        md += [table(["saver", "steps", "keys", "KiB", "bytes/step",
                      "outbox KiB before drain"], rows), ""]  # fmt: skip
    if results.get("memory_140kb"):
        md += ["## Redis memory of the 140 KB state (one checkpoint of 200 messages x 500 "
               "characters; MEMORY USAGE of every key that holds it)", "",
               "Serialized: the state's bytes from the saver's serializer, uncompressed. "
               "The hybrid saver's keys are those of a fresh key prefix, before and after "
               "the reconciler applies the checkpoint.", ""]  # fmt: skip
        rows = []
        for n, m in results["memory_140kb"].items():
            after = m.get("redis_bytes_after_drain")
            rows.append([
                n, f"{m['state_bytes'] / 1024:,.0f}", str(m["keys"]),
                f"{m['redis_bytes'] / 1024:,.0f}", ratio(m["redis_bytes"], m["state_bytes"]),
                "-" if after is None else f"{after / 1024:,.0f}",
            ])  # fmt: skip
        md += [table(["saver", "serialized KiB", "keys", "Redis KiB", "x serialized",
                      "Redis KiB after the reconciler"], rows), ""]  # fmt: skip
    if results.get("memory_chat"):
        turns = next(iter(results["memory_chat"].values()))["turns"]
        md += [f"## Redis memory of a {turns}-turn chat thread (the multi-turn chat graph, "
               "durability async; MEMORY USAGE of every key of the thread, for the hybrid "
               "saver every key of a fresh key prefix)", ""]  # fmt: skip
        rows = []
        for n, m in results["memory_chat"].items():
            after = m.get("redis_bytes_after_drain")
            rows.append([
                n, str(m["keys"]), f"{m['redis_bytes'] / 1024:,.0f}",
                "-" if after is None else f"{after / 1024:,.0f}",
            ])  # fmt: skip
        md += [table(["saver", "keys", "Redis KiB", "Redis KiB after the reconciler"], rows), ""]
    # --- plots, machine
    if plots:
        md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    elif results.get("plots_skipped"):
        md += [f"Plots skipped: {results['plots_skipped']}", ""]
    md += ["## Machine", ""]
    rows = [[k, str(v)] for k, v in machine.items() if k != "packages"]
    rows += [[f"package {k}", v] for k, v in machine["packages"].items()]
    md += [table(["fact", "value"], rows), ""]
    if hybrids:
        md += [
            "Hybrid savers: `AsyncHybridSaver.from_conn_string(redis, durable, "
            "key_prefix=<run-unique>)`, defaults otherwise (write_behind, in-process "
            "reconciler on the same event loop, ttl 3600 s). `+worker`: the same with "
            "reconciler='external' and one reconciler worker process beside the benchmark "
            "(benchmarks/worker.py: the package's CLI reconciler plus a per-entry lag log).",
            "",
        ]  # fmt: skip
    if VALKEY in results["available"]:
        md += [
            f"{VALKEY}: `AsyncValkeySaver.from_conn_string(redis, pool_size={VALKEY_POOL_SIZE})` "
            "on the same plain Redis as the hybrid savers, defaults otherwise (no TTL). Its "
            "default pool of 10 connections, and 64 too, fails at 16 concurrent invocations "
            'with "Too many connections": its WATCH-based aput_writes holds a connection '
            "for each call in flight.",
            "",
        ]
    return "\n".join(md) + "\n"


def _throughput(tbl: dict[str, Any], n: str) -> str:
    """A saver's invocations/s in one scenario, with its ratio to AsyncValkeySaver,
    AsyncPostgresSaver and InMemorySaver ("-" where it did not run)."""
    t = tbl.get(n)
    if t is None:
        return "-"
    extra = []
    for ref, short in ((VALKEY, "Valkey"), (POSTGRES, "PG"), (INMEMORY, "IM")):
        r = tbl.get(ref)
        if r and n not in (ref, BASELINE):
            extra.append(f"{t['inv_s'] / r['inv_s']:.2f}x {short}")
    return f"{t['inv_s']:.0f}" + (f" ({', '.join(extra)})" if extra else "")


def _mode_table(
    graph: dict[str, Any], scenario: str, names: list[str], cell: Callable[[dict[str, Any]], str]
) -> str:
    """A row per durability mode, a `cell` per saver ("-" where it has none)."""
    rows = []
    for mode, sc in graph["modes"].items():
        tbl = sc.get(scenario, {})
        rows.append([mode, *("-" if tbl.get(n) is None else cell(tbl[n]) for n in names)])
    return table(["mode", *names], rows)


def _graph_names(graph: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for sc in graph["modes"].values():
        for tbl in sc.values():
            out |= set(tbl)
    return out


# --- plots ------------------------------------------------------------------------


def render_plots(results: dict[str, Any], out: Path) -> tuple[list[str], str]:
    """PNG files written (relative names), or the reason there are none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install 'langgraph-hybrid-saver[bench]')"
    files = []
    names = [n for n in results["available"] if n != BASELINE]
    colors = {n: f"C{i}" for i, n in enumerate(names)}
    ops = results["ops"]
    if ops:
        keys = [k for k in OPS if k in ops]
        fig, ax = plt.subplots(figsize=(11, 0.22 * len(keys) * max(len(names), 1) + 2))
        height = 0.8 / max(len(names), 1)
        for j, n in enumerate(names):
            vals = [ops[k].get(n, {}).get("p50", float("nan")) * 1e6 for k in keys]
            ax.barh([i + j * height for i in range(len(keys))], vals, height, label=n,
                    color=colors[n])  # fmt: skip
        for i, k in enumerate(keys):
            fl = ops[k].get(FLOOR, {}).get("p50")
            if fl:
                ax.plot([fl * 1e6] * 2, [i - height / 2, i + 0.8 - height / 2], "k--", lw=1)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(keys))])
        ax.set_yticklabels([OPS[k] for k in keys])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, µs (log scale); dashed: bare Redis pipeline round trip")
        ax.set_title("Operation latency (p50)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "ops_latency.png", dpi=110)
        plt.close(fig)
        files.append("ops_latency.png")
    graph = results.get("graph", {})
    if graph.get("modes"):
        gnames = [n for n in results["available"] if n in _graph_names(graph)]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=False)
        for ax, scen, title in ((axes[0], "seq", "sequential"),
                                (axes[1], "conc", f"{graph['workers']} concurrent")):  # fmt: skip
            modes = list(graph["modes"])
            width = 0.8 / max(len(gnames), 1)
            for j, n in enumerate(gnames):
                vals = [graph["modes"][m].get(scen, {}).get(n, {}).get("inv_s", float("nan"))
                        for m in modes]  # fmt: skip
                ax.bar([i + j * width for i in range(len(modes))], vals, width, label=n,
                       color=colors.get(n, "grey"))  # fmt: skip
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(modes))])
            ax.set_xticklabels([f"durability={m}" for m in modes])
            ax.set_ylabel("invocations/s")
            ax.set_title(f"Support graph, {title}")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "graph_throughput.png", dpi=110)
        plt.close(fig)
        files.append("graph_throughput.png")
    if results.get("lag") or results.get("drain"):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for n, lag in results.get("lag", {}).items():
            data = sorted(lag.get("entry_lag_ms", []))
            if data:
                ys = [(i + 1) / len(data) for i in range(len(data))]
                axes[0].plot(data, ys, label=n, color=colors.get(n))
        axes[0].axvline(100, color="k", ls="--", lw=1)
        axes[0].set_xlabel("put -> durable commit, ms (dashed: 100 ms target)")
        axes[0].set_ylabel("fraction of outbox entries")
        axes[0].set_title("Reconcile lag under 16-concurrent load (CDF)")
        if results.get("lag"):
            axes[0].legend(fontsize=8)
        drain = results.get("drain", {})
        labels = list(drain)
        vals = [drain[b]["rate"] for b in labels]
        if POSTGRES in ops.get("aput_2kb", {}):
            labels.append("AsyncPostgresSaver\nsequential aput")
            vals.append(1 / ops["aput_2kb"][POSTGRES]["p50"])
        axes[1].bar(labels, vals, color=[f"C{i}" for i in range(len(labels))])
        axes[1].set_ylabel("checkpoints/s")
        axes[1].set_title("Reconciler drain rate")
        fig.tight_layout()
        fig.savefig(out / "reconciler.png", dpi=110)
        plt.close(fig)
        files.append("reconciler.png")
    return files, ""


def _drain_seconds(d: dict[str, Any]) -> str:
    """The median drain, and every repeat's when there were several."""
    each = d.get("seconds_all") or [d["seconds"]]
    if len(each) == 1:
        return f"{d['seconds']:.2f}"
    return f"{d['seconds']:.2f} ({', '.join(f'{s:.2f}' for s in each)})"
