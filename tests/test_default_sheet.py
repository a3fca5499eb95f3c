"""A GB default notice goes with the FCA's default information sheet, or not at all.

Consumer Credit Act 1974 s.88(4A): a default notice "must also include a copy of the current
default information sheet under section 86A"; one without it is no valid default notice, and the
agreement cannot be enforced on it. Before, the GB notice only said that the FCA publishes the
sheet and that we send it on request: every GB notice arrears mailed was defective. Now the lender
supplies the FCA's PDF (`ARREARS_FCA_DEFAULT_SHEET`, checked when the settings are read), its
pages follow the notice's in the PDF mailed, stored and hashed as mailed, with the sheet's SHA-256
and page count in the letter's audit event; without it the notice is blocked, naming what to do,
and its review waits for it as for a missing address, until an operator rewrites it. The IE notice
(CCA 1995 s.54) and every other letter carry nothing.
"""

import hashlib
import io
from pathlib import Path
from typing import Any

import pypdf
import pytest
from pydantic import ValidationError
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import Engine
from typer.testing import CliRunner

from arrears.letters import render
from arrears.letters.enclosures import (
    DEFAULT_INFORMATION_SHEET,
    Enclosed,
    enclose,
    enclosures_for,
    read_enclosure,
)
from arrears.letters.notices import context_from_json
from arrears.models import Letter
from arrears.settings import Settings, get_settings
from tests.later_stage_helpers import at, events, put_in_review, rows
from tests.test_default_notices_gb_ie import LEEDS, _decide, _refused

letter_t = Letter.__table__  # type: ignore[attr-defined]

DUBLIN = {
    "jurisdiction": "IE",
    "timezone": "Europe/Dublin",
    "currency": "EUR",
    "phone": "+353 85 123 4567",
    "address_line1": "1 O'Connell Street",
    "city": "Dublin",
    "state": "",
    "postal_code": "D01 F5P2",
}


def _pages(pdf: bytes) -> list[str]:
    """Each page's words, whitespace runs as one space."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def _sheet(path: Path, pages: int) -> Path:
    canvas = Canvas(str(path), invariant=1)
    for page in range(1, pages + 1):
        canvas.drawString(72, 760, f"Stand-in default information sheet, page {page} of {pages}")
        canvas.showPage()
    canvas.save()
    return path


def _notice_alone(letter: Any) -> list[str]:
    """The pages of the letter's notice as rendered from its stored context, without enclosures."""
    context = context_from_json(letter.context)
    return _pages(render(letter.kind, context).pdf)


def _rendered_events(engine: Engine, account_id: str) -> list[Any]:
    return [e for e in events(engine, account_id, "letter") if "rendered (sha256" in e.detail]


def test_the_gb_default_notice_alone_needs_the_fca_sheet() -> None:
    """The table: the GB right-to-cure letter (the default notice) carries the FCA's sheet, by
    s.88(4A); the IE notice, the US notices, the 催收函 and a GB plan confirmation carry nothing."""
    assert enclosures_for("right_to_cure", "GB") == (DEFAULT_INFORMATION_SHEET,)
    assert "Consumer Credit Act 1974 s.88(4A)" in DEFAULT_INFORMATION_SHEET.source
    assert DEFAULT_INFORMATION_SHEET.env == "ARREARS_FCA_DEFAULT_SHEET"
    for kind, jurisdiction in (
        ("right_to_cure", "IE"),
        ("right_to_cure", "US-IA"),
        ("collection_notice", "CN"),
        ("hardship_plan", "GB"),
        ("notice_of_sale", "US"),
    ):
        assert enclosures_for(kind, jurisdiction) == (), (kind, jurisdiction)


def test_enclose_appends_the_sheets_pages_after_the_letters_and_gives_the_same_bytes_each_time(
    tmp_path: Path,
) -> None:
    """The letter's pages, then the sheet's, in order; the same inputs give identical bytes (a
    letter's PDF is evidence, like its render); with nothing to enclose, the letter as it was."""
    letter = render("right_to_cure", _gb_context()).pdf
    sheet = read_enclosure(DEFAULT_INFORMATION_SHEET, _sheet(tmp_path / "sheet.pdf", 3))
    assert (sheet.pages, sheet.sha256) == (3, hashlib.sha256(sheet.pdf).hexdigest())
    mailed = enclose(letter, sheet)
    assert mailed == enclose(letter, sheet)
    assert _pages(mailed) == _pages(letter) + [
        f"Stand-in default information sheet, page {n} of 3" for n in (1, 2, 3)
    ]
    assert enclose(letter) == letter


