"""Data access for what may happen between a repossession and the sale: the borrower redeems the
car (`arrears sale redeem`) or reinstates the contract (`arrears sale reinstate`), and, after the
sale, asks for the explanation of the deficiency or surplus (`arrears sale explain`).

- Redemption (UCC 9-623: the debtor may redeem before the disposition by paying "all obligations
  secured" and the secured party's expenses; Cal. Civ. Code 2983.2 likewise): the car goes back,
  the account leaves to `paid_off`.
- Reinstatement (Cal. Civ. Code 2983.3; Fin. Code 22329 for loans: the past due and the expenses
  paid, the contract goes on): the car goes back, the account leaves to `cured`, from which a new
  delinquency starts it again. California's right is limited (`arrears.reinstatement`), and
  exists nowhere else: there, or once spent, only the lender's choice (`lender_allows`) reinstates.
- The 10 more days a California borrower asks for in writing (Cal. Civ. Code 2983.2(a); Fin. Code
  22328(b)(3)): `arrears sale extend`; a sale recorded later is checked against the moved day.
- An explanation on request (UCC 9-616(b)(1)(B): sent within 14 days after the request is
  received): the recoveries step (`tasks.sales`) writes it again for the request, under a key of
  its own, with the day it is due as the letter's deadline (`arrears letters list`).

Each is an audit event on the account's timeline (`REDEEMED`, `REINSTATED`, `REQUESTED`), with all
of it in its data: a later sale of that recovery is refused, and the recovery is not noticed for
sale again (`arrears.storage.recoveries.returned_to_borrower`). The same again changes nothing.
Every function takes the caller's connection and does not commit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, case, func, select, update

from arrears.jurisdictions import Profile
from arrears.reinstatement import STATUTORY, last_day_to_reinstate, right_spent
from arrears.sales import EXPLANATION_DAYS, EXTENSION_DAYS, EXTENSION_JURISDICTIONS, first_sale_day
from arrears.storage._common import event, holds_of, insert_events
from arrears.storage.accounts import lock_accounts
from arrears.storage.recoveries import (
    REDEEMED,
    REINSTATED,
    UNRETURNED,
    hold_back_notice,
    returned_to_borrower,
)
from arrears.storage.sales import (
    RecoveredCar,
    Sale,
    SaleRefused,
    SaleToSettle,
    check_after_recovery,
    events_data,
    recorded_sale,
    recovered_car,
    said_of_order,
    sale_from_event,
)
from arrears.storage.tables import account, audit, letter
from arrears.vocabulary import Exit, Stage

__all__ = [
    "ANSWERED",
    "REQUESTED",
    "ExplanationRequest",
    "Extension",
    "RequestToAnswer",
    "Returned",
    "answered_note",
    "extend_sale",
    "redeem",
    "reinstate",
    "reinstatements",
    "request_explanation",
    "requests_to_answer",
]

REQUESTED = "explanation_requested"
ANSWERED = "explanation_answered"  # the request's explanation mailed: `requests_to_answer` reads it no more
# What arrears cannot do itself: the agency integration creates, cancels and follows orders only.
RELEASE = "a person arranges the vehicle's release with the agency (arrears sends the agency nothing)"

Kind = Literal["redeemed", "reinstated"]
_KINDS: dict[str, str] = {"redeemed": REDEEMED, "reinstated": REINSTATED}
_TO: dict[str, Exit] = {"redeemed": Exit.PAID_OFF, "reinstated": Exit.CURED}


@dataclass(frozen=True, slots=True)
class Returned:
    """A car given back to the borrower before its sale, as its event states it."""

    account_id: str
    order_id: str
    kind: Kind
    paid_on: date
    by: str
    left: str | None  # the stage the account left now (None: it was at `to` already)
    to: str
    changed: bool
    basis: str | None = None  # reinstated: "statute", or "lender" (its choice)
    spent: str | None = None  # reinstated: why the statute gave no right, if it did not
    held_back: tuple[int, ...] = ()  # notices of sale held back

    @property
    def outcome(self) -> str:
        """What follows, in the words of the command and the timeline."""
        moved = f"the account leaves {self.left} for {self.to}" if self.left else f"the account is {self.to}"
        held = f"; notice of sale {', '.join(map(str, self.held_back))} held back" if self.held_back else ""
        return f"{moved}; the vehicle of order {self.order_id} goes back to the borrower: {RELEASE}{held}"

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "order_id": self.order_id,
            "kind": self.kind,
            "paid_on": self.paid_on.isoformat(),
            "by": self.by,
            "from": self.left,
            "to": self.to,
            "basis": self.basis,
            "right_spent": self.spent,
            "notices_held_back": list(self.held_back),
            "changed": self.changed,
            "outcome": self.outcome,
        }


def _known(account_id: str, kind: Kind, data: dict[str, Any]) -> Returned:
    return Returned(
        account_id,
        data["order_id"],
        kind,
        date.fromisoformat(data["paid_on"]),
        data.get("by", ""),
        data.get("from"),
        data["to"],
        False,
        data.get("basis"),
        data.get("right_spent"),
        tuple(data.get("held_back") or ()),
    )


def _returnable(
    connection: Connection, account_id: str, kind: Kind, paid_on: date, at: datetime
) -> tuple[RecoveredCar, Returned | None]:
    """The recovery whose car may go back for a payment on `paid_on`, and the same return
    recorded before (None: it was not). Refused (`SaleRefused`): no recovered car, its sale
    recorded, gone back already otherwise, a day ahead of today or before the recovery, an account
    its recovery did not close and that waits for it no more."""
    rec = recovered_car(connection, account_id, returned_ok=True)
    a = rec.account
    returned = returned_to_borrower(connection, account_id, rec.order_id)
    if returned is not None:
        was, data = returned
        if was == _KINDS[kind] and data.get("paid_on") == paid_on.isoformat():
            return rec, _known(account_id, kind, data)
        raise SaleRefused(
            f"{account_id}: the vehicle of order {rec.order_id} went back to the borrower already "
            f"({was}: paid on {data.get('paid_on')}, recorded by {data.get('by')})",
            "--paid-on" if was == _KINDS[kind] else None,
        )
    sold = said_of_order(connection, account_id, "vehicle_sale", rec.order_id)
    if sold is not None:
        raise SaleRefused(
            f"{account_id}: the vehicle of order {rec.order_id} was sold on {sold.get('sold_on')} "
            f"(recorded by {sold.get('by')}): it could be redeemed, or the contract reinstated, only "
            "before the sale (UCC 9-623(c); Cal. Civ. Code 2983.2)"
        )
    check_after_recovery(rec, paid_on, at, "--paid-on")
    open_ = a.stage in tuple(s.value for s in Stage)
    if a.stage != _TO[kind].value and not open_ and rec.closed is None:
        raise SaleRefused(
            f"{account_id} is {a.stage}, and the recovery of order {rec.order_id} did not close it: "
            "a car goes back on an account its recovery closed, or whose recovery waits"
        )
    return rec, None


def redeem(
    connection: Connection, *, account_id: str, paid_on: date, by: str, why: str | None, at: datetime
) -> Returned:
    """Record that the borrower redeemed the recovered car, paying all obligations secured and the
    expenses on `paid_on` (UCC 9-623), audited as `by`'s: the account leaves to `paid_off`, an
    unsent notice of sale is held back, and a person arranges the car's release. Refused
    (`SaleRefused`) as `_returnable` says."""
    rec, same = _returnable(connection, account_id, "redeemed", paid_on, at)
    if same is not None:
        return same
    reason = (
        f"vehicle of order {rec.order_id} redeemed: all obligations secured and the expenses paid on "
        f"{paid_on.isoformat()} (UCC 9-623)"
    )
    return _give_back(connection, rec, "redeemed", paid_on=paid_on, by=by, why=why, at=at, reason=reason)


def reinstate(
    connection: Connection,
    *,
    account_id: str,
    paid_on: date,
    by: str,
    why: str | None,
    at: datetime,
    lender_allows: bool = False,
) -> Returned:
    """Record that the borrower reinstated the contract, paying the past due and the expenses on
    `paid_on`, audited as `by`'s: the account leaves to `cured` (its past due cleared, so the
    next cycle does not read a servicing file from before the payment as a delinquency), an unsent
    notice of sale is held back, and a person arranges the car's release.

    The borrower's right in California (Cal. Civ. Code 2983.3), unless it is spent (twice in the
    contract, or once in the 12 months before: `arrears.reinstatement`) or its period has ended
    (the notice's first sale day, 10 days later on the borrower's written request); then, and
    outside California, where no statute gives it, only `lender_allows` reinstates, recorded as the
    lender's choice. Refused (`SaleRefused`) without it, and as `_returnable` says."""
    rec, same = _returnable(connection, account_id, "reinstated", paid_on, at)
    if same is not None:
        return same
    a = rec.account
    spent = None
    if a.jurisdiction in STATUTORY:
        found = right_spent(reinstatements(connection, account_id), paid_on)
        spent = found.said("the borrower") if found else _period_over(connection, rec, paid_on)
    else:
        spent = (
            f"{a.jurisdiction} gives no right to reinstate after repossession (UCC 9-623: redemption only; "
            "California's is Civ. Code 2983.3)"
        )
    if spent and not lender_allows:
        raise SaleRefused(
            f"{account_id}: {spent}: the lender may still allow it (--lender-allows), recorded as its choice",
            "--lender-allows",
        )
    basis = "lender" if spent else "statute"
    said = "the lender's choice" if spent else "Cal. Civ. Code 2983.3"
    reason = (
        f"contract reinstated: the past due and the expenses paid on {paid_on.isoformat()} ({said}); "
        f"the vehicle of order {rec.order_id} to be returned"
    )
    return _give_back(
        connection,
        rec,
        "reinstated",
        paid_on=paid_on,
        by=by,
        why=why,
        at=at,
        reason=reason,
        basis=basis,
        spent=spent,
        extra={"lender_allows": lender_allows},
    )


