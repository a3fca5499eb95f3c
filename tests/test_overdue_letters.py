"""Letters the law makes us send by a date, not mailed by it, told to operations: the explanation a
borrower asked for (`arrears sale explain`, UCC 9-616(b)(1)(B): within 14 days; $500 a case under
9-625(c)(2), (e)(6)) still unmailed past its deadline is listed by `arrears letters list --overdue`
and named in the cycle's report (its JSON, its summary and an `arrears.letters.overdue` event).
One mailed in time is not, one mailed late leaves the list once mailed, and a right-to-cure
notice, whose deadline ends its cure period, never is."""

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.later_stage_helpers import at, events, import_rows, put_in_review, rows, us_account
from tests.test_letters_agency import _review_step
from tests.test_sale_after_recovery import _explain, _mail_requested
from tests.test_sales import _cli, _closed_after_notice, _letters, _mail, _record, _settle, letter_t
from tests.test_what_operations_see import _cycle

REFUSED = "A-OVR"  # its explanation refused by the provider (an address it cannot mail to)
LATE = "A-OVL"  # its explanation taken by the provider, mailed only after the day it was due
IN_TIME = "A-OVM"  # its explanation mailed within the 14 days
CURE = "A-OVC"  # a right-to-cure notice mailed, returned to sender, its cure period over


def _overdue(db_url: str, as_of: datetime, *extra: str) -> list[dict[str, Any]]:
    listed = _cli(db_url, "letters", "list", "--overdue", "--as-of", as_of.isoformat(), "--json", *extra)
    assert listed.exit_code == 0, listed.output
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def _report(monkeypatch: pytest.MonkeyPatch, engine: Engine, as_of: datetime) -> tuple[dict[str, Any], Any]:
    """The report of a cycle run at `as_of`: its JSON, and (its `arrears.letters.overdue` events as
    (event, resource, payload), its summary artifact)."""
    import tasks.report as report_task

    emitted: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    summary: dict[str, str] = {}
    monkeypatch.setattr(report_task, "create_table_artifact", lambda key, table, description: None)
    monkeypatch.setattr(
        report_task,
        "create_markdown_artifact",
        lambda key, markdown, description: summary.update({key: markdown}),
    )
    monkeypatch.setattr(
        report_task, "emit_event", lambda event, resource, payload: emitted.append((event, resource, payload))
    )
    monkeypatch.setattr(report_task, "get_run_logger", lambda: logging.getLogger("test"))
    cycle_id = _cycle(engine, as_of, report=None)
    result = report_task.report_cycle.fn(cycle_id, as_of.date().isoformat())
    return result, ([e for e in emitted if e[0] == "arrears.letters.overdue"], summary["cycle-summary"])


