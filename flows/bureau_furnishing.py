"""Monthly furnishing (DESIGN §6): build the Metro 2 file of a period, validate it, submit it, record it.

One flow run per period, a handful of task runs: the accounts are read in chunks inside one
task, never one task per account. A file that fails our validator is never submitted: the run
fails with the validator's first problems, and the refusal is in the audit trail. A file the
bureau refuses fails the run the same way; an accepted one leaves one furnish record per
account (next month's history continues from them) and one audit event.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from arrears.clock import business_date
from arrears.masking import mask_text
from arrears.metro2 import FurnishFile, Period
from arrears.models import utcnow
from arrears.settings import get_settings
from flows._results import FAILURE_TEXT
from tasks.bureau import (
    FurnishingRefused,
    build_furnish_file,
    check_furnisher,
    record_furnish,
    record_refusal,
    submit_furnish_file,
    validate_furnish_file,
    write_furnish_file,
)
from tasks.providers import bureau_session

__all__ = ["bureau_furnishing", "last_period"]


def last_period() -> str:
    """The month before today's business date: what a run early in a month furnishes."""
    today = business_date(utcnow(), get_settings().lender_timezone)
    return str(Period.of(today) - 1)


def _run_name() -> str:
    return f"bureau-furnishing {flow_run.parameters.get('period') or last_period()}"


@flow(
    name="bureau-furnishing",
    flow_run_name=_run_name,
    description="Build, validate and submit the monthly Metro 2 file.",
    persist_result=False,
    result_serializer=FAILURE_TEXT,
)
def bureau_furnishing(period: str | None = None, output: str | None = None) -> dict[str, Any]:
    """Furnish `period` (YYYY-MM; default the previous month, for a monthly schedule); with
    `output`, the validated file is also written to that path.

    Running it again for the same period with the same data submits the same file under the
    same key: the bureau answers with the first submission and nothing is recorded twice.
    """
    log = get_run_logger()
    period = period or last_period()
    today = business_date(utcnow(), get_settings().lender_timezone)
    Period.parse(period).over_by(today)  # a bad or unfinished period fails before anything is read
    check_furnisher()  # a real bureau is never sent a file under the sandbox's furnisher id
    resource = {"prefect.resource.id": f"arrears.bureau.furnishing.{period}"}

    built: FurnishFile = build_furnish_file(period)
    problems = validate_furnish_file(built.content)
    if problems:
        found = [(p.record, p.field, p.reason) for p in problems]
        why = f"{len(found)} layout problems found by our validator"
        raise _refused(
            period, resource, why, found, f"metro2 {period} not submitted: {len(found)} layout problems"
        )
    written = write_furnish_file(built.content, output) if output else None
    submission_id, recorded = _submit(period, built, resource)

    summary = {
        "period": period,
        "accounts": len(built.reported),
        "skipped": len(built.skipped),
        # Accounts that ought to be furnished and cannot be as they stand: for operations to mend.
        "not_furnishable": [f"{account}: {why}" for account, why in built.unfurnishable],
        "statuses": built.status_counts(),
        "warnings": [f"{account}: {why}" for account, why in built.warnings],
        "submission_id": submission_id,
        "records_written": recorded,
        "output": written,
    }
    _publish(built, summary)
    emit_event(
        "arrears.bureau.furnishing.accepted",
        resource=resource,
        payload={k: summary[k] for k in ("accounts", "skipped", "statuses", "submission_id")},
    )
    log.info("metro2 %s: %d accounts furnished, submission %s", period, len(built.reported), submission_id)
    return summary


def _submit(period: str, built: FurnishFile, resource: dict[str, str]) -> tuple[str, int]:
    """Submit the validated file and record what the bureau took: its submission id and the
    records written. A failed submission or the bureau's refusal is recorded and raised."""
    try:
        with bureau_session():
            result = submit_furnish_file(period, built.content)
    except Exception as error:  # unreachable bureau, refused credentials: recorded, then the run fails
        record_refusal(period, f"submission failed: {error}", [])
        # Events are kept by the server and shown in the UI: the error masked, as a state message is.
        emit_event(
            "arrears.bureau.furnishing.failed", resource=resource, payload={"error": mask_text(str(error))}
        )
        raise
    if not result.accepted:
        found = [(e.record, e.field, e.reason) for e in result.errors]
        why = f"the bureau refused submission {result.submission_id}"
        raise _refused(period, resource, why, found, f"metro2 {period} refused by the bureau")
    return result.submission_id, record_furnish(built, result)


def _refused(
    period: str, resource: dict[str, str], why: str, found: list[tuple[int, str, str]], message: str
) -> FurnishingRefused:
    """Record and announce a file that was not furnished; the error to raise."""
    record_refusal(period, why, found)
    emit_event("arrears.bureau.furnishing.refused", resource=resource, payload={"problems": len(found)})
    return FurnishingRefused(message, found)


def _publish(built: FurnishFile, summary: dict[str, Any]) -> None:
    create_table_artifact(
        key="metro2-statuses",
        table=[{"account status": k, "accounts": v} for k, v in summary["statuses"].items()]
        or [{"account status": "(none)"}],
        description=f"Accounts furnished for {summary['period']}, by Metro 2 Account Status",
    )
    lines = [
        f"# Metro 2 {summary['period']}",
        f"- accounts furnished: {summary['accounts']:,}",
        f"- not furnished: {summary['skipped']:,} (other jurisdictions, already reported closed, and"
        f" {len(summary['not_furnishable']):,} that cannot be as they stand)",
        *(f"  - {w}" for w in summary["not_furnishable"][:20]),
        f"- submission: {summary['submission_id']}",
        f"- warnings: {len(summary['warnings']):,}",
        *(f"  - {w}" for w in summary["warnings"][:20]),
    ]
    create_markdown_artifact(
        key="metro2-summary", markdown="\n".join(lines), description="Monthly furnishing"
    )