def _period_over(connection: Connection, rec: RecoveredCar, paid_on: date) -> str | None:
    """Why the notice's period to reinstate had ended on `paid_on`, or None (no notice mailed yet:
    it has not begun)."""
    printed = (rec.closed or {}).get("sale_after")
    if not printed:
        return None
    extended = said_of_order(connection, rec.account.account_id, "sale_extended", rec.order_id) is not None
    first = first_sale_day(date.fromisoformat(printed), extended=extended)
    if paid_on <= last_day_to_reinstate(first):
        return None
    return (
        "the period to reinstate the notice of sale gave ended on "
        f"{last_day_to_reinstate(first).isoformat()} (Cal. Civ. Code 2983.2(a))"
    )


def reinstatements(connection: Connection, account_id: str) -> list[date]:
    """The days the account's contract was reinstated, oldest first (each `REINSTATED` event)."""
    return sorted(
        date.fromisoformat(d["paid_on"])
        for d in events_data(connection, account_id, REINSTATED)
        if d.get("paid_on")
    )


def _give_back(
    connection: Connection,
    rec: RecoveredCar,
    kind: Kind,
    *,
    paid_on: date,
    by: str,
    why: str | None,
    at: datetime,
    reason: str,
    basis: str | None = None,
    spent: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Returned:
    a, to = rec.account, _TO[kind].value
    # An account said to have left to its exit while the car was on the lot (`UNRETURNED`) may
    # have fallen behind again since: the car's return is recorded, the stage it is in now is not
    # the old recovery's to change.
    if said_of_order(connection, a.account_id, UNRETURNED, rec.order_id):
        to = a.stage
    left = None
    if a.stage != to:
        values: dict[str, Any] = {"stage": to, "stage_since": at, "episode": account.c.episode + 1}
        if to == Exit.CURED.value:  # as a deferral does (`arrears.storage.plans`): the import says more later
            values |= {"past_due_amount": Decimal(0), "oldest_due_date": None, "days_past_due": 0}
        moved = connection.execute(
            update(account)
            .where(account.c.account_id == a.account_id, account.c.stage == a.stage)
            .values(**values, updated_at=at)
        ).rowcount
        left = a.stage if moved else None
    word = "redemption" if kind == "redeemed" else "reinstatement"
    held = hold_back_notice(connection, a.account_id, reason=f"the vehicle went back: {word}", at=at)
    returned = Returned(
        a.account_id, rec.order_id, kind, paid_on, by, left, to, True, basis, spent, tuple(held)
    )
    data = {
        "order_id": rec.order_id,
        "paid_on": paid_on.isoformat(),
        "from": left,
        "to": to,
        "held_back": list(held),
        "by": by,
        "why": why,
        **({"basis": basis, "right_spent": spent} if kind == "reinstated" else {}),
        **(extra or {}),
    }
    detail = f"{reason}, recorded by {by}: {returned.outcome}" + (f": {why}" if why else "")
    events = [event(a.account_id, at, _KINDS[kind], detail, data, actor=f"operations:{by}")]
    if left:
        moved_data = {"from": left, "to": to, "reason": reason, "order_id": rec.order_id}
        events.append(event(a.account_id, at, "transition", f"{left} → {to}: {reason}", moved_data))
    insert_events(connection, events)
    return returned


# -- the explanation on request (UCC 9-616(b)(1)(B)) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExplanationRequest:
    account_id: str
    order_id: str
    sold_on: date
    requested_on: date
    by: str
    changed: bool

    @property
    def due_on(self) -> date:
        """The last day to send the explanation: 14 days after the request came."""
        return self.requested_on + timedelta(days=EXPLANATION_DAYS)

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "order_id": self.order_id,
            "sold_on": self.sold_on.isoformat(),
            "requested_on": self.requested_on.isoformat(),
            "due_on": self.due_on.isoformat(),
            "by": self.by,
            "changed": self.changed,
        }


