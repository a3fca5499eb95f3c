"""Legal referral: the filing built from stored facts, submitted to the court provider, tracked.

A flow opens `tasks.providers.court_session()` around its steps and each task here uses
`current_court()`. With the sandbox provider and no base URL, a sandbox court is started for
the session (fine for a demo in one process; a suspended run resumes in another process, so a
real deployment names the gateway, or a long-running `arrears sandbox`, in `ARREARS_COURT_BASE_URL`).

Every step reads the referral back first, so a run re-started from the top repeats nothing: the
filing is drafted once (its documents come from the facts stored when the referral opened, so
a resubmission under the same key carries the same content and the gateway answers with the
first filing), submitted once (`Referral.filing_id`), and each status is recorded once. A
gateway down (its client's retries spent) leaves the referral as it was: the run tries the step
again at its next wake instead of failing.
"""

from dataclasses import replace
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from arrears.currencies import display
from arrears.review import FilingDraft, ReferralFacts, draft_filing
from arrears.settings import get_settings
from arrears.storage import referrals
from arrears.storage.court_statuses import record_court_status
from arrears.storage.referrals import ReferralState
from arrears.vocabulary import Hold
from integrations.court.protocol import FilingDocument, FilingEnvelope, FilingNotFound, Party, PartyRole
from integrations.errors import Permanent, ProviderError, Transient, UnknownOutcome
from tasks.database import engine
from tasks.logs import run_logger
from tasks.providers import current_court

__all__ = [
    "ReferralState",
    "envelope_of",
    "hold_filing",
    "load_referral",
    "open_referral",
    "poll_filing",
    "referral_accounts",
    "referral_work",
    "request_dismissal",
    "submit_filing",
]

# Statuses after which the gateway will not withdraw a filing: a dismissal is then a motion counsel files.
_CANCELLABLE = frozenset({"submitted", "under_review"})
# A court gateway down or its answer lost (`integrations.errors`): the step is tried again at the
# run's next wake rather than failing the run (DESIGN §5: longer outages are the next cycle's).
_OUTAGE = (Transient, UnknownOutcome)
_SUIT: tuple[PartyRole, PartyRole] = ("plaintiff", "defendant")
_APPLICATION: tuple[PartyRole, PartyRole] = ("applicant", "respondent")


def envelope_of(draft: FilingDraft) -> FilingEnvelope:
    """The provider's request for a drafted filing: a suit's plaintiff and defendant, or, for a
    payment order or the realisation of a security (applications, not suits, under China's Civil
    Procedure Law), its applicant (申请人) and respondent (被申请人)."""
    claimant, debtor = _SUIT if draft.case_type == "deficiency" else _APPLICATION
    return FilingEnvelope(
        idempotency_key=draft.idempotency_key,
        court=draft.court,
        case_type=draft.case_type,  # type: ignore[arg-type]
        parties=[
            Party(role=claimant, name=draft.plaintiff, kind="organization"),
            Party(role=debtor, name=draft.defendant),
        ],
        claim_amount=draft.claim,
        currency=draft.currency,
        documents=[FilingDocument.from_bytes(d.kind, d.name, d.content) for d in draft.documents],
        military_affidavit=draft.military_affidavit,
    )


