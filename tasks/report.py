"""The cycle's artifacts and events for operations (DESIGN §9).

Besides the portfolio tables, each cycle audits itself: the messages it sent are re-checked
against every rule (`arrears.compliance.report`) and its deferrals and blocks are counted by rule,
in a `compliance` artifact; a violation is emitted as an `arrears.compliance.violation` event so
that an automation can page someone. A provider whose delivery reports of the day failed for our
message or sender too often (`tasks.receipts.failing_senders`) gets a line in the summary and an
`arrears.provider.sender-faults` event. Letters the law makes us send by a date, past it and not
mailed (`arrears.storage.overdue_letters`: a deficiency explanation asked for, a GB notice of sums
in arrears), are named in an `arrears.letters.overdue` event and the summary. Artifacts carry
counts and rule names, never a number.
"""

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from arrears.buckets import BUCKETS
from arrears.compliance.report import ComplianceReport, compliance_report, recorded_checks
from arrears.currencies import display
from arrears.masking import mask_text
from arrears.settings import get_settings
from arrears.storage import quarantine, read_only
from arrears.storage.delivery_reports import SenderFaults, sender_faults_line
from arrears.storage.overdue_letters import OverdueLetter, overdue_letters
from arrears.storage.reports import HELD, PortfolioReport, TrendPoint, portfolio_report, trend
from arrears.storage.unattributed import counts_for_report
from arrears.storage.waiting import overdue_reviews
from arrears.vocabulary import Stage
from tasks.database import engine, policy
from tasks.receipts import announce_sender_faults, failing_senders

__all__ = [
    "callbacks_kept_line",
    "message_rows",
    "overdue_letters_json",
    "overdue_letters_line",
    "provider_failure_rows",
    "rate",
    "report_cycle",
    "transition_rows",
    "trend_chart",
    "trend_rows",
]

_OPEN = frozenset(s.value for s in Stage)


@task(name="report", cache_policy=NO_CACHE, persist_result=False)
def report_cycle(cycle_id: int, business_date: str) -> dict[str, Any]:
    """Publish the cycle's tables as artifacts and its totals as events; returns the report as JSON."""
    report, audit, points, overdue, late = _read(cycle_id)
    with read_only(engine()) as connection:
        held = quarantine.counts(connection, cycle_id=cycle_id)
        kept = counts_for_report(connection, report.as_of)
    # a template or sender every carrier refuses fails every borrower's text and marks nothing
    faulty = failing_senders(report.as_of) if report.as_of is not None else []
    _publish(report, audit, business_date, held, kept, faulty, late)
    _publish_trend(points)
    get_run_logger().info(
        "cycle %s: %d accounts, %d transitions; dispatch %s; quarantined %s",
        business_date,
        sum(n for b in report.by_stage_bucket.values() for n in b.values()),
        sum(n for d in report.transitions.values() for n in d.values()),
        ", ".join(f"{k} {v}" for k, v in report.dispatched.items()) or "nothing",
        held.get("this_cycle", 0),
    )
    _emit(report, audit, cycle_id, business_date)
    _emit_overdue(overdue, cycle_id, business_date)
    _emit_overdue_letters(late, cycle_id, business_date)
    if report.as_of is not None:
        announce_sender_faults(faulty, report.as_of)
    result = report.as_json()
    result["quarantine"] = held
    result["callbacks_kept"] = kept
    result["sender_faults"] = [f.as_json() for f in faulty]
    result["letters_overdue"] = overdue_letters_json(late)
    if audit is not None:
        summary = audit.as_json()
        result["compliance"] = {
            k: summary[k]
            for k in ("deferrals_by_rule", "blocks_by_rule", "sent_checked", "violations_by_rule")
        }
    return result


def _read(
    cycle_id: int,
) -> tuple[PortfolioReport, ComplianceReport | None, list[TrendPoint], list[str], list[OverdueLetter]]:
    """The portfolio after the cycle, the audit of the cycle's sends (None before any cycle ran),
    the trend over the last cycles, the accounts whose review waits past its deadline and the
    letters not mailed by the day the law says."""
    with read_only(engine()) as connection:
        report = portfolio_report(connection, cycle_id=cycle_id)
        if report.as_of is None:
            return report, None, [], [], []
        points = trend(connection, current=report)
        overdue = overdue_reviews(
            connection, now=report.as_of, deadline=timedelta(days=review_deadline_days())
        )
        late = overdue_letters(connection, now=report.as_of)
        # The cycle's sends carry its as-of instant as sent_at: exactly those, as their dispatch
        # batches re-checked them, with the caps recounted across batches.
        audit = compliance_report(
            connection,
            start=report.as_of,
            end=report.as_of + timedelta(microseconds=1),
            policy=policy(),
            lender=get_settings().lender_name,
            cycle_id=cycle_id,
            checked=recorded_checks(connection, cycle_id),
        )
    return report, audit, points, overdue, late


