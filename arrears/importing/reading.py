"""Reading an accounts or payments file, one physical line at a time.

Every line of the file after a CSV's header is one record: a quote never joins lines, so a stray
or unterminated quote rejects its own line and no other (`csv` reading a whole stream would take
every line up to the next quote into one cell and lose them). A blank line is no record, nor is a
CSV line of nothing but separators (`,,,,`: the empty rows a spreadsheet saves after the last),
which is counted apart (`empty_lines`) for the summary. So the records read are the other data
lines of the file, counted from its bytes.

Text is decoded strictly in the file's encoding (UTF-8, with or without a BOM, unless told
otherwise): a byte sequence that is not valid in it raises `UnreadableFile` naming its byte
offset, whenever it is met, and the importer then stores nothing. Nothing is ever guessed or
replaced, so a GBK file read as UTF-8 never becomes mojibake in the database; nor does a UTF-8
file read in another encoding, which GB18030 would read without an error: its first lines that
hold non-ASCII bytes being UTF-8, it is refused the same way, naming the encoding (`_Utf8Probe`).

Reading (`Source.lines`) and splitting a line into a record (`Source.layout`) are apart: the
importer reads, in file order, and a parsing worker splits and parses (`arrears.importing.parallel`).
A layout is the little a line needs to be split (the columns, the separator): it is picklable.
"""

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol, Self

from arrears.files import DEFAULT_ENCODING, unsafe_cell
from arrears.importing.records import (
    COLUMNS,
    MAY_BE_EMPTY,
    REJECT_COLUMNS,
    REQUIRED,
    Kind,
    Line,
    RawRow,
    Rejection,
    UnreadableFile,
)

__all__ = ["DEFAULT_ENCODING", "Layout", "Source", "check_encoding", "open_source"]

# What a servicing system's transfer or an operator's spreadsheet hands over instead of text, by
# the bytes it starts with: each is named, so the operator knows what to do with the file (a gzip
# file is not "UTF-16", which is what its NUL bytes alone would suggest).
_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip), then import the CSV or JSON Lines"),
    (b"BZh", "bzip2-compressed: decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (unxz)"),
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx): unzip it, or save the sheet as CSV UTF-8"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls): save the sheet as CSV UTF-8"),
    (b"\xff\xfe", "UTF-16 text (as Excel's 'Unicode Text' saves): save it as CSV UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as CSV UTF-8"),
)
# Encodings whose bytes for a line depend on the lines before it: a line cannot be read alone.
_STATEFUL = ("utf_7", "hz", "iso2022")
_ASCII_PROBE = 'account_id,;\t"{}:\r\n'


def check_encoding(name: str) -> str:
    """The codec name for `name`, or UnreadableFile if a line cannot be decoded on its own in it.

    Supported: the ASCII-compatible, stateless encodings (UTF-8, GB18030, GBK, Big5, Shift_JIS,
    Latin-1, Windows-125x, ...). UTF-16 and UTF-32 files are to be saved as UTF-8 first.
    """
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise UnreadableFile(f"--encoding: unknown encoding {name!r}") from None
    if codec == "utf-8-sig":
        # Python's name for UTF-8 with a BOM, as pandas and Excel users know it: the BOM at the start
        # of a UTF-8 file is dropped anyway. Its codec writes a BOM, so the probe below would refuse it.
        return "utf-8"
    try:
        compatible = _ASCII_PROBE.encode(codec) == _ASCII_PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        compatible = False
    if not compatible or codec.startswith(_STATEFUL):
        raise UnreadableFile(
            f"--encoding: {name!r} is not supported (lines must be readable one by one, with ASCII "
            "punctuation): save the file as UTF-8"
        )
    return codec


class Layout(Protocol):
    """How one data line of a file becomes a record: the same in the importer and in a worker."""

    def row(self, line: Line) -> RawRow: ...