@pytest.mark.usefixtures("letters_sandbox")
def test_an_explanation_not_mailed_by_its_deadline_is_listed_and_alerted_until_it_is_mailed(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three explanations asked for on one day: refused by the provider, taken by it but not
    mailed, mailed in time (and later returned to sender: sent, as the law counts it). A minute
    before their deadline nothing is overdue; from it, the first two are, in `letters list
    --overdue` (table and JSON, `--account` and `--status` filtering them) and in the cycle's
    report (JSON, one event, the summary's line; `arrears report` too). Mailed late, the second
    leaves the list (the timeline says late). A right-to-cure notice returned to sender, its cure
    period long over, is never listed: its deadline is not one to mail by."""
    # A right-to-cure notice mailed on 2 December and returned: its deadline (the end of its cure
    # period) passes in December, and it stays not in the post.
    put_in_review(mail_db, tmp_path, CURE)
    _review_step("2026-12-01T17:00:00Z")
    [notice] = letters_sandbox.letters()
    letters_sandbox.advance(notice["id"], "mailed", at="2026-12-02T15:00:00Z")
    letters_sandbox.advance(notice["id"], "returned_to_sender", at="2026-12-05T15:00:00Z")
    from tasks.letters import track_letters

    track_letters.fn()
    [cure] = rows(mail_db, letter_t, CURE)
    assert (cure.kind, cure.status) == ("right_to_cure", "returned_to_sender") and cure.deadline is not None

    # Three sales, each explained once, then the explanation asked for again on the same day.
    [sale_after] = {
        _closed_after_notice(mail_db, tmp_path, letters_sandbox, a) for a in (REFUSED, LATE, IN_TIME)
    }
    sold = sale_after + timedelta(days=2)
    for a in (REFUSED, LATE, IN_TIME):
        assert _record(db_url, a, sold).exit_code == 0
    written = f"{sold + timedelta(days=2)}T15:00:00Z"
    _settle(written)
    for a in (REFUSED, LATE, IN_TIME):
        _mail(
            letters_sandbox,
            a,
            "deficiency_explanation",
            f"{sold + timedelta(days=4)}T15:00:00Z",
            written=written,
        )
    # REFUSED's borrower now has an address the provider refuses (sandbox Lob: "undeliverable").
    import_rows(
        mail_db,
        tmp_path,
        [
            us_account(
                REFUSED,
                past_due_amount="825.00",
                oldest_due_date="2026-10-01",
                address_line1="1 Undeliverable Road",
            )
        ],
    )
    asked = sold + timedelta(days=10)
    for a in (REFUSED, LATE, IN_TIME):
        assert _explain(db_url, a, asked.isoformat()).exit_code == 0
    step = f"{asked + timedelta(days=1)}T15:00:00Z"
    assert _settle(step)["requested_explanations_written"] == 3
    # The letters run: IN_TIME's is mailed 3 days after the request, LATE's is taken by the provider
    # and not mailed, REFUSED's is refused.
    _mail_requested(letters_sandbox, IN_TIME, f"{asked + timedelta(days=3)}T15:00:00Z", written=step)
    [_, refused] = _letters(mail_db, REFUSED, "deficiency_explanation")
    [_, late] = _letters(mail_db, LATE, "deficiency_explanation")
    [_, in_time] = _letters(mail_db, IN_TIME, "deficiency_explanation")
    assert (refused.status, late.status, in_time.status) == ("failed", "created", "mailed")
    deadline = at(f"{asked + timedelta(days=15)}T06:00:00Z")  # the first instant after the day due (CST)
    assert refused.deadline == late.deadline == in_time.deadline == deadline

    # Before the deadline: nothing, though the right-to-cure notice's deadline passed long ago.
    before = deadline - timedelta(minutes=1)
    assert _overdue(db_url, before) == []
    result, (alerts, summary) = _report(monkeypatch, mail_db, before)
    assert result["letters_overdue"] == {"count": 0, "first": []}
    assert alerts == [] and "not mailed by the day the law says" not in summary

    # From the deadline: the two not mailed, oldest first (the same deadline: by id).
    after = deadline + timedelta(hours=3)
    listed = _overdue(db_url, after)
    assert [(x["id"], x["account_id"], x["kind"], x["status"], x["deadline"]) for x in listed] == [
        (late.id, LATE, "deficiency_explanation", "created", deadline.isoformat()),
        (refused.id, REFUSED, "deficiency_explanation", "failed", deadline.isoformat()),
    ]
    assert late.id < refused.id
    assert listed[0]["reason"] is None and listed[1]["reason"].startswith("refused:")
    assert [x["id"] for x in _overdue(db_url, after, "--account", LATE)] == [late.id]
    assert [x["id"] for x in _overdue(db_url, after, "--status", "failed")] == [refused.id]
    table = _cli(db_url, "letters", "list", "--overdue", "--as-of", after.isoformat())
    assert table.exit_code == 0 and "not mailed by their deadline (2)" in table.output
    assert REFUSED in table.output and LATE in table.output and IN_TIME not in table.output

    result, (alerts, summary) = _report(monkeypatch, mail_db, after)
    first = [
        {
            "account_id": LATE,
            "kind": "deficiency_explanation",
            "letter_id": late.id,
            "status": "created",
            "deadline": deadline.isoformat(),
            "reason": None,
        },
        {
            "account_id": REFUSED,
            "kind": "deficiency_explanation",
            "letter_id": refused.id,
            "status": "failed",
            "deadline": deadline.isoformat(),
            "reason": listed[1]["reason"],
        },
    ]
    assert result["letters_overdue"] == {"count": 2, "first": first}
    # `arrears report` of that cycle says the same, in its JSON and in a line.
    shown = _cli(db_url, "report", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["letters_overdue"] == {
        "count": 2,
        "first": first,
    }
    assert "letters not mailed by the day the law says: 2" in _cli(db_url, "report").output
    [(_, resource, payload)] = alerts
    assert payload == {"count": 2, "first": first}
    assert resource["arrears.business-date"] == after.date().isoformat()
    assert (
        f"not mailed by the day the law says: 2 (the oldest: deficiency_explanation {late.id} of {LATE}"
        in summary
    )
    assert "`arrears letters list --overdue`" in summary

    # LATE's is mailed two days late: it leaves the list, and its timeline says it was late.
    mailed_late = deadline + timedelta(days=2)
    [sent] = [x for x in letters_sandbox.letters() if x["id"] == late.provider_id]
    letters_sandbox.advance(sent["id"], "mailed", at=mailed_late.isoformat())
    track_letters.fn()
    _settle((mailed_late + timedelta(hours=1)).isoformat())
    [answered] = events(mail_db, LATE, "explanation_answered")
    assert answered.data["late"] is True
    assert [x["id"] for x in _overdue(db_url, mailed_late + timedelta(hours=2))] == [refused.id]

    # IN_TIME's, mailed in time, comes back to sender: it was sent as the law counts it, not listed.
    [kept] = [x for x in letters_sandbox.letters() if x["id"] == in_time.provider_id]
    letters_sandbox.advance(
        kept["id"], "returned_to_sender", at=(mailed_late + timedelta(hours=3)).isoformat()
    )
    track_letters.fn()
    [_, returned] = _letters(mail_db, IN_TIME, "deficiency_explanation")
    assert returned.status == "returned_to_sender"
    assert [x["id"] for x in _overdue(db_url, mailed_late + timedelta(hours=4))] == [refused.id]


def test_as_of_is_only_for_overdue(mail_db: Engine, db_url: str) -> None:
    """`--as-of` says when the deadline is judged: without --overdue nothing is, exit 2."""
    from tests.test_sales import _refused

    assert "only with --overdue" in _refused(
        _cli(db_url, "letters", "list", "--as-of", "2027-02-01T00:00:00Z")
    )
