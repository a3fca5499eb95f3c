"""One verdict for every contact, used at decision time (advance) and again at send time (dispatch).

The same code decides both times so that a message allowed when it was scheduled is refused at
send time the moment something changed: an opt-out, a hold, the hour, a cap filled meanwhile.

Rules, in the order they are tried; the first that refuses names the verdict (`Verdict.reason`,
stored as the message's `reason` and in the audit trail):

| rule | verdict | when |
|---|---|---|
| `hold:<kind>` | block | an active hold (collection holds stop all; `cease_contact`, `sms_opt_out` part) |
| `opt_out` | block | the number replied STOP (or was opted out by an agent) |
| `third_party:forbidden` | block | a third party, where the profile allows none (IE) |
| `third_party:debtor-reachable` | block | a third party while the debtor can be reached |
| `template:unapproved` | block | the template is not in the policy's `approved_templates` |
| `content:<what>` | block | see `arrears.compliance.content` |
| `hours:<profile>` | block | the stated zone and the number's zones share no window at all |
| `hours:<profile>` | defer | outside the window in the borrower's local time (each zone that may be theirs) |
| `cap:<name>` | defer | a frequency cap of the profile is full |

A deferral's `not_before` is the earliest instant at which the window is open and every cap has
room: a contact outside the window is moved, never dropped and never sent early.
"""

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from arrears.compliance.caps import Contact, cap_exceeded, cap_free_at, conversations, counted
from arrears.compliance.content import check_content
from arrears.compliance.hours import NoCommonWindow, contact_allowed, contact_zones, next_allowed_instant
from arrears.jurisdictions import Profile
from arrears.records import record
from arrears.vocabulary import Hold, HoldScope

if TYPE_CHECKING:
    from arrears.policy import Policy

__all__ = ["ContactRequest", "ContactState", "Verdict", "VerdictKind", "blocks_channel", "check_contact"]


class VerdictKind(StrEnum):
    SEND = "send"
    DEFER = "defer"  # allowed later: `not_before` says when
    BLOCK = "block"  # not allowed: `reason` names the rule


@record
class Verdict:
    kind: VerdictKind
    not_before: datetime
    reason: str | None = None  # the rule, e.g. `hours:CN`, `cap:sms-borrower-7d`, `hold:dispute`
    detail: str | None = None  # for people: what exactly, e.g. `outside 08:00-22:00 local in Asia/Shanghai`


@record
class ContactRequest:
    """The contact being decided."""

    account_id: str
    jurisdiction: str
    timezone: str  # the account's stated zone
    template: str
    body: str | None  # the rendered text; None is refused (`content:missing`)
    lender: str  # how the lender is named: the message must carry it
    channel: str = "sms"
    address: str | None = None  # E.164: its zones narrow the window; per-number caps count by it
    region: str | None = None  # the mailing address's ISO 3166-2 region (US-TX): its zones too
    fill: tuple[tuple[str, str], ...] = ()  # the values the template was filled with
    third_party: bool = False
    message_id: int | None = None  # at send time: the outbox row (orders racing rows, see caps)
    stage: str | None = None  # the stage episode deciding it (drops this account's stale contacts)
    episode: int | None = None


@record
class ContactState:
    """What is known of the borrower when deciding."""

    holds: frozenset[Hold] = frozenset()
    opted_out: bool = False  # the address opted out of this channel
    debtor_reachable: bool = True
    history: tuple[Contact, ...] = ()  # the borrower's contacts, all their accounts (see caps)


def blocks_channel(hold: Hold, channel: str) -> bool:
    """Whether `hold` stops a contact on `channel`: every hold stops texts."""
    return hold.scope is not HoldScope.SMS or channel == "sms"


def check_contact(
    *, request: ContactRequest, state: ContactState, policy: "Policy", now: datetime
) -> Verdict:
    """May this contact happen at `now`, and if not now, when? The single entry of every rule."""
    for hold in sorted(state.holds):
        if blocks_channel(hold, request.channel):
            return Verdict(VerdictKind.BLOCK, now, f"hold:{hold}", f"{hold} hold active")
    if state.opted_out and request.channel == "sms":
        return Verdict(VerdictKind.BLOCK, now, "opt_out", "the number opted out of texts")
    prof = policy.profile(request.jurisdiction)
    if request.third_party:
        if prof.third_parties == "never":
            return Verdict(
                VerdictKind.BLOCK, now, "third_party:forbidden", f"{prof.code} allows no third-party contact"
            )
        if state.debtor_reachable:
            return Verdict(
                VerdictKind.BLOCK, now, "third_party:debtor-reachable", "the debtor can be reached"
            )
    if request.template not in policy.approved_templates:
        return Verdict(
            VerdictKind.BLOCK, now, "template:unapproved", f"template {request.template!r} is not approved"
        )
    finding = check_content(
        request.body,
        lender=request.lender,
        profile=prof,
        channel=request.channel,
        third_party=request.third_party,
        fill=dict(request.fill),
    )
    if finding is not None:
        return Verdict(VerdictKind.BLOCK, now, finding.rule, finding.detail)
    return _when(request, state, prof, now)


def _when(request: ContactRequest, state: ContactState, prof: Profile, now: datetime) -> Verdict:
    """Send now, or defer to the earliest instant the window and every cap allow."""
    zones = contact_zones(request.timezone, request.address, request.region)
    caps = prof.caps_for(request.channel) if state.history else ()  # nothing to count: every cap has room
    counts = [
        (
            cap,
            counted(
                cap,
                state.history,
                account_id=request.account_id,
                address=request.address,
                now=now,
                message_id=request.message_id,
                stage=request.stage,
                episode=request.episode,
            ),
            conversations(cap, state.history, account_id=request.account_id, address=request.address),
        )
        for cap in caps
    ]
    at = now
    try:
        for _ in range(64):
            opened = next_allowed_instant(at, zones, prof.hours)
            freed = max(
                [cap_free_at(cap, times, opened, talks) for cap, times, talks in counts], default=opened
            )
            if freed == opened:
                break
            at = freed
        else:  # pragma: no cover - the window opens daily and caps free within their window
            raise NoCommonWindow("window and caps never agree")
    except NoCommonWindow as error:
        return Verdict(VerdictKind.BLOCK, now, prof.hours_rule, str(error))
    if opened == now:
        return Verdict(VerdictKind.SEND, now)
    return Verdict(VerdictKind.DEFER, opened, *_why(prof, zones, counts, now))


def _why(prof: Profile, zones: tuple[str, ...], counts: Iterable[tuple], now: datetime) -> tuple[str, str]:
    """The rule that holds the contact back at `now`: the window first, then the first full cap."""
    if not contact_allowed(now, zones, prof.hours):
        return prof.hours_rule, f"outside {prof.hours.label} local in {', '.join(zones)}"
    for cap, times, talks in counts:
        if cap_exceeded(cap, times, now):
            return cap.rule, f"{cap.limit} per {cap.scope} in {cap.window_days} d reached"
        if talks and cap_free_at(cap, [], now, talks) > now:
            return cap.rule, f"within {cap.quiet_after_conversation_days} d of a conversation"
    return prof.hours_rule, "outside the window"  # pragma: no cover - one of the above always holds
