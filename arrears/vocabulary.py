"""The words of the collection lifecycle, shared by rules, storage, reports and the CLI.

They are `StrEnum`s so that the value stored in the database, printed in `--json` output and
written in a policy file is the same plain string.
"""

from enum import StrEnum

__all__ = ["Channel", "DecisionKind", "Exit", "Hold", "HoldScope", "MessageStatus", "Segment", "Stage"]


class Stage(StrEnum):
    """Active stages, in the order an account escalates through them (DESIGN §2)."""

    REMINDER = "reminder"
    NEGOTIATION = "negotiation"
    RESTRUCTURING = "restructuring"
    REPOSSESSION_REVIEW = "repossession_review"
    LEGAL_REFERRAL = "legal_referral"

    @property
    def rank(self) -> int:
        return list(Stage).index(self)


class Exit(StrEnum):
    """Where an account leaves the lifecycle. `cured` is left again by a new delinquency."""

    CURED = "cured"
    PAID_OFF = "paid_off"
    SETTLED = "settled"
    CHARGED_OFF = "charged_off"
    CLOSED = "closed"


class Segment(StrEnum):
    """Treatment segments from ability and willingness to pay (DESIGN §2)."""

    SELF_CURE = "self_cure"  # able, willing
    HARDSHIP = "hardship"  # unable, willing
    STRATEGIC = "strategic"  # able, unwilling
    DISTRESSED = "distressed"  # unable, unwilling
    UNREACHABLE = "unreachable"  # no working contact point


class HoldScope(StrEnum):
    """What a hold stops: all collection activity, every contact, or one channel."""

    COLLECTION = "collection"
    CONTACT = "contact"
    SMS = "sms"


class Hold(StrEnum):
    """Reasons collection stops until an explicit event lifts them."""

    DISPUTE = "dispute"
    BANKRUPTCY = "bankruptcy"
    DECEASED = "deceased"
    MILITARY = "military"  # SCRA
    BREATHING_SPACE = "breathing_space"  # GB Debt Respite Scheme
    CEASE_CONTACT = "cease_contact"
    SMS_OPT_OUT = "sms_opt_out"

    @property
    def scope(self) -> HoldScope:
        # A cease-communication request stops contact, not the creditor's lawful remedies
        # (FDCPA 805(c) keeps notice of specific remedies open), so stages may still move.
        if self is Hold.CEASE_CONTACT:
            return HoldScope.CONTACT
        if self is Hold.SMS_OPT_OUT:
            return HoldScope.SMS
        return HoldScope.COLLECTION

    @property
    def of_borrower(self) -> bool:
        """Whether the hold is the borrower's, so it holds every open account of theirs, or one
        debt's. A bankruptcy's automatic stay bars acts to collect every claim against the debtor
        (11 U.S.C. 362(a)); a death is the person's, every loan the estate's now; the SCRA protects
        the servicemember (50 U.S.C. 3952: no repossession without a court order), not one loan.
        A dispute is of a debt (FDCPA 809(b)), a cease-contact request stops communication "with
        respect to such debt" (805(c)), and a Breathing Space covers the debts the adviser lists
        (Debt Respite Scheme regulations 2020); an SMS opt-out is the number's (Reg F 1006.6(e))."""
        return self in (Hold.BANKRUPTCY, Hold.DECEASED, Hold.MILITARY)


class Channel(StrEnum):
    SMS = "sms"


class InvalidBecause(StrEnum):
    """Why a number was marked invalid (`ContactPoint.invalid_reason`): only a number marked for
    its failed deliveries is usable again once the borrower texts from it (a phone back on after
    用户停机, a trip abroad); one its holder disowned, or the provider refused, stays invalid."""

    UNDELIVERABLE = "undeliverable"  # its deliveries kept failing, or the vendor said it takes no texts
    WRONG_NUMBER = "wrong_number"  # whoever holds it said it is not the borrower's
    REFUSED = "refused"  # the provider refused it as no number it can send to
    SIMULATED = "simulated"  # a generated portfolio's unreachable borrower


class MessageStatus(StrEnum):
    """Outbox states of the operator contract (DESIGN §8)."""

    SCHEDULED = "scheduled"  # waiting for its not_before instant
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    BLOCKED = "blocked"  # never sent; `reason` says which rule stopped it


class DecisionKind(StrEnum):
    """What a reviewer decides at the end of a repossession review (DESIGN §7)."""

    REPOSSESS = "repossess"
    LEGAL = "legal"
    NEGOTIATE = "negotiate"