def request_explanation(
    connection: Connection,
    *,
    account_id: str,
    requested_on: date,
    by: str,
    at: datetime,
    profile_of: Callable[[str], Profile],
) -> ExplanationRequest:
    """Record the borrower's request, received on `requested_on`, for the explanation of the
    deficiency or surplus after the account's latest sale, audited as `by`'s: the next recoveries
    step writes it again for this request, due 14 days after it came. The same request again
    changes nothing. Refused (`SaleRefused`): no sale recorded, an account whose profile owes no
    explanation (outside the US), a request dated ahead of today or before the sale (UCC
    9-616(a)(2)(C): a request is sent after the disposition), a sale whose deficiency is barred
    (the explanation would claim it)."""
    lock_accounts(connection, [account_id])
    a = connection.execute(select(account).where(account.c.account_id == account_id)).first()
    if a is None:
        raise SaleRefused(f"no account {account_id!r}")
    sale = recorded_sale(connection, account_id)
    if sale is None:
        raise SaleRefused(
            f"{account_id} has no sale recorded (arrears sale record): there is nothing to explain"
        )
    if not profile_of(a.jurisdiction).deficiency_explanation:
        raise SaleRefused(
            f"{account_id} is {a.jurisdiction}: the explanation of a deficiency or surplus on request is the "
            "US's (UCC 9-616(b)): nothing was recorded"
        )
    for d in events_data(connection, account_id, REQUESTED):
        if (d.get("order_id"), d.get("requested_on")) == (sale.order_id, requested_on.isoformat()):
            return ExplanationRequest(
                account_id, sale.order_id, sale.sold_on, requested_on, d.get("by", ""), False
            )
    today = at.astimezone(ZoneInfo(a.timezone)).date()
    if requested_on > today:
        raise SaleRefused(
            f"{account_id}: {requested_on.isoformat()} is after today ({today.isoformat()})", "--requested-on"
        )
    if requested_on < sale.sold_on:
        raise SaleRefused(
            f"{account_id}: {requested_on.isoformat()} is before the sale of {sale.sold_on.isoformat()}: a "
            "request is one sent after the sale (UCC 9-616(a)(2)(C))",
            "--requested-on",
        )
    if sale.barred and sale.deficiency:
        raise SaleRefused(
            f"{account_id}: the sale's deficiency is barred ({sale.barred}): the explanation would claim "
            "what the borrower does not owe; UCC 9-616(b)(1)(B) lets a record waiving the deficiency answer "
            "instead, which a person sends"
        )
    asked = ExplanationRequest(account_id, sale.order_id, sale.sold_on, requested_on, by, True)
    data = {
        "order_id": sale.order_id,
        "sold_on": sale.sold_on.isoformat(),
        "requested_on": requested_on.isoformat(),
        "due_on": asked.due_on.isoformat(),
        "by": by,
    }
    detail = (
        f"borrower's request of {requested_on.isoformat()} for the explanation of the deficiency or surplus "
        f"after the sale of {sale.sold_on.isoformat()} (UCC 9-616(b)(1)(B)), recorded by {by}: written again "
        f"at the next recoveries step, due by {asked.due_on.isoformat()}"
    )
    insert_events(connection, [event(account_id, at, REQUESTED, detail, data, actor=f"operations:{by}")])
    return asked


