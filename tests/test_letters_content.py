"""What a letter says on paper and on the wire: every word on the page, and a request Lob takes."""

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pypdf
import pytest
from reportlab.pdfbase.pdfmetrics import stringWidth
from sqlalchemy import Engine

from integrations.letters.contract import LENDER, make_request
from integrations.letters.protocol import PostalAddress
from tests.test_letters_render import CN, _notice

LONG_NAME = " ".join(["Maximiliana de los Ángeles"] * 8)[:200]  # a name as long as the import takes


def _runs(pdf: bytes) -> list[tuple[str, float, float, float]]:
    """Each text run drawn on each page: its text, x, its width in points, and the page's width."""
    found: list[tuple[str, float, float, float]] = []
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        paper = float(page.mediabox.width)

        def seen(text: str, cm: Any, tm: Any, font: Any, size: float, paper: float = paper) -> None:
            text = text.rstrip("\n")
            if text.strip() and font is not None:
                face = str(font["/BaseFont"]).lstrip("/")
                found.append((text, float(tm[4]), stringWidth(text, face, size), paper))

        page.extract_text(visitor_text=seen)
    return found


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("right_to_cure", _notice(borrower_name=LONG_NAME, borrower_address=(LONG_NAME, "1 Main St"))),
        ("right_to_cure", _notice(borrower_name="X" * 200, borrower_address=("X" * 200, "1 Main St"))),
        ("collection_notice", replace(CN, borrower_name="张" * 200, borrower_address=("张" * 200, "上海市"))),
    ],
    ids=["words", "one-word", "chinese"],
)
def test_a_name_of_200_characters_is_printed_whole_within_the_paper(kind: str, context: Any) -> None:
    """A 200-character name, in the envelope's window and in the salutation, wraps within the
    margins (it ran off the right edge of the page in the window, and as one word in "Dear …"),
    and reads back whole."""
    from arrears.letters import render

    letter = render(kind, context)
    runs = _runs(letter.pdf)
    for text, x, width, paper in runs:
        assert x + width <= paper - 64 + 0.01, (text[:30], x + width, paper)
    drawn = "".join(text for text, *_ in runs).replace(" ", "")
    assert drawn.count(context.borrower_name.replace(" ", "")) >= 2  # the window and the salutation


def test_lob_is_sent_names_it_takes_and_keys_a_header_can_carry() -> None:
    """Lob refuses a `name` over 40 characters and a metadata value with `"` or `\\`, and no HTTP
    header carries Chinese: the form cuts a long name at a word (the PDF names the borrower in
    full), and a key that cannot travel as it is travels as its ASCII beginning and a digest."""
    from integrations.letters.lob import LobLettersProvider, LobSettings, wire_key

    provider = LobLettersProvider(LobSettings(api_key="test_k", webhook_secret="s"))  # type: ignore[arg-type]
    try:
        long_lender = PostalAddress(
            name="Arrears Auto Finance Company of North America, LLC",
            line1="100 Lender Way",
            city="Des Moines",
            state="IA",
            postal_code="50309",
        )
        request = make_request(
            'inst-letter-贷款"1-review-1',
            recipient=PostalAddress(
                name=LONG_NAME, line1="1 Main St", city="Ames", state="IA", postal_code="50010"
            ),
            sender=long_lender,
        )
        form = provider.form(request)
    finally:
        provider.close()
    assert form["to[name]"] == "Maximiliana de los Ángeles Maximiliana"
    assert form["from[name]"] == "Arrears Auto Finance Company of North"
    key = form["metadata[idempotency_key]"]
    assert key == wire_key(request.idempotency_key) and key.isascii() and not set(key) & set('"\\')
    assert key.startswith("inst-letter-") and len(key) <= 256
    assert wire_key("inst-letter-a-1-review-1") == "inst-letter-a-1-review-1"  # a plain key as it is
    assert wire_key("inst-letter-贷款-2") != wire_key("inst-letter-贷款-1")


def test_a_long_name_and_a_chinese_key_are_mailed_once_by_the_sandbox_lob(
    letters_sandbox_server: Any,
) -> None:
    """Through the sandbox Lob (which refuses a name over 40 characters, as Lob does), a letter
    to a long name from a lender with a long name, under a key in Chinese, is mailed, a resend
    answers the same letter, and `find` finds it by its key."""
    from integrations import retries
    from integrations.providers import build_provider

    letters_sandbox_server.reset()
    request = make_request(
        "inst-letter-贷款-1-review-1",
        recipient=PostalAddress(
            name=LONG_NAME, line1="1 Main St", city="Ames", state="IA", postal_code="50010"
        ),
        sender=PostalAddress(
            name="Arrears Auto Finance Company of North America, LLC",
            line1=LENDER.line1,
            city=LENDER.city,
            state=LENDER.state,
            postal_code=LENDER.postal_code,
        ),
    )
    with (
        retries.testing(),
        build_provider(
            "letters", "sandbox", letters_sandbox_server.base_url, letters_sandbox_server.credentials
        ) as provider,
    ):
        first = provider.send(request)
        again = provider.send(request)
        found = provider.find(request.idempotency_key)
    assert again.id == first.id and found is not None and found.id == first.id
    assert first.idempotency_key == request.idempotency_key
    [mailed] = letters_sandbox_server.letters()
    assert len(mailed["to"]["name"]) <= 40 and len(mailed["from"]["name"]) <= 40


@pytest.mark.usefixtures("prefect_harness")
def test_a_notice_to_a_borrower_with_a_long_name_goes_to_the_post(
    mail_db: Engine, db_url: str, tmp_path: Path, letters_sandbox: Any
) -> None:
    """A right-to-cure notice to a borrower whose name is longer than Lob's 40 characters is
    mailed, naming the borrower in full on the page; it was refused for good ("failed"), waiting
    for another address that could never help, and its review could never end."""
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews
    from tests.later_stage_helpers import at, put_in_review

    name = "Maria de los Angeles Fernandez-Gutierrez y Lopez"
    put_in_review(mail_db, tmp_path, "A-LONG", borrower_name=name)
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))
    counts = send_letters.fn(as_of=at("2026-12-01T17:00:00Z"))
    assert counts["letters_sent"] == 1, counts
    [letter] = json.loads(_cli("letters", "list", "--json", "--database", db_url).stdout)
    assert letter["status"] == "created", letter
    [mailed] = letters_sandbox.letters()
    assert mailed["to"]["name"] == "Maria de los Angeles Fernandez-Gutierrez"
    out = tmp_path / "notice.pdf"
    assert (
        _cli("letters", "pdf", str(letter["id"]), "--output", str(out), "--database", db_url).exit_code == 0
    )
    text = "".join(p.extract_text() for p in pypdf.PdfReader(out).pages)
    assert f"Dear {name}," in text.replace("\n", " ")


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from deployments.cli import app

    return CliRunner().invoke(app, list(args))
