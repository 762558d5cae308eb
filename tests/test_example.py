"""examples/support_workflow end to end: real processes, real SIGKILLs, real servers.

Each test runs `python -m examples.support_workflow` as a subprocess (which
itself runs every workflow step in worker subprocesses) and checks the JSON
report against facts fixed here: which node ran in which process, what was
stored at the crash, the ledger, the final response and the durable copy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
NODES = ["billing", "account", "policy", "issue_refund", "response"]
LOGIN = (
    "Your account was locked after 5 failed sign-ins; we unlocked it and sent a "
    "password-reset link to jordan.lee@example.com."
)
HELLO = "Hi Jordan, thanks for your patience. "
REFUNDED_129 = (
    f"{HELLO}You were charged twice for Pro plan (monthly); we refunded the duplicate "
    f"charge ch_1002 ($129.00). {LOGIN}"
)
APPROVED_750 = (
    f"{HELLO}You were charged twice for Team plan (annual); after review we refunded the "
    f"duplicate charge ch_1102 ($750.00). {LOGIN}"
)
REJECTED_750 = (
    f"{HELLO}A billing specialist reviewed the $750.00 charge ch_1102 and did not refund it "
    f"(a chargeback for this charge is already open with the bank); they will contact you. "
    f"{LOGIN}"
)

Report = dict[str, Any]


def run_demo(
    tmp_path: Path, *args: str, redis_url: str | None, durable_url: str | None, prefix: str
) -> dict[str, Report]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DURABLE_URL")}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if durable_url is not None:
        env["DURABLE_URL"] = durable_url
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "examples.support_workflow", "--workdir", str(tmp_path)]
    cmd += ["--key-prefix", prefix, "--json", str(out), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "All checks passed." in proc.stdout
    return {r["name"]: r for r in json.loads(out.read_text())}


@pytest.fixture
def shared_redis(redis_url: str, key_prefix: str) -> Iterator[tuple[str, str]]:
    """The shared Redis with this test's prefix; its keys are deleted afterwards."""
    yield redis_url, key_prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def events(worker: Report, kind: str) -> list[dict[str, Any]]:
    return [e for e in worker["events"] if e["event"] == kind]


def check_crash_story(report: Report, crash_after: str) -> None:
    run, resume = report["workers"]
    assert run["killed"] and run["returncode"] == -signal.SIGKILL
    assert not resume["killed"] and resume["returncode"] == 0
    assert run["pid"] != resume["pid"]

    # What the killed process had stored is where the new one starts.
    cut = NODES.index("policy" if crash_after == "refund" else crash_after) + 1
    stopped = report["state_after_stop"]
    assert stopped["completed_steps"] == NODES[:cut]
    assert stopped["next"] == [NODES[cut]]
    assert stopped["checkpoint_id"] == events(run, "checkpoint")[-1]["checkpoint_id"]
    assert events(run, "hold")[0]["point"] == crash_after

    # No completed node ran again; the resume ran exactly the rest.
    assert [e["node"] for e in events(run, "node")] == NODES[:cut]
    assert [e["node"] for e in events(resume, "node")] == NODES[cut:]
    assert all(e["pid"] == run["pid"] for e in events(run, "node"))
    assert all(e["pid"] == resume["pid"] for e in events(resume, "node"))

    # Each side effect exactly once, performed by the process that got there.
    effects = {e["kind"]: e for e in report["effects"]}
    assert len(report["effects"]) == 2 and set(effects) == {"refund", "password_reset_email"}
    email, refund = effects["password_reset_email"], effects["refund"]
    assert email["idempotency_key"] == "case_8842:account:password_reset_email"
    assert email["attempts"] == 1
    assert email["performed_by_pid"] == (resume if crash_after == "billing" else run)["pid"]
    assert refund["idempotency_key"] == "case_8842:issue_refund:ch_1002"
    assert (refund["target"], refund["amount_cents"]) == ("ch_1002", 12_900)
    if crash_after == "refund":  # killed between the refund and its checkpoint
        assert refund["performed_by_pid"] == run["pid"]
        assert refund["attempts"] == 2
        assert [e["performed_now"] for e in events(resume, "effect")] == [False]
    else:
        assert refund["performed_by_pid"] == resume["pid"]
        assert refund["attempts"] == 1

    assert report["final_response"] == REFUNDED_129
    ids = [e["checkpoint_id"] for w in (run, resume) for e in events(w, "checkpoint")]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert report["durable_checkpoint_id"] == report["hot_checkpoint_id"] == ids[-1]
    assert all(report["checks"].values()), report["checks"]


