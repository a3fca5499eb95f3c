"""Negotiation in the cycle: borrowers' replies read, promises to pay judged, willingness moved.

`refresh_promises` runs inside the cycle's refresh transaction (and the single-account path's),
after new payments are applied and before days past due are recomputed; it is bulk, a few
queries however many accounts are in play, plus a few statements per reply (replies are rare
events, not a per-account pass). `record_agent_promise` is the agents' entry (`arrears promise add`).

Every reply read gets exactly one `willingness` event naming it (`data.reply_id`): a promise
nudges it as `promise_made`, anything else as `reply`. That event is what marks the reply read.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from arrears.clock import business_date as lender_date
from arrears.inbound import hardship_statement
from arrears.lifecycle import is_open
from arrears.policy import Policy
from arrears.promises import Unreadable, currency_refusal, promise_rules, read_promise
from arrears.restructuring import PlanError, PlanReply, parse_plan_reply, plan_rules
from arrears.settings import get_settings
from arrears.storage import accounts, plans, promises, quarantine, read_only
from arrears.storage.quarantine import What
from arrears.vocabulary import Stage
from tasks import isolation
from tasks.database import policy
from tasks.lifecycle_letters import write_plan_letter
from tasks.plan_options import answer_options

__all__ = ["promises_of", "read_replies", "record_agent_promise", "refresh_promises"]


def refresh_promises(
    connection: Connection,
    *,
    as_of: datetime,
    business_date: date,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Read new replies (promises, plan answers), judge pending promises against payments, nudge
    willingness for payments after contact, and clear `broken_promises` of accounts that left
    their delinquency. Counts by outcome.

    A reply that fails to be read quarantines that inbound message; promises that fail to be
    judged quarantine their account (`tasks.isolation`): the rest of the refresh stands."""
    rules = policy()
    zone = get_settings().lender_timezone
    counts = read_replies(connection, as_of=as_of, rules=rules, cycle_id=cycle_id, account_id=account_id)

    def judge(one: str | None) -> dict[str, int]:
        judged = promises.resolve_promises(
            connection,
            as_of=as_of,
            business_date=business_date,
            lender_timezone=zone,
            rules=promise_rules(rules),
            policy=rules.segmentation,
            cycle_id=cycle_id,
            account_id=one,
        )
        judged["payments_after_contact"] = promises.nudge_for_payments(
            connection, as_of=as_of, policy=rules.segmentation, cycle_id=cycle_id, account_id=one
        )
        return judged

    judged = isolation.bulk_or_each(
        connection,
        judge,
        candidates=lambda: promises.promise_accounts(connection, as_of=as_of),
        step="promises",
        at=as_of,
        cycle_id=cycle_id,
        account_id=account_id,
    )
    counts["promises_quarantined"] = judged.pop("quarantined", 0)
    counts |= {"promises_kept": 0, "promises_broken": 0, "payments_after_contact": 0} | judged
    counts["broken_promises_reset"] = promises.reset_broken_promises(connection, account_id=account_id)
    return counts


def read_replies(
    connection: Connection,
    *,
    as_of: datetime,
    rules: Policy,
    cycle_id: int | None = None,
    account_id: str | None = None,
) -> dict[str, int]:
    """Answer every unread reply: `PAY 500 2026-12-05` / `还款 500 2026-12-05` records a promise in
    reminder or negotiation; ACCEPT / DECLINE answer a restructuring offer, and PLAN is answered
    with a text of the options (`tasks.plan_options`); word of a hardship ("I lost my job", 失业了)
    makes the borrower unable (`promises.state_hardship`).

    Each reply is read in its own savepoint: one that raises is quarantined (the inbound message,
    by its callback id) and left unread, and the others are read. Replies already in quarantine,
    or of an account in quarantine, wait for the operator's retry."""
    counts = {
        "replies_read": 0,
        "promises_from_replies": 0,
        "plans_from_replies": 0,
        "options_from_replies": 0,
        "hardships_from_replies": 0,
        "replies_quarantined": 0,
    }
    first = promises.unread_replies(connection, as_of=as_of, account_id=account_id)
    if not first:
        return counts
    accounts.lock_accounts(connection, {r.account_id for r in first})
    replies = promises.unread_replies(
        connection, as_of=as_of, account_id=account_id
    )  # after the lock: still unread
    held = quarantine.open_refs(connection, What.INBOUND, {r.ref for r in replies})
    held_accounts = quarantine.open_accounts(connection, {r.account_id for r in replies})
    zone = get_settings().lender_timezone
    willingness: dict[str, float | None] = {}
    for reply in replies:
        if reply.ref in held or reply.account_id in held_accounts:
            continue
        ok, read = isolation.guarded(
            connection,
            lambda reply=reply: _read_reply(  # type: ignore[misc]
                connection,
                reply,
                willingness.get(reply.account_id, reply.willingness),
                rules,
                cycle_id,
                zone,
                as_of,
            ),
            what=What.INBOUND,
            ref=reply.ref,
            account_id=reply.account_id,
            step="replies",
            at=as_of,
            cycle_id=cycle_id,
        )
        if not ok or read is None:
            counts["replies_quarantined"] += 1
            continue
        score, outcomes = read
        willingness[reply.account_id] = score
        counts["replies_read"] += 1
        for outcome in outcomes:
            counts[outcome] += 1
    return counts