@task(name="open-referral", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def open_referral(account_id: str, at: datetime) -> ReferralState | None:
    """The account's current referral, opened with its facts (claim, notices, military status)."""
    with engine().begin() as connection:
        return referrals.open_referral(
            connection, account_id=account_id, at=at, lender=get_settings().lender_name
        )


@task(name="load-referral", cache_policy=NO_CACHE, persist_result=False)
def load_referral(referral_id: int) -> ReferralState:
    with engine().connect() as connection:
        state = referrals.referral_state(connection, referral_id)
    assert state is not None, referral_id
    return state


@task(
    name="submit-filing",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=3,
    retry_delay_seconds=[30, 120, 600],
)
def submit_filing(referral_id: int, at: datetime) -> ReferralState:
    """Draft the filing from the stored facts and submit it, unless it went out before. A filing
    the gateway refuses outright (`Permanent`) is rejected like one the court rejects: back to
    the legal team's queue with the reason, as is one with no court to file in (a jurisdiction
    the venue table lacks)."""
    with engine().connect() as connection:
        state = referrals.referral_state(connection, referral_id)
        assert state is not None, referral_id
        # Filed before, or no longer to file: the legal team closed the draft meanwhile (`arrears
        # referral close`: counsel files it off-system, or nobody does).
        if state.filing_id is not None or state.status != "draft":
            return state
        facts = referrals.referral_facts(connection, referral_id)
        drafted = referrals.filing_drafted(connection, referral_id)
    provider = current_court()
    try:
        draft = draft_filing(_sworn_now(facts, state, drafted))
    except ValueError as unfileable:  # no court for the jurisdiction: no retry changes that
        with engine().begin() as connection:
            referrals.record_refusal(
                connection,
                referral_id=referral_id,
                at=at,
                reason=str(unfileable),
                provider=provider.info.name,
            )
        return load_referral.fn(referral_id)
    with engine().begin() as connection:
        referrals.record_filing_draft(connection, referral_id=referral_id, summary=draft.summary(), at=at)
    try:
        receipt = provider.submit(envelope_of(draft))
    except Permanent as refused:
        with engine().begin() as connection:
            referrals.record_refusal(
                connection, referral_id=referral_id, at=at, reason=str(refused), provider=provider.info.name
            )
        return load_referral.fn(referral_id)
    except _OUTAGE as down:  # sent again under the same key at the next wake: the gateway deduplicates
        return _court_down(referral_id, "submit", down)
    with engine().begin() as connection:
        referrals.record_submission(
            connection,
            referral_id=referral_id,
            filing_id=receipt.filing_id,
            status=receipt.status,
            at=max(at, receipt.submitted_at),
            provider=provider.info.name,
        )
    return load_referral.fn(referral_id)


def _sworn_now(facts: ReferralFacts, state: ReferralState, drafted: dict[str, Any] | None) -> ReferralFacts:
    """The facts the filing is drafted from, its military-status affidavit sworn as the filing goes
    out (a hold placed or lifted since the referral opened: 50 U.S.C. 3931(c) makes a false
    affidavit an offence); a draft recorded before, perhaps before the court with its answer lost,
    is drafted again as it was, so that its key's resubmission carries the same content."""
    if drafted is not None:
        return replace(facts, military=bool(drafted.get("defendant_military", facts.military)))
    return replace(facts, military=Hold.MILITARY in state.holds)


def _court_down(referral_id: int, doing: str, down: ProviderError) -> ReferralState:
    """The gateway could not be reached, its client's retries spent: the referral is left as it
    was and the run waits for its next wake (each cycle's) to try again; nothing is lost."""
    run_logger("arrears.legal").warning(
        "referral %s: court provider unavailable (%s: %s); tried again at the next wake",
        referral_id,
        doing,
        down.code or type(down).__name__,
    )
    return load_referral.fn(referral_id)


@task(name="hold-filing", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=5)
def hold_filing(referral_id: int, barred: str, at: datetime) -> ReferralState:
    """Keep the filing back while `barred` (a hold) lasts, on record once; see `record_filing_held`."""
    with engine().begin() as connection:
        if referrals.record_filing_held(connection, referral_id=referral_id, barred=barred, at=at):
            run_logger("arrears.legal").warning(
                "referral %s: filing held back or left to counsel (%s)", referral_id, barred
            )
    return load_referral.fn(referral_id)


@task(
    name="poll-filing", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=[30, 300]
)
def poll_filing(referral_id: int, at: datetime) -> ReferralState:
    """Ask the court where the filing stands and record a new status (callbacks may have been
    lost or late), with the court's own words; a status is dated no earlier than `at`, when we
    learned it."""
    state = load_referral.fn(referral_id)
    if state.filing_id is None:
        return state
    provider = current_court()
    try:
        found = provider.status(state.filing_id)
    except _OUTAGE as down:
        return _court_down(referral_id, "poll", down)
    except FilingNotFound as lost:
        with engine().begin() as connection:
            referrals.record_refusal(
                connection,
                referral_id=referral_id,
                at=at,
                reason=f"court has no such filing: {lost}",
                provider=provider.info.name,
            )
        return load_referral.fn(referral_id)
    with engine().begin() as connection:
        record_court_status(
            connection,
            filing_id=found.filing_id,
            status=found.status,
            at=max(at, found.at),
            provider=provider.info.name,
            callback_id=f"poll:{found.filing_id}:{found.status}",
            reason=found.reason,
            vendor_status=found.vendor_status,
        )
    return load_referral.fn(referral_id)


@task(
    name="request-dismissal", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=30
)
def request_dismissal(referral_id: int, at: datetime) -> ReferralState:
    """The account has paid, settled or cured: withdraw the filing at the gateway while its review is
    open; after that, a dismissal is a motion counsel files (no gateway operation for it), so the
    referral waits for them as `dismissing`. Nothing filed yet: the referral is simply dismissed."""
    state = load_referral.fn(referral_id)
    reason = f"account {state.stage}: balance {state.currency} {display(state.balance, state.currency)}"
    with engine().connect() as connection:
        drafted = referrals.filing_drafted(connection, referral_id) if state.filing_id is None else None
    if drafted is not None:  # submitted, perhaps, its answer lost: only the gateway knows
        status = "dismissing"
        detail = (
            f"referral {referral_id}: a filing may be before the court under key "
            f"{drafted.get('idempotency_key')} (its answer was never recorded): counsel to check and "
            f"withdraw it: {reason}"
        )
    elif state.filing_id is None:
        status, detail = "dismissed", f"referral {referral_id} withdrawn before filing: {reason}"
    elif state.status in _CANCELLABLE and hasattr(current_court(), "cancel"):
        try:
            current_court().cancel(state.filing_id, reason)  # type: ignore[attr-defined]
            status, detail = "dismissed", f"filing {state.filing_id} withdrawn at the court: {reason}"
        except _OUTAGE as down:
            # Asked again at the next wake. Failing the run instead would leave the suit running
            # against a borrower who paid: no run is restarted for an account out of legal referral.
            return _court_down(referral_id, "withdraw", down)
        except Permanent as refused:
            status = "dismissing"
            detail = f"dismissal of {state.filing_id} to be filed by counsel ({refused}): {reason}"
    else:
        status, detail = (
            "dismissing",
            f"dismissal of filing {state.filing_id} to be filed by counsel: {reason}",
        )
    with engine().begin() as connection:
        referrals.record_dismissal(connection, referral_id=referral_id, status=status, at=at, detail=detail)
    return load_referral.fn(referral_id)


@task(name="referral-work", cache_policy=NO_CACHE, persist_result=False)
def referral_work() -> list[tuple[str, int, int | None, str | None]]:
    """Accounts in legal referral with their episode, present referral (None: none yet) and its status."""
    with engine().connect() as connection:
        return referrals.referral_work(connection)


@task(name="referral-accounts", cache_policy=NO_CACHE, persist_result=False)
def referral_accounts() -> set[str]:
    """Accounts with a referral in this database, open or ended (`referrals.referral_accounts`)."""
    with engine().connect() as connection:
        return referrals.referral_accounts(connection)
