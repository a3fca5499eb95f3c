"""ISO 4217 currencies and their minor units: what an amount may be written in, and how precisely.

Python ships no ISO 4217 table, so this module keeps one (a 2025 snapshot); it needs upkeep when
a currency is introduced or withdrawn.
"""

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

__all__ = ["CURRENCY_MINOR_UNITS", "ISO_4217", "display", "minor_units"]

# ISO 4217 List One, active codes as published in 2025, with their minor units. Python ships no
# currency list, and pycountry (not a dependency) carries no minor units. Left out on purpose:
# precious metals (XAU XAG XPD XPT), bond-market units (XBA-XBD), XDR, XSU, XUA, the testing code
# XTS and XXX (nothing a car loan is written in), and withdrawn codes (ANG, replaced by XCG in
# 2025; BGN, by the euro on 2026-01-01; HRK, SLL, ZWL, CUC).
_TWO_PLACES = """
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF
CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL
MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR
PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP
TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG
"""
_OTHER_PLACES = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
CURRENCY_MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {**dict.fromkeys(_TWO_PLACES.split(), 2), **_OTHER_PLACES}
)
ISO_4217 = frozenset(CURRENCY_MINOR_UNITS)


def minor_units(currency: str) -> int:
    return CURRENCY_MINOR_UNITS.get(currency, 2)


def display(amount: Decimal, currency: str) -> str:
    """The amount at its currency's precision, as people and JSON consumers expect: `350.50`."""
    return str(amount.quantize(Decimal(1).scaleb(-minor_units(currency))))
