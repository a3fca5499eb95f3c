"""Restructuring: the offers computed from the loan, the plan a borrower accepts, and how it is kept.

Pure functions over plain data; `arrears.storage.plans` stores plans as `Plan` rows whose
`terms` hold `PlanTerms.to_json()`.

Two kinds of plan (DESIGN §2):

- a **deferral** moves 1 to 3 instalments to the end of the loan and extends its term by as
  many months: the past due is deferred at once, and the plan is kept when the borrower pays the
  next regular instalment on its date;
- an **instalment plan** spreads the past due over N months on top of the regular instalment:
  each month the borrower pays the instalment plus an exact share of the past due.

A plan's first date is at least `min_lead_days` ahead. A regular instalment falling due before
it is taken into the plan (a deferral defers it too, an instalment plan spreads it with the past
due): otherwise the plan would name as next payment one a month after it, and it would be lost.

Amounts are exact Decimals at the currency's precision: the shares of an instalment plan add up
to the past due to the last minor unit (the first months carry the odd cents). Due dates follow
the loan's own due day, month by month (`pendulum`), clamped to short months: a loan due on the
31st is due on 28 or 29 February and on 31 March again, never drifting to the 28th.

What is offered fits the borrower's means where the bureau estimated their income: a plan whose
largest monthly payment is above `AFFORDABLE_SHARE` of it (the line `segmentation.ability_score`
draws) is left out, unless none fits (`offers`, `payment_ceiling`).

A plan is monitored against the payments received since it was accepted: each instalment must
be covered, cumulatively, by its due date plus a grace period. Covered in full: `completed`.
An instalment uncovered once its grace has run out: `defaulted`. Where the policy allows it,
an instalment plan re-ages the account (brings it current) after a number of on-time payments,
as the FFIEC Uniform Retail Credit Classification policy permits for a borrower who has shown
renewed willingness and ability to repay.
"""

import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import lru_cache
from typing import Any

import pendulum

from arrears.currencies import minor_units
from arrears.inbound import normalise
from arrears.payments import due_day
from arrears.segmentation import AFFORDABLE_SHARE
from arrears.settlements import MORATORIA
from arrears.vocabulary import Hold

__all__ = [
    "DEFAULT_PLAN_RULES",
    "Instalment",
    "Loan",
    "PlanError",
    "PlanReply",
    "PlanRules",
    "PlanTerms",
    "Progress",
    "check_holds",
    "choose",
    "count_months",
    "deferral",
    "due_dates",
    "instalment_plan",
    "instalments_before_start",
    "instalments_behind",
    "instalments_to_defer",
    "monitor",
    "offers",
    "parse_plan_reply",
    "payment_ceiling",
    "plan_rules",
    "reage_due",
    "split_exact",
]

KINDS = ("deferral", "instalment")


@dataclass(frozen=True, slots=True)
class PlanRules:
    max_deferral: int = 3  # instalments a deferral may move to the end of the term
    instalment_months: tuple[int, ...] = (3, 6)  # the instalment plans offered
    min_instalment_months: int = 2
    max_instalment_months: int = 12  # the longest an agent may agree
    grace_days: int = 5  # a plan payment this many days late is still on time
    min_lead_days: int = 5  # the first plan date is at least this far from the day it is agreed
    reage_after: int | None = 3  # on-time plan payments that bring the account current; None: never


DEFAULT_PLAN_RULES = PlanRules()


def plan_rules(policy: Any) -> PlanRules:
    """The plan numbers of a policy's `restructuring` section (`arrears.policy.Restructuring`:
    `max_deferral_instalments`, `instalment_months`, `min_instalment_months`,
    `max_instalment_months`, `plan_grace_days`, `plan_lead_days`, `reage_after_payments`), the
    defaults for a policy without one."""
    section = getattr(policy, "restructuring", None)
    d = DEFAULT_PLAN_RULES

    def get(name: str, default: Any) -> Any:
        return getattr(section, name, default)

    return PlanRules(
        max_deferral=get("max_deferral_instalments", d.max_deferral),
        instalment_months=tuple(get("instalment_months", d.instalment_months)),
        min_instalment_months=get("min_instalment_months", d.min_instalment_months),
        max_instalment_months=get("max_instalment_months", d.max_instalment_months),
        grace_days=get("plan_grace_days", d.grace_days),
        min_lead_days=get("plan_lead_days", d.min_lead_days),
        reage_after=get("reage_after_payments", d.reage_after),
    )


