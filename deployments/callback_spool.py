"""Callbacks stored now or, while the database is busy, kept in a spool and stored in order later.

On SQLite an import holds the one write lock for a whole file (40-150 s for a large one), and a
vendor waits a few seconds for its answer (Twilio 15 s) and may never deliver again (Twilio does
not retry an inbound text: a STOP answered 500 is lost). So the webhook server waits at most
`ARREARS_WEBHOOK_STORE_WAIT` seconds to store a verified callback; past that it keeps the callback
as read (`Received`) in the spool (`arrears.spool`), durable before the vendor is answered, and
acknowledges it. The `Drainer`, a thread of the server, stores what waits, oldest first, once the
lock is free, and at start-up what a crash left. While anything waits, new callbacks queue behind
it, so the order the vendor told us things in is the order they are stored.

Storing twice is harmless: replies, opt-outs and court statuses are recorded once per vendor
callback id, delivery reports only move a message forward, unreadable items are kept once per
digest; a callback stored, then spooled because a later item of it waited too long, is simply
stored again whole. A spooled callback that fails for another reason than a busy database is
moved to the spool's `failed/` directory and kept for operators in the audit trail (kind
`unreadable_callback`, numbers masked: `arrears callbacks list`), with an error in the log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from arrears.inbound import inbound_address
from arrears.masking import mask_phone
from arrears.spool import Spool
from arrears.storage import bounded_writer, is_busy
from arrears.storage.unreadable_callbacks import UNREADABLE_CALLBACK
from integrations.callbacks import UnreadableItem
from integrations.court.protocol import FilingStatus
from integrations.sms.protocol import DeliveryReport, InboundMessage
from tasks import inbound as record

__all__ = ["ITEM_TYPES", "Drainer", "Received", "store_received"]

log = logging.getLogger("arrears.webhooks")

ITEM_TYPES: dict[str, type] = {
    t.__name__: t for t in (DeliveryReport, InboundMessage, FilingStatus, UnreadableItem)
}
Submit = Callable[[str, str], Any]  # (account id, reason): a lifecycle run to start


@dataclass(frozen=True)
class Received:
    """A verified callback as its provider read it, with what storing it needs besides: what a
    spool file holds. `provider` is the name its rows carry (an SMS provider's own name)."""

    kind: str
    name: str
    event: str
    provider: str
    at: datetime  # when it reached us
    digest: str  # SHA-256 of the body: a court status's callback id
    items: tuple[Any, ...] = field(default=())

    @property
    def route(self) -> str:
        return f"{self.kind}/{self.name}/{self.event}"

    @classmethod
    def of(
        cls, kind: str, name: str, event: str, provider: str, at: datetime, body: bytes, items: Any
    ) -> Received:
        return cls(kind, name, event, provider, at, hashlib.sha256(body).hexdigest(), tuple(items))

    def to_document(self) -> dict[str, Any]:
        head = {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "items"}
        return head | {"items": [{"type": type(i).__name__} | _fields(i) for i in self.items]}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Received:
        """Raises KeyError, TypeError or ValueError for a document that is not one (a damaged file)."""
        items = []
        for raw in document["items"]:
            values = {k: _decode(v) for k, v in raw.items() if k != "type"}
            items.append(ITEM_TYPES[raw["type"]](**values))
        head = {f.name: _decode(document[f.name]) for f in dataclasses.fields(cls) if f.name != "items"}
        return cls(**head, items=tuple(items))


def _fields(item: Any) -> dict[str, Any]:
    return {f.name: _encode(getattr(item, f.name)) for f in dataclasses.fields(item)}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"datetime"}:
        return datetime.fromisoformat(value["datetime"])
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_decode(v) for v in value["tuple"])
    return value


def store_received(engine: Engine, received: Received, submit: Submit) -> None:
    """Store every item of `received` on `engine` (one transaction each, as the vendor sent them)
    and start the lifecycle runs they call for. Raises what storing raises."""
    by_type: dict[type, list[Any]] = {}
    for item in received.items:
        by_type.setdefault(type(item), []).append(item)
    for item_type, group in by_type.items():
        if item_type is DeliveryReport:
            _reports(engine, received, group)
        elif item_type is InboundMessage:
            _replies(engine, received, group, submit)
        elif item_type is FilingStatus:
            _court_statuses(engine, received, group, submit)
        elif item_type is UnreadableItem:
            _unreadable(engine, received, group)
        else:  # the server refuses these before anything is stored or spooled
            raise TypeError(f"{received.route}: nothing stores {item_type.__name__}")


def _reports(engine: Engine, received: Received, items: list[DeliveryReport]) -> None:
    applied = record.record_delivery_reports(engine, provider=received.provider, reports=items)
    log.info(
        "%s: %d reports, %d moved, %d already there, %d unknown (kept for operators), %d about "
        "another system's messages",
        received.route,
        len(items),
        len(applied.changed),
        applied.unchanged,
        len(applied.unmatched),
        applied.foreign,
    )


