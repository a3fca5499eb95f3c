"""Items of a vendor's batch callback that could not be read, kept for operators.

A vendor that pushes arrays (Aliyun's SmsReport and SmsUp) is answered 200 once the readable
items are stored, so one item without its number or our reference does not lose the rest of the
array when the vendor stops pushing it again. The item itself is kept here: an audit event
without an account (kind `unreadable_callback`), once per item however often the vendor pushes
it, its phone numbers masked as everywhere in the audit trail.

Every function takes the caller's connection and does not commit.
"""

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, select

from arrears.masking import mask_text
from arrears.storage._common import event, insert_events
from arrears.storage.tables import audit

__all__ = ["UNREADABLE_CALLBACK", "keep_unreadable"]

UNREADABLE_CALLBACK = "unreadable_callback"  # audit kind


def keep_unreadable(
    connection: Connection, *, provider: str, route: str, items: Sequence[tuple[str, str]], at: datetime
) -> int:
    """Keep each `(reason, item)` not kept before (the item's SHA-256 names it); how many were new."""
    details = {}
    for reason, item in items:
        digest = hashlib.sha256(item.encode()).hexdigest()
        detail = f"{route}: an item that could not be read (sha256 {digest}): {reason}"
        details[detail] = (reason, item, digest)
    kept = set(
        connection.scalars(
            select(audit.c.detail).where(
                audit.c.kind == UNREADABLE_CALLBACK,
                audit.c.account_id.is_(None),
                audit.c.detail.in_(list(details)),
            )
        )
    )
    new = [
        event(
            None,
            at,
            UNREADABLE_CALLBACK,
            detail,
            {"provider": provider, "route": route, "reason": reason, "sha256": digest}
            | {"item": mask_text(item)},
        )
        for detail, (reason, item, digest) in details.items()
        if detail not in kept
    ]
    insert_events(connection, new)
    return len(new)
