"""Inbound SMS and callbacks below the HTTP layer: the pure classifier, and the storage of
delivery reports, opt-outs, opt-ins, replies and court statuses on SQLite and PostgreSQL."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from arrears.importing import Kind, open_source
from arrears.inbound import InboundKind, classify, inbound_address, normalise
from arrears.models import Account, AccountHold, AuditEvent, ContactPoint, Message, Referral
from arrears.storage import delivery_reports
from arrears.storage import inbound as store
from arrears.storage.court_statuses import CourtRecorded, record_court_status
from arrears.storage.delivery_reports import StatusReport
from arrears.storage.importer import run_import
from arrears.storage.inbound import Inbound
from arrears.storage.tables import opted_out_number
from arrears.vocabulary import Hold, MessageStatus
from tests.factories import account_record, unique_id, write_csv

account = Account.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
contact = ContactPoint.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]
referral = Referral.__table__  # type: ignore[attr-defined]

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PHONE = "+12133734253"  # account_record's default phone, in E.164


# -- the classifier ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("STOP", InboundKind.OPT_OUT),
        ("stop", InboundKind.OPT_OUT),
        ("  Stop.  ", InboundKind.OPT_OUT),
        ("ＳＴＯＰ", InboundKind.OPT_OUT),  # full-width letters
        ("\u3000stopall\u3000", InboundKind.OPT_OUT),  # ideographic spaces
        ("Unsubscribe", InboundKind.OPT_OUT),
        ("cancel", InboundKind.OPT_OUT),
        ("END", InboundKind.OPT_OUT),
        ("quit!", InboundKind.OPT_OUT),
        ("退订", InboundKind.OPT_OUT),
        ("退订。", InboundKind.OPT_OUT),
        ("td", InboundKind.OPT_OUT),
        ("Ｔ", InboundKind.OPT_OUT),
        ("取消", InboundKind.OPT_OUT),  # Aliyun's and the mainland carriers' unsubscribe words
        (" 取消。", InboundKind.OPT_OUT),
        ("订阅", InboundKind.OPT_IN),
        ("please STOP texting me", InboundKind.OPT_OUT),  # Reg F 1006.6(e): free-form opt-out
        ("REVOKE", InboundKind.OPT_OUT),  # the FCC's revocation words, 47 CFR 64.1200(a)(10)
        ("Opt out", InboundKind.OPT_OUT),
        ("opt-out.", InboundKind.OPT_OUT),
        ("OPTOUT", InboundKind.OPT_OUT),
        ("I revoke my consent to these texts", InboundKind.OPT_OUT),
        ("I want to opt out", InboundKind.OPT_OUT),
        ("S\u200bTOP", InboundKind.OPT_OUT),  # a zero-width space a reader does not see
        ("ST\u034fOP", InboundKind.OPT_OUT),  # a combining grapheme joiner: nor that
        ("退\ufe0f订", InboundKind.OPT_OUT),  # a variation selector: nor that
        ("\ufeffstop", InboundKind.OPT_OUT),  # a byte-order mark
        ("\u2066STOP\u2069", InboundKind.OPT_OUT),  # bidirectional isolates
        ("S\x00TOP\x07", InboundKind.OPT_OUT),  # control characters a gateway let through
        ("Optional extra payment?", InboundKind.REPLY),
        ("Out of town, paying Friday", InboundKind.REPLY),
        ("不要再发了，退订", InboundKind.OPT_OUT),
        # A plain refusal in other words (FCC 24-24; MIIT Order 31 art. 19), with no keyword in it.
        ("停止", InboundKind.OPT_OUT),
        ("停", InboundKind.OPT_OUT),
        ("停！", InboundKind.OPT_OUT),
        ("停车场在哪里", InboundKind.REPLY),
        ("拒收", InboundKind.OPT_OUT),
        ("别再发了", InboundKind.OPT_OUT),
        ("请不要再给我发短信了", InboundKind.OPT_OUT),
        ("不要再发这种短信", InboundKind.OPT_OUT),
        ("别发，我会还的", InboundKind.OPT_OUT),
        ("停止发送。", InboundKind.OPT_OUT),
        ("不要再联系我", InboundKind.OPT_OUT),
        ("我不想再收到你们的短信", InboundKind.OPT_OUT),
        ("拒绝接收", InboundKind.OPT_OUT),
        ("不用发了，谢谢", InboundKind.OPT_OUT),
        ("勿扰", InboundKind.OPT_OUT),
        ("Don\u2019t text me again", InboundKind.OPT_OUT),  # a phone's typographic apostrophe
        ("please do not text me", InboundKind.OPT_OUT),
        ("No more texts!", InboundKind.OPT_OUT),
        ("leave me alone", InboundKind.OPT_OUT),
        ("Remove me", InboundKind.OPT_OUT),
        ("please remove me from your list", InboundKind.OPT_OUT),
        ("Take me off your list.", InboundKind.OPT_OUT),
        ("take me off ur contact list", InboundKind.OPT_OUT),
        ("quit texting me", InboundKind.OPT_OUT),
        ("Quit calling me!!", InboundKind.OPT_OUT),
        ("Can you remove me from the loan? My ex has the car", InboundKind.REPLY),
        ("I quit my job, can I defer?", InboundKind.REPLY),
        ("removed the car from the garage", InboundKind.REPLY),
        # ...and what only looks like one: a hardship story, a payday, a letter, a habit.
        ("公司倒闭了，不再发工资", InboundKind.REPLY),
        ("下周发工资就还", InboundKind.REPLY),
        ("不用发票", InboundKind.REPLY),
        ("不要发律师函，我下周还", InboundKind.REPLY),
        ("I don't text much, call me", InboundKind.REPLY),
        ("START", InboundKind.OPT_IN),
        (" unstop ", InboundKind.OPT_IN),
        ("ｓｔａｒｔ", InboundKind.OPT_IN),
        ("I will pay at the end of the month", InboundKind.REPLY),
        ("Can I cancel the late fee?", InboundKind.REPLY),
        ("下周五还款", InboundKind.REPLY),
        ("Stopped by the branch today", InboundKind.REPLY),
        # A stop word with only courtesy around it is the keyword (the FCC's seven words)...
        ("Cancel please", InboundKind.OPT_OUT),
        ("END please", InboundKind.OPT_OUT),
        ("quit, please!", InboundKind.OPT_OUT),
        ("Please cancel 🙏", InboundKind.OPT_OUT),
        ("cancel now thank you", InboundKind.OPT_OUT),
        ("取消订阅", InboundKind.OPT_OUT),
        ("请取消，谢谢", InboundKind.OPT_OUT),
        ("cancel my plan", InboundKind.REPLY),
        ("please end the repo", InboundKind.REPLY),
        # ...and "stop by" is a visit, unless the text asks to stop as well.
        ("I'll stop by the branch tomorrow to pay", InboundKind.REPLY),
        ("Can I stop by the office?", InboundKind.REPLY),
        ("I'll stop by the office. Stop texting me", InboundKind.OPT_OUT),
        # As phones send them: emoji, a signature, a mail client's footer.
        ("🛑STOP🛑", InboundKind.OPT_OUT),
        ("stop!!", InboundKind.OPT_OUT),
        ("Stop\n\nJohn Smith\nSent from my iPhone", InboundKind.OPT_OUT),
        ("HELP", InboundKind.REPLY),
        ("Cancel\n\nSent from my iPhone", InboundKind.OPT_OUT),  # a keyword on its own line
        ("END please\r\n-- Dana W.", InboundKind.OPT_OUT),
        ("取消\n王芳", InboundKind.OPT_OUT),
        ("Can I cancel\nthe late fee?", InboundKind.REPLY),
        ("", InboundKind.REPLY),
        ("TT", InboundKind.REPLY),
        # Whoever has the number says it is not the borrower's...
        ("Wrong number", InboundKind.WRONG_NUMBER),
        ("This is not John, wrong number", InboundKind.WRONG_NUMBER),
        ("This isn't John, wrong #", InboundKind.WRONG_NUMBER),  # the "#" ends the message
        ("wrong #!", InboundKind.WRONG_NUMBER),
        ("you have the wrong person", InboundKind.WRONG_NUMBER),
        ("No one here by that name", InboundKind.WRONG_NUMBER),
        ("nobody named Nancy lives here", InboundKind.WRONG_NUMBER),
        ("This isn\u2019t his number anymore", InboundKind.WRONG_NUMBER),
        ("I do not know this person", InboundKind.WRONG_NUMBER),
        ("打错了", InboundKind.WRONG_NUMBER),
        ("不是本人", InboundKind.WRONG_NUMBER),
        ("你们发错人了，我不认识他", InboundKind.WRONG_NUMBER),
        ("这不是他的号码", InboundKind.WRONG_NUMBER),
        ("号码换人了", InboundKind.WRONG_NUMBER),
        ("查无此人", InboundKind.WRONG_NUMBER),
        ("Stop. Wrong number", InboundKind.OPT_OUT),  # an opt-out is honoured as asked
        # ...and what only sounds like it: a disputed amount, a question, the borrower's own number.
        ("you have the wrong amount on my account", InboundKind.REPLY),
        ("that's wrong!", InboundKind.REPLY),
        ("I'm not able to pay this month", InboundKind.REPLY),
        ("I don't know who this is", InboundKind.REPLY),
        ("你们算错了", InboundKind.REPLY),
        ("不是我不想还", InboundKind.REPLY),
        ("我换号了，新号码是13800000000", InboundKind.REPLY),
    ],
)
def test_classify_reads_keywords_after_normalising(body: str, kind: InboundKind) -> None:
    """Keywords count whatever their case, width, spacing or surrounding punctuation; other texts are
    replies."""
    assert classify(body).kind is kind


@pytest.mark.parametrize(
    ("body", "vendor", "kind", "keyword"),
    [
        ("ALTO", "STOP", InboundKind.OPT_OUT, "STOP (vendor)"),  # a keyword the lender set at Twilio
        ("Stop", "STOP", InboundKind.OPT_OUT, "STOP"),  # ours too: our own word is kept
        ("ALTO", None, InboundKind.REPLY, None),
        ("SEGUIR", "START", InboundKind.OPT_IN, "START (vendor)"),
        ("STOP", "START", InboundKind.OPT_OUT, "STOP"),  # the words opt out: they win
        ("HELP", "HELP", InboundKind.REPLY, None),
    ],
)
def test_the_vendors_own_reading_of_a_keyword_is_followed(
    body: str, vendor: str | None, kind: InboundKind, keyword: str | None
) -> None:
    """Twilio's OptOutType stops or resumes sending to the number at Twilio: STOP opts out whatever
    the words, START opts in unless the words opt out, HELP changes nothing."""
    classified = classify(body, vendor)
    assert (classified.kind, classified.keyword) == (kind, keyword)


@pytest.mark.parametrize(
    ("body", "kind", "hold"),
    [
        ("I dispute this debt", InboundKind.REPLY, Hold.DISPUTE),
        ("STOP, I dispute this debt", InboundKind.OPT_OUT, Hold.DISPUTE),  # both, as asked
        ("this is not my loan", InboundKind.REPLY, Hold.DISPUTE),
        ("I never took out a car loan with you", InboundKind.REPLY, Hold.DISPUTE),
        ("Identity theft", InboundKind.REPLY, Hold.DISPUTE),
        ("我对这笔欠款有异议", InboundKind.REPLY, Hold.DISPUTE),
        ("这不是我借的", InboundKind.REPLY, Hold.DISPUTE),
        ("我被冒名贷款了", InboundKind.REPLY, Hold.DISPUTE),
        ("I filed for bankruptcy last week", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("filed chapter 13", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("Call my bankruptcy attorney", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("我已经申请个人破产", InboundKind.REPLY, Hold.BANKRUPTCY),
        # A written request to cease communication, or an attorney who represents the borrower.
        ("Cease and desist all communication", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("Stop contacting me", InboundKind.OPT_OUT, Hold.CEASE_CONTACT),  # both, as asked
        ("Contact my attorney, Jane Roe, 555-0100", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("I have a lawyer now. My lawyer will contact you", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("I'm represented by counsel", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("请联系我的律师", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("我已委托律师处理", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("停止一切催收", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("Call my bankruptcy lawyer", InboundKind.REPLY, Hold.BANKRUPTCY),  # the stronger hold
        # Talking of a lawyer is not being represented by one; word of a death places no hold.
        ("I talked to my lawyer and will pay Friday", InboundKind.REPLY, None),
        ("Is a lawyer needed for a payment plan?", InboundKind.REPLY, None),
        ("He passed away last month", InboundKind.REPLY, None),
        ("机主已经去世了", InboundKind.REPLY, None),
        # Hardship, not a filing; a stranger's "not my debt" disputes nothing.
        ("I might go bankrupt if you keep adding fees", InboundKind.REPLY, None),
        ("公司破产了，我失业了", InboundKind.REPLY, None),
        ("wrong number, not my debt", InboundKind.WRONG_NUMBER, None),
        ("PAY 500 2026-12-05", InboundKind.REPLY, None),
        # As borrowers type them: a contraction, "don't owe", BK for bankruptcy, counsel retained.
        ("this isn\u2019t my debt", InboundKind.REPLY, Hold.DISPUTE),
        ("I don't owe this", InboundKind.REPLY, Hold.DISPUTE),
        ("I do not owe you anything", InboundKind.REPLY, Hold.DISPUTE),
        ("I don't owe that much, check again", InboundKind.REPLY, Hold.DISPUTE),
        ("I don't owe that until Friday", InboundKind.REPLY, None),
        ("I don't owe you an explanation", InboundKind.REPLY, None),
        ("I filed BK last week", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("we filed ch. 13", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("my BK lawyer will call you", InboundKind.REPLY, Hold.BANKRUPTCY),
        ("An attorney represents me", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("I have retained counsel", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("I\u2019ve hired a lawyer", InboundKind.REPLY, Hold.CEASE_CONTACT),
        ("my lawyer handles this, contact them", InboundKind.REPLY, Hold.CEASE_CONTACT),
    ],
)
def test_classify_finds_the_hold_a_text_calls_for(body: str, kind: InboundKind, hold: Hold | None) -> None:
    """A dispute, word of a bankruptcy filing or of an attorney, or a request to cease
    communication is found whatever else the text is."""
    classified = classify(body)
    assert (classified.kind, classified.hold) == (kind, hold)
    assert (classified.statement is not None) == (hold is not None)


def test_classify_names_the_deciding_keyword() -> None:
    """An opt-out records the keyword that decided it, for the audit trail."""
    assert classify("ｓｔｏｐ").keyword == "STOP"
    assert classify("回复退订").keyword == "退订"
    assert classify("hello").keyword is None


def test_normalise_folds_width_case_and_space() -> None:
    """Full-width forms, case and runs of whitespace are folded to one plain form."""
    assert normalise("  Ｈｅｌｌｏ\u3000\n world ！") == "HELLO WORLD"


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+12133734253", None, "+12133734253"),
        ("13912345678", "CN", "+8613912345678"),
        ("008613912345678", None, "+8613912345678"),
        ("not a number", "CN", None),
    ],
)
def test_inbound_address_gives_e164(raw: str, region: str | None, e164: str | None) -> None:
    """Gateway numbers (E.164, Aliyun's national digits, 00-prefixed) become E.164, like stored contact
    points."""
    assert inbound_address(raw, region) == e164


# -- storage ----------------------------------------------------------------------------------------


def _import(engine: Engine, tmp_path: Path, *records: dict[str, str]) -> None:
    path = write_csv(tmp_path / f"{unique_id('accounts')}.csv", records)
    summary = run_import(engine, open_source(path, Kind.ACCOUNTS))
    assert summary.rejected == 0, summary.first_rejections


def _message(
    engine: Engine, account_id: str, *, status: str = "sent", provider_id: str | None = "SM1"
) -> int:
    with engine.begin() as c:
        return int(
            c.execute(
                insert(message)
                .values(
                    idempotency_key=unique_id("key"),
                    account_id=account_id,
                    channel="sms",
                    address=PHONE,
                    template="reminder",
                    params={},
                    body="Reminder",
                    stage="reminder",
                    episode=1,
                    not_before=T0,
                    status=status,
                    provider="twilio",
                    provider_id=provider_id,
                    attempts=1,
                    created_at=T0,
                    sent_at=T0,
                )
                .returning(message.c.id)
            ).scalar_one()
        )


def _row(engine: Engine, table: Any, **where: Any) -> Any:
    with engine.connect() as c:
        return c.execute(select(table).where(*(table.c[k] == v for k, v in where.items()))).one()


def _events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as c:
        return c.execute(select(audit).where(audit.c.kind == kind).order_by(audit.c.id)).all()


def _report(status: MessageStatus, provider_id: str = "SM1", **kw: Any) -> StatusReport:
    return StatusReport(provider_id=provider_id, status=status, at=T0 + timedelta(minutes=1), **kw)


def _apply(engine: Engine, *reports: StatusReport) -> delivery_reports.ReportsApplied:
    with engine.begin() as c:
        return delivery_reports.apply_delivery_reports(c, provider="twilio", reports=reports)


def _inbound(text: str, callback_id: str, address: str = PHONE, keyword: str | None = None) -> Inbound:
    return Inbound(
        address=address,
        text=text,
        at=T0,
        provider="twilio",
        callback_id=callback_id,
        keyword=keyword or classify(text).keyword,
    )


def test_delivery_reports_move_messages_forward_only(engine: Engine, tmp_path: Path) -> None:
    """sent → delivered is applied once; a repeat, a late `sent` and a later `failed` change nothing."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    message_id = _message(engine, "A-1")

    first = _apply(engine, _report(MessageStatus.DELIVERED))
    assert first.changed == [message_id]
    again = _apply(
        engine,
        _report(MessageStatus.DELIVERED),
        _report(MessageStatus.SENT),
        _report(MessageStatus.FAILED, error_code="30003"),
    )
    assert (again.changed, again.unchanged, again.unmatched) == ([], 3, [])
    row = _row(engine, message, id=message_id)
    assert (row.status, row.reason) == ("delivered", None)
    assert len(_events(engine, "message")) == 1


def test_failed_report_records_the_error_and_counts_against_the_number(
    engine: Engine, tmp_path: Path
) -> None:
    """An undelivered report fails the message with the vendor's code and adds one consecutive failure."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    message_id = _message(engine, "A-1")
    _apply(engine, _report(MessageStatus.FAILED, error_code="30003", vendor_status="undelivered"))
    row = _row(engine, message, id=message_id)
    assert (row.status, row.reason) == ("failed", "30003")
    assert _row(engine, contact, address=PHONE).failures == 1


def test_reports_for_unknown_or_other_providers_messages_are_unmatched(
    engine: Engine, tmp_path: Path
) -> None:
    """A provider id we never stored (or stored for another provider) changes nothing and is named."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    _message(engine, "A-1", provider_id="SM1")
    result = _apply(engine, _report(MessageStatus.DELIVERED, provider_id="SM-unknown"))
    assert result.unmatched == ["SM-unknown"]
    with engine.begin() as c:
        other = delivery_reports.apply_delivery_reports(
            c, provider="aliyun", reports=[_report(MessageStatus.DELIVERED)]
        )
    assert other.unmatched == ["SM1"] and _row(engine, message, provider_id="SM1").status == "sent"


def test_a_report_that_comes_before_its_send_is_recorded_is_applied_once_it_is(
    engine: Engine, tmp_path: Path
) -> None:
    """A vendor may report within a second of taking a message, before dispatch records the
    batch's sends: the report finds no message, is acknowledged and kept, and moves the message
    when the send is recorded, in that transaction, counting the failure against the number.
    Before, it was lost: the message stayed sent until a lookup an hour on."""
    from arrears.storage import outbox
    from arrears.storage.outbox import Outcome
    from arrears.storage.tables import early_report

    _import(engine, tmp_path, account_record(account_id="A-1"))
    message_id = _message(engine, "A-1", status="scheduled", provider_id=None)
    early = _apply(
        engine,
        _report(MessageStatus.SENT, provider_id="SM9"),  # moves nothing, even in time: not kept
        _report(MessageStatus.FAILED, provider_id="SM9", error_code="30003"),
    )
    assert early.unmatched == ["SM9", "SM9"]
    with engine.connect() as c:
        assert [(r.provider_id, r.status) for r in c.execute(select(early_report))] == [("SM9", "failed")]

    sent = Outcome(message_id, "A-1", MessageStatus.SENT, provider="twilio", provider_id="SM9", sent_at=T0)
    with engine.begin() as c:
        outbox.record_outcomes(c, outcomes=[sent], at=T0, cycle_id=None)
    row = _row(engine, message, id=message_id)
    assert (row.status, row.reason) == ("failed", "30003")
    assert _row(engine, contact, address=PHONE).failures == 1
    assert [e.data["status"] for e in _events(engine, "message")] == ["sent", "failed"]
    with engine.connect() as c:
        assert c.execute(select(early_report)).all() == []


@pytest.mark.parametrize(
    ("said", "valid", "failures"),
    [({"number_cannot_text": True}, False, 1), ({"opted_out": True}, True, 0), ({}, True, 1)],
)
def test_a_report_before_its_send_keeps_what_it_said_of_the_number(
    engine: Engine, tmp_path: Path, said: dict[str, bool], valid: bool, failures: int
) -> None:
    """An early report applied once its send is recorded says what it said on arrival: a number
    that cannot take texts (Twilio's 30006) is marked invalid at its first failure, an opt-out at
    the carrier (21610) counts no failed delivery, and a plain failure counts one. Before, the
    early report kept only the status and code, and each counted as a plain failure."""
    from arrears.storage import outbox
    from arrears.storage.outbox import Outcome

    _import(engine, tmp_path, account_record(account_id="A-1"))
    message_id = _message(engine, "A-1", status="scheduled", provider_id=None)
    _apply(engine, _report(MessageStatus.FAILED, provider_id="SM7", error_code="30006", **said))
    sent = Outcome(message_id, "A-1", MessageStatus.SENT, provider="twilio", provider_id="SM7", sent_at=T0)
    with engine.begin() as c:
        outbox.record_outcomes(c, outcomes=[sent], at=T0, cycle_id=None)
    assert _row(engine, message, id=message_id).status == "failed"
    point = _row(engine, contact, address=PHONE)
    assert (point.valid, point.failures) == (valid, failures)


def test_a_report_before_its_send_is_kept_once_without_reading_the_audit_trail(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Whether an early report is kept already is looked up in the early reports' index, never in
    the audit trail's JSON: that read scanned every earlier one for each report, and while a live
    cycle's receipts raced its dispatch (half of them came early) the webhook held SQLite's lock
    until a dispatch batch failed with "database is locked" (benchmarks/receipts.py --live)."""
    from sqlalchemy import event

    from arrears.storage.tables import early_report

    sent: list[tuple[str, Any]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    for _ in range(2):  # the vendor pushes it again: kept once
        _apply(sqlite_engine, _report(MessageStatus.DELIVERED, provider_id="SM7"))
    applying = list(sent)
    assert not [q for q, _ in applying if "FROM audit_event" in q]
    lookups = [(q, p) for q, p in applying if "FROM early_report" in q]
    assert len(lookups) == 2
    with sqlite_engine.connect() as c:
        assert len(c.execute(select(early_report)).all()) == 1
        for statement, parameters in lookups:
            plan = [row[3] for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert any("INDEX ix_early_report_provider_id_provider" in step for step in plan), plan
    assert len(_events(sqlite_engine, "unmatched_report")) == 1


def test_a_delivery_report_finds_its_message_by_provider_id_not_by_status(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Every statement a receipt runs on the outbox searches it by provider id. With the index on
    provider id alone, SQLite (no statistics) took the status index for `status = 'sent'` and
    walked every message still sent, for each receipt: 124 receipts a second after a
    50,000-account cycle (benchmarks/receipts.py), and posts refused past the lock wait."""
    from sqlalchemy import event

    _import(sqlite_engine, tmp_path, account_record(account_id="A-1"))
    _message(sqlite_engine, "A-1")
    sent: list[tuple[str, Any]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    _apply(sqlite_engine, _report(MessageStatus.DELIVERED), _report(MessageStatus.DELIVERED))
    on_outbox = [(q, p) for q, p in sent if q.startswith("UPDATE message") or "FROM message" in q]
    assert len(on_outbox) == 3  # the first report moves its message; the second finds it moved
    with sqlite_engine.connect() as c:
        for statement, parameters in on_outbox:
            plan = [row[3] for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            # COVERING for the count (the index holds every column it reads), plain for the move.
            assert len(plan) == 1 and plan[0].startswith("SEARCH message USING "), plan
            assert plan[0].endswith("INDEX ix_message_provider_id_provider (provider_id=? AND provider=?)")


def test_opt_out_marks_the_number_and_holds_every_account_of_the_borrower(
    engine: Engine, tmp_path: Path
) -> None:
    """STOP sets opted_out_at, places one webhook sms_opt_out hold per account and audits each, masked."""
    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B-1"),
    )
    with engine.begin() as c:
        result = store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1"))
    assert (result.duplicate, result.changed, set(result.accounts)) == (False, True, {"A-1", "A-2"})
    assert _row(engine, contact, address=PHONE).opted_out_at == T0
    with engine.connect() as c:
        holds = c.execute(select(hold).where(hold.c.lifted_at.is_(None))).all()
    assert sorted((h.account_id, h.kind, h.source) for h in holds) == [
        ("A-1", "sms_opt_out", "webhook"),
        ("A-2", "sms_opt_out", "webhook"),
    ]
    events = _events(engine, "opt_out")
    assert len(events) == 2 and all(PHONE not in e.detail and "+1******4253" in e.detail for e in events)


def test_opt_out_twice_changes_nothing_the_second_time(engine: Engine, tmp_path: Path) -> None:
    """The same callback again is a duplicate, adding nothing; another STOP finds the opt-out in
    place: no second hold, and an audit event that says so, with the borrower's words."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    with engine.begin() as c:
        store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1"))
    with engine.begin() as c:
        repeat = store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1"))
        another = store.record_opt_out(c, inbound=_inbound("stop texting me, I lost my job", "SM-in-2"))
    assert (repeat.duplicate, another.duplicate, another.changed) == (True, False, False)
    with engine.connect() as c:
        assert len(c.execute(select(hold)).all()) == 1
    first, second = _events(engine, "opt_out")
    assert first.detail == "SMS opt-out: STOP from +1******4253 (twilio); sms_opt_out hold placed"
    assert second.detail == (
        "SMS opt-out: STOP from +1******4253 (twilio): 'stop texting me, I lost my job'; already opted out"
    )
    assert second.data["text"] == "stop texting me, I lost my job"


@pytest.mark.parametrize(
    "said",
    [
        # A second STOP, delivered again after the borrower's START: still opted in.
        [("STOP", "SM-in-1"), ("STOP", "SM-in-2"), ("START", "SM-in-3"), ("STOP", "SM-in-2")],
        # A second START, delivered again after the borrower's STOP: still opted out.
        [
            ("STOP", "SM-in-1"),
            ("START", "SM-in-2"),
            ("START", "SM-in-3"),
            ("STOP", "SM-in-4"),
            ("START", "SM-in-3"),
        ],
    ],
)
def test_a_keyword_that_changed_nothing_is_still_known_when_delivered_again(
    engine: Engine, tmp_path: Path, said: list[tuple[str, str]]
) -> None:
    """A vendor delivers a callback again when it missed our answer, possibly after later ones. A
    STOP or START that found the number as it asked is recorded too, so its second delivery is a
    duplicate instead of undoing the borrower's last word."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    for text, sid in said:
        with engine.begin() as c:
            record = store.record_opt_out if text == "STOP" else store.record_opt_in
            last = record(c, inbound=_inbound(text, sid))
    assert last.duplicate and not last.changed
    opted_out = _row(engine, contact, address=PHONE).opted_out_at is not None
    assert opted_out == (said[-2][0] == "STOP")


def test_a_start_sent_before_the_stop_but_delivered_after_it_opts_nothing_in(
    engine: Engine, tmp_path: Path
) -> None:
    """Vendors do not promise order: a START the borrower sent at 10:00 that arrives after their
    STOP of 10:05 leaves the number opted out (by the vendor's times, as Aliyun gives them); a
    START sent after the STOP then opts it in."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    stop, late, later = T0 + timedelta(minutes=5), T0, T0 + timedelta(minutes=10)
    with engine.begin() as c:
        store.record_opt_out(c, inbound=replace(_inbound("STOP", "SM-in-2"), at=stop))
        stale = store.record_opt_in(c, inbound=replace(_inbound("START", "SM-in-1"), at=late))
    assert not stale.changed and _row(engine, contact, address=PHONE).opted_out_at == stop
    with engine.connect() as c:
        assert c.execute(select(hold.c.kind).where(hold.c.lifted_at.is_(None))).scalars().all() == [
            "sms_opt_out"
        ]
    (event,) = _events(engine, "opt_in")
    assert event.detail.endswith(
        f"the number opted out after it was sent, at {stop.isoformat()}: it stays out"
    )
    with engine.begin() as c:
        assert store.record_opt_in(c, inbound=replace(_inbound("START", "SM-in-3"), at=later)).changed
    assert _row(engine, contact, address=PHONE).opted_out_at is None


def test_a_wrong_number_marks_the_number_invalid_for_every_holder_and_is_no_reply(
    engine: Engine, tmp_path: Path
) -> None:
    """ "Wrong number" marks the number invalid for each borrower who holds it and audits it on
    their accounts with the words; it is no reply (no willingness read from it), and the same
    callback again changes nothing."""
    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B-2"),  # the same number: a household
    )
    text = "Wrong number, I don't know any Nancy"
    with engine.begin() as c:
        first = store.record_wrong_number(c, inbound=_inbound(text, "SM-in-1"))
        again = store.record_wrong_number(c, inbound=_inbound(text, "SM-in-1"))
    assert (first.changed, set(first.accounts), again.duplicate) == (True, {"A-1", "A-2"}, True)
    with engine.connect() as c:
        valid = c.execute(select(contact.c.valid).where(contact.c.address == PHONE)).scalars().all()
    assert valid == [False, False]
    events = _events(engine, "wrong_number")
    assert sorted(e.account_id for e in events) == ["A-1", "A-2"]
    assert all(
        e.detail == f"wrong number from +1******4253 (twilio): {text!r}; the number is marked invalid"
        for e in events
    )
    assert _events(engine, "reply") == [] and _events(engine, "willingness") == []


def test_a_texted_dispute_holds_every_open_account_of_the_number_once(engine: Engine, tmp_path: Path) -> None:
    """ "STOP, I dispute this debt" opts the number out and places a dispute hold on each open
    account of its borrower (which loan it means cannot be told), not on a closed one, audited
    with the words; the same callback again places nothing more."""
    from tasks.inbound import record_inbound_sms

    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B-1"),
        account_record(account_id="A-3", borrower_id="B-1"),
    )
    with engine.begin() as c:
        c.execute(update(account).where(account.c.account_id == "A-3").values(stage="paid_off"))
    for _ in range(2):
        result = record_inbound_sms(
            engine,
            address=PHONE,
            text="STOP, I dispute this debt",
            at=T0,
            provider="twilio",
            callback_id="SM-in-1",
        )
    assert result.recorded.duplicate
    with engine.connect() as c:
        held = c.execute(
            select(hold.c.account_id, hold.c.kind, hold.c.source).order_by(hold.c.account_id, hold.c.kind)
        ).all()
    assert [tuple(h) for h in held] == [
        ("A-1", "dispute", "webhook"),
        ("A-1", "sms_opt_out", "webhook"),
        ("A-2", "dispute", "webhook"),
        ("A-2", "sms_opt_out", "webhook"),
        ("A-3", "sms_opt_out", "webhook"),
    ]
    disputes = [e for e in _events(engine, "hold") if e.data["hold"] == "dispute"]
    assert [e.account_id for e in disputes] == ["A-1", "A-2"]
    assert disputes[0].detail == (
        "dispute hold placed: +1******4253 (twilio) wrote 'DISPUTE': 'STOP, I dispute this debt'"
    )


def test_opt_in_from_an_unknown_number_is_audited_without_an_account(engine: Engine) -> None:
    """START from a number no borrower has is kept as evidence too, and known if told again."""
    with engine.begin() as c:
        first = store.record_opt_in(c, inbound=_inbound("START", "SM-in-1", address="+14155550100"))
        again = store.record_opt_in(c, inbound=_inbound("START", "SM-in-1", address="+14155550100"))
    assert (first.accounts, first.changed, again.duplicate) == ((), False, True)
    (event,) = _events(engine, "opt_in")
    assert event.account_id is None and "+14155550100" not in event.detail


def test_opt_in_lifts_only_the_webhooks_hold(engine: Engine, tmp_path: Path) -> None:
    """START clears the opt-out and lifts the webhook's hold; an import's sms_opt_out flag stays."""
    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1", flags=""),
        account_record(account_id="A-2", borrower_id="B-1", flags="sms_opt_out"),
    )
    with engine.begin() as c:
        store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1"))
    with engine.begin() as c:
        result = store.record_opt_in(c, inbound=_inbound("START", "SM-in-2"))
    assert result.changed
    assert _row(engine, contact, address=PHONE).opted_out_at is None
    with engine.connect() as c:
        active = c.execute(select(hold.c.account_id, hold.c.source).where(hold.c.lifted_at.is_(None))).all()
    assert [tuple(r) for r in active] == [("A-2", "import")]
    assert len(_events(engine, "opt_in")) == 2


def test_start_after_a_request_to_cease_contact_opts_in_to_texts_but_keeps_the_cease_contact_hold(
    engine: Engine, tmp_path: Path
) -> None:
    """ "Stop contacting me" opts the number out and asks to cease communication (FDCPA 805(c)); a
    later START resumes the texts the keyword stopped, not contact: the cease-contact hold stays
    until a person lifts it."""
    from tasks.inbound import record_inbound_sms

    _import(engine, tmp_path, account_record(account_id="A-1", flags=""))
    for text, sid, minutes in [("Stop contacting me", "SM-in-1", 0), ("START", "SM-in-2", 5)]:
        record_inbound_sms(
            engine,
            address=PHONE,
            text=text,
            at=T0 + timedelta(minutes=minutes),
            provider="twilio",
            callback_id=sid,
        )
    assert _row(engine, contact, address=PHONE).opted_out_at is None
    with engine.connect() as c:
        active = c.execute(select(hold.c.kind).where(hold.c.lifted_at.is_(None))).scalars().all()
    assert active == ["cease_contact"]


def test_a_replayed_stop_after_start_does_not_opt_out_again(engine: Engine, tmp_path: Path) -> None:
    """A STOP callback told again after the borrower's START is recognised by its id and ignored."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    for text, sid in [("STOP", "SM-in-1"), ("START", "SM-in-2"), ("STOP", "SM-in-1")]:
        with engine.begin() as c:
            record = store.record_opt_out if text == "STOP" else store.record_opt_in
            last = record(c, inbound=_inbound(text, sid))
    assert last.duplicate
    assert _row(engine, contact, address=PHONE).opted_out_at is None


def test_opt_out_reaches_every_borrower_sharing_the_number(engine: Engine, tmp_path: Path) -> None:
    """Two borrowers with one number (a household) are both opted out by its STOP."""
    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B-2"),
    )
    with engine.begin() as c:
        result = store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1"))
    assert set(result.borrowers) == {"B-1", "B-2"}
    with engine.connect() as c:
        assert c.execute(
            select(contact.c.opted_out_at).where(contact.c.address == PHONE)
        ).scalars().all() == [T0, T0]


def test_opt_out_from_an_unknown_number_is_audited_without_an_account(engine: Engine) -> None:
    """STOP from a number no borrower has is kept as evidence, with no account, and for the number."""
    with engine.begin() as c:
        result = store.record_opt_out(c, inbound=_inbound("STOP", "SM-in-1", address="+14155550100"))
    assert result.accounts == () and result.changed
    (event,) = _events(engine, "opt_out")
    assert event.account_id is None and "+14155550100" not in event.detail
    assert _row(engine, opted_out_number, address="+14155550100").opted_out_at == T0


def test_an_unknown_numbers_opt_out_binds_the_borrowers_given_it_later_until_its_start(
    engine: Engine, tmp_path: Path
) -> None:
    """STOP from a number no borrower holds: the account imported with it later starts opted out.
    A START the number sent before that STOP (delivered late) changes nothing; one sent after it
    opts the number in, and the next borrower given it starts opted in."""
    stop, late, later = T0 + timedelta(minutes=5), T0, T0 + timedelta(minutes=10)
    with engine.begin() as c:
        store.record_opt_out(c, inbound=replace(_inbound("STOP", "SM-in-1"), at=stop))
        assert not store.record_opt_in(c, inbound=replace(_inbound("START", "SM-in-2"), at=late)).changed
    _import(engine, tmp_path, account_record(account_id="A-1", borrower_id="B-1"))
    assert _row(engine, contact, borrower_id="B-1").opted_out_at == stop
    with engine.begin() as c:
        assert store.record_opt_in(c, inbound=replace(_inbound("START", "SM-in-3"), at=later)).changed
    _import(engine, tmp_path, account_record(account_id="A-2", borrower_id="B-2"))
    with engine.connect() as c:
        assert c.execute(
            select(contact.c.opted_out_at).where(contact.c.address == PHONE)
        ).scalars().all() == [
            None,
            None,
        ]
        assert c.execute(select(opted_out_number)).all() == []


def test_reply_is_recorded_once_with_its_text(engine: Engine, tmp_path: Path) -> None:
    """A reply becomes a `reply` event per account with the text; the same callback again adds nothing."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    with engine.begin() as c:
        first = store.record_reply(c, inbound=_inbound("I can pay Friday", "SM-in-1"))
        second = store.record_reply(c, inbound=_inbound("I can pay Friday", "SM-in-1"))
    assert (first.open_accounts, second.duplicate) == (("A-1",), True)
    (event,) = _events(engine, "reply")
    assert event.data["text"] == "I can pay Friday" and PHONE not in event.detail


def test_reply_names_only_open_accounts_for_the_lifecycle(engine: Engine, tmp_path: Path) -> None:
    """A paid-off account is audited with the reply but not handed to the lifecycle."""
    _import(
        engine,
        tmp_path,
        account_record(account_id="A-1", borrower_id="B-1"),
        account_record(account_id="A-2", borrower_id="B-1"),
    )
    with engine.begin() as c:
        c.execute(update(account).where(account.c.account_id == "A-2").values(stage="paid_off"))
        result = store.record_reply(c, inbound=_inbound("hello", "SM-in-1"))
    assert set(result.accounts) == {"A-1", "A-2"} and result.open_accounts == ("A-1",)


def _referral(engine: Engine, account_id: str, filing_id: str, status: str = "submitted") -> None:
    with engine.begin() as c:
        c.execute(
            insert(referral).values(
                account_id=account_id, status=status, filing_id=filing_id, opened_at=T0, updated_at=T0
            )
        )


def _court(
    engine: Engine, status: str, at: datetime, callback_id: str, filing_id: str = "F-1"
) -> CourtRecorded:
    with engine.begin() as c:
        return record_court_status(
            c,
            filing_id=filing_id,
            status=status,
            at=at,
            provider="sandbox",
            callback_id=callback_id,
            reason=None,
        )


def test_court_status_is_stored_once_and_never_rewound(engine: Engine, tmp_path: Path) -> None:
    """A new status moves the referral; its repeat and an older status arriving late change nothing."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    _referral(engine, "A-1", "F-1")
    moved = _court(engine, "accepted", T0 + timedelta(hours=2), "c1")
    assert (moved.changed, moved.account_id, moved.previous) == (True, "A-1", "submitted")
    assert not _court(engine, "accepted", T0 + timedelta(hours=2), "c1").changed
    assert not _court(engine, "received", T0 + timedelta(hours=1), "c0").changed
    assert _row(engine, referral, filing_id="F-1").status == "accepted"
    assert len(_events(engine, "court")) == 1
    assert not _court(engine, "accepted", T0, "c9", filing_id="F-unknown").known


@pytest.mark.parametrize("ended", ["dismissed", "settled", "judgment", "cancelled"])
def test_a_court_status_after_the_referral_ended_never_reopens_it(
    ended: str, engine: Engine, tmp_path: Path
) -> None:
    """The filing was withdrawn when the borrower paid (or the case ended): a court's `accepted`
    sent before the withdrawal, delivered late, left the referral `accepted`, and the case went on
    against a borrower who paid. It is kept on the timeline, once, and changes nothing."""
    _import(engine, tmp_path, account_record(account_id="A-1"))
    _referral(engine, "A-1", "F-1", status=ended)
    late = _court(engine, "accepted", T0 + timedelta(hours=2), "c-late")
    assert (late.known, late.changed) == (True, False)
    assert _court(engine, "accepted", T0 + timedelta(hours=2), "c-late").changed is False  # pushed again
    assert _row(engine, referral, filing_id="F-1").status == ended
    [kept] = _events(engine, "court_after_end")
    assert kept.account_id == "A-1" and kept.detail.endswith(f"after the referral ended {ended}: not applied")


def test_a_text_from_a_borrower_finds_their_number_without_reading_every_contact_point(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Every text a borrower sends is attributed by its number, in one write transaction. Indexed
    by borrower first, the contact points were read whole two to four times a text: at a million
    accounts (1.2 million contact points) a STOP, a START or a reply held SQLite's only write lock
    190-300 ms, against the daily cycle's shards and every other callback; 3-15 ms by number."""
    from sqlalchemy import event

    from tasks.inbound import record_inbound_sms

    _import(sqlite_engine, tmp_path, account_record(account_id="A-1", borrower_id="B-1"))
    sent: list[tuple[str, Any]] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *args: sent.append((args[2], args[3])))
    texts = ["STOP", "START", "I lost my job, I can pay on the 15th", "wrong number"]
    results = [
        record_inbound_sms(
            sqlite_engine, address=PHONE, text=t, at=T0, provider="twilio", callback_id=f"SM-{n}"
        )
        for n, t in enumerate(texts)
    ]
    assert [r.classified.kind for r in results] == [
        InboundKind.OPT_OUT,
        InboundKind.OPT_IN,
        InboundKind.REPLY,
        InboundKind.WRONG_NUMBER,
    ]
    reads = [(q, p) for q, p in sent if "contact_point" in q and not q.lstrip().startswith("INSERT")]
    assert len(reads) >= 8  # each text reads its number's contact points, some twice or more
    with sqlite_engine.connect() as connection:
        for statement, parameters in reads:
            plan = [r[3] for r in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert not any(step.startswith("SCAN contact_point") for step in plan), (statement, plan)
