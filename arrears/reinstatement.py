"""After repossession: whether the borrower's right to reinstate the contract is spent.

Why a rule of its own: California gives the buyer of a repossessed car a right to reinstate the
contract by paying what is past due and the expenses (Cal. Civ. Code 2983.3(a); Cal. Fin. Code
22329(c) for loans), and its notice of intent to sell must state either that conditional right
"or that there is no right of reinstatement and provides a statement of reasons therefor" (Civ.
Code 2983.2(a); Fin. Code 22328(b)(2)). One reason is the statute's own limit: the right "may be
exercised only once in any 12-month period and twice during the term of the contract" (Civ. Code
2983.3(c); Fin. Code 22329(d): "limited to once in any 12-month period and twice during the term
of the loan"). The count is of the contract's reinstatements, whoever allowed them: the limit is
on how often the contract is reinstated, so one the lender allowed when the statute did not
counts too. Outside California there is no statutory reinstatement after repossession (the UCC
gives redemption only, 9-623): a lender may still allow it.

So the notice of sale (`tasks.recovery`) and `arrears sale reinstate`
(`arrears.storage.redemptions`) ask the same question of the same dates, here. Pure functions
over plain data.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

__all__ = ["SOURCE", "STATUTORY", "Spent", "last_day_to_reinstate", "one_year_before", "right_spent"]

# Where reinstatement after repossession is the borrower's right, not the lender's choice.
STATUTORY = frozenset({"US-CA"})
SOURCE = "California Civil Code section 2983.3"
_TIMES_IN_TERM = 2


@dataclass(frozen=True, slots=True)
class Spent:
    """Why the right to reinstate is spent: `rule` (`twelve_months`: once in any 12 months;
    `twice`: twice during the term) and the reinstatements that spent it."""

    rule: Literal["twelve_months", "twice"]
    on: tuple[date, ...]

    def said(self, who: str = "you") -> str:
        """The reason in words, for the notice (`who` "you") or for operations ("the borrower")."""
        days = " and on ".join(d.isoformat() for d in self.on)  # oldest first
        limit = (
            "once in any 12 months"
            if self.rule == "twelve_months"
            else "twice during the term of the contract"
        )
        return f"{who} reinstated this contract on {days}, and the right may be used {limit} ({SOURCE})"


def one_year_before(day: date) -> date:
    """The same calendar day a year earlier (29 February: the 28th)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def right_spent(earlier: Iterable[date], on: date) -> Spent | None:
    """Why a reinstatement on `on` is not the borrower's right, given the days the contract was
    reinstated before (`earlier`; those after `on` are not counted), or None when it is. Twice
    before in the term spends it for good; once in the 12 months before `on` (a reinstatement on
    the same calendar day a year later, or after, is outside them) spends it until then."""
    before = sorted(d for d in earlier if d <= on)
    if len(before) >= _TIMES_IN_TERM:
        return Spent("twice", tuple(before))
    recent = [d for d in before if d > one_year_before(on)]
    if recent:
        return Spent("twelve_months", (recent[-1],))
    return None


def last_day_to_reinstate(sale_after: date) -> date:
    """The last day the notice of sale gives to reinstate: the day before its first sale day."""
    return sale_after - timedelta(days=1)