def _read_reply(
    connection: Connection,
    reply: promises.Reply,
    score: float | None,
    rules: Policy,
    cycle_id: int | None,
    zone: str,
    as_of: datetime,
) -> tuple[float, list[str]]:
    """Answer one reply, read at `as_of`, and nudge willingness for it: the new score, and the
    counts it adds to (`promises_from_replies`, `plans_from_replies` or `options_from_replies`, and
    `hardships_from_replies`)."""
    ref = {"reply_id": reply.event_id}
    behaviour = "reply"
    outcomes: list[str] = []
    promised = read_promise(reply.text)
    answer = parse_plan_reply(reply.text) if promised is None else None
    if isinstance(promised, Unreadable):
        _note(
            connection,
            reply,
            "promise",
            f"reply read as a promise, not recorded: {promised.reason}",
            ref,
            cycle_id,
        )
    elif promised is not None:
        if _promise_by_reply(connection, reply, promised, rules, ref, cycle_id, zone):
            behaviour = "promise_made"
            outcomes.append("promises_from_replies")
    elif answer is not None and answer.action == "options":
        if answer_options(
            connection,
            account_id=reply.account_id,
            as_of=as_of,
            rules=rules,
            data={**ref, "text": reply.text},
            at=reply.at,
            cycle_id=cycle_id,
        ):
            outcomes.append("options_from_replies")
    elif answer is not None and _answer_offer(connection, reply, answer, rules, ref, cycle_id, zone):
        outcomes.append("plans_from_replies")
    # Whatever else the reply does: "PAY 100 2026-12-20, I lost my job" promises and tells of it.
    if (hardship := hardship_statement(reply.text)) is not None and is_open(reply.stage):
        promises.state_hardship(
            connection,
            account_id=reply.account_id,
            statement=hardship,
            at=reply.at,
            policy=rules.segmentation,
            data=ref,
            cycle_id=cycle_id,
        )
        outcomes.append("hardships_from_replies")
    after = promises.nudge(
        connection,
        account_id=reply.account_id,
        current=score,
        behaviour=behaviour,
        at=reply.at,
        policy=rules.segmentation,
        data=ref,
        cycle_id=cycle_id,
        actor="borrower",
    )
    return after, outcomes


def _promise_by_reply(
    connection: Connection,
    reply: promises.Reply,
    promised: tuple[Decimal, date],
    rules: Policy,
    ref: dict[str, Any],
    cycle_id: int | None,
    zone: str,
) -> bool:
    """Record the promise a reply makes; a promise the rules refuse is noted on the timeline."""
    amount, due = promised
    other = currency_refusal(reply.text, reply.currency)
    if other is not None:
        _note(connection, reply, "promise", f"reply read as a promise, not recorded: {other}", ref, cycle_id)
        return False
    try:
        promises.add_promise(
            connection,
            account_id=reply.account_id,
            amount=amount,
            due_date=due,
            source="reply",
            at=reply.at,
            # The earlier of the two days: a borrower west of the lender who promises "today" in
            # their evening names a date that is the lender's yesterday, and has not passed.
            made_on=min(lender_date(reply.at, zone), reply.at.astimezone(ZoneInfo(reply.timezone)).date()),
            actor="borrower",
            rules=promise_rules(rules),
            data=ref,
            cycle_id=cycle_id,
        )
        return True
    except ValueError as why:
        _note(connection, reply, "promise", f"reply read as a promise, not recorded: {why}", ref, cycle_id)
        return False


