"""After the agency recovers the car: close the account, or first mail the notice of sale.

Why a rule of its own: once the car is on the agency's lot the order is done, but the account is
not simply over. Where the jurisdiction requires a notice of the planned sale (UCC 9-611 and
9-614 in every US state; Cal. Civ. Code 2983.2 in California, 15 days), the car may not be sold,
and no deficiency claimed, unless that notice was sent first: so the account closes only once
the provider has mailed it, and the earliest sale date counts from that mailing, never from our
decision to write it. Elsewhere (`Profile.sale_notice_days` is None) the recovery closes it.

`after_recovery` is pure, over the profile and the notice letter's status; `tasks.recovery`
acts on its answer.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from arrears.jurisdictions import Profile
from arrears.letters.notices import latest_mailing

__all__ = ["MAILED", "RecoveryStep", "after_recovery", "planned_sale_date"]

# A notice of sale counts as sent once the provider has mailed it (UCC 9-611(b): "send").
MAILED = ("mailed", "in_transit", "delivered")


@dataclass(frozen=True, slots=True)
class RecoveryStep:
    """What a recovered account needs next: `close` it, `notify` (write the notice of sale, which
    names `sale_after`), or `wait` (the notice is on its way, or stopped: `reason` says which)."""

    action: Literal["close", "notify", "wait"]
    reason: str
    sale_after: date | None = None  # the first day the car may be sold


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
) -> RecoveryStep:
    """The next step for an account whose car was recovered, given its notice of sale (None: not
    written yet)."""
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
        return RecoveryStep("wait", "notice of sale returned to sender: the sale waits for a new address")
    if notice_status in ("blocked", "failed"):
        return RecoveryStep("wait", f"notice of sale cannot be mailed: {notice_reason or notice_status}")
    return RecoveryStep("wait", "notice of sale not mailed yet: the account closes once it is")
