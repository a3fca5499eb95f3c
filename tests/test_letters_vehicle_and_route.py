"""Notices name the car, a long title stays on the paper, and a notice served by post goes only
by the post of the country it is addressed to.

- A right-to-cure notice (US-IA, US-WI, US-MA, the GB and IE default notices) and the 催收函 name
  the car under the agreement by its VIN, which identifies the credit transaction beside the
  account number; before, `cure_letter_context` never set `vehicle` and no notice showed one.
- The first line of a letter (its title) is wrapped like the body; before, a long one ran off
  the page.
- Lob prints in the US and posts by USPS: a GB default notice handed to it would go as
  international mail, slower than the 5 days the GB profile allows for service, and give the
  borrower less than the 14 days it prints. It is blocked, saying what to configure, and goes
  once a route that posts in GB is configured (the sandbox: anywhere), from the GB return address
  `ARREARS_LETTERS_SENDERS` gives.
"""

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from sqlalchemy import Engine, update

from arrears.jurisdictions import profile
from arrears.letters import LetterContext, render, vet
from arrears.letters.contexts import collection_notice_context
from arrears.letters.notices import cure_letter_context, days_in_the_post, planned_notice, vehicle_of
from arrears.models import Letter
from arrears.settings import Settings, get_settings
from integrations.letters.protocol import PostalAddress, posting_countries
from tests.factories import account_record
from tests.later_stage_helpers import account_t, at, import_rows, put_in_review, rows
from tests.test_default_notices_gb_ie import LEEDS

letter_t = Letter.__table__  # type: ignore[attr-defined]
VIN = "1HGCM82633A004352"  # what `us_account` imports
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O or Q


def _words(pdf: bytes) -> str:
    """The PDF's text with each run of whitespace one space (a wrapped sentence reads back whole)."""
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(text.split())


def _cure_context(jurisdiction: str, vin: str | None) -> LetterContext:
    zone, currency = {
        "US-IA": ("America/Chicago", "USD"),
        "US-WI": ("America/Chicago", "USD"),
        "US-MA": ("America/New_York", "USD"),
        "GB": ("Europe/London", "GBP"),
        "IE": ("Europe/Dublin", "EUR"),
    }[jurisdiction]
    written = datetime(2027, 3, 2, 15, tzinfo=UTC)
    notice = planned_notice(
        written,
        jurisdiction=jurisdiction,
        timezone=zone,
        cure_amount=Decimal("825.00"),
        currency=currency,
        rules=profile(jurisdiction),
    )
    assert notice is not None
    return cure_letter_context(
        notice,
        lender="Acme Auto Finance",
        lender_contact="0345 600 0100, 1 Lender Way",
        borrower_name="Dana Borrower",
        account_reference="A-1042",
        address=("1 High Street", "Leeds LS1 1AA"),
        letter_date=written.date(),
        vin=vin,
    )


@pytest.mark.parametrize(
    ("jurisdiction", "line"),
    [
        ("US-IA", f"Account: A-1042 Vehicle: VIN {VIN}"),
        ("US-WI", f"Account: A-1042 Vehicle: VIN {VIN}"),
        ("US-MA", f"Account: A-1042 Vehicle: VIN {VIN}"),
        ("GB", f"account number A-1042, for the vehicle VIN {VIN}."),
        ("IE", f"Account: A-1042 Vehicle: VIN {VIN}"),
    ],
)
def test_every_right_to_cure_notice_names_the_car_by_its_vin(jurisdiction: str, line: str) -> None:
    """The notice identifies the credit transaction by the account and the car under it (Iowa
    Code 537.5110; the GB default notice identifies the agreement): the VIN in full, as the
    borrower's own papers have it. Without a VIN on file it names the account alone, and renders
    the bytes a context stored before notices named the car renders."""
    context = _cure_context(jurisdiction, VIN.lower())
    assert context.vehicle == f"VIN {VIN}"
    letter = render("right_to_cure", context)
    assert line in _words(letter.pdf)
    assert vet(letter, context) is None
    bare = _cure_context(jurisdiction, None)
    assert bare.vehicle == "" and "VIN" not in _words(render("right_to_cure", bare).pdf)


