"""A spool: documents kept on disk until they can be stored, in the order they came.

The webhook server acknowledges a verified callback it could not store in time (an import holds
SQLite's one write lock for minutes, and a vendor waits seconds: Twilio does not deliver an
inbound text again) by keeping it here, and stores it once the database is free. So a file must
survive a crash from the moment the vendor is answered: each is written whole (`atomic_write`,
fsynced) and its directory fsynced before the answer goes out. Files are named by the time they
came, so a listing is the order to store them in. One that cannot be stored for another reason
is moved to `failed/`, never deleted: operators see it (`arrears report`) and nothing is lost.
Phone numbers and texts are in these files: the directory is private (0700, files 0600).
"""

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrears.files import atomic_write, private_directory
from arrears.settings import default_home
from arrears.storage.engine import database_file

__all__ = ["FAILED", "Spool", "SpoolSize", "default_spool_directory", "webhook_spool"]

FAILED = "failed"  # the subdirectory of what could not be stored for another reason than a busy database
_SUFFIX = ".json"


def default_spool_directory(database_url: str) -> Path:
    """`webhook-spool` beside the SQLite database (so a copied home keeps it), else under ARREARS_HOME."""
    path = database_file(database_url)
    return (path.parent if path is not None else default_home()) / "webhook-spool"


def webhook_spool(database_url: str, configured: Path | None = None) -> "Spool":
    """The webhook server's spool for this database: `ARREARS_WEBHOOK_SPOOL_DIR` if set, else the
    default; what `arrears report` reads too, so both name the same directory."""
    return Spool(configured or default_spool_directory(database_url))


@dataclass(frozen=True, slots=True)
class SpoolSize:
    waiting: int  # to be stored
    failed: int  # set aside for operators


class Spool:
    """Documents (JSON objects) in `directory`, oldest first. Safe to share between threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._last = 0

    def put(self, document: dict[str, Any]) -> Path:
        """Keep `document`; on return it is on disk (file and directory entry fsynced)."""
        private_directory(self.directory)
        with self._lock:  # names strictly increase in this process even if the clock steps back
            self._last = max(self._last + 1, time.time_ns())
            name = f"{self._last:020d}-{os.getpid()}{_SUFFIX}"
        path = self.directory / name
        with atomic_write(path) as file:
            json.dump(document, file, ensure_ascii=False)
        _fsync_directory(self.directory)
        return path

    def pending(self) -> list[Path]:
        """The documents waiting, oldest first (a temporary file of a write in progress is not one)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p for p in self.directory.iterdir() if p.suffix == _SUFFIX and not p.name.startswith(".")
        )

    def read(self, path: Path) -> dict[str, Any]:
        """The document at `path`; ValueError if it is not a JSON object (a damaged file)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document

    def done(self, path: Path) -> None:
        """`path` is stored: forget it."""
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def set_aside(self, path: Path) -> Path:
        """Move `path` to `failed/`, kept for operators; its new path."""
        failed = private_directory(self.directory / FAILED)
        target = failed / path.name
        os.replace(path, target)
        _fsync_directory(self.directory)
        return target

    def size(self) -> SpoolSize:
        failed = self.directory / FAILED
        count = sum(1 for p in failed.iterdir() if p.suffix == _SUFFIX) if failed.is_dir() else 0
        return SpoolSize(waiting=len(self.pending()), failed=count)


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal in `directory` durable (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
