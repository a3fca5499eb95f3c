"""`check_contact`, the one entry of every contact rule (issue 4): holds and opt-outs, third
parties, approved templates, content, the window and the caps, each verdict naming its rule; and
a property over random books and histories that nothing sent breaks a window, a cap, a hold or
an opt-out."""

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrears.compliance import (
    Contact,
    ContactRequest,
    ContactState,
    PaymentEvent,
    VerdictKind,
    cancels_repossession,
    check_contact,
)
from arrears.compliance.content import lexicon, screen_name
from arrears.messages import MessageContext, render, template_params
from arrears.plan_options import TEMPLATE as OPTIONS
from arrears.plan_options import options_text
from arrears.policy import DEFAULT_POLICY, Policy
from arrears.restructuring import DEFAULT_PLAN_RULES, Loan, offers
from arrears.vocabulary import Hold

LENDER = "Arrears Auto Finance"
NOON_SHANGHAI = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # Tuesday 12:00 in Asia/Shanghai
NOON_LA = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # Tuesday 12:00 in America/Los_Angeles


def _body(
    jurisdiction: str, template: str = "reminder", policy: Policy = DEFAULT_POLICY, **ctx: object
) -> tuple[str, tuple]:
    context = MessageContext(
        lender=LENDER,
        borrower_name="王芳" if jurisdiction == "CN" else "Dana Whitfield",
        jurisdiction=jurisdiction,
        currency="CNY" if jurisdiction == "CN" else "USD",
        past_due_amount=Decimal("300"),
        installment_amount=Decimal("300"),
        days_past_due=5,
    )
    context = replace(context, **ctx)  # type: ignore[arg-type]
    fill = template_params(context)
    if template == OPTIONS:  # the answer to a PLAN also lists the offers (`arrears.plan_options`)
        loan = Loan(context.currency, Decimal("18450"), Decimal("300"), Decimal("300"), date(2026, 11, 1))
        found = offers(loan, business_date=date(2026, 12, 1), rules=DEFAULT_PLAN_RULES)
        fill["options"] = options_text(found, policy.profile(jurisdiction).locale)
    return render(template, context, fill, profile=policy.profile(jurisdiction)), tuple(fill.items())


