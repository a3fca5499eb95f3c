"""Data access for inbound callbacks: opt-outs and opt-ins, replies.

Delivery reports have their own module, `arrears.storage.delivery_reports`, and a court's
statuses theirs, `arrears.storage.court_statuses`.

Every function takes the caller's connection and does not commit (the task owns the
transaction). Each is idempotent: a callback told twice changes nothing the second time, either
because the state it asks for is already there (a delivery report) or because its `callback_id`
is already in the audit trail (a reply, a court status, an opt-out or opt-in). Every STOP and
START is audited, one that finds the number as it asks included: a vendor delivers a callback
again when it missed our answer, possibly after later ones, and a START known only by its effect
would, told again after a STOP, opt the number back in. Phone numbers reach the audit text
masked; the borrower's words are kept as evidence.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, select, update

from arrears.inbound import AMBIGUOUS_SENDER, attribute
from arrears.masking import mask_phone
from arrears.storage import quarantine
from arrears.storage._common import clear_number_opt_out, keep_number_opt_out, place_holds
from arrears.storage.cycle import TERMINAL
from arrears.storage.quarantine import What
from arrears.storage.tables import account, audit, contact, hold, message
from arrears.storage.vendor_orders import cancel_vendor_orders
from arrears.vocabulary import Channel, Hold, InvalidBecause

__all__ = [
    "Inbound",
    "InboundRecorded",
    "callback_seen",
    "record_number_works",
    "record_opt_in",
    "record_opt_out",
    "record_reply",
    "record_statement",
    "record_wrong_number",
    "retry_unattributed",
]


# A reply answers a message we sent to its number this recently (as long as a reply is read).
ANSWER_WINDOW = timedelta(days=14)

SOURCE = "webhook"  # AccountHold.source of the holds placed here; only these are lifted here


# -- inbound messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """One inbound SMS as the webhook verified it."""

    address: str  # E.164 of the sender
    text: str  # as sent (the audit keeps it verbatim)
    at: datetime
    provider: str
    callback_id: str  # the vendor's message id, or a hash of the callback: what makes it idempotent
    keyword: str | None = None  # the opt-out or opt-in keyword, if one decided
    media: tuple[str, ...] = ()  # where the vendor holds what was attached (an MMS photo)


@dataclass(frozen=True, slots=True)
class InboundRecorded:
    duplicate: bool  # this callback was recorded before: nothing was done
    changed: bool  # an opt-out or opt-in changed a contact point or a hold (a reply: recorded)
    borrowers: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # every account of those borrowers
    open_accounts: tuple[str, ...] = ()  # those still in play: the lifecycle has work on them
    attributed: str | None = None  # a reply: the one open account it is for (None: not attributable)


def _borrowers_of(connection: Connection, address: str) -> dict[str, list[tuple[str, str]]]:
    """Borrowers with this SMS number, each with its (account_id, stage) pairs."""
    owners = select(contact.c.borrower_id).where(_number(address))
    found: dict[str, list[tuple[str, str]]] = {b: [] for b in connection.execute(owners).scalars()}
    if found:
        for r in connection.execute(
            select(account.c.borrower_id, account.c.account_id, account.c.stage)
            .where(account.c.borrower_id.in_(list(found)))
            .order_by(account.c.account_id)
        ):
            found[r.borrower_id].append((r.account_id, r.stage))
    return found


def callback_seen(connection: Connection, callback_id: str, account_ids: Sequence[str]) -> bool:
    """Whether an audit event of these accounts (or of no account) already names the callback.

    Scoped to the accounts so it reads the (account_id, at) index, never the whole trail."""
    scope = audit.c.account_id.in_(list(account_ids)) if account_ids else audit.c.account_id.is_(None)
    return (
        connection.execute(
            select(audit.c.id).where(scope, audit.c.data["callback_id"].as_string() == callback_id).limit(1)
        ).first()
        is not None
    )


def _recorded(owners: dict[str, list[tuple[str, str]]], *, duplicate: bool, changed: bool) -> InboundRecorded:
    accounts = [a for pairs in owners.values() for a, _ in pairs]
    open_ = [a for pairs in owners.values() for a, stage in pairs if stage not in TERMINAL]
    return InboundRecorded(duplicate, changed, tuple(owners), tuple(accounts), tuple(open_))


def _number(address: str) -> ColumnElement[bool]:
    """The contact points of an SMS number (one per borrower who holds it)."""
    return and_(contact.c.address == address, contact.c.channel == Channel.SMS.value)


def _said(inbound: Inbound, default: str) -> str:
    """Who said what, for an opt-out's or opt-in's detail: the keyword, the masked number, the
    provider, and the borrower's own words where they are more than the keyword ("STOP, I lost
    my job" is read by an agent as well as honoured)."""
    said = f"{inbound.keyword or default} from {mask_phone(inbound.address)} ({inbound.provider})"
    words = " ".join(inbound.text.split())
    return said if words.casefold() == (inbound.keyword or "").casefold() else f"{said}: {_quoted(inbound)}"


