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

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from arrears.importing import Source
from arrears.storage.tables import imported_file

__all__ = ["ImportedFile", "StaleImport", "digest_of", "imported_files", "record_import", "stale_import"]


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


def digest_of(path: Path) -> str:
    """The file's SHA-256, read in large blocks (about 0.3 s for a million-account file)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
    and which other accounts file came after its latest import."""
    if kind != "accounts":
        return None
    earlier = connection.execute(
        select(*_COLUMNS)
        .where(imported_file.c.kind == kind, imported_file.c.sha256 == sha256)
        .order_by(imported_file.c.id.desc())
        .limit(1)
    ).first()
    if earlier is None:
        return None
    later = connection.execute(
        select(*_COLUMNS)
        .where(
            imported_file.c.kind == kind,
            imported_file.c.id > earlier.id,
            imported_file.c.sha256 != sha256,
        )
        .order_by(imported_file.c.id.desc())
        .limit(1)
    ).first()
    return StaleImport(_file(earlier), _file(later)) if later is not None else None


def record_import(
    connection: Connection, source: Source, sha256: str, at: datetime, accepted: int, rejected: int
) -> None:
    """Record `source` as imported (its name without the directory)."""
    connection.execute(
        insert(imported_file).values(
            kind=source.kind.value,
            name=source.path.name,
            size=source.size,
            sha256=sha256,
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