def cn(**kw: object) -> ContactRequest:
    body, fill = _body("CN")
    base = ContactRequest(
        account_id="A-1",
        jurisdiction="CN",
        timezone="Asia/Shanghai",
        template="reminder",
        body=body,
        lender=LENDER,
        address="+8613912345678",
        fill=fill,
        stage="reminder",
        episode=1,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def us(**kw: object) -> ContactRequest:
    body, fill = _body("US-CA")
    base = ContactRequest(
        account_id="A-1",
        jurisdiction="US-CA",
        timezone="America/Los_Angeles",
        template="reminder",
        body=body,
        lender=LENDER,
        address="+12133734253",
        fill=fill,
        stage="reminder",
        episode=1,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def verdict(
    request: ContactRequest, now: datetime = NOON_SHANGHAI, policy: Policy = DEFAULT_POLICY, **state: object
):
    return check_contact(request=request, state=ContactState(**state), policy=policy, now=now)  # type: ignore[arg-type]


def sent(at: datetime, account: str = "A-1", **kw: object) -> Contact:
    return Contact(
        at=at, channel=str(kw.pop("channel", "sms")), account_id=account, address="+8613912345678", **kw
    )  # type: ignore[arg-type]


# --- holds, opt-outs, third parties, templates ----------------------------------------------------


@pytest.mark.parametrize("hold", list(Hold))
def test_every_hold_blocks_a_text_and_names_itself(hold: Hold) -> None:
    """Each hold, collection, contact or SMS-only, blocks a text with the rule `hold:<kind>`."""
    v = verdict(cn(), holds=frozenset({hold}))
    assert (v.kind, v.reason) == (VerdictKind.BLOCK, f"hold:{hold}")


def test_sms_opt_out_stops_texts_but_not_calls() -> None:
    """An SMS opt-out hold leaves a call inside the window allowed; cease_contact stops it."""
    assert verdict(cn(channel="call"), holds=frozenset({Hold.SMS_OPT_OUT})).kind is VerdictKind.SEND
    assert verdict(cn(channel="call"), holds=frozenset({Hold.CEASE_CONTACT})).reason == "hold:cease_contact"


def test_opted_out_number_blocks_as_opt_out() -> None:
    """A number that replied STOP is blocked with the rule `opt_out`, for texts: STOP opts out of
    the electronic channel it answered (Reg F 1006.6(e)), and a call to the number is still allowed."""
    assert verdict(cn(), opted_out=True).reason == "opt_out"
    assert verdict(cn(channel="call"), opted_out=True).kind is VerdictKind.SEND


def test_third_parties_only_when_the_debtor_is_unreachable_and_never_in_ireland() -> None:
    """CN: a third party is refused while the debtor can be reached; IE: refused always."""
    neutral = f"{LENDER}: please ask Wang Fang to call us back."
    assert verdict(cn(third_party=True, body=neutral, fill=())).reason == "third_party:debtor-reachable"
    assert (
        verdict(cn(third_party=True, body=neutral, fill=()), debtor_reachable=False).kind is VerdictKind.SEND
    )
    ie = cn(jurisdiction="IE", timezone="Europe/Dublin", third_party=True, body=neutral, fill=())
    assert (
        verdict(ie, now=datetime(2026, 12, 1, 12, tzinfo=UTC), debtor_reachable=False).reason
        == "third_party:forbidden"
    )


def test_a_third_party_is_never_told_of_the_debt() -> None:
    """Any debt word, amount or figure of the account in a third-party message blocks it."""
    for body in (
        f"{LENDER}: Wang Fang's loan is overdue.",
        f"{LENDER}: please pass on ¥300 is due.",
        f"【{LENDER}】请转告王芳尽快还款。",
    ):
        v = verdict(cn(third_party=True, body=body, fill=()), debtor_reachable=False)
        assert v.reason == "content:third-party-debt", body
    # A figure of the account with no debt word and no currency: its due date.
    body = f"{LENDER}: please ask Wang Fang to call us before 2026-12-15."
    request = cn(third_party=True, body=body, fill=(("due_date", "2026-12-15"),))
    v = verdict(request, debtor_reachable=False)
    assert (v.reason, v.detail) == (
        "content:third-party-debt",
        "a message to a third party carries the account's due_date",
    )
    assert verdict(replace(request, fill=()), debtor_reachable=False).kind is VerdictKind.SEND


def test_unapproved_template_is_blocked() -> None:
    """A template the policy has not approved is blocked as `template:unapproved`."""
    policy = DEFAULT_POLICY.model_copy(update={"approved_templates": frozenset({"negotiation"})})
    assert verdict(cn(), policy=policy).reason == "template:unapproved"


# --- content ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (f"{LENDER}: pay today or we call the police.", "content:threat"),
        (f"{LENDER}: this is your FINAL WARNING.", "content:threat"),
        (f"【{LENDER}】再不还款就让你坐 牢。", "content:threat"),
        (f"【{LENDER}】我们将联系你的家人和单位。", "content:threat"),
        # The polite 您 of every template of ours, and the officers a lender may not threaten with.
        (f"【{LENDER}】逾期不还我们将通知您的家人和您的单位。", "content:threat"),
        (f"【{LENDER}】我们已经找到您的住址，今天派人到您家。", "content:threat"),
        (f"【{LENDER}】再不还款将把您送进监狱。", "content:threat"),
        (f"{LENDER}: pay today or we will contact your employer and your family.", "content:threat"),
        (f"{LENDER}: pay today or bailiffs will be sent to your address.", "content:threat"),
        (f"{LENDER}: pay today or the sheriff will be at your door.", "content:threat"),
        (f"{LENDER}: pay up, you deadbeat.", "content:abuse"),
        (f"【{LENDER}】老赖，赶紧还钱！", "content:abuse"),
        (f"{LENDER}: you deadbeat, pay or we call the police.", "content:threat"),
        (f"【{LENDER}】老赖，再不还款就报警。", "content:threat"),
        ("Hi, your payment is late.", "content:identity"),
        ("", "content:missing"),
    ],
)
def test_content_rules_block_with_their_names(body: str, rule: str) -> None:
    """Threats, insults (zh and en, full-width and spaced too), a missing lender name and a missing
    body are each blocked with their rule; a threat is named as such wherever an insult stands."""
    assert verdict(cn(body=body, fill=())).reason == rule


def test_the_lender_named_in_another_case_is_named() -> None:
    """`ARREARS AUTO FINANCE` in capitals names the lender: the identity rule asks that the
    institution be named (CBA 2026 guideline), not that its name keep one spelling of case."""
    body, fill = _body("CN")
    assert verdict(cn(body=body.replace(LENDER, LENDER.upper()), fill=fill)).kind is VerdictKind.SEND