@dataclass(frozen=True, slots=True)
class RequestToAnswer:
    """A request whose explanation is not mailed yet: the sale as the explanation states it, with
    the account's facts (`owed`), and when the request was recorded."""

    owed: SaleToSettle
    requested_on: date
    recorded_at: datetime

    @property
    def due_on(self) -> date:
        return self.requested_on + timedelta(days=EXPLANATION_DAYS)


def requests_to_answer(connection: Connection) -> list[RequestToAnswer]:
    """The requests whose explanation is not yet mailed (`answered_note` not written), oldest
    first. One query when every request is answered: each is answered once, so only an account
    with more requests than answers is read further."""
    asked = func.sum(case((audit.c.kind == REQUESTED, 1), else_=0))
    answered = func.sum(case((audit.c.kind == ANSWERED, 1), else_=0))
    waiting = connection.execute(
        select(audit.c.account_id)
        .where(audit.c.kind.in_((REQUESTED, ANSWERED)))
        .group_by(audit.c.account_id)
        .having(asked > answered)
    ).scalars()
    found: list[RequestToAnswer] = []
    for account_id in sorted(waiting):
        done = {
            (d.get("order_id"), d.get("requested_on")) for d in events_data(connection, account_id, ANSWERED)
        }
        a = connection.execute(select(account).where(account.c.account_id == account_id)).one()
        holds = holds_of(connection, [account_id]).get(account_id, frozenset())
        recorded = connection.execute(
            select(audit.c.at, audit.c.data)
            .where(audit.c.account_id == account_id, audit.c.kind == REQUESTED)
            .order_by(audit.c.at, audit.c.id)
        ).all()
        for r in recorded:
            d = dict(r.data or {})
            if (d.get("order_id"), d.get("requested_on")) in done:
                continue
            sale = _sale(connection, account_id, d["order_id"])
            if sale is None:  # never: a request is recorded for a recorded sale
                continue
            owed = SaleToSettle(sale, a.jurisdiction, a.timezone, a.vin, holds)
            found.append(RequestToAnswer(owed, date.fromisoformat(d["requested_on"]), r.at))
    return found


