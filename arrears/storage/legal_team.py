"""The legal team's decisions on the referrals waiting for them (`arrears referral close` and
`arrears referral refile`; `arrears review list` shows what waits, `waits_for_legal_team`).

A referral goes back to the legal team when the court rejects its filing, the respondent objects
to its payment order, a dismissal is counsel's to file, or its filing is not made yet. The team
records what counsel did or decided, audited on the account's timeline as theirs (`legal:NAME`),
and the referral leaves the team's queue:

    outcome           of a referral (account in or out)          leaves it
    dismissal-filed   dismissing; objected, off-system (out)      dismissed
    not-suing         rejected, draft, off-system (in); objected  not_suing (the lifecycle charges off)
    suing-off-system  rejected, draft, objected (in)              off_system (waits for the court)
    judgment          off-system                                  judgment (the lifecycle closes it)
    refile            rejected, the present referral (in)         refiled, with a new referral to file

"account in": in legal referral (it still owes); "out": paid, cured or settled since. Each
decision is taken once: the same one again changes nothing, and one that does not fit is refused
(`ReferralRefused`), naming why. Every function takes the caller's connection and does not commit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update

from arrears.lifecycle import NOT_SUING
from arrears.review import draft_filing
from arrears.storage._common import Refused, event, insert_events
from arrears.storage.accounts import lock_accounts
from arrears.storage.referrals import OFF_SYSTEM, REFILED, filing_drafted, open_referral, referral_facts
from arrears.storage.tables import account, audit, referral
from arrears.vocabulary import Stage

__all__ = [
    "TEAM_OUTCOMES",
    "ReferralRefused",
    "TeamDecision",
    "close_referral",
    "refile_referral",
    "waits_for_legal_team",
]

# What the legal team may record of a referral waiting for them (`close_referral`), and the status
# each leaves: counsel filed the dismissal of a case the account's payment ended; no suit (the
# account goes on to charge-off: `arrears.lifecycle.NOT_SUING`); a suit counsel files outside
# arrears (the account stays in legal referral); that suit's judgment (the lifecycle closes the
# account, as for a court's).
TEAM_OUTCOMES = {
    "dismissal-filed": "dismissed",
    "not-suing": NOT_SUING,
    "suing-off-system": OFF_SYSTEM,
    "judgment": "judgment",
}


class ReferralRefused(Refused):
    """A legal team's decision that does not fit the referral (`Refused`: why, and the option at fault)."""


@dataclass(frozen=True, slots=True)
class TeamDecision:
    referral_id: int
    account_id: str
    action: str  # an outcome of TEAM_OUTCOMES, or `refile`
    previous: str  # the referral's status before
    status: str  # and now
    stage: str  # the account's
    changed: bool  # False: the same decision was recorded before, and nothing changed now
    detail: str  # what the decision means for the referral and the account
    refiled_as: int | None = None  # the new referral of a refiling

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "referral_id": self.referral_id,
            "action": self.action,
            "from": self.previous,
            "status": self.status,
            "stage": self.stage,
            "changed": self.changed,
            "detail": self.detail,
            "refiled_as": self.refiled_as,
        }


def waits_for_legal_team(status: str, stage: str) -> bool:
    """Whether a referral waits for the legal team (`arrears review list`): its filing rejected, or
    not filed yet, while the account is in legal referral; a payment order objected to and a
    dismissal counsel must file, whatever the account's stage since; a suit counsel filed
    off-system whose account has since paid, cured or settled (counsel must dismiss it)."""
    if status in ("objected", "dismissing"):
        return True
    if stage == Stage.LEGAL_REFERRAL:
        return status in ("rejected", "draft")
    return status == OFF_SYSTEM


def close_referral(
    connection: Connection,
    *,
    account_id: str,
    outcome: str,
    by: str,
    reason: str,
    at: datetime,
    referral_id: int | None = None,
) -> TeamDecision:
    """Record the legal team's `outcome` (`TEAM_OUTCOMES`) on the account's referral waiting for
    them (or on a suit it sues off-system), audited as `by`'s with `reason`. The same outcome
    again changes nothing; one that does not fit the referral is refused (`ReferralRefused`)."""
    target = TEAM_OUTCOMES[outcome]
    r, stage = _chosen(connection, account_id, referral_id, lambda status, stage: status != REFILED)
    if r.status == target:
        return TeamDecision(r.id, account_id, outcome, r.status, r.status, stage, False, f"already {target}")
    refused = _close_refusal(connection, r, stage, outcome)
    if refused:
        raise ReferralRefused(
            f"{account_id}: referral {r.id} {refused}: --outcome {outcome} was not recorded"
        )
    _moved(connection, r, target, at)
    if target == NOT_SUING and stage == Stage.LEGAL_REFERRAL:
        after = "no suit: the account leaves legal referral charged off at the policy's days past due"
    elif target == OFF_SYSTEM:
        after = "counsel sues outside arrears: the account stays in legal referral until its judgment"
    elif target == "judgment" and stage == Stage.LEGAL_REFERRAL:
        after = "judgment entered off-system: the next cycle closes the account"
    else:
        after = f"the referral ends (account {stage})"
    detail = f"referral {r.id}: {r.status} → {target}, by the legal team ({outcome}): {after}: {reason}"
    data = {"referral_id": r.id, "action": "closed", "outcome": outcome, "from": r.status, "to": target}
    _team_event(connection, account_id, at, by, detail, {**data, "filing_id": r.filing_id, "reason": reason})
    return TeamDecision(r.id, account_id, outcome, r.status, target, stage, True, after)


