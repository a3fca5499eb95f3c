"""One verdict for every contact, used at decision time (advance) and again at send time (dispatch).

The same code decides both times so that a message allowed when it was scheduled is refused at
send time the moment something changed: an opt-out, a hold, the hour.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from arrears.compliance.hours import next_allowed_instant, window_label
from arrears.jurisdictions import profile
from arrears.vocabulary import Hold, HoldScope

__all__ = ["Verdict", "VerdictKind", "check_contact"]


class VerdictKind(StrEnum):
    SEND = "send"
    DEFER = "defer"  # allowed later: `not_before` says when
    BLOCK = "block"  # not allowed: `reason` names the rule


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    not_before: datetime
    reason: str | None = None


def check_contact(
    *,
    holds: frozenset[Hold],
    opted_out: bool,
    template: str,
    approved_templates: frozenset[str],
    jurisdiction: str,
    timezone: str,
    now: datetime,
) -> Verdict:
    """May this SMS go to this borrower at `now`, and if not now, when?"""
    for hold in sorted(holds):  # every hold stops SMS: collection, contact and SMS-only alike
        if hold.scope in (HoldScope.COLLECTION, HoldScope.CONTACT, HoldScope.SMS):
            return Verdict(VerdictKind.BLOCK, now, f"hold:{hold}")
    if opted_out:
        return Verdict(VerdictKind.BLOCK, now, "opt_out")
    if template not in approved_templates:
        return Verdict(VerdictKind.BLOCK, now, f"template not approved: {template}")
    prof = profile(jurisdiction)
    not_before = next_allowed_instant(now, timezone, prof)
    if not_before > now:
        return Verdict(VerdictKind.DEFER, not_before, f"outside contact hours ({window_label(prof)})")
    return Verdict(VerdictKind.SEND, now)
