"""The tables of DESIGN §3.

Instants are aware UTC, money is `Decimal` next to its account's currency, and the audit trail is
append-only (the migration installs triggers that refuse UPDATE and DELETE on it). The servicing
system remains the system of record for balances; these rows are what arrears decided and did.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint, false, text
from sqlmodel import Field, SQLModel

from arrears.storage.types import Money, UTCDateTime

__all__ = [
    "Account",
    "AccountHold",
    "AgencyAssignment",
    "AuditEvent",
    "Borrower",
    "BureauRecord",
    "ContactPoint",
    "CycleRun",
    "Installation",
    "Letter",
    "Message",
    "OptedOutNumber",
    "Payment",
    "Plan",
    "Promise",
    "Quarantine",
    "Referral",
    "Review",
    "Settlement",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _instant(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


def _money(**kw: Any) -> Any:
    return Field(sa_type=Money, **kw)


# The ids of the tables that grow every day (a row per account a day or more, and on PostgreSQL a
# number of the sequence for each outbox key a cycle finds already there): 64-bit, so that
# PostgreSQL's serial never runs out. SQLite's `INTEGER PRIMARY KEY` is its 64-bit rowid already,
# and only that spelling makes it the rowid.
_GROWING_ID = BigInteger().with_variant(Integer(), "sqlite")


def _growing_id() -> Any:
    return Field(default=None, primary_key=True, sa_type=_GROWING_ID)


class Borrower(SQLModel, table=True):
    borrower_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = _instant(default_factory=utcnow)


class ContactPoint(SQLModel, table=True):
    """A way to reach a borrower. Opt-outs live here so they bind every account of the borrower."""

    __tablename__ = "contact_point"
    # Its unique index starts with the borrower: lookups by borrower use it (no index of their
    # own). Every text a borrower sends is attributed by its number, and an import finds whether a
    # number it gives a new borrower opted out under another: both read the index by number.
    __table_args__ = (
        UniqueConstraint("borrower_id", "channel", "address"),
        Index("ix_contact_point_address", "address", "channel"),
    )

    id: int | None = Field(default=None, primary_key=True)
    borrower_id: str = Field(foreign_key="borrower.borrower_id", max_length=64)
    channel: str = Field(default="sms", max_length=16)
    address: str = Field(max_length=64)  # E.164 for phones
    region: str | None = Field(default=None, max_length=8)  # ISO 3166 region of the number
    is_primary: bool = True
    valid: bool = True  # false once a provider reports the number invalid
    invalid_reason: str | None = Field(default=None, max_length=16)  # an InvalidBecause, while invalid
    verified: bool = True  # numbers found by skip tracing start unverified
    source: str = Field(default="import", max_length=16)  # import | bureau | agent
    failures: int = 0  # consecutive failed deliveries
    opted_out_at: datetime | None = _instant(default=None)
    created_at: datetime = _instant(default_factory=utcnow)


class OptedOutNumber(SQLModel, table=True):
    """An SMS number that opted out while no contact point held it (a STOP from a number we do
    not know yet). The opt-out is the number's (Reg F 1006.6(e); 47 CFR 64.1200(a)(10)), so a
    borrower an import or a skip trace gives it later starts opted out (`opted_out_numbers`); a
    START from the number removes it. Evidence stays in the audit trail; this is the number's state.
    """

    __tablename__ = "opted_out_number"

    address: str = Field(primary_key=True, max_length=64)  # E.164
    opted_out_at: datetime = _instant()


class Account(SQLModel, table=True):
    """One loan in collection. `stage` holds a Stage while open and an Exit once it left."""

    # Stage first, so lookups by stage use it; with the bucket, the report counts the portfolio by
    # stage and bucket from this index alone, never reading the (wide) account rows.
    __table_args__ = (Index("ix_account_stage_bucket", "stage", "bucket"),)

    account_id: str = Field(primary_key=True, max_length=64)
    borrower_id: str = Field(foreign_key="borrower.borrower_id", index=True, max_length=64)
    jurisdiction: str = Field(max_length=8)
    timezone: str = Field(max_length=64)
    currency: str = Field(max_length=3)
    balance: Decimal = _money()
    installment_amount: Decimal = _money()
    past_due_amount: Decimal = _money()
    oldest_due_date: date | None = None
    next_due_date: date | None = None  # for the courtesy reminder before a due date
    days_past_due: int = 0
    bucket: str = Field(default="current", max_length=16)
    # A new account starts as `cured` (not delinquent); its first delinquency enters `reminder`.
    stage: str = Field(default="cured", max_length=24)
    stage_since: datetime = _instant(default_factory=utcnow)
    # Incremented on every stage entry: part of each outbox idempotency key, so a second
    # delinquency (or a return to negotiation) gets its own reminders while a re-run gets none.
    episode: int = 0
    segment: str = Field(default="self_cure", max_length=16)
    ability: float | None = None  # 0..1, from the bureau profile and the vehicle's equity
    willingness: float | None = None  # 0..1, from replies, promises and payments after contact
    broken_promises: int = 0
    vin: str | None = Field(default=None, max_length=17)
    vehicle_value: Decimal | None = _money(default=None)
    apr: Decimal | None = _money(default=None)  # exact decimal, like money
    updated_at: datetime = _instant(default_factory=utcnow)
    # The borrower's mailing address (PII, masked like the phone): where written notices go.
    address_line1: str | None = Field(default=None, max_length=200)
    address_line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=64)
    postal_code: str | None = Field(default=None, max_length=16)
    country: str | None = Field(default=None, max_length=2)  # ISO 3166-1 alpha-2


# The holds `uq_hold_active_kind` keeps to one of a kind an account (migration 0026).
_ONE_ACTIVE = "lifted_at IS NULL AND source <> 'import_borrower'"


class AccountHold(SQLModel, table=True):
    """A hold stops collection until an explicit event lifts it (`lifted_at`)."""

    __tablename__ = "account_hold"
    __table_args__ = (
        Index("ix_hold_active", "account_id", "lifted_at"),
        # One hold of a kind in force on an account, whoever placed it (`_common.place_holds`
        # inserts ON CONFLICT DO NOTHING on it; an import refused stores its chunk again): on
        # PostgreSQL two placers at the same instant both read "not held". A borrower's hold an
        # import spreads to the borrower's other loans stays out of it: the file's own flag on such
        # a loan is placed beside it, to outlive it (`storage.borrower_holds`).
        Index(
            "uq_hold_active_kind",
            "account_id",
            "kind",
            unique=True,
            sqlite_where=text(_ONE_ACTIVE),
            postgresql_where=text(_ONE_ACTIVE),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", max_length=64)
    kind: str = Field(max_length=24)
    # Who placed it: import | import_borrower (`storage.borrower_holds`) | agent | webhook | bureau.
    source: str = Field(default="import", max_length=16)
    reason: str | None = None
    placed_at: datetime = _instant(default_factory=utcnow)
    lifted_at: datetime | None = _instant(default=None)


class Payment(SQLModel, table=True):
    payment_id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    amount: Decimal = _money()
    received_at: datetime = _instant()
    applied_at: datetime | None = _instant(default=None, index=True)  # set by the cycle's refresh


class Promise(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    amount: Decimal = _money()
    due_date: date
    status: str = Field(default="pending", max_length=16)  # pending | kept | broken
    source: str = Field(default="agent", max_length=16)  # agent | reply
    created_at: datetime = _instant(default_factory=utcnow)
    resolved_at: datetime | None = _instant(default=None)


class Plan(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    kind: str = Field(max_length=16)  # deferral | instalment
    status: str = Field(
        default="offered", max_length=16
    )  # offered | active | completed | defaulted | declined
    terms: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = _instant(default_factory=utcnow)
    updated_at: datetime = _instant(default_factory=utcnow)


class Settlement(SQLModel, table=True):
    """An agreement to take less than the balance, paid by a date (`arrears.settlements`)."""

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    amount: Decimal = _money()
    currency: str = Field(max_length=3)
    pay_by: date
    balance: Decimal = _money()  # when it was agreed
    status: str = Field(default="active", max_length=16)  # active | paid | lapsed | cancelled | ended
    agreed_by: str
    reason: str
    agreed_at: datetime = _instant()
    received: Decimal | None = _money(default=None)  # towards it, once it ended
    written_off: Decimal | None = _money(default=None)  # the balance left when it was paid
    ended_at: datetime | None = _instant(default=None)
    ended_by: str | None = None
    end_reason: str | None = None


class Review(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    opened_at: datetime = _instant(default_factory=utcnow)
    cure_deadline: datetime | None = _instant(default=None)
    decision: str | None = Field(default=None, max_length=16)
    reviewer: str | None = None
    reason: str | None = None
    decided_at: datetime | None = _instant(default=None)
    flow_run_id: str | None = Field(default=None, max_length=64)


class Referral(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    status: str = Field(default="draft", max_length=16)
    filing_id: str | None = Field(default=None, max_length=64, index=True)  # court callbacks find rows by it
    claim_amount: Decimal | None = _money(default=None)
    opened_at: datetime = _instant(default_factory=utcnow)
    updated_at: datetime = _instant(default_factory=utcnow)


class Message(SQLModel, table=True):
    """The outbox. A row is created once per idempotency key and then only changes status."""

    __table_args__ = (
        Index("ix_message_due", "status", "not_before"),
        # A cycle's report counts its new messages by status and reason from this index alone, and
        # the compliance report finds the sends of a period by `sent_at`: neither reads the whole
        # outbox, which grows every day.
        Index("ix_message_created", "created_at", "status", "reason"),
        Index("ix_message_sent_at", "sent_at"),
        # Delivery receipts find their row by provider and provider id, both equal: without
        # statistics SQLite otherwise takes `ix_message_due` for the receipt's `status = 'sent'`,
        # and walks every message still sent for each receipt.
        Index("ix_message_provider_id_provider", "provider_id", "provider"),
        # What the caps count and the keys the advance skips, read for every account every day:
        # the messages of the stage episode it is in, and its sends of the last days (the second
        # index holds sent rows only: a message is inserted unsent). Both found from the account
        # without visiting the rest of its history, which grows every day (`storage.history`,
        # `storage.decided`); the first serves every other query by account too.
        Index("ix_message_account_episode", "account_id", "episode", "stage"),
        Index(
            "ix_message_account_sent",
            "account_id",
            "sent_at",
            sqlite_where=text("sent_at IS NOT NULL"),
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
    )

    id: int | None = _growing_id()
    idempotency_key: str = Field(unique=True, max_length=160)
    account_id: str = Field(foreign_key="account.account_id", max_length=64)
    channel: str = Field(default="sms", max_length=16)
    address: str = Field(max_length=64)
    template: str = Field(max_length=64)
    params: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))  # what filled the template
    body: str
    # The stage episode that decided the message: if the account has moved on (paid, held,
    # escalated) by send time, the message is stale and is blocked rather than sent.
    stage: str = Field(max_length=24)
    episode: int = 0
    not_before: datetime = _instant()
    status: str = Field(default="scheduled", max_length=16)
    reason: str | None = None  # why it was deferred, blocked or failed: the rule that decided
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, max_length=64)  # delivery receipts find rows by it
    attempts: int = 0
    lease_until: datetime | None = _instant(default=None)  # a dispatcher holds the row until then
    # Who holds the lease: the cycle or dispatch run (None: the single-account path). A row still
    # leased by a run that died may have been sent: it is looked up before any new verdict.
    lease_owner: str | None = Field(default=None, max_length=64)
    created_at: datetime = _instant(default_factory=utcnow)
    sent_at: datetime | None = _instant(default=None)


class EarlyReport(SQLModel, table=True):
    """A delivery report that came before its send was recorded: a vendor may report within a
    second, while dispatch records a batch's sends once the batch is sent. Kept here (and once in
    the audit trail) until the send is recorded, then applied to it and deleted."""

    __tablename__ = "early_report"
    __table_args__ = (Index("ix_early_report_provider_id_provider", "provider_id", "provider"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    provider_id: str = Field(max_length=64)
    status: str = Field(max_length=16)  # delivered | failed
    at: datetime = _instant()
    error_code: str | None = Field(default=None, max_length=64)
    vendor_status: str | None = Field(default=None, max_length=64)
    # What the vendor said of the number, applied with the report (`StatusReport`): it cannot take
    # texts (marked invalid at once), or its owner opted out at the carrier (no failure counted);
    # or that the failure is our message's or sender's, not the number's (no failure counted).
    number_cannot_text: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    opted_out: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    sender_fault: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class BureauRecord(SQLModel, table=True):
    __tablename__ = "bureau_record"
    # A pull is keyed (`pull-<account>-<episode>`): a repeated or concurrent cycle cannot record it twice.
    __table_args__ = (
        Index("uq_bureau_record_idempotency_key", "idempotency_key", unique=True),
        # The day's pulls, found by their cycles' instants (`storage.bureau_pulls.pulls_of_the_day`).
        Index("ix_bureau_record_at_kind", "at", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str | None = Field(default=None, max_length=160)  # None for furnish records
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    kind: str = Field(max_length=16)  # pull | furnish
    purpose: str | None = None  # FCRA 604(a)(3)(A) permissible purpose, recorded with each pull
    score_band: str | None = Field(default=None, max_length=8)
    income_estimate: Decimal | None = _money(default=None)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    at: datetime = _instant(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append only: every decision, transition and contact, with its reason."""

    __tablename__ = "audit_event"
    __table_args__ = (
        # An account's events of some kinds (its holds and opt-outs for every dispatch batch's
        # re-check, its promises, replies, filings), found without reading the rest of its history,
        # which grows every day; its whole timeline is read by account and sorted.
        Index("ix_audit_account_kind_at", "account_id", "kind", "at"),
        # The report reads one cycle's transitions or message events, not every row of the cycle.
        Index("ix_audit_event_cycle_kind", "cycle_id", "kind"),
        # The replies of the last days (every refresh), and others of a kind by instant, without
        # reading the whole trail.
        Index("ix_audit_kind_at", "kind", "at"),
    )

    id: int | None = _growing_id()
    account_id: str | None = Field(default=None, max_length=64)
    at: datetime = _instant(default_factory=utcnow)
    kind: str = Field(max_length=32)  # transition | segment | message | hold | payment | decision ...
    detail: str
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    actor: str = Field(default="arrears", max_length=64)
    cycle_id: int | None = None