class PlanError(ValueError):
    """A plan that cannot be made for this loan; the message says why, for the agent or the audit."""


# A plan is an agreement to pay the debt, barred where a settlement is (`arrears.settlements`).
_BARRED = {
    Hold.BANKRUPTCY: "the automatic stay (11 U.S.C. 362(a)(6)) bars collecting the debt: "
    "a repayment plan is made with the trustee and approved by the court",
    Hold.BREATHING_SPACE: "Breathing Space (Debt Respite Scheme regulations 2020) bars "
    "enforcement and requests for payment",
}


def check_holds(holds: Iterable[Hold]) -> None:
    """Refuse a plan under a statutory moratorium (bankruptcy, Breathing Space): agreeing one is
    collecting the debt, and its confirmation letter asks for payment. A dispute, a death or
    military service does not bar it, as it does not bar a settlement."""
    barred = sorted(h for h in holds if h in MORATORIA)
    if barred:
        raise PlanError(f"{barred[0]} hold: {_BARRED[barred[0]]}")


@dataclass(frozen=True, slots=True)
class Loan:
    currency: str
    balance: Decimal
    installment: Decimal
    past_due: Decimal
    oldest_due_date: date | None
    next_due_date: date | None = None

    @property
    def due_day(self) -> int | None:
        """The day of the month the loan falls due on (`arrears.payments.due_day`)."""
        return due_day(self.next_due_date, self.oldest_due_date)


@dataclass(frozen=True, slots=True)
class Instalment:
    due: date
    amount: Decimal