def _sale(connection: Connection, account_id: str, order_id: str) -> Sale | None:
    for r in connection.execute(
        select(audit.c.at, audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "vehicle_sale")
        .order_by(audit.c.at, audit.c.id)
    ):
        d = dict(r.data or {})
        if d.get("order_id") == order_id and "deficiency" in d:
            return sale_from_event(account_id, d, r.at)
    return None


def answered_note(connection: Connection, request: RequestToAnswer, *, at: datetime, mailed_on: date) -> None:
    """Say on the timeline that the request's explanation was mailed (late, if after the day it was
    due): `requests_to_answer` reads it no more."""
    sale = request.owed.sale
    late = f", {(mailed_on - request.due_on).days} days late" if mailed_on > request.due_on else ""
    detail = (
        f"explanation requested on {request.requested_on.isoformat()} mailed {mailed_on.isoformat()} "
        f"(due by {request.due_on.isoformat()}{late})"
    )
    data = {
        "order_id": sale.order_id,
        "requested_on": request.requested_on.isoformat(),
        "due_on": request.due_on.isoformat(),
        "mailed_on": mailed_on.isoformat(),
        "late": bool(late),
    }
    insert_events(connection, [event(sale.account_id, at, ANSWERED, detail, data)])


# -- the borrower's written request for 10 more days (California) -----------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    account_id: str
    order_id: str
    requested_on: date
    sale_after: date | None  # the notice's first sale day (None: the notice is not mailed yet)
    changed: bool

    @property
    def first_day(self) -> date | None:
        return first_sale_day(self.sale_after, extended=True) if self.sale_after else None

    def as_json(self) -> dict[str, Any]:
        first = self.first_day
        return {
            "account_id": self.account_id,
            "order_id": self.order_id,
            "requested_on": self.requested_on.isoformat(),
            "sale_after": self.sale_after.isoformat() if self.sale_after else None,
            "first_sale_day": first.isoformat() if first else None,
            "changed": self.changed,
        }


