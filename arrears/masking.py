"""Masking personal numbers before they reach a log line, an artifact or a flow-run parameter (DESIGN §9).

A phone number keeps its country code and its last four digits, `+86*******1234`: enough for an
operator to tell two numbers apart, not enough to dial one. A national id keeps its last four,
`**************123X`. An e-mail address keeps its domain, `***@example.com`. `mask_text` finds
all three in free text; `install_log_masking` applies it to every log record this process
creates, Prefect's included, before any handler sees it. A postal address or a name it cannot
tell from other words: those are kept out of logs and error texts where they are made (the
engine's `hide_parameters`).
"""

import logging
import re
import threading

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

__all__ = ["install_log_masking", "mask_national_id", "mask_phone", "mask_text"]

_KEEP = 4
# What may not touch a number for it to be one: digits, Latin letters (an account id, a key) and
# a mask's stars. Not `\w`: Chinese writes a number against its words, 电话13912345678，and `\w`
# holds every CJK character.
_GLUED = r"0-9A-Za-z_*"
# What a figure continues with: a number in `6262411110.50`, `6262411110,50` or `1,234,567,890` is
# an amount. Only a decimal part or a group of three is: `13912345678,13812345678` (two numbers a
# comma apart, as a borrower types them or a CSV line quotes them) is two numbers.
_NOT_AFTER_FIGURE = r"(?<!\d\.)(?!(?<=\d,)\d{1,3}(?!\d))"
_NOT_BEFORE_FIGURE = r"(?!\.\d|,\d{1,2}(?!\d))"
# A figure after a word and a dash is part of an identifier: A-0000042, LN-2345678901.
_NOT_IN_AN_ID = r"(?<![A-Za-z0-9_]-)"
# Our own texts name rows `message 123456789` and `#123456789`: a bare figure there is a row's id
# once a table passes a hundred million rows, never an SSN or a phone written bare.
_NO_ROW_ID = r"(?<!message )(?<!#)"
# One pass over the text finds every kind (it runs on every log line: one scan, not one a kind).
# - `id`: CN resident identity card, 17 digits and a check digit or X.
# - `e164`: E.164, possibly written with spaces, dots, dashes or brackets: "+86 139 1234 5678";
#   or after the international prefix 00 instead of +: "0044 7700 900123", "001 626 241 1110".
# - `ssn`: US SSN, 123-45-6789 or 123 45 6789 (not inside a longer dashed figure), or bare
#   123456789 when it could be one (SSA never issues area 000, 666 or 9xx, group 00, serial 0000).
# - `phone`, national forms: CN mobiles (11 digits from 1[3-9], also 139 1234 5678, 139-1234-5678,
#   86 before them); North American (213) 373-4253, 213-373-4253, 213.373.4253, 213 373 4253 and
#   2133734253 (area and exchange from 2-9, so an epoch second or a count from 1 is not one), with
#   the trunk 1 or not; UK and IE 020 7946 0000, (020) 7946 0000, 07700 900123, 087 123 4567 and
#   07700900123; CN landlines with their area code, 010-12345678, 0755-88886666, (010) 1234 5678.
_FIND = re.compile(
    rf"(?=[\d+(])(?<![{_GLUED}+]){_NOT_AFTER_FIGURE}{_NOT_IN_AN_ID}(?:"
    r"(?P<id>\d{17}[\dXx])"
    r"|(?P<e164>\+\d(?:[\s.\-()]{0,2}\d){6,14}|00[1-9](?:[\s.\-()]{0,2}\d){7,14})"
    r"|(?P<ssn>(?<!-)\d{3}(?P<sep>[ \-])\d{2}(?P=sep)\d{4}(?!-)"
    rf"|{_NO_ROW_ID}(?!000|666|9)\d{{3}}(?!00)\d{{2}}(?!0000)\d{{4}})"
    r"|(?P<phone>(?:(?:00)?86[\s\-]?)?1[3-9]\d(?P<cn>[\s\-]?)\d{4}(?P=cn)\d{4}"
    r"|(?:1[\s.\-]?)?\(\d{3}\)\s?\d{3}[\s.\-]\d{4}"
    r"|(?:1[.\-])?\d{3}[.\-]\d{3}[.\-]\d{4}"
    r"|(?:1\s)?[2-9]\d{2}\s[2-9]\d{2}\s\d{4}"
    rf"|{_NO_ROW_ID}1?[2-9]\d{{2}}[2-9]\d{{6}}"
    r"|0\d{2,4}\s\d{3,4}\s?\d{3,4}|0[1-9]\d{8,9}"
    r"|0\d{2,3}-\d{7,8}|\(0\d{1,4}\)\s?\d{3,4}[\s\-]?\d{3,4})"
    rf")(?![{_GLUED}]){_NOT_BEFORE_FIGURE}"
)
_DIGIT = re.compile(r"\d")
# Full-width digits and signs (U+FF10-FF19, U+FF0B, U+FF08, U+FF09, U+FF0D), as a Chinese keyboard
# in full-width mode types a number: read as their ASCII forms, one character each, so a match's
# place is the same in both texts.
_WIDE = str.maketrans(
    {0xFF10 + d: str(d) for d in range(10)} | {0xFF0B: "+", 0xFF08: "(", 0xFF09: ")", 0xFF0D: "-"}
)
_SSN_DASHED = re.compile(r"\d{3}-\d{2}-\d{4}")
# An e-mail address keeps its domain (which provider), not whose it is: `***@example.com`. Its
# local part starts where a run of its characters starts and is at most 64 long (RFC 5321), so a
# long run before or after an `@` (a base64 blob) is read once, not once a character.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@(?=[A-Za-z0-9\-]{1,63}\.[A-Za-z0-9])")