def _gb_context() -> Any:
    from tests.test_default_notices_gb_ie import _notice

    return _notice("GB", "GBP")


def test_a_mailed_gb_default_notice_carries_the_sheet_after_its_pages_hashed_as_mailed(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, default_sheet: Path
) -> None:
    """The PDF handed to the print shop is the notice's pages, then the sheet's two; the SHA-256
    stored with the letter is of those bytes (the sandbox received exactly them), and the audit
    event of its rendering records the sheet that went: its SHA-256, its pages, the statute."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, "A-GB1", **LEEDS)
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 1
    assert send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))["letters_sent"] == 1

    [sent] = letters_sandbox.letters()
    [letter] = rows(mail_db, letter_t, "A-GB1")
    notice = _notice_alone(letter)
    assert _pages(letter.pdf) == [
        *notice,
        "Stand-in default information sheet, page 1 of 2",
        "Stand-in default information sheet, page 2 of 2",
    ]
    assert "is enclosed with this notice" in " ".join(notice)
    assert letter.pdf_sha256 == hashlib.sha256(letter.pdf).hexdigest() == sent["pdf_sha256"]
    assert sent["pdf_size"] == len(letter.pdf)

    [rendered] = _rendered_events(mail_db, "A-GB1")
    [evidence] = rendered.data["enclosed"]
    assert evidence == {
        "name": "fca_default_information_sheet",
        "sha256": hashlib.sha256(default_sheet.read_bytes()).hexdigest(),
        "pages": 2,
        "source": DEFAULT_INFORMATION_SHEET.source,
    }
    assert rendered.data["sha256"] == letter.pdf_sha256
    assert "fca_default_information_sheet (2 pages" in rendered.detail


def test_without_the_setting_a_gb_notice_is_blocked_its_review_waits_and_a_rewrite_mails_it_once_set(
    mail_db: Engine,
    db_url: str,
    tmp_path: Path,
    letters_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ARREARS_FCA_DEFAULT_SHEET: the GB notice is written blocked, saying the statute, the
    setting and the rewrite to run; nothing is mailed, the review waits for its notice and a
    decision is refused as for a missing address. Once the sheet is set, `arrears letters rewrite
    --blocked-for` writes it again and the next run mails it with the sheet."""
    from tasks.letters import NO_SHEET, send_letters
    from tasks.review import prepare_reviews, waiting

    put_in_review(mail_db, tmp_path, "A-GB1", **LEEDS)
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 1
    [blocked] = rows(mail_db, letter_t, "A-GB1")
    assert (blocked.kind, blocked.status, blocked.pdf) == ("right_to_cure", "blocked", None)
    assert blocked.reason.startswith(f"{NO_SHEET}: ARREARS_FCA_DEFAULT_SHEET is not set.")
    assert "Consumer Credit Act 1974 s.88(4A)" in blocked.reason
    assert blocked.reason.endswith(f'`arrears letters rewrite --blocked-for "{NO_SHEET}"`')
    assert send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))["letters_sent"] == 0
    assert letters_sandbox.letters() == []
    [w] = [w for w in waiting(mail_db, now=at("2027-02-01T00:00:00Z")) if w.account_id == "A-GB1"]
    assert w.waits_for == "blocked" and NO_SHEET in w.detail
    assert "right-to-cure" in _refused(_decide(db_url, "2027-02-01T12:00:00Z"))

    monkeypatch.setenv("ARREARS_FCA_DEFAULT_SHEET", str(_sheet(tmp_path / "sheet.pdf", 2)))
    get_settings.cache_clear()
    from deployments.cli import app

    rewritten = CliRunner().invoke(
        app,
        [
            "letters",
            "rewrite",
            "--blocked-for",
            NO_SHEET,
            "--reason",
            "the FCA sheet is configured",
            "--as-of",
            "2026-12-02T09:00:00Z",
            "--database",
            db_url,
        ],
    )
    assert rewritten.exit_code == 0, rewritten.output
    assert "1 letters written again" in rewritten.output
    assert send_letters.fn(as_of=at("2026-12-02T09:05:00Z"))["letters_sent"] == 1
    [sent] = letters_sandbox.letters()
    [letter] = rows(mail_db, letter_t, "A-GB1")
    assert letter.id == blocked.id and letter.status == "created"
    assert sent["pdf_sha256"] == letter.pdf_sha256
    assert _pages(letter.pdf)[-2:] == [
        "Stand-in default information sheet, page 1 of 2",
        "Stand-in default information sheet, page 2 of 2",
    ]


