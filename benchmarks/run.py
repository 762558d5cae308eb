"""Run the benchmark suite and write the report.

    python -m benchmarks.run [--quick] [--out DIR] [--only NAME ...] [--scenarios NAME ...]
                             [--profile]
    python benchmarks/run.py ...

`main(argv)` is the importable entry point (for a future `bench` command).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`: import the repo's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import competitors as comp
from benchmarks.graphs import (
    CHAT_WARMUP,
    MODES,
    RETURNING,
    WORKERS,
    ChatRunner,
    GraphRunner,
    chat_checkpoints_per_invocation,
    checkpoints_per_invocation,
)
from benchmarks.harness import Progress, interleave, metered, summarize
from benchmarks.ops import (
    OPS,
    batch_of,
    check_readback,
    floor_runners,
    make_runner,
    prepare_reads,
)
from benchmarks.reconcile import (
    drain,
    hybrid_big_memory,
    hybrid_chat_memory,
    hybrid_memory,
    lag_under_load,
    official_redis_memory,
    valkey_big_memory,
    valkey_chat_memory,
    valkey_memory,
)
from benchmarks.report import machine_facts, render_markdown, render_plots
from benchmarks.targets import evaluate

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
# The phases of a run, in order; --scenarios runs a subset.
SCENARIOS = ("ops", "graph", "chat", "reconciler", "memory")


@dataclass(frozen=True)
class Scale:
    """How much of everything one run does."""

    name: str
    op_rounds: int
    op_warmup: int
    op_batch: int
    big_batch: int
    seq_per_round: int
    seq_rounds: int
    graph_warmup: int
    conc_per_worker: int
    conc_rounds: int
    lag_per_worker: int
    drain_n: int
    memory_steps: int
    drain_repeats: int = 1
    modes: tuple[str, ...] = MODES
    profile: bool = False
    profile_n: int = 1000
    list_len: int = 200  # checkpoints of the thread alist reads
    chat_threads: int = 50  # the multi-turn chat: threads x turns, per saver and scenario
    chat_turns: int = 20
    chat_memory_turns: int = 200  # the chat thread whose Redis bytes are measured


FULL = Scale("full", op_rounds=20, op_warmup=2, op_batch=25, big_batch=10, seq_per_round=20,
             seq_rounds=10, graph_warmup=1, conc_per_worker=2, conc_rounds=8,
             lag_per_worker=25, drain_n=5000, memory_steps=1000, profile=True,
             drain_repeats=3)  # fmt: skip
QUICK = Scale("quick", op_rounds=2, op_warmup=1, op_batch=4, big_batch=2, seq_per_round=3,
              seq_rounds=2, graph_warmup=0, conc_per_worker=1, conc_rounds=1,
              lag_per_worker=3, drain_n=300, memory_steps=100, chat_threads=4,
              chat_turns=2, chat_memory_turns=20)  # fmt: skip
SMOKE = Scale("smoke", op_rounds=1, op_warmup=0, op_batch=2, big_batch=1, seq_per_round=2,
              seq_rounds=1, graph_warmup=0, conc_per_worker=1, conc_rounds=1,
              lag_per_worker=1, drain_n=50, memory_steps=10, modes=("sync",),
              list_len=12, drain_repeats=2, chat_threads=2, chat_turns=2,
              chat_memory_turns=4)  # fmt: skip
SCALES = {s.name: s for s in (FULL, QUICK, SMOKE)}


def slug(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def settlers(savers: dict[str, Any]) -> dict[str, Any]:
    """Each hybrid saver's `aflush`, run untimed after its batches: the
    reconciler's work on a batch is done before another saver's batch starts
    (it runs concurrently with the saver's own batch, as in production)."""
    return {name: s.aflush for name, s in savers.items() if comp.is_hybrid(name)}


async def run_ops(
    savers: dict[str, Any], floor_redis: Any, env: comp.Env, scale: Scale, rng: random.Random,
    progress: Progress, results: dict[str, Any],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Operation level: prepare every saver's threads, check them, time each op."""
    threads: dict[str, dict[str, Any]] = {}
    for name, saver in savers.items():
        progress.phase(f"prepare {name}")
        threads[name] = await prepare_reads(saver, f"{env.run_id}-{slug(name)}", scale.list_len)
        results["readback"][name] = await check_readback(saver, threads[name])
    floors = floor_runners(floor_redis, f"bench{env.run_id}")
    for op in OPS:
        progress.phase(op)
        n = scale.big_batch if "140kb" in op else scale.op_batch
        runners = {
            name: make_runner(op, saver, f"{env.run_id}-{slug(name)}", threads[name])
            for name, saver in savers.items()
        }
        runners |= floors
        samples = await interleave(
            {name: batch_of(r, n) for name, r in runners.items()},
            rounds=scale.op_rounds, warmup=scale.op_warmup, rng=rng, progress=progress,
            settle=settlers(savers),
        )  # fmt: skip
        results["ops"][op] = {name: summarize(s) for name, s in samples.items()}
    return threads


async def run_graphs(
    savers: dict[str, Any], env: comp.Env, scale: Scale, rng: random.Random, progress: Progress,
    results: dict[str, Any],
) -> None:  # fmt: skip
    graph: dict[str, Any] = {
        "checkpoints_per_invocation": {},
        "modes": {},
        "workers": WORKERS,
        "seq_invocations": scale.seq_per_round * scale.seq_rounds,
        "conc_invocations": WORKERS * scale.conc_per_worker * scale.conc_rounds,
    }
    results["graph"] = graph
    for mode in scale.modes:
        cpi = await checkpoints_per_invocation(mode)
        graph["checkpoints_per_invocation"][mode] = cpi
        progress.phase(f"graph {mode} sequential")
        lat: dict[str, list[float]] = {name: [] for name in savers}
        runners = {
            name: GraphRunner(s, mode, f"{env.run_id}-{slug(name)}-{mode}-seq")
            for name, s in savers.items()
        }
        for r in runners.values():  # one untimed invocation each: first connections, caches
            await r.invoke()
        samples = await interleave(
            {n: r.sequential(scale.seq_per_round, lat[n], scale.graph_warmup)
             for n, r in runners.items()},
            rounds=scale.seq_rounds, warmup=scale.graph_warmup, rng=rng, progress=progress,
            settle=settlers(savers),
        )  # fmt: skip
        seq: dict[str, Any] = {}
        base = summarize(lat.get(comp.BASELINE, []))["p50"] if comp.BASELINE in lat else None
        for name, per_inv in samples.items():
            s = summarize(lat[name])
            seq[name] = {
                "inv_s": 1 / summarize(per_inv)["p50"],
                "lat_p50": s["p50"],
                "lat_p99": s["p99"],
                "overhead_us_per_checkpoint": None
                if name == comp.BASELINE or base is None
                else (s["p50"] - base) / cpi * 1e6,
            }
        progress.phase(f"graph {mode} sequential, returning threads")
        runners = {
            name: GraphRunner(s, mode, f"{env.run_id}-{slug(name)}-{mode}-ret", RETURNING)
            for name, s in savers.items()
        }
        for r in runners.values():  # every thread exists before the measured rounds
            for _ in range(RETURNING):
                await r.invoke()
        samples = await interleave(
            {n: r.sequential(scale.seq_per_round, [], 0) for n, r in runners.items()},
            rounds=scale.seq_rounds, warmup=scale.graph_warmup, rng=rng, progress=progress,
            settle=settlers(savers),
        )  # fmt: skip
        returning = {name: {"inv_s": 1 / summarize(v)["p50"]} for name, v in samples.items()}
        progress.phase(f"graph {mode} {WORKERS} concurrent")
        runners = {
            name: GraphRunner(s, mode, f"{env.run_id}-{slug(name)}-{mode}-conc")
            for name, s in savers.items()
        }
        cpu: dict[str, list[tuple[float, float | None]]] = {n: [] for n in runners}
        per_batch = WORKERS * scale.conc_per_worker
        samples = await interleave(
            {n: metered(r.concurrent(scale.conc_per_worker), per_batch, cpu[n])
             for n, r in runners.items()},
            rounds=scale.conc_rounds, warmup=scale.graph_warmup, rng=rng, progress=progress,
            settle=settlers(savers),
        )  # fmt: skip
        conc = {name: {"inv_s": 1 / summarize(v)["p50"]} for name, v in samples.items()}
        for name, used in cpu.items():  # batches of the measured rounds, medians
            measured = used[scale.graph_warmup :]
            conc[name]["cpu_own_us"] = statistics.median(u[0] for u in measured)
            machine = [u[1] for u in measured if u[1] is not None]
            conc[name]["cpu_machine_us"] = statistics.median(machine) if machine else None
        graph["modes"][mode] = {"seq": seq, "returning": returning, "conc": conc}


async def run_chat(
    savers: dict[str, Any], env: comp.Env, scale: Scale, rng: random.Random, progress: Progress,
    results: dict[str, Any],
) -> None:  # fmt: skip
    """The multi-turn chat: every saver's threads take turn after turn, one
    round per turn, the savers in a random order per round; the first turn
    (new threads) is the warm-up. No baseline: without a checkpointer a
    thread has no history to return to."""
    chat_savers = {n: s for n, s in savers.items() if s is not None}
    chat: dict[str, Any] = {
        "threads": scale.chat_threads,
        "turns": scale.chat_turns,
        "warmup_turns": CHAT_WARMUP,
        "workers": WORKERS,
        "checkpoints_per_invocation": {},
        "modes": {},
    }
    results["chat"] = chat
    for mode in scale.modes:
        chat["checkpoints_per_invocation"][mode] = await chat_checkpoints_per_invocation(mode)
        by_scenario = chat["modes"][mode] = {}
        for scenario in ("seq", "conc"):
            progress.phase(f"chat {mode} {scenario}")
            runners = {
                n: ChatRunner(s, mode, f"{env.run_id}-{slug(n)}-{mode}-chat{scenario}",
                              scale.chat_threads)
                for n, s in chat_savers.items()
            }  # fmt: skip
            samples = await interleave(
                {n: r.sequential() if scenario == "seq" else r.concurrent()
                 for n, r in runners.items()},
                rounds=scale.chat_turns - CHAT_WARMUP, warmup=CHAT_WARMUP, rng=rng,
                progress=progress, settle=settlers(savers),
            )  # fmt: skip
            by_scenario[scenario] = {
                n: {"inv_s": 1 / summarize(v)["p50"]} for n, v in samples.items()
            }


async def run(args: argparse.Namespace) -> Path:
    scale = SCALES[args.scale]
    if args.profile is not None:
        scale = replace(scale, profile=args.profile)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="lhs-bench-"))
    env = comp.Env(
        run_id=comp.new_run_id(), tmpdir=tmp, redis_url=args.redis_url, pg_url=args.pg_url
    )
    results: dict[str, Any] = {
        "meta": {
            "command": args.command_line,
            "scale": scale.name,
            "scale_settings": asdict(scale),
            "scenarios": list(args.scenarios),
            "run_id": env.run_id,
            "seed": args.seed,
            "started": datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%d %H:%M"),
        },
        "readback": {},
        "ops": {},
    }
    hybrids = [n for n in comp.COMPETITORS if comp.is_hybrid(n)]
    scenarios = set(args.scenarios)
    n_ops = len(OPS) * (scale.op_warmup + scale.op_rounds) if "ops" in scenarios else 0
    n_graph = len(scale.modes) * (2 * scale.seq_rounds + scale.conc_rounds + 3 * scale.graph_warmup)
    n_graph = n_graph if "graph" in scenarios else 0
    n_chat = len(scale.modes) * 2 * scale.chat_turns if "chat" in scenarios else 0
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(comp.redis_stack(env))
            savers, unavailable = await comp.open_all(env, stack, args.only)
            # Everything loaded so far (the savers' libraries: botocore's data
            # with AsyncValkeySaver) goes to the permanent generation: the
            # collection between batches and those inside them scan only what
            # the run allocates, the same for every saver.
            gc.collect()
            gc.freeze()
            results["available"] = list(savers)
            results["unavailable"] = unavailable
            results["machine"] = await machine_facts(env)
            from redis.asyncio import Redis

            floor_redis = Redis.from_url(env.redis_url)
            stack.push_async_callback(floor_redis.aclose)
            stack.push_async_callback(comp.drop_prefix, floor_redis, f"bench{env.run_id}")
            op_savers = {n: s for n, s in savers.items() if s is not None}
            participants = len(op_savers) + len(floor_runners(floor_redis, ""))
            available_hybrids = [h for h in hybrids if h in savers]
            n_reconciler = 2 * len(available_hybrids) if "reconciler" in scenarios else 0
            progress = Progress(
                n_ops * participants + n_graph * len(savers) + n_chat * len(op_savers)
                + n_reconciler + ("memory" in scenarios),
                enabled=not args.no_progress,
            )  # fmt: skip
            phases = results["meta"]["phase_seconds"] = {}
            threads: dict[str, dict[str, Any]] = {}
            results["drain"] = {}
            results["lag"] = {}
            failed = results["phase_errors"] = {}
            try:
                t0 = time.perf_counter()
                if "ops" in scenarios:
                    threads = await run_ops(
                        op_savers, floor_redis, env, scale, rng, progress, results
                    )
                phases["ops"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                if "graph" in scenarios:
                    await run_graphs(savers, env, scale, rng, progress, results)
                phases["graph"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                if "chat" in scenarios:
                    await run_chat(savers, env, scale, rng, progress, results)
                phases["chat"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                for h in available_hybrids if "reconciler" in scenarios else []:
                    backend = comp.backend_of(h)
                    # A store that cannot keep up fails its own measurement,
                    # reported as such; the run goes on.
                    try:
                        if not h.endswith(comp.WORKER):
                            progress.phase(f"drain {backend}")
                            results["drain"][backend] = await drain(
                                env, backend, scale.drain_n, repeats=scale.drain_repeats
                            )
                        progress.update()
                        progress.phase(f"lag {h}")
                        results["lag"][h] = await lag_under_load(
                            savers[h],
                            f"{env.run_id}-{slug(h)}",
                            scale.lag_per_worker,
                            lag_file=env.lag_files.get(savers[h].hot.prefix),
                        )
                    except Exception as e:
                        failed[h] = f"{type(e).__name__}: {e}"
                    progress.update()
                phases["reconciler"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                results["memory"] = {}
                results["memory_140kb"] = {}
                results["memory_chat"] = {}
                if "memory" in scenarios:
                    progress.phase("memory")
                    await run_memory(savers, env, scale, available_hybrids, results)
                    progress.update()
                phases["memory"] = time.perf_counter() - t0
            finally:
                progress.close()
            rows = evaluate(results)
            results["targets"] = [r.as_dict() for r in rows]
            results["profiles"] = {}
            if scale.profile:
                from benchmarks.profiles import profile

                for stale in (out / "profiles").glob("*.txt"):
                    stale.unlink()

                missed = sorted({r.key for r in rows if r.status == "MISS"})
                for key in missed:
                    h = next(r.saver for r in rows if r.key == key and r.status == "MISS")
                    if h not in savers or (key in OPS and h not in threads):
                        continue  # no workload here (Redis memory; a run without ops)
                    backend = comp.backend_of(h)
                    print(f"profiling {key} on {h}", file=sys.stderr, flush=True)
                    results["profiles"][key] = await profile(
                        key, savers[h], env, threads.get(h, {}), backend, scale.profile_n,
                        out / "profiles",
                    )  # fmt: skip
    finally:
        comp.rmtree(tmp)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["meta"]["duration_s"] = time.time() - started
    findings = out / "FINDINGS.md"
    if findings.exists():
        results["findings"] = findings.name
    plots, why = render_plots(results, out) if not args.no_plots else ([], "--no-plots")
    results["plots"] = plots
    results["plots_skipped"] = why
    # The figures first: a report that fails to render loses no run.
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    (out / "machine.json").write_text(json.dumps(results["machine"], indent=2) + "\n")
    (out / "README.md").write_text(render_markdown(results, plots))
    print_summary(results, out)
    return out / "README.md"


async def run_memory(
    savers: dict[str, Any], env: comp.Env, scale: Scale, hybrids: list[str],
    results: dict[str, Any],
) -> None:  # fmt: skip
    """Redis bytes: a thread after `memory_steps` steps, one 140 KB state, a
    chat thread after `chat_memory_turns` turns."""
    memory, big, chat = results["memory"], results["memory_140kb"], results["memory_chat"]
    if hybrids:
        backend = comp.backend_of(hybrids[0])
        memory[comp.HYBRID_LAYOUT] = await hybrid_memory(env, backend, scale.memory_steps)
        big[comp.HYBRID_LAYOUT] = await hybrid_big_memory(env, backend)
        chat[comp.HYBRID_LAYOUT] = await hybrid_chat_memory(env, backend, scale.chat_memory_turns)
    if comp.REDIS_OFFICIAL in savers:
        memory[comp.REDIS_OFFICIAL] = await official_redis_memory(
            savers[comp.REDIS_OFFICIAL], env.run_id, scale.memory_steps
        )
    if comp.VALKEY in savers:
        memory[comp.VALKEY] = await valkey_memory(
            savers[comp.VALKEY], env.run_id, scale.memory_steps
        )
        big[comp.VALKEY] = await valkey_big_memory(savers[comp.VALKEY], env.run_id)
        chat[comp.VALKEY] = await valkey_chat_memory(
            savers[comp.VALKEY], env.run_id, scale.chat_memory_turns
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > 20000 and all(isinstance(v, float) for v in value):
            return None  # very long raw sample lists: summarised already
        return [_jsonable(v) for v in value]
    return value


def print_summary(results: dict[str, Any], out: Path) -> None:
    print()
    for name, why in results["unavailable"].items():
        print(f"{name}: unavailable: {why}")
    for r in results["targets"]:
        m = r["measured"]
        shown = "n/a" if m is None or (isinstance(m, float) and math.isnan(m)) else f"{m:.2f}"
        print(f"{r['status']:4}  {r['target']} [{r['saver']}]: {shown} "
              f"(needed {r['op']} {r['threshold']:g}; {r['detail']})")  # fmt: skip
    print(f"\nreport: {out / 'README.md'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark langgraph-hybrid-saver against the official LangGraph savers.",
    )
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--scale", choices=sorted(SCALES), help="full (default), quick or smoke")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME",
        help=f"savers to run, from: {', '.join(comp.COMPETITORS)}",
    )  # fmt: skip
    parser.add_argument(
        "--scenarios", nargs="+", metavar="NAME", choices=SCENARIOS, default=list(SCENARIOS),
        help=f"phases to run (default all): {', '.join(SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile the workloads of missed targets (default: full runs)",
    )
    parser.add_argument(
        "--redis-url",
        default=comp.REDIS_URL,
        help="plain Redis of the hybrid savers (env BENCH_REDIS_URL)",
    )
    parser.add_argument(
        "--pg-url",
        default=comp.PG_URL,
        help="PostgreSQL database; each saver gets its own schema (env BENCH_PG_URL)",
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--extra-site",
        type=Path,
        action="append",
        default=[],
        help="a folder appended to sys.path (optional competitors' packages)",
    )
    args = parser.parse_args(argv)
    args.scale = args.scale or ("quick" if args.quick else "full")
    if args.out is None:
        args.out = DEFAULT_OUT if args.scale == "full" else DEFAULT_OUT / args.scale
    if args.only:
        unknown = [n for n in args.only if n not in comp.COMPETITORS]
        if unknown:
            parser.error(f"unknown saver(s) {unknown}: use {list(comp.COMPETITORS)}")
    shown = list(argv) if argv is not None else sys.argv[1:]
    env_vars = "".join(
        f"{k}={shlex.quote(v)} " for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")
    )
    args.command_line = (
        env_vars + "python -m benchmarks.run" + "".join(" " + shlex.quote(a) for a in shown)
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for extra in args.extra_site:
        sys.path.append(str(extra.resolve()))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
