"""SMS callbacks against the vendors' own rules: Twilio's signature as its SDK computes it, each
Twilio error code's meaning for the number, Aliyun's SmsReport fields, and early delivery reports
that wait for their send a week at most, then are kept for operators."""

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from arrears.importing import Kind, open_source
from arrears.models import AuditEvent, ContactPoint, EarlyReport, Message
from arrears.storage import outbox
from arrears.storage.delivery_reports import (
    EARLY_REPORT_KEPT,
    EXPIRED_REPORT,
    StatusReport,
    apply_delivery_reports,
    expire_early_reports,
)
from arrears.storage.importer import run_import
from arrears.storage.outbox import Outcome
from arrears.storage.unattributed import counts_for_report, unattributed_callbacks
from arrears.vocabulary import MessageStatus
from integrations.callbacks import UnreadableItem
from integrations.errors import UnverifiedCallback
from integrations.sms import DeliveryReport, SmsRequest
from integrations.sms._signing import twilio_signature, twilio_url_variants
from integrations.sms.aliyun import AliyunSettings, AliyunSmsProvider
from integrations.sms.twilio import TwilioSettings, TwilioSmsProvider
from tests.factories import account_record, unique_id, write_csv

audit = AuditEvent.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
early_report = EarlyReport.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]

TOKEN = "twilio-auth-token"
STATUS_URL = "https://hooks.example/sms/twilio/status"
PHONE = "+12133734253"  # account_record's default phone, in E.164
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _twilio(transport: httpx.BaseTransport | None = None) -> TwilioSmsProvider:
    settings = TwilioSettings(
        base_url="https://api.example",
        account_sid="AC1",
        auth_token=TOKEN,
        from_number="+15005550006",
        reconcile_unknown=False,
        retry_attempts=1,
    )
    return TwilioSmsProvider(settings, transport=transport)


class _QueryDict(dict[str, list[str]]):
    """A form as Django's `QueryDict` holds it, every value of a repeated name kept: what
    `RequestValidator` reads repeated names from (`getlist`)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in pairs:
            self.setdefault(name, []).append(value)

    def getlist(self, name: str) -> list[str]:
        return self[name]


# -- Twilio's signature, as its SDK computes and checks it ------------------------------------------

_NAMES = st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "MediaUrl0", "Tag", "tag", "Tag2"])
_VALUES = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_FORMS = st.lists(st.tuples(_NAMES | st.text(max_size=6), _VALUES), max_size=8).flatmap(
    lambda pairs: st.permutations(pairs + pairs[:2])  # some pairs twice, in any order
)


@settings(max_examples=300, deadline=None, database=None)
@given(_FORMS)
@example([("MessageSid", "SM1"), ("MessageStatus", "delivered"), ("Tag", "a"), ("Tag", "a")])
@example([("Tag", "b"), ("MessageSid", "SM1"), ("Tag", "a"), ("MessageStatus", "sent"), ("Tag", "b")])
def test_twilio_signature_agrees_with_the_sdk_over_repeated_names_and_any_order(
    pairs: list[tuple[str, str]],
) -> None:
    """A form with names repeated, a name and value given twice, in any order: what Twilio's SDK
    signs verifies with us, and what we sign verifies under the SDK's RequestValidator. Before, a
    name and value given twice were signed twice by us and once by the SDK: a genuine callback
    was refused 403 (and ours failed the SDK's check)."""
    form = _QueryDict(pairs)
    validator = RequestValidator(TOKEN)
    sdk_signed = validator.compute_signature(STATUS_URL, form)
    assert twilio_signature(TOKEN, STATUS_URL, pairs) == sdk_signed
    assert validator.validate(STATUS_URL, form, twilio_signature(TOKEN, STATUS_URL, pairs))
    body = urlencode(pairs).encode()
    try:
        _twilio()._verified_form({"X-Twilio-Signature": sdk_signed}, body, STATUS_URL)
    except UnverifiedCallback as refused:
        pytest.fail(f"the SDK's signature was refused: {refused}")


def test_a_status_callback_with_a_pair_given_twice_verifies_and_is_read() -> None:
    """A status callback whose form repeats one name and value, signed by Twilio's SDK, is read."""
    pairs = [("MessageSid", "SM1"), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")] * 2
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STATUS_URL, _QueryDict(pairs))}
    (report,) = _twilio().parse_callback(headers, urlencode(pairs).encode(), url=STATUS_URL)
    assert isinstance(report, DeliveryReport)
    assert (report.provider_id, report.status, report.error_code) == ("SM1", "undelivered", "30003")


