"""The answer to a borrower's PLAN: the restructuring options their account is offered now, in one text.

The restructuring offer ends "Reply PLAN to hear the options" (回复"方案"了解详情); a borrower who
does is owed them. `answer_plan_request` decides that text as every message is decided
(`arrears.lifecycle.decide_message`: rendered, then `check_contact`), or says why there is none:
no offer open (`lifecycle.offer_closed`), a moratorium that bars a plan (`restructuring.check_holds`),
nothing to offer, or the options already texted today.

The options are those `restructuring.offers` computes for the loan on the business date within
the borrower's means (`ceiling`: only the plans their income affords, as the recorded offer has
them); each is followed by the exact words that accept it, which `restructuring.parse_plan_reply`
reads back as that very offer (`accept_words`). The options are
filled in as one value, `options`, in the account's language: a template-based vendor (Aliyun)
receives it as it receives the name, and a policy with more instalment plans needs no other
template.
"""

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from arrears.lifecycle import AccountView, Facts, Outgoing, decide_message, offer_closed
from arrears.messages import format_money
from arrears.policy import Policy
from arrears.restructuring import Loan, PlanError, PlanTerms, check_holds, offers, plan_rules

__all__ = ["TEMPLATE", "accept_words", "answer_plan_request", "options_key", "options_text"]

TEMPLATE = "restructuring_options"


def options_key(account_id: str, episode: int, business_date: date) -> str:
    """Once per offer (the restructuring stay it was made in) and business day: a second PLAN the
    same day gets no second text, one on a later day the options as they stand then."""
    return f"{account_id}:plan-options:{episode}:{business_date.isoformat()}"


def accept_words(terms: PlanTerms, locale: str) -> str:
    """The reply that takes this offer: `parse_plan_reply` reads it as this kind, and for an
    instalment plan these months; a deferral named without months is the smallest one, the one
    `offers` makes."""
    if locale == "zh-CN":
        return "接受延期" if terms.kind == "deferral" else f"接受分期{terms.months}"
    return "ACCEPT DEFERRAL" if terms.kind == "deferral" else f"ACCEPT INSTALMENT {terms.months}"


def options_text(found: Sequence[PlanTerms], locale: str) -> str:
    """The offers, numbered, the recommended first, each with its amounts, dates and reply."""
    if locale == "zh-CN":
        return "；".join(  # noqa: RUF001 - a Chinese text's own semicolon
            f"{n}.{_zh(terms)}，回复“{accept_words(terms, locale)}”" for n, terms in enumerate(found, 1)
        )
    return "; ".join(
        f"{n}) {_en(terms)}: reply {accept_words(terms, locale)}" for n, terms in enumerate(found, 1)
    )


def _en(terms: PlanTerms) -> str:
    first = terms.schedule[0]
    if terms.kind == "deferral":
        count = f"{terms.months} payment{'' if terms.months == 1 else 's'}"
        return (
            f"defer {count} ({_money(terms.deferred, terms)}) to the end of your loan, "
            f"next payment {_money(first.amount, terms)} on {first.due.isoformat()}"
        )
    head = f"{terms.months} monthly payments"
    runs = _runs(terms)
    if len(runs) == 1:
        return f"{head} of {_money(runs[0][1], terms)} from {first.due.isoformat()}"
    each = " then ".join(f"{count} of {_money(amount, terms)}" for count, amount in runs)
    return f"{head} from {first.due.isoformat()}, {each}"


def _zh(terms: PlanTerms) -> str:
    first = terms.schedule[0]
    if terms.kind == "deferral":
        return (
            f"延期{terms.months}期（{_money(terms.deferred, terms)}）至贷款期末，"
            f"下次还款{_money(first.amount, terms)}（{first.due.isoformat()}）"
        )
    head = f"自{first.due.isoformat()}起分{terms.months}期"
    runs = _runs(terms)
    if len(runs) == 1:
        return f"{head}，每期{_money(runs[0][1], terms)}"
    (count, amount), (_, rest) = runs[0], runs[1]
    lead = "首期" if count == 1 else f"前{count}期每期"
    return f"{head}，{lead}{_money(amount, terms)}，其后每期{_money(rest, terms)}"


def _runs(terms: PlanTerms) -> list[tuple[int, Decimal]]:
    """The schedule's amounts as runs (count, amount): an instalment plan's first months carry the
    odd minor units (`restructuring.split_exact`), so it has one amount or two."""
    runs: list[tuple[int, Decimal]] = []
    for item in terms.schedule:
        if runs and runs[-1][1] == item.amount:
            runs[-1] = (runs[-1][0] + 1, item.amount)
        else:
            runs.append((1, item.amount))
    return runs


def _money(amount: Decimal, terms: PlanTerms) -> str:
    return format_money(amount, terms.currency)


def answer_plan_request(
    account: AccountView,
    facts: Facts,
    loan: Loan,
    policy: Policy,
    now: datetime,
    ceiling: Decimal | None = None,
) -> Outgoing | str:
    """The options text for a PLAN read at `now` (`facts.business_date` its business date), or why
    there is none, for the timeline: the offers within `ceiling`, what the borrower's income
    affords a month (`restructuring.payment_ceiling`; None when unknown), which a reply may
    accept. A hold or an opt-out that forbids the text, the hours and the caps are the verdict's
    (`check_contact`): the text is then recorded blocked or deferred."""
    closed = offer_closed(account, facts, policy)
    if closed is not None:
        return closed
    try:
        check_holds(facts.holds)  # a moratorium bars the plan itself, not only the text
        found = offers(loan, business_date=facts.business_date, rules=plan_rules(policy), ceiling=ceiling)
    except PlanError as why:
        return str(why)
    if not found:
        return "nothing is past due: there is no plan to offer"
    if facts.address is None:
        return "the borrower has no number to text"
    key = options_key(account.account_id, account.episode, facts.business_date)
    if key in facts.decided:
        return f"already answered on {facts.business_date.isoformat()}"
    locale = policy.profile(account.jurisdiction).locale
    return decide_message(
        key,
        TEMPLATE,
        account,
        facts,
        policy,
        account.stage,
        account.episode,
        now,
        extra=(("options", options_text(found, locale)),),
    )
