"""A run of delivery failures that are our message's or sender's made loud, and the carrier codes
that say the recipient refused us read as the opt-outs they are.

A failure the vendor says is our template's or sender's (Twilio's 30007, 30034; Aliyun's template
and signature codes) counts against no number, so nothing else stops it: a template every carrier
filters failed every borrower's text, day after day, and no one heard of it. The rule
(`arrears.storage.delivery_reports.failing_senders`, with the settings by `tasks.receipts`): a
provider whose delivery reports of the day before were at least 10 % such failures, and at least 10
of them, is named in the cycle's summary, its log, an `arrears.provider.sender-faults` event and
`arrears report`, with the codes and the templates.

Aliyun's USER_REJECT ("接收用户已退订此业务") and MOBILE_IN_BLACK ("通常是用户已退订此签名") say the
recipient unsubscribed: recorded as a STOP, as Twilio's 21610 is. Twilio's 30004 ("Message
blocked") has five causes by Twilio's own page, an opt-out one of them: it stays an ordinary failure.
"""

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from arrears.importing import Kind, open_source
from arrears.settings import get_settings
from arrears.storage import outbox
from arrears.storage.delivery_reports import sender_fault_templates, tally_reports
from arrears.storage.importer import run_import
from arrears.storage.outbox import Outcome
from arrears.storage.tables import contact, hold
from arrears.vocabulary import MessageStatus
from deployments.cli import app
from integrations.sms import DeliveryReport, SmsRequest
from tasks.database import policy
from tasks.inbound import record_delivery_reports
from tests.factories import account_record, unique_id, write_csv
from tests.test_sms_callback_gaps import PHONE, STATUS_URL, T0, TOKEN, _aliyun, _sent, _sms_report, _twilio
from tests.test_what_operations_see import _cycle

REPORTED = T0 + timedelta(minutes=5)  # when the vendor told us: within the day before NOW
NOW = T0 + timedelta(hours=20)  # the next cycle's instant


