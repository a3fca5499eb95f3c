"""Traceability: each row of ../shared/domain/compliance.md, the number the product encodes for it
and its source, in one place; and the rows whose behaviour no other test pins.

The rows that are tested elsewhere are named here with their test, so that a reviewer can go from
the table to the proof (see the module's matrix below); the tests in this file add what none did.

| row | encoded in | proved by |
|---|---|---|
| CN hours 22:00-08:00 | CN.toml [hours] | test_compliance_profiles, this file |
| CN 6 unanswered / 3 connected calls | CN.toml caps | test_compliance_contact (calls: none placed) |
| CN identify yourself | _base.toml identify_institution, content:identity, templates | this file |
| CN third parties | contact.py third_party:*, content:third-party-debt | test_compliance_contact, this file |
| CN forbidden conduct | lexicon.toml, content:threat/abuse | test_compliance_content, _contact |
| CN agencies on a published list | not applicable: one agency provider, set by the lender | - |
| US hours 08:00-21:00 | US.toml [hours], hours.py | test_compliance_hours |
| US 7 calls in 7 days | US.toml cap (no calls placed) | test_compliance_contact |
| US electronic opt-out | US.toml, content:opt-out, templates, inbound.py | test_inbound_words, here |
| US validation notice 1006.34 | US-CA.toml validation_notice (Civ. Code 1788.17) | test_validation_notice |
| US bureau reporting 1006.30(a) | not encoded: binds debt collectors, not a furnishing lender | - |
| US record retention 1006.100 | nothing is deleted | this file |
| US SCRA | Hold.MILITARY, review.py, legal filings | test_legal, test_review |
| US-IA/WI/MA/CA, UCC 9-614 | profiles, review.py, letters, recovery | test_review, test_after_repossession |
| GB/IE default notice, protected goods | GB.toml, IE.toml | test_compliance_profiles |
| GB Breathing Space | Hold.BREATHING_SPACE (a collection hold) | test_lifecycle, this file |
| IE hours, no third parties | IE.toml | test_compliance_hours, test_compliance_contact |
"""

import re
from dataclasses import replace
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from arrears.compliance import (
    ContactRequest,
    ContactState,
    VerdictKind,
    cancels_repossession,
    check_contact,
)
from arrears.compliance.content import check_content
from arrears.jurisdictions import profile
from arrears.messages import MessageContext, render, template_params
from arrears.policy import DEFAULT_POLICY
from arrears.vocabulary import Hold
from tests.later_stage_helpers import at, put_in_review

STORAGE = Path(__file__).resolve().parents[1] / "arrears" / "storage"
LENDER = "Acme Auto Finance"


# --- the numbers and their sources ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "what", "value", "source_key", "cites"),
    [
        ("CN", "hours", (time(8), time(22)), None, "金融机构个人消费类贷款催收工作指引"),
        ("US", "hours", (time(8), time(21)), None, "1006.6(b)(1)(i)"),
        ("IE", "hours", (time(9), time(21)), None, "Consumer Credit Act 1995 s.46"),
        ("US", "sms_opt_out_required", True, "sms_opt_out", "1006.6(e)"),
        ("US-IA", "cure_notice_days", 20, "cure", "Iowa Code 537.5110-5111"),
        ("US-WI", "cure_notice_days", 15, "cure", "Wis. Stat. 425.104-105"),
        ("US-MA", "cure_notice_days", 21, "cure", "c.255B §20A"),
        ("US-MA", "cure_notice_after_days", 10, "cure", "at least 10 days after default"),
        ("US-MA", "max_cures", 3, "cure", "none owed after 3 cures"),
        ("US-CA", "cure_notice_days", None, "cure", "no notice before repossession"),
        ("US-CA", "sale_notice_days", 15, "sale_notice", "2983.2"),
        ("US", "sale_notice_days", 10, "sale_notice", "9-614"),
        ("GB", "cure_notice_days", 14, "cure", "Consumer Credit Act 1974 s.87-88"),
        ("GB", "breathing_space_days", 60, "breathing_space", "Debt Respite Scheme"),
        ("GB", "repossession_needs_court_order", True, "protected_goods", "s.90"),
        ("IE", "third_parties", "never", "third_parties", "s.46"),
        ("CN", "third_parties", "when_unreachable", "third_parties", "CBA 2026"),
    ],
)
def test_every_rule_number_sits_next_to_its_source(
    code: str, what: str, value: Any, source_key: str | None, cites: str
) -> None:
    """The number compliance.md states for a row, in the profile, with the row's source beside it."""
    p = profile(code)
    if what == "hours":
        assert ((p.hours.start, p.hours.end), cites in p.hours.source) == (value, True)
        return
    assert getattr(p, what) == value
    assert source_key is not None and cites in dict(p.sources)[source_key]


