"""A court's statuses on our referrals, as its callbacks or our polls bring them (DESIGN §6, §7).

Each status is applied once, in order: a repeat or an older status changes nothing. A status of
a filing no referral has is kept for operators (`UNMATCHED_COURT`); one that arrives after the
referral ended here (withdrawn as the account paid, settled, a judgment) never reopens it
(`COURT_AFTER_END`, kept on the account's timeline).

An objection to a payment order (`objected`: 支付令失效) is applied like any status and sends
the referral to the legal team (`arrears.storage.waiting`), who decide whether to sue; a court
that goes on to judge the case under the same filing is still heard, as after a rejection.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from arrears.lifecycle import NOT_SUING
from arrears.storage.inbound import SOURCE, callback_seen
from arrears.storage.referrals import REFILED
from arrears.storage.tables import audit, referral

__all__ = ["COURT_AFTER_END", "UNMATCHED_COURT", "CourtRecorded", "record_court_status"]

UNMATCHED_COURT = "unmatched_court"  # audit kind: a court status about no referral of ours
COURT_AFTER_END = "court_after_end"  # audit kind: a court status after the referral ended here
# Ended by us or by the court for good: nothing a court says later moves them again. The legal
# team's not suing and refiling (a new referral in its place) are too; a suit off-system is not,
# so a court that goes on to judge under the same filing is still heard.
_REFERRAL_CLOSED = frozenset({"judgment", "settled", "dismissed", "cancelled", NOT_SUING, REFILED})


@dataclass(frozen=True, slots=True)
class CourtRecorded:
    known: bool  # a referral has this filing id
    changed: bool  # its status moved
    account_id: str | None = None
    previous: str | None = None


def record_court_status(
    connection: Connection,
    *,
    filing_id: str,
    status: str,
    at: datetime,
    provider: str,
    callback_id: str,
    reason: str | None = None,
    vendor_status: str | None = None,
) -> CourtRecorded:
    """Store a court's status on the referral with this filing id, unless it is a repeat (same
    callback, or the status it already has) or older than a status already applied. A status of
    a filing no referral has is kept for operators (an `unmatched_court` audit event, once).
    `vendor_status`, the court's own words, goes on the timeline with it (`data.vendor_status`)."""
    row = connection.execute(
        select(referral.c.id, referral.c.account_id, referral.c.status)
        .where(referral.c.filing_id == filing_id)
        .order_by(referral.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        if not callback_seen(connection, callback_id, []):
            connection.execute(
                audit.insert().values(
                    account_id=None,
                    at=at,
                    kind=UNMATCHED_COURT,
                    actor=f"court:{provider}",
                    detail=f"filing {filing_id}: {status}, but no referral has this filing id "
                    "(acknowledged, nothing changed)",
                    data={
                        "filing_id": filing_id,
                        "to": status,
                        "reason": reason,
                        "callback_id": callback_id,
                        "source": SOURCE,
                    },
                )
            )
        return CourtRecorded(known=False, changed=False)
    unchanged = CourtRecorded(known=True, changed=False, account_id=row.account_id, previous=row.status)
    if row.status == status:
        return unchanged
    if row.status in _REFERRAL_CLOSED:
        # Ended here (withdrawn as the account paid, settled, a judgment): a late or stray court
        # status must not reopen it, or the case would go on against a borrower who paid. Kept on
        # the timeline once, for counsel to see what the court said after.
        if not callback_seen(connection, callback_id, [row.account_id]):
            connection.execute(
                audit.insert().values(
                    account_id=row.account_id,
                    at=at,
                    kind=COURT_AFTER_END,
                    actor=f"court:{provider}",
                    detail=f"filing {filing_id}: the court says {status}"
                    + (f" ({reason})" if reason else "")
                    + f", after the referral ended {row.status}: not applied",
                    data={"filing_id": filing_id, "to": status, "callback_id": callback_id, "source": SOURCE},
                )
            )
        return unchanged
    applied = connection.execute(
        select(audit.c.at, audit.c.data).where(audit.c.account_id == row.account_id, audit.c.kind == "court")
    ).all()
    mine = [e for e in applied if (e.data or {}).get("filing_id") == filing_id]
    if any((e.data or {}).get("callback_id") == callback_id for e in mine):
        return unchanged
    if any(e.at > at for e in mine):  # out of order: a later status is already applied
        return unchanged
    connection.execute(update(referral).where(referral.c.id == row.id).values(status=status, updated_at=at))
    detail = f"filing {filing_id}: {row.status} → {status}" + (f" ({reason})" if reason else "")
    if status == "objected":
        detail += ": the payment order is void (支付令失效); the legal team decides whether to sue"
    connection.execute(
        audit.insert().values(
            account_id=row.account_id,
            at=at,
            kind="court",
            actor=f"court:{provider}",
            detail=detail,
            data={
                "filing_id": filing_id,
                "from": row.status,
                "to": status,
                "reason": reason,
                "callback_id": callback_id,
                "source": SOURCE,
                **({"vendor_status": vendor_status} if vendor_status else {}),
            },
        )
    )
    return CourtRecorded(known=True, changed=True, account_id=row.account_id, previous=row.status)