def _quoted(inbound: Inbound) -> str:
    """The borrower's words on one line, quoted and escaped: a detail is printed to terminals."""
    return repr(" ".join(inbound.text.split())) + (f" {_attached(inbound)}" if inbound.media else "")


def _words(inbound: Inbound) -> str:
    """The borrower's words as sent, and what came with them."""
    return " ".join(part for part in (inbound.text, _attached(inbound)) if part)


def _attached(inbound: Inbound) -> str:
    """What came with the words, for an agent to open: a photo of a receipt, of a court's notice."""
    n = len(inbound.media)
    return f"(+{n} attachment{'' if n == 1 else 's'})" if n else ""


def _event(inbound: Inbound, account_id: str | None, kind: str, detail: str, **data: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "at": inbound.at,
        "kind": kind,
        "actor": "borrower",
        "detail": detail,
        "data": {
            "from": mask_phone(inbound.address),
            "provider": inbound.provider,
            "callback_id": inbound.callback_id,
            "source": SOURCE,
            **data,
        }
        | ({"media": list(inbound.media)} if inbound.media else {}),
    }


def record_opt_out(connection: Connection, *, inbound: Inbound) -> InboundRecorded:
    """The number opts out of SMS: `opted_out_at` on it (for every borrower it belongs to) and an
    `sms_opt_out` hold on each of their accounts, so dispatch refuses the next send to any of
    their numbers. An opt-out from a number we do not know is audited (account None) and kept for
    the number (`keep_number_opt_out`): a borrower given it later starts opted out."""
    owners = _borrowers_of(connection, inbound.address)
    accounts = [a for pairs in owners.values() for a, _ in pairs]
    if callback_seen(connection, inbound.callback_id, accounts):
        return _recorded(owners, duplicate=True, changed=False)
    said = _said(inbound, "opt-out")
    if not owners:
        kept = keep_number_opt_out(connection, inbound.address, inbound.at)
        unknown = _event(
            inbound,
            None,
            "opt_out",
            f"SMS opt-out of an unknown number: {said}; "
            + ("kept: an account given the number later starts opted out" if kept else "already opted out"),
            keyword=inbound.keyword,
            text=inbound.text,
        )
        connection.execute(audit.insert(), [unknown])
        return _recorded(owners, duplicate=False, changed=kept)
    marked = connection.execute(
        update(contact)
        .where(_number(inbound.address), contact.c.opted_out_at.is_(None))
        .values(opted_out_at=inbound.at)
    ).rowcount
    placed = place_holds(
        connection, [(a, Hold.SMS_OPT_OUT, said) for a in accounts], source=SOURCE, at=inbound.at
    )
    new = {a for a, _ in placed}
    changed = bool(marked or new)
    # Audited even when already opted out: the borrower's words are kept, and the callback is
    # known by its id should the vendor deliver it again after a START.
    connection.execute(
        audit.insert(),
        [
            _event(
                inbound,
                a,
                "opt_out",
                f"SMS opt-out: {said}; "
                + (
                    f"sms_opt_out hold {'placed' if a in new else 'already active'}"
                    if changed
                    else "already opted out"
                ),
                hold=Hold.SMS_OPT_OUT.value,
                action="placed" if a in new else "kept",
                keyword=inbound.keyword,
                text=inbound.text,
            )
            for a in accounts
        ],
    )
    return _recorded(owners, duplicate=False, changed=changed)