class CycleRun(SQLModel, table=True):
    """One run of the daily cycle. At most one is `running` per database: `running` holds a
    constant while it runs (unique), NULL once it finished, failed or was found crashed."""

    __tablename__ = "cycle_run"
    __table_args__ = (
        Index("uq_cycle_run_running", "running", unique=True),
        Index("ix_cycle_run_as_of", "as_of"),
    )

    id: int | None = Field(default=None, primary_key=True)
    as_of: datetime = _instant()
    business_date: date = Field(index=True)
    started_at: datetime = _instant(default_factory=utcnow)
    finished_at: datetime | None = _instant(default=None)
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="finished", max_length=16)  # running | finished | failed | crashed
    running: str | None = Field(default=None, max_length=16)
    owner: str | None = Field(default=None, max_length=128)  # host and process id, for people


class ImportedFile(SQLModel, table=True):
    """A file `arrears import` stored, known by its content's SHA-256. The servicing system's files
    carry no date of their own: an accounts file delivered again after a newer one would set every
    balance, date and number back to what it says, so such a file is refused
    (`arrears.storage.imported_files`). Also what operators read back: which files, when, counted how."""

    __tablename__ = "imported_file"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # accounts | payments
    name: str = Field(max_length=255)  # as it was given, without its directory
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64, index=True)
    imported_at: datetime = _instant()
    accepted: int
    rejected: int