_EN_WORDS = [w.rstrip("*") for kind in ("threat", "abuse") for w in lexicon()[kind]["en"]]
_ZH_WORDS = [w for kind in ("threat", "abuse", "debt") for w in lexicon()[kind]["zh"]]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_EN_WORDS).flatmap(
                lambda w: st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in w)).map("".join)
            ),
            st.text(st.characters(max_codepoint=127), max_size=6),
        ),
        max_size=8,
    )
)
@settings(max_examples=300, deadline=None)
def test_an_ascii_text_is_searched_as_ignoring_case_would(parts: list[str]) -> None:
    """The lower-case search of an ASCII text finds the same word, spelled as in the text, at
    the same place as the pattern that ignores case (in any case, glued to other characters or
    across whitespace)."""
    from arrears.compliance import content

    text = "".join(parts)
    for kinds in (("threat",), ("abuse",), ("threat", "abuse")):
        found = content._patterns(*kinds)[0].search(text)
        assert content._find(text, *kinds) == (found.group(0) if found else None)


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_EN_WORDS).flatmap(
                lambda w: st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in w)).map("".join)
            ),
            # What ignoring case matches to an ASCII letter (the long s, the Kelvin sign, the
            # dotted and dotless i), Chinese, and anything else.
            st.text(st.sampled_from("\u017f\u212a\u0130\u0131\ufb00 你好，。_-'0 \t\n"), max_size=4),
            st.text(max_size=4),
        ),
        max_size=8,
    ),
    st.sampled_from([("threat",), ("abuse",), ("threat", "abuse"), ("debt",)]),
)
@settings(max_examples=400, deadline=None)
def test_the_first_letter_filter_finds_what_the_words_alone_find(parts: list[str], kinds: tuple) -> None:
    """The lookahead in front of the English patterns only skips positions: each finds the same
    word at the same place as the words' pattern without it, ignoring case and in lower case."""
    from arrears.compliance import content

    text = "".join(parts)
    words = [w for kind in kinds for w in lexicon()[kind].get("en", ())]
    en, en_lower, _ = content._patterns(*kinds)
    assert en.pattern.startswith("(?=[")
    for filtered, alone, flags in (
        (en, content._english(words), re.IGNORECASE),
        (en_lower, content._english([w.lower() for w in words]), 0),
    ):
        found, expected = filtered.search(text), re.compile(alone, flags).search(text)
        assert (found and found.span()) == (expected and expected.span())


@given(
    st.lists(
        st.one_of(
            # A word of the lexicon, split by what cannot split it (or by a letter, which can).
            st.sampled_from(_ZH_WORDS).flatmap(
                lambda w: st.lists(
                    st.sampled_from(["", "", " ", "，", "_", "\x00", "\u3000", "a", "0"]),
                    min_size=len(w) - 1,
                    max_size=len(w) - 1,
                ).map(lambda gaps: w[0] + "".join(g + c for g, c in zip(gaps, w[1:], strict=True)))
            ),
            st.text(st.sampled_from("坐牢报警老赖欠款你好 ，。_-0a\x00\u3000"), max_size=4),
            st.text(max_size=3),
        ),
        max_size=8,
    ),
    st.sampled_from([("threat",), ("abuse",), ("threat", "abuse"), ("debt",)]),
)
@settings(max_examples=400, deadline=None)
def test_a_chinese_word_is_found_across_spaces_and_punctuation(parts: list[str], kinds: tuple) -> None:
    """The text is searched as it is, with anything but word characters allowed inside a Chinese
    word: the same word is found first as by searching the text stripped of those characters."""
    from arrears.compliance import content

    text = "".join(parts)
    words = [w for kind in kinds for w in lexicon()[kind].get("zh", ())]
    english = re.compile(content._english([w for kind in kinds for w in lexicon()[kind].get("en", ())]), re.I)
    stripped = re.sub(r"[\W_]+", "", text)
    expected = english.search(text) or re.search("|".join(map(re.escape, words)), stripped)
    if not text.isascii():
        assert content._find(text, *kinds) == (expected.group(0) if expected else None)