def count_months(count: int) -> str:
    """A count of months as an English sentence says it: "1 month", "3 months" (a borrower's plan
    letter read "term extended by 1 months")."""
    return f"{count} month{'' if count == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class PlanTerms:
    kind: str  # deferral | instalment
    months: int  # instalments deferred, or months the past due is spread over
    currency: str
    past_due: Decimal  # when the plan was made
    installment: Decimal  # the loan's regular instalment
    deferred: Decimal  # moved to the end of the term (deferral); zero for an instalment plan
    term_extension_months: int
    schedule: tuple[Instalment, ...]
    # Regular instalments falling due before the plan's first date, which an instalment plan
    # spreads with the past due (no plan date can ask for them): their due dates.
    taken_in: tuple[date, ...] = ()

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.schedule), Decimal(0))

    @property
    def largest_payment(self) -> Decimal:
        """The most the plan asks in one month: what must fit the borrower's means."""
        return max(i.amount for i in self.schedule)

    @property
    def spread(self) -> Decimal:
        """What an instalment plan spreads over its months: the past due and `taken_in`."""
        return self.past_due + len(self.taken_in) * self.installment

    def describe(self) -> str:
        money = f"{self.currency} "
        if self.kind == "deferral":
            first = self.schedule[0]
            return (
                f"deferral of {self.months} instalment{'s' if self.months > 1 else ''}: "
                f"{money}{self.deferred} "
                f"moved to the end of the term (+{count_months(self.term_extension_months)}); "
                f"next instalment {money}{first.amount} on {first.due.isoformat()}"
            )
        amounts = sorted({i.amount for i in self.schedule}, reverse=True)
        each = " or ".join(f"{money}{a}" for a in amounts)
        spread = f"{money}{self.past_due} past due spread"
        if self.taken_in:
            dates = ", ".join(d.isoformat() for d in self.taken_in)
            spread = (
                f"{money}{self.spread} spread: {money}{self.past_due} past due and the instalment due {dates}"
            )
        return (
            f"instalment plan over {self.months} months: "
            f"{each} a month from {self.schedule[0].due.isoformat()} "
            f"to {self.schedule[-1].due.isoformat()} (instalment plus {spread})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "months": self.months,
            "currency": self.currency,
            "past_due": str(self.past_due),
            "installment": str(self.installment),
            "deferred": str(self.deferred),
            "term_extension_months": self.term_extension_months,
            "schedule": [{"due": i.due.isoformat(), "amount": str(i.amount)} for i in self.schedule],
            "total": str(self.total),
            "taken_in": [d.isoformat() for d in self.taken_in],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlanTerms":
        return cls(
            kind=data["kind"],
            months=int(data["months"]),
            currency=data["currency"],
            past_due=Decimal(data["past_due"]),
            installment=Decimal(data["installment"]),
            deferred=Decimal(data["deferred"]),
            term_extension_months=int(data["term_extension_months"]),
            schedule=tuple(
                Instalment(date.fromisoformat(i["due"]), Decimal(i["amount"])) for i in data["schedule"]
            ),
            taken_in=tuple(date.fromisoformat(d) for d in data.get("taken_in", ())),
        )


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def instalments_behind(loan: Loan) -> int:
    """Instalments (whole or partial) in the past due: what a deferral must move to cure it."""
    if loan.past_due <= 0:
        return 0
    if loan.installment <= 0:
        raise PlanError("the loan has no instalment amount")
    return int((loan.past_due / loan.installment).to_integral_value(rounding=ROUND_CEILING))


def due_dates(due_day: int, *, on_or_after: date, count: int) -> list[date]:
    """`count` monthly dates on `due_day` (clamped to each month's length), the first on or after
    `on_or_after`. Each is computed from the first month, so a short month does not shift the rest.

    Kept per (due day, first date, count): every account entering restructuring gets its offers
    made (130,000 on a million-account portfolio's second day), each account's offers ask for
    about ten such lists, a day's accounts share a few hundred, and pendulum's `add(months=…)`
    computing each again was three quarters of the offers' cost (~150 µs an account)."""
    return list(_due_dates(due_day, on_or_after, count))


@lru_cache(maxsize=4096)
def _due_dates(due_day: int, on_or_after: date, count: int) -> tuple[date, ...]:
    first_month = pendulum.date(on_or_after.year, on_or_after.month, 1)
    if _on_day(first_month, due_day) < on_or_after:
        first_month = first_month.add(months=1)
    return tuple(_on_day(first_month.add(months=i), due_day) for i in range(count))


def _on_day(month: pendulum.Date, due_day: int) -> date:
    return date(month.year, month.month, min(due_day, month.days_in_month))


def split_exact(total: Decimal, parts: int, currency: str) -> list[Decimal]:
    """`total` in `parts` shares at the currency's precision that add up to it exactly; the
    first shares carry the odd minor units."""
    if parts < 1:
        raise PlanError("a plan needs at least one payment")
    quantum = _quantum(currency)
    if total != total.quantize(quantum):
        raise PlanError(f"{total} is not an amount of {currency}")
    units = int(total / quantum)
    base, odd = divmod(units, parts)
    return [(base + (1 if i < odd else 0)) * quantum for i in range(parts)]


def _start(loan: Loan, business_date: date, rules: PlanRules) -> tuple[int, date]:
    return loan.due_day or business_date.day, business_date + timedelta(days=rules.min_lead_days)


def _upcoming(loan: Loan, business_date: date, due_day: int) -> date:
    """The first regular instalment not in the past due: the loan's next due date where the file
    gives one still ahead, else its due day on or after the business date (not past due yet)."""
    first = due_dates(due_day, on_or_after=business_date, count=1)[0]
    return max(first, loan.next_due_date) if loan.next_due_date else first


def instalments_before_start(loan: Loan, *, business_date: date, rules: PlanRules) -> tuple[date, ...]:
    """The due dates of regular instalments falling due before a plan's first date may be
    (`min_lead_days` ahead): no plan date can ask for them, so a plan must take them in (a
    deferral defers them, an instalment plan spreads them with the past due), or the borrower is
    told of a next payment a month after one the loan still asks for, and it is never paid."""
    due_day, lead = _start(loan, business_date, rules)
    first = _upcoming(loan, business_date, due_day)
    return tuple(
        d for d in due_dates(due_day, on_or_after=first, count=rules.min_lead_days // 28 + 2) if d < lead
    )


def instalments_to_defer(loan: Loan, *, business_date: date, rules: PlanRules) -> int:
    """What the smallest deferral moves: the instalments in the past due, and those falling due
    before the deferral's first instalment may be (`instalments_before_start`)."""
    needed = instalments_behind(loan)
    if needed == 0:
        return 0
    return needed + len(instalments_before_start(loan, business_date=business_date, rules=rules))


def deferral(loan: Loan, months: int, *, business_date: date, rules: PlanRules) -> PlanTerms:
    """Defer the past due (and, when `months` is more than it holds, the next instalments too) to
    the end of the term; the plan is kept by the first instalment after the deferral."""
    needed = instalments_behind(loan)
    if needed == 0:
        raise PlanError("nothing is past due")
    if not 1 <= months <= rules.max_deferral:
        raise PlanError(f"a deferral moves 1 to {rules.max_deferral} instalments, not {months}")
    if months < needed:
        raise PlanError(
            f"{loan.currency} {loan.past_due} past due is {needed} instalments: "
            f"a deferral of {months} would leave "
            f"part of it due; defer {needed} or choose an instalment plan"
        )
    due_day, _ = _start(loan, business_date, rules)
    upcoming = _upcoming(loan, business_date, due_day)
    smallest = instalments_to_defer(loan, business_date=business_date, rules=rules)
    if months < smallest:
        raise PlanError(
            f"the instalment due {upcoming.isoformat()} falls before the deferral can start "
            f"({rules.min_lead_days} days ahead): defer {smallest} or choose an instalment plan"
        )
    # The upcoming instalments deferred as well; the next is the first the deferral leaves due,
    # counted from the loan's own next instalment so that none is skipped without being deferred.
    skipped = months - needed
    resume = due_dates(due_day, on_or_after=upcoming, count=skipped + 1)[-1]
    return PlanTerms(
        kind="deferral",
        months=months,
        currency=loan.currency,
        past_due=loan.past_due,
        installment=loan.installment,
        deferred=loan.past_due + skipped * loan.installment,
        term_extension_months=months,
        schedule=(Instalment(resume, loan.installment),),
    )


def instalment_plan(loan: Loan, months: int, *, business_date: date, rules: PlanRules) -> PlanTerms:
    """Spread the past due over `months` monthly payments, each on the loan's due day on top of
    the regular instalment."""
    if loan.past_due <= 0:
        raise PlanError("nothing is past due")
    if not rules.min_instalment_months <= months <= rules.max_instalment_months:
        span = f"{rules.min_instalment_months} to {rules.max_instalment_months}"
        raise PlanError(f"an instalment plan runs {span} months, not {months}")
    due_day, lead = _start(loan, business_date, rules)
    taken_in = instalments_before_start(loan, business_date=business_date, rules=rules)
    shares = split_exact(loan.past_due + len(taken_in) * loan.installment, months, loan.currency)
    dates = due_dates(due_day, on_or_after=lead, count=months)
    return PlanTerms(
        kind="instalment",
        months=months,
        currency=loan.currency,
        past_due=loan.past_due,
        installment=loan.installment,
        deferred=Decimal(0),
        term_extension_months=0,
        schedule=tuple(Instalment(d, loan.installment + s) for d, s in zip(dates, shares, strict=True)),
        taken_in=taken_in,
    )


def payment_ceiling(yearly_income: Decimal | None, currency: str) -> Decimal | None:
    """The most a plan may ask of the borrower a month: `AFFORDABLE_SHARE` of the bureau's yearly
    income estimate over twelve months, rounded down to the currency's minor unit (rounded up, a
    plan a cent above the line would pass). None, no ceiling, without an estimate. An estimate of
    no income is one, not "unknown": its ceiling is zero, which no plan fits, so `offers` keeps
    only the plan asking least."""
    if yearly_income is None:
        return None
    share = yearly_income * AFFORDABLE_SHARE.numerator / (12 * AFFORDABLE_SHARE.denominator)
    return share.quantize(_quantum(currency), rounding=ROUND_FLOOR)


def offers(
    loan: Loan, *, business_date: date, rules: PlanRules, ceiling: Decimal | None = None
) -> list[PlanTerms]:
    """What to offer, the recommended first: a deferral when the past due fits in one (it asks
    nothing extra of a borrower who is short of money now), then the instalment plans.

    With a `ceiling` (`payment_ceiling`: what the borrower's income affords a month; None when
    unknown), an offer whose largest payment is above it is left out, the order of the rest kept:
    a plan the borrower cannot pay defaults, and the account goes to review. The list is never
    emptied by it: when no offer fits, the one whose largest payment is smallest (the first of
    them on a tie) is kept alone, since a borrower in hardship must always be offered something,
    and that one asks least of them."""
    found: list[PlanTerms] = []
    needed = instalments_to_defer(loan, business_date=business_date, rules=rules)
    if needed == 0:
        return found
    if needed <= rules.max_deferral:
        found.append(deferral(loan, needed, business_date=business_date, rules=rules))
    for months in rules.instalment_months:
        if rules.min_instalment_months <= months <= rules.max_instalment_months:
            found.append(instalment_plan(loan, months, business_date=business_date, rules=rules))
    if ceiling is None or not found:
        return found
    return [o for o in found if o.largest_payment <= ceiling] or [min(found, key=_largest)]


def _largest(terms: PlanTerms) -> Decimal:
    return terms.largest_payment


def choose(
    loan: Loan,
    *,
    kind: str | None,
    months: int | None,
    business_date: date,
    rules: PlanRules,
    offered_only: bool = False,
    ceiling: Decimal | None = None,
) -> PlanTerms:
    """The plan a borrower or agent accepts: the recommended offer when neither kind nor months is
    named; a kind alone the first offer of that kind; a number alone names the months of an
    instalment plan. A number of months below one (a borrower's `ACCEPT 0`) is refused, not read
    as "no number". The offers are those `offers` makes under `ceiling` (the borrower's means).

    `offered_only` (a borrower's reply) takes one of `offers` only: the lender offers the plans of
    its policy that the borrower can afford, and the others within `max_instalment_months` are for
    an agent to agree (a text saying `ACCEPT 12` made a twelve-month plan nobody offered)."""

    def available() -> list[PlanTerms]:
        return offers(loan, business_date=business_date, rules=rules, ceiling=ceiling)

    terms = _chosen(
        loan, available, kind=kind, months=months, business_date=business_date, rules=rules, ceiling=ceiling
    )
    if not offered_only:
        return terms
    found = available()
    if not any((o.kind, o.months) == (terms.kind, terms.months) for o in found):
        told = "; ".join(_named(o) for o in found)
        why = f"{_named(terms)} is not one of the offers ({told})"
        if ceiling is not None and terms.largest_payment > ceiling:
            money = terms.currency
            why += f"; {money} {terms.largest_payment} a month is above the {money} {ceiling}"
            why += " the borrower's income affords"
        raise PlanError(f"{why}: an agent may agree it")
    return terms


def _named(terms: PlanTerms) -> str:
    if terms.kind == "deferral":
        return f"a deferral of {terms.months} instalment{'' if terms.months == 1 else 's'}"
    return f"an instalment plan over {count_months(terms.months)}"


def _chosen(
    loan: Loan,
    available: Callable[[], list[PlanTerms]],
    *,
    kind: str | None,
    months: int | None,
    business_date: date,
    rules: PlanRules,
    ceiling: Decimal | None,
) -> PlanTerms:
    if months is not None and months < 1:
        raise PlanError(f"a plan runs for at least one month, not {months}")
    if kind is None and months is None:
        found = available()
        if not found:
            raise PlanError("nothing is past due")
        return found[0]
    if months is None and ceiling is not None:
        # A kind alone (`ACCEPT INSTALMENT`) is its first offer: the borrower's means may have left
        # out the policy's first instalment plan and kept a longer one.
        with suppress(PlanError):  # no offer at all: the kind's own default says why, or is agreed
            offered = next((o for o in available() if o.kind == kind), None)
            if offered is not None:
                return offered
    kind = kind or "instalment"
    if kind == "deferral":
        smallest = instalments_to_defer(loan, business_date=business_date, rules=rules)
        return deferral(loan, months or smallest, business_date=business_date, rules=rules)
    if kind == "instalment":
        return instalment_plan(
            loan, months or rules.instalment_months[0], business_date=business_date, rules=rules
        )
    raise PlanError(f"unknown plan kind {kind!r}: deferral or instalment")


# -- monitoring ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    status: str  # active | completed | defaulted
    paid: Decimal  # received towards the plan so far
    on_time: int  # instalments covered by their date plus grace, from the first, without a gap
    missed: Instalment | None = None
    reason: str = ""


def monitor(
    terms: PlanTerms,
    payments: Sequence[tuple[date, Decimal]],
    *,
    business_date: date,
    grace_days: int,
) -> Progress:
    """Where a plan stands on `business_date`, given the payments (received date, amount) made
    since it was accepted."""
    received = sorted((d, a) for d, a in payments if d <= business_date)
    paid = sum((a for _, a in received), Decimal(0))

    def paid_by(day: date) -> Decimal:
        return sum((a for d, a in received if d <= day), Decimal(0))

    owed = Decimal(0)
    on_time = 0
    counting = True
    for n, item in enumerate(terms.schedule, start=1):
        owed += item.amount
        deadline = item.due + timedelta(days=grace_days)
        covered = paid_by(deadline) >= owed
        if covered and counting:
            on_time += 1
        else:
            counting = False
        if not covered and business_date > deadline:
            short = owed - paid_by(deadline)
            return Progress(
                "defaulted",
                paid,
                on_time,
                item,
                f"payment {n} of {len(terms.schedule)} "
                f"({terms.currency} {item.amount} due {item.due.isoformat()}) "
                f"short by {terms.currency} {short} after {grace_days} days' grace",
            )
    if paid >= terms.total:
        return Progress("completed", paid, on_time, None, f"all {len(terms.schedule)} payments made")
    return Progress(
        "active", paid, on_time, None, f"{on_time} of {len(terms.schedule)} payments made on time"
    )


def reage_due(terms: PlanTerms, progress: Progress, *, rules: PlanRules, already: bool) -> bool:
    """Whether the plan now re-ages the account: an instalment plan, allowed by the policy, with
    enough on-time payments, and not re-aged before."""
    return (
        not already
        and rules.reage_after is not None
        and terms.kind == "instalment"
        and progress.status != "defaulted"
        and progress.on_time >= rules.reage_after
    )


# -- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanReply:
    action: str  # accept | decline | options
    kind: str | None = None
    months: int | None = None


_KIND_WORDS = {
    "DEFERRAL": "deferral",
    "DEFER": "deferral",
    "延期": "deferral",
    "展期": "deferral",
    "INSTALMENT": "instalment",
    "INSTALLMENT": "instalment",
    "INSTALMENTS": "instalment",
    "INSTALLMENTS": "instalment",
    "分期": "instalment",
}
_ACCEPT = re.compile(
    r"^(?:ACCEPT|YES|AGREE|接受|同意)\s*(?:PLAN|方案)?\s*"
    r"(?P<kind>DEFERRAL|DEFER|INSTALL?MENTS?|延期|展期|分期)?\s*"
    r"(?P<months>\d{1,2})?\s*(?:MONTHS?|个月|個月|期)?$"
)
_DECLINE = re.compile(r"^(?:DECLINE|NO|REFUSE|拒绝|拒絕|不接受|不同意)$")
_OPTIONS = re.compile(r"^(?:PLAN|PLANS|OPTIONS|方案)$")


def parse_plan_reply(text: str) -> PlanReply | None:
    """What a reply to a restructuring offer says: accept (optionally a kind and months), decline,
    or ask for the options (the offer's "Reply PLAN"); None for anything else."""
    norm = normalise(text)
    if _OPTIONS.match(norm):
        return PlanReply("options")
    if _DECLINE.match(norm):
        return PlanReply("decline")
    found = _ACCEPT.match(norm)
    if found is None:
        return None
    kind = _KIND_WORDS[found["kind"]] if found["kind"] else None
    months = int(found["months"]) if found["months"] else None
    return PlanReply("accept", kind, months)