class Source:
    """An open accounts or payments file whose header (or first record) has been checked."""

    format: Literal["csv", "jsonl"]
    layout: Layout

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes], encoding: str) -> None:
        self.path = path
        self.kind = kind
        self.encoding = encoding
        self._binary = binary
        self.size = path.stat().st_size
        self.columns: tuple[str, ...] = ()  # data columns in file order (without a rejects prefix)
        self.ignored_columns: tuple[str, ...] = ()  # columns that are not part of the contract
        self.data_lines = 0  # non-blank lines read after the header: one record each
        self.empty_lines = 0  # CSV lines of separators alone (a spreadsheet's empty rows): no record
        self._position = 0
        self._number = 0
        # Of the bytes as they are read, not of the path opened again: a pipe (`<(zcat f.csv.gz)`)
        # can be read once, and a file rewritten meanwhile would be known by bytes never imported.
        self._sha256 = hashlib.sha256()
        self._at_end = False
        self._bom = encoding in ("utf-8", "utf_8", "utf-8-sig", "utf_8_sig")

    @property
    def bytes_read(self) -> int:
        """How far reading has got, for a progress bar."""
        return self._position

    @property
    def sha256(self) -> str:
        """The SHA-256 of the file's bytes, by which a file delivered again is known; once read whole."""
        if not self._at_end:
            raise RuntimeError(f"{self.path}: the digest is of the whole file, which is not read yet")
        return self._sha256.hexdigest()

    @property
    def rejects_header(self) -> tuple[str, ...]:
        """The columns of `original` in every RawRow, written after line, field, reason."""
        raise NotImplementedError

    def lines(self) -> Iterator[Line]:
        """The data lines (not blank, after a CSV's header), in file order, each counted in
        `data_lines` as it is read; a CSV line of separators alone is counted in `empty_lines`."""
        raise NotImplementedError

    def rows(self) -> Iterator[RawRow]:
        """Each data line split into its record."""
        return map(self.layout.row, self.lines())

    def split(self, line: RawRow | Line) -> RawRow:
        """The record of a line, split now if it was not (one a parsing worker accepted)."""
        return line if isinstance(line, RawRow) else self.layout.row(line)

    def _lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text without its line break) for each physical line, decoded strictly."""
        # Whether a file read in another encoding is UTF-8, from the first lines that hold non-ASCII
        # bytes (`_Utf8Probe`): None for a UTF-8 import, and once a line has shown it is not.
        probe = None if self._bom else _Utf8Probe()
        for raw in self._binary:
            start, self._position = self._position, self._position + len(raw)
            self._number += 1
            self._sha256.update(raw)
            body = raw[:-1] if raw.endswith(b"\n") else raw
            if probe is not None and not body.isascii():
                if not probe.reads(self._number, body):
                    probe = None
                elif probe.sure:
                    raise UnreadableFile(probe.refusal(self.path, self.encoding))
            skipped = 0
            if start == 0 and body.startswith(codecs.BOM_UTF8):
                if not self._bom:
                    # Read as GB18030 or Windows-1252, the BOM would eat into the first column's name
                    # and the file be refused for lacking it: say what the file is instead.
                    raise UnreadableFile(
                        f"{self.path}: starts with a UTF-8 byte-order mark: it is UTF-8 text, not "
                        f"{self.encoding}; import it without --encoding"
                    )
                body, skipped = body[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
            try:
                text = body.decode(self.encoding)
            except UnicodeDecodeError as error:
                offset = start + skipped + error.start
                # Excel on Windows saves "CSV" in the system's code page: GBK on a Chinese
                # system, Windows-1252 in Western Europe and the Americas.
                hint = (
                    " (try --encoding gb18030 for a Chinese file, --encoding cp1252 for one Excel saved "
                    "in Western Europe or the Americas)"
                    if self._bom
                    else " (the line is UTF-8 text: import the file without --encoding)"
                    if _is_utf8(body)
                    else ""
                )
                raise UnreadableFile(
                    f"{self.path}: not valid {self.encoding} at byte offset {offset} (line "
                    f"{self._number}): nothing stored{hint}"
                ) from None
            if start == 0:
                text = text.removeprefix(_BOM)  # GB18030's own BOM (84 31 95 33), decoded
            yield self._number, text.removesuffix("\r")
        self._at_end = True

    def close(self) -> None:
        self._binary.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


class _Utf8Probe:
    """Whether a file read in another encoding (`--encoding gb18030`) is UTF-8 text, from its first
    lines that hold non-ASCII bytes: a UTF-8 file reads in GB18030 as other Chinese characters
    without an error ("王小明" as "鐜嬪皬鏄�"), which would be stored as the borrowers' names.

    A line that is not UTF-8 ends the probe: the file is not (a GBK line is seldom UTF-8: a name of
    one character in five, of two in thirty). Once `EVIDENCE` non-ASCII bytes in a row have been
    UTF-8 (8 Chinese characters of UTF-8, 12 accented letters) the file is UTF-8: 12 characters of
    GBK are UTF-8 by chance far less than once in a million (8 are, once). Only those first lines
    are decoded twice; a UTF-8 import is not probed at all."""

    EVIDENCE = 24

    def __init__(self) -> None:
        self.seen = 0
        self.first: tuple[int, bytes] | None = None  # the first line that holds non-ASCII bytes

    def reads(self, number: int, body: bytes) -> bool:
        """Take in one line that holds non-ASCII bytes; False when the file is not UTF-8."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        self.first = self.first or (number, body)
        self.seen += len(body) - len(text.encode("ascii", "ignore"))
        return True

    @property
    def sure(self) -> bool:
        return self.seen >= self.EVIDENCE

    def refusal(self, path: Path, encoding: str) -> str:
        assert self.first is not None
        number, body = self.first
        found = _NON_ASCII.search(body.decode("utf-8"))
        assert found is not None
        words = found.group(0)[:12]
        misread = words.encode("utf-8").decode(encoding, errors="replace")
        return (
            f"{path}: is UTF-8 text, not {encoding}: line {number} holds {words!r}, which read as "
            f"{encoding} would be stored as {misread!r}; nothing stored: import it without --encoding "
            "(UTF-8 is the default)"
        )