@pytest.mark.parametrize(
    ("signed", "seen"),
    [
        ("https://hooks.example/sms/twilio/status", "https://hooks.example:8443/sms/twilio/status"),
        ("https://hooks.example:8443/sms/twilio/status", "https://hooks.example:8443/sms/twilio/status"),
        ("http://Hooks.Example/sms/twilio/status", "http://Hooks.Example:80/sms/twilio/status"),
        ("https://hooks.example:443/sms/twilio/status?a=1", "https://hooks.example/sms/twilio/status?a=1"),
    ],
)
def test_the_urls_a_signature_verifies_over_are_the_sdks(signed: str, seen: str) -> None:
    """A callback seen at `seen` verifies exactly when the SDK's `validate` says so, for a
    signature over `signed`: with its port or without it, whatever the port (the SDK drops any
    port, not only the default one), the host's case kept. Before, a URL on another port than
    the scheme's default was checked only as it was seen."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    signature = RequestValidator(TOKEN).compute_signature(signed, form)
    assert RequestValidator(TOKEN).validate(seen, form, signature)
    assert signed in twilio_url_variants(seen)
    (report,) = _twilio().parse_callback(
        {"X-Twilio-Signature": signature}, urlencode(form).encode(), url=seen
    )
    assert isinstance(report, DeliveryReport) and report.status == "delivered"


def test_a_signature_over_another_host_or_path_is_still_refused() -> None:
    """Trying the URL with and without its port widens nothing else: another host or path is 403."""
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    for signed in ("https://other.example/sms/twilio/status", "https://hooks.example/sms/twilio/inbound"):
        headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(signed, form)}
        with pytest.raises(UnverifiedCallback):
            _twilio().parse_callback(
                headers, urlencode(form).encode(), url="https://hooks.example:8443/sms/twilio/status"
            )


# -- what each Twilio error code says of the number ----------------------------------------------


@pytest.mark.parametrize(
    ("code", "cannot_text", "opted_out"),
    [
        ("30003", False, False),  # handset off or out of coverage: transient (providers.md)
        ("30005", True, False),  # unknown handset
        ("30006", True, False),  # landline or unreachable carrier: do not retry
        ("30007", False, False),  # carrier filtering: the message, not the number
        ("21610", False, True),  # the recipient texted STOP to our sender
        ("", False, False),
    ],
)
def test_each_twilio_error_code_says_what_it_says_of_the_number(
    code: str, cannot_text: bool, opted_out: bool
) -> None:
    """In a status callback and in a status lookup alike: 30005 and 30006 say the number cannot
    take texts (marked invalid at once), 21610 that its owner opted out; 30003, a handset off or
    out of coverage, says neither: one failed delivery among the policy's run."""
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": code}
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STATUS_URL, form)}
    (report,) = _twilio().parse_callback(headers, urlencode(form).encode(), url=STATUS_URL)
    assert isinstance(report, DeliveryReport)
    assert (report.number_cannot_text, report.recipient_opted_out) == (cannot_text, opted_out)

    found = _twilio(_message_resource("SM1", code or None)).status(_request(), "SM1")
    assert found is not None and found.error_code == (code or None)
    assert (found.number_cannot_text, found.recipient_opted_out) == (cannot_text, opted_out)


def _request() -> SmsRequest:
    return SmsRequest(unique_id("key"), PHONE, "reminder", {}, "Your payment is past due.")