def check_wipe_story(report: Report, crash_after: str) -> None:
    check_crash_story(report, crash_after)
    assert report["outbox_backlog_before_wipe"] == 0
    assert report["redis_keys_after_wipe"] == 0
    assert events(report["workers"][0], "hold")[0]["durable"] is True


def check_review_story(report: Report, decision: str) -> None:
    first, second = report["workers"]
    assert first["returncode"] == 0 and second["returncode"] == 0
    assert not first["killed"] and not second["killed"]
    (asked,) = events(first, "interrupt")
    assert asked["value"]["question"] == "Approve a refund of $750.00?"
    assert asked["value"]["charge_id"] == "ch_1102"
    stopped = report["state_after_stop"]
    assert stopped["next"] == ["human_review"]
    assert stopped["interrupts"] == [asked["value"]]
    assert [e["node"] for e in events(first, "node")] == ["billing", "account", "policy"]
    approved = decision == "approve"
    rest = (
        ["human_review", "issue_refund", "response"] if approved else ["human_review", "response"]
    )
    assert [e["node"] for e in events(second, "node")] == rest
    kinds = sorted(e["kind"] for e in report["effects"])
    assert kinds == (["password_reset_email", "refund"] if approved else ["password_reset_email"])
    for e in report["effects"]:
        assert e["attempts"] == 1
        if e["kind"] == "refund":
            assert (e["target"], e["amount_cents"]) == ("ch_1102", 75_000)
            assert e["performed_by_pid"] == second["pid"]
    assert report["final_response"] == (APPROVED_750 if approved else REJECTED_750)
    assert report["durable_checkpoint_id"] == report["hot_checkpoint_id"]
    assert all(report["checks"].values()), report["checks"]


def test_whole_story_on_every_backend(
    tmp_path: Path, shared_redis: tuple[str, str], durable_url: str
) -> None:
    """All three scenarios; REDIS_URL is a shared server, so the wipe deletes
    only the demo's prefix."""
    redis_url, prefix = shared_redis
    reports = run_demo(
        tmp_path, redis_url=redis_url, durable_url=durable_url, prefix=prefix
    )  # defaults: --scenario all --crash-after account --decision approve
    check_crash_story(reports["crash"], "account")
    check_wipe_story(reports["wipe"], "account")
    assert "no FLUSHALL" in reports["wipe"]["redis_wipe"]
    check_review_story(reports["review"], "approve")


@pytest.mark.parametrize(("scenario", "crash_after"), [("crash", "billing"), ("wipe", "policy")])
def test_other_crash_points(
    tmp_path: Path, shared_redis: tuple[str, str], pg_url: str, scenario: str, crash_after: str
) -> None:
    redis_url, prefix = shared_redis
    reports = run_demo(
        tmp_path,
        f"--scenario={scenario}",
        f"--crash-after={crash_after}",
        redis_url=redis_url,
        durable_url=pg_url,
        prefix=prefix,
    )
    check = check_crash_story if scenario == "crash" else check_wipe_story
    check(reports[scenario], crash_after)


def test_review_rejected(tmp_path: Path, shared_redis: tuple[str, str], pg_url: str) -> None:
    redis_url, prefix = shared_redis
    reports = run_demo(
        tmp_path,
        "--scenario=review",
        "--decision=reject",
        redis_url=redis_url,
        durable_url=pg_url,
        prefix=prefix,
    )
    check_review_story(reports["review"], "reject")


def test_own_valkey_restarted_empty_mid_refund(tmp_path: Path, pg_url: str) -> None:
    """No REDIS_URL: the demo starts Valkey itself, and its wipe is a SIGKILL of
    that server and an empty restart. The crash sits inside issue_refund, after
    the ledger write: the node runs again and the idempotency key holds."""
    reports = run_demo(
        tmp_path,
        "--scenario=wipe",
        "--crash-after=refund",
        redis_url=None,
        durable_url=pg_url,
        prefix="support_demo",
    )
    check_wipe_story(reports["wipe"], "refund")
    assert "an empty one started" in reports["wipe"]["redis_wipe"]


def test_embedded_default(tmp_path: Path) -> None:
    """No REDIS_URL, no DURABLE_URL: the demo's own Valkey and a SQLite file."""
    reports = run_demo(
        tmp_path, "--scenario=wipe", redis_url=None, durable_url=None, prefix="support_demo"
    )
    check_wipe_story(reports["wipe"], "account")
