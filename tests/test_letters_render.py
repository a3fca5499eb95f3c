"""Legal notices rendered as PDFs: they say what the law asks, in the right script, byte for byte again."""

import io
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrears.letters import LetterContext, LetterTemplateMissing, render, vet


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def _notice(jurisdiction: str = "US-IA", **overrides: object) -> LetterContext:
    fields: dict[str, object] = {
        "jurisdiction": jurisdiction,
        "lender": "Acme Auto Finance",
        "lender_contact": "1-800-555-0100, 100 Lender Way, Des Moines IA 50309",
        "borrower_name": "Dana Borrower",
        "account_reference": "INST1-A-1042",
        "letter_date": date(2026, 3, 2),
        "currency": "USD",
        "amount_to_cure": Decimal("812.40"),
        "cure_deadline": date(2026, 3, 23),
        "vehicle": "2021 Honda Accord",
        "borrower_address": ("Dana Borrower", "1 Main St", "Ames IA 50010"),
    }
    fields.update(overrides)
    return LetterContext(**fields)  # type: ignore[arg-type]


CN = _notice(
    "CN",
    lender="安信汽车金融",
    lender_contact="400-800-1234，上海市浦东新区世纪大道100号",
    borrower_name="张伟",
    currency="CNY",
    amount_to_cure=Decimal("3456.78"),
    cure_deadline=date(2026, 3, 22),
    vehicle="",
    borrower_address=(),
)
WI_ITEMS = (("Past-due instalments", Decimal("790.00")), ("Delinquency charge", Decimal("22.40")))


@pytest.mark.parametrize(
    ("jurisdiction", "citation", "extra"),
    [
        ("US-IA", "537.5110", {}),
        ("US-WI", "425.104", {"itemization": WI_ITEMS}),
        ("US-MA", "255B", {}),
    ],
)
def test_right_to_cure_names_amount_deadline_and_statute(
    jurisdiction: str, citation: str, extra: dict[str, object]
) -> None:
    """Each state's notice, read back from the PDF, names the amount, deadline, statute and lender."""
    letter = render("right_to_cure", _notice(jurisdiction, **extra))
    text = _text(letter.pdf)
    for needle in ("$812.40", "2026-03-23", citation, "Acme Auto Finance", "1-800-555-0100", "Your rights"):
        assert needle in text, needle
    assert letter.text.startswith("NOTICE OF RIGHT TO CURE")


def test_wisconsin_notice_itemizes_the_cure_amount() -> None:
    """The US-WI notice lists each item of the cure amount, and refuses items that do not add up to it."""
    text = _text(render("right_to_cure", _notice("US-WI", itemization=WI_ITEMS)).pdf)
    assert "Delinquency charge: $22.40" in text and "Past-due instalments: $790.00" in text
    with pytest.raises(ValueError, match="itemiz"):
        render("right_to_cure", _notice("US-WI", itemization=WI_ITEMS[:1]))


def test_chinese_collection_notice_is_readable_chinese() -> None:
    """The 催收函 for a CN account reads back as Chinese text with the amount and the deadline."""
    letter = render("collection_notice", CN)
    text = _text(letter.pdf)
    for needle in ("催收函", "尊敬的张伟", "¥3,456.78", "2026-03-22", "安信汽车金融", "支付令"):
        assert needle in text, needle
    assert b"STSong-Light" in letter.pdf


def _page(pdf: bytes) -> tuple[tuple[float, float], set[str]]:
    """The first page's size in points and its fonts (reportlab lists Helvetica, its default, on
    every page)."""
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    fonts = {str(f.get_object()["/BaseFont"]) for f in page["/Resources"]["/Font"].values()}
    return (float(page.mediabox.width), float(page.mediabox.height)), fonts


def test_a_us_notice_is_on_letter_paper_in_helvetica_whatever_the_name() -> None:
    """The paper follows the country the letter is mailed in, and the font the words: a US notice to
    José Núñez is on US Letter in Helvetica, as one to Dana is (an accent once put it on A4 in a
    Chinese font); one to 王芳 is on US Letter in the Song font; the 催收函 on A4."""
    for name in ("Dana Borrower", "José Núñez", "Zoë Ångström"):
        letter = render("right_to_cure", _notice(borrower_name=name, borrower_address=(name, "1 Main St")))
        assert _page(letter.pdf) == ((612, 792), {"/Helvetica", "/Helvetica-Bold"}), name
        assert f"Dear {name}," in _text(letter.pdf)
    chinese = render("right_to_cure", _notice(borrower_name="王芳"))
    (size, fonts) = _page(chinese.pdf)
    assert size == (612, 792) and "/STSong-Light" in fonts and "王芳" in _text(chinese.pdf)
    (size, fonts) = _page(render("collection_notice", CN).pdf)
    assert size == (595.2756, 841.8898) and "/STSong-Light" in fonts