def _message_resource(sid: str, code: str | None) -> httpx.MockTransport:
    """Twilio's answer to a message lookup (the sandbox fails deliveries with 30003 only)."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith(f"/Messages/{sid}.json")
        payload = {
            "sid": sid,
            "status": "undelivered" if code else "delivered",
            "error_code": int(code) if code else None,
            "date_created": "Tue, 01 Dec 2026 09:00:00 +0000",
            "to": PHONE,
        }
        return httpx.Response(200, json=payload)

    return httpx.MockTransport(answer)


@pytest.fixture
def db(sqlite_url: str, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A migrated SQLite database the tasks use too, holding account A-1 and its number."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", sqlite_url)
    from arrears.settings import get_settings

    get_settings.cache_clear()
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", [account_record(account_id="A-1")])
    assert run_import(sqlite_engine, open_source(path, Kind.ACCOUNTS)).rejected == 0
    return sqlite_engine


def _sent(engine: Engine, provider: str, provider_id: str | None, status: str = "sent") -> int:
    """Our outbox row for a message to PHONE, as dispatch records it."""
    with engine.begin() as c:
        return int(
            c.execute(
                insert(message)
                .values(
                    idempotency_key=unique_id("key"),
                    account_id="A-1",
                    channel="sms",
                    address=PHONE,
                    template="reminder",
                    params={},
                    body="Your payment is past due.",
                    stage="reminder",
                    episode=1,
                    not_before=T0,
                    status=status,
                    provider=provider if provider_id else None,
                    provider_id=provider_id,
                    attempts=1,
                    created_at=T0,
                    sent_at=T0 if provider_id else None,
                )
                .returning(message.c.id)
            ).scalar_one()
        )


def _number(engine: Engine) -> Any:
    with engine.connect() as c:
        return c.execute(select(contact).where(contact.c.address == PHONE)).one()


@pytest.mark.parametrize(
    ("code", "valid", "failures", "opted_out"),
    [("30006", False, 1, False), ("21610", True, 0, True), ("30003", True, 1, False)],
)
def test_a_status_lookup_says_of_the_number_what_its_callback_would_have(
    db: Engine, code: str, valid: bool, failures: int, opted_out: bool
) -> None:
    """A receipt that never came, looked up (the outbox sweep): a landline (30006) is marked invalid
    at once, an opt-out at the carrier (21610) is recorded as a STOP and counts no failure, a handset
    off (30003) counts one failure and leaves the number usable. Before, the lookup's report carried
    none of it: the landline waited for two more failures, and the opt-out counted as a failed
    delivery and was never recorded."""
    from tasks.inbound import record_delivery_reports
    from tasks.receipts import looked_up_report

    message_id = _sent(db, "twilio", "SM7")
    found = _twilio(_message_resource("SM7", code)).status(_request(), "SM7")
    assert found is not None
    applied = record_delivery_reports(db, provider="twilio", reports=[looked_up_report(found, PHONE, T0)])
    assert applied.changed == [message_id]
    number = _number(db)
    assert (number.valid, number.failures, number.opted_out_at is not None) == (valid, failures, opted_out)


# -- Aliyun's SmsReport -------------------------------------------------------------------------------


def _aliyun() -> AliyunSmsProvider:
    settings = AliyunSettings(
        base_url="https://dysmsapi.example",
        access_key_id="LTAI1",
        access_key_secret="secret",
        sign_name="arrears",
        callback_token="hook-token",
    )
    return AliyunSmsProvider(settings)


def _sms_report(**fields: Any) -> list[Any]:
    item = {
        "phone_number": "13912345678",
        "send_time": "2026-12-01 17:00:00",
        "report_time": "2026-12-01 17:00:05",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功",
        "sms_size": "1",
        "biz_id": "900000000000000001^0",
        "out_id": "k" + "a" * 31,
    } | fields
    body = json.dumps([item], ensure_ascii=False).encode()
    return _aliyun().parse_callback({}, body, url="https://hooks.example/sms/aliyun/status?token=hook-token")


@pytest.mark.parametrize("success", [True, "true", "TRUE", " True", "1", 1])
def test_an_aliyun_report_of_success_in_any_of_its_spellings_is_delivered(success: Any) -> None:
    """`success` as a JSON boolean, as text in any case, or as 1: delivered, with `DELIVERED` as the
    vendor's word and no error code; its Beijing report time read as UTC+8. Before, "TRUE" and "1"
    read as failures, each counted against a working number."""
    (report,) = _sms_report(success=success)
    assert isinstance(report, DeliveryReport)
    assert (report.status, report.error_code, report.vendor_status) == ("delivered", None, "DELIVERED")
    assert report.at == datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("success", [False, "false", "FALSE", "0", 0])
def test_an_aliyun_report_of_failure_keeps_the_carriers_code(success: Any) -> None:
    """`success` false in any spelling: undelivered, with the carrier's err_code."""
    (report,) = _sms_report(success=success, err_code="MOBILE_NOT_ON_SERVICE", err_msg="用户停机")
    assert isinstance(report, DeliveryReport)
    assert (report.status, report.error_code) == ("undelivered", "MOBILE_NOT_ON_SERVICE")


@pytest.mark.parametrize(
    "fields",
    [{"success": None}, {"success": "yes"}, {"success": 2}, {"success": 1.5}, {"phone_number": None}],
)
def test_an_aliyun_report_that_says_no_outcome_or_number_is_kept_unread(fields: dict[str, Any]) -> None:
    """A `success` that is neither true nor false, or no number: the item comes back unread, for
    operators. Before, it read as a failed delivery (of a number "None", for a missing one)."""
    (item,) = _sms_report(**fields)
    assert isinstance(item, UnreadableItem)
    assert ("phone_number" if "phone_number" in fields else "success") in item.reason


# -- early reports: matched when the send comes, given up a week on ----------------------------------


def _early(engine: Engine, provider_id: str, at: datetime, status: MessageStatus) -> None:
    with engine.begin() as c:
        applied = apply_delivery_reports(
            c,
            provider="twilio",
            reports=[
                StatusReport(provider_id, status, at, "30003" if status is MessageStatus.FAILED else None)
            ],
        )
    assert applied.unmatched == [provider_id]


