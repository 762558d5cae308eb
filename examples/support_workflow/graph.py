"""The support workflow: billing → account → policy → (human review) → refund → response.

A customer writes "I was charged twice, and I can't log in". Each node does one
job and records what it found in a typed sub-structure of the state:

* billing   — finds the duplicate charge in the charges ledger (`BillingResult`)
* account   — unlocks the account and sends a password-reset e-mail (`AccountResult`)
* policy    — business rules: a refund up to $500 is approved automatically,
              above that it goes to a human (`PolicyResult`)
* human_review — `interrupt()`s; a later process resumes it with
              `Command(resume={"approved": ..., "reviewer": ..., "note": ...})`
* issue_refund — moves the money (a side effect)
* response  — writes the answer

Side effects (`account`'s e-mail, `issue_refund`'s refund) go through
`Ledger.perform` with an idempotency key built from the thread and the node.
Run the graph with `durability="sync"`: each checkpoint is then stored before
the next node starts, so every side effect sits right after a checkpoint
boundary. A crash after that checkpoint never repeats the effect (the node is
done); a crash inside the node re-runs it, and the idempotency key makes the
second call a no-op.
"""

from __future__ import annotations

import itertools
import operator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import interrupt

from .ledger import Charge, Effect, Ledger

THREAD_ID = "case_8842"
CUSTOMER_ID = "cust_123"
REQUEST = "I was charged twice, and I can't log in"

AUTO_APPROVE_LIMIT_CENTS = 50_000  # refunds above $500 need a human
DUPLICATE_WINDOW = timedelta(minutes=10)

# The account system, reduced to what the account node needs.
ACCOUNTS: dict[str, dict[str, Any]] = {
    CUSTOMER_ID: {"name": "Jordan", "email": "jordan.lee@example.com", "failed_logins": 5},
}


class BillingResult(TypedDict):
    duplicate_found: bool
    original_charge_id: str | None
    duplicate_charge_id: str | None
    amount_cents: int
    description: str
    summary: str


class AccountResult(TypedDict):
    email: str
    failed_logins: int
    reset_email_key: str  # ledger idempotency key of the e-mail
    summary: str


class PolicyResult(TypedDict):
    refund_cents: int
    decision: Literal["no_refund", "auto_approved", "needs_review", "approved", "rejected"]
    reason: str
    reviewer: str | None


class SupportState(TypedDict, total=False):
    customer_id: str
    request: str
    messages: Annotated[list[AnyMessage], add_messages]
    billing: BillingResult
    account: AccountResult
    policy: PolicyResult
    refund_key: str | None  # ledger idempotency key of the refund
    completed_steps: Annotated[list[str], operator.add]
    final_response: str
    error: str | None


class Timeline(Protocol):
    """Where nodes report what they did (the demo's worker prints it)."""

    def emit(self, event: str, **fields: Any) -> None: ...

    async def reached(self, point: str) -> None:
        """Called at a named point; the demo's worker may be killed here."""


class SilentTimeline:
    def emit(self, event: str, **fields: Any) -> None:
        pass

    async def reached(self, point: str) -> None:
        pass


