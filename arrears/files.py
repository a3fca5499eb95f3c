"""Writing a user's files safely: private, atomic, and never through a planted symlink.

Every file arrears writes for a user (the SQLite database, the demo's CSV files, an import's
rejects file) holds borrowers' names and phone numbers, so:

- the data directory is created 0700 and files 0600 at creation, whatever the umask;
- a file is written to a temporary file beside it and moved into place with `os.replace`, so a
  reader never sees half a file and a crash leaves the old one; `os.replace` replaces a symlink
  at the target path instead of following it, so a link planted there cannot redirect the write;
  anything else that is not a regular file (a device such as /dev/full or /dev/stdout, a FIFO,
  a directory) is refused, never replaced by a file;
- a cell that a spreadsheet would run as a formula is neutralised (`safe_cell`, OWASP's advice
  for CSV injection).

The files a user hands us are read in `DEFAULT_ENCODING` unless they name another.
"""

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_ENCODING",
    "FORMULA_PREFIXES",
    "atomic_write",
    "check_target",
    "create_private_file",
    "owned_private_directory",
    "private_directory",
    "safe_cell",
    "unsafe_cell",
]

# The encoding of a file the servicing system hands us, unless the user names another: here, not in
# `arrears.importing`, so that `arrears import --help` shows it without loading the importer.
DEFAULT_ENCODING = "utf-8"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def private_directory(path: Path) -> Path:
    """Create `path` (and missing parents) readable by its owner only; an existing one is left as is."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return path


def create_private_file(path: Path) -> bool:
    """Create `path` empty and 0600 if it does not exist; True if it was created here.

    Used before a library creates the file itself (SQLite), so the file is private from its
    first byte. A symlink at the path is not followed: O_NOFOLLOW and O_EXCL refuse it. One
    that leads nowhere yet raises OSError: the library, told the file exists, would create it
    where the link points, with the umask's mode, for whoever planted the link to read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise OSError(errno.ELOOP, f"{str(path)!r} is a symbolic link to no file: not followed") from None
        return False
    os.close(fd)
    return True


def owned_private_directory(path: Path) -> Path:
    """`private_directory`, for a directory whose files are trusted as written by us (the webhook
    spool): an existing one must be this user's, and is made 0700 again if others may enter it.
    Raises PermissionError when another user owns it (a name squatted under /tmp): its owner could
    read, remove or add files there."""
    path = private_directory(path)
    found = path.stat()
    if found.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, f"{str(path)!r} belongs to another user: not used")
    if stat.S_IMODE(found.st_mode) & ~PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def check_target(path: Path) -> None:
    """Raise OSError unless a file may be written at `path`: it names a file, its parent is not a
    file, and nothing is there but a regular file or a symlink (which the write replaces).
    Commands call it before their work, so a bad --output is said before anything is built or sent."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, "names a directory, not a file")
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{str(path.parent)!r} is not a directory")
    try:
        found = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(found) or stat.S_ISLNK(found)):
        raise IsADirectoryError(errno.EEXIST, "not a regular file: it would be replaced, not written")


@contextmanager
def atomic_write(
    path: Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = "", **options: Any
) -> Iterator[IO[Any]]:
    """Write `path` through a 0600 temporary file in the same directory, moved into place on success.

    On an error the temporary file is removed and `path` is untouched. Raises OSError when the
    directory cannot be written, or `check_target` refuses the path.
    """
    path = Path(path)
    check_target(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(
            fd,
            mode,
            encoding=None if binary else encoding,
            newline=None if binary else newline,
            **options,
        ) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def safe_cell(value: str) -> str:
    """The cell a spreadsheet shows as text: a leading formula character gets a `'` before it."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def unsafe_cell(value: str) -> str:
    """`safe_cell` undone, for a file we wrote ourselves (a rejects file imported again)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_PREFIXES) else value
