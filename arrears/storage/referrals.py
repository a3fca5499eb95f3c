"""Data access for legal referrals: opening one, its filing draft, submission, refusal and
dismissal, and the work list the referral flows follow (the legal team's decisions on them:
`arrears.storage.legal_team`).

Every function takes the caller's connection and does not commit: the task owns the
transaction. Each step is recorded once, so a referral flow re-run from the top repeats nothing.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, select, update

from arrears.lifecycle import NOT_SUING
from arrears.review import ReferralFacts, claim_amount, notices_from
from arrears.storage._common import event, holds_of, insert_events, inserted_id, to_precision
from arrears.storage.accounts import lock_accounts
from arrears.storage.installation import installation_id
from arrears.storage.sales import claimable, recorded_sale
from arrears.storage.tables import account, audit, borrower, referral
from arrears.vocabulary import Hold, Stage

# Referral statuses after which a referral run has nothing more to do at the court: the case ended,
# or it went back to the legal team (`rejected`; `objected`: the respondent objected to the payment
# order, which is void, and counsel decides whether to sue).
# The legal team's own: `off_system` (counsel sues outside arrears), `not_suing`, `refiled` (a
# rejected filing replaced by a new referral drafted from today's facts).
OFF_SYSTEM = "off_system"
REFILED = "refiled"
REFERRAL_ENDED = frozenset(
    {"judgment", "settled", "dismissed", "dismissing", "cancelled", "rejected", "objected"}
    | {NOT_SUING, OFF_SYSTEM, REFILED}
)
# Of those, the ones that go back to the legal team's queue: the court will not end the case itself.
REFERRAL_TO_LEGAL_TEAM = frozenset({"rejected", "objected"})

# What `record_filing_held` is told when a military hold makes the filed affidavit untrue.
MILITARY_HELD = f"hold:{Hold.MILITARY.value}"

__all__ = [
    "MILITARY_HELD",
    "OFF_SYSTEM",
    "REFERRAL_ENDED",
    "REFERRAL_TO_LEGAL_TEAM",
    "REFILED",
    "ReferralState",
    "filing_drafted",
    "open_referral",
    "record_dismissal",
    "record_filing_draft",
    "record_filing_held",
    "record_refusal",
    "record_submission",
    "referral_accounts",
    "referral_facts",
    "referral_state",
    "referral_work",
]


@dataclass(frozen=True, slots=True)
class ReferralState:
    referral_id: int
    account_id: str
    status: str
    filing_id: str | None
    claim_amount: Decimal | None
    opened_at: datetime
    updated_at: datetime
    stage: str
    balance: Decimal
    currency: str
    holds: frozenset[Hold] = frozenset()  # in force on the account now
    # The filing before the court swore the defendant is not in military service, and a military
    # hold is on the account now: the affidavit is untrue before any default judgment.
    affidavit_outdated: bool = False

    @property
    def paid(self) -> bool:
        """Nothing left to sue for: paid or settled, or out of legal referral by a payment (past
        due cleared: cured, the loan reinstated), so the filing is withdrawn."""
        return self.balance <= 0 or self.stage != Stage.LEGAL_REFERRAL

    def as_json(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "account_id": self.account_id,
            "status": self.status,
            "filing_id": self.filing_id,
            "claim_amount": str(self.claim_amount) if self.claim_amount else None,
            "stage": self.stage,
        }


def referral_state(connection: Connection, referral_id: int) -> ReferralState | None:
    r = connection.execute(
        select(referral, account.c.stage, account.c.balance, account.c.currency)
        .join(account, account.c.account_id == referral.c.account_id)
        .where(referral.c.id == referral_id)
    ).first()
    if r is None:
        return None
    holds = holds_of(connection, [r.account_id]).get(r.account_id, frozenset())
    return ReferralState(
        r.id,
        r.account_id,
        r.status,
        r.filing_id,
        r.claim_amount,
        r.opened_at,
        r.updated_at,
        r.stage,
        r.balance,
        r.currency,
        holds,
        r.filing_id is not None and Hold.MILITARY in holds and _sworn_not_in_service(connection, r.id),
    )


def _sworn_not_in_service(connection: Connection, referral_id: int) -> bool:
    """Whether the referral's filing carries an SCRA affidavit that the defendant is not in
    military service (50 U.S.C. 3931(b)(1)): a draft recorded before the affidavit's status was,
    says what the facts it was drafted from said."""
    drafted = filing_drafted(connection, referral_id)
    if drafted is None or not drafted.get("military_affidavit"):
        return False
    if "defendant_military" in drafted:
        return not drafted["defendant_military"]
    return not referral_facts(connection, referral_id).military


def open_referral(
    connection: Connection, *, account_id: str, at: datetime, lender: str
) -> ReferralState | None:
    """The referral of the account's present stay in legal referral (the latest opened since it
    entered the stage), opened now with its facts if it has none. An account that has left legal
    referral (paid, cured, settled) gets the referral it left open, for its run to withdraw (see
    `referral_work`). None when there is neither, or nothing to claim."""
    lock_accounts(connection, [account_id])
    a = connection.execute(
        select(account, borrower.c.name.label("borrower_name"))
        .join(borrower, borrower.c.borrower_id == account.c.borrower_id)
        .where(account.c.account_id == account_id)
    ).first()
    if a is None:
        return None
    if a.stage != Stage.LEGAL_REFERRAL:
        left = connection.execute(
            select(referral.c.id)
            .where(referral.c.account_id == account_id, referral.c.status.not_in(REFERRAL_ENDED))
            .order_by(referral.c.id.desc())
            .limit(1)
        ).scalar()
        return None if left is None else referral_state(connection, left)
    existing = connection.execute(
        select(referral.c.id)
        .where(
            referral.c.account_id == account_id,
            referral.c.opened_at >= a.stage_since,
            referral.c.status != REFILED,  # replaced by a new referral, opened below if not yet
        )
        .order_by(referral.c.opened_at.desc(), referral.c.id.desc())
        .limit(1)
    ).scalar()
    if existing is not None:
        return referral_state(connection, existing)
    opened = max(at, a.stage_since)
    events = connection.execute(
        select(audit.c.kind, audit.c.at, audit.c.detail, audit.c.data)
        .where(
            audit.c.account_id == account_id,
            audit.c.kind.in_(("cure_notice", "vendor_order", "decision", "vehicle_sale", "sale_extended")),
        )
        .order_by(audit.c.at, audit.c.id)
    ).all()
    decision = next((e for e in reversed(events) if e.kind == "decision"), None)
    sold = recorded_sale(connection, account_id)
    if sold is not None:
        # A sale recorded with its accounting (`arrears sale record`): the claim is its deficiency,
        # less what was paid since, never the balance again less the proceeds (the servicing system
        # may have taken the proceeds off the balance it sends us already). No claim once barred.
        if sold.barred:
            return None
        d = sold.disposition
        paid = sold.deficiency - to_precision(claimable(connection, sold), a.currency)
        balance, fees, proceeds = d.balance - d.credits - paid, d.expenses, d.proceeds
    else:
        # Sale facts without an accounting (kind `vehicle_sale`, data `proceeds` and `fees`); none
        # means a claim for the balance.
        sales = [e.data or {} for e in events if e.kind == "vehicle_sale"]
        fees = sum((Decimal(d.get("fees", "0")) for d in sales), Decimal(0))
        proceeds = sum((Decimal(d.get("proceeds", "0")) for d in sales), Decimal(0))
        balance = to_precision(a.balance, a.currency)
    try:
        claim = claim_amount(balance, fees, proceeds)
    except ValueError:
        return None
    holds = holds_of(connection, [account_id]).get(account_id, frozenset())
    referral_id = int(
        inserted_id(
            connection.execute(
                referral.insert().values(
                    account_id=account_id,
                    status="draft",
                    claim_amount=claim,
                    opened_at=opened,
                    updated_at=opened,
                )
            )
        )
    )
    facts = ReferralFacts(
        referral_id=referral_id,
        account_id=account_id,
        lender=lender,
        borrower_name=a.borrower_name,
        jurisdiction=a.jurisdiction,
        currency=a.currency,
        balance=balance,
        fees=fees,
        sale_proceeds=proceeds,
        past_due=to_precision(a.past_due_amount, a.currency),
        oldest_due_date=a.oldest_due_date,
        days_past_due=a.days_past_due,
        vin=a.vin,
        military=Hold.MILITARY in holds,
        decided_by=(decision.data or {}).get("reviewer") if decision else None,
        decision_reason=(decision.data or {}).get("reason") if decision else None,
        opened_on=opened.date(),
        notices=notices_from([(e.kind, e.at, e.detail) for e in events if e.kind != "decision"]),
        installation=installation_id(connection),
    )
    insert_events(
        connection,
        [
            event(
                account_id,
                opened,
                "referral",
                f"legal referral {referral_id} opened: claim {a.currency} {claim}",
                {"referral_id": referral_id, "claim": str(claim), "facts": facts.to_json()},
            )
        ],
    )
    return referral_state(connection, referral_id)


def referral_facts(connection: Connection, referral_id: int) -> ReferralFacts:
    """The facts stored when the referral opened: every draft of it is built from these."""
    account_id = connection.execute(
        select(referral.c.account_id).where(referral.c.id == referral_id)
    ).scalar_one()
    for (data,) in connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "referral")
        .order_by(audit.c.id)
    ):
        if (data or {}).get("referral_id") == referral_id and "facts" in data:
            return ReferralFacts.from_json(data["facts"])
    raise LookupError(f"referral {referral_id} has no stored facts")


def record_filing_draft(
    connection: Connection, *, referral_id: int, summary: dict[str, Any], at: datetime
) -> bool:
    """Audit the filing as built (claim, court, documents by hash), once per referral."""
    if filing_drafted(connection, referral_id) is not None:
        return False
    account_id = connection.execute(
        select(referral.c.account_id).where(referral.c.id == referral_id)
    ).scalar_one()
    kinds = ", ".join(d["kind"] for d in summary["documents"])
    insert_events(
        connection,
        [
            event(
                account_id,
                at,
                "filing",
                f"filing drafted for {summary['court']} ({summary['case_type']}): "
                f"claim {summary['currency']} {summary['claim']}; {kinds}",
                {"referral_id": referral_id, "action": "drafted", **summary},
            )
        ],
    )
    return True


def filing_drafted(connection: Connection, referral_id: int) -> dict[str, Any] | None:
    """The filing as drafted for the referral (its summary, with the idempotency key it is
    submitted under), or None: a referral drafted but without a filing id may have reached the
    court, its answer lost in a crash."""
    account_id = connection.execute(
        select(referral.c.account_id).where(referral.c.id == referral_id)
    ).scalar_one()
    for (data,) in connection.execute(
        select(audit.c.data).where(audit.c.account_id == account_id, audit.c.kind == "filing")
    ):
        if (data or {}).get("referral_id") == referral_id and (data or {}).get("action") == "drafted":
            return dict(data)
    return None


def record_submission(
    connection: Connection,
    *,
    referral_id: int,
    filing_id: str,
    status: str,
    at: datetime,
    provider: str,
) -> bool:
    """Store the court's filing id on the referral, once (a resubmission returns the same id)."""
    changed = connection.execute(
        update(referral)
        .where(referral.c.id == referral_id, referral.c.filing_id.is_(None))
        .values(filing_id=filing_id, status=status, updated_at=at)
    ).rowcount
    if changed:
        account_id = connection.execute(
            select(referral.c.account_id).where(referral.c.id == referral_id)
        ).scalar_one()
        insert_events(
            connection,
            [
                event(
                    account_id,
                    at,
                    "filing",
                    f"filing {filing_id} submitted to the court ({status})",
                    {
                        "referral_id": referral_id,
                        "action": "submitted",
                        "filing_id": filing_id,
                        "status": status,
                        "provider": provider,
                    },
                    actor=f"court:{provider}",
                )
            ],
        )
    return bool(changed)


