"""After the sale of a recovered car: the explanation of its surplus or deficiency mailed, and a
deficiency referred to legal.

`settle_sales` is part of the recoveries step (`tasks.recovery.settle_recoveries`, which the cycle,
`arrears dispatch` and the letters' webhooks run) and works in its transaction. For each sale
recorded with `arrears sale record` whose account its recovery closed, not barred:

- where the profile owes the explanation (US: UCC 9-616(b), `Profile.deficiency_explanation`),
  the `deficiency_explanation` letter is written through the one letters path
  (`tasks.letters.write_letter`: a missing address blocks it, and an import that brings one has it
  written again here, as the notice of sale is), for a surplus as for a deficiency;
- a deficiency takes the account back into legal referral (`arrears.storage.sales.refer_deficiency`),
  in the US only once the explanation is mailed (it must come before or with the first written
  demand: the referral's filing is one), elsewhere at once; the referral run then opens its
  referral with the sale's deficiency as the claim (`arrears.storage.referrals.open_referral`).

Then each borrower's request for the explanation (`arrears sale explain`, UCC 9-616(b)(1)(B)): it
is written again under a key of its own for the request, the day it is due (14 days after the
request came) its letter's deadline, and once mailed the request is answered on the timeline.

A collection hold keeps all of it back (DESIGN §2), said once on the timeline. Times are the
facts' own: the account re-enters at the explanation's mailed event (US) or at the step's instant.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from arrears.currencies import display
from arrears.letters import LetterContext
from arrears.letters.notices import vehicle_of
from arrears.recovery import MAILED
from arrears.settings import get_settings
from arrears.storage import letters
from arrears.storage.overdue_letters import mail_by
from arrears.storage.redemptions import (
    RequestToAnswer,
    answered_note,
    requests_to_answer,
)
from arrears.storage.sales import SaleToSettle, held_note, refer_deficiency, sales_to_settle, settled_note
from arrears.vocabulary import Hold, HoldScope
from tasks.database import policy
from tasks.letters import letter_key, readdressable, write_letter

__all__ = ["explanation_key", "request_key", "settle_sales"]


def explanation_key(connection: Connection, owed: SaleToSettle) -> str:
    sale = owed.sale
    return letter_key(connection, sale.account_id, f"{sale.order_id.lower()}-deficiency-explanation")


def request_key(connection: Connection, request: RequestToAnswer) -> str:
    sale = request.owed.sale
    what = f"{sale.order_id.lower()}-deficiency-explanation-requested-{request.requested_on.isoformat()}"
    return letter_key(connection, sale.account_id, what)


def settle_sales(connection: Connection, as_of: datetime) -> dict[str, int]:
    """Move on every recorded sale that waits for its explanation or its referral, then every
    request for an explanation not yet mailed; count the explanations written, the accounts
    referred and those waiting, the requests' explanations written and waiting."""
    counts = {
        "sale_explanations_written": 0,
        "sales_referred": 0,
        "sales_waiting": 0,
        "requested_explanations_written": 0,
        "requested_explanations_waiting": 0,
    }
    for owed in sales_to_settle(connection):
        done = _settle(connection, owed, as_of)
        if done:
            counts[done] += 1
    for request in requests_to_answer(connection):
        done = _answer(connection, request, as_of)
        if done:
            counts[done] += 1
    return counts


def _answer(connection: Connection, request: RequestToAnswer, as_of: datetime) -> str | None:
    """Write the request's explanation (again, in its place, once an address or a rewrite lets
    it), or see that it was mailed."""
    owed = request.owed
    at = max(as_of, request.recorded_at)
    stopping = sorted(Hold(h).value for h in owed.holds if Hold(h).scope is HoldScope.COLLECTION)
    if stopping:
        held_note(connection, owed.sale, hold=stopping[0], at=at)
        return "requested_explanations_waiting"
    key = request_key(connection, request)
    written = letters.letter_by_key(connection, key)
    readdressed = bool(written and readdressable(connection, written))
    if written is None or readdressed:
        _write(connection, owed, key, at, readdressed=readdressed)
        mail_by(connection, [(key, request.due_on, owed.timezone)])
        return "requested_explanations_written"
    if written.status not in MAILED or written.mailed_at is None:
        return "requested_explanations_waiting"
    mailed = written.mailed_at.astimezone(ZoneInfo(owed.timezone)).date()
    answered_note(connection, request, at=max(at, written.mailed_at), mailed_on=mailed)
    return None