def _publish(
    report: PortfolioReport,
    audit: ComplianceReport | None,
    business_date: str,
    held: dict[str, Any],
    kept: dict[str, int],
    faulty: Sequence[SenderFaults] = (),
    late: Sequence[OverdueLetter] = (),
) -> None:
    """The cycle's artifacts: tables by stage and bucket, transitions, messages, compliance; a
    summary, with a line for each provider failing for our message or sender and one for the
    letters not mailed by the day the law says."""
    create_table_artifact(
        key="accounts-by-stage-and-bucket",
        table=_stage_bucket_rows(report),
        description=f"Accounts by stage and days-past-due bucket after the cycle of {business_date}",
    )
    create_table_artifact(
        key="transition-matrix",
        table=transition_rows(report.transitions),
        description=f"Stage transitions taken in the cycle of {business_date} (rows: from, columns: to)",
    )
    create_table_artifact(
        key="messages-by-status",
        table=message_rows(report),
        description=f"Messages decided in the cycle of {business_date}, by status and reason",
    )
    create_table_artifact(
        key="provider-failures",
        table=provider_failure_rows(report),
        description=f"Sends the provider failed, refused or held back in the cycle of {business_date}; "
        "held: messages an outage kept from being tried, by provider",
    )
    if audit is not None:
        create_table_artifact(
            key="compliance",
            table=_compliance_rows(audit),
            description=f"Cycle of {business_date}: deferrals and blocks by rule; "
            f"{audit.sent_checked:,} sends re-checked, {len(audit.violations)} violations",
        )
    create_markdown_artifact(
        key="cycle-summary",
        markdown=_summary(report, business_date)
        + f"\n- quarantined in this cycle: {held['this_cycle']:,}"
        + f" (in quarantine: {held['open_total']:,})"
        + f"\n- {callbacks_kept_line(kept)}"
        + "".join(f"\n- **{sender_faults_line(f)}**" for f in faulty)
        + (f"\n- **{overdue_letters_line(overdue_letters_json(late))}**" if late else ""),
        description="Daily cycle summary",
    )


def _cycle_resource(cycle_id: int, business_date: str) -> dict[str, str]:
    """The resource every event of a cycle's report names: automations match the cycle by it."""
    return {"prefect.resource.id": f"arrears.cycle.{cycle_id}", "arrears.business-date": business_date}


def _emit(report: PortfolioReport, audit: ComplianceReport | None, cycle_id: int, business_date: str) -> None:
    """The cycle's events, for automations: completed, stage changes, messages blocked, compliance
    violations."""
    resource = _cycle_resource(cycle_id, business_date)
    emit_event("arrears.cycle.completed", resource=resource, payload=report.as_json())
    # One event per move of the matrix, never per account: an automation matches the stages by
    # label (accounts sent to legal referral, say), which it cannot do inside a payload.
    for src, dsts in sorted(report.transitions.items()):
        for dst, n in sorted(dsts.items()):
            emit_event(
                "arrears.stage.changed",
                resource={**resource, "arrears.stage.from": src, "arrears.stage.to": dst},
                payload={"from": src, "to": dst, "accounts": n},
            )
    blocked = report.dispatched.get("blocked", 0) or sum(report.blocked_by_reason.values())
    if blocked:
        threshold = blocked_alert_threshold()
        # The label lets an automation match only the cycles over the threshold (DESIGN §9).
        over = {**resource, "arrears.blocked.over-threshold": str(blocked > threshold).lower()}
        by_reason = report.dispatch_blocked_by_reason or report.blocked_by_reason
        emit_event(
            "arrears.messages.blocked",
            resource=over,
            payload={"blocked": blocked, "threshold": threshold, "by_reason": by_reason},
        )
    if audit is not None and audit.violations:
        summary = audit.as_json()
        emit_event(
            "arrears.compliance.violation",
            resource=resource,
            payload={
                "violations_by_rule": summary["violations_by_rule"],
                "first": [mask_text(str(v)) for v in summary["violations"][:20]],
            },
        )


def callbacks_kept_line(kept: dict[str, int]) -> str:
    """One line for the callbacks kept on no account in the day before the cycle: the artifact's
    and the CLI's."""
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(kept.items()))
    total = sum(kept.values())
    return f"callbacks kept without an account in the day before: {total:,}" + (
        f" ({kinds}): `arrears callbacks list`" if kinds else ""
    )


def rate(value: float | None) -> str:
    """A roll or cure rate as every artifact and the CLI print it; "n/a" before a first cycle
    gives one (a missing rate is not a rate of zero)."""
    return "n/a" if value is None else f"{value:.1%}"