def open_source(path: Path, kind: Kind, encoding: str = DEFAULT_ENCODING) -> Source:
    """Open `path` and check that it is a CSV or JSON Lines file of `kind` in `encoding`.

    The format follows the extension (.csv, .jsonl, .ndjson) or, failing that, the first
    character. Raises UnreadableFile with a message fit for one line.
    """
    codec = check_encoding(encoding)
    try:
        binary = path.open("rb")
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise UnreadableFile(f"{path}: {error.strerror or error}") from None
    try:
        head = binary.peek(65536)[:65536]
        for magic, what in _NOT_TEXT:
            if head.startswith(magic):
                raise UnreadableFile(f"{path}: {what}")
        if b"\x00" in head:
            raise UnreadableFile(
                f"{path}: binary content (NUL bytes), not a CSV or JSON Lines file; "
                "a UTF-16 file must be saved as UTF-8"
            )
        suffix = path.suffix.lower()
        start = head.removeprefix(codecs.BOM_UTF8).lstrip()
        if suffix != ".csv" and start.startswith(b"["):
            # An API's export (`.json`): read as CSV, its first line made a nonsense header.
            raise UnreadableFile(
                f"{path}: a JSON array, not JSON Lines: each record must be one JSON object on a line "
                "of its own (jq -c '.[]' FILE writes them so)"
            )
        is_jsonl = suffix in (".jsonl", ".ndjson") or (suffix != ".csv" and start.startswith(b"{"))
        source: Source = (
            _JsonlSource(path, kind, binary, codec) if is_jsonl else _CsvSource(path, kind, binary, codec)
        )
    except BaseException:
        binary.close()
        raise
    return source


def _problem(line: int, values: dict[str, str]) -> Rejection | None:
    """What no stored text may hold: PostgreSQL refuses NUL, and a lone surrogate is no text."""
    for name, value in values.items():
        if "\x00" in value:
            return Rejection(line, name, "contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return Rejection(line, name, "not valid Unicode text (a lone surrogate)")
    return None


# The csv module's messages, said for people who edit CSV files in a spreadsheet or by hand.
_CSV_REASONS = {
    "unexpected end of data": "unterminated quote: a quoted cell must be closed on its own line",
    "',' expected after '\"'": 'text after a closing quote (a quote inside a cell is written "")',
}


class _CsvSource(Source):
    format = "csv"

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes], encoding: str) -> None:
        super().__init__(path, kind, binary, encoding)
        self._iter = self._lines()
        first = next(self._iter, None)
        if first is None or not first[1].strip():
            raise UnreadableFile(f"{path}: empty file, no header")
        if "\r" in first[1]:
            # Excel's "CSV (Macintosh)" ends lines with a CR alone: the whole file reads as one line.
            raise UnreadableFile(
                f"{path}: lines end in a carriage return (CR) alone, as 'CSV (Macintosh)' saves them: "
                "save it as CSV UTF-8 (lines ending in LF or CRLF)"
            )
        # Spreadsheets in much of Europe save with semicolons; a header never holds the separator.
        delimiter = max(",;\t", key=first[1].count)
        try:
            header = [name.strip() for name in _cells(first[1], delimiter)]
        except csv.Error as error:
            raise UnreadableFile(f"{path}: not a CSV file ({error})") from None
        skip = len(REJECT_COLUMNS) if tuple(header[:3]) == REJECT_COLUMNS else 0
        if skip:
            header = [unsafe_cell(name) for name in header]
        self.columns = tuple(header[skip:])
        seen: set[str] = set()
        for name in self.columns:
            if name in seen and name:  # a spreadsheet's trailing empty columns have no name
                raise UnreadableFile(f"{path}: column {name!r} appears twice in the header")
            seen.add(name)
        missing = [name for name in REQUIRED[kind] if name not in seen]
        if missing:
            raise UnreadableFile(
                f"{path}: missing required columns for {kind}: {', '.join(missing)}"
                + _spelt_otherwise(missing, self.columns)
            )
        contract = set(COLUMNS[kind])
        self.ignored_columns = tuple(
            name or f"(column {n}, no name)"
            for n, name in enumerate(self.columns, start=1)
            if name not in contract
        )
        # The rejects file of a JSON Lines import: its `json` column holds each record as it was.
        from_json_lines = bool(skip) and self.columns == (*COLUMNS[kind], _JSON_COLUMN)
        self.layout = _CsvLayout(self.columns, delimiter, skip, frozenset(self.columns), from_json_lines)
        self._separators = delimiter + " \t"

    @property
    def rejects_header(self) -> tuple[str, ...]:
        return self.columns

    def lines(self) -> Iterator[Line]:
        for line, text in self._iter:
            stripped = text.strip()
            if not stripped:
                continue  # a blank line is not a record
            if not stripped.strip(self._separators):
                # Excel saves rows it once held as `,,,,`: no cell has a value, so nothing is lost.
                self.empty_lines += 1
                continue
            self.data_lines += 1
            yield Line(line, text)