def test_a_kind_without_english_words_still_finds_its_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lexicon kind with words in one language only: the other language's pattern matches
    nowhere (an empty alternation would match the empty string and hide the Chinese word)."""
    from arrears.compliance import content

    words = {"threat": {"zh": ("报警",)}, "abuse": {"en": ("deadbeat",)}}
    monkeypatch.setattr(content, "lexicon", lambda: words)
    content._patterns.cache_clear()
    content._words.cache_clear()
    try:
        assert content._words("再不还款，就报警。") == content.ContentFinding(
            "content:threat", "threat word '报警'"
        )
        assert content._words("pay up, you deadbeat") == content.ContentFinding(
            "content:abuse", "abuse word 'deadbeat'"
        )
        assert content._words("please pay today") is None
    finally:
        content._patterns.cache_clear()
        content._words.cache_clear()


def test_borrowers_name_is_not_judged_as_our_words() -> None:
    """A borrower called Crook is not an insult: the values filled in are taken out first."""
    body, fill = _body("US-CA", borrower_name="Dana Crook")
    assert "Dana" in body and verdict(us(body=body, fill=fill), now=NOON_LA).kind is VerdictKind.SEND
    assert verdict(us(body=body.replace("Dana", "Crook"), fill=()), now=NOON_LA).reason == "content:abuse"


@pytest.mark.parametrize(
    "name", ["Killian Murphy", "Aoife Killeen", "Adebayo Shittu", "Giulia Moroni", "James Crookes"]
)
def test_names_that_only_begin_with_a_lexicon_stem_are_names(name: str) -> None:
    """Killian, Killeen, Shittu, Moroni, Crookes: a stem (`kill*`, `shit*`, `moron*`, `crook*`)
    read them as threats or insults, so the import refused these borrowers and every text to them
    was blocked. A name that is an insult still is one."""
    assert screen_name(name) is None
    body, fill = _body("US-CA", borrower_name=name)
    assert name.split()[0] in body and verdict(us(body=body, fill=fill), now=NOON_LA).kind is VerdictKind.SEND
    assert screen_name("Fuckface Jones") is not None and screen_name("Moron") is not None


def test_us_text_without_opt_out_instruction_is_blocked() -> None:
    """Reg F 1006.6(e): a US text must carry "Reply STOP to opt out."; without it, `content:opt-out`."""
    request = us()
    assert "Reply STOP to opt out." in (request.body or "")
    stripped = replace(request, body=(request.body or "").replace(" Reply STOP to opt out.", ""))
    assert verdict(stripped, now=NOON_LA).reason == "content:opt-out"


def test_policy_requiring_an_opt_out_in_cn_renders_and_checks_it() -> None:
    """A policy that asks CN texts for the opt-out gets "回T退订" rendered, and refuses a body without it."""
    policy = Policy.model_validate({"profiles": {"CN": {"sms_opt_out_required": True}}})
    body, fill = _body("CN", policy=policy)
    assert body.endswith("回T退订")
    assert verdict(cn(body=body, fill=fill), policy=policy).kind is VerdictKind.SEND
    assert verdict(cn(), policy=policy).reason == "content:opt-out"


def test_every_approved_template_passes_the_content_check_in_every_jurisdiction() -> None:
    """Our own catalogues, rendered for each profile, name the lender and carry what is required."""
    for code in ("CN", "US", "US-CA", "US-IA", "US-MA", "US-WI", "GB", "IE"):
        for template in DEFAULT_POLICY.approved_templates:
            body, fill = _body(code, template)
            request = cn(jurisdiction=code, body=body, fill=fill, template=template)
            v = verdict(request, now=NOON_SHANGHAI)
            assert v.kind is not VerdictKind.BLOCK, (code, template, v)


def test_a_dispatch_batch_of_the_default_size_is_re_checked_from_the_send_time_checks() -> None:
    """Dispatch checks a batch's messages at send time, then re-checks them once recorded: with a
    batch of the default size every re-check finds its send-time check, none is computed twice
    (an LRU cache smaller than the batch would miss every one, as a sequential scan evicts the next
    entry it needs)."""
    from arrears.compliance.content import _checked_send, check_content
    from arrears.jurisdictions import profile
    from arrears.settings import Settings

    size = Settings.model_fields["dispatch_batch"].default
    bodies = [f"{LENDER}: Hi B{i}, your payment is past due. Reply STOP to opt out." for i in range(size)]
    us = profile("US")
    _checked_send.cache_clear()
    for _ in ("send time", "re-check"):
        for n, body in enumerate(bodies):
            check_content(body, lender=LENDER, profile=us, fill={"name": f"B{n}"})
    info = _checked_send.cache_info()
    assert (info.misses, info.hits) == (size, size)


# --- window and caps ----------------------------------------------------------------------------------


def test_outside_the_window_defers_to_the_opening_with_the_hours_rule() -> None:
    """At 23:00 in Shanghai a text is deferred to 08:00 the next morning as `hours:CN`."""
    night = datetime(2026, 12, 1, 15, tzinfo=UTC)
    v = verdict(cn(), now=night)
    assert (v.kind, v.reason, v.not_before) == (
        VerdictKind.DEFER,
        "hours:CN",
        datetime(2026, 12, 2, 0, tzinfo=UTC),
    )


def test_one_text_per_account_a_day_counts_a_rolling_24_hours() -> None:
    """A text 23 hours after the last one waits out the 24 hours (`cap:sms-account-1d`); 24 hours later it
    goes."""
    v = verdict(cn(), history=(sent(NOON_SHANGHAI - timedelta(hours=23)),))
    assert (v.kind, v.reason, v.not_before) == (
        VerdictKind.DEFER,
        "cap:sms-account-1d",
        NOON_SHANGHAI + timedelta(hours=1),
    )
    assert verdict(cn(), history=(sent(NOON_SHANGHAI - timedelta(hours=24)),)).kind is VerdictKind.SEND


def test_borrower_cap_counts_every_loan_and_messages_in_flight() -> None:
    """Two texts sent on other loans and one scheduled on a third fill the three-a-week borrower cap."""
    history = (
        sent(NOON_SHANGHAI - timedelta(days=6), "A-2"),
        sent(NOON_SHANGHAI - timedelta(days=2), "A-3"),
        sent(
            NOON_SHANGHAI + timedelta(hours=2),
            "A-4",
            in_flight=True,
            message_id=9,
            stage="reminder",
            episode=1,
        ),
    )
    v = verdict(cn(), history=history)
    assert (v.kind, v.reason) == (VerdictKind.DEFER, "cap:sms-borrower-7d")
    assert v.not_before == NOON_SHANGHAI + timedelta(days=1)  # when the first of the three leaves the window
    assert verdict(cn(), history=history[:2]).kind is VerdictKind.SEND


def test_stale_message_in_flight_for_the_same_account_does_not_count() -> None:
    """A reminder still scheduled from an earlier stage will be refused as stale, so it does not
    hold up the message of the new stage."""
    old = sent(NOON_SHANGHAI, in_flight=True, message_id=3, stage="reminder", episode=1)
    assert verdict(cn(stage="negotiation", episode=2), history=(old,)).kind is VerdictKind.SEND
    assert verdict(cn(), history=(old,)).reason == "cap:sms-account-1d"


def test_racing_rows_at_send_time_let_the_lower_id_go_first() -> None:
    """Two due rows of one account: the lower id ignores the higher, the higher counts the lower."""
    five = sent(NOON_SHANGHAI, in_flight=True, message_id=5, stage="reminder", episode=1)
    seven = sent(NOON_SHANGHAI, in_flight=True, message_id=7, stage="reminder", episode=1)
    assert verdict(cn(message_id=5), history=(seven,)).kind is VerdictKind.SEND
    assert verdict(cn(message_id=7), history=(five,)).reason == "cap:sms-account-1d"


def test_a_row_at_send_time_does_not_count_itself() -> None:
    """At send time the row being sent is in the borrower's history too: it is not its own contact,
    so alone it goes (otherwise a one-a-day cap would hold every text back for ever)."""
    itself = sent(NOON_SHANGHAI, in_flight=True, message_id=5, stage="reminder", episode=1)
    assert verdict(cn(message_id=5), history=(itself,)).kind is VerdictKind.SEND


def test_an_overdue_message_in_flight_counts_now_not_at_its_old_time() -> None:
    """A text scheduled two days ago and still waiting (a provider outage) may go out any moment:
    it counts at now, so a new text of the same account waits a day (`cap:sms-account-1d`)."""
    waiting = sent(
        NOON_SHANGHAI - timedelta(days=2), in_flight=True, message_id=3, stage="reminder", episode=1
    )
    v = verdict(cn(), history=(waiting,))
    assert (v.kind, v.reason, v.not_before) == (
        VerdictKind.DEFER,
        "cap:sms-account-1d",
        NOON_SHANGHAI + timedelta(days=1),
    )


def test_a_text_scheduled_a_full_day_ahead_leaves_room_for_one_now() -> None:
    """No 24-hour window holds both now and a text scheduled exactly 24 hours later, so under the
    one-a-day cap a text goes now; one scheduled a second earlier holds it back."""
    ahead = sent(NOON_SHANGHAI + timedelta(days=1), in_flight=True, message_id=3, stage="reminder", episode=1)
    assert verdict(cn(), history=(ahead,)).kind is VerdictKind.SEND
    sooner = replace(ahead, at=ahead.at - timedelta(seconds=1))
    assert verdict(cn(), history=(sooner,)).reason == "cap:sms-account-1d"


def test_unanswered_dial_attempts_are_capped_per_number() -> None:
    """CN: six unanswered attempts in a day to one number stop a seventh to it (CBA 2026 guideline:
    at most 6 a day to the same contact method); six to the borrower's other number do not."""
    dialled = tuple(
        sent(NOON_SHANGHAI - timedelta(minutes=20 * k), channel="call", outcome="unanswered")
        for k in range(1, 7)
    )
    assert verdict(cn(channel="call"), history=dialled).reason == "cap:call-unanswered-address-1d"
    elsewhere = tuple(replace(c, address="+8613800138000") for c in dialled)
    assert verdict(cn(channel="call"), history=elsewhere).kind is VerdictKind.SEND


