"""The compliance report: what the rules held back, and every sent message checked again.

`compliance_report` reads the message log and the audit trail of a period and

1. counts the verdicts that held a message back, per rule: every deferral and block recorded in
   the audit trail (decision time and send time), by the rule it names;
2. re-checks every message sent in the period, from the stored facts alone:
   - the window, at its `sent_at`, in the account's zone and the number's zones (`hours:<code>`);
   - each cap of the profile, recounted over every message sent (`cap:<name>`);
   - the holds and opt-outs active at that instant (`hold:<kind>`, `opt_out`): from the audit
     trail (hold placed/lifted, opt-out/opt-in events), the hold ledger (placed_at, lifted_at)
     and the contact point's `opted_out_at`, whichever says more;
   - the body (`content:<what>`) and the template's approval (`template:unapproved`);
   and lists every violation. There must be none: the same rules decided every send.

The re-check is written apart from `check_contact` on purpose (it reads the wall clock directly
with `contact_allowed` and recounts caps from `sent_at` alone), so that a fault in the search for
the next allowed instant, or in the counting of messages in flight, shows here.

Instants are taken as recorded: a send at its `sent_at` (the as-of instant of the dispatch that
approved it), a hold from its `placed_at`. A replay that runs simulated days ahead of the wall
clock while holds are placed in real time can therefore show a hold as active before a send
that in fact preceded it; operations run as of now, where the two clocks agree.

What it reads comes from `arrears.storage.compliance`; the re-check itself is pure.
"""

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from arrears.compliance.content import check_content
from arrears.compliance.hours import contact_allowed, contact_zones
from arrears.jurisdictions import Hours
from arrears.masking import mask_phone
from arrears.policy import DEFAULT_POLICY, Policy
from arrears.storage import compliance as store
from arrears.vocabulary import Hold

__all__ = ["ComplianceReport", "Violation", "compliance_report"]


@dataclass(frozen=True, slots=True)
class Violation:
    message_id: int
    account_id: str
    sent_at: datetime
    rule: str
    detail: str  # never an unmasked number

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "account_id": self.account_id,
            "sent_at": self.sent_at.isoformat(),
            "rule": self.rule,
            "detail": self.detail,
        }


@dataclass
class ComplianceReport:
    start: datetime | None
    end: datetime | None
    deferrals: dict[str, int] = field(default_factory=dict)  # rule -> deferrals recorded
    blocks: dict[str, int] = field(default_factory=dict)  # rule -> blocks recorded
    sent_checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "deferrals_by_rule": dict(sorted(self.deferrals.items())),
            "blocks_by_rule": dict(sorted(self.blocks.items())),
            "deferrals": sum(self.deferrals.values()),
            "blocks": sum(self.blocks.values()),
            "sent_checked": self.sent_checked,
            "violations_by_rule": dict(sorted(Counter(v.rule for v in self.violations).items())),
            "violations": [v.as_json() for v in self.violations],
        }


def compliance_report(
    connection: Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    policy: Policy = DEFAULT_POLICY,
    lender: str = "",
    cycle_id: int | None = None,
) -> ComplianceReport:
    """Verdicts recorded in [start, end) by rule, and the messages sent in [start, end) re-checked.

    `lender` names the lender for messages stored without their template values; `cycle_id`
    narrows the verdict counts to one cycle's audit events.
    """
    report = ComplianceReport(start, end)
    report.deferrals, report.blocks = store.held_back_by_rule(connection, start, end, cycle_id)
    since = start - policy.longest_cap_window() if start is not None else None
    intervals = store.hold_intervals(connection, start, end)
    opted_out = store.opted_out_numbers(connection, start, end)
    for history in store.sends_of_borrowers(connection, start=start, end=end, since=since):
        sends = [(m.sent_at, m.channel, m.account_id, m.address) for m in history]
        times = [m.sent_at for m in history]
        for m in history:
            if start is None or m.sent_at >= start:  # the earlier ones only count for the caps
                report.sent_checked += 1
                report.violations += _recheck(m, policy, lender, sends, times, intervals, opted_out)
    # In the order the messages were sent, as a reader follows the day.
    report.violations.sort(key=lambda v: (v.sent_at, v.message_id))
    return report


def _recheck(
    m: Any,
    policy: Policy,
    lender: str,
    history: list[tuple[datetime, str, str, str]],
    times: list[datetime],
    intervals: dict[str, list[tuple[str, datetime, datetime]]],
    opted_out: dict[tuple[str, str], datetime],
) -> Iterable[Violation]:
    at: datetime = m.sent_at
    prof = policy.profile(m.jurisdiction)

    def violation(rule: str, detail: str) -> Violation:
        return Violation(m.id, m.account_id, at, rule, detail)

    zones = contact_zones(m.timezone, m.address)
    if not _allowed(at, zones, prof.hours):
        local = ", ".join(f"{at.astimezone(ZoneInfo(z)):%a %H:%M} in {z}" for z in zones)
        yield violation(
            prof.hours_rule, f"sent at {local}, outside {prof.hours.label} local or on a closed day"
        )
    for rule, since, until in intervals.get(m.account_id, ()):
        if since <= at < until and (rule != f"hold:{Hold.SMS_OPT_OUT}" or m.channel == "sms"):
            yield violation(rule, f"active from {since:%Y-%m-%dT%H:%MZ}")
    when = opted_out.get((m.account_id, m.address))
    if when is not None and when <= at:
        yield violation("opt_out", f"{mask_phone(m.address)} opted out at {when:%Y-%m-%dT%H:%MZ}")
    hi = bisect_right(times, at)
    for cap in prof.caps_for(m.channel):
        lo = bisect_right(times, at - cap.window)
        n = sum(
            1
            for _, channel, account_id, address in history[lo:hi]
            if channel == cap.channel
            and (cap.scope != "account" or account_id == m.account_id)
            and (cap.scope != "address" or address == m.address)
        )
        if n > cap.limit:
            yield violation(
                cap.rule, f"{n} sent in the {cap.window_days} d up to this one; at most {cap.limit}"
            )
    # The names it was filled with are all the content check reads of the template values here
    # (the figures matter only for a message to a third party, which a send never is).
    fill = {"name": m.name, "lender": m.lender}
    finding = check_content(m.body, lender=m.lender or lender, profile=prof, channel=m.channel, fill=fill)
    if finding is not None:
        yield violation(finding.rule, finding.detail)
    if m.template not in policy.approved_templates:
        yield violation("template:unapproved", f"template {m.template!r} is not approved")


@lru_cache(maxsize=16_384)
def _allowed(at: datetime, zones: tuple[str, ...], hours: Hours) -> bool:
    # The definition itself (the wall clock read in each zone), cached: a cycle's sends share an instant.
    return contact_allowed(at, zones, hours)