def test_every_binding_cap_cites_its_rule_and_every_policy_cap_says_it_is_policy() -> None:
    """A cap's source names its citation, or says plainly that it is a policy number."""
    for code in ("CN", "US", "US-CA", "US-IA", "US-MA", "US-WI", "GB", "IE"):
        for cap in profile(code).caps:
            assert cap.source.startswith("policy") is not cap.binding, (code, cap.name)


# --- identify yourself (CN), electronic opt-out (US) ----------------------------------------------


def _context(jurisdiction: str) -> MessageContext:
    return MessageContext(
        lender=LENDER,
        borrower_name="Dana Whitfield",
        jurisdiction=jurisdiction,
        currency="CNY" if jurisdiction == "CN" else "USD",
        past_due_amount=Decimal("412.50"),
        installment_amount=Decimal("412.50"),
        days_past_due=5,
    )


@pytest.mark.parametrize("template", sorted(DEFAULT_POLICY.approved_templates))
@pytest.mark.parametrize("code", ["CN", "US", "US-CA", "GB", "IE"])
def test_every_text_opens_with_the_lenders_name(code: str, template: str) -> None:
    """CBA 2026: the institution is named on first contact. Every text of ours is a possible first
    contact, so every one opens with the lender (【lender】 in zh-CN)."""
    ctx = _context(code)
    fill = template_params(ctx) | {"options": "a 3-month plan"}
    body = render(template, ctx, fill)
    assert body.startswith(f"【{LENDER}】" if code == "CN" else f"{LENDER}:"), body


@pytest.mark.parametrize("template", sorted(DEFAULT_POLICY.approved_templates))
@pytest.mark.parametrize("code", ["US", "US-CA", "US-IA", "US-MA", "US-WI"])
def test_every_us_text_ends_with_its_opt_out_instruction(code: str, template: str) -> None:
    """Reg F 1006.6(e): every text carries a clear, free opt-out; ours end with it, where a reader
    finds it, and the content check refuses one without it."""
    ctx = _context(code)
    fill = template_params(ctx) | {"options": "a 3-month plan"}
    body = render(template, ctx, fill)
    assert body.endswith("Reply STOP to opt out."), body
    stripped = body.removesuffix("Reply STOP to opt out.").strip()
    finding = check_content(stripped, lender=LENDER, profile=profile(code), fill=fill)
    assert finding is not None and finding.rule == "content:opt-out"


# --- third parties (CN, GB; IE never) -------------------------------------------------------------


def _third_party(jurisdiction: str, body: str, reachable: bool) -> VerdictKind:
    request = ContactRequest(
        account_id="A-1",
        jurisdiction=jurisdiction,
        timezone="Asia/Shanghai" if jurisdiction == "CN" else "Europe/London",
        template="reminder",
        body=body,
        lender=LENDER,
        third_party=True,
    )
    now = (
        datetime(2026, 12, 1, 4, tzinfo=UTC)
        if jurisdiction == "CN"
        else datetime(2026, 12, 1, 12, tzinfo=UTC)
    )
    state = ContactState(debtor_reachable=reachable)
    return check_contact(request=request, state=state, policy=DEFAULT_POLICY, now=now).kind


def test_no_text_of_ours_may_reach_a_third_party_since_each_speaks_of_the_debt() -> None:
    """CBA 2026 / CONC 7.3: a third party is never told of the debt. A number not confirmed as the
    debtor's is treated as a third party's, and every approved template names an amount: so none
    goes to one, even when the debtor cannot be reached."""
    for code in ("CN", "GB"):
        ctx = _context(code)
        fill = template_params(ctx) | {"options": "a 3-month plan"}
        for template in DEFAULT_POLICY.approved_templates:
            body = render(template, ctx, fill)
            assert _third_party(code, body, reachable=False) is VerdictKind.BLOCK, (code, template)


# --- Breathing Space (GB) -------------------------------------------------------------------------


