"""Phone numbers at import speed: "+" and digits, checked with phonenumbers' own metadata.

`phonenumbers.parse` is written for any text a person might type ("Tel: (626) 241-1111 ext. 5",
full-width digits, vanity letters): normalising that text is most of its cost, and
`region_code_for_number` and `is_valid_number_for_region` then look every pattern up and compile
it again. Together they were the slowest part of an import: about 50 µs a number, and a million
accounts carry more than a million numbers.

A servicing system exports nearly every number already as "+" and digits. For exactly that form,
`international` takes the steps `parse` takes for it (the country code, the national prefix, the
possible lengths, with phonenumbers' own helpers) and decides region and validity the way
`region_code_for_number` and `is_valid_number_for_region` do, with each region's patterns
compiled once. Any other text (a national number, spaces or dashes, other digits, an unknown
country code, a length parse refuses) gets None, and the caller asks phonenumbers itself.
tests/test_import_phones.py holds both paths to the same verdict, number by number.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata
from phonenumbers.phonemetadata import PhoneNumberDesc
from phonenumbers.phonenumberutil import (
    ValidationResult,
    _maybe_strip_national_prefix_carrier_code,
    _test_number_length,
)
from phonenumbers.re_util import enable_pattern_cache

__all__ = ["international"]

# parse() reads "+" and 3 or more digits this way; a leading 0 is retried as a national number.
_PLUS_DIGITS = re.compile(r"\+([1-9][0-9]{2,19})", re.ASCII)
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' bounds on a national significant number
# parse() keeps the national prefix when the number without it has one of these lengths.
_PREFIX_KEPT = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)

_Test = Callable[[str], bool]


def _by_length(descs: list[PhoneNumberDesc | None]) -> dict[int, re.Pattern[str]]:
    """For each length, one pattern that a number of that length matches in full exactly when it
    matches one of `descs` as phonenumbers' `_is_number_matching_desc` does: its length among the
    description's possible lengths (any, if it lists none) and its national number pattern."""
    found: dict[int, list[str]] = {}
    for desc in descs:
        if desc is None or not desc.national_number_pattern:
            continue
        for length in desc.possible_length or range(_MAX_NSN + 1):
            found.setdefault(length, []).append(f"(?:{desc.national_number_pattern})")
    return {length: re.compile("|".join(patterns)) for length, patterns in found.items()}


def _known_type(metadata: PhoneMetadata) -> _Test:
    """Whether `_number_type_helper` finds a type (anything but UNKNOWN) for a number.

    That is: the general description matches, and so does one of the types; mobile is looked at
    only where its pattern differs from the fixed-line one, as there.
    """
    general = _by_length([metadata.general_desc])
    kinds = [
        metadata.fixed_line,
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    ]
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.insert(0, metadata.mobile)
    types = _by_length(kinds)

    def known(number: str) -> bool:
        size = len(number)
        pattern, typed = general.get(size), types.get(size)
        return (
            pattern is not None
            and typed is not None
            and pattern.fullmatch(number) is not None
            and typed.fullmatch(number) is not None
        )

    return known


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one country calling code needs: the metadata parse() uses, and its regions in order."""

    metadata: PhoneMetadata  # the main region's (or the non-geographic entity's)
    # (region, leading digits or None, valid-number test or None) for region_code_for_number
    regions: tuple[tuple[str, re.Pattern[str] | None, _Test | None], ...]
    valid: dict[str, _Test]  # region -> is_valid_number_for_region, for the regions of the code


@cache
def _plan(country_code: int) -> _Plan | None:
    # parse()'s national-prefix helpers compile their patterns on every call unless told to keep
    # them: phonenumbers' own switch, for programs that read numbers from many regions.
    enable_pattern_cache()
    regions = COUNTRY_CODE_TO_REGION_CODE[country_code]
    main = regions[0]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, main)
    if metadata is None:
        return None  # parse() would stop on an assertion: leave it to phonenumbers
    order: list[tuple[str, re.Pattern[str] | None, _Test | None]] = []
    valid: dict[str, _Test] = {}
    for region in regions:
        own = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
        if own is None:
            continue
        known = _known_type(own)
        if own.leading_digits is not None:
            order.append((region, re.compile(own.leading_digits), None))
        else:
            order.append((region, None, known))
        # is_valid_number_for_region: a region that answers to another code has no valid numbers.
        if region == REGION_CODE_FOR_NON_GEO_ENTITY or own.country_code == country_code:
            valid[region] = known
    return _Plan(metadata, tuple(order), valid)


def _region(plan: _Plan, regions: tuple[str, ...], number: str) -> str | None:
    """`region_code_for_number`: the only region of the code, or the first that claims it."""
    if len(regions) == 1:
        return regions[0]
    for region, leading, valid in plan.regions:
        if leading is not None:
            if leading.match(number):
                return region
        elif valid is not None and valid(number):
            return region
    return None


def international(text: str) -> tuple[str, str] | Literal[False] | None:
    """(E.164, the number's region) for a valid "+digits" number, False for an invalid one.

    None: `text` is not "+" and digits that parse() would read as such; ask phonenumbers.
    """
    match = _PLUS_DIGITS.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):  # parse(): the shortest prefix that is a calling code
        country_code = int(digits[:size])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    plan = _plan(country_code)
    number = digits[size:]
    if plan is None or len(number) < _MIN_NSN:
        return None
    _, stripped, _ = _maybe_strip_national_prefix_carrier_code(number, plan.metadata)
    if _test_number_length(stripped, plan.metadata) not in _PREFIX_KEPT:
        number = stripped
    if not _MIN_NSN <= len(number) <= _MAX_NSN:
        return None
    # Leading zeros (Italy) are kept as they are: the national significant number is `number`.
    region = _region(plan, COUNTRY_CODE_TO_REGION_CODE[country_code], number)
    valid = plan.valid.get(region) if region is not None else None
    if region is None or valid is None or not valid(number):
        return False
    return f"+{country_code}{number}", region