def initial_state(customer_id: str = CUSTOMER_ID, request: str = REQUEST) -> SupportState:
    return {
        "customer_id": customer_id,
        "request": request,
        "messages": [HumanMessage(request)],
        "completed_steps": [],
        "error": None,
    }


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def find_duplicate(charges: list[Charge]) -> tuple[Charge, Charge] | None:
    """The first charge repeated (same amount and description) within the window."""
    ordered = sorted(charges, key=lambda c: c.charged_at)
    for first, second in itertools.pairwise(ordered):
        gap = _at(second.charged_at) - _at(first.charged_at)
        same = (first.amount_cents, first.description) == (second.amount_cents, second.description)
        if same and gap <= DUPLICATE_WINDOW:
            return first, second
    return None


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _thread(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


def build_graph(
    ledger: Ledger,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    timeline: Timeline | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the workflow; nodes use `ledger` and report to `timeline`."""
    tl = timeline or SilentTimeline()

    def done(node: str, summary: str, **update: Any) -> dict[str, Any]:
        tl.emit("node", node=node, summary=summary)
        return {
            **update,
            "completed_steps": [node],
            "messages": [AIMessage(summary, name=node)],
        }

    def perform(key: str, **what: Any) -> Effect:
        effect = ledger.perform(key, **what)
        tl.emit(
            "effect",
            node=effect.node,
            key=key,
            kind=effect.kind,
            performed_now=effect.performed_now,
        )
        return effect

    def billing(state: SupportState) -> dict[str, Any]:
        customer = state["customer_id"]
        charges = ledger.charges(customer)
        if not charges and customer not in ACCOUNTS:
            return done("billing", "unknown customer", error=f"no customer {customer!r}")
        pair = find_duplicate(charges)
        if pair is None:
            result = BillingResult(
                duplicate_found=False,
                original_charge_id=None,
                duplicate_charge_id=None,
                amount_cents=0,
                description="",
                summary=f"{len(charges)} charges checked, no duplicate",
            )
        else:
            first, dup = pair
            result = BillingResult(
                duplicate_found=True,
                original_charge_id=first.charge_id,
                duplicate_charge_id=dup.charge_id,
                amount_cents=dup.amount_cents,
                description=dup.description,
                summary=(
                    f"duplicate charge {dup.charge_id} of {first.charge_id}: "
                    f"{dollars(dup.amount_cents)} {dup.description}"
                ),
            )
        return done("billing", result["summary"], billing=result)

    def route_after_billing(state: SupportState) -> Literal["account", "response"]:
        return "response" if state.get("error") else "account"

    def account(state: SupportState, config: RunnableConfig) -> dict[str, Any]:
        thread = _thread(config)
        profile = ACCOUNTS[state["customer_id"]]
        key = f"{thread}:account:password_reset_email"
        perform(
            key,
            kind="password_reset_email",
            thread_id=thread,
            node="account",
            target=profile["email"],
        )
        result = AccountResult(
            email=profile["email"],
            failed_logins=profile["failed_logins"],
            reset_email_key=key,
            summary=(
                f"locked after {profile['failed_logins']} failed logins: unlocked, "
                f"password-reset e-mail to {profile['email']}"
            ),
        )
        return done("account", result["summary"], account=result)

    def policy(state: SupportState) -> dict[str, Any]:
        bill, limit = state["billing"], dollars(AUTO_APPROVE_LIMIT_CENTS)
        cents = bill["amount_cents"] if bill["duplicate_found"] else 0
        if cents == 0:
            result = PolicyResult(
                refund_cents=0, decision="no_refund", reason="no duplicate", reviewer=None
            )
        elif cents <= AUTO_APPROVE_LIMIT_CENTS:
            result = PolicyResult(
                refund_cents=cents,
                decision="auto_approved",
                reason=f"{dollars(cents)} <= {limit}, the auto-approval limit",
                reviewer=None,
            )
        else:
            result = PolicyResult(
                refund_cents=cents,
                decision="needs_review",
                reason=f"{dollars(cents)} > {limit}: a human must approve",
                reviewer=None,
            )
        return done("policy", f"refund {result['decision']}: {result['reason']}", policy=result)

    def route_after_policy(
        state: SupportState,
    ) -> Literal["human_review", "issue_refund", "response"]:
        decision = state["policy"]["decision"]
        if decision == "needs_review":
            return "human_review"
        return "issue_refund" if decision == "auto_approved" else "response"

    def human_review(state: SupportState) -> dict[str, Any]:
        bill, rule = state["billing"], state["policy"]
        # Everything above this line runs again when the node is resumed:
        # keep it free of side effects.
        answer = interrupt(
            {
                "question": f"Approve a refund of {dollars(rule['refund_cents'])}?",
                "charge_id": bill["duplicate_charge_id"],
                "description": bill["description"],
                "reason": rule["reason"],
            }
        )
        approved = bool(answer["approved"])
        result = PolicyResult(
            refund_cents=rule["refund_cents"],
            decision="approved" if approved else "rejected",
            reason=str(answer.get("note") or rule["reason"]),
            reviewer=str(answer["reviewer"]),
        )
        verdict = "approved" if approved else "rejected"
        return done("human_review", f"{verdict} by {result['reviewer']}", policy=result)

    def route_after_review(state: SupportState) -> Literal["issue_refund", "response"]:
        return "issue_refund" if state["policy"]["decision"] == "approved" else "response"

    async def issue_refund(state: SupportState, config: RunnableConfig) -> dict[str, Any]:
        thread, bill = _thread(config), state["billing"]
        charge = str(bill["duplicate_charge_id"])
        key = f"{thread}:issue_refund:{charge}"
        effect = perform(
            key,
            kind="refund",
            thread_id=thread,
            node="issue_refund",
            target=charge,
            amount_cents=state["policy"]["refund_cents"],
        )
        # The one place where a crash makes LangGraph run a node again: the
        # refund is in the ledger, the checkpoint after this node is not.
        await tl.reached("refund")
        verb = "refunded" if effect.performed_now else "already refunded (idempotency key hit)"
        return done(
            "issue_refund",
            f"{verb} {dollars(effect.amount_cents or 0)} on {charge}",
            refund_key=key,
        )

    def response(state: SupportState) -> dict[str, Any]:
        text = compose_response(state)
        tl.emit("node", node="response", summary="final response written")
        return {
            "final_response": text,
            "completed_steps": ["response"],
            "messages": [AIMessage(text, name="response")],
        }

    builder = StateGraph(SupportState)
    builder.add_node("billing", billing)
    builder.add_node("account", account)
    builder.add_node("policy", policy)
    builder.add_node("human_review", human_review)
    builder.add_node("issue_refund", issue_refund)
    builder.add_node("response", response)
    builder.add_edge(START, "billing")
    builder.add_conditional_edges("billing", route_after_billing)
    builder.add_edge("account", "policy")
    builder.add_conditional_edges("policy", route_after_policy)
    builder.add_conditional_edges("human_review", route_after_review)
    builder.add_edge("issue_refund", "response")
    builder.add_edge("response", END)
    return builder.compile(checkpointer=checkpointer)


def compose_response(state: SupportState) -> str:
    """The customer-facing answer, from the typed results."""
    if state.get("error"):
        return f"Sorry, we could not look into this yet: {state['error']}."
    name = ACCOUNTS[state["customer_id"]]["name"]
    bill, acct, rule = state["billing"], state["account"], state["policy"]
    if not bill["duplicate_found"]:
        billing_text = "We found no duplicate charge on your account."
    else:
        amount, charge = dollars(rule["refund_cents"]), bill["duplicate_charge_id"]
        billing_text = {
            "auto_approved": f"You were charged twice for {bill['description']}; we refunded "
            f"the duplicate charge {charge} ({amount}).",
            "approved": f"You were charged twice for {bill['description']}; after review we "
            f"refunded the duplicate charge {charge} ({amount}).",
            "rejected": f"A billing specialist reviewed the {amount} charge {charge} and did "
            f"not refund it ({rule['reason']}); they will contact you.",
        }.get(rule["decision"], "Your refund is pending review.")
    login_text = (
        f"Your account was locked after {acct['failed_logins']} failed sign-ins; we unlocked it "
        f"and sent a password-reset link to {acct['email']}."
    )
    return f"Hi {name}, thanks for your patience. {billing_text} {login_text}"