def test_the_collection_notice_names_the_car() -> None:
    """The 催收函 shows 车辆 with the VIN where one is on file, nothing where none is."""
    kw: dict[str, Any] = {
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "calendar": profile("CN").hours.holidays,
        "written_at": datetime(2026, 12, 1, 2, tzinfo=UTC),
        "lender": "安信汽车金融",
        "lender_contact": "400-800-1234",
        "borrower_name": "王芳",
        "account_reference": "A-CN1",
        "currency": "CNY",
        "past_due": Decimal("3000.00"),
        "address": ("世纪大道100号",),
    }
    named = collection_notice_context(**kw, vin="LSVAU2180N2183294")
    assert "车辆：VIN LSVAU2180N2183294" in render("collection_notice", named).text
    assert "车辆" not in render("collection_notice", collection_notice_context(**kw)).text


@settings(max_examples=200, deadline=None)
@given(vin=st.text(st.sampled_from(_VIN_CHARS), min_size=17, max_size=17))
def test_no_vin_trips_the_content_rules(vin: str) -> None:
    """A VIN is letters and digits the content screen reads too (a 5 as an S): none makes a notice
    read as a threat or abuse, which would block it."""
    for jurisdiction in ("US-IA", "GB"):
        context = _cure_context(jurisdiction, vin)
        assert vet(render("right_to_cure", context), context) is None, vin


def test_vehicle_of_gives_the_vin_and_nothing_without_one() -> None:
    assert vehicle_of(f" {VIN.lower()} ") == f"VIN {VIN}"
    assert vehicle_of(None) == vehicle_of("") == vehicle_of("  ") == ""


