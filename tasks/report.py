"""The cycle's artifacts and events for operations (DESIGN §9).

Besides the portfolio tables, each cycle audits itself: the messages it sent are re-checked
against every rule (`arrears.compliance.report`) and its deferrals and blocks are counted by rule,
in a `compliance` artifact; a violation is emitted as an `arrears.compliance.violation` event so
that an automation can page someone. Artifacts carry counts and rule names, never a number.
"""

from datetime import timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from arrears.buckets import BUCKETS
from arrears.compliance.report import ComplianceReport, compliance_report
from arrears.masking import mask_text
from arrears.settings import get_settings
from arrears.storage import quarantine
from arrears.storage.reports import PortfolioReport, portfolio_report
from tasks.database import engine, policy

__all__ = ["report_cycle"]


@task(name="report", cache_policy=NO_CACHE)
def report_cycle(cycle_id: int, business_date: str) -> dict[str, Any]:
    """Publish the cycle's tables as artifacts and its totals as events; returns the report as JSON."""
    report, audit = _read(cycle_id)
    with engine().connect() as connection:
        held = quarantine.counts(connection, cycle_id=cycle_id)
    _publish(report, audit, business_date, held)
    _emit(report, audit, cycle_id, business_date)
    result = report.as_json()
    result["quarantine"] = held
    if audit is not None:
        summary = audit.as_json()
        result["compliance"] = {
            k: summary[k]
            for k in ("deferrals_by_rule", "blocks_by_rule", "sent_checked", "violations_by_rule")
        }
    return result


def _read(cycle_id: int) -> tuple[PortfolioReport, ComplianceReport | None]:
    """The portfolio after the cycle, and the audit of the cycle's sends (None before any cycle ran)."""
    with engine().connect() as connection:
        report = portfolio_report(connection, cycle_id=cycle_id)
        if report.as_of is None:
            return report, None
        # The cycle's sends carry its as-of instant as sent_at: re-check exactly those.
        audit = compliance_report(
            connection,
            start=report.as_of,
            end=report.as_of + timedelta(microseconds=1),
            policy=policy(),
            lender=get_settings().lender_name,
            cycle_id=cycle_id,
        )
    return report, audit


def _publish(
    report: PortfolioReport, audit: ComplianceReport | None, business_date: str, held: dict[str, Any]
) -> None:
    """The cycle's artifacts: tables by stage and bucket, transitions, messages, compliance; a summary."""
    create_table_artifact(
        key="accounts-by-stage-and-bucket",
        table=_stage_bucket_rows(report),
        description=f"Accounts by stage and days-past-due bucket after the cycle of {business_date}",
    )
    create_table_artifact(
        key="transition-matrix",
        table=[{"from": src, **dsts} for src, dsts in report.transitions.items()] or [{"from": "(none)"}],
        description=f"Stage transitions taken in the cycle of {business_date} (rows: from, columns: to)",
    )
    create_table_artifact(
        key="messages-by-status",
        table=[{"status": k, "count": v} for k, v in sorted(report.messages.items())]
        + [{"status": f"blocked: {k}", "count": v} for k, v in sorted(report.blocked_by_reason.items())]
        + [{"status": f"scheduled: {k}", "count": v} for k, v in sorted(report.deferred_by_reason.items())],
        description=f"Messages decided in the cycle of {business_date}, by status and reason",
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
        + f" (in quarantine: {held['open_total']:,})",
        description="Daily cycle summary",
    )


def _emit(report: PortfolioReport, audit: ComplianceReport | None, cycle_id: int, business_date: str) -> None:
    """The cycle's events, for automations: completed, messages blocked, compliance violations."""
    resource = {"prefect.resource.id": f"arrears.cycle.{cycle_id}", "arrears.business-date": business_date}
    emit_event("arrears.cycle.completed", resource=resource, payload=report.as_json())
    if report.blocked_by_reason:
        emit_event("arrears.messages.blocked", resource=resource, payload=report.blocked_by_reason)
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
    labels = [label for label, _ in BUCKETS]
    return [
        {"stage": stage, **{label: buckets.get(label, 0) for label in labels}, "total": sum(buckets.values())}
        for stage, buckets in sorted(report.by_stage_bucket.items())
    ]


def _summary(report: PortfolioReport, business_date: str) -> str:
    total = sum(n for b in report.by_stage_bucket.values() for n in b.values())
    moved = sum(n for d in report.transitions.values() for n in d.values())
    lines = [
        f"# Daily cycle {business_date}",
        f"- accounts: {total:,}",
        f"- transitions: {moved:,}",
        *(f"- messages {k}: {v:,}" for k, v in sorted(report.messages.items())),
        f"- roll rate: {report.roll_rate if report.roll_rate is not None else 'n/a'}",
        f"- cure rate: {report.cure_rate if report.cure_rate is not None else 'n/a'}",
    ]
    return "\n".join(lines)