def record_opt_in(connection: Connection, *, inbound: Inbound) -> InboundRecorded:
    """The number opts back in: its `opted_out_at` is cleared (and an opt-out kept for it while no
    borrower held it: `clear_number_opt_out`), and the webhook's `sms_opt_out`
    holds are lifted from the accounts of borrowers with no other opted-out number. A hold placed
    by an import or an agent stays: the one who placed it lifts it. A START sent before the
    number's opt-out (by the vendor's time) changes nothing."""
    owners = _borrowers_of(connection, inbound.address)
    accounts = [a for pairs in owners.values() for a, _ in pairs]
    if callback_seen(connection, inbound.callback_id, accounts):
        return _recorded(owners, duplicate=True, changed=False)
    said = _said(inbound, "opt-in")
    unkept = clear_number_opt_out(connection, inbound.address, inbound.at)  # one made while unknown
    if not owners:
        connection.execute(
            audit.insert(),
            [
                _event(
                    inbound,
                    None,
                    "opt_in",
                    f"SMS opt-in of an unknown number: {said}" + ("; its opt-out ends" if unkept else ""),
                    keyword=inbound.keyword,
                    text=inbound.text,
                )
            ],
        )
        return _recorded(owners, duplicate=False, changed=unkept)
    number = _number(inbound.address)
    # A START the borrower sent before their last STOP (the vendor delivered it late) opts nothing
    # back in: the borrower's last word stands. (Twilio's times are those of delivery.)
    cleared = connection.execute(
        update(contact).where(number, contact.c.opted_out_at <= inbound.at).values(opted_out_at=None)
    ).rowcount
    since = connection.execute(select(func.max(contact.c.opted_out_at)).where(number)).scalar()
    still_out = set(
        connection.execute(
            select(contact.c.borrower_id).where(
                contact.c.borrower_id.in_(list(owners)),
                contact.c.channel == Channel.SMS.value,
                contact.c.opted_out_at.is_not(None),
            )
        ).scalars()
    )
    free = [a for b, pairs in owners.items() if b not in still_out for a, _ in pairs]
    lifted = (
        connection.execute(
            update(hold)
            .where(
                hold.c.account_id.in_(free),
                hold.c.kind == Hold.SMS_OPT_OUT.value,
                hold.c.source == SOURCE,
                hold.c.lifted_at.is_(None),
            )
            .values(lifted_at=inbound.at)
            .returning(hold.c.account_id)
        )
        .scalars()
        .all()
        if free
        else []
    )
    changed = bool(cleared or lifted or unkept)
    lifted_set = set(lifted)
    # Audited even when nothing was opted out, for the same reasons as an opt-out: above all, a
    # START delivered again after a later STOP must be known, or it would opt the number back in.
    connection.execute(
        audit.insert(),
        [
            _event(
                inbound,
                a,
                "opt_in",
                f"SMS opt-in: {said}; "
                + (
                    f"sms_opt_out hold {'lifted' if a in lifted_set else 'not lifted'}"
                    if changed
                    else f"the number opted out after it was sent, at {since.isoformat()}: it stays out"
                    if since is not None
                    else "the number was not opted out"
                ),
                hold=Hold.SMS_OPT_OUT.value,
                action="lifted" if a in lifted_set else "kept",
                keyword=inbound.keyword,
                text=inbound.text,
            )
            for a in accounts
        ],
    )
    return _recorded(owners, duplicate=False, changed=changed)


def record_wrong_number(connection: Connection, *, inbound: Inbound) -> InboundRecorded:
    """Whoever has the number says it is not the borrower's: it is marked invalid for every
    borrower who holds it, as a carrier's "not a working number" marks it, so dispatch blocks what
    waits for it (`invalid_number`) and a borrower left without a working number is skip traced.
    Audited on each of their accounts with the words, never as the borrower's reply: it is no
    promise and no sign of willingness."""
    owners = _borrowers_of(connection, inbound.address)
    accounts = [a for pairs in owners.values() for a, _ in pairs]
    if callback_seen(connection, inbound.callback_id, accounts):
        return _recorded(owners, duplicate=True, changed=False)
    marked = connection.execute(
        update(contact)
        .where(_number(inbound.address), contact.c.valid.is_(True))
        .values(valid=False, invalid_reason=InvalidBecause.WRONG_NUMBER.value)
    ).rowcount
    said = f"{mask_phone(inbound.address)} ({inbound.provider}): {_quoted(inbound)}"
    done = (
        "the number is marked invalid"
        if marked
        else "the number was marked invalid already"
        if owners
        else "no borrower holds the number"
    )
    on: list[str | None] = [*accounts] or [None]  # a number no borrower holds: kept, on no account
    connection.execute(
        audit.insert(),
        [
            _event(
                inbound,
                a,
                "wrong_number",
                f"wrong number from {said}; {done}",
                keyword=inbound.keyword,
                text=inbound.text,
            )
            for a in on
        ],
    )
    return _recorded(owners, duplicate=False, changed=bool(marked))