def test_a_name_the_fonts_cannot_set_is_refused_naming_the_characters() -> None:
    """Neither Helvetica nor the Song font has ễ or Ł: the notice would print boxes in the
    borrower's name, so it is not rendered, and the reason names the characters."""
    with pytest.raises(ValueError, match="cannot set 'ă', 'ễ'"):
        render("right_to_cure", _notice(borrower_name="Nguyễn Văn Anh"))
    with pytest.raises(ValueError, match="cannot set 'Ł'"):
        render("right_to_cure", _notice(borrower_address=("Łukasz Nowak", "1 Main St")))


def test_rendering_again_gives_identical_bytes() -> None:
    """The same context renders to the same bytes and hash, so the stored hash proves the PDF as mailed."""
    for kind, ctx in (("right_to_cure", _notice()), ("collection_notice", CN)):
        first, second = render(kind, ctx), render(kind, ctx)
        assert first.pdf == second.pdf and first.sha256 == second.sha256


def test_a_changed_amount_changes_the_hash() -> None:
    """A different amount to cure gives a different PDF and hash: the hash pins the content."""
    one = render("right_to_cure", _notice())
    other = render("right_to_cure", _notice(amount_to_cure=Decimal("812.41")))
    assert one.sha256 != other.sha256


def test_hardship_plan_confirmation_in_the_borrowers_language() -> None:
    """A plan confirmation states the instalment, the count and the first due date, in Chinese for CN."""
    plan = {
        "plan_description": "6-month instalment plan",
        "plan_installment": Decimal("350.00"),
        "plan_installments": 6,
        "plan_first_due": date(2026, 4, 1),
        "plan_accepted_on": date(2026, 3, 2),
    }
    text = _text(render("hardship_plan", _notice(**plan)).pdf)
    assert "$350.00" in text and "6 payments" in text and "2026-04-01" in text
    zh = _text(render("hardship_plan", replace(CN, **plan)).pdf)  # type: ignore[arg-type]
    assert "还款计划确认函" in zh and "¥350.00" in zh and "共6期" in zh


def test_a_plan_whose_odd_cents_ride_on_its_first_payments_says_what_the_rest_are() -> None:
    """2,050.00 in three payments is 683.34, 683.33, 683.33: the letter, the record of what was
    agreed, no longer says 683.34 for every month."""
    from arrears.letters.contexts import plan_letter_context
    from arrears.restructuring import Instalment, PlanTerms

    terms = PlanTerms(
        kind="instalment",
        months=3,
        currency="USD",
        past_due=Decimal("2050.00"),
        installment=Decimal("0.00"),
        deferred=Decimal("0.00"),
        term_extension_months=0,
        schedule=tuple(
            Instalment(date(2027, m, 15), Decimal(a))
            for m, a in ((1, "683.34"), (2, "683.33"), (3, "683.33"))
        ),
    )
    ctx = plan_letter_context(
        terms,
        jurisdiction="US-IA",
        locale="en",
        lender="Arrears Auto Finance",
        lender_contact="Collections desk, 1-800-555-0100",
        borrower_name="Dana Whitfield",
        account_reference="A-1042",
        letter_date=date(2026, 12, 20),
        accepted_on=date(2026, 12, 18),
        address=("12 Elm Street", "Des Moines, IA 50309"),
    )
    text = _text(render("hardship_plan", ctx).pdf)
    assert "$683.34 per month, 3 payments (the last 2: $683.33)" in text


def test_a_notice_without_amount_or_deadline_is_refused() -> None:
    """A right-to-cure notice cannot be rendered without the amount to cure or the deadline."""
    with pytest.raises(ValueError, match="amount to cure"):
        render("right_to_cure", _notice(amount_to_cure=None))
    with pytest.raises(ValueError, match="deadline"):
        render("right_to_cure", _notice(cure_deadline=None))


def test_no_right_to_cure_letter_where_the_law_requires_none() -> None:
    """California owes no right-to-cure notice, and there is no template for one."""
    with pytest.raises(LetterTemplateMissing):
        render("right_to_cure", _notice("US-CA"))


def test_vetting_passes_our_letters_and_catches_a_threat() -> None:
    """The content checker passes every template as written, and names a threat slipped into the text."""
    for kind, ctx in (("right_to_cure", _notice()), ("collection_notice", CN)):
        assert vet(render(kind, ctx), ctx) is None
    letter = render("right_to_cure", _notice())
    tampered = replace(letter, text=letter.text + "\nPay or we will tell your employer.")
    finding = vet(tampered, _notice())
    assert finding is not None and finding.rule == "content:threat"


