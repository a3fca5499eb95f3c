"""Filling a template's skeleton is the same text as rendering it with Jinja, for every template
we ship and any values (the cycle's fast path must never change what a borrower reads)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrears import messages
from arrears.messages import _render, _skeleton, _template, display_name

NAMES = ("lender", "name", "amount", "installment", "days", "overdue", "due_date", "options")
TEMPLATES = [
    (locale, name)
    for locale in ("en", "zh-CN")
    for name in ("reminder", "negotiation", "restructuring_offer", "restructuring_options", "courtesy")
]
# Any text a value could hold, including Jinja syntax and our placeholder's control character.
value = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    values=st.tuples(*[value for _ in NAMES]),
    opt_out=st.sampled_from(["", "Reply STOP to opt out.", "回复TD退订"]),
)
def test_skeleton_fill_equals_a_jinja_render(
    template: tuple[str, str], values: tuple[str, ...], opt_out: str
) -> None:
    locale, name = template
    filled = tuple(zip(NAMES, values, strict=True))
    expected = _template(locale, name).render(**dict(filled), opt_out=opt_out).strip()
    assert _render(locale, name, filled, opt_out) == expected


def test_every_shipped_template_takes_the_fast_path() -> None:
    for locale, name in TEMPLATES:
        assert _skeleton(locale, name, NAMES, "") is not None, (locale, name)


def test_a_template_that_reads_a_value_is_rendered_by_jinja(monkeypatch) -> None:
    """A filter or a test on a value would be skipped by a skeleton: such a template is rendered."""
    from jinja2 import DictLoader, Environment, StrictUndefined

    env = Environment(
        loader=DictLoader(
            {"en/shout.j2": "{% if days|int > 30 %}LATE {% endif %}{{ name|upper }} {{ name }}"}
        ),
        undefined=StrictUndefined,
    )
    monkeypatch.setattr(messages, "_environment", lambda: env)
    monkeypatch.setattr(messages, "_template", lambda locale, name: env.get_template(f"{locale}/{name}.j2"))
    _skeleton.cache_clear()
    try:
        assert _skeleton("en", "shout", ("name", "days"), "") is None
        assert _render("en", "shout", (("name", "li"), ("days", "31")), "") == "LATE LI li"
    finally:
        _skeleton.cache_clear()


@pytest.mark.parametrize(
    ("stored", "locale", "greeted"),
    [
        ("Dana Whitfield", "en", "Dana"),
        ("王芳", "zh-CN", "王芳"),
        ("Jean-Luc O'Brien", "en", "Jean-Luc"),
        ('=HYPERLINK("http://x.example/pay","Dana")', "en", "HYPERLINK"),
        ("😀 Dana Whitfield", "en", "Dana"),
        ("http://x.example", "en", "http"),
        ("#1 王芳", "zh-CN", "王芳"),
        ("12345", "en", "12345"),  # no letters at all: the printable characters, as stored
        # Vowel signs and harakat are marks, not letters to `\\w`: the greeting stopped at them.
        ("प्रिया शर्मा", "en", "प्रिया"),
        ("கார்த்திக் ராஜா", "en", "கார்த்திக்"),
        ("สมศักดิ์ ใจดี", "en", "สมศักดิ์"),
        ("مُحَمَّد علي", "en", "مُحَمَّد"),
    ],
)
def test_a_message_greets_only_the_names_own_characters(stored: str, locale: str, greeted: str) -> None:
    """A name field that opens with a formula, an emoji or a link greets the first run of letters
    in it; the symbols, the quote and the link never reach the text."""
    assert display_name(stored, locale) == greeted


def test_the_chinese_negotiation_text_shows_how_to_reply_without_a_date_that_passes() -> None:
    """The text showed `例如：还款 500 2026-12-05`: from that day on a borrower who replied as shown
    had the promise refused (the date has passed). It names the form instead, as the English does."""
    from datetime import date
    from decimal import Decimal

    from arrears.messages import MessageContext, render

    ctx = MessageContext(
        lender="华夏汽车金融",
        borrower_name="王芳",
        jurisdiction="CN",
        currency="CNY",
        past_due_amount=Decimal("3000.00"),
        installment_amount=Decimal("1500.00"),
        days_past_due=20,
        next_due_date=date(2027, 1, 15),
    )
    body = render("negotiation", ctx)
    assert "请回复“还款 金额 年-月-日”" in body and not any(ch.isdigit() for ch in body.split("请回复")[1])


@pytest.mark.parametrize(("days", "said"), [(1, "is 1 day past due"), (5, "is 5 days past due")])
def test_the_first_reminder_says_one_day_not_one_days(days: int, said: str) -> None:
    """Every first reminder (cadence day 1 by default) told the borrower the payment "is 1 days
    past due": the count's noun agrees with it, and the template keeps its precompiled fill-in."""
    from decimal import Decimal

    from arrears.messages import MessageContext, render

    ctx = MessageContext(
        lender="Harbor Auto Finance",
        borrower_name="Dana Whitfield",
        jurisdiction="US",
        currency="USD",
        past_due_amount=Decimal("412.50"),
        installment_amount=Decimal("412.50"),
        days_past_due=days,
    )
    assert said in render("reminder", ctx)
    assert _skeleton("en", "reminder", tuple(messages.template_params(ctx)), "") is not None