def record_number_works(connection: Connection, *, inbound: Inbound) -> list[str]:
    """A text from a number marked invalid for its failed deliveries shows that it works again (a
    line suspended for an unpaid phone bill, 用户停机, until the bill was paid; a phone off on a
    trip): it is usable again, its count of failures starts over, and the accounts of the
    borrowers who hold it are audited (kind `contact`). A number its holder disowned (a wrong
    number) or the provider refused stays invalid whoever texts from it. Call it after the text
    itself is recorded, for a text not seen before; returns the accounts audited."""
    revived = (
        connection.execute(
            update(contact)
            .where(
                _number(inbound.address),
                contact.c.valid.is_(False),
                contact.c.invalid_reason == InvalidBecause.UNDELIVERABLE.value,
            )
            .values(valid=True, failures=0, invalid_reason=None)
            .returning(contact.c.borrower_id)
        )
        .scalars()
        .all()
    )
    if not revived:
        return []
    accounts = list(
        connection.execute(
            select(account.c.account_id)
            .where(account.c.borrower_id.in_(revived))
            .order_by(account.c.account_id)
        ).scalars()
    )
    detail = (
        f"{mask_phone(inbound.address)} usable again: the borrower texted from it ({inbound.provider}) "
        "after it was marked unreachable for failed deliveries"
    )
    if accounts:
        connection.execute(audit.insert(), [_event(inbound, a, "contact", detail) for a in accounts])
    return accounts


def record_statement(connection: Connection, *, inbound: Inbound, hold: Hold, words: str) -> list[str]:
    """The borrower's text disputes the debt or tells of a bankruptcy (`arrears.inbound.classify`):
    the hold on each open account of the borrowers who hold the number, unless one of its kind is
    in force, audited with the words, and a repossession order it overtakes cancelled at once.
    Which of a borrower's loans a text means cannot be told, so it pauses them all until a person
    has looked (`arrears hold lift`). Call it once per new callback: the accounts placed."""
    owners = _borrowers_of(connection, inbound.address)
    why = f"{mask_phone(inbound.address)} ({inbound.provider}) wrote {words!r}"
    wanted = [(a, hold, why) for pairs in owners.values() for a, stage in pairs if stage not in TERMINAL]
    accounts = sorted(a for a, _ in place_holds(connection, wanted, source=SOURCE, at=inbound.at))
    if not accounts:
        return []
    detail = f"{hold} hold placed: {why}: {_quoted(inbound)}"
    connection.execute(
        audit.insert(),
        [
            _event(inbound, a, "hold", detail, hold=hold.value, action="placed", text=inbound.text)
            for a in accounts
        ],
    )
    for a in accounts:
        cancel_vendor_orders(connection, as_of=inbound.at, account_id=a)
    return accounts


def record_reply(connection: Connection, *, inbound: Inbound) -> InboundRecorded:
    """A reply is evidence for the account it is attributed to (a `reply` audit event with the
    text, which the lifecycle reads); the caller runs the lifecycle for that account.

    It is attributed only when one open account holds the number, or, when several do, to the
    only one of them we texted at that number lately (`arrears.inbound.attribute`). Otherwise it
    is for an agent: an `unattributed_reply` event on each open account that holds the number
    and a quarantine entry `ambiguous sender`; no promise is read from it for anyone. A reply
    when no account is open is evidence for all of them (or for none, from an unknown number)."""
    owners = _borrowers_of(connection, inbound.address)
    accounts = [a for pairs in owners.values() for a, _ in pairs]
    if callback_seen(connection, inbound.callback_id, accounts):
        return _recorded(owners, duplicate=True, changed=False)
    return _attribute_reply(connection, inbound, owners)


