"""A GB account in arrears gets the statutory notice of sums in arrears, with the FCA's sheet.

Consumer Credit Act 1974 s.86B: under a fixed-sum credit agreement (a GB car loan on hire purchase),
once the arrears come to the last two payments due, the creditor gives the debtor a notice of sums
in arrears within 14 days, then further ones at intervals of not more than six months until the
debtor is out of arrears; s.86A: each with the FCA's arrears information sheet; s.86D: while it is
not given, the agreement cannot be enforced and no interest or default sum runs. Before, arrears
sent none. Now the cycle writes it (`tasks.lifecycle_letters.write_arrears_notices`): the letter
`arrears_notice` (template `arrears_notice.GB.j2`), the sheet's pages appended as it is mailed, or
blocked without it until an operator rewrites it once the sheet is set; its `deadline` the day
it must be mailed by, so that one not mailed in time is listed by `arrears letters list --overdue`.
IE, US and CN accounts owe none.
"""

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import Engine
from typer.testing import CliRunner

from arrears.jurisdictions import PROFILES, ProfileError, resolve
from arrears.letters import render
from arrears.letters.enclosures import ARREARS_INFORMATION_SHEET, DEFAULT_INFORMATION_SHEET, enclosures_for
from arrears.letters.notices import context_from_json
from arrears.models import Letter
from arrears.settings import get_settings
from tests.later_stage_helpers import at, day, events, import_rows, pay, rows, us_account
from tests.test_default_notices_gb_ie import LEEDS
from tests.test_default_sheet import DUBLIN

letter_t = Letter.__table__  # type: ignore[attr-defined]

T0 = "2026-12-01T17:00:00Z"
SHEET = [f"Stand-in arrears information sheet, page {n} of 3" for n in (1, 2, 3)]


def _gb(account_id: str, past_due: str = "825.00", **kw: str) -> dict[str, str]:
    """A Leeds borrower on £412.50 a month, `past_due` behind (two instalments by default)."""
    return us_account(
        account_id, **({"past_due_amount": past_due, "oldest_due_date": "2026-10-01"} | LEEDS | kw)
    )


def _unaddressed(record: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in record.items() if k not in ("address_line1", "city", "state", "postal_code")}


def _notices(engine: Engine, account_id: str) -> list[Any]:
    return [r for r in rows(engine, letter_t, account_id) if r.kind == "arrears_notice"]


def _pages(pdf: bytes) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def _write(when: str) -> int:
    from tasks.lifecycle_letters import write_arrears_notices

    return write_arrears_notices(at(when))["arrears_notices_written"]


def _cli(db_url: str, *args: str) -> Any:
    from deployments.cli import app

    return CliRunner().invoke(app, [*args, "--database", db_url])


def test_a_gb_account_two_instalments_behind_gets_one_notice_at_the_cycle_with_the_arrears_sheet(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, arrears_sheet: Path
) -> None:
    """The cycle writes the GB account two instalments behind one notice of sums in arrears and
    mails it: the notice's pages, then the sheet's three, hashed as mailed, the sheet's evidence in
    the audit trail, the arrears and the balance on it, to be mailed before the 15th (the 14 days
    beginning with 1 December). The next day's cycle writes none. The GB account one instalment
    behind, and the Irish and Iowa accounts two behind, get none."""
    import_rows(
        mail_db,
        tmp_path,
        [
            _gb("A-GB2"),
            _gb("A-GB1", past_due="412.50"),
            us_account("A-IE2", past_due_amount="825.00", oldest_due_date="2026-10-01", **DUBLIN),
            us_account("A-IA2", past_due_amount="825.00", oldest_due_date="2026-10-01"),
        ],
    )
    assert day(mail_db, T0)["later"]["arrears_notices_written"] == 1

    [notice] = _notices(mail_db, "A-GB2")
    assert (notice.template, notice.status) == ("arrears_notice.GB.j2", "created")
    assert notice.deadline == datetime(2026, 12, 15, tzinfo=UTC)  # midnight in London, in December
    for other in ("A-GB1", "A-IE2", "A-IA2"):
        assert _notices(mail_db, other) == [], other

    alone = _pages(render("arrears_notice", context_from_json(notice.context)).pdf)
    assert _pages(notice.pdf) == [*alone, *SHEET]
    words = " ".join(alone)
    assert words.startswith("Notice of sums in arrears")
    assert "section 86B of the Consumer Credit Act 1974" in words
    assert "Arrears: £825.00" in words and "Balance still to pay: £18,450.00" in words
    assert "arrears information sheet published by the Financial Conduct Authority is enclosed" in words
    assert "moneyhelper.org.uk" in words and "we may take steps to enforce the agreement" in words
    [mailed] = [s for s in letters_sandbox.letters() if s["pdf_sha256"] == notice.pdf_sha256]
    assert mailed["to"]["address_country"] == "GB"
    assert notice.pdf_sha256 == hashlib.sha256(notice.pdf).hexdigest()
    [rendered] = [e for e in events(mail_db, "A-GB2", "letter") if "rendered (sha256" in e.detail]
    assert rendered.data["enclosed"] == [
        {
            "name": "fca_arrears_information_sheet",
            "sha256": hashlib.sha256(arrears_sheet.read_bytes()).hexdigest(),
            "pages": 3,
            "source": ARREARS_INFORMATION_SHEET.source,
        }
    ]

    assert day(mail_db, "2026-12-02T17:00:00Z")["later"]["arrears_notices_written"] == 0
    assert len(_notices(mail_db, "A-GB2")) == 1


