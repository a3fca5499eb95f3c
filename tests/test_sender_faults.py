"""Delivery failures that are our message's or sender's, not the borrower's number's: each vendor's
codes read as such (Twilio's 30007 content filtered, 30034 an unregistered sender, Aliyun's template
and signature codes), applied without counting against the number (which, counted, would mark every
number unreachable within three days of a filtered template and skip-trace every borrower); and the
early reports applied once their send was recorded, left out of what `arrears callbacks list` shows."""

import json
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from arrears.importing import Kind, open_source
from arrears.storage import outbox
from arrears.storage.delivery_reports import UNMATCHED_REPORT, expire_early_reports
from arrears.storage.importer import run_import
from arrears.storage.outbox import Outcome
from arrears.storage.reports import portfolio_report
from arrears.storage.tables import audit, contact, early_report, message
from arrears.storage.unattributed import counts_for_report, unattributed_callbacks
from arrears.vocabulary import MessageStatus
from integrations.sms import DeliveryReport, SmsRequest
from tasks.database import policy
from tasks.inbound import record_delivery_reports
from tasks.receipts import looked_up_report
from tests.factories import account_record, unique_id, write_csv
from tests.test_sms_callback_gaps import (
    PHONE,
    STATUS_URL,
    T0,
    TOKEN,
    _aliyun,
    _message_resource,
    _request,
    _sent,
    _sms_report,
    _twilio,
)
from tests.test_what_operations_see import _cycle

# Twilio's codes about our message, sender or account (https://www.twilio.com/docs/api/errors)
TWILIO_SENDER_FAULTS = ["30001", "30002", "30007", "30008", "30010", "30022", "30023", "30027"]
TWILIO_SENDER_FAULTS += ["30032", "30034", "30036", "30500"]


@pytest.fixture
def portfolio(engine: Engine, tmp_path: Path) -> Engine:
    """Account A-1 and its number (PHONE) on each database we support."""
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", [account_record(account_id="A-1")])
    assert run_import(engine, open_source(path, Kind.ACCOUNTS)).rejected == 0
    return engine


def _callback(sid: str, code: str) -> DeliveryReport:
    """Twilio's signed status callback of an undelivered message with `code`, as the webhook reads it."""
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": code, "To": PHONE}
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STATUS_URL, form)}
    (report,) = _twilio().parse_callback(headers, urlencode(form).encode(), url=STATUS_URL)
    assert isinstance(report, DeliveryReport)
    return report


def _number(engine: Engine) -> tuple[bool, int]:
    with engine.connect() as c:
        row = c.execute(select(contact.c.valid, contact.c.failures).where(contact.c.address == PHONE)).one()
    return row.valid, row.failures


def _failed(engine: Engine, message_id: int) -> tuple[str, str | None]:
    with engine.connect() as c:
        row = c.execute(select(message.c.status, message.c.reason).where(message.c.id == message_id)).one()
    return row.status, row.reason


# -- each vendor's codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ours", "cannot_text", "opted_out"),
    [(code, True, False, False) for code in TWILIO_SENDER_FAULTS]
    + [
        ("30003", False, False, False),  # handset off: one failure of the number among the run
        ("30005", False, True, False),  # unknown handset
        ("30006", False, True, False),  # a landline
        ("21610", False, False, True),  # STOP at the carrier
        ("", False, False, False),
    ],
)
def test_each_twilio_code_about_our_message_or_sender_says_so(
    code: str, ours: bool, cannot_text: bool, opted_out: bool
) -> None:
    """In a status callback and in a status lookup alike: a code about our message, sender or
    account (content filtered, a sender not registered or verified, our caps and queues, an error
    Twilio cannot explain) says it is our fault, and nothing of the number; the number's own codes
    say what they said before."""
    report = _callback("SM1", code) if code else None
    if report is not None:
        assert (report.sender_fault, report.number_cannot_text, report.recipient_opted_out) == (
            ours,
            cannot_text,
            opted_out,
        )
    found = _twilio(_message_resource("SM1", code or None)).status(_request(), "SM1")
    assert found is not None
    assert (found.sender_fault, found.number_cannot_text, found.recipient_opted_out) == (
        ours,
        cannot_text,
        opted_out,
    )