def _spelt_otherwise(missing: list[str], header: tuple[str, ...]) -> str:
    """A hint when the header names missing columns in another spelling (`Account ID` for
    `account_id`, as a spreadsheet's export writes them): names are matched exactly, not guessed."""
    found = [
        f"{name!r} ({wanted})"
        for name in header
        if (wanted := re.sub(r"[\s\-]+", "_", name.strip().lower())) in missing and name != wanted
    ]
    if not found:
        return ""
    return f"; the header spells {'them' if len(found) > 1 else 'it'} otherwise: {', '.join(found)}"


def _cells(text: str, delimiter: str) -> list[str]:
    if '"' not in text and "\r" not in text:
        return text.split(delimiter)  # what csv would make of it, many times faster
    return next(csv.reader((text,), delimiter=delimiter, strict=True))


# What `cat a.csv b.csv > c.csv` leaves in the middle of a file: b's header, after b's BOM.
_BOM = "\ufeff"
_JOINED = f" \t{_BOM}"
_JOINED_FILES = "files joined together? import each file on its own"
_BOM_INSIDE = f"a byte-order mark (U+FEFF) inside the file: {_JOINED_FILES}"
_JSON_COLUMN = "json"  # the last column of a JSON Lines import's rejects: the line as it was


@dataclass(frozen=True, slots=True)
class _CsvLayout:
    columns: tuple[str, ...]
    delimiter: str
    skip: int  # the line, field and reason cells that open a rejects file's rows
    present: frozenset[str]
    from_json_lines: bool = False  # a JSON Lines import's rejects: see `_stated`

    def row(self, line: Line) -> RawRow:
        number, text = line.line, line.text
        try:
            cells = _cells(text, self.delimiter)
        except csv.Error as error:
            reason = _CSV_REASONS.get(str(error), f"unreadable CSV: {error}")
            if "new-line character" in str(error):
                reason = "a carriage return (CR) inside the line, outside quotes"
            return RawRow(number, {}, self.present, (text,), Rejection(number, "row", reason))
        if self.skip:
            cells = [unsafe_cell(cell) for cell in cells[self.skip :]]
        values = dict(zip(self.columns, cells, strict=False))
        problem = None
        if values.get("account_id", "").strip(_JOINED) == "account_id":  # a column of both kinds
            problem = Rejection(number, "row", f"the header again: {_JOINED_FILES}")
        elif len(cells) != len(self.columns):
            problem = Rejection(number, "row", f"has {len(cells)} fields, the header has {len(self.columns)}")
        elif "\x00" in text:
            problem = _problem(number, values)
        elif _BOM in text:
            # Invisible, it would make "\ufeffA-1" an account of its own beside A-1.
            problem = Rejection(number, "row", _BOM_INSIDE)
        if self.from_json_lines and problem is None:
            values = _stated(values)
            return RawRow(number, values, frozenset(values), tuple(cells), problem)
        return RawRow(number, values, self.present, tuple(cells), problem)