class Quarantine(SQLModel, table=True):
    """An account, inbound message or outbox message set aside by a failure (DESIGN §4 isolation).

    One row per item (`what`, `ref`): a failure again reopens it. While `resolved` is false the
    cycle skips the item, except while `retrying_since` is set: `arrears quarantine retry` released
    it and runs it again, and only once that work committed is it `resolved` (a retry that failed or
    never finished leaves it in quarantine). `error` is masked: no phone number or national id
    reaches it.
    """

    __table_args__ = (
        UniqueConstraint("what", "ref"),
        Index("ix_quarantine_open", "resolved", "account_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    what: str = Field(max_length=16)  # account | inbound | message
    ref: str = Field(max_length=160)  # the account id, the inbound callback id, the message id
    account_id: str | None = Field(default=None, max_length=64)  # None: an unattributed inbound message
    step: str = Field(max_length=16)  # refresh | replies | promises | plans | advance | dispatch | inbound
    error_type: str = Field(max_length=64)
    error: str
    at: datetime = _instant(default_factory=utcnow)
    cycle_id: int | None = None
    retried_at: datetime | None = _instant(default=None)
    retrying_since: datetime | None = _instant(default=None)  # released for a retry not yet confirmed
    resolved: bool = False


class Letter(SQLModel, table=True):
    """A letter mailed through the letters provider (a right-to-cure notice, a 催收函).

    `status`: pending (to send) | blocked (cannot be sent: `reason`) | created (accepted by the
    provider) | mailed | in_transit | delivered | returned_to_sender | failed. The PDF as mailed
    and the context it was rendered from are kept: the evidence, and `arrears letters pdf`."""

    __table_args__ = (Index("ix_letter_status", "status", "updated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=160)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    review_id: int | None = Field(default=None, index=True)
    kind: str = Field(max_length=24)  # right_to_cure | collection_notice | hardship_plan
    template: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=24)
    reason: str | None = None
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, max_length=64, index=True)  # webhooks find rows by it
    attempt: int = 0  # written again after the provider refused it: the provider key's suffix
    mail_type: str = Field(default="usps_first_class", max_length=48)
    pdf_sha256: str | None = Field(default=None, max_length=64)
    pdf: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))  # what it was rendered from
    created_at: datetime = _instant(default_factory=utcnow)
    submitted_at: datetime | None = _instant(default=None)
    mailed_at: datetime | None = _instant(default=None)  # the provider's mailed event: the legal clock
    deadline: datetime | None = _instant(default=None)  # end of the cure period counted from it
    updated_at: datetime = _instant(default_factory=utcnow)