def _attribute_reply(
    connection: Connection, inbound: Inbound, owners: dict[str, list[tuple[str, str]]]
) -> InboundRecorded:
    recorded = _recorded(owners, duplicate=False, changed=True)
    masked = mask_phone(inbound.address)
    candidates = list(recorded.open_accounts)
    if not candidates:
        events = [
            _event(
                inbound,
                a,
                "reply",
                f"reply from {masked}: {_words(inbound)}",
                text=inbound.text,
            )
            for a in recorded.accounts
        ]
        connection.execute(
            audit.insert(),
            events
            or [
                _event(
                    inbound,
                    None,
                    "reply",
                    f"reply from an unknown number {masked}: {_words(inbound)}",
                    text=inbound.text,
                )
            ],
        )
        return recorded
    target = attribute(candidates, _messaged(connection, inbound, candidates))
    if target is not None:
        how = "the only open account with the number" if len(candidates) == 1 else "the message it answers"
        connection.execute(
            audit.insert(),
            [
                _event(
                    inbound,
                    target,
                    "reply",
                    f"reply from {masked}: {_words(inbound)}",
                    text=inbound.text,
                    attributed_by=how,
                )
            ],
        )
        return replace(recorded, attributed=target)
    points = sorted(connection.execute(select(contact.c.id).where(_number(inbound.address))).scalars())
    why = f"reply from {masked} not attributed: {len(candidates)} open accounts share the number"
    connection.execute(
        audit.insert(),
        [
            _event(
                inbound,
                a,
                "unattributed_reply",
                f"{why}; for an agent: {_words(inbound)}",
                text=inbound.text,
                candidates=candidates,
                contact_points=points,
                reason=AMBIGUOUS_SENDER,
            )
            for a in candidates
        ],
    )
    quarantine.put(
        connection,
        what=What.INBOUND,
        ref=inbound.callback_id,
        account_id=None,
        step="inbound",
        error_type=AMBIGUOUS_SENDER,
        error=f"{why} ({', '.join(candidates)})",
        at=inbound.at,
    )
    return recorded


def _messaged(connection: Connection, inbound: Inbound, candidates: Sequence[str]) -> list[str]:
    """Which of the candidate accounts we texted at the sender's number in the reply window."""
    return list(
        connection.execute(
            select(message.c.account_id)
            .where(
                message.c.address == inbound.address,
                message.c.account_id.in_(list(candidates)),
                message.c.sent_at.is_not(None),
                message.c.sent_at <= inbound.at,
                message.c.sent_at > inbound.at - ANSWER_WINDOW,
            )
            .distinct()
        ).scalars()
    )


def retry_unattributed(connection: Connection, *, callback_id: str, at: datetime) -> InboundRecorded | None:
    """Attribute again a reply set aside as `ambiguous sender` (the numbers may have been
    corrected since): the result names the account it is now attributed to, if any; None when
    the reply is not found. Its quarantine entry is reopened when it still cannot be attributed."""
    first = connection.execute(
        select(audit.c.at, audit.c.data, audit.c.actor)
        .where(audit.c.kind == "unattributed_reply", audit.c.at <= at)
        .where(audit.c.data["callback_id"].as_string() == callback_id)
        .limit(1)
    ).first()
    if first is None:
        return None
    data = first.data or {}
    address = connection.execute(
        select(contact.c.address).where(contact.c.id.in_([int(i) for i in data.get("contact_points", [])]))
    ).scalar()
    if address is None:
        return None
    inbound = Inbound(
        address=address,
        text=str(data.get("text", "")),
        at=first.at,
        provider=str(data.get("provider", "")),
        callback_id=callback_id,
    )
    owners = _borrowers_of(connection, address)
    candidates = [a for pairs in owners.values() for a, stage in pairs if stage not in TERMINAL]
    target = attribute(candidates, _messaged(connection, inbound, candidates))
    if target is None:
        return _recorded(owners, duplicate=False, changed=False)
    return _attribute_reply(
        connection, inbound, {b: [(a, s) for a, s in pairs if a == target] for b, pairs in owners.items()}
    )


# -- court status ---------------------------------------------------------------------------------