def test_a_further_notice_every_150_days_while_in_arrears_and_a_first_at_once_after_a_cure(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, arrears_sheet: Path
) -> None:
    """Still behind 150 days (`arrears_notice_every_days`) after the first notice, a second, though
    the debtor is down to one instalment behind: the duty lasts until the debtor is out of arrears
    (s.86B(3)-(5)). Paid up, the account is cured and owes none; two instalments behind again, a new
    first notice at once, not 150 days after the last."""
    import_rows(mail_db, tmp_path, [_gb("A-GB2")])
    assert day(mail_db, T0)["later"]["arrears_notices_written"] == 1
    assert _write("2027-04-30T16:59:59Z") == 0  # 149 days and a bit
    import_rows(mail_db, tmp_path, [_gb("A-GB2", past_due="412.50")])  # paid one, still behind
    assert _write("2027-04-30T17:00:00Z") == 1  # 150 days
    first, second = _notices(mail_db, "A-GB2")
    assert second.idempotency_key != first.idempotency_key
    assert second.deadline == datetime(2027, 5, 13, 23, tzinfo=UTC)  # midnight in London, summer time
    assert second.context["amount_to_cure"]["v"] == "412.50"
    assert _write("2027-05-01T17:00:00Z") == 0

    pay(mail_db, tmp_path, "A-GB2", "412.50", "2027-05-02T10:00:00Z")
    day(mail_db, "2027-05-02T17:00:00Z")
    [cured] = [e for e in events(mail_db, "A-GB2", "transition") if e.data["to"] == "cured"]
    assert cured.at == at("2027-05-02T17:00:00Z")
    assert _write("2027-05-03T17:00:00Z") == 0  # out of arrears: no notice is owed

    again = _gb("A-GB2", oldest_due_date="2027-06-01")  # two instalments behind again
    import_rows(mail_db, tmp_path, [again], now=at("2027-07-02T12:00:00Z"))
    assert _write("2027-07-02T17:00:00Z") == 1  # 61 days after the last: a new duty, a first notice
    assert len(_notices(mail_db, "A-GB2")) == 3
    assert _write("2027-07-03T17:00:00Z") == 0


