"""After the agency recovers the car: close the account, or first mail the notice of sale.

Why a rule of its own: once the car is on the agency's lot the order is done, but the account is
not simply over. Where the jurisdiction requires a notice of the planned sale (UCC 9-611 and
9-614 in every US state; Cal. Civ. Code 2983.2 in California, 15 days), the car may not be sold,
and no deficiency claimed, unless that notice was sent first: so the account closes only once
the provider has mailed it, and the earliest sale date counts from that mailing, never from our
decision to write it. Elsewhere (`Profile.sale_notice_days` is None) the recovery closes it.

A collection hold stops all of it (DESIGN §2: holds stop all collection activity and no stage
overrides them): a car the agency took before our cancel reached it, of a borrower now in
bankruptcy (the automatic stay, 11 USC 362(a)) or in military service (SCRA, 50 USC 3952), is
neither noticed for sale nor closed on; a person must act (return it, or go to court).

`after_recovery` is pure, over the profile and the notice letter's status; `tasks.recovery`
acts on its answer.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from arrears.jurisdictions import Profile
from arrears.letters.notices import latest_mailing
from arrears.vocabulary import Hold, HoldScope

__all__ = ["MAILED", "RecoveryStep", "after_recovery", "planned_sale_date"]

# A notice of sale counts as sent once the provider has mailed it (UCC 9-611(b): "send").
MAILED = ("mailed", "in_transit", "delivered")


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """What a recovered account needs next: `close` it, `notify` (write the notice of sale, which
    names `sale_after`), or `wait` (the notice is on its way, or stopped: `reason` says which;
    `stopped`: nothing moves until a person acts, so the account's timeline must say so)."""

    action: Literal["close", "notify", "wait"]
    reason: str
    sale_after: date | None = None  # the first day the car may be sold
    stopped: bool = False


def planned_sale_date(written_at: datetime, *, timezone: str, calendar: str | None, days: int) -> date:
    """The sale date a notice written at `written_at` prints: counted from the latest day it may
    be mailed (`latest_mailing`; `calendar`: the profile's public holidays), so a letter mailed
    late still gives the borrower at least `days`."""
    return latest_mailing(written_at, timezone=timezone, calendar=calendar) + timedelta(days=days)


def after_recovery(
    *,
    rules: Profile,
    timezone: str,
    now: datetime,
    notice_status: str | None,
    notice_reason: str | None = None,
    notice_mailed_at: datetime | None = None,
    printed_sale_after: date | None = None,
    holds: Iterable[Hold] = (),
    called_off: str | None = None,
    left_meanwhile: str | None = None,
) -> RecoveryStep:
    """The next step for an account whose car was recovered, given its notice of sale (None: not
    written yet), the holds in force on it, why its order was called off before the car was
    taken (None: it never was), and the exit the account reached meanwhile, the car's return never
    recorded (`left_meanwhile`; None: it did not)."""
    stopping = sorted(Hold(h).value for h in holds if Hold(h).scope is HoldScope.COLLECTION)
    if stopping:
        return RecoveryStep(
            "wait",
            f"hold:{stopping[0]} stops the sale of the recovered vehicle: a person must act",
            stopped=True,
        )
    if left_meanwhile:
        return RecoveryStep(
            "wait",
            f"the account was {left_meanwhile} after the vehicle was recovered and the vehicle's return was "
            "never recorded: a person must act (return it, or decide otherwise) before any notice of sale "
            "of that recovery",
            stopped=True,
        )
    if called_off:
        return RecoveryStep(
            "wait",
            f"vehicle recovered after the order was called off ({called_off}): a person must act",
            stopped=True,
        )
    days = rules.sale_notice_days
    cite = dict(rules.sources).get("sale_notice", "")
    if days is None:
        return RecoveryStep("close", f"vehicle recovered; no notice of sale owed in {rules.code}")
    if notice_status is None:
        sale = planned_sale_date(now, timezone=timezone, calendar=rules.hours.holidays, days=days)
        return RecoveryStep("notify", f"vehicle recovered; notice of sale owed ({cite})", sale)
    if notice_status in MAILED and notice_mailed_at is not None:
        mailed = notice_mailed_at.astimezone(ZoneInfo(timezone)).date()
        sale = max(mailed + timedelta(days=days), printed_sale_after or mailed)
        return RecoveryStep(
            "close",
            f"vehicle recovered; notice of sale mailed {mailed.isoformat()}, "
            f"no sale before {sale.isoformat()}",
            sale,
        )
    if notice_status == "returned_to_sender":
        return RecoveryStep(
            "wait", "notice of sale returned to sender: the sale waits for a new address", stopped=True
        )
    if notice_status in ("blocked", "failed"):
        return RecoveryStep(
            "wait", f"notice of sale cannot be mailed: {notice_reason or notice_status}", stopped=True
        )
    return RecoveryStep("wait", "notice of sale not mailed yet: the account closes once it is")
