"""The webhook server over HTTP: real databases (SQLite and PostgreSQL), providers built against
the real SMS sandbox, callbacks the sandbox says its vendors would send (Aliyun's unsigned, to a
URL with our token), FastAPI's TestClient (and once a real uvicorn), and Prefect flows where a
callback leads to one. The server only routes: every check here is the provider's."""

import base64
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from arrears.importing import Kind, open_source
from arrears.models import Account, AccountHold, AuditEvent, ContactPoint, Message, Referral
from arrears.settings import get_settings
from arrears.storage.importer import run_import
from arrears.storage.tables import early_report
from deployments.webhooks import LifecycleRunner, WebhookServer, create_app, run_lifecycle_deployment
from integrations.court._signing import signature_header
from integrations.providers import build_provider
from integrations.sms import SmsProvider, SmsRequest
from tests.factories import account_record, unique_id, write_csv

account = Account.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
referral = Referral.__table__  # type: ignore[attr-defined]

COURT_SECRET = "court-callback-secret"
US_PHONE = "+12133734253"  # account_record's default phone, in E.164
CN_PHONE = "+8613912345678"
# 16:30 UTC on 1 December is 00:30 in Shanghai: a CN reminder waits for 08:00 (00:00 UTC on the 2nd).
CN_NIGHT = "2026-12-01T16:30:00Z"
CN_MORNING = "2026-12-02T00:00:00Z"


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The test database, also where flows started by a callback read and write."""
    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@pytest.fixture
def court() -> Iterator[Any]:
    """An ECF court provider: only its callback verification is used, so its base URL is never called."""
    credentials = {"filer_id": "F1", "api_key": "k", "callback_secret": COURT_SECRET}
    with build_provider("court", "ecf", "http://127.0.0.1:9", credentials) as provider:
        yield provider


@pytest.fixture
def lifecycle_calls() -> Iterator[tuple[LifecycleRunner, list[tuple[str, str]]]]:
    """A lifecycle runner that records (account, reason) instead of starting a flow."""
    calls: list[tuple[str, str]] = []
    runner = LifecycleRunner(run=lambda account_id, reason: calls.append((account_id, reason)))
    yield runner, calls
    runner.close()


@pytest.fixture
def client(
    db: Engine, providers: dict[str, SmsProvider], court: Any, lifecycle_calls: Any
) -> Iterator[TestClient]:
    app = create_app(
        engine=db, providers={"sms": providers, "court": {"ecf": court}}, lifecycle=lifecycle_calls[0]
    )
    with TestClient(app) as test_client:
        yield test_client


def _import(engine: Engine, tmp_path: Path, *records: dict[str, str]) -> None:
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", records)
    summary = run_import(engine, open_source(path, Kind.ACCOUNTS))
    assert summary.rejected == 0, summary.first_rejections


def _cn(**kw: str) -> dict[str, str]:
    return account_record(
        **(
            {
                "borrower_name": "王芳",
                "phone": "13912345678",
                "timezone": "Asia/Shanghai",
                "jurisdiction": "CN",
                "currency": "CNY",
                "balance": "60000.00",
                "installment_amount": "3000.00",
                "past_due_amount": "3000.00",
                "oldest_due_date": "2026-11-26",
            }
            | kw
        )
    )


def _sent(engine: Engine, provider: SmsProvider, account_id: str, to: str) -> int:
    """Send one message through `provider` (to the sandbox) and store it as dispatch would: sent."""
    key = unique_id("key")
    result = provider.send(SmsRequest(key, to, "reminder", {"name": "Dana"}, "Your payment is past due."))
    now = datetime.now(UTC)
    with engine.begin() as c:
        return int(
            c.execute(
                insert(message)
                .values(
                    idempotency_key=key,
                    account_id=account_id,
                    channel="sms",
                    address=to,
                    template="reminder",
                    params={"name": "Dana"},
                    body="Your payment is past due.",
                    stage="reminder",
                    episode=1,
                    not_before=now,
                    status="sent",
                    provider=provider.info.name,
                    provider_id=result.provider_id,
                    attempts=1,
                    created_at=now,
                    sent_at=now,
                )
                .returning(message.c.id)
            ).scalar_one()
        )


def _message(engine: Engine, message_id: int) -> Any:
    with engine.connect() as c:
        return c.execute(select(message).where(message.c.id == message_id)).one()


def _events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as c:
        return c.execute(select(audit).where(audit.c.kind == kind).order_by(audit.c.id)).all()


def _twilio_signature(token: str, url: str, form: dict[str, str]) -> str:
    """Twilio's scheme, written out here so the test does not trust the code under test."""
    data = url + "".join(k + v for k, v in sorted(form.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _a_reminder_waiting_for_the_morning(db: Engine, tmp_path: Path) -> Any:
    """A Chinese borrower's reminder, decided at night in Shanghai: scheduled for the morning."""
    from flows.daily_cycle import daily_cycle

    _import(db, tmp_path, _cn(account_id="A-CN"))
    daily_cycle(as_of=CN_NIGHT)
    with db.connect() as c:
        (waiting,) = c.execute(select(message)).all()
    assert waiting.status == "scheduled"
    return waiting


def _twilio_post(
    client: Any, path: str, form: dict[str, str], token: str, *, base: str = "http://testserver"
) -> Any:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": _twilio_signature(token, base + path, form),
    }
    return client.post(path, content=urlencode(form).encode(), headers=headers)


def _twilio_report(sandbox: Any, sid: str) -> dict[str, str]:
    """The status-callback form the sandbox says Twilio would post now for message `sid`."""
    reports = sandbox.admin.get("/_sandbox/reports/twilio").json()
    return next(r for r in reports if r["MessageSid"] == sid)


def _aliyun_post(client: Any, path: str, payload: Any, token: str | None) -> Any:
    """POST as Aliyun pushes: a JSON array, unsigned; our token (if any) in the URL's query string."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    query = f"?{urlencode({'token': token})}" if token is not None else ""
    return client.post(path + query, content=body, headers={"Content-Type": "application/json"})


def _sms_up(content: str, send_time: str, sequence_id: int) -> dict[str, Any]:
    """One SmsUp item as Aliyun pushes it: the mainland number without +86, Beijing time."""
    return {
        "phone_number": "13912345678",
        "content": content,
        "send_time": send_time,
        "sequence_id": sequence_id,
    }


def _court_post(client: Any, payload: Any, *, secret: str = COURT_SECRET, at: float | None = None) -> Any:
    body = json.dumps(payload).encode()
    t = int(time.time() if at is None else at)
    headers = {"Content-Type": "application/json", "X-Arrears-Signature": signature_header(secret, t, body)}
    return client.post("/court/ecf/status", content=body, headers=headers)


def _provider_id(engine: Engine, message_id: int) -> str:
    return str(_message(engine, message_id).provider_id)


# -- delivery receipts ------------------------------------------------------------------------------


def test_forged_twilio_signature_is_refused_and_changes_nothing(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A receipt signed with the wrong token, or not signed, is answered 403 and the message stays sent."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    message_id = _sent(db, providers["twilio"], "A-1", US_PHONE)
    form = _twilio_report(sms_sandbox, _provider_id(db, message_id))
    assert form["MessageStatus"] == "delivered"

    assert _twilio_post(client, "/sms/twilio/status", form, "forged-token").status_code == 403
    unsigned = client.post(
        "/sms/twilio/status",
        content=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 403
    assert _message(db, message_id).status == "sent"
    assert _events(db, "message") == []


def test_valid_twilio_receipt_delivers_the_message_once(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A signed `delivered` receipt marks the message delivered; the same receipt again changes nothing."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    message_id = _sent(db, providers["twilio"], "A-1", US_PHONE)
    form = _twilio_report(sms_sandbox, _provider_id(db, message_id))
    token = sms_sandbox.credentials["auth_token"]

    first = _twilio_post(client, "/sms/twilio/status", form, token)
    assert first.status_code == 200
    assert _message(db, message_id).status == "delivered"
    events = _events(db, "message")
    assert len(events) == 1

    assert _twilio_post(client, "/sms/twilio/status", form, token).status_code == 200
    assert _message(db, message_id).status == "delivered"
    assert _events(db, "message") == events


def test_a_twilio_callback_whose_id_holds_a_nul_is_acknowledged_and_kept_for_operators(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A signed status callback whose MessageSid carries %00 (found by the property test below, on
    PostgreSQL, whose text refuses NUL: a database error, answered 500, pushed again and again):
    acknowledged, and kept as a report of no message of ours, the NUL made U+FFFD. The real
    report of the message, after it, still delivers it."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    message_id = _sent(db, providers["twilio"], "A-1", US_PHONE)
    form = _twilio_report(sms_sandbox, _provider_id(db, message_id))
    token = sms_sandbox.credentials["auth_token"]
    broken = form | {"MessageSid": form["MessageSid"] + "\x00", "SmsSid": form["MessageSid"] + "\x00"}

    assert _twilio_post(client, "/sms/twilio/status", broken, token).status_code == 200
    (kept,) = _events(db, "unmatched_report")
    assert kept.data["provider_id"].startswith(form["MessageSid"] + "\ufffd")
    assert _message(db, message_id).status != "delivered"
    assert _twilio_post(client, "/sms/twilio/status", form, token).status_code == 200
    assert _message(db, message_id).status == "delivered"


def test_a_landline_is_marked_unreachable_at_its_first_undelivered_receipt(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """Twilio's `undelivered` with 30006 (a landline or an unreachable carrier: do not retry) is
    about the number, not the message: it is marked invalid at once. 30003 (the handset is off)
    is one failure of the three the policy allows."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    token = sms_sandbox.credentials["auth_token"]

    def undelivered(code: str) -> int:
        form = _twilio_report(sms_sandbox, _provider_id(db, _sent(db, providers["twilio"], "A-1", US_PHONE)))
        form |= {"MessageStatus": "undelivered", "SmsStatus": "undelivered", "ErrorCode": code}
        return int(_twilio_post(client, "/sms/twilio/status", form, token).status_code)

    def valid() -> bool:
        with db.connect() as c:
            return bool(c.execute(select(contact.c.valid).where(contact.c.address == US_PHONE)).scalar_one())

    assert undelivered("30003") == 200 and valid()
    assert undelivered("30006") == 200 and not valid()
    (marked,) = _events(db, "contact")
    assert "its delivery failed for a reason about the number (30006)" in marked.detail


def test_late_sent_receipt_does_not_regress_a_delivered_message(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A `sent` receipt arriving after `delivered` leaves the message delivered."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    sms_sandbox.set_faults(delivery_ms=600_000)  # the handset has not answered yet: status `sent`
    message_id = _sent(db, providers["twilio"], "A-1", US_PHONE)
    sid = _provider_id(db, message_id)
    sent_form = _twilio_report(sms_sandbox, sid)
    sms_sandbox.set_faults()
    delivered_form = _twilio_report(sms_sandbox, sid)
    assert (sent_form["MessageStatus"], delivered_form["MessageStatus"]) == ("sent", "delivered")
    token = sms_sandbox.credentials["auth_token"]

    assert _twilio_post(client, "/sms/twilio/status", delivered_form, token).status_code == 200
    assert _twilio_post(client, "/sms/twilio/status", sent_form, token).status_code == 200
    assert _message(db, message_id).status == "delivered"
    assert len(_events(db, "message")) == 1


def test_aliyun_reports_with_our_token_are_applied_and_acknowledged(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """An unsigned SmsReport array posted to our token URL delivers the message; answer {"code": 0}."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    message_id = _sent(db, providers["sandbox"], "A-CN", CN_PHONE)
    reports = sms_sandbox.admin.get("/_sandbox/reports/aliyun").json()
    assert len(reports) == 1

    response = _aliyun_post(client, "/sms/sandbox/status", reports, sms_sandbox.credentials["callback_token"])
    assert (response.status_code, response.json()) == (200, {"code": 0, "msg": "成功"})
    assert _message(db, message_id).status == "delivered"


def test_aliyun_report_for_an_unknown_message_is_acknowledged_and_kept_for_operators(
    client: TestClient, db: Engine, sms_sandbox: Any
) -> None:
    """A report under one of our OutIds naming no message of ours (its send not recorded yet) is
    answered 200 {"code": 0} and kept once in the audit trail and as an early report. Reports of
    the messages another system sends through the same Aliyun account (a lender's passcodes: an
    OutId of theirs, or none) are acknowledged and not kept: they would fill both for ever."""
    report = {
        "phone_number": "13912345678",
        "send_time": "2026-12-01 09:00:00",
        "report_time": "2026-12-01 09:00:05",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "成功",
        "sms_size": "1",
        "biz_id": "1",
        "out_id": "b" + "0" * 31,
    }
    passcodes = [
        report | {"out_id": "otp-20261201-000017", "biz_id": "2"},
        report | {"out_id": "", "biz_id": "3"},
    ]
    token = sms_sandbox.credentials["callback_token"]
    for _ in range(2):
        response = _aliyun_post(client, "/sms/sandbox/status", [report, *passcodes], token)
        assert (response.status_code, response.json()["code"]) == (200, 0)
    (kept,) = _events(db, "unmatched_report")
    assert kept.account_id is None and kept.data["provider_id"].startswith("b" + "0" * 31 + ":")
    with db.connect() as c:
        assert c.execute(select(func.count()).select_from(early_report)).scalar() == 1


def _suspended_line_report(db: Engine, providers: Any, success: bool) -> dict[str, Any]:
    """A message sent to CN_PHONE, and Aliyun's SmsReport of it: delivered, or 用户停机."""
    out_id = _provider_id(db, _sent(db, providers["sandbox"], "A-CN", CN_PHONE)).split(":")[0]
    beijing = f"{datetime.now(UTC) + timedelta(hours=8):%Y-%m-%d %H:%M:%S}"
    return {
        "phone_number": "13912345678",
        "send_time": beijing,
        "report_time": beijing,
        "success": success,
        "err_code": "DELIVERED" if success else "MOBILE_NOT_ON_SERVICE",
        "err_msg": "成功" if success else "用户停机",
        "biz_id": "1^0",
        "out_id": out_id,
    }


def _cn_number(db: Engine) -> Any:
    with db.connect() as c:
        return c.execute(select(contact).where(contact.c.address == CN_PHONE)).one()


@pytest.mark.usefixtures("prefect_harness")
def test_a_number_whose_deliveries_keep_failing_is_marked_unreachable_and_skip_traced(
    client: TestClient,
    db: Engine,
    providers: Any,
    sms_sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Aliyun reports 用户停机 (the subscriber's line is suspended) for a number's messages: after
    the policy's three failures in a row (a delivery between them starts the count again) the
    number is marked invalid, audited with the vendor's reason and the number masked; nothing more
    is sent to it, and the next cycle puts the borrower, who has no other, in the unreachable
    segment and skip-traces it. `arrears show` lists both numbers, masked, and why one is not used."""
    from flows.daily_cycle import daily_cycle

    _import(db, tmp_path, _cn(account_id="A-CN"))
    token = sms_sandbox.credentials["callback_token"]

    def report(success: bool) -> dict[str, Any]:
        return _suspended_line_report(db, providers, success)

    for success in (False, True, False, False):
        assert _aliyun_post(client, "/sms/sandbox/status", [report(success)], token).status_code == 200
        assert _cn_number(db).valid
    assert _aliyun_post(client, "/sms/sandbox/status", [report(False)], token).status_code == 200
    assert not _cn_number(db).valid
    (marked,) = _events(db, "contact")
    assert marked.account_id == "A-CN" and "marked unreachable: its last 3 deliveries failed" in marked.detail
    assert "MOBILE_NOT_ON_SERVICE" in marked.detail and "13912345678" not in json.dumps(
        [marked.detail, marked.data]
    )
    daily_cycle(as_of=(datetime.now(UTC) + timedelta(minutes=1)).isoformat())
    with db.connect() as c:
        assert (
            c.execute(select(account.c.segment).where(account.c.account_id == "A-CN")).scalar()
            == "unreachable"
        )
    # What an agent reads: the number, masked, and why it is not used.
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import console

    url = db.url.render_as_string(hide_password=False)
    shown = json.loads(CliRunner().invoke(app, ["show", "A-CN", "--json", "--database", url]).output)
    number, *traced = shown["numbers"]
    assert (number["valid"], number["failures"], number["primary"]) == (False, 3, True)
    assert "13912345678" not in number["number"] and number["number"].endswith("5678")
    # The cycle's skip trace (the sandbox bureau) found another number: not yet verified.
    assert [(n["source"], n["valid"], n["verified"]) for n in traced] == [("bureau", True, False)]
    monkeypatch.setattr(console, "width", 200)
    table = CliRunner().invoke(app, ["show", "A-CN", "--database", url]).output
    assert "invalid" in table and "13912345678" not in table


def test_a_number_marked_unreachable_is_usable_again_once_the_borrower_texts_from_it(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """Three 用户停机 reports mark the number unreachable; the borrower pays the phone bill and texts
    from it (an SmsUp as Aliyun pushes it): the number is usable again, its failures start over,
    the account's timeline says why, and `arrears show` lists it usable. Told again, the text
    changes nothing more. A number its holder disowned (打错了) stays invalid whatever is texted
    from it afterwards."""
    from typer.testing import CliRunner

    from deployments.cli import app

    _import(db, tmp_path, _cn(account_id="A-CN"))
    token = sms_sandbox.credentials["callback_token"]
    reports = [_suspended_line_report(db, providers, False) for _ in range(3)]
    assert _aliyun_post(client, "/sms/sandbox/status", reports, token).status_code == 200
    marked = _cn_number(db)
    assert (marked.valid, marked.invalid_reason, marked.failures) == (False, "undeliverable", 3)

    back = _sms_up("话费已交，下周五还款", "2026-12-01 10:00:00", 31)
    for _ in range(2):  # Aliyun pushes again what it thinks we missed
        assert _aliyun_post(client, "/sms/sandbox/inbound", [back], token).status_code == 200
    number = _cn_number(db)
    assert (number.valid, number.invalid_reason, number.failures) == (True, None, 0)
    revived = [e for e in _events(db, "contact") if "usable again" in e.detail]
    assert [e.account_id for e in revived] == ["A-CN"]
    assert "13912345678" not in revived[0].detail and len(_events(db, "reply")) == 1
    url = db.url.render_as_string(hide_password=False)
    shown = json.loads(CliRunner().invoke(app, ["show", "A-CN", "--json", "--database", url]).output)
    assert [(n["valid"], n["invalid_reason"], n["failures"]) for n in shown["numbers"]] == [(True, None, 0)]

    disowned = _sms_up("打错了，我不认识他", "2026-12-01 11:00:00", 32)
    later = _sms_up("你好", "2026-12-01 12:00:00", 33)
    assert _aliyun_post(client, "/sms/sandbox/inbound", [disowned], token).status_code == 200
    assert _aliyun_post(client, "/sms/sandbox/inbound", [later], token).status_code == 200
    number = _cn_number(db)
    assert (number.valid, number.invalid_reason) == (False, "wrong_number")
    shown = json.loads(CliRunner().invoke(app, ["show", "A-CN", "--json", "--database", url]).output)
    assert shown["numbers"][0]["invalid_reason"] == "wrong_number"


@pytest.mark.parametrize("token", ["not-our-token", "", None], ids=["wrong", "empty", "missing"])
def test_aliyun_callbacks_without_our_token_are_refused(
    client: TestClient, db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path, token: str | None
) -> None:
    """A report or a 退订 reply posted without our token, or with another one, is 403 and changes nothing."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    message_id = _sent(db, providers["sandbox"], "A-CN", CN_PHONE)
    reports = sms_sandbox.admin.get("/_sandbox/reports/aliyun").json()
    reply = {"phone_number": "13912345678", "content": "退订", "send_time": "2026-11-28 10:00:00"}

    assert _aliyun_post(client, "/sms/sandbox/status", reports, token).status_code == 403
    assert _aliyun_post(client, "/sms/sandbox/inbound", [reply], token).status_code == 403
    assert _message(db, message_id).status == "sent"
    assert _events(db, "message") == [] and _events(db, "opt_out") == []


def test_a_route_for_a_provider_we_do_not_have_is_404(client: TestClient) -> None:
    """Callbacks for a provider the server was not given are not found."""
    assert _aliyun_post(client, "/sms/nexmo/status", [], "t").status_code == 404


# -- inbound messages -------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("body", ["STOP", "Please don\u2019t text me again"])
def test_stop_opts_out_before_the_next_send(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, body: str
) -> None:
    """STOP, or a refusal in the borrower's own words (with a phone's curly apostrophe), records the
    opt-out, a hold and an audit event; the waiting reminder is then never sent."""
    from flows.daily_cycle import dispatch_outbox

    waiting = _a_reminder_waiting_for_the_morning(db, tmp_path)

    form = {"From": CN_PHONE, "To": "+15005550006", "Body": body, "MessageSid": "SM" + "1" * 32}
    response = _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    with db.connect() as c:
        assert (
            c.execute(select(contact.c.opted_out_at).where(contact.c.address == CN_PHONE)).scalar()
            is not None
        )
        holds = c.execute(select(hold.c.kind, hold.c.source).where(hold.c.lifted_at.is_(None))).all()
    assert [tuple(h) for h in holds] == [("sms_opt_out", "webhook")]
    assert len(_events(db, "opt_out")) == 1

    dispatch_outbox(as_of=CN_MORNING)
    blocked = _message(db, waiting.id)
    assert (blocked.status, blocked.reason) == ("blocked", "hold:sms_opt_out")
    assert sms_sandbox.messages() == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_stop_from_a_number_no_account_holds_yet_binds_the_account_imported_with_it(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """STOP, signed as Twilio posts it, from a number no borrower holds yet; then a file gives the
    number to a new account: the cycle does not text it, the message is blocked as opted out."""
    from flows.daily_cycle import daily_cycle

    form = {"From": US_PHONE, "To": "+15005550006", "Body": "Stop", "MessageSid": "SM" + "7" * 32}
    response = _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])
    assert response.status_code == 200
    (kept,) = _events(db, "opt_out")
    assert kept.account_id is None and "later starts opted out" in kept.detail

    _import(db, tmp_path, account_record(account_id="A-LATER"))
    daily_cycle(as_of="2026-12-01T18:00:00Z")  # 10:00 in Los Angeles
    with db.connect() as c:
        sent = c.execute(select(message.c.status, message.c.reason).where(message.c.account_id == "A-LATER"))
        assert [tuple(m) for m in sent] == [("blocked", "opt_out")]
    assert sms_sandbox.messages() == []


def test_a_text_with_a_nul_in_it_is_kept_and_honoured(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A NUL in a text (%00 in Twilio's form; a gateway's reading of GSM's "@"), which PostgreSQL's
    text refuses: the STOP is honoured and the words kept, the NUL as U+FFFD, not answered 500."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "S\x00TOP\x00", "MessageSid": "SM" + "8" * 32}
    response = _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])
    assert response.status_code == 200
    (stop,) = _events(db, "opt_out")
    assert stop.account_id == "A-1" and stop.data["text"] == "S\ufffdTOP\ufffd"
    with db.connect() as c:
        assert c.execute(select(contact.c.opted_out_at).where(contact.c.address == US_PHONE)).scalar()


def test_whatever_a_borrower_texts_is_acknowledged_to_either_vendor_and_kept_word_for_word(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """Any text a phone can send (Twilio's form or Aliyun's SmsUp: emoji, control characters,
    scripts of every plane, empty, 1,600 characters), whatever it says and means: the vendor gets
    its acknowledgement, not a 500 that would make it push the text again, and each event the text
    made keeps it word for word (a NUL as U+FFFD, which PostgreSQL's text cannot hold)."""
    _import(db, tmp_path, account_record(account_id="A-1"), _cn(account_id="A-CN"))
    sequence = itertools.count(1)

    def kept(post: Callable[[str], Any], text: str) -> None:
        with db.connect() as c:
            last = c.execute(select(func.coalesce(func.max(audit.c.id), 0))).scalar_one()
        response = post(text)
        assert response.status_code == 200, (response.status_code, response.text)
        with db.connect() as c:
            made = c.execute(select(audit.c.data).where(audit.c.id > last)).scalars().all()
        texts = [data["text"] for data in made if data and "text" in data]
        assert texts and set(texts) == {text.replace("\x00", "\ufffd")}, (text, made)

    def twilio(text: str) -> Any:
        sid = f"SM{next(sequence):032d}"
        form = {"From": US_PHONE, "To": "+15005550006", "Body": text, "MessageSid": sid}
        return _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])

    def aliyun(text: str) -> Any:
        up = _sms_up(text, "2026-12-01 10:00:00", next(sequence))
        token = sms_sandbox.credentials["callback_token"]
        response = _aliyun_post(client, "/sms/sandbox/inbound", [up], token)
        assert response.json() == {"code": 0, "msg": "成功"}
        return response

    @settings(max_examples=60, deadline=None, database=None)
    @given(st.text(st.characters(exclude_categories=("Cs",)), max_size=1600))  # UTF-8 has no lone surrogate
    def texted(text: str) -> None:
        kept(twilio, text)
        kept(aliyun, text)

    texted()


_CELLS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
_ALIYUN_FIELDS = st.sampled_from(
    [
        "phone_number",
        "send_time",
        "report_time",
        "success",
        "err_code",
        "err_msg",
        "biz_id",
        "out_id",
        "content",
        "sequence_id",
    ]
) | st.text(max_size=8)
_TWILIO_FIELDS = st.sampled_from(
    ["MessageSid", "SmsSid", "MessageStatus", "ErrorCode", "From", "To", "Body", "OptOutType", "MediaUrl0"]
) | st.text(max_size=8)
_FORM_VALUES = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # UTF-8: no lone surrogate


def test_an_authentic_callback_whatever_it_holds_is_answered_200_or_400_never_500(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A callback with our token or the vendor's signature, holding anything (fields missing, of
    the wrong type, unknown, numbers and dates that are none, a JSON object or scalar where Aliyun
    sends an array): acknowledged, or refused as malformed (400). Never a 500, which asks the vendor
    to push the same callback again and again."""
    _import(db, tmp_path, account_record(account_id="A-1"), _cn(account_id="A-CN"))
    item = st.dictionaries(_ALIYUN_FIELDS, _CELLS, max_size=10)
    events = st.sampled_from(["status", "inbound"])

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.one_of(st.lists(item, max_size=4), item, _CELLS), events)
    @example([{"phone_number": None, "report_time": True, "success": None, "out_id": None}], "status")
    @example([{"phone_number": "13912345678", "content": "好", "send_time": 20261201}], "inbound")
    def aliyun(payload: Any, event: str) -> None:
        response = _aliyun_post(
            client, f"/sms/sandbox/{event}", payload, sms_sandbox.credentials["callback_token"]
        )
        assert response.status_code in (200, 400), (response.status_code, response.text, payload)

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.dictionaries(_TWILIO_FIELDS, _FORM_VALUES), events)
    def twilio(form: dict[str, str], event: str) -> None:
        response = _twilio_post(client, f"/sms/twilio/{event}", form, sms_sandbox.credentials["auth_token"])
        assert response.status_code in (200, 400), (response.status_code, response.text, form)

    aliyun()
    twilio()


@pytest.mark.usefixtures("prefect_harness")
def test_a_wrong_number_reply_stops_the_next_send_to_it(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """打错了 from the number, as Twilio posts it: the number is marked invalid, the waiting
    reminder (which names the debt) is blocked at the next dispatch, and nothing reaches the
    stranger."""
    from flows.daily_cycle import dispatch_outbox

    waiting = _a_reminder_waiting_for_the_morning(db, tmp_path)

    form = {
        "From": CN_PHONE,
        "To": "+15005550006",
        "Body": "打错了，我不认识他",
        "MessageSid": "SM" + "2" * 32,
    }
    response = _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])
    assert response.status_code == 200
    with db.connect() as c:
        assert c.execute(select(contact.c.valid).where(contact.c.address == CN_PHONE)).scalar() is False
    assert len(_events(db, "wrong_number")) == 1 and _events(db, "reply") == []

    dispatch_outbox(as_of=CN_MORNING)
    blocked = _message(db, waiting.id)
    assert (blocked.status, blocked.reason) == ("blocked", "invalid_number")
    assert sms_sandbox.messages() == []


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("text", "kind"),
    [("这不是我借的，我有异议", "dispute"), ("我已委托律师，请联系我的律师", "cease_contact")],
)
def test_a_dispute_texted_as_aliyun_posts_it_holds_the_account_before_the_next_send(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, text: str, kind: str
) -> None:
    """这不是我借的，我有异议 as SmsUp (Aliyun's JSON array, national number, Beijing time): a
    dispute hold, so the waiting reminder is blocked at the next dispatch, and the text is kept.
    Word of an attorney who represents the borrower stops contact the same way."""
    from flows.daily_cycle import dispatch_outbox

    waiting = _a_reminder_waiting_for_the_morning(db, tmp_path)
    up = _sms_up(text, "2026-12-02 07:30:00", 7)
    token = sms_sandbox.credentials["callback_token"]
    assert _aliyun_post(client, "/sms/sandbox/inbound", [up], token).json() == {"code": 0, "msg": "成功"}
    with db.connect() as c:
        holds = c.execute(select(hold.c.kind, hold.c.source).where(hold.c.lifted_at.is_(None))).all()
    assert [tuple(h) for h in holds] == [(kind, "webhook")]
    (held,) = _events(db, "hold")
    assert held.detail.endswith(f"'{text}'")

    dispatch_outbox(as_of=CN_MORNING)
    blocked = _message(db, waiting.id)
    assert (blocked.status, blocked.reason) == ("blocked", f"hold:{kind}")
    assert sms_sandbox.messages() == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_stop_acknowledged_while_the_batch_is_checked_stops_its_text(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A borrower's 退订 lands after dispatch loaded and approved the batch but before the batch
    went to the provider (a batch of 10,000 is checked for seconds, then sent in ~100 requests):
    once the webhook has acknowledged it, their text must not go. In a 20,000-account cycle four
    texts reached the vendor 1.4-5.7 s after their STOP had been acknowledged."""
    from flows.daily_cycle import dispatch_outbox
    from tasks import sending

    waiting = _a_reminder_waiting_for_the_morning(db, tmp_path)
    token = sms_sandbox.credentials["callback_token"]
    check, acknowledged = sending._check, []

    def check_then_stop(*args: Any, **kwargs: Any) -> Any:  # the STOP lands after the verdicts
        verdicts = check(*args, **kwargs)
        stop = _sms_up("退订", "2026-12-02 07:59:00", 9)
        acknowledged.append(_aliyun_post(client, "/sms/sandbox/inbound", [stop], token).json())
        return verdicts

    monkeypatch.setattr(sending, "_check", check_then_stop)
    dispatch_outbox(as_of=CN_MORNING)
    assert acknowledged == [{"code": 0, "msg": "成功"}]
    stopped = _message(db, waiting.id)
    assert (stopped.status, stopped.reason) == ("blocked", "hold:sms_opt_out")
    assert sms_sandbox.messages() == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_receipt_pushed_before_dispatch_records_the_send_delivers_the_message(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aliyun may push its SmsReport within a second of taking a message, while dispatch has not
    yet recorded the batch's sends: the push is acknowledged, and the message is delivered as
    its send is recorded, not left `sent` for a lookup an hour on."""
    from flows.daily_cycle import dispatch_outbox
    from tasks import sending

    waiting = _a_reminder_waiting_for_the_morning(db, tmp_path)
    token = sms_sandbox.credentials["callback_token"]
    send, pushed = sending._send, []

    def send_then_push(
        *args: Any, **kwargs: Any
    ) -> Any:  # the vendor's push lands between the send and its record
        sent = send(*args, **kwargs)
        reports = sms_sandbox.admin.get("/_sandbox/reports/aliyun").json()
        pushed.append(_aliyun_post(client, "/sms/sandbox/status", reports, token).json())
        return sent

    monkeypatch.setattr(sending, "_send", send_then_push)
    dispatch_outbox(as_of=CN_MORNING)
    assert pushed == [{"code": 0, "msg": "成功"}]
    assert _message(db, waiting.id).status == "delivered"


def test_start_lifts_the_opt_out(client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path) -> None:
    """退订 then START (SmsUp, as Aliyun posts them) opt the number out and back in, lifting the hold."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    stop = _sms_up("退订", "2026-11-28 10:00:00", 1)
    start = _sms_up("ＳＴＡＲＴ", "2026-11-28 10:05:00", 2)

    token = sms_sandbox.credentials["callback_token"]
    assert _aliyun_post(client, "/sms/sandbox/inbound", [stop], token).json() == {"code": 0, "msg": "成功"}
    with db.connect() as c:
        assert c.execute(select(hold.c.id).where(hold.c.lifted_at.is_(None))).all() != []
    assert _aliyun_post(client, "/sms/sandbox/inbound", [start], token).status_code == 200
    with db.connect() as c:
        assert c.execute(select(contact.c.opted_out_at).where(contact.c.address == CN_PHONE)).scalar() is None
        assert c.execute(select(hold.c.id).where(hold.c.lifted_at.is_(None))).all() == []
    assert len(_events(db, "opt_in")) == 1


def test_an_unreadable_item_keeps_no_opt_out_from_being_recorded(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An SmsUp array whose second item cannot be read (no phone_number; a number that is none)
    is acknowledged: the borrower's 退订 in it is recorded, a hold placed, and each unreadable item
    kept once for operators in the audit trail, numbers masked, however often Aliyun pushes the
    array again. Refusing it would lose the opt-out once Aliyun stopped retrying."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    stop = _sms_up("退订", "2026-12-01 10:00:00", 9)
    no_number = {"content": "还款 500 2026-12-05", "send_time": "2026-12-01 10:00:01"}
    not_a_number = {"phone_number": "电话13912345678", "content": "停", "sequence_id": 10}
    token = sms_sandbox.credentials["callback_token"]
    for _ in range(2):  # Aliyun may push an array again
        answer = _aliyun_post(client, "/sms/sandbox/inbound", [stop, no_number, not_a_number], token)
        assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})
    with db.connect() as c:
        assert c.execute(select(hold.c.kind).where(hold.c.lifted_at.is_(None))).scalars().all() == [
            "sms_opt_out"
        ]
    assert len(_events(db, "opt_out")) == 1
    kept = _events(db, "unreadable_callback")
    assert len(kept) == 2 and all(e.account_id is None for e in kept)
    assert [json.loads(e.data["item"])["content"] for e in kept] == ["还款 500 2026-12-05", "停"]
    assert "lacks phone_number" in kept[0].data["reason"] and "not a number" in kept[1].data["reason"]
    assert all(e.data["route"] == "sms/sandbox/inbound" for e in kept)
    assert "13912345678" not in json.dumps([e.data for e in kept], ensure_ascii=False)
    assert any("could not be read" in r.getMessage() for r in caplog.records)


def test_a_reply_from_a_sender_that_is_no_phone_number_keeps_no_opt_out_from_being_recorded(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """An SmsUp array with the borrower's 退订 and a reply from a service code (`1065912345`: digits,
    so the vendor's reader takes it, but no phone number) is acknowledged: the opt-out recorded, the
    other item kept once for operators. It was refused whole (400), and the 退订 lost with it once
    Aliyun stopped pushing the array."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    stop = _sms_up("退订", "2026-12-01 10:00:00", 21)
    service = {"phone_number": "1065912345", "content": "余额查询", "send_time": "2026-12-01 10:00:01"}
    service["sequence_id"] = 22
    token = sms_sandbox.credentials["callback_token"]
    for _ in range(2):  # Aliyun may push an array again
        answer = _aliyun_post(client, "/sms/sandbox/inbound", [stop, service], token)
        assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})
    assert len(_events(db, "opt_out")) == 1
    [kept] = _events(db, "unreadable_callback")
    assert kept.account_id is None and "not a phone number" in kept.data["reason"]
    assert "余额查询" in kept.data["item"]


def test_a_photo_the_borrower_sends_reaches_the_agent_with_the_words(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MMS as Twilio posts it (NumMedia, MediaUrl0…, MediaContentType0…): the reply's audit
    event keeps where Twilio holds each attachment, and its detail says there are some; a photo
    without words is still a reply an agent can open."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    token = sms_sandbox.credentials["auth_token"]
    base = "https://api.twilio.com/2010-04-01/Accounts/AC" + "0" * 32 + "/Messages/MM"
    urls = [f"{base}{'1' * 32}/Media/ME{n * 32}" for n in "23"]
    mms = {
        "From": US_PHONE,
        "To": "+15005550006",
        "Body": "Paid at the branch, receipt attached",
        "MessageSid": "MM" + "1" * 32,
        "NumMedia": "2",
        "MediaUrl0": urls[0],
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": urls[1],
        "MediaContentType1": "application/pdf",
    }
    assert _twilio_post(client, "/sms/twilio/inbound", mms, token).status_code == 200
    photo = {k: v for k, v in mms.items() if not k.endswith("1")} | {
        "Body": "",
        "MessageSid": "MM" + "4" * 32,
        "NumMedia": "1",
    }
    assert _twilio_post(client, "/sms/twilio/inbound", photo, token).status_code == 200
    first, second = _events(db, "reply")
    assert first.account_id == "A-1" and first.data["media"] == urls
    assert first.detail.endswith("receipt attached (+2 attachments)")
    assert second.data["media"] == urls[:1] and second.detail.endswith(": (+1 attachment)")
    # What an agent reads: `arrears show` lists where each attachment is.
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import console

    url = db.url.render_as_string(hide_password=False)
    shown = json.loads(CliRunner().invoke(app, ["show", "A-1", "--json", "--database", url]).output)
    assert [e["media"] for e in shown["timeline"] if "media" in e] == [urls, urls[:1]]
    monkeypatch.setattr(console, "width", 400)  # each URL on a line of its own, not folded
    table = CliRunner().invoke(app, ["show", "A-1", "--database", url]).output
    assert all(u in table for u in urls)
    text = {"From": US_PHONE, "To": "+15005550006", "Body": "ok", "MessageSid": "SM" + "6" * 32}
    assert _twilio_post(client, "/sms/twilio/inbound", text | {"NumMedia": "0"}, token).status_code == 200
    assert "media" not in _events(db, "reply")[-1].data


def test_a_keyword_twilio_reads_as_stop_opts_out_at_once(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A lender that set "ALTO" as an opt-out keyword in Twilio's Advanced Opt-Out: Twilio stops
    sending to the number and says so (OptOutType=STOP); arrears records the opt-out from that
    callback, not from a failed send later. Twilio's START on "SEGUIR" lifts it."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    token = sms_sandbox.credentials["auth_token"]
    stop = {"From": US_PHONE, "To": "+15005550006", "Body": "ALTO", "MessageSid": "SM" + "7" * 32}
    assert (
        _twilio_post(client, "/sms/twilio/inbound", stop | {"OptOutType": "STOP"}, token).status_code == 200
    )
    with db.connect() as c:
        held = c.execute(select(hold.c.kind).where(hold.c.lifted_at.is_(None))).scalars().all()
    assert held == ["sms_opt_out"]
    (opted,) = _events(db, "opt_out")
    assert "STOP (vendor)" in opted.detail
    start = stop | {"Body": "SEGUIR", "MessageSid": "SM" + "8" * 32, "OptOutType": "START"}
    assert _twilio_post(client, "/sms/twilio/inbound", start, token).status_code == 200
    with db.connect() as c:
        assert c.execute(select(hold.c.id).where(hold.c.lifted_at.is_(None))).all() == []


def test_reply_is_audited_masked_and_queued_once_for_the_lifecycle(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path, lifecycle_calls: Any
) -> None:
    """A reply is kept with its text and a masked number, its lifecycle queued; a repeat queues nothing."""
    runner, calls = lifecycle_calls
    _import(db, tmp_path, account_record(account_id="A-1"))
    form = {
        "From": US_PHONE,
        "To": "+15005550006",
        "Body": "I can pay $200 on Friday",
        "MessageSid": "SM" + "2" * 32,
    }
    token = sms_sandbox.credentials["auth_token"]

    assert _twilio_post(client, "/sms/twilio/inbound", form, token).status_code == 200
    assert _twilio_post(client, "/sms/twilio/inbound", form, token).status_code == 200
    runner.drain(timeout=10)
    assert calls == [("A-1", "reply")]
    (event,) = _events(db, "reply")
    assert event.account_id == "A-1" and event.data["text"] == "I can pay $200 on Friday"
    assert US_PHONE not in event.detail and "+1******4253" in event.detail


@pytest.mark.usefixtures("prefect_harness")
def test_reply_runs_account_lifecycle(db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path) -> None:
    """A reply starts an account_lifecycle flow run for the borrower's account, which brings it up to date."""
    behind = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    _import(db, tmp_path, account_record(account_id="A-1", oldest_due_date=behind))
    app = create_app(engine=db, sms_providers=providers)
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "call me", "MessageSid": "SM" + "3" * 32}
    with TestClient(app) as client:
        assert (
            _twilio_post(
                client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"]
            ).status_code
            == 200
        )
        (result,) = app.state.lifecycle.drain(timeout=120)
    assert result["account_id"] == "A-1"
    with db.connect() as c:
        assert c.execute(select(account.c.stage).where(account.c.account_id == "A-1")).scalar() == "reminder"
    assert [e.account_id for e in _events(db, "transition")] == ["A-1"]


@pytest.mark.usefixtures("prefect_harness")
def test_reply_can_hand_the_lifecycle_to_the_served_deployment(
    db: Engine, providers: Any, sms_sandbox: Any, tmp_path: Path
) -> None:
    """With the deployment runner, a reply creates a run of `account-lifecycle/account` for the account."""
    from flows.account_lifecycle import account_lifecycle
    from tests.later_stage_helpers import drop_queued_runs

    account_lifecycle.to_deployment(name="account").apply()
    _import(db, tmp_path, account_record(account_id="A-1"))
    runner = LifecycleRunner(run=run_lifecycle_deployment())
    app = create_app(engine=db, sms_providers=providers, lifecycle=runner)
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "call me", "MessageSid": "SM" + "6" * 32}
    with TestClient(app) as client:
        assert (
            _twilio_post(
                client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"]
            ).status_code
            == 200
        )
        (flow_run,) = runner.drain(timeout=60)
    runner.close()
    assert flow_run.name == "account A-1"
    assert flow_run.parameters == {"account_id": "A-1", "reason": "reply"}
    # Nothing serves it here: left queued, the next test serving the deployment would run it.
    assert drop_queued_runs() >= 1


# -- court status -----------------------------------------------------------------------------------


def _submitted_filing(db: Engine, tmp_path: Path, filing_id: str) -> datetime:
    """Account A-1 with a referral whose filing `filing_id` is submitted; the instant it was."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    now = datetime.now(UTC)
    with db.begin() as c:
        c.execute(
            insert(referral).values(
                account_id="A-1", status="submitted", filing_id=filing_id, opened_at=now, updated_at=now
            )
        )
    return now


def test_court_status_is_stored_on_the_referral_and_runs_the_lifecycle(
    client: TestClient, db: Engine, tmp_path: Path, lifecycle_calls: Any
) -> None:
    """A court callback signed as the gateway signs it moves the referral once and queues its lifecycle;
    a forged one is 403, one for an unknown filing is acknowledged and kept for operators."""
    runner, calls = lifecycle_calls
    now = _submitted_filing(db, tmp_path, "F-77")
    event = {
        "filingId": "F-77",
        "reviewStatus": "accepted",
        "caseStatus": "judgment-entered",
        "statusReason": "default judgment entered",
        "statusAt": now.isoformat(),
    }
    update = {"events": [event]}

    assert _court_post(client, update).status_code == 200
    assert _court_post(client, update).status_code == 200
    runner.drain(timeout=10)
    with db.connect() as c:
        assert c.execute(select(referral.c.status)).scalar() == "judgment"
    assert calls == [("A-1", "court")] and len(_events(db, "court")) == 1

    assert _court_post(client, update, secret="forged").status_code == 403
    assert _court_post(client, update, at=time.time() - 6 * 60).status_code == 403
    unknown = _court_post(client, {"events": [event | {"filingId": "F-0"}]})
    assert unknown.status_code == 200
    (kept,) = _events(db, "unmatched_court")
    assert kept.data["filing_id"] == "F-0"
    assert _court_post(client, {"events": "accepted"}).status_code == 400  # not a list of events


def test_an_unreadable_court_event_holds_back_no_other_filing(
    client: TestClient, db: Engine, tmp_path: Path, lifecycle_calls: Any
) -> None:
    """A gateway callback with the events of several filings, one with a status word we do not know
    and one without its filing id, is acknowledged: the readable filing moves (once, however often
    the gateway sends it again) and the two others are kept for operators with their reasons."""
    runner, calls = lifecycle_calls
    now = _submitted_filing(db, tmp_path, "F-77")
    at = now.isoformat()
    update = {
        "events": [
            {"filingId": "F-78", "reviewStatus": "pondering", "statusAt": at},
            {"filingId": "F-77", "reviewStatus": "accepted", "statusAt": at},
            {"reviewStatus": "rejected", "statusAt": at},
        ]
    }
    for _ in range(2):
        answer = _court_post(client, update)
        assert answer.status_code == 200 and answer.json() == {"ok": True}
    runner.drain(timeout=10)
    with db.connect() as c:
        assert c.execute(select(referral.c.status)).scalar() == "accepted"
    assert calls == [("A-1", "court")] and len(_events(db, "court")) == 1
    kept = _events(db, "unreadable_callback")
    assert len(kept) == 2
    assert all(k.detail.startswith("court/ecf/status: ") for k in kept)
    reasons = " ".join(json.dumps(k.data) for k in kept)
    assert "pondering" in reasons and "filingId" in reasons


# -- what operators see of callbacks about nothing of ours ---------------------------------------------


def test_callbacks_tied_to_no_account_are_listed_for_operators(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A report on a message we never sent, a court status for a filing no referral has, an
    unreadable item of an Aliyun array and a STOP from a number no borrower holds are each
    acknowledged and kept; `arrears callbacks list` shows them, by kind and since an instant,
    with no number in clear."""
    from typer.testing import CliRunner

    from deployments.cli import app
    from deployments.cli._common import CliError

    _import(db, tmp_path, _cn(account_id="A-CN"))
    token = sms_sandbox.credentials["callback_token"]
    beijing = f"{datetime.now(UTC) + timedelta(hours=8):%Y-%m-%d %H:%M:%S}"  # Aliyun's clock
    report = {
        "phone_number": "13800000000",
        "send_time": beijing,
        "report_time": beijing,
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "成功",
        "biz_id": "900000000000000001^0",
        "out_id": "b" + "f" * 31,  # one of ours, whose send is not recorded
    }
    assert _aliyun_post(client, "/sms/sandbox/status", [report], token).status_code == 200
    no_number = {"content": "我的新号码是13712345678", "send_time": "2026-12-01 10:00:01"}
    assert _aliyun_post(client, "/sms/sandbox/inbound", [no_number], token).status_code == 200
    at = datetime.now(UTC).isoformat()
    court_event = {"filingId": "F-NOT-OURS", "reviewStatus": "accepted", "statusAt": at}
    assert _court_post(client, {"events": [court_event]}).status_code == 200
    stranger = {"From": "+12025550143", "To": "+15005550006", "Body": "STOP", "MessageSid": "SM" + "5" * 32}
    assert (
        _twilio_post(
            client, "/sms/twilio/inbound", stranger, sms_sandbox.credentials["auth_token"]
        ).status_code
        == 200
    )

    url = db.url.render_as_string(hide_password=False)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, ["callbacks", "list", "--database", url, *args])

    listed = cli("--json")
    assert listed.exit_code == 0, listed.output
    kept = json.loads(listed.output)
    assert sorted(k["kind"] for k in kept) == sorted(
        ["unmatched_report", "unreadable_callback", "unmatched_court", "opt_out"]
    )
    assert [k["at"] for k in kept] == sorted((k["at"] for k in kept), reverse=True)  # newest first
    court_only = json.loads(cli("--json", "--kind", "unmatched_court").output)
    assert [k["data"]["filing_id"] for k in court_only] == ["F-NOT-OURS"]
    strangers = json.loads(cli("--json", "--kind", "from_unknown_number").output)
    assert [k["kind"] for k in strangers] == ["opt_out"]
    assert json.loads(cli("--json", "--since", "2099-01-01").output) == []
    table = cli()
    assert table.exit_code == 0 and "callbacks kept without an account (4)" in table.output
    newest = cli("--limit", "1")
    assert "callbacks kept without an account (4; the newest 1 shown, --limit 0 for all)" in newest.output
    assert json.loads(cli("--json", "--limit", "1").output) == kept[:1]
    for number in ("13800000000", "13712345678", "2025550143"):
        assert number not in listed.output + table.output
    # The next cycle's report counts them (the artifact and `arrears report` alike).
    from flows.daily_cycle import daily_cycle

    daily_cycle(as_of=(datetime.now(UTC) + timedelta(minutes=1)).isoformat())
    reported = CliRunner().invoke(app, ["report", "--json", "--database", url])
    assert json.loads(reported.output)["callbacks_kept"] == {
        "from_unknown_number": 1,
        "unmatched_court": 1,
        "unmatched_report": 1,
        "unreadable_callback": 1,
    }
    assert (
        "callbacks kept without an account in the day before: 4"
        in CliRunner().invoke(app, ["report", "--database", url]).output
    )
    refused = cli("--kind", "unmatched_letter")
    assert isinstance(refused.exception, CliError) and refused.exception.exit_code == 2  # main()'s exit
    assert "one of unmatched_report" in str(refused.exception)


# -- the real server --------------------------------------------------------------------------------


def test_real_server_refuses_forgeries_and_records_stop(
    db: Engine,
    providers: Any,
    sms_sandbox: Any,
    tmp_path: Path,
    lifecycle_calls: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under uvicorn on a free port a forged STOP is refused, a signed one kept; no log shows the number."""
    _import(db, tmp_path, account_record(account_id="A-1"))
    app: FastAPI = create_app(engine=db, sms_providers=providers, lifecycle=lifecycle_calls[0])
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "Stop", "MessageSid": "SM" + "4" * 32}
    token = sms_sandbox.credentials["auth_token"]
    caplog.set_level(logging.INFO, logger="arrears.webhooks")
    with WebhookServer(app, port=0) as server, httpx.Client(base_url=server.url) as http:
        assert _twilio_post(http, "/sms/twilio/inbound", form, "forged", base=server.url).status_code == 403
        assert _events(db, "opt_out") == []
        assert _twilio_post(http, "/sms/twilio/inbound", form, token, base=server.url).status_code == 200
    assert len(_events(db, "opt_out")) == 1
    assert caplog.records and not any("2133734253" in r.getMessage() for r in caplog.records)


def test_on_sqlite_callbacks_in_flight_together_are_stored_one_at_a_time(
    sqlite_engine: Engine, providers: Any, sms_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes one writer at a time: eight receipt pushes in flight at once are stored in
    turn, each waiting for the one before rather than in SQLite's busy handler, which sleeps and
    retries (one request of eight waited 8.9 s: benchmarks/receipts.py). All are answered."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from arrears.storage.delivery_reports import ReportsApplied
    from deployments import callback_spool

    inside, most, count = 0, 0, threading.Lock()

    def storing(engine: Engine, **_: Any) -> ReportsApplied:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with count:
            inside -= 1
        return ReportsApplied()

    monkeypatch.setattr(callback_spool.record, "record_delivery_reports", storing)
    app = create_app(
        engine=sqlite_engine, sms_providers=providers, lifecycle=LifecycleRunner(run=lambda *_: None)
    )
    report = {
        "phone_number": "13912345678",
        "send_time": "2026-12-02 09:00:00",
        "report_time": "2026-12-02 09:00:05",
        "success": True,
        "err_code": "DELIVERED",
        "err_msg": "成功",
        "biz_id": "123^0",
        "out_id": "r1",
    }
    token = sms_sandbox.credentials["callback_token"]
    with (
        WebhookServer(app, port=0) as server,
        httpx.Client(base_url=server.url) as http,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        answers = list(
            pool.map(lambda _: _aliyun_post(http, "/sms/sandbox/status", [report], token), range(8))
        )
    assert [a.json() for a in answers] == [{"code": 0, "msg": "成功"}] * 8
    assert most == 1


def test_a_storage_failure_answers_500_and_logs_the_number_masked(
    sqlite_url: str, providers: Any, sms_sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """When the database refuses the write the vendor gets a 500 to retry; the log line masks the number."""
    from sqlalchemy import create_engine

    unmigrated = create_engine(sqlite_url)  # no tables: every statement fails, parameters and all
    app = create_app(
        engine=unmigrated,
        sms_providers=providers,
        lifecycle=LifecycleRunner(run=lambda *_: None),
    )
    form = {"From": US_PHONE, "To": "+15005550006", "Body": "STOP", "MessageSid": "SM" + "5" * 32}
    caplog.set_level(logging.INFO, logger="arrears.webhooks")
    with TestClient(app) as client:
        response = _twilio_post(client, "/sms/twilio/inbound", form, sms_sandbox.credentials["auth_token"])
    assert response.status_code == 500
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures and not any("2133734253" in line for line in failures)
    unmigrated.dispose()


def test_a_batch_with_half_an_emoji_in_it_is_stored_and_its_stop_honoured(
    client: TestClient, db: Engine, sms_sandbox: Any, tmp_path: Path
) -> None:
    """A gateway that cut a long text between the two halves of an emoji pushes a lone surrogate as
    a JSON escape (valid JSON, valid bytes), in a reply or in an item without its number: the batch
    is stored and acknowledged, the half kept as U+FFFD, and the 退订 after them honoured. It was
    answered 500 until Aliyun gave up, and the opt-out was lost with the batch."""
    _import(db, tmp_path, _cn(account_id="A-CN"))
    up = '"phone_number": "13912345678", "send_time": "2026-12-01 10:00:00"'
    body = (
        f'[{{{up}, "content": "PAY 500 \\ud83d", "sequence_id": 7}},'
        ' {"content": "\\ude00 no number", "sequence_id": 8},'
        f' {{{up}, "content": "\\u9000\\u8ba2", "sequence_id": 9}}]'
    ).encode()
    path = f"/sms/sandbox/inbound?{urlencode({'token': sms_sandbox.credentials['callback_token']})}"
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    with db.connect() as c:
        assert c.execute(select(contact.c.opted_out_at).where(contact.c.address == CN_PHONE)).scalar()
        kept: dict[str, Any] = dict(c.execute(select(audit.c.kind, audit.c.data)).all())
    assert kept["reply"]["text"] == "PAY 500 \ufffd"
    assert "\ufffd no number" in kept["unreadable_callback"]["item"]