def test_without_the_arrears_sheet_the_notice_is_blocked_and_a_rewrite_mails_it_once_set(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ARREARS_FCA_ARREARS_SHEET: the notice is written blocked with the arrears sheet's own
    reason (not the default sheet's, so each is rewritten when its sheet is set), naming the
    statute, the setting and the rewrite; nothing is mailed. Once set, `arrears letters rewrite
    --blocked-for` writes it again in its place, keeping the day it was owed by, and it goes with
    the sheet."""
    from tasks.letters import NO_ARREARS_SHEET, NO_SHEET, send_letters

    assert get_settings().fca_arrears_sheet is None
    assert not NO_ARREARS_SHEET.startswith(NO_SHEET) and not NO_SHEET.startswith(NO_ARREARS_SHEET)
    import_rows(mail_db, tmp_path, [_gb("A-GB2")])
    assert _write(T0) == 1
    [blocked] = _notices(mail_db, "A-GB2")
    assert (blocked.status, blocked.pdf) == ("blocked", None)
    assert blocked.reason.startswith(f"{NO_ARREARS_SHEET}: ARREARS_FCA_ARREARS_SHEET is not set.")
    assert "Consumer Credit Act 1974 ss.86A-86B" in blocked.reason
    assert blocked.reason.endswith(f'`arrears letters rewrite --blocked-for "{NO_ARREARS_SHEET}"`')
    assert send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))["letters_sent"] == 0
    assert letters_sandbox.letters() == []
    assert _write("2026-12-02T17:00:00Z") == 0  # written, blocked: not written twice

    path = tmp_path / "sheet.pdf"
    canvas = Canvas(str(path), invariant=1)
    for page in SHEET:
        canvas.drawString(72, 760, page)
        canvas.showPage()
    canvas.save()
    monkeypatch.setenv("ARREARS_FCA_ARREARS_SHEET", str(path))
    get_settings.cache_clear()
    rewritten = _cli(
        db_url,
        "letters",
        "rewrite",
        "--blocked-for",
        NO_ARREARS_SHEET,
        "--reason",
        "the FCA arrears sheet is configured",
        "--as-of",
        "2026-12-03T09:00:00Z",
    )
    assert rewritten.exit_code == 0, rewritten.output
    assert "1 letters written again" in rewritten.output
    assert send_letters.fn(as_of=at("2026-12-03T09:05:00Z"))["letters_sent"] == 1
    [letter] = _notices(mail_db, "A-GB2")
    assert (letter.id, letter.status, letter.deadline) == (blocked.id, "created", blocked.deadline)
    assert _pages(letter.pdf)[-3:] == SHEET
    [sent] = letters_sandbox.letters()
    assert sent["pdf_sha256"] == letter.pdf_sha256


def test_a_notice_not_mailed_in_14_days_is_listed_as_overdue(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """Blocked (no sheet), the notice written on 1 December is not overdue on the 14th, the last
    of its 14 days, and is from the 15th: `letters list --overdue` shows it, with why it waits."""
    import_rows(mail_db, tmp_path, [_gb("A-GB2")])
    assert _write(T0) == 1
    [notice] = _notices(mail_db, "A-GB2")

    def overdue(when: str) -> list[dict[str, Any]]:
        listed = _cli(db_url, "letters", "list", "--overdue", "--as-of", when, "--json")
        assert listed.exit_code == 0, listed.output
        found: list[dict[str, Any]] = json.loads(listed.stdout)
        return found

    assert overdue("2026-12-14T23:59:59Z") == []
    [late] = overdue("2026-12-15T00:00:00Z")
    assert (late["id"], late["kind"], late["status"]) == (notice.id, "arrears_notice", "blocked")
    assert late["deadline"] == "2026-12-15T00:00:00+00:00"
    assert late["reason"].startswith("no arrears information sheet")


def test_a_notice_without_an_address_is_written_again_when_one_comes_while_the_arrears_last(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, arrears_sheet: Path
) -> None:
    """No address: blocked, and written again in its place by the import that brings one (the
    existing readdress path), keeping its mail-by day. One whose arrears were paid meanwhile is
    left as it was: nothing owes it any more."""
    from tasks.letters import NO_ADDRESS
    from tasks.lifecycle_letters import readdress_letters

    import_rows(mail_db, tmp_path, [_unaddressed(_gb("A-GB2")), _unaddressed(_gb("A-GB3"))])
    assert _write(T0) == 2
    blocked = {a: _notices(mail_db, a)[0] for a in ("A-GB2", "A-GB3")}
    assert {(n.status, n.reason) for n in blocked.values()} == {("blocked", NO_ADDRESS)}

    paid = {k: v for k, v in _gb("A-GB3", past_due="0.00").items() if k != "oldest_due_date"}
    import_rows(mail_db, tmp_path, [_gb("A-GB2"), paid])
    assert readdress_letters(at("2026-12-02T09:00:00Z")) == {"letters_readdressed": 1}
    [again] = _notices(mail_db, "A-GB2")
    assert (again.id, again.status, again.deadline) == (
        blocked["A-GB2"].id,
        "pending",
        blocked["A-GB2"].deadline,
    )
    [left] = _notices(mail_db, "A-GB3")
    assert (left.status, left.reason) == ("blocked", NO_ADDRESS)


def test_a_notice_under_a_breathing_space_is_written_and_held_pending_by_the_send_path(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, arrears_sheet: Path
) -> None:
    """A collection hold does not stop the notice being written (the duty is the statute's) but
    the send path holds every letter of an account under a hold that bars enforcement: it waits,
    pending; written again each day from the day's facts, as any held letter is once it has
    waited a day, it keeps the day it was owed by, and is one notice, not a new one a day."""
    from arrears.storage.holds import place_hold
    from arrears.vocabulary import Hold
    from tasks.letters import send_letters
    from tasks.lifecycle_letters import readdress_letters

    import_rows(mail_db, tmp_path, [_gb("A-GB2")])
    with mail_db.begin() as c:
        place_hold(c, account_id="A-GB2", kind=Hold.BREATHING_SPACE, by="agent:ann", why="adviser", at=at(T0))
    assert _write("2026-12-01T18:00:00Z") == 1
    assert send_letters.fn(as_of=at("2026-12-01T18:05:00Z"))["letters_sent"] == 0
    [held] = _notices(mail_db, "A-GB2")
    assert held.status == "pending" and letters_sandbox.letters() == []
    assert readdress_letters(at("2026-12-02T19:00:00Z")) == {"letters_readdressed": 1, "letters_stale": 1}
    assert _write("2026-12-02T19:00:00Z") == 0
    [again] = _notices(mail_db, "A-GB2")
    assert (again.id, again.status, again.deadline) == (held.id, "pending", held.deadline)
    assert send_letters.fn(as_of=at("2026-12-02T19:05:00Z"))["letters_sent"] == 0


def test_gb_alone_owes_the_notice_with_its_source_and_a_policy_may_not_loosen_it() -> None:
    """The GB profile owes it: two payments, 14 days, every 150 days, citing s.86B and s.86D; no
    other profile does, and the letter carries the arrears sheet (the default notice the default
    sheet). A policy may make it sooner or oftener, not turn it off or later."""
    gb = PROFILES["GB"]
    assert (gb.arrears_notice, gb.arrears_notice_payments, gb.arrears_notice_within_days) == (True, 2, 14)
    assert gb.arrears_notice_every_days == 150
    assert gb.arrears_notice_every_days + gb.arrears_notice_within_days + gb.cure_mailing_days <= 181
    sources = dict(gb.sources)
    assert (
        "Consumer Credit Act 1974 s.86B" in sources["arrears_notice"] and "s.86D" in sources["arrears_notice"]
    )
    assert "s.86D(1)(b)" in sources["arrears_notice_every"]
    for code, other in PROFILES.items():
        if code != "GB":
            assert not other.arrears_notice and other.arrears_notice_every_days is None, code
    assert enclosures_for("arrears_notice", "GB") == (ARREARS_INFORMATION_SHEET,)
    assert enclosures_for("right_to_cure", "GB") == (DEFAULT_INFORMATION_SHEET,)
    assert enclosures_for("arrears_notice", "IE") == ()

    assert resolve({"GB": {"arrears_notice_every_days": 90}})["GB"].arrears_notice_every_days == 90
    for loosened, said in (
        ({"arrears_notice": False}, "profiles.GB.arrears_notice: a rule requires it"),
        ({"arrears_notice_payments": 3}, "profiles.GB.arrears_notice_payments: at most 2"),
        ({"arrears_notice_within_days": 21}, "profiles.GB.arrears_notice_within_days"),
        ({"arrears_notice_every_days": 175}, "more than six months"),
    ):
        with pytest.raises(ProfileError) as refused:
            resolve({"GB": loosened})
        assert said in str(refused.value), loosened


def test_the_notice_says_what_the_schedule_asks_in_its_order() -> None:
    """The heading, the parties and the agreement, the arrears and the balance, the sheet enclosed,
    talk to us, free advice, then what may follow: in that order, and a context without the
    amounts is refused rather than rendered."""
    from datetime import date
    from decimal import Decimal

    from arrears.letters import LetterContext

    context = LetterContext(
        jurisdiction="GB",
        lender="Acme Motor Finance",
        lender_contact="0113 496 0000",
        borrower_name="Jane Smith",
        account_reference="A-GB2",
        letter_date=date(2026, 12, 1),
        currency="GBP",
        amount_to_cure=Decimal("825.00"),
        balance=Decimal("18450.00"),
    )
    text = render("arrears_notice", context).text
    order = [
        "Notice of sums in arrears",
        "under a regulated agreement",
        "From: Acme Motor Finance",
        "To: Jane Smith",
        "account number A-GB2",
        "Arrears: £825.00",
        "Balance still to pay: £18,450.00",
        "arrears information sheet",
        "discuss your arrears",
        "free and independent debt advice",
        "we may take steps to enforce the agreement",
    ]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)
    with pytest.raises(ValueError, match="the balance still to pay"):
        render("arrears_notice", context_from_json({**_json(context), "balance": None}))
    with pytest.raises(ValueError, match="arrears above zero"):
        render(
            "arrears_notice",
            context_from_json({**_json(context), "amount_to_cure": {"$": "Decimal", "v": "0"}}),
        )


def _json(context: Any) -> dict[str, Any]:
    from arrears.letters.notices import context_json

    return context_json(context)