def _stated(values: dict[str, str]) -> dict[str, str]:
    """The cells of a JSON Lines import's rejects row that its record stated: a key the record
    had (its `json` cell), or a cell filled in since. A key the record lacked said "keep what is
    stored", where an empty CSV cell says "clear it": imported as an empty cell, the fixed rejects
    file would lift the import's holds (a bankruptcy's automatic stay) and clear the VIN, the APR
    and the address that the record never mentioned."""
    try:
        record = json.loads(values.get(_JSON_COLUMN, ""))
    except ValueError:
        return values
    if not isinstance(record, dict):
        return values  # the line was no JSON object: every cell is the operator's
    return {name: value for name, value in values.items() if value or name in record}


class _JsonlSource(Source):
    """JSON Lines: one object per line. The first record stands for a header: if it lacks a
    required key, the file is taken for the wrong kind and refused whole."""

    format = "jsonl"

    def __init__(self, path: Path, kind: Kind, binary: IO[bytes], encoding: str) -> None:
        super().__init__(path, kind, binary, encoding)
        self.columns = COLUMNS[kind]
        self.layout = _JsonlLayout(self.columns)
        self._iter = self._lines()
        self._first = next(((n, t) for n, t in self._iter if t.strip()), None)
        if self._first is None:
            return  # no records: nothing to import, nothing wrong
        number, text = self._first
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise UnreadableFile(f"{path}: line {number} is not a JSON object: not a JSON Lines file")
        missing = [k for k in REQUIRED[kind] if k not in record and k not in MAY_BE_EMPTY]
        if missing:
            raise UnreadableFile(
                f"{path}: line {number} lacks fields required for {kind}: {', '.join(missing)}"
            )
        contract = set(self.columns)
        self.ignored_columns = tuple(k for k in record if k not in contract)

    @property
    def rejects_header(self) -> tuple[str, ...]:
        return (*self.columns, _JSON_COLUMN)

    def lines(self) -> Iterator[Line]:
        if self._first is None:
            return
        self.data_lines += 1
        yield Line(*self._first)
        for number, text in self._iter:
            if text.strip():
                self.data_lines += 1
                yield Line(number, text)


@dataclass(frozen=True, slots=True)
class _JsonlLayout:
    columns: tuple[str, ...]

    def row(self, line: Line) -> RawRow:
        """The record's values for the contract's keys: any other key is read past, whatever its
        value (`"active": true`, as many exports carry), as a CSV file's other columns are."""
        number, text = line.line, line.text
        problem = None
        values: dict[str, str] = {}
        record = None
        try:
            # Numbers stay text, so money is never a float and NaN or 1e3 are rejected as such.
            parsed = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
        except ValueError as error:
            # `cat a.jsonl b.jsonl` with b saved with a BOM: said as for a CSV file, not in Python's
            # words ("Unexpected UTF-8 BOM (decode using utf-8-sig)").
            reason = (
                _BOM_INSIDE if text.startswith(_BOM) else f"not a JSON object: {getattr(error, 'msg', error)}"
            )
            problem = Rejection(number, "row", reason)
        else:
            if isinstance(parsed, dict):
                record = parsed
            else:  # `null` too: it is no object lacking every field
                problem = Rejection(number, "row", "not a JSON object")
        if record is not None:
            for key in self.columns:
                if key not in record:
                    continue
                value = record[key]
                if value is None:
                    values[key] = ""
                elif isinstance(value, str):
                    values[key] = value
                elif key == "flags" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                    values[key] = "|".join(value)
                elif problem is None:
                    problem = Rejection(
                        number, key, f"expected text or a number, got {_as_written(text, key)}"
                    )
            if problem is None:
                problem = _problem(number, values)
        original = (*(_writable(values.get(name, "")) for name in self.columns), text)
        return RawRow(number, values, frozenset(values), original, problem)


class _Number(str):
    """A JSON number or constant (NaN) as written, for quoting a value back (`_as_written`)."""


def _as_written(text: str, key: str) -> str:
    """The value of `key` in the record `text`, quoted as the file wrote it: `[1.50]`, not `["1.50"]`
    as the numbers read as text would dump, and `"张"` rather than its escape. Only for a message:
    the line is parsed again, which a rejection alone pays for."""
    record = json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
    return _json_text(record[key])


def _json_text(value: object) -> str:
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_json_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_text(k)}: {_json_text(v)}" for k, v in value.items()) + "}"
    quoted = json.dumps(value, ensure_ascii=False)
    # A lone surrogate (`"\ud800"`) cannot be written as UTF-8: kept escaped, as the file had it.
    return quoted if _writable(quoted) == quoted else json.dumps(value)


def _writable(value: str) -> str:
    """A JSON escape such as \\ud800 cannot be written as UTF-8; the json column keeps the original."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