def record_refusal(
    connection: Connection, *, referral_id: int, at: datetime, reason: str, provider: str
) -> bool:
    """The gateway refused the filing outright (or lost it): the referral goes back to the legal
    team's queue as `rejected`, with the reason, like a filing the court rejects."""
    r = connection.execute(
        select(referral.c.account_id, referral.c.status, referral.c.filing_id).where(
            referral.c.id == referral_id
        )
    ).one()
    if r.status == "rejected":
        return False
    connection.execute(
        update(referral).where(referral.c.id == referral_id).values(status="rejected", updated_at=at)
    )
    insert_events(
        connection,
        [
            event(
                r.account_id,
                at,
                "court",
                f"filing {r.filing_id or '(not filed)'}: {r.status} → rejected ({reason})",
                {
                    "filing_id": r.filing_id,
                    "from": r.status,
                    "to": "rejected",
                    "reason": reason,
                    "source": "gateway",
                    "referral_id": referral_id,
                },
                actor=f"court:{provider}",
            )
        ],
    )
    return True


def record_dismissal(
    connection: Connection, *, referral_id: int, status: str, at: datetime, detail: str
) -> bool:
    """The account paid or settled: the referral is withdrawn (`dismissed`, done at the gateway)
    or waits for counsel to file the dismissal (`dismissing`). Once."""
    changed = connection.execute(
        update(referral)
        .where(referral.c.id == referral_id, referral.c.status.not_in(("dismissed", "dismissing")))
        .values(status=status, updated_at=at)
    ).rowcount
    if changed:
        account_id = connection.execute(
            select(referral.c.account_id).where(referral.c.id == referral_id)
        ).scalar_one()
        insert_events(
            connection,
            [event(account_id, at, "filing", detail, {"referral_id": referral_id, "action": status})],
        )
    return bool(changed)