def test_calls_in_flight_count_towards_a_cap_of_connected_calls() -> None:
    """CN: a call still to be made may connect, so three calls in flight fill the three connected
    calls a day (GB/T 45251-2025) before any outcome is known."""
    planned = tuple(
        sent(
            NOON_SHANGHAI + timedelta(hours=h),
            channel="call",
            in_flight=True,
            message_id=h,
            stage="reminder",
            episode=1,
        )
        for h in (1, 2, 3)
    )
    assert verdict(cn(channel="call"), history=planned).reason == "cap:call-connected-borrower-1d"
    assert verdict(cn(channel="call"), history=planned[:2]).kind is VerdictKind.SEND


def test_cap_and_window_together_wait_for_both() -> None:
    """A cap that frees at 23:30 Shanghai time leaves the text for 08:00 the next day, named by the cap."""
    evening = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai
    history = (sent(evening - timedelta(hours=21, minutes=30)),)  # frees at 23:30 local
    v = verdict(cn(), now=evening, history=history)
    assert (v.reason, v.not_before) == ("cap:sms-account-1d", datetime(2026, 12, 2, 0, tzinfo=UTC))


def test_reg_f_calls_seven_in_seven_days_and_none_after_a_conversation() -> None:
    """US calls: an 8th attempt in 7 days waits, and so does any call within 7 days of a conversation."""
    calls = tuple(
        sent(NOON_LA - timedelta(hours=20 * k), channel="call", outcome="unanswered") for k in range(1, 8)
    )
    v = verdict(us(channel="call"), now=NOON_LA, history=calls)
    # The oldest of the seven (140 hours ago) leaves the 7-day window 28 hours from now, 16:00 local.
    assert (v.reason, v.not_before) == ("cap:call-attempts-account-7d", NOON_LA + timedelta(hours=28))
    assert verdict(us(channel="call"), now=NOON_LA, history=calls[:6]).kind is VerdictKind.SEND
    talked = (sent(NOON_LA - timedelta(days=3), channel="call", outcome="connected", conversation=True),)
    v = verdict(us(channel="call"), now=NOON_LA, history=talked)
    assert (v.reason, v.not_before) == ("cap:call-attempts-account-7d", NOON_LA + timedelta(days=4))


