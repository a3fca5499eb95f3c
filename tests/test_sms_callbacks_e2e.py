"""Delivery receipts end to end: the real SMS sandbox pushes them (signed as the vendor signs) to
the real webhook server (uvicorn on a free port), which moves the message in our database
(SQLite and PostgreSQL). Lost and repeated receipts are injected by the sandbox's faults; a lost
one leaves the message `sent`, and a status lookup still finds it delivered: nothing is lost."""

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import Engine, insert, select, update

from arrears.importing import Kind, open_source
from arrears.models import AccountHold, AuditEvent, ContactPoint, Message
from arrears.storage import outbox
from arrears.storage._common import opted_out_numbers
from arrears.storage.importer import run_import
from deployments.webhooks import LifecycleRunner, WebhookServer, create_app
from integrations.errors import OptedOut
from integrations.providers import build_provider
from integrations.sms import SmsProvider, SmsRequest
from integrations.sms._signing import twilio_signature
from integrations.sms.protocol import DeliveryReport
from tasks.inbound import record_delivery_reports
from tests.factories import account_record, unique_id, write_csv

audit = AuditEvent.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]

US_PHONE = "+12133734253"  # account_record's default phone, in E.164
CN_PHONE = "+8613912345678"


# -- the two servers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The webhook server and the providers it verifies, all built against the SMS sandbox."""

    def __init__(self, engine: Engine, sandbox: Any, *, auth_token: str | None = None) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.status_url = f"{self.url}/sms/twilio/status"
        creds = dict(sandbox.credentials)
        # One Twilio provider, as settings would build it: it sends with StatusCallback = our
        # webhook, and the webhook verifies the vendor's signature with its auth token.
        self.twilio = build_provider(
            "sms",
            "twilio",
            sandbox.base_url,
            {
                **creds,
                "status_callback": self.status_url,
                **({"auth_token": auth_token} if auth_token else {}),
            },
        )
        self.aliyun = build_provider("sms", "sandbox", sandbox.base_url, creds)  # Aliyun-shaped
        # What is given to Aliyun's console: the report and reply URLs, with our token in them
        self.token_query = f"?token={creds['callback_token']}"
        self.runner = LifecycleRunner(run=lambda account_id, reason: None)
        app = create_app(
            engine=engine,
            sms_providers={"twilio": self.twilio, "sandbox": self.aliyun},
            lifecycle=self.runner,
        )
        self.server = WebhookServer(app, port=port).start()
        assert self.server.url == self.url

    def close(self) -> None:
        self.server.stop()
        self.runner.close()
        self.twilio.close()
        self.aliyun.close()


@pytest.fixture
def stacks(engine: Engine, sms_sandbox: Any) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**kw: Any) -> Stack:
        made.append(Stack(engine, sms_sandbox, **kw))
        return made[-1]

    yield make
    for stack in made:
        stack.close()


@pytest.fixture
def stack(stacks: Callable[..., Stack]) -> Stack:
    return stacks()


@pytest.fixture
def accounts(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / f"{unique_id('accounts')}.csv",
        [
            account_record(account_id="A-US"),
            account_record(
                account_id="A-CN",
                borrower_name="王芳",
                phone="13912345678",
                timezone="Asia/Shanghai",
                jurisdiction="CN",
                currency="CNY",
                balance="60000.00",
                installment_amount="3000.00",
                past_due_amount="3000.00",
                oldest_due_date="2026-11-26",
            ),
        ],
    )
    summary = run_import(engine, open_source(path, Kind.ACCOUNTS))
    assert summary.rejected == 0, summary.first_rejections


# -- helpers -------------------------------------------------------------------------------------------


def _request(to: str = US_PHONE) -> SmsRequest:
    return SmsRequest(unique_id("key"), to, "reminder", {"name": "Dana"}, "Your payment is past due.")


def _record_sent(
    engine: Engine, provider: SmsProvider, account_id: str, request: SmsRequest, provider_id: str
) -> int:
    """Our outbox row for a message the provider accepted, as dispatch records it: `sent`."""
    now = datetime.now(UTC)
    with engine.begin() as c:
        return int(
            c.execute(
                insert(message)
                .values(
                    idempotency_key=request.idempotency_key,
                    account_id=account_id,
                    channel="sms",
                    address=request.to,
                    template=request.template,
                    params=dict(request.params),
                    body=request.body,
                    stage="reminder",
                    episode=1,
                    not_before=now,
                    status="sent",
                    provider=provider.info.name,
                    provider_id=provider_id,
                    attempts=1,
                    created_at=now,
                    sent_at=now,
                )
                .returning(message.c.id)
            ).scalar_one()
        )


