"""The rejects file: every rejected record, with its line, field and reason, beside the input
or where the operator says (a drop folder the import may only read)."""

import contextlib
import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from arrears.files import check_target, safe_cell
from arrears.importing.records import REJECT_COLUMNS, RawRow, Rejection

__all__ = ["RejectsUnwritable", "RejectsWriter", "rejects_path"]


def rejects_path(path: Path, given: Path | None = None) -> Path:
    """Where the rejects of `path` go: `FILE.rejects.csv` beside it, or in the directory `given`,
    or `given` itself when it is no directory."""
    name = f"{path.name}.rejects.csv"
    if given is None:
        return path.with_name(name)
    return given / name if given.is_dir() else given


def _on_one_line(cell: str) -> str:
    """A cell whose line breaks are spaces. A JSON Lines value may hold one (`"12 Main St\\nApt 4"`);
    written as it is, the quoted cell would span lines, and the importer, which reads a record per
    line, would split the fixed rejects file's record in two and reject both halves. The `json`
    column keeps the line as it was."""
    return cell.replace("\r\n", " ").replace("\n", " ") if "\n" in cell else cell


class RejectsUnwritable(Exception):
    """The rejects file cannot be written: the import must store nothing, or rows would be lost."""


class RejectsWriter:
    """Writes rejected records: line, field, reason, then the record as it was.

    One line per rejected record (several rejections are joined with "; "), so the rejects file
    counts what the summary counts and, once fixed, can be imported again as it is: the importer
    skips its first three columns; a line break in a cell is written as a space (`_on_one_line`).
    A cell a spreadsheet would run as a formula (`=`, `+`, `-`,
    `@`, tab, CR first) is written with a `'` before it, which the importer takes off again.

    The records go to a private temporary file beside the target; `publish()` moves it into
    place (replacing a symlink there rather than writing through it; refusing what is no regular
    file, such as a FIFO or /dev/null) and must succeed before the import commits. Nothing is
    created when nothing is rejected. Every OSError surfaces as RejectsUnwritable, naming the path.
    """

    def __init__(self, path: Path, header: tuple[str, ...]) -> None:
        self.path = path
        self.header = header
        self.written = 0
        self._file: IO[str] | None = None
        self._temporary: Path | None = None
        self._writer: Any = None

    def write(self, raw: RawRow, rejections: Iterable[Rejection]) -> None:
        rejections = list(rejections)
        row = (
            "; ".join(r.field for r in rejections),
            "; ".join(r.reason for r in rejections),
            *map(_on_one_line, raw.original),
        )
        try:
            if self._file is None:
                self._open()
            self._writer.writerow((raw.line, *map(safe_cell, row)))
        except OSError as error:
            raise self._unwritable(error) from None
        self.written += 1

    def _open(self) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._temporary = Path(name)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(tuple(map(safe_cell, (*REJECT_COLUMNS, *self.header))))

    def publish(self) -> Path | None:
        """Move the rejects into place; with none, remove a rejects file an earlier import left,
        so what lies beside the file always describes its last import. Returns the path written."""
        try:
            if self._file is None:
                if self.path.is_symlink() or self.path.is_file():
                    self.path.unlink()
                return None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            assert self._temporary is not None
            check_target(self.path)  # a FIFO or a device there is refused, never replaced
            os.replace(self._temporary, self.path)
            self._temporary = None
        except OSError as error:
            raise self._unwritable(error) from None
        return self.path

    def _unwritable(self, error: OSError) -> RejectsUnwritable:
        self.discard()
        return RejectsUnwritable(
            f"cannot write the rejects file {self.path}: {error.strerror or error}; nothing was stored"
        )

    def discard(self) -> None:
        """Remove what was written and not published (the import failed or was stopped)."""
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
            self._temporary = None

    def close(self) -> None:
        self.discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