def test_a_conversation_about_another_loan_does_not_silence_calls_on_this_one() -> None:
    """Reg F 1006.14(b)(2) counts per debt: a conversation about the borrower's other loan three
    days ago holds back no call about this one; one about this loan does."""
    other = (
        replace(
            sent(NOON_LA - timedelta(days=3), "A-2", channel="call", outcome="connected", conversation=True),
            address="+12133734253",
        ),
    )
    assert verdict(us(channel="call"), now=NOON_LA, history=other).kind is VerdictKind.SEND
    this = (replace(other[0], account_id="A-1"),)
    assert verdict(us(channel="call"), now=NOON_LA, history=this).reason == "cap:call-attempts-account-7d"


def test_cn_connected_calls_count_apart_from_unanswered_ones() -> None:
    """CN: three connected calls in a day stop a fourth; unanswered attempts do not count toward that cap."""
    connected = tuple(
        sent(NOON_SHANGHAI - timedelta(hours=h), channel="call", outcome="connected") for h in (1, 2, 3)
    )
    assert verdict(cn(channel="call"), history=connected).reason == "cap:call-connected-borrower-1d"
    unanswered = tuple(replace(c, outcome="unanswered") for c in connected)
    assert verdict(cn(channel="call"), history=unanswered).kind is VerdictKind.SEND