def extend_sale(
    connection: Connection, *, account_id: str, requested_on: date, by: str, why: str | None, at: datetime
) -> Extension:
    """Record the borrower's written request for 10 more days to redeem or reinstate (Cal. Civ.
    Code 2983.2(a); Fin. Code 22328(b)(3)), audited as `by`'s: a sale recorded later is checked
    against the notice's first sale day moved 10 days on. Once: the same request again changes
    nothing; refused (`SaleRefused`) outside California, with no notice of sale, once the sale is
    recorded, for a request dated ahead of today or after the notice's first sale day, or a second
    request."""
    rec = recovered_car(connection, account_id)
    a = rec.account
    if a.jurisdiction not in EXTENSION_JURISDICTIONS:
        raise SaleRefused(
            f"{account_id} is {a.jurisdiction}: the 10-day extension on written request is California's "
            "(Cal. Civ. Code 2983.2(a)): nothing was recorded"
        )
    noticed = connection.execute(
        select(letter.c.id).where(
            letter.c.account_id == account_id,
            letter.c.kind == "notice_of_sale",
            letter.c.status.not_in(("blocked", "failed")),
        )
    ).first()
    if noticed is None:
        raise SaleRefused(f"{account_id} has no notice of sale: there is no period to extend")
    if said_of_order(connection, account_id, "vehicle_sale", rec.order_id) is not None:
        raise SaleRefused(
            f"{account_id}: the vehicle's sale is recorded already: there is no period to extend"
        )
    printed = (rec.closed or {}).get("sale_after")
    sale_after = date.fromisoformat(printed) if printed else None
    asked = said_of_order(connection, account_id, "sale_extended", rec.order_id)
    if asked is not None:
        if asked.get("requested_on") == requested_on.isoformat():
            return Extension(account_id, rec.order_id, requested_on, sale_after, False)
        raise SaleRefused(
            f"{account_id}: extended already on the request of {asked.get('requested_on')} (by "
            f"{asked.get('by')}): the 10 days are given once",
            "--requested-on",
        )
    today = at.astimezone(ZoneInfo(a.timezone)).date()
    if requested_on > today:
        raise SaleRefused(
            f"{account_id}: {requested_on.isoformat()} is after today ({today.isoformat()})", "--requested-on"
        )
    if sale_after is not None and requested_on >= sale_after:
        raise SaleRefused(
            f"{account_id}: requested on {requested_on.isoformat()}, once the period the notice gave had "
            f"ended ({sale_after.isoformat()} was the first sale day)",
            "--requested-on",
        )
    ext = Extension(account_id, rec.order_id, requested_on, sale_after, True)
    first = ext.first_day
    to = (
        f"no sale before {first.isoformat()}"
        if first
        else f"the sale waits {EXTENSION_DAYS} days more than the notice's date, once it is mailed"
    )
    detail = (
        f"borrower's written request of {requested_on.isoformat()} for {EXTENSION_DAYS} more days to redeem "
        f"or reinstate (Cal. Civ. Code 2983.2(a)), recorded by {by}: {to}" + (f": {why}" if why else "")
    )
    data = {
        "order_id": rec.order_id,
        "requested_on": requested_on.isoformat(),
        "sale_after": sale_after.isoformat() if sale_after else None,
        "first_sale_day": first.isoformat() if first else None,
        "days": EXTENSION_DAYS,
        "by": by,
        "why": why,
    }
    insert_events(
        connection, [event(account_id, at, "sale_extended", detail, data, actor=f"operations:{by}")]
    )
    return ext