def _replies(engine: Engine, received: Received, items: list[InboundMessage], submit: Submit) -> None:
    for item in items:
        address = inbound_address(item.sender)
        if address is None:  # the server keeps such a reply as unreadable before it gets here
            raise ValueError("an inbound message's sender is not a phone number")
        result = record.record_inbound_sms(
            engine,
            address=address,
            text=item.text,
            at=min(item.at, received.at),
            provider=received.provider,
            callback_id=item.message_id,
            vendor_keyword=item.vendor_keyword,
            media=item.media,
        )
        log.info(
            "%s from %s: %s%s, %d accounts",
            received.route,
            mask_phone(address),
            result.classified.kind,
            " (repeat)" if result.recorded.duplicate else "",
            len(result.recorded.accounts),
        )
        for account_id in result.lifecycle_accounts:
            submit(account_id, "reply")


def _unreadable(engine: Engine, received: Received, items: list[UnreadableItem]) -> None:
    """The rest of the batch is stored and acknowledged: refusing it would lose it all."""
    new = record.keep_unreadable_items(
        engine, provider=received.provider, route=received.route, items=items, at=received.at
    )
    log.warning(
        "%s: %d items could not be read, %d new (kept for operators: arrears callbacks list): %s",
        received.route,
        len(items),
        new,
        items[0].reason,
    )


def _court_statuses(engine: Engine, received: Received, items: list[FilingStatus], submit: Submit) -> None:
    for i, item in enumerate(items):
        result = record.record_court_status(
            engine,
            filing_id=item.filing_id,
            status=item.status,
            at=min(item.at, received.at),
            provider=received.name,
            callback_id=f"sha256:{received.digest}:{i}",
            reason=item.reason,
            vendor_status=item.vendor_status,
        )
        if not result.known:
            log.warning(
                "%s: a status for a filing no referral has (kept for operators: arrears callbacks list)",
                received.route,
            )
        if result.changed and result.account_id:
            submit(result.account_id, "court")


class Drainer:
    """Stores the spooled callbacks, oldest first, in a thread of the webhook server: at start-up
    (what a crash left) and whenever it is woken (a callback spooled) or `poll` seconds pass. A
    busy database stops a pass, to be tried again; any other failure sets the callback aside."""

    def __init__(
        self,
        engine: Engine,
        spool: Spool,
        submit: Submit,
        *,
        wait: float,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.spool = spool
        self._submit = submit
        self._wait = wait
        self._poll = poll
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said_waiting = 0.0

    def start(self) -> None:
        size = self.spool.size()
        if size.waiting or size.failed:
            log.warning(
                "webhook spool %s: %d callbacks waiting to be stored, %d set aside (failed/)",
                self.spool.directory,
                size.waiting,
                size.failed,
            )
        self._thread = threading.Thread(target=self._run, name="webhook-spool", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception:  # the spool's directory unreadable: said, and tried again
                log.exception("webhook spool %s: draining failed", self.spool.directory)
            self._wake.wait(self._poll)
            self._wake.clear()

    def drain(self) -> int:
        """One pass: store what waits until the database is busy or nothing is left; how many stored."""
        stored = 0
        for path in self.spool.pending():
            if self._stop.is_set():
                break
            try:
                received = Received.from_document(self.spool.read(path))
            except (OSError, KeyError, TypeError, ValueError) as e:
                self._set_aside(path, None, e)
                continue
            try:
                with bounded_writer(self.engine, self._wait) as writer:
                    store_received(writer, received, self._submit)
            except Exception as e:
                if is_busy(e):
                    self._still_waiting()
                    break
                self._set_aside(path, received, e)
                continue
            self.spool.done(path)
            stored += 1
        if stored:
            size = self.spool.size()
            log.info(
                "webhook spool: %d callbacks stored, %d waiting, %d set aside",
                stored,
                size.waiting,
                size.failed,
            )
        return stored

    def _still_waiting(self) -> None:
        """Said once a minute while the database stays busy, so the log shows the spool growing."""
        if self._clock() - self._said_waiting >= 60:
            self._said_waiting = self._clock()
            log.warning(
                "webhook spool: %d callbacks acknowledged and waiting for the database (busy)",
                self.spool.size().waiting,
            )

    def _set_aside(self, path: Path, received: Received | None, error: Exception) -> None:
        """Kept on disk (`failed/`) and, where the database takes it, in the audit trail."""
        reason = f"a spooled callback could not be stored: {type(error).__name__}"
        target = self.spool.set_aside(path)
        log.error(
            "webhook spool: %s set aside in %s (%s); kept for operators as %s",
            path.name,
            target.parent,
            reason,
            UNREADABLE_CALLBACK,
        )
        try:
            item = UnreadableItem(
                reason=f"{reason}; spool file {target}", item=target.read_text(encoding="utf-8")
            )
            with bounded_writer(self.engine, self._wait) as writer:
                record.keep_unreadable_items(
                    writer,
                    provider=received.provider if received else "unknown",
                    route=received.route if received else "spool",
                    items=[item],
                    at=datetime.now(UTC),
                )
        except Exception as e:  # the file stays in failed/: the log line above names it
            log.error(
                "webhook spool: %s not kept in the audit trail either: %s", target.name, type(e).__name__
            )