# --- repossession --------------------------------------------------------------------------------


def test_a_payment_or_a_collection_hold_cancels_repossession_work() -> None:
    """Any payment, or a dispute, bankruptcy, death, military service or breathing space, cancels
    pending repossession work; a contact hold alone does not."""
    paid = PaymentEvent(Decimal("0.01"), NOON_SHANGHAI)
    assert cancels_repossession([], paid)
    for hold in (Hold.DISPUTE, Hold.BANKRUPTCY, Hold.DECEASED, Hold.MILITARY, Hold.BREATHING_SPACE):
        assert cancels_repossession([hold], None), hold
    assert not cancels_repossession([Hold.CEASE_CONTACT, Hold.SMS_OPT_OUT], None)
    assert not cancels_repossession(["cease_contact"], PaymentEvent(Decimal(0), NOON_SHANGHAI))


# --- the property: a random book, random events, two checks, an independent audit -----------------

PLACES = [
    ("CN", "Asia/Shanghai", "+86139{:08d}"),
    ("CN", "Asia/Urumqi", "+86138{:08d}"),
    ("US-CA", "America/Los_Angeles", "+1213373{:04d}"),
    ("US", "America/St_Johns", "+1709737{:04d}"),
    ("GB", "Europe/London", "+4420794{:05d}"),
    ("IE", "Europe/Dublin", "+3531{:07d}"),
    ("CN", "Australia/Lord_Howe", "+86137{:08d}"),
    ("CN", "Asia/Kathmandu", "+86136{:08d}"),
]


@dataclass
class _Row:
    id: int
    account: str
    borrower: str
    stage: str
    not_before: datetime
    status: str = "scheduled"
    sent_at: datetime | None = None


@dataclass
class _Book:
    accounts: dict[str, tuple[str, str, str, str]]  # account -> borrower, jurisdiction, zone, number
    holds: dict[str, list[list]] = field(default_factory=dict)  # account -> [kind, from, until]
    opt_outs: dict[str, list[list]] = field(default_factory=dict)  # borrower -> [from, until]
    rows: list[_Row] = field(default_factory=list)


def _active(intervals: list[list], at: datetime) -> list:
    return [i for i in intervals if i[-2] <= at < (i[-1] or datetime.max.replace(tzinfo=UTC))]


@st.composite
def books_and_events(draw: st.DrawFn) -> tuple[_Book, list[tuple]]:
    accounts = {}
    for b in range(draw(st.integers(1, 3))):
        jurisdiction, zone, pattern = draw(st.sampled_from(PLACES))
        number = pattern.format(draw(st.integers(0, 9999)))
        for a in range(draw(st.integers(1, 3))):
            accounts[f"A-{b}-{a}"] = (f"B-{b}", jurisdiction, zone, number)
    # Around the northern spring-forward and Lord Howe's autumn change of 2026, and plain weeks.
    start = draw(
        st.sampled_from(
            [
                datetime(2026, 3, 6, tzinfo=UTC),
                datetime(2026, 4, 2, tzinfo=UTC),
                datetime(2026, 10, 30, tzinfo=UTC),
                datetime(2026, 12, 1, tzinfo=UTC),
            ]
        )
    )
    events = []
    for _ in range(draw(st.integers(5, 40))):
        at = start + timedelta(minutes=draw(st.integers(0, 10 * 24 * 60)))
        kind = draw(
            st.sampled_from(
                ["decide", "decide", "decide", "dispatch", "dispatch", "hold", "lift", "opt_out", "opt_in"]
            )
        )
        events.append(
            (
                at,
                kind,
                draw(st.sampled_from(sorted(accounts))),
                draw(st.sampled_from([Hold.DISPUTE, Hold.SMS_OPT_OUT, Hold.CEASE_CONTACT])),
            )
        )
    events += [(start + timedelta(hours=h), "dispatch", None, None) for h in range(0, 10 * 24, 3)]
    # At one instant: holds and opt-outs land first, then decisions, then the dispatch.
    events.sort(key=lambda e: (e[0], {"decide": 1, "dispatch": 2}.get(e[1], 0)))
    return _Book(accounts), events