_LATIN_WORDS = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789$.,:;-'"),
    min_size=1,
    max_size=90,
)
_CHINESE = st.text(
    st.sampled_from("您的账户已逾期请于还款期限前偿还逾期金额，否则我们将依法处理。"), max_size=300
)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_LATIN_WORDS, max_size=80), width=st.floats(40, 600))
def test_a_latin_paragraph_is_broken_at_spaces_greedily_within_the_width(
    words: list[str], width: float
) -> None:
    """Every line fits the width unless it is one word too wide for any line; each line takes as many
    words as fit; nothing is lost but the space at each break."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from arrears.letters.render import _wrap

    line = " ".join(words)
    lines = _wrap(line, "Helvetica", 10.5, width)
    assert " ".join(lines) == line
    for n, piece in enumerate(lines):
        assert stringWidth(piece, "Helvetica", 10.5) <= width + 1e-6 or " " not in piece
        if n + 1 < len(lines):
            taken = f"{piece} {lines[n + 1].split(' ')[0]}"
            assert stringWidth(taken, "Helvetica", 10.5) > width - 1e-6


@settings(max_examples=300, deadline=None)
@given(text=_CHINESE, width=st.floats(40, 600))
def test_a_chinese_paragraph_is_broken_at_any_character_within_the_width(text: str, width: float) -> None:
    """Chinese is cut between any two characters, each line as full as the width allows."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from arrears.letters.render import _cjk_font, _wrap

    font = _cjk_font()
    lines = _wrap(text, font, 10.5, width)
    assert "".join(lines) == text
    for n, piece in enumerate(lines):
        assert stringWidth(piece, font, 10.5) <= width + 1e-6 or len(piece) == 1
        if n + 1 < len(lines):
            assert stringWidth(piece + lines[n + 1][0], font, 10.5) > width - 1e-6


def test_reportlab_renders_with_its_c_accelerators() -> None:
    """rl_accel is installed and taken: without it ReportLab formats every number and encodes every
    stream in Python, and a cycle's letters take half as long again."""
    import inspect

    from reportlab.lib import rl_accel

    assert inspect.isbuiltin(rl_accel.fp_str) and inspect.isbuiltin(rl_accel.asciiBase85Encode)


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("right_to_cure", _notice("US-WI", itemization=WI_ITEMS)),
        ("collection_notice", CN),
        (
            "hardship_plan",
            _notice(
                plan_description="3 monthly instalments",
                plan_installment=Decimal("270.80"),
                plan_installments=3,
                plan_first_due=date(2026, 4, 1),
                plan_accepted_on=date(2026, 3, 2),
            ),
        ),
    ],
)
def test_a_stored_context_renders_the_letter_it_was_written_as(kind: str, context: LetterContext) -> None:
    """A letter row keeps its context as JSON and is rendered from it when it is sent: the context
    read back is the one written (Decimals, dates, itemization) and renders the same bytes."""
    import json

    from arrears.letters.notices import context_from_json, context_json

    stored = json.loads(json.dumps(context_json(context)))
    assert context_from_json(stored) == context
    assert render(kind, context_from_json(stored)).sha256 == render(kind, context).sha256


def test_a_right_to_cure_letter_is_dated_on_the_borrowers_day_not_utcs() -> None:
    """Written at 19:00 on 1 December in Des Moines (01:00 on the 2nd in UTC, the 09:00 Shanghai
    cycle), the Iowa notice is dated 1 December, as the borrower's calendar reads."""
    from datetime import UTC, datetime

    from arrears.storage.reviews import ReviewState
    from tasks.letters import _cure_draft

    at = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    state = ReviewState(
        review_id=1,
        account_id="A-1",
        opened_at=at,
        cure_deadline=None,
        decision=None,
        reviewer=None,
        reason=None,
        decided_at=None,
        flow_run_id=None,
        stage="repossession_review",
        stage_since=at,
        episode=1,
        jurisdiction="US-IA",
        timezone="America/Chicago",
        currency="USD",
        balance=Decimal("18450.00"),
        past_due=Decimal("412.50"),
        days_past_due=61,
        vin=None,
        holds=frozenset(),
    )
    draft = _cure_draft(state, at, lambda s: "k")
    assert draft is not None
    assert draft.context_of("Dana Whitfield", ("1 Main St",)).letter_date.isoformat() == "2026-12-01"