def record_filing_held(connection: Connection, *, referral_id: int, barred: str, at: datetime) -> bool:
    """Audit, once per referral, hold and filing, that a hold keeps the filing back: a draft is not
    submitted while it lasts; a filing already before the court is left to counsel, who must
    tell the court (a bankruptcy's automatic stay halts the suit; a dispute, a death or Breathing
    Space stops enforcement; a military hold (`MILITARY_HELD`) makes the affidavit filed untrue).
    Returns whether this was new."""
    r = connection.execute(
        select(referral.c.account_id, referral.c.filing_id).where(referral.c.id == referral_id)
    ).one()
    for (data,) in connection.execute(
        select(audit.c.data).where(audit.c.account_id == r.account_id, audit.c.kind == "filing")
    ):
        said = data or {}
        if (said.get("referral_id"), said.get("held"), said.get("filing_id")) == (
            referral_id,
            barred,
            r.filing_id,
        ):
            return False
    if r.filing_id and barred == MILITARY_HELD:
        detail = (
            f"filing {r.filing_id} swore the defendant is not in military service, and a military hold "
            "is now on the account: counsel must file an amended military-status affidavit before any "
            "default judgment (50 U.S.C. 3931(b))"
        )
    elif r.filing_id:
        detail = (
            f"filing {r.filing_id} is before the court under {barred}: counsel must tell the court (stay)"
        )
    else:
        detail = f"filing held back: {barred}; it is submitted once the hold is lifted"
    data = {"referral_id": referral_id, "action": "held", "held": barred, "filing_id": r.filing_id}
    insert_events(connection, [event(r.account_id, at, "filing", detail, data)])
    return True