def test_a_notice_whose_sheet_file_went_missing_before_it_was_sent_is_blocked_not_mailed_without_it(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, default_sheet: Path
) -> None:
    """Written while the sheet was there, sent after the file was removed (the settings read
    before): the notice is blocked as it is rendered, naming the file and the rewrite, and nothing
    goes to the print shop; the Iowa notice beside it goes as ever."""
    from tasks.letters import NO_SHEET, send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, "A-GB1", **LEEDS)
    put_in_review(mail_db, tmp_path, "A-IA1")
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 2
    assert get_settings().fca_default_sheet == default_sheet
    default_sheet.unlink()
    counts = send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))
    assert (counts["letters_sent"], counts["letters_blocked"]) == (1, 1)
    [sent] = letters_sandbox.letters()
    assert sent["to"]["address_country"] == "US"
    [gb] = rows(mail_db, letter_t, "A-GB1")
    assert (gb.status, gb.pdf) == ("blocked", None)
    assert gb.reason.startswith(f"{NO_SHEET}: ARREARS_FCA_DEFAULT_SHEET: {default_sheet}: ")
    assert f'--blocked-for "{NO_SHEET}"' in gb.reason


def test_the_ie_notice_and_a_us_notice_go_without_a_sheet_and_need_no_setting(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any
) -> None:
    """No ARREARS_FCA_DEFAULT_SHEET: the Irish default notice (CCA 1995 s.54 asks no sheet) and
    the Iowa notice are mailed as rendered, nothing appended and nothing recorded as enclosed."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    assert get_settings().fca_default_sheet is None
    put_in_review(mail_db, tmp_path, "A-IE1", **DUBLIN)
    put_in_review(mail_db, tmp_path, "A-IA1")
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 2
    assert send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))["letters_sent"] == 2
    for account_id in ("A-IE1", "A-IA1"):
        [letter] = rows(mail_db, letter_t, account_id)
        assert letter.status == "created"
        assert letter.pdf == render(letter.kind, context_from_json(letter.context)).pdf
        [rendered] = _rendered_events(mail_db, account_id)
        assert "enclosed" not in rendered.data and "enclosing" not in rendered.detail


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda tmp: tmp / "missing.pdf", "No such file or directory"),
        (lambda tmp: _write(tmp / "sheet.pdf", b"Default information sheet, as text"), "is not a PDF"),
        (lambda tmp: _write(tmp / "sheet.pdf", b"%PDF-1.4\n% cut short\n"), "is not a PDF pypdf can read"),
        (lambda tmp: _write(tmp / "sheet.pdf", _no_page()), "has no page"),
    ],
    ids=["missing", "text", "damaged", "no-page"],
)
def test_a_sheet_setting_that_is_no_readable_pdf_is_a_settings_error_naming_it(
    make: Any, complaint: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path to nothing, a text file, a damaged PDF or one without a page: refused when the
    settings are read, naming ARREARS_FCA_DEFAULT_SHEET and what is wrong; a command stops with
    it (exit 2) before it runs."""
    path = make(tmp_path)
    monkeypatch.setenv("ARREARS_FCA_DEFAULT_SHEET", str(path))
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert f"ARREARS_FCA_DEFAULT_SHEET: {path}" in str(refused.value) and complaint in str(refused.value)

    from deployments.cli import app
    from deployments.cli._common import CliError

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["letters", "list", "--database", sqlite_url])
    assert isinstance(result.exception, CliError) and result.exception.exit_code == 2
    said = str(result.exception)
    assert said.startswith("invalid settings: fca_default_sheet: ") and "ARREARS_FCA_DEFAULT_SHEET" in said


def test_a_readable_sheet_setting_is_taken_with_the_home_directory_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~/…` names the file in the home directory, as a person writes it in arrears.toml."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _sheet(tmp_path / "sheet.pdf", 1)
    monkeypatch.setenv("ARREARS_FCA_DEFAULT_SHEET", "~/sheet.pdf")
    assert Settings().fca_default_sheet == tmp_path / "sheet.pdf"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _no_page() -> bytes:
    out = io.BytesIO()
    pypdf.PdfWriter().write(out)
    return out.getvalue()


def test_read_enclosure_records_what_the_evidence_names(tmp_path: Path) -> None:
    """The sheet read from its file: its bytes, their SHA-256 and its page count, as the audit
    event records them."""
    path = _sheet(tmp_path / "sheet.pdf", 2)
    sheet = read_enclosure(DEFAULT_INFORMATION_SHEET, path)
    assert isinstance(sheet, Enclosed) and sheet.pdf == path.read_bytes()
    assert sheet.evidence() == {
        "name": "fca_default_information_sheet",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "pages": 2,
        "source": DEFAULT_INFORMATION_SHEET.source,
    }