def message_rows(report: PortfolioReport) -> list[dict[str, Any]]:
    """Messages decided in the cycle as the CLI's report prints them: each status with its total
    ("(all)"), then blocked, scheduled and failed ones by reason (a failure's is the vendor's error
    code), in three columns in every row."""
    return (
        [{"status": k, "reason": "(all)", "count": v} for k, v in sorted(report.messages.items())]
        + [
            {"status": "blocked", "reason": k, "count": v}
            for k, v in sorted(report.blocked_by_reason.items())
        ]
        + [
            {"status": "scheduled", "reason": k, "count": v}
            for k, v in sorted(report.deferred_by_reason.items())
        ]
        + [{"status": "failed", "reason": k, "count": v} for k, v in sorted(report.failed_by_reason.items())]
    ) or [{"status": "(none)", "reason": "", "count": 0}]


def provider_failure_rows(report: PortfolioReport) -> list[dict[str, Any]]:
    """The provider's failures in the cycle's dispatch (DESIGN §9) as the CLI's report prints them:
    status, reason, count in every row; one row saying none when it failed nothing. The messages
    an outage held back untried are rows too (`held`, `provider:<name>:outage`): no send event
    counts them, and the outage's own event was the only place that did."""
    return [
        {"status": status, "reason": reason, "count": n}
        for status, reasons in sorted(report.provider_failures.items())
        for reason, n in sorted(reasons.items())
    ] or [{"status": "(none)", "reason": "", "count": 0}]


def transition_rows(transitions: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The transition matrix with one column per destination in every row: the UI takes its
    columns from the first row, so a row with fewer keys would hide the others' columns."""
    columns = sorted({dst for dsts in transitions.values() for dst in dsts})
    rows = [
        {"from": src, **{dst: dsts.get(dst, 0) for dst in columns}}
        for src, dsts in sorted(transitions.items())
    ]
    return rows or [{"from": "(none)"}]


def trend_rows(points: list[TrendPoint]) -> list[dict[str, Any]]:
    """One row per cycle, the same keys in every row (every stage, currency and outcome seen)."""
    stages = sorted({s for p in points for s in p.by_stage})
    currencies = sorted({c for p in points for c in p.collected})
    outcomes = sorted({o for p in points for o in p.messages})
    return [
        {
            "date": p.business_date.isoformat(),
            **{f"in {s}": p.by_stage.get(s, 0) for s in stages},
            "roll rate": rate(p.roll_rate),
            "cure rate": rate(p.cure_rate),
            "promises kept": p.promises_kept,
            **{f"collected {c}": display(p.collected.get(c, Decimal(0)), c) for c in currencies},
            **{f"messages {o}": p.messages.get(o, 0) for o in outcomes},
        }
        for p in points
    ]


# Characters of the longest bar: three bars, their figures and the date must fit the narrow
# column Prefect's UI gives a markdown artifact beside its details panel (docs/screenshots).
_BAR = 12


def trend_chart(points: list[TrendPoint]) -> str:
    """A chart the UI renders as markdown: open accounts, cure rate and messages sent per cycle,
    as unicode bars in a table."""
    if not points:
        return "# Trend\n\nno cycle yet"
    open_accounts = [sum(n for s, n in p.by_stage.items() if s in _OPEN) for p in points]
    sent = [p.messages.get("sent", 0) + p.messages.get("delivered", 0) for p in points]
    cures = [p.cure_rate for p in points]
    top_cure = max((c for c in cures if c is not None), default=0.0)
    lines = [
        f"# Trend over the last {len(points)} cycles",
        "",
        "| date | open accounts | cure rate | messages sent |",
        "|---|---|---|---|",
    ]
    for p, o, c, m in zip(points, open_accounts, cures, sent, strict=True):
        cure_bar = f"`{_bar(c, top_cure)}` " if c is not None else ""
        lines.append(
            f"| {p.business_date.isoformat()} | `{_bar(o, max(open_accounts))}` {o:,} "
            f"| {cure_bar}{rate(c)} | `{_bar(m, max(sent))}` {m:,} |"
        )
    return "\n".join(lines)


def _bar(value: float, top: float) -> str:
    eighths = round(_BAR * 8 * value / top) if top > 0 else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(_BAR)


def _publish_trend(points: list[TrendPoint]) -> None:
    if not points:
        return
    create_table_artifact(
        key="cycle-trend",
        table=trend_rows(points),
        description=f"The last {len(points)} cycles: accounts by stage, roll and cure rates, promises kept, "
        "amounts collected, messages by outcome",
    )
    create_markdown_artifact(key="cycle-trend-chart", markdown=trend_chart(points), description="Trend chart")


def blocked_alert_threshold() -> int:
    """Blocked messages in one cycle above which operations are alerted (ARREARS_BLOCKED_ALERT_THRESHOLD:
    a setting, so a value that is no number is refused when the settings are read, not mid-cycle)."""
    return get_settings().blocked_alert_threshold


def review_deadline_days() -> int:
    """Days a review may wait for its reviewer after the cure period (ARREARS_REVIEW_DEADLINE_DAYS)."""
    return get_settings().review_deadline_days


def _emit_overdue(overdue: list[str], cycle_id: int, business_date: str) -> None:
    """One event per cycle naming the reviews waiting past their deadline, oldest first."""
    if not overdue:
        return
    emit_event(
        "arrears.reviews.overdue",
        resource=_cycle_resource(cycle_id, business_date),
        payload={"overdue": len(overdue), "deadline_days": review_deadline_days(), "accounts": overdue[:20]},
    )


def overdue_letters_json(late: Sequence[OverdueLetter]) -> dict[str, Any]:
    """The letters not mailed by the day the law says, as the report's JSON and its event carry
    them: how many, and the oldest 20 (the reason masked: a provider's refusal may quote anything)."""
    return {
        "count": len(late),
        "first": [
            {
                "account_id": x.account_id,
                "kind": x.kind,
                "letter_id": x.id,
                "status": x.status,
                "deadline": x.deadline.isoformat(),
                "reason": mask_text(x.reason) if x.reason else None,
            }
            for x in late[:20]
        ],
    }


def overdue_letters_line(late: dict[str, Any]) -> str:
    """The line for the letters not mailed by the day the law says (`overdue_letters_json`, not
    empty): the summary's and `arrears report`'s."""
    oldest = late["first"][0]
    return (
        f"letters not mailed by the day the law says: {late['count']:,} (the oldest: {oldest['kind']} "
        f"{oldest['letter_id']} of {oldest['account_id']}, due before {oldest['deadline']}, "
        f"{oldest['status']}): `arrears letters list --overdue`"
    )


def _emit_overdue_letters(late: Sequence[OverdueLetter], cycle_id: int, business_date: str) -> None:
    """One event per cycle naming the letters not mailed by the day the law says, oldest first."""
    if not late:
        return
    emit_event(
        "arrears.letters.overdue",
        resource=_cycle_resource(cycle_id, business_date),
        payload=overdue_letters_json(late),
    )


def _compliance_rows(audit: ComplianceReport) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "rule": rule,
            "deferred": audit.deferrals.get(rule, 0),
            "blocked": audit.blocks.get(rule, 0),
            "violations": 0,
        }
        for rule in sorted(set(audit.deferrals) | set(audit.blocks))
    ]
    for v in audit.violations:
        row = next((r for r in rows if r["rule"] == v.rule), None)
        if row is None:
            rows.append(row := {"rule": v.rule, "deferred": 0, "blocked": 0, "violations": 0})
        row["violations"] += 1
    rows.append(
        {
            "rule": f"sends re-checked: {audit.sent_checked}",
            "deferred": sum(audit.deferrals.values()),
            "blocked": sum(audit.blocks.values()),
            "violations": len(audit.violations),
        }
    )
    return rows


