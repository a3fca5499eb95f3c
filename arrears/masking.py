"""Masking personal numbers before they reach a log line, an artifact or a flow-run parameter (DESIGN §9).

A phone number keeps its country code and its last four digits, `+86*******1234`: enough for an
operator to tell two numbers apart, not enough to dial one. A national id keeps its last four,
`**************123X`. `mask_text` finds both in free text; `install_log_masking` applies it to
every log record this process creates, Prefect's included, before any handler sees it.
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
# E.164, possibly written with spaces, dots, dashes or brackets: "+86 139 1234 5678".
_E164 = re.compile(rf"(?<![{_GLUED}+])\+\d(?:[\s.\-()]{{0,2}}\d){{6,14}}(?!\d)")
# National forms we handle: CN mobiles (11 digits from 1[3-9]), North American (213) 373-4253 and
# 213-373-4253, UK 020 7946 0000 / 07700 900123.
_NATIONAL = re.compile(
    rf"(?<![{_GLUED}])(?:1[3-9]\d{{9}}|\(\d{{3}}\)\s?\d{{3}}[\s.\-]\d{{4}}|\d{{3}}[.\-]\d{{3}}[.\-]\d{{4}}"
    rf"|0\d{{2,4}}\s\d{{3,4}}\s?\d{{3,4}})(?![{_GLUED}])"
)
# CN resident identity card (18: 17 digits and a check digit or X) and US SSN (123-45-6789).
_CN_ID = re.compile(rf"(?<![{_GLUED}])\d{{17}}[\dXx](?![{_GLUED}])")
_SSN = re.compile(rf"(?<![{_GLUED}\-])\d{{3}}-\d{{2}}-\d{{4}}(?![{_GLUED}\-])")


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
    if _SSN.fullmatch(value):
        return "***-**-" + value[-_KEEP:]
    return "*" * max(0, len(value) - _KEEP) + value[-_KEEP:]


def mask_text(text: str) -> str:
    """`text` with every phone number and national id in it masked."""
    if not any(ch.isdigit() for ch in text):
        return text
    text = _CN_ID.sub(lambda m: mask_national_id(m.group(0)), text)
    text = _SSN.sub(lambda m: mask_national_id(m.group(0)), text)
    text = _E164.sub(lambda m: mask_phone(m.group(0)), text)
    return _NATIONAL.sub(lambda m: mask_phone(m.group(0)), text)


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
