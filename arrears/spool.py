"""A spool: documents kept on disk until they can be stored, in the order they came.

The webhook server acknowledges a verified callback it could not store in time (an import holds
SQLite's one write lock for minutes, and a vendor waits seconds: Twilio does not deliver an
inbound text again) by keeping it here, and stores it once the database is free. So a file must
survive a crash from the moment the vendor is answered: each is written whole (`atomic_write`,
fsynced) and its directory fsynced before the answer goes out. Files are named by the time they
came, so a listing is the order to store them in. One that cannot be stored for another reason
is moved to `failed/`, never deleted: operators see it (`arrears report`) and nothing is lost.
Phone numbers and texts are in these files: the directory is private (0700, files 0600). What
is in them was verified before it was spooled and is stored unverified, so the directory must be
this user's (`owned_private_directory`), and a file in it that this user did not write, or that
others may write, is refused as damaged: set aside, never stored as a callback nobody signed.
"""

import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrears.files import atomic_write, owned_private_directory
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
        owned_private_directory(self.directory)
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
        """The document at `path`; ValueError if it is not a JSON object (a damaged file), or not a
        file this user wrote (a link, a FIFO, another user's file, one others may write to)."""
        document = json.loads(_own_file_text(path))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document

    def done(self, path: Path) -> None:
        """`path` is stored: forget it."""
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def set_aside(self, path: Path) -> Path:
        """Move `path` to `failed/`, kept for operators; its new path."""
        failed = owned_private_directory(self.directory / FAILED)
        target = failed / path.name
        os.replace(path, target)
        _fsync_directory(self.directory)
        return target

    def size(self) -> SpoolSize:
        failed = self.directory / FAILED
        count = sum(1 for p in failed.iterdir() if p.suffix == _SUFFIX) if failed.is_dir() else 0
        return SpoolSize(waiting=len(self.pending()), failed=count)


def _own_file_text(path: Path) -> str:
    """The text of `path`, a regular file of this user that no one else may write; else ValueError.
    Opened without following a link, and without waiting on a FIFO for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ValueError(f"cannot be opened as a file: {e.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as file:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise ValueError("not a regular file")
        if found.st_uid != os.geteuid() or found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError("not written by this user, or writable by others: not trusted")
        return file.read()


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