def _stage_bucket_rows(report: PortfolioReport) -> list[dict[str, Any]]:
    """Every stage with every bucket; an empty portfolio is one row of zeros, so the table keeps
    its columns (the UI takes them from the first row)."""
    labels = [label for label, _ in BUCKETS]
    return [
        {"stage": stage, **{label: buckets.get(label, 0) for label in labels}, "total": sum(buckets.values())}
        for stage, buckets in sorted(report.by_stage_bucket.items())
    ] or [{"stage": "(none)", **dict.fromkeys(labels, 0), "total": 0}]


def _summary(report: PortfolioReport, business_date: str) -> str:
    total = sum(n for b in report.by_stage_bucket.values() for n in b.values())
    moved = sum(n for d in report.transitions.values() for n in d.values())
    lines = [
        f"# Daily cycle {business_date}",
        f"- accounts: {total:,}",
        f"- transitions: {moved:,}",
        # What dispatch did, as the CLI prints it: deferred messages of earlier days included.
        *(f"- dispatch {k}: {v:,}" for k, v in report.dispatched.items()),
        *(f"- dispatch blocked, {k}: {v:,}" for k, v in report.dispatch_blocked_by_reason.items()),
        *(f"- held back untried, {k}: {v:,}" for k, v in report.provider_failures.get(HELD, {}).items()),
        *(f"- new messages {k}: {v:,}" for k, v in sorted(report.messages.items())),
        f"- roll rate: {rate(report.roll_rate)}",
        f"- cure rate: {rate(report.cure_rate)}",
    ]
    return "\n".join(lines)