def _settle(connection: Connection, owed: SaleToSettle, as_of: datetime) -> str | None:
    sale = owed.sale
    at = max(as_of, sale.recorded_at)
    stopping = sorted(Hold(h).value for h in owed.holds if Hold(h).scope is HoldScope.COLLECTION)
    if stopping:
        held_note(connection, sale, hold=stopping[0], at=at)
        return "sales_waiting"
    rules = policy().profile(owed.jurisdiction)
    cur = sale.disposition.currency
    owing = (
        f"deficiency of {cur} {display(sale.deficiency, cur)} after the sale of {sale.sold_on.isoformat()}"
    )
    if not rules.deficiency_explanation:
        if not sale.deficiency:
            settled_note(
                connection, sale, at=at, detail=f"the sale of {sale.sold_on.isoformat()} left no deficiency"
            )
            return None
        reason = f"{owing}: referred to legal"
        return _referred(connection, owed, at=at, reason=reason)
    key = explanation_key(connection, owed)
    written = letters.letter_by_key(connection, key)
    readdressed = bool(written and readdressable(connection, written))
    if written is None or readdressed:
        _write(connection, owed, key, at, readdressed=readdressed)
        return "sale_explanations_written"
    if written.status not in MAILED or written.mailed_at is None:
        return "sales_waiting" if sale.deficiency else None
    mailed = written.mailed_at.astimezone(ZoneInfo(owed.timezone)).date()
    if not sale.deficiency:  # a surplus's explanation is its accounting: nothing follows it here
        detail = (
            f"the surplus after the sale of {sale.sold_on.isoformat()} explained, mailed {mailed.isoformat()}"
        )
        settled_note(connection, sale, at=max(at, written.mailed_at), detail=detail)
        return None
    reason = f"{owing}: referred to legal, its explanation (UCC 9-616) mailed {mailed.isoformat()}"
    return _referred(connection, owed, at=max(sale.recorded_at, written.mailed_at), reason=reason)


def _referred(connection: Connection, owed: SaleToSettle, *, at: datetime, reason: str) -> str | None:
    """Take the account back into legal referral for the sale's deficiency, and settle the sale."""
    if not refer_deficiency(connection, owed.sale, at=at, reason=reason):
        return None
    settled_note(connection, owed.sale, at=at, detail=f"the sale of {owed.sale.sold_on.isoformat()} referred")
    return "sales_referred"


def _write(connection: Connection, owed: SaleToSettle, key: str, at: datetime, *, readdressed: bool) -> None:
    sale, settings = owed.sale, get_settings()
    d = sale.disposition

    def context(name: str, address: tuple[str, ...]) -> LetterContext:
        return LetterContext(
            jurisdiction=owed.jurisdiction,
            lender=settings.lender_name,
            lender_contact=settings.lender_contact,
            borrower_name=name,
            account_reference=sale.account_id,
            letter_date=at.astimezone(ZoneInfo(owed.timezone)).date(),
            currency=d.currency,
            vehicle=vehicle_of(owed.vin) or "the vehicle under your contract",
            sold_on=sale.sold_on,
            secured=d.balance,
            secured_on=sale.secured_on,
            proceeds=d.proceeds,
            expenses=d.expenses,
            credits=d.credits,
            deficiency=d.deficiency,
            surplus=d.surplus,
            borrower_address=(name, *address),
        )

    write_letter(
        connection,
        key=key,
        account_id=sale.account_id,
        review_id=None,
        kind="deficiency_explanation",
        at=at,
        rules=policy().profile(owed.jurisdiction),
        context_of=context,
        readdressed=readdressed,
    )