def _send(
    engine: Engine, provider: SmsProvider, account_id: str, to: str = US_PHONE
) -> tuple[int, SmsRequest, str]:
    """Send one message through `provider` (to the sandbox) and record it: (row id, request, provider id)."""
    request = _request(to)
    sid = provider.send(request).provider_id
    return _record_sent(engine, provider, account_id, request, sid), request, sid


def _status(engine: Engine, message_id: int) -> str:
    with engine.connect() as c:
        return str(c.execute(select(message.c.status).where(message.c.id == message_id)).scalar_one())


def _moves(engine: Engine, message_id: int) -> list[str]:
    """The statuses the delivery reports moved the message to, from the audit trail."""
    with engine.connect() as c:
        rows = c.execute(select(audit.c.data).where(audit.c.kind == "message").order_by(audit.c.id)).scalars()
        return [d["status"] for d in rows if d.get("message_id") == message_id]


def _settled(sandbox: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The sandbox's callback log once no push is waiting or in flight."""
    deadline = time.monotonic() + timeout
    while True:
        log = sandbox.admin.get("/_sandbox/callbacks").json()
        if log["pending"] == 0:
            return list(log["callbacks"])
        assert time.monotonic() < deadline, f"callbacks still pending after {timeout}s"
        time.sleep(0.02)


# -- Twilio-shaped: X-Twilio-Signature --------------------------------------------------------------
# delivery_ms gives our write of the provider id time to land before the final receipt, as the
# handset's delay does in life; the `sent` receipt may come first and is answered 200 either way.


def test_sandbox_receipt_marks_the_message_delivered(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """The sandbox's signed status callbacks reach the webhook and move the message sent → delivered."""
    sms_sandbox.set_faults(delivery_ms=300)
    message_id, _, _sid = _send(engine, stack.twilio, "A-US")
    assert sms_sandbox.messages()[0]["status_callback"] == stack.status_url
    log = _settled(sms_sandbox)
    assert [(c["status"], c["url"], c["status_code"]) for c in log] == [
        ("sent", stack.status_url, 200),
        ("delivered", stack.status_url, 200),
    ]
    assert _status(engine, message_id) == "delivered"
    assert _moves(engine, message_id) == ["delivered"]


def test_undeliverable_receipt_fails_the_message(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """An `undelivered` callback (30003) marks the message failed with the vendor's code."""
    sms_sandbox.set_faults(delivery_ms=300, undeliverable_numbers="4253$")
    message_id, _, _ = _send(engine, stack.twilio, "A-US")
    _settled(sms_sandbox)
    assert _status(engine, message_id) == "failed"
    with engine.connect() as c:
        assert c.execute(select(message.c.reason).where(message.c.id == message_id)).scalar_one() == "30003"


def test_duplicated_receipts_change_nothing_the_second_time(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """Every receipt sent twice: all four are answered 200, the message moves once, one audit event."""
    sms_sandbox.set_faults(delivery_ms=300, duplicate_callbacks=2)
    message_id, _, _ = _send(engine, stack.twilio, "A-US")
    log = _settled(sms_sandbox)
    assert [(c["status"], c["copy"], c["status_code"]) for c in log] == [
        ("sent", 1, 200),
        ("sent", 2, 200),
        ("delivered", 1, 200),
        ("delivered", 2, 200),
    ]
    assert _status(engine, message_id) == "delivered"
    assert _moves(engine, message_id) == ["delivered"]


def test_dropped_receipts_leave_the_message_sent_and_a_lookup_finds_it_delivered(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """Both receipts lost: the message stays `sent`, yet nothing is lost. A status lookup by
    provider id (the reconciliation path) says delivered, and applying it moves the message."""
    sms_sandbox.set_faults(delivery_ms=300, drop_callbacks=2)
    message_id, request, sid = _send(engine, stack.twilio, "A-US")
    log = _settled(sms_sandbox)
    assert [(c["status"], c["outcome"]) for c in log] == [("sent", "dropped"), ("delivered", "dropped")]
    assert _status(engine, message_id) == "sent"
    assert _moves(engine, message_id) == []

    found = stack.twilio.status(request, sid)
    assert found is not None and (found.provider_id, found.status) == (sid, "delivered")
    applied = record_delivery_reports(
        engine,
        provider=stack.twilio.info.name,
        reports=[
            DeliveryReport(
                found.provider_id, found.status, datetime.now(UTC), found.error_code, vendor_status="lookup"
            ),
        ],
    )
    assert applied.changed == [message_id]
    assert _status(engine, message_id) == "delivered"


@pytest.mark.usefixtures("prefect_harness")
def test_outbox_sweep_looks_up_receipts_that_never_came(
    stack: Stack,
    engine: Engine,
    db_url: str,
    sms_sandbox: Any,
    accounts: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dispatch_outbox` asks the provider about messages still `sent` an hour after it took them
    and applies the answer once; a message sent minutes ago is left to its callback."""
    from arrears.settings import get_settings
    from flows.daily_cycle import dispatch_outbox

    monkeypatch.setenv("ARREARS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    sms_sandbox.set_faults(delivery_ms=0, drop_callbacks=10)
    old, _, _ = _send(engine, stack.aliyun, "A-US")
    recent, _, _ = _send(engine, stack.aliyun, "A-CN", CN_PHONE)
    _settled(sms_sandbox)
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(update(message).where(message.c.id == old).values(sent_at=now - timedelta(hours=2)))
        c.execute(update(message).where(message.c.id == recent).values(sent_at=now - timedelta(minutes=10)))
    assert (_status(engine, old), _status(engine, recent)) == ("sent", "sent")

    counts = dispatch_outbox(as_of=now.isoformat())
    assert (counts["receipts_looked_up"], counts["receipts_applied"]) == (1, 1)
    assert (_status(engine, old), _status(engine, recent)) == ("delivered", "sent")
    assert _moves(engine, old) == ["delivered"]
    again = dispatch_outbox(as_of=now.isoformat())
    assert "receipts_looked_up" not in again  # nothing left to ask about
    assert _moves(engine, old) == ["delivered"]


def test_receipts_signed_with_another_token_are_refused(
    stacks: Callable[..., Stack], engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """A webhook holding another auth token answers the sandbox 403, and the message stays sent."""
    stack = stacks(auth_token="not-the-sandbox-token")
    # That provider cannot send to the sandbox (wrong Basic auth): send with a good one, same URL.
    good = build_provider(
        "sms",
        "twilio",
        sms_sandbox.base_url,
        {**sms_sandbox.credentials, "status_callback": stack.status_url},
    )
    try:
        sms_sandbox.set_faults(delivery_ms=300)
        message_id, _, _ = _send(engine, good, "A-US")
        log = _settled(sms_sandbox)
    finally:
        good.close()
    assert [(c["status_code"], c["outcome"]) for c in log] == [(403, "failed"), (403, "failed")]
    assert _status(engine, message_id) == "sent"


# -- Twilio's 21610: the recipient opted out at the carrier -------------------------------------------
# providers.md: "Keep our own opt-out ledger anyway: the law binds the lender, not the gateway".


def _opted_out(engine: Engine, account_id: str, number: str) -> tuple[bool, list[str], tuple[bool, int]]:
    """(in our opt-out ledger, the account's holds in force, the contact point's (valid, failures))."""
    with engine.connect() as c:
        ledger = number in opted_out_numbers(c, {number})
        holds = list(
            c.execute(
                select(hold.c.kind).where(hold.c.account_id == account_id, hold.c.lifted_at.is_(None))
            ).scalars()
        )
        point = c.execute(
            select(contact.c.valid, contact.c.failures).where(contact.c.address == number)
        ).one()
    return ledger, holds, (bool(point.valid), int(point.failures))


def test_twilio_21610_at_send_records_the_opt_out_as_a_stop_is_recorded(
    engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """A send Twilio refuses with 21610 (errors.OptedOut), through dispatch's own mapping and
    `outbox.record_outcomes`, blocks the message and records the opt-out in our ledger, with the
    sms_opt_out hold a STOP places; the number stays valid (it works, its owner said STOP)."""
    from tasks.sending import _outcome

    request = _request()
    twilio = _twilio(sms_sandbox)
    row_id = _record_sent(engine, twilio, "A-US", request, "")
    with engine.begin() as c:  # as dispatch leases it: scheduled, not yet sent
        c.execute(
            update(message)
            .where(message.c.id == row_id)
            .values(status="scheduled", provider=None, provider_id=None, sent_at=None)
        )
    sms_sandbox.set_faults(opted_out_numbers=r"^\+12133734253$")
    try:
        [result] = twilio.send_batch([request])
    finally:
        twilio.close()
    assert isinstance(result, OptedOut)
    now = datetime.now(UTC)
    row = SimpleNamespace(id=row_id, account_id="A-US", address=US_PHONE)
    for _ in range(2):  # recorded twice (a retried transaction): one opt-out
        with engine.begin() as c:
            outbox.record_outcomes(c, outcomes=[_outcome(row, result, "twilio", now)], at=now, cycle_id=None)
    assert _status(engine, row_id) == "blocked"
    assert _opted_out(engine, "A-US", US_PHONE) == (True, ["sms_opt_out"], (True, 0))


def test_twilio_status_callback_21610_records_an_opt_out_not_a_dead_number(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """A signed status callback `failed` with ErrorCode 21610, posted twice to the webhook, fails
    the message and records the opt-out once, as a STOP is; it counts no failed delivery towards
    marking the number unreachable (the number works: its owner said STOP)."""
    request = _request()
    message_id = _record_sent(engine, stack.twilio, "A-US", request, "SM" + "2" * 32)
    form = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "failed", "ErrorCode": "21610", "To": US_PHONE}
    signature = twilio_signature(sms_sandbox.credentials["auth_token"], stack.status_url, form.items())
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client() as http:
        for _ in range(2):
            answer = http.post(stack.status_url, content=urlencode(form).encode(), headers=headers)
            assert answer.status_code == 200, answer.text
    assert _status(engine, message_id) == "failed"
    assert _opted_out(engine, "A-US", US_PHONE) == (True, ["sms_opt_out"], (True, 0))
    with engine.connect() as c:
        kinds = list(c.execute(select(audit.c.kind).where(audit.c.account_id == "A-US")).scalars())
    assert kinds.count("opt_out") == 1


def _twilio(sandbox: Any) -> SmsProvider:
    return build_provider("sms", "twilio", sandbox.base_url, dict(sandbox.credentials))


# -- Aliyun-shaped: SmsReport and SmsUp arrays, unsigned, to URLs carrying our token ------------------


def test_aliyun_report_for_a_message_we_do_not_know_is_acknowledged_once_and_kept(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """A report arriving before the provider id is stored is acknowledged at once (Aliyun would take a
    non-2xx as a request to push again, and any 200 as received) and kept for operators."""
    sms_sandbox.admin.post(
        "/_sandbox/callbacks", json={"aliyun_url": f"{stack.url}/sms/sandbox/status{stack.token_query}"}
    ).raise_for_status()
    stack.aliyun.send(_request(CN_PHONE))
    log = _settled(sms_sandbox)
    assert [(c["attempt"], c["outcome"], c["status_code"]) for c in log] == [(1, "delivered", 200)]
    with engine.connect() as c:
        kept = c.execute(select(audit).where(audit.c.kind == "unmatched_report")).all()
    assert len(kept) == 1 and kept[0].account_id is None


def test_aliyun_duplicate_report_changes_nothing(
    stack: Stack, engine: Engine, sms_sandbox: Any, accounts: None
) -> None:
    """A report array pushed twice is acknowledged twice and moves the message once."""
    sms_sandbox.admin.post(
        "/_sandbox/callbacks", json={"aliyun_url": f"{stack.url}/sms/sandbox/status{stack.token_query}"}
    ).raise_for_status()
    sms_sandbox.set_faults(delivery_ms=300, duplicate_callbacks=1)
    message_id, _, _ = _send(engine, stack.aliyun, "A-CN", CN_PHONE)
    log = _settled(sms_sandbox)
    assert [(c["copy"], c["outcome"]) for c in log] == [(1, "delivered"), (2, "delivered")]
    assert _status(engine, message_id) == "delivered"
    assert _moves(engine, message_id) == ["delivered"]


@pytest.mark.parametrize(
    "keyword", ["TD", " td ", "退订", "取消", "Unsubscribe", "别再发了", "请不要再给我发短信了"]
)
def test_chinese_borrowers_td_reply_posted_as_aliyun_posts_it_opts_them_out(
    stack: Stack, engine: Engine, db_url: str, sms_sandbox: Any, accounts: None, keyword: str
) -> None:
    """An SmsUp reply as Aliyun posts it (unsigned JSON array, national number, Beijing time) opts the
    borrower out end to end: `arrears show --json` shows the sms_opt_out hold and the opt-out event."""
    from typer.testing import CliRunner

    from deployments.cli import app as cli

    rendered = sms_sandbox.admin.post(
        "/_sandbox/render",
        json={
            "route": "aliyun",
            "event": "inbound",
            "url": f"{stack.url}/sms/sandbox/inbound{stack.token_query}",
            "sender": CN_PHONE,
            "text": keyword,
        },
    ).json()
    (item,) = json.loads(rendered["body"])
    assert item["phone_number"] == "13912345678" and "+" not in item["send_time"]
    with httpx.Client() as http:
        answer = http.post(rendered["url"], content=rendered["body"].encode(), headers=rendered["headers"])
    assert (answer.status_code, answer.json()) == (200, {"code": 0, "msg": "成功"})

    shown = CliRunner().invoke(cli, ["show", "A-CN", "--database", db_url, "--json"])
    assert shown.exit_code == 0, shown.output
    account = json.loads(shown.stdout)
    assert "sms_opt_out" in account["holds"]
    assert any(e["kind"] == "opt_out" for e in account["timeline"])