def refile_referral(
    connection: Connection,
    *,
    account_id: str,
    by: str,
    reason: str,
    at: datetime,
    lender: str,
    referral_id: int | None = None,
) -> TeamDecision:
    """Replace the account's rejected filing with a new referral opened from today's facts (the
    data fixed since, by an import or a person), for its referral run to file under a key of its
    own: the gateway answers the old key with the rejected filing. Audited as `by`'s with
    `reason`; a repeat changes nothing; refused (`ReferralRefused`) unless the rejected referral is
    the present one of an account in legal referral, or when the new filing cannot be drafted."""
    r, stage = _chosen(
        connection,
        account_id,
        referral_id,
        lambda status, stage: (status, stage) == ("rejected", "legal_referral"),
    )
    if r.status == REFILED:
        new_id = _team_said(connection, account_id, r.id, "refiled").get("refiled_as")
        said = f"already refiled as referral {new_id}"
        return TeamDecision(r.id, account_id, "refile", r.status, r.status, stage, False, said, new_id)
    if r.status != "rejected" or stage != Stage.LEGAL_REFERRAL:
        why = (
            "is a payment order objected to, void (支付令失效): a suit is counsel's (`close --outcome "
            "suing-off-system`) or none (`--outcome not-suing`)"
            if r.status == "objected"
            else f"is {r.status}" + ("" if stage == Stage.LEGAL_REFERRAL else f" and the account is {stage}")
        )
        raise ReferralRefused(f"{account_id}: referral {r.id} {why}: only a rejected filing is refiled")
    latest = connection.execute(
        select(referral.c.id)
        .where(referral.c.account_id == account_id)
        .order_by(referral.c.id.desc())
        .limit(1)
    ).scalar_one()
    if latest != r.id:
        raise ReferralRefused(
            f"{account_id}: referral {r.id} is not the account's present referral ({latest}): close it "
            "instead (--outcome not-suing)"
        )
    _moved(connection, r, REFILED, at)
    new = open_referral(connection, account_id=account_id, at=at, lender=lender)
    if new is None:
        raise ReferralRefused(f"{account_id}: nothing to claim from today's facts: nothing was refiled")
    try:
        draft_filing(referral_facts(connection, new.referral_id))
    except ValueError as unfileable:  # no court for the jurisdiction: filed, it would be rejected again
        raise ReferralRefused(
            f"{account_id}: the filing cannot be drafted from today's facts: {unfileable}"
        ) from None
    detail = (
        f"referral {r.id}: filing {r.filing_id or '(not filed)'} rejected, refiled by the legal team "
        f"as referral {new.referral_id}, drafted from today's facts: {reason}"
    )
    data = {"referral_id": r.id, "action": "refiled", "refiled_as": new.referral_id, "from": r.status}
    _team_event(connection, account_id, at, by, detail, {**data, "filing_id": r.filing_id, "reason": reason})
    said = f"referral {new.referral_id} opened from today's facts, for its run to file"
    return TeamDecision(r.id, account_id, "refile", r.status, REFILED, stage, True, said, new.referral_id)