def _answer_offer(
    connection: Connection,
    reply: promises.Reply,
    answer: PlanReply,
    rules: Policy,
    ref: dict[str, Any],
    cycle_id: int | None,
    zone: str,
) -> int:
    """Answer a restructuring offer (ACCEPT or DECLINE); 1 when a plan was accepted or declined, 0
    when the reply is only noted."""
    unanswered = _no_answer(reply, answer)
    if unanswered is not None:
        _note(connection, reply, "plan", unanswered, ref, cycle_id)
        return 0
    if answer.action == "decline":
        return _decline_offer(connection, reply, ref, cycle_id)
    day = lender_date(reply.at, zone)
    try:
        plan_id, terms = plans.accept_plan(
            connection,
            account_id=reply.account_id,
            kind=answer.kind,
            months=answer.months,
            at=reply.at,
            business_date=day,
            actor="borrower",
            source="reply",
            rules=plan_rules(rules),
            data=ref,
            cycle_id=cycle_id,
        )
    except PlanError as why:
        _note(connection, reply, "plan", f"reply read as accepting a plan, not applied: {why}", ref, cycle_id)
        return 0
    # The plan in writing (`tasks.lifecycle_letters`), mailed by the letters path like every letter.
    write_plan_letter(
        connection, account_id=reply.account_id, plan_id=plan_id, terms=terms, accepted_on=day, at=reply.at
    )
    return 1


def _no_answer(reply: promises.Reply, answer: PlanReply) -> str | None:
    """Why a reply about a plan answers no offer, for the timeline; None when it answers one."""
    if reply.stage != Stage.RESTRUCTURING:
        return f"reply {answer.action} read, but no offer is open (account in {reply.stage})"
    return None


def _decline_offer(
    connection: Connection, reply: promises.Reply, ref: dict[str, Any], cycle_id: int | None
) -> int:
    declined = plans.decline_plan(
        connection,
        account_id=reply.account_id,
        at=reply.at,
        actor="borrower",
        source="reply",
        data=ref,
        cycle_id=cycle_id,
    )
    if declined is None:
        _note(connection, reply, "plan", "reply DECLINE read, but no offer is open", ref, cycle_id)
    return int(declined is not None)


def _note(
    connection: Connection,
    reply: promises.Reply,
    kind: str,
    detail: str,
    ref: dict[str, Any],
    cycle_id: int | None,
) -> None:
    accounts.note(
        connection,
        account_id=reply.account_id,
        at=reply.at,
        kind=kind,
        detail=detail,
        data={**ref, "text": reply.text},
        cycle_id=cycle_id,
    )


def record_agent_promise(
    engine: Engine,
    *,
    account_id: str,
    amount: Decimal,
    due_date: date,
    agent: str,
    at: datetime,
) -> int:
    """An agent records a promise the borrower made by phone (`arrears promise add`); raises
    ValueError with the reason it is refused."""
    rules = policy()
    made_on = lender_date(at, get_settings().lender_timezone)
    with engine.begin() as connection:
        promise_id = promises.add_promise(
            connection,
            account_id=account_id,
            amount=amount,
            due_date=due_date,
            source="agent",
            at=at,
            made_on=made_on,
            actor=f"agent:{agent}",
            rules=promise_rules(rules),
            data={"agent": agent},
        )
        current = promises.willingness_of(connection, account_id)
        promises.nudge(
            connection,
            account_id=account_id,
            current=current,
            behaviour="promise_made",
            at=at,
            policy=rules.segmentation,
            data={"promise_id": promise_id},
            actor=f"agent:{agent}",
        )
    return promise_id


def promises_of(engine: Engine, account_id: str) -> list[dict[str, Any]]:
    """The account's promises, newest first, for `arrears promise list`."""
    with read_only(engine) as connection:  # no write lock: never waits for a writer
        rows = promises.promises_of(connection, account_id)
    return [
        {
            "id": r.id,
            "amount": str(r.amount),
            "due_date": r.due_date.isoformat(),
            "status": r.status,
            "source": r.source,
            "created_at": r.created_at.isoformat(),
            "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
        }
        for r in rows
    ]