def referral_work(connection: Connection) -> list[tuple[str, int, int | None, str | None]]:
    """Accounts in legal referral, each with its episode, present referral id (None: none opened
    yet) and that referral's status; then the accounts that left legal referral (paid, cured,
    settled) with a referral still open: a filing may be before the court, and the run that was to
    withdraw it died (a worker killed, a crash) before the account paid. No run is started for an
    account out of the stage otherwise, so the suit would go on against a borrower who paid."""
    rows = connection.execute(
        select(account.c.account_id, account.c.episode, referral.c.id, referral.c.status)
        .select_from(account)
        .outerjoin(
            referral,
            and_(
                referral.c.account_id == account.c.account_id, referral.c.opened_at >= account.c.stage_since
            ),
        )
        .where(account.c.stage == Stage.LEGAL_REFERRAL.value)
        .order_by(account.c.account_id, referral.c.id)
    ).all()
    left_open = connection.execute(
        select(account.c.account_id, account.c.episode, referral.c.id, referral.c.status)
        .join(account, account.c.account_id == referral.c.account_id)
        .where(account.c.stage != Stage.LEGAL_REFERRAL.value, referral.c.status.not_in(REFERRAL_ENDED))
        .order_by(account.c.account_id, referral.c.id)
    ).all()
    latest: dict[str, tuple[str, int, int | None, str | None]] = {}
    for r in (*rows, *left_open):
        latest[r.account_id] = (r.account_id, r.episode, r.id, r.status)
    return list(latest.values())


def referral_accounts(connection: Connection) -> set[str]:
    """Accounts with a referral in this database: the runs waiting on their court are this
    database's to wake (one Prefect server may serve several), whether the case goes on or has
    ended meanwhile (a court's callback, a settlement): a run woken on an ended case ends with it,
    where one left alone would wait, paused, for good."""
    return set(connection.execute(select(referral.c.account_id).distinct()).scalars())