def _country_code(digits: str) -> int:
    for size in (1, 2, 3):
        if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            return size
    return 0


def mask_phone(number: str) -> str:
    """`+8613912341234` -> `+86*******1234`; a national number keeps only its last four digits."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) <= _KEEP:
        return "*" * len(digits)
    if number.lstrip().startswith("+"):
        cc = _country_code(digits) if digits[0] != "0" else 0
        return "+" + digits[:cc] + "*" * (len(digits) - cc - _KEEP) + digits[-_KEEP:]
    return "*" * (len(digits) - _KEEP) + digits[-_KEEP:]


def mask_national_id(value: str) -> str:
    """All but the last four characters starred, separators dropped: `***-**-6789` keeps its shape."""
    if _SSN_DASHED.fullmatch(value):
        return "***-**-" + value[-_KEEP:]
    return "*" * max(0, len(value) - _KEEP) + value[-_KEEP:]


def _masked(m: re.Match[str]) -> str:
    found = m.group(0)
    if m.group("id"):
        return mask_national_id(found)
    if m.group("ssn"):
        # Its separators kept: `***-**-6789`, `*** ** 6789`, `*****6789`.
        return "".join("*" if ch.isdigit() else ch for ch in found[:-_KEEP]) + found[-_KEEP:]
    return mask_phone(found)


def mask_text(text: str) -> str:
    """`text` with every phone number, national id and e-mail address in it masked."""
    if "@" in text:
        text = _EMAIL.sub("***@", text)
    if _DIGIT.search(text) is None:
        return text
    if text.isascii():
        return _FIND.sub(_masked, text)
    read = text.translate(_WIDE)
    parts: list[str] = []
    last = 0
    for m in _FIND.finditer(read):
        parts += (text[last : m.start()], _masked(m))
        last = m.end()
    return "".join(parts) + text[last:]


def _mask_traceback(record: logging.LogRecord) -> None:
    """The record's traceback and stack formatted now, masked: a driver's error carries its
    statement's parameters (`[parameters: ('+8613912341234', ...)]`) and Prefect logs a failed
    run's exception with `exc_info`, which a handler would format whole. The masked text is kept
    as `exc_text`, which every `logging.Formatter` prints instead of formatting `exc_info` again."""
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = mask_text(_FORMATTER.formatException(record.exc_info))
        record.exc_info = None
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)


_FORMATTER = logging.Formatter()
_installed = threading.Lock()
_factory_installed = False


def install_log_masking() -> None:
    """Mask numbers in every log record created from now on in this process (idempotent).

    A record factory rather than a handler filter: Prefect sends run logs to its API through its
    own handlers, and a factory reaches every handler, present or configured later. The message is
    formatted once, masked, and stored without its arguments.
    """
    global _factory_installed
    with _installed:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:
                return record
            masked = mask_text(message)
            if masked != message:
                record.msg, record.args = masked, None
            _mask_traceback(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True