def _chosen(
    connection: Connection,
    account_id: str,
    referral_id: int | None,
    acted_on: Callable[[str, str], bool],
) -> tuple[Row[Any], str]:
    """The referral a legal team's command acts on, with the account's stage: `referral_id`; else the
    one the team may act on now (`waits_for_legal_team`, or a suit off-system) that `acted_on(status,
    stage)` accepts; else the one the team decided on last (its decision repeated changes nothing),
    else the latest. The account is locked first: a cycle or a callback moves it meanwhile no more."""
    lock_accounts(connection, [account_id])
    stage = connection.execute(select(account.c.stage).where(account.c.account_id == account_id)).scalar()
    if stage is None:
        raise ReferralRefused(f"no account {account_id!r}")
    rows = connection.execute(
        select(referral).where(referral.c.account_id == account_id).order_by(referral.c.id)
    ).all()
    if referral_id is not None:
        found = [r for r in rows if r.id == referral_id]
        if not found:
            ids = ", ".join(str(r.id) for r in rows) or "none"
            raise ReferralRefused(
                f"{account_id} has no referral {referral_id} (its referrals: {ids})", "--referral"
            )
        return found[0], stage
    if not rows:
        raise ReferralRefused(f"{account_id} has no legal referral")
    before_team = [
        r
        for r in rows
        if (waits_for_legal_team(r.status, stage) or r.status == OFF_SYSTEM) and acted_on(r.status, stage)
    ]
    if len(before_team) > 1:
        ids = ", ".join(f"{r.id} ({r.status})" for r in before_team)
        raise ReferralRefused(
            f"{account_id} has {len(before_team)} referrals before the legal team: {ids}: say which",
            "--referral",
        )
    if before_team:
        return before_team[0], stage
    last = _team_said(connection, account_id, None, None).get("referral_id")
    return next((r for r in rows if r.id == last), rows[-1]), stage


def _close_refusal(connection: Connection, r: Row[Any], stage: str, outcome: str) -> str | None:
    """Why `outcome` does not fit the referral as it stands, or None when it does."""
    status, owed = r.status, stage == Stage.LEGAL_REFERRAL
    if status in ("judgment", "settled", "dismissed", "cancelled", NOT_SUING, REFILED):
        said = _team_said(connection, r.account_id, r.id, "closed")
        by = f" by {said['by']}" if said.get("by") and said.get("to") == status else ""
        return f"ended {status}{by}, and that stands"
    if not (waits_for_legal_team(status, stage) or status == OFF_SYSTEM):
        if status in ("rejected", "draft"):
            return f"is {status} and the account is {stage}, out of legal referral: nothing waits"
        return f"waits for the court (filing {r.filing_id} {status}), not for the legal team"
    before_court = status == "dismissing" or (status in ("objected", OFF_SYSTEM) and not owed)
    if outcome == "dismissal-filed" and not before_court:
        if status in ("rejected", "draft"):
            return f"is {status}: nothing is before the court to dismiss (--outcome not-suing ends it)"
        return "is of an account still in legal referral: a case ended while the debt is owed is not-suing"
    if outcome == "not-suing" and before_court and status != "objected":
        return (
            f"is before the court and the account is {stage}: counsel files its dismissal (dismissal-filed)"
        )
    if outcome == "suing-off-system" and (not owed or status == "dismissing"):
        return f"is {status} and the account is {stage}: nothing is owed to sue for"
    if outcome == "judgment" and status != OFF_SYSTEM:
        return (
            f"is {status}: only a suit counsel files off-system (suing-off-system) has its judgment recorded "
            "here; the court's gateway reports its own"
        )
    drafted = filing_drafted(connection, r.id) if status == "draft" else None
    if drafted is not None:
        return (
            f"went to the court under key {drafted.get('idempotency_key')}, its answer never recorded: its "
            "referral run learns at its next wake (each cycle) whether the court has it; decide then"
        )
    return None


def _moved(connection: Connection, r: Row[Any], status: str, at: datetime) -> None:
    """Set the referral's status, from the one it was read with (a court's callback moving it
    meanwhile makes the decision refused, not recorded over the court's word)."""
    if at < r.updated_at:
        raise ReferralRefused(
            f"{at.isoformat()} is before referral {r.id} last changed ({r.updated_at.isoformat()})", "--as-of"
        )
    moved = connection.execute(
        update(referral)
        .where(referral.c.id == r.id, referral.c.status == r.status)
        .values(status=status, updated_at=at)
    ).rowcount
    if not moved:
        raise ReferralRefused(
            f"{r.account_id}: referral {r.id} changed meanwhile: look again (arrears review list)"
        )


def _team_event(
    connection: Connection, account_id: str, at: datetime, by: str, detail: str, data: dict[str, Any]
) -> None:
    insert_events(
        connection, [event(account_id, at, "referral", detail, {**data, "by": by}, actor=f"legal:{by}")]
    )


def _team_said(
    connection: Connection, account_id: str, referral_id: int | None, action: str | None
) -> dict[str, Any]:
    """The data of the legal team's last decision on the account (on `referral_id`, of `action`,
    where given), or {}."""
    last: dict[str, Any] = {}
    for (data,) in connection.execute(
        select(audit.c.data)
        .where(audit.c.account_id == account_id, audit.c.kind == "referral", audit.c.actor.like("legal:%"))
        .order_by(audit.c.at, audit.c.id)
    ):
        said = data or {}
        if (
            said.get("action") in ("closed", "refiled")
            and referral_id in (None, said.get("referral_id"))
            and action in (None, said.get("action"))
        ):
            last = dict(said)
    return last