def _expire(engine: Engine, as_of: datetime) -> int:
    with engine.begin() as c:
        return expire_early_reports(c, as_of=as_of)


def _early_ids(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return sorted(c.execute(select(early_report.c.provider_id)).scalars())


def test_an_early_report_waits_a_week_for_its_send_then_is_kept_for_operators(db: Engine) -> None:
    """A report about no recorded send waits: within the week, the send recorded applies it. One
    whose send never comes is given up after EARLY_REPORT_KEPT: deleted, and kept as an
    `expired_report` with its reason, listed for operators and counted in that day's report. A
    send recorded after that finds nothing to apply. Before, every early report stayed forever."""
    assert EARLY_REPORT_KEPT.days == 7
    _early(db, "SM-LATE", T0, MessageStatus.FAILED)
    _early(db, "SM-NEVER", T0 + timedelta(minutes=1), MessageStatus.DELIVERED)

    assert _expire(db, T0 + EARLY_REPORT_KEPT) == 0  # a week to the second: still waited for
    assert _early_ids(db) == ["SM-LATE", "SM-NEVER"]
    late = _sent(db, "twilio", None, status="scheduled")
    recorded = Outcome(late, "A-1", MessageStatus.SENT, provider="twilio", provider_id="SM-LATE", sent_at=T0)
    with db.begin() as c:
        outbox.record_outcomes(c, outcomes=[recorded], at=T0 + timedelta(days=6), cycle_id=None)
    with db.connect() as c:
        assert c.execute(select(message.c.status).where(message.c.id == late)).scalar_one() == "failed"
    assert _early_ids(db) == ["SM-NEVER"]

    as_of = T0 + EARLY_REPORT_KEPT + timedelta(minutes=2)
    assert _expire(db, as_of) == 1
    assert _expire(db, as_of) == 0  # given up once
    assert _early_ids(db) == []
    with db.connect() as c:
        (kept,) = unattributed_callbacks(c, kinds=(EXPIRED_REPORT,))
        assert counts_for_report(c, as_of)[EXPIRED_REPORT] == 1
    assert (kept.at, kept.actor) == (as_of, "twilio")
    assert kept.data["provider_id"] == "SM-NEVER" and kept.data["status"] == "delivered"
    assert "within 7 days" in kept.data["reason"] and "given up after 7 days" in kept.detail

    never = _sent(db, "twilio", None, status="scheduled")
    recorded = Outcome(
        never, "A-1", MessageStatus.SENT, provider="twilio", provider_id="SM-NEVER", sent_at=T0
    )
    with db.begin() as c:
        outbox.record_outcomes(c, outcomes=[recorded], at=as_of, cycle_id=None)
    with db.connect() as c:
        assert c.execute(select(message.c.status).where(message.c.id == never)).scalar_one() == "sent"

    url = db.url.render_as_string(hide_password=False)
    from deployments.cli import app

    listed = CliRunner().invoke(app, ["callbacks", "list", "--database", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [k["kind"] for k in json.loads(listed.output)].count(EXPIRED_REPORT) == 1


def test_expiring_takes_the_oldest_first_and_at_most_a_bounded_number(db: Engine) -> None:
    """A table grown for months is emptied a bounded number a call, oldest first."""
    for n in range(5):
        _early(db, f"SM-{n}", T0 + timedelta(minutes=n), MessageStatus.DELIVERED)
    with db.begin() as c:
        assert expire_early_reports(c, as_of=T0 + timedelta(days=30), limit=2) == 2
    assert _early_ids(db) == ["SM-2", "SM-3", "SM-4"]


@pytest.mark.usefixtures("prefect_harness")
def test_every_dispatch_run_gives_up_early_reports(db: Engine, sms_sandbox: Any) -> None:
    """`dispatch_outbox` (the outbox sweep) gives up a week-old early report, and counts it, even
    when no message awaits a receipt."""
    from flows.daily_cycle import dispatch_outbox

    _early(db, "SM-OLD", T0, MessageStatus.DELIVERED)
    counts = dispatch_outbox(as_of=(T0 + timedelta(days=8)).isoformat())
    assert counts["early_reports_expired"] == 1
    assert _early_ids(db) == []


def test_the_callbacks_list_help_names_every_kind() -> None:
    """`arrears callbacks list --help` names every kind `--kind` takes."""
    from arrears.storage.unattributed import KINDS
    from deployments.cli import app

    shown = CliRunner().invoke(app, ["callbacks", "list", "--help"], env={"COLUMNS": "300"})
    assert all(kind in shown.output for kind in KINDS), shown.output