class AgencyAssignment(SQLModel, table=True):
    """A repossession order sent to the agency provider, and what became of it.

    `status`: pending (to send) | sending (claimed by a push before the request left: it may be
    at the agency) | blocked (`reason`) | assigned | accepted | located | recovered | closed |
    cancel_pending (overtaken by a payment, plan, settlement or hold: to cancel there) | cancelled
    | failed."""

    __tablename__ = "agency_assignment"
    __table_args__ = (Index("ix_assignment_status", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=160)
    order_id: str = Field(max_length=64)  # the vendor order of the audit trail (RO-<review>)
    account_id: str = Field(foreign_key="account.account_id", index=True, max_length=64)
    review_id: int | None = Field(default=None, index=True)
    status: str = Field(default="pending", max_length=24)
    reason: str | None = None
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = _instant(default_factory=utcnow)
    assigned_at: datetime | None = _instant(default=None)
    cancelled_at: datetime | None = _instant(default=None)
    recovered_at: datetime | None = _instant(default=None)
    recovery: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))  # location, condition
    updated_at: datetime = _instant(default_factory=utcnow)


class Installation(SQLModel, table=True):
    """One row per database: the id that namespaces every key leaving it (DESIGN §3), so two
    databases on one Prefect server never share a run."""

    __tablename__ = "installation"
    id: int | None = Field(default=None, primary_key=True)  # always 1: one row
    installation_id: str = Field(max_length=32)
    created_at: datetime = _instant(default_factory=utcnow)
