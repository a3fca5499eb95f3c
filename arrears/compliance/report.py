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

The SQL is here rather than in `arrears.storage` because it serves this report alone; like every
data-access function it takes the caller's connection and does not commit.
"""

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, select

from arrears.compliance.content import check_content
from arrears.compliance.hours import contact_allowed, contact_zones
from arrears.jurisdictions import Hours
from arrears.masking import mask_phone
from arrears.policy import DEFAULT_POLICY, Policy
from arrears.storage.tables import account, audit, contact, hold, message
from arrears.vocabulary import Hold

__all__ = ["ComplianceReport", "Violation", "compliance_report"]


_FOREVER = datetime.max.replace(tzinfo=UTC)


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


def _between(column: Any, start: datetime | None, end: datetime | None) -> Any:
    parts = [column.is_not(None)]
    if start is not None:
        parts.append(column >= start)
    if end is not None:
        parts.append(column < end)
    return and_(*parts)


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
    _count_verdicts(connection, report, start, end, cycle_id)
    sent = connection.execute(
        select(
            message.c.id,
            message.c.account_id,
            message.c.address,
            message.c.template,
            message.c.body,
            message.c.params,
            message.c.sent_at,
            message.c.channel,
            account.c.borrower_id,
            account.c.jurisdiction,
            account.c.timezone,
        )
        .join(account, account.c.account_id == message.c.account_id)
        .where(_between(message.c.sent_at, start, end))
        .order_by(message.c.sent_at, message.c.id)
    ).all()
    report.sent_checked = len(sent)
    if not sent:
        return report
    sends = _sends(connection, start, end, policy)
    intervals = _intervals(connection, start, end)
    opted_out = _opted_out(connection, start, end)
    times = {borrower: [s[0] for s in history] for borrower, history in sends.items()}
    for m in sent:
        report.violations += _recheck(m, policy, lender, sends, times, intervals, opted_out)
    return report


def _count_verdicts(
    connection: Connection,
    report: ComplianceReport,
    start: datetime | None,
    end: datetime | None,
    cycle_id: int | None,
) -> None:
    # Sends are most of the message events and count for nothing here: left in the database.
    held_back = audit.c.data["status"].as_string().in_(("blocked", "scheduled"))
    where = [audit.c.kind == "message", _between(audit.c.at, start, end), held_back]
    if cycle_id is not None:
        where.append(audit.c.cycle_id == cycle_id)
    deferrals: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for (data,) in connection.execute(select(audit.c.data).where(*where)):
        rule = (data or {}).get("rule") or (data or {}).get("reason")
        status = (data or {}).get("status")
        if status == "blocked":
            blocks[rule or "unknown"] += 1
        elif status == "scheduled" and rule:
            deferrals[rule] += 1
    report.deferrals, report.blocks = dict(deferrals), dict(blocks)


def _sends(
    connection: Connection, start: datetime | None, end: datetime | None, policy: Policy
) -> dict[str, list[tuple[datetime, str, str, str]]]:
    """Per borrower, every message sent from the longest cap window before `start` to `end`,
    as (sent_at, channel, account_id, address), in time order."""
    since = start - policy.longest_cap_window() if start is not None else None
    found: dict[str, list[tuple[datetime, str, str, str]]] = defaultdict(list)
    for r in connection.execute(
        select(
            account.c.borrower_id,
            message.c.sent_at,
            message.c.channel,
            message.c.account_id,
            message.c.address,
        )
        .join(account, account.c.account_id == message.c.account_id)
        .where(_between(message.c.sent_at, since, end))
        .order_by(message.c.sent_at, message.c.id)
    ):
        found[r.borrower_id].append((r.sent_at, r.channel, r.account_id, r.address))
    return found


def _intervals(
    connection: Connection, start: datetime | None, end: datetime | None
) -> dict[str, list[tuple[str, datetime, datetime]]]:
    """Per account, (rule, from, until) for every hold and opt-out, from the ledger and the audit trail.

    Only accounts with a message sent in the period are read (a join, never a list of ids).
    """
    sent_accounts = select(message.c.account_id).where(_between(message.c.sent_at, start, end)).distinct()
    found: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for r in connection.execute(
        select(hold.c.account_id, hold.c.kind, hold.c.placed_at, hold.c.lifted_at).where(
            hold.c.account_id.in_(sent_accounts)
        )
    ):
        found[r.account_id].append((f"hold:{r.kind}", r.placed_at, r.lifted_at or _FOREVER))
    # The audit trail: hold events (placed / lifted) and opt-out / opt-in events, in order.
    opened: dict[tuple[str, str], datetime] = {}
    for r in connection.execute(
        select(audit.c.account_id, audit.c.kind, audit.c.at, audit.c.data)
        .where(audit.c.account_id.in_(sent_accounts), audit.c.kind.in_(("hold", "opt_out", "opt_in")))
        .order_by(audit.c.at, audit.c.id)
    ):
        data = r.data or {}
        if r.kind == "hold" and data.get("hold"):
            key = (r.account_id, f"hold:{data['hold']}")
            lifting = data.get("action") == "lifted"
        elif r.kind in ("opt_out", "opt_in"):
            key = (r.account_id, "opt_out")
            lifting = r.kind == "opt_in" and data.get("action") == "lifted"
        else:
            continue
        if lifting:
            if key in opened:
                found[r.account_id].append((key[1], opened.pop(key), r.at))
        else:
            opened.setdefault(key, r.at)
    for (account_id, rule), since in opened.items():
        found[account_id].append((rule, since, _FOREVER))
    return found


def _opted_out(
    connection: Connection, start: datetime | None, end: datetime | None
) -> dict[tuple[str, str], datetime]:
    """(account, number) -> when the number opted out, for the numbers messaged in the period."""
    sent = (
        select(message.c.account_id, message.c.address)
        .where(_between(message.c.sent_at, start, end))
        .distinct()
        .subquery()
    )
    return {
        (r.account_id, r.address): r.opted_out_at
        for r in connection.execute(
            select(sent.c.account_id, sent.c.address, contact.c.opted_out_at)
            .join(account, account.c.account_id == sent.c.account_id)
            .join(
                contact,
                and_(contact.c.borrower_id == account.c.borrower_id, contact.c.address == sent.c.address),
            )
            .where(contact.c.opted_out_at.is_not(None))
        )
    }


def _recheck(
    m: Any,
    policy: Policy,
    lender: str,
    sends: dict[str, list[tuple[datetime, str, str, str]]],
    times_of: dict[str, list[datetime]],
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
    history = sends.get(m.borrower_id, [])
    times = times_of.get(m.borrower_id, [])
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
    params = m.params or {}
    finding = check_content(
        m.body, lender=params.get("lender") or lender, profile=prof, channel=m.channel, fill=params
    )
    if finding is not None:
        yield violation(finding.rule, finding.detail)
    if m.template not in policy.approved_templates:
        yield violation("template:unapproved", f"template {m.template!r} is not approved")


@lru_cache(maxsize=16_384)
def _allowed(at: datetime, zones: tuple[str, ...], hours: Hours) -> bool:
    # The definition itself (the wall clock read in each zone), cached: a cycle's sends share an instant.
    return contact_allowed(at, zones, hours)