def _history(book: _Book, borrower: str, now: datetime, exclude: int | None = None) -> tuple[Contact, ...]:
    out = []
    for r in book.rows:
        if book.accounts[r.account][0] != borrower or r.id == exclude:
            continue
        number = book.accounts[r.account][3]
        if r.status == "sent":
            out.append(Contact(r.sent_at, "sms", r.account, number))  # type: ignore[arg-type]
        elif r.status == "scheduled":
            out.append(
                Contact(
                    r.not_before,
                    "sms",
                    r.account,
                    number,
                    in_flight=True,
                    message_id=r.id,
                    stage=r.stage,
                    episode=1,
                )
            )
    return tuple(out)


def _check(book: _Book, account: str, now: datetime, row: _Row | None):
    borrower, jurisdiction, zone, number = book.accounts[account]
    body, fill = _body(jurisdiction)
    holds = frozenset(h[0] for h in _active(book.holds.get(account, []), now))
    request = ContactRequest(
        account_id=account,
        jurisdiction=jurisdiction,
        timezone=zone,
        template="reminder",
        body=body,
        lender=LENDER,
        address=number,
        fill=fill,
        stage="reminder",
        episode=1,
        message_id=row.id if row else None,
    )
    state = ContactState(
        holds=holds,
        opted_out=bool(_active(book.opt_outs.get(borrower, []), now)),
        history=_history(book, borrower, now, exclude=row.id if row else None),
    )
    return check_contact(request=request, state=state, policy=DEFAULT_POLICY, now=now)


@settings(max_examples=150, deadline=None)
@given(books_and_events())
def test_property_nothing_sent_breaks_a_window_a_cap_a_hold_or_an_opt_out(
    case: tuple[_Book, list[tuple]],
) -> None:
    """Random books (odd zones, DST weeks), random decisions, dispatches, holds and opt-outs, both
    checks run as the cycle runs them; then an audit that reads only what was sent finds nothing."""
    book, events = case
    for at, kind, account, hold in events:
        if kind == "decide":
            v = _check(book, account, at, None)
            if v.kind is not VerdictKind.BLOCK:
                book.rows.append(
                    _Row(len(book.rows) + 1, account, book.accounts[account][0], "reminder", v.not_before)
                )
        elif kind == "dispatch":
            for row in sorted(
                (r for r in book.rows if r.status == "scheduled" and r.not_before <= at), key=lambda r: r.id
            ):
                v = _check(book, row.account, at, row)
                if v.kind is VerdictKind.SEND:
                    row.status, row.sent_at = "sent", at
                elif v.kind is VerdictKind.BLOCK:
                    row.status = "blocked"
                else:
                    assert v.not_before > at
                    row.not_before = v.not_before
        elif kind == "hold":
            book.holds.setdefault(account, []).append([hold, at, None])
        elif kind == "lift":
            for h in _active(book.holds.get(account, []), at):
                h[2] = at
        elif kind == "opt_out":
            book.opt_outs.setdefault(book.accounts[account][0], []).append([at, None])
        elif kind == "opt_in":
            for o in _active(book.opt_outs.get(book.accounts[account][0], []), at):
                o[1] = at

    sends = [r for r in book.rows if r.status == "sent"]
    for r in sends:
        borrower, jurisdiction, zone, _ = book.accounts[r.account]
        at = r.sent_at
        assert at is not None
        hours = DEFAULT_POLICY.profile(jurisdiction).hours
        for z in {zone, *(["Asia/Shanghai"] if jurisdiction == "CN" else [])}:
            local = at.astimezone(ZoneInfo(z))
            assert hours.start <= local.time() < hours.end, ("window", r, z)
            assert local.weekday() not in hours.closed_weekdays, ("closed day", r)
            if hours.closed_on_holidays:
                assert local.date() not in holidays.country_holidays(hours.holidays, years=local.year), (
                    "holiday",
                    r,
                )
        assert not _active(book.holds.get(r.account, []), at), ("hold", r)
        assert not _active(book.opt_outs.get(borrower, []), at), ("opt-out", r)
        same_account = [
            s for s in sends if s.account == r.account and at - timedelta(days=1) < s.sent_at <= at
        ]  # type: ignore[operator]
        same_borrower = [
            s for s in sends if s.borrower == borrower and at - timedelta(days=7) < s.sent_at <= at
        ]  # type: ignore[operator]
        assert len(same_account) <= 1, ("cap:sms-account-1d", r)
        assert len(same_borrower) <= 3, ("cap:sms-borrower-7d", r)
