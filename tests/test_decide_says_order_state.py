"""The reviewer who approves a repossession is told, in `arrears review decide`'s output, when the
order they just placed cannot be sent (no VIN, no mailing address) or none was placed because a hold
bars enforcement, and that the review comes back to them.

Before, the command said "vendor order RO-n placed" and exited 0 whatever became of the order; the
reviewer learnt of it only later, from `arrears review list` (`tests/test_called_off_orders.py`).
The decision is recorded all the same: exit 0. The form's path (the review's flow run) says it in
the run's log. End to end through the CLI, SQLite and the sandbox agency.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.models import AgencyAssignment
from tests.later_stage_helpers import at, in_thread, put_in_review, review_run_id, review_t, rows, wait_paused
from tests.test_called_off_orders import CALIFORNIA, NO_ADDRESS, NO_VIN
from tests.test_review_after_agency import _cli, _listed

assignment_t = AgencyAssignment.__table__  # type: ignore[attr-defined]


def _in_review(engine: Engine, tmp_path: Path, account_id: str, **kw: Any) -> None:
    """A US-CA account (no cure notice owed) in review, its review open and decidable."""
    from tasks.review import prepare_reviews

    put_in_review(engine, tmp_path, account_id, **CALIFORNIA, **kw)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))


def _decide(db_url: str, account_id: str, *json_flag: str) -> Any:
    out = _cli(
        "review", "decide", account_id, "--decision", "repossess", "--reviewer", "Ana",
        "--reason", "no contact", "--as-of", "2026-12-02T17:00:00Z", "--database", db_url, *json_flag,
    )  # fmt: skip
    assert out.exit_code == 0, out.output  # the decision is recorded whatever became of the order
    return out


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.cli._common import console

    monkeypatch.setattr(console, "width", 400)  # no line folds


@pytest.mark.parametrize(
    ("missing", "said"), [(NO_VIN, "no VIN on file"), (NO_ADDRESS, "no mailing address on file")]
)
def test_a_blocked_order_is_said_in_the_json_with_what_is_missing_and_the_review_sent_back(
    mail_db: Engine, db_url: str, tmp_path: Path, missing: dict[str, None], said: str
) -> None:
    """The order is written but cannot be sent: `order_status` blocked, `order_reason` what is
    missing, and `reopened_review_id` the review `review list` now shows for a person."""
    account_id = f"A-DS{len(said)}"
    _in_review(mail_db, tmp_path, account_id, **missing)
    result = json.loads(_decide(db_url, account_id, "--json").stdout)
    decided, reopened = rows(mail_db, review_t, account_id)
    assert (result["recorded"], result["decision"], result["review_id"]) == (True, "repossess", decided.id)
    assert result["vendor_order"] == f"RO-{decided.id}"
    assert (result["order_status"], result["order_reason"]) == ("blocked", said)
    assert result["reopened_review_id"] == reopened.id
    assert f"placed but blocked: {said}" in result["order_said"]
    [row] = rows(mail_db, assignment_t, account_id)
    assert (row.status, row.reason) == ("blocked", said)
    [waiting] = _listed(db_url, "2026-12-02T18:00:00Z")
    assert waiting["id"] == reopened.id


def test_a_blocked_order_is_said_in_the_table(
    mail_db: Engine, db_url: str, tmp_path: Path, wide: None
) -> None:
    """The table names the order, that it is blocked and why, that it goes once an import brings
    the VIN, and the review that is back in `review list` meanwhile."""
    account_id = "A-DST"
    _in_review(mail_db, tmp_path, account_id, **NO_VIN)
    out = _decide(db_url, account_id).stdout
    decided, reopened = rows(mail_db, review_t, account_id)
    assert f"vendor order RO-{decided.id} placed" in out
    assert (
        f"order RO-{decided.id} placed but blocked: no VIN on file — it goes to the agency once an import "
        f"brings it, and review {reopened.id} is back in `arrears review list` meanwhile"
    ) in out


def test_an_order_withheld_under_a_hold_is_said_with_the_hold_and_the_review_coming_back(
    mail_db: Engine, db_url: str, tmp_path: Path, wide: None
) -> None:
    """Approved while a dispute bars enforcement, no order is placed: the JSON says withheld and
    the hold, the table says the review comes back, waiting for the hold, then for a decision."""
    for account_id in ("A-DSW1", "A-DSW2"):
        _in_review(mail_db, tmp_path, account_id)
        placed = _cli(
            "hold", "place", account_id, "dispute", "--reason", "borrower disputes the balance",
            "--as-of", "2026-12-01T18:00:00Z", "--database", db_url,
        )  # fmt: skip
        assert placed.exit_code == 0, placed.output
    result = json.loads(_decide(db_url, "A-DSW1", "--json").stdout)
    assert (result["recorded"], result["vendor_order"]) == (True, None)
    assert (result["order_status"], result["order_reason"]) == ("withheld", "hold:dispute")
    assert result["reopened_review_id"] is None  # it opens at the next refresh
    out = _decide(db_url, "A-DSW2").stdout
    assert (
        "no order placed: withheld under hold:dispute — the review comes back in `arrears review list` "
        "by the next cycle, waiting for the hold, then for a decision once the hold is lifted"
    ) in out
    assert rows(mail_db, assignment_t, "A-DSW2") == []


def test_an_order_that_goes_says_nothing_more(
    mail_db: Engine, db_url: str, tmp_path: Path, wide: None
) -> None:
    """An order with its VIN and address on file is placed and goes: `order_status` placed, no
    warning line, and no review comes back."""
    _in_review(mail_db, tmp_path, "A-DSP1")
    result = json.loads(_decide(db_url, "A-DSP1", "--json").stdout)
    assert (result["order_status"], result["order_reason"], result["order_said"]) == ("placed", None, None)
    assert result["reopened_review_id"] is None
    _in_review(mail_db, tmp_path, "A-DSP2")
    out = _decide(db_url, "A-DSP2").stdout
    assert "vendor order RO-" in out and "blocked" not in out and "withheld" not in out
    assert [len(rows(mail_db, review_t, a)) for a in ("A-DSP1", "A-DSP2")] == [1, 1]


@pytest.mark.usefixtures("prefect_harness")
def test_the_form_path_says_a_blocked_order_in_the_run_log_and_result(
    mail_db: Engine, tmp_path: Path
) -> None:
    """Approved through the flow run's form: the run's result carries the order's state, and its
    log warns that the order is blocked and the review is back in `review list`."""
    from flows.repossession_review import repossession_review
    from tests.test_review_form import _logs, _resume_as_the_ui

    account_id = "A-DSF"
    put_in_review(mail_db, tmp_path, account_id, **CALIFORNIA, **NO_VIN)  # type: ignore[arg-type]
    running = in_thread(repossession_review, account_id, "2026-12-01T17:00:00Z")
    run_id = review_run_id(mail_db, account_id)
    wait_paused(run_id, "decision")
    answer = {"decision": "repossess", "reviewer": "Ana Ruiz", "reason": "no contact"}
    assert _resume_as_the_ui(run_id, answer)[0] == "ACCEPT"
    result = running.result(timeout=60)
    assert (result["order_status"], result["order_reason"]) == ("blocked", "no VIN on file")
    [logged] = _logs(run_id, "WARNING", "placed but blocked: no VIN on file")
    assert f"review {result['reopened_review_id']} is back in `arrears review list`" in logged
