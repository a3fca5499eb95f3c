"""What waits for whom: open repossession reviews, legal referrals and recovered cars to return
to a borrower who paid meanwhile, as operators (`arrears review list`) and the cycle's report
(reviews past their deadline) read them.

Every function takes the caller's connection and only reads.
"""

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, or_, select

from arrears.currencies import display
from arrears.lifecycle import NOT_SUING
from arrears.storage.legal_team import waits_for_legal_team
from arrears.storage.recoveries import unreturned_cars
from arrears.storage.referrals import OFF_SYSTEM, REFILED
from arrears.storage.reviews import ReviewState, open_review_state_chunks, open_review_states
from arrears.storage.tables import account, audit, referral
from arrears.vocabulary import HoldScope, Stage

__all__ = [
    "DECIDE",
    "Oldest",
    "Waiting",
    "oldest_waiting",
    "overdue_reviews",
    "review_waiting",
    "waiting_list",
]

# How a reviewer decides a review past its cure period, with every option the command requires, so
# that the line works once its placeholders are filled.
DECIDE = "arrears review decide {account} --decision repossess|legal|negotiate --reviewer NAME --reason TEXT"

_since = attrgetter("since")  # the order of every list of what waits: oldest first


@dataclass(frozen=True, slots=True)
class Waiting:
    account_id: str
    what: str  # review | referral | vehicle
    # mailing | cure period | promise | reviewer | hold | blocked | court | legal team | return car
    waits_for: str
    since: datetime
    until: datetime | None
    detail: str
    jurisdiction: str
    days_past_due: int
    past_due: Decimal
    currency: str
    ref: int

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "what": self.what,
            "waits_for": self.waits_for,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "detail": self.detail,
            "jurisdiction": self.jurisdiction,
            "days_past_due": self.days_past_due,
            "past_due_amount": display(self.past_due, self.currency),
            "currency": self.currency,
            "id": self.ref,
        }


def review_waiting(s: ReviewState, now: datetime) -> Waiting:
    """What an open review waits for at `now`: its letter, a hold, the cure period, a promise to pay
    still running, or the reviewer."""
    blocking = sorted(h for h in s.holds if h.scope is HoldScope.COLLECTION)
    stopped = s.notice_stopped
    if stopped is not None:
        who, since, until, detail = (
            ("hold" if s.letter_status == "returned_to_sender" else "blocked"),
            s.opened_at,
            None,
            stopped,
        )
    elif blocking:
        who, since, until, detail = (
            "hold",
            s.opened_at,
            None,
            f"hold:{blocking[0].value} stops the review",
        )
    elif s.cure_deadline is None and s.letter_status is not None:
        who, since, until, detail = (
            "mailing",
            s.opened_at,
            None,
            f"right-to-cure letter {s.letter_id} {s.letter_status}: the cure period starts once mailed",
        )
    elif s.cure_deadline is not None and now < s.cure_deadline:
        who, since, until, detail = (
            "cure period",
            s.opened_at,
            s.cure_deadline,
            "right-to-cure period running",
        )
    elif s.promise is not None:
        # The reviewer may only send it back to negotiation until the cycle judges the promise
        # (`arrears.review.promise_refusal`): listed as waiting for a reviewer, every repossess or
        # legal decision was refused.
        p = s.promise
        who, since, until = "promise", s.cure_deadline or s.opened_at, None
        detail = (
            f"promise {p.promise_id} to pay {s.currency} {display(p.amount, s.currency)} by "
            f"{p.due_date.isoformat()}: repossess and legal wait until it is kept or broken; negotiate may "
            "be decided now"
        )
    else:
        who, since, until = "reviewer", s.cure_deadline or s.opened_at, None
        detail = "decide: " + DECIDE.format(account=s.account_id)
    return Waiting(
        s.account_id,
        "review",
        who,
        since,
        until,
        detail,
        s.jurisdiction,
        s.days_past_due,
        s.past_due,
        s.currency,
        s.review_id,
    )


def waiting_list(connection: Connection, *, now: datetime) -> list[Waiting]:
    """What waits for whom and since when: open reviews (cure period, reviewer, hold), legal
    referrals (court, or the legal team for a rejected filing, a payment order objected to, a
    dismissal to file; `legal_team.waits_for_legal_team`) and recovered cars of accounts cured,
    paid off or settled since, to return (`recoveries.unreturned_cars`), oldest first."""
    return sorted(_waiting(connection, now=now), key=_since)


@dataclass(frozen=True, slots=True)
class Oldest:
    """How many wait, by what and whom they wait for, and the oldest of those asked for."""

    counts: Counter[tuple[str, str]]  # (what, waits for) -> how many
    chosen: int  # how many wait for whom was asked (all, without `waits_for`)
    first: list[Waiting]  # the oldest `limit` of them, in `waiting_list`'s order


