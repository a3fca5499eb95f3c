"""After a recovery: the account closed, or the notice of sale mailed first and then closed.

`settle_recoveries` looks at every open account whose car the agency reported recovered (from a
webhook or a lookup), asks `arrears.recovery.after_recovery` what comes next, and does it: write
the notice of sale (through the one letters path, `tasks.letters.write_letter`, so it is sent,
tracked and kept as evidence like the right-to-cure notice) or close the account with the
recovery in its audit trail. A recovery stopped for a person (a collection hold, an order called
off before the car was taken, a notice that cannot be mailed) waits, and its timeline says so once
(`note_stopped`): no review lists it any more. It is idempotent (the letter has its key; a
closed account is no longer open), so the cycle, `arrears dispatch` and the webhooks may all run it.
A recovered car whose account a payment cured, paid off or settled meanwhile is neither noticed
for sale nor closed on: its timeline says once that the car is to go back (`note_unreturned`), and
`arrears review list` lists it until its return is recorded (`arrears sale reinstate|redeem|return`).
The sale of a recovered car is recorded by a person (`arrears sale record`); what follows it (the
explanation of the surplus or deficiency, the deficiency's referral) is `tasks.sales`, run here.

Times are the facts' own: the account closes at the recovery, or at the notice's mailed event,
so a replayed or simulated timeline closes it on the same instant.
"""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from arrears.letters import LetterContext
from arrears.models import utcnow
from arrears.recovery import after_recovery
from arrears.reinstatement import STATUTORY, last_day_to_reinstate, right_spent
from arrears.settings import get_settings
from arrears.storage import letters
from arrears.storage.recoveries import (
    Recovered,
    close_recovered,
    note_stopped,
    note_unreturned,
    recovered_accounts,
    unreturned_cars,
)
from arrears.storage.redemptions import reinstatements
from tasks.database import engine, policy
from tasks.letters import letter_key, readdressable, write_letter
from tasks.sales import settle_sales

__all__ = ["sale_notice_key", "settle_recoveries"]


def sale_notice_key(connection: Connection, recovered: Recovered) -> str:
    return letter_key(connection, recovered.account_id, f"{recovered.order_id.lower()}-notice-of-sale")


def settle_recoveries(as_of: datetime | None = None, *, engine_: Engine | None = None) -> dict[str, int]:
    """Move on every open account whose car was recovered, then every car sold since
    (`tasks.sales.settle_sales`); count closed, notices written, waiting, cars to return to an
    account paid meanwhile (`recoveries_to_return`: all of them, each said once on its timeline),
    explanations written, deficiencies referred. Three queries when there is nothing to do;
    `as_of` dates the letters written (the clock by default)."""
    counts = {
        "recoveries_closed": 0,
        "sale_notices_written": 0,
        "recoveries_waiting": 0,
        "recoveries_to_return": 0,
    }
    with (engine_ or engine()).begin() as connection:
        for recovered in recovered_accounts(connection):
            done = _settle(connection, recovered, as_of or utcnow())
            counts[done] += 1
        for car in unreturned_cars(connection):
            if not car.said:
                note_unreturned(connection, car, at=max(car.since, as_of or utcnow()))
            counts["recoveries_to_return"] += 1
        # Then the cars sold since: their explanation, and a deficiency's way back to legal.
        return counts | settle_sales(connection, as_of or utcnow())


def _settle(connection: Connection, recovered: Recovered, as_of: datetime) -> str:
    rules = policy().profile(recovered.jurisdiction)
    key = sale_notice_key(connection, recovered)
    notice = letters.letter_by_key(connection, key)
    readdressed = bool(notice and readdressable(connection, notice))
    if readdressed:
        notice = None  # blocked to be written again (no address before, or not sent in time): write it
    printed = ((notice.context or {}).get("sale_after") or {}) if notice else {}
    written_at = max(recovered.recovered_at, as_of)
    step = after_recovery(
        rules=rules,
        timezone=recovered.timezone,
        now=written_at,
        notice_status=notice.status if notice else None,
        notice_reason=notice.reason if notice else None,
        notice_mailed_at=notice.mailed_at if notice else None,
        printed_sale_after=date.fromisoformat(printed["v"]) if printed else None,
        holds=recovered.holds,
        called_off=recovered.called_off,
        left_meanwhile=recovered.left_meanwhile,
    )
    if step.action == "close":
        mailed = notice.mailed_at if notice and notice.mailed_at else None
        at = max(recovered.recovered_at, mailed or recovered.recovered_at)
        data = {"sale_after": step.sale_after.isoformat() if step.sale_after else None}
        close_recovered(connection, recovered, at=at, reason=step.reason, data=data)
        return "recoveries_closed"
    if step.action == "wait":
        if step.stopped:
            note_stopped(connection, recovered, at=written_at, reason=step.reason)
        return "recoveries_waiting"
    settings = get_settings()
    vin = recovered.vin or ""
    denied = _reinstatement_denied(connection, recovered, step.sale_after)
    reinstate = () if denied else (("Past due instalments (to reinstate)", recovered.past_due),)

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return LetterContext(
            jurisdiction=recovered.jurisdiction,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=recovered.account_id,
            letter_date=written_at.astimezone(ZoneInfo(recovered.timezone)).date(),
            currency=recovered.currency,
            vehicle=f"VIN ending {vin[-6:]}" if vin else "the vehicle under your contract",
            sale_after=step.sale_after,
            # Cal. Civ. Code 2983.2(a), 2983.3: what to pay to reinstate (the past due) and to
            # redeem (the whole balance), itemized; our expenses of retaking come on request. Where
            # the right to reinstate is spent, the notice says so and why, and offers redemption.
            amount_to_cure=None if denied else recovered.past_due,
            itemization=(*reinstate, ("Unpaid balance of the contract (to redeem)", recovered.balance)),
            reinstatement_denied=denied,
            borrower_address=(name, *address),
        )

    write_letter(
        connection,
        key=key,
        account_id=recovered.account_id,
        review_id=None,
        kind="notice_of_sale",
        at=written_at,
        rules=rules,
        context_of=context,
        readdressed=readdressed,
    )
    return "sale_notices_written"


def _reinstatement_denied(
    connection: Connection, recovered: Recovered, sale_after: date | None
) -> str | None:
    """Why a US-CA borrower has no right to reinstate during the notice's period, or None: the
    right is spent (Cal. Civ. Code 2983.3(c)) as of the period's last day, so that a right that
    comes back within the period (12 months after the last reinstatement) is offered, never
    denied. Elsewhere the notice states no such right, and None."""
    if recovered.jurisdiction not in STATUTORY or sale_after is None:
        return None
    spent = right_spent(reinstatements(connection, recovered.account_id), last_day_to_reinstate(sale_after))
    return spent.said("you") if spent else None
