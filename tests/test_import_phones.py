"""The import's fast path for "+digits" phone numbers gives phonenumbers' own verdict, every time.

`arrears.importing.phones.international` skips phonenumbers' text handling for numbers already
written as "+" and digits; whatever it decides must be what `parse`, `region_code_for_number`,
`is_valid_number_for_region` and `format_number` decide together, for every calling code.
"""

import random
from datetime import date
from itertools import islice

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberFormat, PhoneNumberType

from arrears.importing.phones import international
from arrears.simulate import generate_portfolio

_REGIONS = (None, "US", "CN", "GB")  # the region parse() is given: the jurisdiction's


def _library(text: str, region: str | None) -> tuple[str, str] | bool:
    """The verdict of phonenumbers itself: (E.164, region), False (invalid), True (unparseable)."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return True
    found = phonenumbers.region_code_for_number(number)
    if found is None or not phonenumbers.is_valid_number_for_region(number, found):
        return False
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), found


def _agrees(text: str) -> bool:
    """The fast path either declines (None) or says what the library says, whatever the region."""
    fast = international(text)
    if fast is None:
        return True
    return all(_library(text, region) == fast for region in _REGIONS)


def _example_numbers() -> list[str]:
    """Valid numbers of every type in every region and calling code, with a national prefix or
    zeros put back after the code, and cut or lengthened by a digit."""
    numbers = []
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
                example = (
                    phonenumbers.example_number_for_non_geo_entity(code)
                    if region == "001"
                    else phonenumbers.example_number_for_type(region, kind)
                )
                if example is None:
                    continue
                e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
                nsn = e164.removeprefix(f"+{code}")
                numbers += [e164, f"+{code}0{nsn}", f"+{code}00{nsn}", f"+{code}1{nsn}"]
                numbers += [e164[:-1], e164 + "5"]
    return numbers


def test_every_calling_code_and_type_gets_the_library_verdict() -> None:
    """Example numbers of every region, and their near misses, are judged as phonenumbers judges them."""
    numbers = _example_numbers()
    assert len(numbers) > 3000
    decided = [text for text in numbers if international(text) is not None]
    assert len(decided) > 0.9 * len(numbers)  # the fast path is the path, not the exception
    assert [text for text in numbers if not _agrees(text)] == []


def test_random_digits_after_every_calling_code_get_the_library_verdict() -> None:
    """Random digits of any length after each calling code get the library's verdict, or are declined."""
    rng = random.Random(14)
    numbers = [
        f"+{code}{''.join(rng.choice('0123456789') for _ in range(length))}"
        for code in COUNTRY_CODE_TO_REGION_CODE
        for length in range(0, 19)
        for _ in range(2)
    ]
    assert [text for text in numbers if not _agrees(text)] == []


def test_generated_portfolio_numbers_are_all_decided_fast_and_alike() -> None:
    """Every number of a generated portfolio takes the fast path and gets the library's verdict."""
    rows = list(islice(generate_portfolio(3000, seed=5, business_date=date(2026, 12, 1)), 3000))
    numbers = [n for row in rows for n in (row.file_values()[3], row.file_values()[4]) if n]
    assert len(numbers) > 3000
    assert all(international(text) is not None for text in numbers)
    assert [text for text in numbers if not _agrees(text)] == []


@pytest.mark.parametrize(
    "text",
    [
        "+1 626 241 1111",
        "+1-626-241-1111",
        "+\uff11\uff16\uff12\uff16\uff12\uff14\uff11\uff11\uff11\uff11\uff10",  # full-width digits
        "+16262411110x5",
        "+0123456",
        "+1",
        "+12",
        "16262411110",
    ],
)
def test_anything_but_plus_and_ascii_digits_is_left_to_the_library(text: str) -> None:
    """Spaces, dashes, other digits, extensions, a leading 0 or no plus: the library decides."""
    assert international(text) is None


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\+[1-9][0-9]{1,19}", fullmatch=True))
def test_any_plus_digits_text_gets_the_library_verdict(text: str) -> None:
    """Whatever "+digits" text hypothesis finds, the fast path agrees with the library or declines."""
    assert _agrees(text)