def test_a_long_title_is_wrapped_within_the_margins_like_the_body() -> None:
    """The first line is the letter's title, set larger and in bold: one wider than the page is
    broken at spaces within the margins, every word kept, rather than drawn off the paper."""
    from arrears.letters.render import _MARGIN, _TITLE_SIZE, _pdf

    title = "NOTICE OF RIGHT TO CURE DEFAULT UNDER THE CONSUMER CREDIT CODE OF A STATE WITH A LONG NAME"
    assert stringWidth(title, "Helvetica-Bold", _TITLE_SIZE) > A4[0] - 2 * _MARGIN
    pdf = _pdf(f"{title}\nDear Dana,\n", cjk=False, paper=A4, title=title, address=())
    drawn: list[tuple[str, float, float]] = []

    def seen(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if text.strip():
            scale = tm[0] * cm[0] or 1
            drawn.append((text.strip(), tm[4] * cm[0] + cm[4], size * scale))

    pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text(visitor_text=seen)
    titled = [(text, x) for text, x, size in drawn if round(size) == _TITLE_SIZE]
    assert len(titled) >= 2, drawn
    assert " ".join(text for text, _ in titled) == title
    for text, x in titled:
        assert x + stringWidth(text, "Helvetica-Bold", _TITLE_SIZE) <= A4[0] - _MARGIN + 1e-6, text


# -- the route -------------------------------------------------------------------------------------


def test_days_in_the_post_are_those_of_a_notice_served_on_delivery() -> None:
    """Only a right-to-cure notice served when it would be delivered counts on the post's days:
    GB and IE 5, US-MA 3; Iowa's is given when mailed, and no other letter counts on delivery."""
    assert [days_in_the_post("right_to_cure", profile(j)) for j in ("GB", "IE", "US-MA", "US-IA")] == [
        5,
        5,
        3,
        0,
    ]
    assert days_in_the_post("collection_notice", profile("CN")) == 0
    assert days_in_the_post("hardship_plan", profile("GB")) == 0


def test_where_a_provider_posts() -> None:
    """Lob posts in the US only; the sandbox, which reaches no one, anywhere; a provider that does
    not say is taken to post from its sender's country."""
    from integrations.letters.lob import LobLettersProvider
    from integrations.letters.sandbox import SandboxLettersProvider

    london = PostalAddress("Acme", "1 Lender Way", "London", "EC1A 1BB", "GB")
    assert posting_countries(object.__new__(LobLettersProvider), london) == frozenset({"US"})
    assert posting_countries(object.__new__(SandboxLettersProvider), london) is None

    class Unsaid:
        pass

    assert posting_countries(Unsaid(), london) == frozenset({"GB"})


def test_a_provider_that_does_not_say_where_it_posts_needs_a_sender_in_the_country(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plugin without `posts_in` is taken to post from its return address's country: a US-MA
    notice (served 3 days after mailing) to a Canadian address, from the lender's US address, is
    refused, naming the setting; with a Canadian return address in `ARREARS_LETTERS_SENDERS`, it
    goes. The same letter's Iowa twin, given when mailed, goes either way."""
    from arrears.storage.letters import LetterRow
    from tasks.letters import NO_ROUTE, _no_route, _senders

    class Unsaid:
        pass

    def letter(jurisdiction: str) -> LetterRow:
        written = datetime(2026, 12, 1, 17, tzinfo=UTC)
        context = {"jurisdiction": jurisdiction, "_recipient": {"country": "CA"}}
        return LetterRow(
            1, "A-1", 1, "right_to_cure", "", "pending", None, None, None, "usps_first_class", None,
            written, None, None, None, written, "k", context,
        )  # fmt: skip

    get_settings.cache_clear()
    provider: Any = Unsaid()
    refused = _no_route(letter("US-MA"), provider, _senders()("CA"))
    assert refused is not None and refused.startswith(f"{NO_ROUTE} to CA: no CA sender address is configured")
    assert "taken to post from its return address's country, US" in refused
    assert 'ARREARS_LETTERS_SENDERS={"CA": "line1|city||postal code|CA"}' in refused
    assert _no_route(letter("US-IA"), provider, _senders()("CA")) is None
    monkeypatch.setenv("ARREARS_LETTERS_SENDERS", json.dumps({"CA": "1 Bay St|Toronto|ON|M5J 2N8|CA"}))
    get_settings.cache_clear()
    assert _no_route(letter("US-MA"), provider, _senders()("CA")) is None


def test_a_sender_address_per_country_must_be_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARREARS_LETTERS_SENDERS", json.dumps({"GB": "1 Lender Way|London||EC1A 1BB|GB"}))
    assert Settings().letters_senders == {"GB": "1 Lender Way|London||EC1A 1BB|GB"}
    for bad in ({"gb": "1 Lender Way|London||EC1A 1BB|GB"}, {"GB": "1 Lender Way, London"}):
        monkeypatch.setenv("ARREARS_LETTERS_SENDERS", json.dumps(bad))
        with pytest.raises(ValidationError, match="letters_senders"):
            Settings()


def _through(monkeypatch: pytest.MonkeyPatch, sandbox: Any, name: str) -> None:
    """Mail through the sandbox server with the `name` client: `lob` posts in the US only, as
    Lob does; `sandbox` anywhere."""
    monkeypatch.setenv("ARREARS_LETTERS_PROVIDER", name)
    monkeypatch.setenv("ARREARS_LETTERS_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("ARREARS_LETTERS_CREDENTIALS", json.dumps(dict(sandbox.credentials)))
    get_settings.cache_clear()


def test_a_gb_notice_lob_would_post_from_the_us_is_blocked_until_a_gb_route_then_goes(
    mail_db: Engine,
    tmp_path: Path,
    letters_sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    default_sheet: Path,
) -> None:
    """Through Lob, the Iowa notice goes (domestic mail) and names the car; the GB default notice,
    served 5 days after mailing, would go from the US as international mail: it is blocked with
    the reason, and its review says why it waits. Once the sandbox (a route that posts in GB) and
    a GB return address are configured, the operator's rewrite sends it, from London, naming the
    car."""
    from tasks.letters import NO_ROUTE, send_letters
    from tasks.lifecycle_letters import rewrite_blocked
    from tasks.review import prepare_reviews, waiting

    _through(monkeypatch, letters_sandbox, "lob")
    put_in_review(mail_db, tmp_path, "A-IA1")
    put_in_review(
        mail_db,
        tmp_path,
        "A-GB1",
        **LEEDS,
    )
    assert prepare_reviews.fn(at("2026-12-01T17:00:00Z")).notices == 2
    for account_id in ("A-IA1", "A-GB1"):
        [written] = rows(mail_db, letter_t, account_id)
        assert written.context["vehicle"] == f"VIN {VIN}"

    counts = send_letters.fn(as_of=at("2026-12-01T17:05:00Z"))
    assert (counts["letters_sent"], counts["letters_blocked"]) == (1, 1)
    [sent] = letters_sandbox.letters()
    assert sent["to"]["address_country"] == "US"
    [iowa] = rows(mail_db, letter_t, "A-IA1")
    assert f"Account: A-IA1 Vehicle: VIN {VIN}" in _words(iowa.pdf)
    [gb] = rows(mail_db, letter_t, "A-GB1")
    assert (gb.status, gb.pdf) == ("blocked", None)
    assert gb.reason.startswith(f"{NO_ROUTE} to GB: letters provider 'lob' posts from US only; ")
    assert "served 5 days after mailing" in gb.reason and "ARREARS_LETTERS_PROVIDER" in gb.reason
    [w] = [w for w in waiting(mail_db, now=at("2027-02-01T00:00:00Z")) if w.account_id == "A-GB1"]
    assert w.waits_for == "blocked" and NO_ROUTE in w.detail

    _through(monkeypatch, letters_sandbox, "sandbox")
    monkeypatch.setenv("ARREARS_LETTERS_SENDERS", json.dumps({"GB": "1 Lender Way|London||EC1A 1BB|GB"}))
    get_settings.cache_clear()
    done = rewrite_blocked(NO_ROUTE, why="GB route configured", at=at("2026-12-02T09:00:00Z"))
    assert [row.id for row in done.rewritten] == [gb.id] and not done.left and not done.failed
    assert send_letters.fn(as_of=at("2026-12-02T09:05:00Z"))["letters_sent"] == 1
    [_, to_gb] = letters_sandbox.letters()
    assert (to_gb["to"]["address_country"], to_gb["from"]["address_country"]) == ("GB", "GB")
    assert to_gb["from"]["address_city"] == "London"
    [gb] = rows(mail_db, letter_t, "A-GB1")
    assert gb.status == "created" and f"for the vehicle VIN {VIN}." in _words(gb.pdf)


def test_a_letter_counted_from_its_mailing_goes_through_lob_wherever_it_is_addressed(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 催收函's dates count from its mailing, not its delivery: the route does not shorten them,
    and the Shanghai borrower's goes through Lob as before, naming the car."""
    from tasks.letters import send_letters
    from tasks.lifecycle_letters import write_collection_notices

    _through(monkeypatch, letters_sandbox, "lob")
    record = account_record(
        account_id="A-CN1",
        borrower_name="王芳",
        phone="13912345678",
        timezone="Asia/Shanghai",
        jurisdiction="CN",
        currency="CNY",
        balance="60000.00",
        installment_amount="3000.00",
        past_due_amount="3000.00",
        oldest_due_date="2026-09-26",
        vin="LSVAU2180N2183294",
        address_line1="世纪大道100号",
        city="上海市",
        state="上海",
        postal_code="200120",
    )
    import_rows(mail_db, tmp_path, [record])
    with mail_db.begin() as c:
        c.execute(
            update(account_t)
            .where(account_t.c.account_id == "A-CN1")
            .values(stage="legal_referral", stage_since=at("2026-12-01T02:00:00Z"), episode=4)
        )
    assert write_collection_notices(at("2026-12-01T03:00:00Z")) == {"collection_notices_written": 1}
    assert send_letters.fn(as_of=at("2026-12-01T03:05:00Z"))["letters_sent"] == 1
    [sent] = letters_sandbox.letters()
    assert sent["to"]["address_country"] == "CN"
    [row] = rows(mail_db, letter_t, "A-CN1")
    assert row.context["vehicle"] == "VIN LSVAU2180N2183294"
    assert "车辆：VIN LSVAU2180N2183294" in _words(row.pdf)
    assert date.fromisoformat(row.context["cure_deadline"]["v"]) == date(2026, 12, 19)