def oldest_waiting(
    connection: Connection, *, now: datetime, limit: int | None, waits_for: str | None = None
) -> Oldest:
    """The counts of `waiting_list` and the first `limit` (None: all) of its items waiting for
    `waits_for`, holding a chunk of reviews and `limit` items at a time, not the whole list: a
    first cycle opens reviews for a quarter of a portfolio (246,331 at a million accounts), and
    an operator asks for the oldest fifty."""
    counts: Counter[tuple[str, str]] = Counter()
    chosen = 0

    def wanted() -> Iterator[tuple[datetime, int, Waiting]]:
        nonlocal chosen
        for n, w in enumerate(_waiting(connection, now=now)):
            counts[(w.what, w.waits_for)] += 1
            if waits_for is None or w.waits_for == waits_for:
                chosen += 1
                yield w.since, n, w  # n: among equal instants, the order `sorted` keeps

    ordered = sorted(wanted()) if limit is None else heapq.nsmallest(limit, wanted())
    return Oldest(counts, chosen, [w for _, _, w in ordered])


def _waiting(connection: Connection, *, now: datetime) -> Iterator[Waiting]:
    """The items of `waiting_list` in no particular order, the open reviews a chunk at a time."""
    for part in open_review_state_chunks(connection):
        yield from (review_waiting(s, now) for s in part)
    for r in connection.execute(
        select(
            referral,
            account.c.jurisdiction,
            account.c.days_past_due,
            account.c.past_due_amount,
            account.c.currency,
            account.c.stage,
        )
        .join(account, account.c.account_id == referral.c.account_id)
        .where(
            referral.c.status.not_in(("judgment", "settled", "dismissed", "cancelled", NOT_SUING, REFILED)),
            # A dismissal left to counsel is always of an account that has left legal referral
            # (paid, cured, settled): the suit goes on until counsel files it. So may one after an
            # objection: the court takes the case to litigation unless the applicant says no. So
            # does a suit counsel filed off-system.
            or_(
                account.c.stage == Stage.LEGAL_REFERRAL.value,
                referral.c.status.in_(("dismissing", "objected", OFF_SYSTEM)),
            ),
        )
        .order_by(referral.c.updated_at, referral.c.id)
    ):
        if not waits_for_legal_team(r.status, r.stage):
            who, detail = "court", f"filing {r.filing_id} {r.status}"
            if r.status == OFF_SYSTEM:  # no gateway reports on it: its end is the team's to record
                detail = (
                    "suit filed off-system by counsel: when it ends, arrears referral close "
                    f"{r.account_id} --outcome judgment|not-suing --by NAME --reason TEXT"
                )
        elif r.status == "rejected":
            reason = _court_reason(connection, r.account_id, r.filing_id, "rejected") or "no reason given"
            who, detail = "legal team", f"filing rejected: {reason}"
        elif r.status == "objected":
            reason = _court_reason(connection, r.account_id, r.filing_id, "objected") or "no reason given"
            who, detail = (
                "legal team",
                f"payment order objected to: {reason}; "
                + (
                    "decide whether to sue (a civil suit), or tell the court the applicant does not agree "
                    "to litigation"
                    if r.stage == Stage.LEGAL_REFERRAL.value
                    else f"account {r.stage}: tell the court the applicant does not agree to litigation"
                ),
            )
        elif r.status == OFF_SYSTEM:
            who, detail = (
                "legal team",
                f"account {r.stage}: counsel files the dismissal of the suit filed off-system",
            )
        else:
            who, detail = "legal team", f"referral {r.status}"
        yield Waiting(
            r.account_id,
            "referral",
            who,
            r.updated_at,
            None,
            detail,
            r.jurisdiction,
            r.days_past_due,
            r.past_due_amount,
            r.currency,
            r.id,
        )
    # A car on the agency's lot whose account a payment took out of collection: no review or
    # referral is left to list it, and its borrower waits for it.
    for car in unreturned_cars(connection):
        yield Waiting(
            car.account_id,
            "vehicle",
            "return car",
            car.since,
            None,
            car.todo,
            car.jurisdiction,
            car.days_past_due,
            car.past_due,
            car.currency,
            car.assignment_id,
        )


def overdue_reviews(connection: Connection, *, now: datetime, deadline: timedelta) -> list[str]:
    """The accounts whose review has waited for its reviewer longer than `deadline` at `now`,
    in the order of `waiting_list`. Only reviews whose cure deadline (or opening) is that old are
    read: a portfolio holds many open reviews, few of them overdue."""
    found = [review_waiting(s, now) for s in open_review_states(connection, waiting_before=now - deadline)]
    return [
        w.account_id
        for w in sorted(found, key=_since)
        if w.waits_for == "reviewer" and now - w.since > deadline
    ]


def _court_reason(connection: Connection, account_id: str, filing_id: str | None, to: str) -> str | None:
    """The reason the court gave, last, for moving the filing to `to`."""
    reason = None
    for (data,) in connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "court")
        .order_by(audit.c.at, audit.c.id)
    ):
        if (data or {}).get("filing_id") == filing_id and (data or {}).get("to") == to:
            reason = (data or {}).get("reason")
    return reason