@pytest.fixture
def tasks_db(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """Account A-1 and its number (PHONE), on each database we support, as the tasks see it."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", [account_record(account_id="A-1")])
    assert run_import(engine, open_source(path, Kind.ACCOUNTS)).rejected == 0
    yield engine
    get_settings.cache_clear()


def _reported(engine: Engine, outcomes: list[tuple[str | None, bool]], *, at: datetime = REPORTED) -> None:
    """One Twilio message sent and reported per `(code, ours)`: delivered without a code, failed
    with it otherwise; `ours` as the vendor's client reads the code."""
    reports = []
    for code, ours in outcomes:
        sid = unique_id("SM")
        _sent(engine, "twilio", sid)
        status = "undelivered" if code else "delivered"
        reports.append(DeliveryReport(sid, status, at, code, sender_fault=ours))
    record_delivery_reports(engine, provider="twilio", reports=reports)


# -- the rule ------------------------------------------------------------------------------------------


def test_a_filtered_template_failing_most_sends_is_named_with_its_codes_and_template(
    tasks_db: Engine,
) -> None:
    """Twelve of twenty texts of a day filtered (30007, 30034) and two a handset off (30003, the
    number's): the provider is failing, 12 of 20, by code, and the template they were of. Before,
    nothing counted them: the numbers were rightly left alone, and no one was told."""
    from tasks.receipts import failing_senders

    _reported(tasks_db, [("30007", True)] * 10 + [("30034", True)] * 2 + [("30003", False)] * 2)
    _reported(tasks_db, [(None, False)] * 6)
    (found,) = failing_senders(NOW)
    assert (found.provider, found.reports, found.sender_faults) == ("twilio", 20, 12)
    assert found.by_code == {"30007": 10, "30034": 2}
    assert found.templates == {"reminder": 12}
    assert found.as_json()["share"] == 0.6


@pytest.mark.parametrize(
    ("outcomes", "failing"),
    [
        ([("30007", True)] * 10 + [(None, False)] * 90, True),  # 10 %, 10 of them: at the line
        ([("30007", True)] * 10 + [(None, False)] * 91, False),  # just under 10 %
        ([("30007", True)] * 9, False),  # every one filtered, but nine: too few to page anyone
        ([("30003", False)] * 20, False),  # the numbers' failures: the policy marks those
    ],
)
def test_the_rule_takes_a_share_of_the_days_reports_and_a_floor(
    tasks_db: Engine, outcomes: list[tuple[str | None, bool]], failing: bool
) -> None:
    from tasks.receipts import failing_senders

    _reported(tasks_db, outcomes)
    assert bool(failing_senders(NOW)) is failing


def test_the_rule_looks_at_the_day_before_only(tasks_db: Engine) -> None:
    """Yesterday's filtered template, fixed since (today's texts delivered): not failing today."""
    from tasks.receipts import failing_senders

    _reported(tasks_db, [("30007", True)] * 15, at=NOW - timedelta(days=1, minutes=1))
    _reported(tasks_db, [(None, False)] * 15, at=NOW - timedelta(hours=1))
    assert failing_senders(NOW) == []
    assert [f.sender_faults for f in failing_senders(NOW - timedelta(hours=2))] == [15]


def test_the_tally_is_one_per_provider(tasks_db: Engine) -> None:
    """Each provider's reports are its own: Aliyun's refused signature does not add to Twilio's."""
    _reported(tasks_db, [("30007", True)] * 2 + [(None, False)] * 3)
    for n in range(4):
        (report,) = _sms_report(success=False, err_code="isv.SMS_SIGN_ILLEGAL", out_id=f"k{n:031x}")
        assert isinstance(report, DeliveryReport)
        _sent(tasks_db, "aliyun", report.provider_id)
        record_delivery_reports(tasks_db, provider="aliyun", reports=[report])
    since = T0 - timedelta(hours=1)
    with tasks_db.connect() as c:
        tallies = [
            (t.provider, t.reports, t.sender_faults, t.by_code)
            for t in tally_reports(c, since=since, until=NOW)
        ]
        templates = sender_fault_templates(c, provider="aliyun", since=since, until=NOW)
    assert tallies == [("aliyun", 4, 4, {"isv.SMS_SIGN_ILLEGAL": 4}), ("twilio", 5, 2, {"30007": 2})]
    assert templates == {"reminder": 4}


# -- what operations see -------------------------------------------------------------------------------


def test_the_cycle_report_says_so_in_its_summary_its_log_and_an_event(
    tasks_db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The cycle after a day of filtered texts: a bold line in its summary artifact naming the
    provider, the share, the codes and the template; a warning in its log; an
    `arrears.provider.sender-faults` event on the provider's resource, as an outage's; the
    providers in the cycle's returned report. A cycle after a good day says nothing of it."""
    import tasks.receipts as receipts
    import tasks.report as report_task

    artifacts: dict[str, Any] = {}
    events: list[tuple[str, dict[str, str], dict[str, Any]]] = []
    monkeypatch.setattr(report_task, "create_table_artifact", lambda key, table, description: None)
    monkeypatch.setattr(
        report_task,
        "create_markdown_artifact",
        lambda key, markdown, description: artifacts.update({key: markdown}),
    )
    monkeypatch.setattr(report_task, "emit_event", lambda event, resource, payload: None)
    monkeypatch.setattr(report_task, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(
        receipts, "emit_event", lambda event, resource, payload: events.append((event, resource, payload))
    )

    quiet = _cycle(tasks_db, NOW - timedelta(days=2), report=None)
    report_task.report_cycle.fn(quiet, "2026-11-29")
    assert "failed for our message or sender" not in artifacts["cycle-summary"]
    assert events == []

    _reported(tasks_db, [("30007", True)] * 11 + [(None, False)] * 4)
    cycle_id = _cycle(tasks_db, NOW, report=None)
    with caplog.at_level("WARNING", logger="arrears.receipts"):
        result = report_task.report_cycle.fn(cycle_id, "2026-12-02")
    line = (
        "SMS provider twilio: 11 of 15 delivery reports in the day before (73%) failed for our message "
        "or sender (30007 11; templates: reminder 11)"
    )
    assert f"- **{line}" in artifacts["cycle-summary"]
    assert any(line in r.getMessage() for r in caplog.records)
    ((event, resource, payload),) = events
    assert event == "arrears.provider.sender-faults"
    assert resource["prefect.resource.id"] == "arrears.provider.sms.twilio"
    assert payload["by_code"] == {"30007": 11} and payload["templates"] == {"reminder": 11}
    assert (payload["sender_faults"], payload["reports"], payload["threshold"], payload["minimum"]) == (
        11,
        15,
        0.1,
        10,
    )
    assert [f["provider"] for f in result["sender_faults"]] == ["twilio"]


@pytest.mark.parametrize(("filtered", "named"), [(12, True), (9, False)])
def test_arrears_report_names_the_failing_sender_of_the_cycles_day(
    tasks_db: Engine, db_url: str, filtered: int, named: bool
) -> None:
    """`arrears report` (its table and `--json`) names the provider the cycle's summary named, by
    the same rule over the day before the reported cycle's instant: twelve texts filtered (30007)
    of fifteen, and not nine, under the floor. An earlier cycle's report (`--cycle`) looks at its
    own day, before them. Before, only the cycle's artifact and event said it: the operator
    reading the report saw the messages failed and nothing of why."""
    from tasks.receipts import failing_senders

    earlier = _cycle(tasks_db, NOW - timedelta(days=2), report=None)
    _reported(tasks_db, [("30007", True)] * filtered + [(None, False)] * 3)
    cycle_id = _cycle(tasks_db, NOW, report=None)

    def report(*args: str) -> str:
        result = CliRunner().invoke(app, ["report", "--database", db_url, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    data = json.loads(report("--json"))
    assert data["cycle_id"] == cycle_id
    assert data["sender_faults"] == [f.as_json() for f in failing_senders(NOW)]  # the cycle's rule
    table = " ".join(report().split())  # rich wraps the line at the terminal's width
    line = (
        "SMS provider twilio: 12 of 15 delivery reports in the day before (80%) failed for our message "
        "or sender (30007 12; templates: reminder 12)"
    )
    if named:
        assert data["sender_faults"] == [
            {
                "provider": "twilio",
                "reports": 15,
                "sender_faults": 12,
                "share": 0.8,
                "threshold": 0.1,
                "minimum": 10,
                "by_code": {"30007": 12},
                "templates": {"reminder": 12},
            }
        ]
        assert line in table
    else:
        assert data["sender_faults"] == []
        assert "failed for our message or sender" not in table
    assert json.loads(report("--json", "--cycle", str(earlier)))["sender_faults"] == []


def test_the_threshold_and_floor_are_the_operators_to_set(
    tasks_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARREARS_SENDER_FAULT_ALERT_SHARE and _MIN: a lender whose carriers filter a few texts of
    every day raises the share; a small book lowers the floor."""
    from tasks.receipts import failing_senders

    _reported(tasks_db, [("30007", True)] * 3 + [(None, False)] * 7)
    assert failing_senders(NOW) == []
    monkeypatch.setenv("ARREARS_SENDER_FAULT_ALERT_MIN", "3")
    get_settings.cache_clear()
    assert [f.sender_faults for f in failing_senders(NOW)] == [3]
    monkeypatch.setenv("ARREARS_SENDER_FAULT_ALERT_SHARE", "0.5")
    get_settings.cache_clear()
    assert failing_senders(NOW) == []


@pytest.mark.usefixtures("prefect_harness")
def test_the_outbox_run_counts_them_and_warns_without_an_event(
    tasks_db: Engine, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarter-hourly outbox run says it too, in its counts and its log, but raises no event:
    one every quarter hour would page operations ninety-six times a day for one template."""
    import tasks.receipts as receipts
    from flows.daily_cycle import dispatch_outbox

    events: list[str] = []
    monkeypatch.setattr(receipts, "emit_event", lambda event, resource, payload: events.append(event))
    now = datetime.now(UTC)
    _reported(tasks_db, [("30007", True)] * 12, at=now - timedelta(minutes=30))
    counts = dispatch_outbox(as_of=now.isoformat())
    assert counts["sender_faults"] == 12
    assert events == []


def test_an_automation_pages_operations_on_the_event() -> None:
    """`arrears deploy` creates an automation that alerts on the event, for SMS providers."""
    from deployments.automations import AUTOMATIONS

    [alert] = [a for a in AUTOMATIONS if "arrears.provider.sender-faults" in a.events]
    assert alert.match == {"prefect.resource.id": "arrears.provider.sms.*"}


# -- codes that say the recipient refused us ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "opted_out"),
    [
        ("USER_REJECT", True),  # 接收用户已退订此业务或产品未开通
        ("MOBILE_IN_BLACK", True),  # 手机号在黑名单中，通常是用户已退订此签名
        ("MOBILE_NOT_ON_SERVICE", False),  # 停机: the number's failure
        ("CONTENT_KEYWORD", False),  # our content
    ],
)
def test_aliyuns_refusal_codes_say_the_recipient_opted_out(code: str, opted_out: bool) -> None:
    """In an SmsReport push and a QuerySendDetails lookup alike; neither is our fault."""
    (report,) = _sms_report(success=False, err_code=code)
    assert isinstance(report, DeliveryReport)
    assert (report.status, report.error_code, report.recipient_opted_out) == ("undelivered", code, opted_out)
    assert not (opted_out and report.sender_fault)

    out_id = "k" + "b" * 31
    detail = {"OutId": out_id, "SendStatus": 2, "ErrCode": code, "SendDate": "2026-12-01 17:00:00"}
    provider = _aliyun()
    provider._transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, json={"Code": "OK", "SmsSendDetailDTOs": {"SmsSendDetailDTO": [detail]}}
        )
    )
    found = provider.status(SmsRequest(unique_id("key"), "+8613912345678", "SMS_1", {}, ""), f"{out_id}:t")
    assert found is not None and found.recipient_opted_out is opted_out


def _number(engine: Engine) -> Any:
    with engine.connect() as c:
        return c.execute(select(contact).where(contact.c.address == PHONE)).one()


def _opt_out_holds(engine: Engine) -> int:
    with engine.connect() as c:
        return len(
            c.execute(select(hold.c.id).where(hold.c.account_id == "A-1", hold.c.kind == "sms_opt_out")).all()
        )


@pytest.mark.parametrize("code", ["USER_REJECT", "MOBILE_IN_BLACK"])
def test_an_aliyun_refusal_is_recorded_as_a_stop(tasks_db: Engine, code: str) -> None:
    """The message fails with the code; the number is opted out as a STOP would opt it out (its
    borrower's account held for SMS), and no failure counts against it. Before, each counted as a
    failed delivery: texts went on to a borrower who had unsubscribed, and the third marked the
    number unreachable and sent the borrower to skip tracing."""
    for n in range(3):
        (report,) = _sms_report(success=False, err_code=code, out_id=f"k{n:031x}")
        assert isinstance(report, DeliveryReport)
        message_id = _sent(tasks_db, "aliyun", report.provider_id)
        assert record_delivery_reports(tasks_db, provider="aliyun", reports=[report]).changed == [message_id]
    number = _number(tasks_db)
    assert (number.valid, number.failures, number.opted_out_at is not None) == (True, 0, True)
    assert _opt_out_holds(tasks_db) == 1


def test_an_aliyun_refusal_that_came_before_its_send_is_recorded_once_the_send_is(tasks_db: Engine) -> None:
    """Aliyun names the number nationally, which cannot be told from a +1 number's digits: the STOP
    is recorded for the number the message went to, when its send is recorded (half of a live
    cycle's reports come first)."""
    (report,) = _sms_report(success=False, err_code="USER_REJECT", out_id="k" + "c" * 31)
    assert isinstance(report, DeliveryReport) and report.recipient is None
    assert record_delivery_reports(tasks_db, provider="aliyun", reports=[report]).unmatched == [
        report.provider_id
    ]
    assert _number(tasks_db).opted_out_at is None
    message_id = _sent(tasks_db, "aliyun", None, status="scheduled")
    recorded = Outcome(
        message_id, "A-1", MessageStatus.SENT, provider="aliyun", provider_id=report.provider_id, sent_at=T0
    )
    with tasks_db.begin() as c:
        outbox.record_outcomes(
            c,
            outcomes=[recorded],
            at=T0,
            cycle_id=None,
            unreachable_after=policy().segmentation.unreachable_after_failures,
        )
    number = _number(tasks_db)
    assert (number.failures, number.opted_out_at is not None) == (0, True)


def test_twilios_message_blocked_stays_an_ordinary_failure(tasks_db: Engine) -> None:
    """30004: an opt-out is one of the five causes Twilio gives, beside a device unavailable, a
    landline and filtering of our content; read as a STOP, a wave of it from our content would opt
    out every borrower for good. It counts as one failure of the number, as the policy's run does."""
    form = {"MessageSid": "SM30004", "MessageStatus": "undelivered", "ErrorCode": "30004", "To": PHONE}
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STATUS_URL, form)}
    (report,) = _twilio().parse_callback(headers, urlencode(form).encode(), url=STATUS_URL)
    assert isinstance(report, DeliveryReport)
    assert (report.recipient_opted_out, report.number_cannot_text, report.sender_fault) == (
        False,
        False,
        False,
    )
    _sent(tasks_db, "twilio", "SM30004")
    record_delivery_reports(tasks_db, provider="twilio", reports=[report])
    number = _number(tasks_db)
    assert (number.valid, number.failures, number.opted_out_at) == (True, 1, None)
