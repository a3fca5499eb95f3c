"""The files `arrears import` stored, known by their content: what makes an older file refusable.

The servicing system's accounts files carry no date of their own, and an import upserts whatever
a file says. So a file delivered again after a newer one (a transfer retried, yesterday's file
dropped in the folder again, a renamed copy) would set every balance, oldest due date and number
back to what it said: days past due and stages would follow it on the next cycle, and borrowers
would be told amounts that were no longer owed. A file's SHA-256 found among the earlier imports
with another accounts file imported after it is such a file (`stale_import`). The same file
imported twice in a row is not: it changes nothing. Payments files are kept too, for operators,
but never refused: a payment is stored once by its id, whatever file brings it again.

Every function takes the caller's connection: the record is written in the import's own
transaction, so a file not stored is not recorded either.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from arrears.importing import Source
from arrears.storage.tables import imported_file

__all__ = ["ImportedFile", "StaleImport", "imported_files", "record_import", "stale_import"]


@dataclass(frozen=True, slots=True)
class ImportedFile:
    id: int
    kind: str
    name: str
    size: int
    sha256: str
    imported_at: datetime
    accepted: int
    rejected: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "imported_at": self.imported_at.isoformat(),
            "accepted": self.accepted,
            "rejected": self.rejected,
        }


class StaleImport(Exception):
    """This accounts file was imported before, and a newer one after it: nothing is stored."""

    def __init__(self, earlier: ImportedFile, later: ImportedFile) -> None:
        super().__init__(
            f"this file was imported on {earlier.imported_at:%Y-%m-%d %H:%M} UTC (as {earlier.name}), "
            f"and {later.name} after it on {later.imported_at:%Y-%m-%d %H:%M} UTC: importing it again "
            "would set balances, due dates and numbers back to what it says"
        )
        self.earlier = earlier
        self.later = later


def _file(row: Any) -> ImportedFile:
    return ImportedFile(*row)


_COLUMNS = (
    imported_file.c.id,
    imported_file.c.kind,
    imported_file.c.name,
    imported_file.c.size,
    imported_file.c.sha256,
    imported_file.c.imported_at,
    imported_file.c.accepted,
    imported_file.c.rejected,
)


def stale_import(connection: Connection, *, kind: str, sha256: str) -> StaleImport | None:
    """Why an accounts file with this digest must not be imported again, or None: when it was,
    and which other accounts file came after its latest import.

    A file without records (a day without changes sends the header alone, the same bytes every
    such day) sets nothing back, however often it comes; nor does a file that stored nothing (no
    record accepted) make an earlier one stale: it set nothing the earlier one could set back. A
    file whose records were all rejected is still known: they are as old as it is, and may be
    accepted now."""
    if kind != "accounts":
        return None
    accounts = imported_file.c.kind == kind
    earlier = connection.execute(
        select(*_COLUMNS)
        .where(
            accounts,
            imported_file.c.sha256 == sha256,
            imported_file.c.accepted + imported_file.c.rejected > 0,
        )
        .order_by(imported_file.c.id.desc())
        .limit(1)
    ).first()
    if earlier is None:
        return None
    later = connection.execute(
        select(*_COLUMNS)
        .where(
            accounts,
            imported_file.c.id > earlier.id,
            imported_file.c.sha256 != sha256,
            imported_file.c.accepted > 0,
        )
        .order_by(imported_file.c.id.desc())
        .limit(1)
    ).first()
    return StaleImport(_file(earlier), _file(later)) if later is not None else None


def record_import(connection: Connection, source: Source, at: datetime, accepted: int, rejected: int) -> None:
    """Record `source`, read whole, as imported: its name without the directory, and its size and
    digest as read (a pipe has no size to stat)."""
    connection.execute(
        insert(imported_file).values(
            kind=source.kind.value,
            name=source.path.name,
            size=source.bytes_read,
            sha256=source.sha256,
            imported_at=at,
            accepted=accepted,
            rejected=rejected,
        )
    )


def imported_files(connection: Connection, *, limit: int | None = None) -> list[ImportedFile]:
    """The files imported, newest first."""
    query = select(*_COLUMNS).order_by(imported_file.c.id.desc())
    if limit:
        query = query.limit(limit)
    return [_file(row) for row in connection.execute(query)]