def test_breathing_space_stops_every_contact_and_cancels_repossession_work() -> None:
    """Debt Respite Scheme: 60 days without contact or enforcement. The hold is a collection hold:
    it blocks texts and calls alike, and pending repossession orders are called off at once."""
    request = ContactRequest(
        account_id="A-GB",
        jurisdiction="GB",
        timezone="Europe/London",
        template="reminder",
        body=f"{LENDER}: hello.",
        lender=LENDER,
    )
    state = ContactState(holds=frozenset({Hold.BREATHING_SPACE}))
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    for channel in ("sms", "call"):
        v = check_contact(
            request=replace(request, channel=channel), state=state, policy=DEFAULT_POLICY, now=now
        )
        assert (v.kind, v.reason) == (VerdictKind.BLOCK, "hold:breathing_space")
    assert cancels_repossession([Hold.BREATHING_SPACE], None)


# --- record retention (Reg F 1006.100) ------------------------------------------------------------

# The only rows arrears ever deletes, each a copy of what is kept elsewhere: an opt-out kept for a
# number no contact point held (the START that ends it is kept as an inbound message and audited),
# a delivery report that came before its message (applied to the message, then dropped; or given up
# after a week, kept in the audit trail as an `expired_report`), and the
# installation id of a fresh copy of a database that has sent nothing.
_DELETABLE = {
    ("_common.py", "opted_out_number"),
    ("delivery_reports.py", "early_report"),
    ("installation.py", "table"),
}


def test_no_record_of_a_contact_or_a_decision_is_ever_deleted() -> None:
    """Reg F 1006.100: records are kept for 3 years after the last activity; arrears keeps them
    for good. No statement of the storage layer deletes a message, letter, hold, payment, review
    or audit row (a new `delete` has to be added to the list above, with its reason)."""
    deleting = re.compile(r"\bdelete\(\s*(\w+)\s*\)|\b(\w+)\.delete\(\)")
    found = set()
    for path in STORAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for match in deleting.finditer(path.read_text(encoding="utf-8")):
            found.add((path.name, match.group(1) or match.group(2)))
    assert found <= _DELETABLE, found - _DELETABLE


# --- holds at the time a letter is mailed ---------------------------------------------------------


@pytest.mark.parametrize("hold", [Hold.BANKRUPTCY, Hold.BREATHING_SPACE])
def test_a_notice_written_before_a_collection_hold_is_not_mailed_under_it(
    mail_db: Engine, tmp_path: Path, letters_sandbox: Any, hold: Hold
) -> None:
    """A right-to-cure notice is written by the cycle and mailed by the next letters run. A
    bankruptcy (11 USC 362(a): the automatic stay bars any act to collect) or a Breathing Space
    (no contact, no enforcement) placed between the two must stop it, as it stops a text at send
    time: the notice waits, pending, and goes once the hold is lifted."""
    from arrears.storage.holds import lift_hold, place_hold
    from tasks.letters import send_letters
    from tasks.review import prepare_reviews

    put_in_review(mail_db, tmp_path, "A-HOLD")
    prepare_reviews.fn(at("2026-12-01T17:00:00Z"))  # the notice is written, pending
    with mail_db.begin() as c:
        place_hold(
            c,
            account_id="A-HOLD",
            kind=hold,
            by="agent",
            why="notice received",
            at=at("2026-12-01T18:00:00Z"),
        )
    assert send_letters.fn(as_of=at("2026-12-01T19:00:00Z"))["letters_sent"] == 0
    assert letters_sandbox.letters() == []
    with mail_db.begin() as c:
        lift_hold(
            c, account_id="A-HOLD", kind=hold, by="agent", why="dismissed", at=at("2026-12-01T20:00:00Z")
        )
    assert send_letters.fn(as_of=at("2026-12-01T21:00:00Z"))["letters_sent"] == 1


# --- what a third party may not be told (CBA 2026, CONC 7.3) --------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f"【{LENDER}】请转告王芳尽快还钱。",
        f"【{LENDER}】请转告王芳，她的借款需要处理。",
        f"【{LENDER}】请转告王芳本月月供未交。",
        f"【{LENDER}】请转告王芳滞纳金在增加。",
        f"{LENDER}: please tell Dana the amount due is outstanding.",
        f"{LENDER}: please tell Dana to pay back what she borrowed.",
    ],
)
def test_a_third_party_is_not_told_of_the_debt_in_everyday_words(body: str) -> None:
    """A lender's own template for a third party ("please ask her to call us") is checked by the
    debt words alone when it carries no figure: the everyday words for a debt must be among them."""
    finding = check_content(body, lender=LENDER, profile=profile("CN"), third_party=True)
    assert finding is not None and finding.rule == "content:third-party-debt"
