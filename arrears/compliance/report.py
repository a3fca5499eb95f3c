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

A cycle's report need not read every body again: its dispatch re-checks each batch's sends as it
records them (`recheck_sends`: every rule but the caps, which count across batches) and records
what it found. `compliance_report(checked=...)` then recounts only the caps, of the borrowers sent
more messages than some cap allows in its window, and takes the rest as recorded, provided the batches
re-checked exactly as many sends as the period holds; otherwise (a batch killed between its
record and its re-check, a send recorded by another path) it re-checks every send as above.

What it reads comes from `arrears.storage.compliance`; the re-check itself is pure.
"""

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from arrears.compliance.content import check_content
from arrears.compliance.hours import contact_allowed, contact_zones
from arrears.jurisdictions import Hours, Profile
from arrears.masking import mask_phone
from arrears.policy import DEFAULT_POLICY, Policy
from arrears.storage import compliance as store
from arrears.vocabulary import Hold

__all__ = [
    "Checked",
    "ComplianceReport",
    "Violation",
    "compliance_report",
    "recheck_sends",
    "recorded_checks",
]


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Violation":
        return cls(
            data["message_id"],
            data["account_id"],
            datetime.fromisoformat(data["sent_at"]),
            data["rule"],
            data["detail"],
        )


@dataclass(frozen=True, slots=True)
class Checked:
    """Sends re-checked against every rule but the caps, and what that found."""

    sent_checked: int
    violations: list[Violation]


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
    checked: Checked | None = None,
) -> ComplianceReport:
    """Verdicts recorded in [start, end) by rule, and the messages sent in [start, end) re-checked.

    `lender` names the lender for messages stored without their template values; `cycle_id`
    narrows the verdict counts to one cycle's audit events; `checked` is what the period's
    dispatch re-checked as it recorded its sends (`recorded_checks`).
    """
    report = ComplianceReport(start, end)
    report.deferrals, report.blocks = store.held_back_by_rule(connection, start, end, cycle_id)
    since = start - policy.longest_cap_window() if start is not None else None
    if checked is not None and checked.sent_checked == store.sent_count(connection, start, end):
        # Each send was re-checked as it was recorded: only the caps, which count across batches,
        # are left, for the borrowers sent more than some cap allows in its window.
        report.sent_checked, report.violations = checked.sent_checked, list(checked.violations)
        bounds = policy.cap_bounds()
        if bounds:
            for history in store.sends_of_borrowers(
                connection, start=start, end=end, since=since, crowded=bounds
            ):
                report.violations += _recheck_history(history, start, policy)
    else:
        sent = store.sent_between(start, end)
        intervals = store.hold_intervals(connection, sent)
        opted_out = store.opted_out_numbers(connection, sent)
        for history in store.sends_of_borrowers(connection, start=start, end=end, since=since):
            report.sent_checked += sum(1 for m in history if start is None or m.sent_at >= start)
            report.violations += _recheck_history(
                history, start, policy, lambda m: _recheck_send(m, policy, lender, intervals, opted_out)
            )
    # In the order the messages were sent, as a reader follows the day.
    report.violations.sort(key=lambda v: (v.sent_at, v.message_id, v.rule))
    return report


def recheck_sends(connection: Connection, ids: list[int], *, policy: Policy, lender: str) -> Checked:
    """The sent messages among `ids` (a dispatch batch's, once recorded) re-checked against every
    rule but the caps, from the stored facts alone."""
    sent = store.sent_among(ids)
    intervals = store.hold_intervals(connection, sent)
    opted_out = store.opted_out_numbers(connection, sent)
    rows = store.sends_of_messages(connection, ids)
    found = [v for m in rows for v in _recheck_send(m, policy, lender, intervals, opted_out)]
    return Checked(len(rows), found)


def recorded_checks(connection: Connection, cycle_id: int) -> Checked | None:
    """What a cycle's dispatch re-checked as it recorded its sends (None: nothing recorded)."""
    found = store.recorded_checks(connection, cycle_id)
    if found is None:
        return None
    checked, violations = found
    return Checked(checked, [Violation.from_json(v) for v in violations])


def _recheck_history(
    history: list[Any],
    start: datetime | None,
    policy: Policy,
    per_send: Callable[[Any], Iterable[Violation]] | None = None,
) -> list[Violation]:
    """A borrower's sends in the order sent: each one since `start` re-checked against the caps,
    and by `per_send` where given (the earlier ones only count for the caps)."""
    sends = [(m.sent_at, m.channel, m.account_id, m.address) for m in history]
    times = [m.sent_at for m in history]
    found: list[Violation] = []
    for m in history:
        if start is None or m.sent_at >= start:
            if per_send is not None:
                found += per_send(m)
            found += _recheck_caps(m, policy.profile(m.jurisdiction), sends, times)
    return found


def _violation(m: Any, rule: str, detail: str) -> Violation:
    return Violation(m.id, m.account_id, m.sent_at, rule, detail)


def _recheck_caps(
    m: Any, prof: Profile, history: list[tuple[datetime, str, str, str]], times: list[datetime]
) -> Iterable[Violation]:
    at: datetime = m.sent_at
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
            yield _violation(
                m, cap.rule, f"{n} sent in the {cap.window_days} d up to this one; at most {cap.limit}"
            )


def _recheck_send(
    m: Any,
    policy: Policy,
    lender: str,
    intervals: dict[str, list[tuple[str, datetime, datetime]]],
    opted_out: dict[tuple[str, str], datetime],
) -> Iterable[Violation]:
    """Every rule but the caps: the window, holds, opt-out, content and template."""
    at: datetime = m.sent_at
    prof = policy.profile(m.jurisdiction)

    def violation(rule: str, detail: str) -> Violation:
        return _violation(m, rule, detail)

    zones = contact_zones(m.timezone, m.address, m.region)
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
