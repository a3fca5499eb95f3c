"""The ReviewDecision form as the Prefect UI submits it: what Prefect's server refuses from the
form's schema, what the run records, and what the operator is told."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.later_stage_helpers import (
    account_t,
    events,
    in_thread,
    put_in_review,
    review_run_id,
    review_t,
    rows,
    wait_paused,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness")]

CA = {"jurisdiction": "US-CA", "timezone": "America/Los_Angeles"}  # no notice owed: the form at once


@pytest.fixture
def later_db(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, sms_sandbox: Any, letters_sandbox: Any
) -> Engine:
    from arrears.settings import get_settings

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


def _resume_as_the_ui(run_id: str, run_input: dict[str, Any]) -> tuple[str, str]:
    """POST /flow_runs/{id}/resume with the form's values, as the UI's Resume button does:
    (status, the server's reason when it refused)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(UUID(run_id), run_input=run_input)
    return str(result.status.value), str(getattr(result.details, "reason", ""))


def test_a_reviewer_name_or_reason_of_blanks_is_refused_by_the_form(later_db: Engine, tmp_path: Path) -> None:
    """The CLI refuses a decision whose reviewer or reason is blank; the UI's form must too (Prefect's
    server checks the input against the form's schema), and a name with line breaks is recorded on
    one line."""
    from flows.repossession_review import repossession_review

    put_in_review(later_db, tmp_path, "A-UF1", **CA)
    running = in_thread(repossession_review, "A-UF1", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-UF1")
    wait_paused(run_id, "decision")
    for blank in ({"reviewer": "   ", "reason": "no contact"}, {"reviewer": "Ana Ruiz", "reason": "\n \t"}):
        status, why = _resume_as_the_ui(run_id, {"decision": "repossess", **blank})
        assert status == "REJECT", f"{blank} was accepted"
        assert "Validation failed" in why
    wait_paused(run_id, "decision", timeout=5)  # still waiting for a real answer
    status, _ = _resume_as_the_ui(
        run_id, {"decision": "negotiate", "reviewer": " Ana\n Ruiz ", "reason": " will pay Friday \n"}
    )
    assert status == "ACCEPT"
    assert running.result(timeout=60)["decision"] == "negotiate"
    [review] = rows(later_db, review_t, "A-UF1")
    assert (review.reviewer, review.reason) == ("Ana Ruiz", "will pay Friday")
    [decision] = events(later_db, "A-UF1", "decision")
    assert decision.actor == "reviewer:Ana Ruiz"


def test_a_form_answer_that_loses_the_race_to_the_cli_is_told_so(later_db: Engine, tmp_path: Path) -> None:
    """The CLI records its decision while the run still waits; the form's different answer resumes
    the run before the CLI does: the CLI's decision stands, once, and the run says at WARNING that
    the form's was not recorded (an operator reading the run must not believe theirs was taken)."""
    from arrears.clock import parse_instant
    from flows.repossession_review import repossession_review
    from tasks.review import decide_review

    put_in_review(later_db, tmp_path, "A-UF2", **CA)
    running = in_thread(repossession_review, "A-UF2", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-UF2")
    wait_paused(run_id, "decision")
    decide_review(  # the CLI's first half: recorded, the run not resumed yet
        later_db,
        account_id="A-UF2",
        decision="repossess",
        reviewer="Bo Li",
        reason="no contact",
        at=parse_instant("2026-12-02T17:00:00Z"),
    )
    answer = {"decision": "negotiate", "reviewer": "Ana Ruiz", "reason": "will pay Friday"}
    assert _resume_as_the_ui(run_id, answer)[0] == "ACCEPT"
    result = running.result(timeout=60)
    assert (result["decision"], result["recorded"]) == ("repossess", False)
    assert [e.actor for e in events(later_db, "A-UF2", "decision")] == ["reviewer:Bo Li"]
    warned = _logs(run_id, "WARNING", "NOT recorded")
    assert warned and "negotiate by Ana Ruiz" in warned[0] and "repossess by Bo Li" in warned[0]


def _logs(run_id: str, level: str, text: str, timeout: float = 15) -> list[str]:
    """The run's log lines at `level` containing `text`, once they reach the API."""
    import logging
    import time
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    found: list[str] = []
    with get_client(sync_client=True) as client:
        while not found and time.monotonic() < deadline:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])))
            found = [g.message for g in logs if g.level == logging.getLevelName(level) and text in g.message]
            time.sleep(0.5)
    return found


def test_a_wake_with_an_as_of_that_is_no_instant_does_not_fail_the_run(
    later_db: Engine, tmp_path: Path
) -> None:
    """The UI's form on a run waiting out its cure period (a `Wake`) takes any text as `as_of`;
    "tomorrow" failed the run (ValueError), leaving the review without a run until a cycle
    replaced it. It is ignored with a warning, and the run looks again and waits on."""
    from prefect.exceptions import CancelledRun
    from sqlalchemy import update

    from flows.repossession_review import repossession_review

    put_in_review(later_db, tmp_path, "A-UF3")  # Iowa: waits for its right-to-cure notice
    running = in_thread(repossession_review, "A-UF3", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-UF3")
    wait_paused(run_id, "cure-wait-1")
    assert _resume_as_the_ui(run_id, {"as_of": "tomorrow"})[0] == "ACCEPT"
    wait_paused(run_id, "cure-wait-2")
    assert _logs(run_id, "WARNING", "as_of ignored")
    with later_db.begin() as c:  # the account cures meanwhile: the next wake ends the run
        c.execute(update(account_t).where(account_t.c.account_id == "A-UF3").values(stage="cured"))
    assert _resume_as_the_ui(run_id, {"as_of": None})[0] == "ACCEPT"
    with pytest.raises(CancelledRun, match="account is now cured"):
        running.result(timeout=60)


def test_a_repossession_approved_after_an_unapplied_payment_never_reaches_the_agency(
    later_db: Engine, tmp_path: Path, agency_sandbox: Any
) -> None:
    """The form shows the amount to cure as the run found it; the borrower then pays it all, the
    payment is imported, and the reviewer approves the repossession before the cycle applies it.
    The order went to the agency at once and stayed open there through the cycle that cured the
    account. It is cancelled at the decision, before it leaves, and the run says so."""
    from flows.repossession_review import repossession_review
    from tests.later_stage_helpers import pay

    put_in_review(later_db, tmp_path, "A-UF4", **CA)
    running = in_thread(repossession_review, "A-UF4", "2026-12-01T17:00:00Z")
    run_id = review_run_id(later_db, "A-UF4")
    wait_paused(run_id, "decision")
    pay(later_db, tmp_path, "A-UF4", "825.00", "2026-12-02T15:00:00Z")
    answer = {"decision": "repossess", "reviewer": "Ana Ruiz", "reason": "no contact"}
    assert _resume_as_the_ui(run_id, answer)[0] == "ACCEPT"
    result = running.result(timeout=60)
    assert result["vendor_order"] is None and "cancelled at once" in (result["note"] or "")
    orders = [e.data["action"] for e in events(later_db, "A-UF4", "vendor_order")]
    assert orders == ["placed", "cancelled"]
    assert [a for a in agency_sandbox.assignments() if a["status"] != "cancelled"] == []