@pytest.mark.parametrize(
    ("code", "ours"),
    [
        ("CONTENT_KEYWORD", True),  # the carrier's keyword filter
        ("isv.SMS_TEMPLATE_ILLEGAL", True),
        ("isv.SMS_SIGN_ILLEGAL", True),
        ("isv.SMS_CONTENT_ILLEGAL", True),
        ("isv.DAY_LIMIT_CONTROL", True),
        ("SP_UNKNOWN_ERROR", True),
        ("MOBILE_NOT_ON_SERVICE", False),  # 停机: the number's
        ("MOBILE_ACCOUNT_ABNORMAL", False),
        ("MOBILE_TERMINAL_ERROR", False),
    ],
)
def test_each_aliyun_code_about_our_template_or_signature_says_so(code: str, ours: bool) -> None:
    """Aliyun's SmsReport and its QuerySendDetails alike: a template, signature, content or account
    code is our fault; a number out of service is the number's."""
    (report,) = _sms_report(success=False, err_code=code)
    assert isinstance(report, DeliveryReport)
    assert (report.status, report.error_code, report.sender_fault) == ("undelivered", code, ours)
    (delivered,) = _sms_report(success=True)
    assert isinstance(delivered, DeliveryReport) and not delivered.sender_fault

    out_id = "k" + "a" * 31
    detail = {"OutId": out_id, "SendStatus": 2, "ErrCode": code, "SendDate": "2026-12-01 17:00:00"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Code": "OK", "SmsSendDetailDTOs": {"SmsSendDetailDTO": [detail]}})

    provider = _aliyun()
    provider._transport = httpx.MockTransport(answer)
    request = SmsRequest(unique_id("key"), "+8613912345678", "SMS_1", {}, "")
    found = provider.status(request, f"{out_id}:tag")
    assert found is not None
    assert (found.status, found.error_code, found.sender_fault) == ("undelivered", code, ours)


# -- applied without counting against the number -------------------------------------------------------


def test_failures_of_our_message_or_sender_never_mark_the_number_unreachable(portfolio: Engine) -> None:
    """A filtered template (30007) and an unregistered sender (30034), five days in a row: each
    message is failed with the vendor's code, and the number stays valid with no failure counted
    (the policy marks it after 3 failures in a row, then skip-traces the borrower). Before, the
    third day marked it unreachable, as it would have every borrower's."""
    for day, code in enumerate(["30007", "30034", "30007", "30032", "30007"]):
        sid = f"SM-OURS-{day}"
        message_id = _sent(portfolio, "twilio", sid)
        applied = record_delivery_reports(portfolio, provider="twilio", reports=[_callback(sid, code)])
        assert applied.changed == [message_id]
        assert _failed(portfolio, message_id) == ("failed", code)
    assert _number(portfolio) == (True, 0)
    with portfolio.connect() as c:
        events = c.execute(
            select(audit.c.detail, audit.c.data).where(audit.c.account_id == "A-1", audit.c.kind == "message")
        ).all()
        kinds = set(c.execute(select(audit.c.kind).where(audit.c.account_id == "A-1")).scalars())
    assert len(events) == 5 and all(e.data["sender_fault"] is True for e in events)
    assert all("not counted against the number" in e.detail for e in events)
    assert "contact" not in kinds  # no number marked


def test_a_fault_of_ours_between_failures_of_the_number_neither_raises_nor_resets_their_run(
    portfolio: Engine,
) -> None:
    """Two handset-off failures (30003), then a filtered message, then a third 30003: the number is
    marked unreachable at the third failure of its own, as the policy says. The filtered message
    says nothing of the number either way: it does not count as a failure, nor as a delivery that
    would have started the run over."""
    for n, code in enumerate(["30003", "30003", "30007"]):
        sid = f"SM-RUN-{n}"
        _sent(portfolio, "twilio", sid)
        record_delivery_reports(portfolio, provider="twilio", reports=[_callback(sid, code)])
    assert _number(portfolio) == (True, 2)
    _sent(portfolio, "twilio", "SM-RUN-3")
    record_delivery_reports(portfolio, provider="twilio", reports=[_callback("SM-RUN-3", "30003")])
    assert _number(portfolio) == (False, 3)


def test_a_status_lookup_of_a_filtered_message_counts_nothing_against_the_number(portfolio: Engine) -> None:
    """A receipt that never came, looked up (the outbox sweep), says what its callback would have:
    30034, an unregistered sender, fails the message and counts no failure of the number."""
    message_id = _sent(portfolio, "twilio", "SM-LOOKED")
    found = _twilio(_message_resource("SM-LOOKED", "30034")).status(_request(), "SM-LOOKED")
    assert found is not None
    report = looked_up_report(found, PHONE, T0)
    assert record_delivery_reports(portfolio, provider="twilio", reports=[report]).changed == [message_id]
    assert _failed(portfolio, message_id) == ("failed", "30034")
    assert _number(portfolio) == (True, 0)


def test_an_aliyun_template_refused_counts_nothing_against_the_number(portfolio: Engine) -> None:
    """Aliyun's isv.SMS_TEMPLATE_ILLEGAL, three times: failed messages, a number still valid."""
    for n in range(3):
        (report,) = _sms_report(success=False, err_code="isv.SMS_TEMPLATE_ILLEGAL", out_id=f"k{n:031x}")
        assert isinstance(report, DeliveryReport)
        message_id = _sent(portfolio, "aliyun", report.provider_id)
        assert record_delivery_reports(portfolio, provider="aliyun", reports=[report]).changed == [message_id]
        assert _failed(portfolio, message_id) == ("failed", "isv.SMS_TEMPLATE_ILLEGAL")
    assert _number(portfolio) == (True, 0)


def _record_send(engine: Engine, message_id: int, provider_id: str, at: datetime) -> None:
    """Dispatch records the send, and applies the reports that came before it as dispatch does,
    with the policy's run of failures."""
    recorded = Outcome(
        message_id, "A-1", MessageStatus.SENT, provider="twilio", provider_id=provider_id, sent_at=T0
    )
    after = policy().segmentation.unreachable_after_failures
    with engine.begin() as c:
        outbox.record_outcomes(c, outcomes=[recorded], at=at, cycle_id=None, unreachable_after=after)


def test_an_early_report_keeps_that_the_fault_was_ours_until_its_send_is_recorded(portfolio: Engine) -> None:
    """Three filtered messages whose reports came before their sends were recorded (half of a live
    cycle's do): each kept with the flag, and applied with it once the send is recorded. Before,
    the early report lost the flag and each counted against the number: the third marked it."""
    for n in range(3):
        sid = f"SM-EARLY-{n}"
        applied = record_delivery_reports(portfolio, provider="twilio", reports=[_callback(sid, "30007")])
        assert applied.unmatched == [sid]
        with portfolio.connect() as c:
            kept = c.execute(select(early_report.c.sender_fault).where(early_report.c.provider_id == sid))
            assert kept.scalar_one() is True
        message_id = _sent(portfolio, "twilio", None, status="scheduled")
        _record_send(portfolio, message_id, sid, T0 + timedelta(seconds=n))
        assert _failed(portfolio, message_id) == ("failed", "30007")
    assert _number(portfolio) == (True, 0)


# -- what operations see -------------------------------------------------------------------------------


def test_the_cycle_report_names_delivery_failures_by_their_code(portfolio: Engine) -> None:
    """A cycle whose messages a filtered template failed: its report's messages-by-status table
    (the artifact and `arrears report` alike) says failed, 30007, so that operations see a
    template or sender every carrier refuses, not a count of failures only."""
    from tasks.report import message_rows

    cycle_id = _cycle(portfolio, T0, report=None)
    _sent(portfolio, "twilio", "SM-CYCLE")  # decided in the cycle at T0
    record_delivery_reports(portfolio, provider="twilio", reports=[_callback("SM-CYCLE", "30007")])
    with portfolio.connect() as c:
        rows = message_rows(portfolio_report(c, cycle_id=cycle_id))
    assert {"status": "failed", "reason": "30007", "count": 1} in rows


def test_the_callbacks_list_leaves_out_early_reports_applied_to_their_message(portfolio: Engine) -> None:
    """Two delivery reports came before any send: one whose send was recorded a second later (and
    was applied to it), one whose send never came. `arrears callbacks list` and the cycle's count
    show the second only; the audit trail keeps both reports as they were written. Before, every
    report that merely came early stayed listed as concerning no message of ours."""
    for sid in ("SM-APPLIED", "SM-NOT-OURS"):
        assert record_delivery_reports(
            portfolio, provider="twilio", reports=[_callback(sid, "30003")]
        ).unmatched == [sid]
    with portfolio.connect() as c:
        assert len(unattributed_callbacks(c, kinds=(UNMATCHED_REPORT,))) == 2
    message_id = _sent(portfolio, "twilio", None, status="scheduled")
    _record_send(portfolio, message_id, "SM-APPLIED", T0 + timedelta(seconds=1))
    assert _failed(portfolio, message_id) == ("failed", "30003")

    with portfolio.connect() as c:
        listed = unattributed_callbacks(c)
        counted = counts_for_report(c, max(k.at for k in listed) + timedelta(minutes=1))
        written = c.execute(select(audit.c.data).where(audit.c.kind == UNMATCHED_REPORT)).scalars().all()
    assert [k.data["provider_id"] for k in listed] == ["SM-NOT-OURS"]
    assert counted == {UNMATCHED_REPORT: 1}
    assert sorted(d["provider_id"] for d in written) == ["SM-APPLIED", "SM-NOT-OURS"]  # append-only

    url = portfolio.url.render_as_string(hide_password=False)
    from deployments.cli import app

    shown = CliRunner().invoke(app, ["callbacks", "list", "--database", url, "--json"])
    assert shown.exit_code == 0, shown.output
    assert [k["data"]["provider_id"] for k in json.loads(shown.output)] == ["SM-NOT-OURS"]


def test_a_report_given_up_before_its_send_came_stays_listed(portfolio: Engine) -> None:
    """A report that waited a week in vain is given up (`expired_report`); a send with its id
    recorded after that is not its message's outcome (nothing was applied): the report is still
    listed, not taken for applied because a message now has its id."""
    applied = record_delivery_reports(portfolio, provider="twilio", reports=[_callback("SM-LATE", "30003")])
    assert applied.unmatched == ["SM-LATE"]
    with portfolio.connect() as c:
        reported_at = c.execute(select(early_report.c.at)).scalar_one()
    with portfolio.begin() as c:
        assert expire_early_reports(c, as_of=reported_at + timedelta(days=8)) == 1
    message_id = _sent(portfolio, "twilio", None, status="scheduled")
    _record_send(portfolio, message_id, "SM-LATE", reported_at + timedelta(days=9))
    assert _failed(portfolio, message_id) == ("sent", None)
    with portfolio.connect() as c:
        kinds = [k.kind for k in unattributed_callbacks(c)]
    assert sorted(kinds) == ["expired_report", UNMATCHED_REPORT]
