"""Simulated accounts: the reference data that makes them look like a lender's book (places,
numbers, names, VINs, holds, segments, delinquency) and the seeded generator that streams them."""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import TypeVar

from arrears.addresses import MailingAddress
from arrears.importing.records import ADDRESS_COLUMNS
from arrears.policy import DEFAULT_POLICY
from arrears.segmentation import segment_of
from arrears.vocabulary import Hold, Segment

__all__ = ["ACCOUNT_COLUMNS", "PortfolioRow", "generate_portfolio"]

_T = TypeVar("_T")


# DESIGN §8, in this order: required columns first, as the operator contract lists them, with each
# optional column next to the one it belongs with.
ACCOUNT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "borrower_id",
    "borrower_name",
    "phone",
    "alt_phone",
    "timezone",
    "jurisdiction",
    "currency",
    "balance",
    "installment_amount",
    "past_due_amount",
    "oldest_due_date",
    "vin",
    "vehicle_value",
    "apr",
    "flags",
    # The optional mailing address, last, as the operator contract lists it after the others.
    *ADDRESS_COLUMNS,
)


_BLANK_ADDRESS = [""] * len(ADDRESS_COLUMNS)


@dataclass(frozen=True, slots=True)
class PortfolioRow:
    """One simulated account: the accounts-file columns of DESIGN §8, then what only we know.

    `ability`, `willingness` and `reachable` are the simulator's ground truth. The file does not
    carry them; arrears has to discover them (bureau pulls, replies, payments), and a demo or a
    test can compare what it found with this truth.
    """

    account_id: str
    borrower_id: str
    borrower_name: str
    phone: str  # E.164
    alt_phone: str | None
    timezone: str  # IANA
    jurisdiction: str
    currency: str
    balance: Decimal
    installment_amount: Decimal
    past_due_amount: Decimal  # a whole number of instalments
    oldest_due_date: date | None  # None exactly when past_due_amount is zero
    vin: str
    vehicle_value: Decimal
    apr: Decimal  # annual percentage rate in percent: Decimal("12.99") is 12.99 %
    flags: tuple[Hold, ...]
    ability: float  # 0..1
    willingness: float  # 0..1
    reachable: bool  # False: no working contact point, although `phone` looks valid
    address: MailingAddress | None = None  # None: the servicing file has none for the borrower

    @property
    def segment(self) -> Segment:
        return segment_of(
            reachable=self.reachable,
            ability=self.ability,
            willingness=self.willingness,
            policy=DEFAULT_POLICY.segmentation,
        )

    def days_past_due(self, business_date: date) -> int:
        """DPD as DESIGN §3 derives it: from the oldest unpaid due date and the business date."""
        return 0 if self.oldest_due_date is None else max(0, (business_date - self.oldest_due_date).days)

    def file_values(self) -> list[str]:
        """The row as the accounts file spells it, in `ACCOUNT_COLUMNS` order."""
        return [
            self.account_id,
            self.borrower_id,
            self.borrower_name,
            self.phone,
            self.alt_phone or "",
            self.timezone,
            self.jurisdiction,
            self.currency,
            str(self.balance),
            str(self.installment_amount),
            str(self.past_due_amount),
            self.oldest_due_date.isoformat() if self.oldest_due_date else "",
            self.vin,
            str(self.vehicle_value),
            str(self.apr),
            "|".join(self.flags),
            *(_address_values(self.address) if self.address else _BLANK_ADDRESS),
        ]


def _address_values(address: MailingAddress) -> list[str]:
    """An address as the accounts file spells it, in `ADDRESS_COLUMNS` order."""
    return [address.line1, address.line2, address.city, address.state, address.postal_code, address.country]


# --------------------------------------------------------------------------------------------
# Reference data. Every phone pattern below is checked against phonenumbers by the tests.


@dataclass(frozen=True, slots=True)
class _Place:
    jurisdiction: str
    timezone: str
    prefixes: tuple[str, ...]  # CN: mobile prefixes after +86; US: area codes
    weight: float
    state: str = ""  # two-letter US state, for the tests' geocoder check


# Mobile prefixes that phonenumbers' CN mobile pattern accepts with any 8 further digits.
_CN_MOBILE = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139",
    "150", "151", "152", "153", "155", "156", "157", "158", "159",
    "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "184", "185", "186", "187", "188", "189",
    "191", "195", "198", "199",
)  # fmt: skip

# Area codes wholly inside one state and one time zone (split-zone codes such as FL 850, TX 915
# or OR 541 are left out, so that the time zone of a number is never in doubt).
_US_PLACES: tuple[_Place, ...] = (
    # Overlay jurisdictions: the states with their own profile in arrears.jurisdictions.
    _Place("US-CA", "America/Los_Angeles", (
        "209", "213", "310", "323", "408", "415", "510", "530", "559", "562", "619", "626",
        "650", "661", "707", "714", "760", "805", "818", "831", "858", "909", "916", "925",
        "949", "951"), 10, "CA"),
    _Place("US-IA", "America/Chicago", ("319", "515", "563", "641", "712"), 4, "IA"),
    _Place("US-MA", "America/New_York", (
        "339", "351", "413", "508", "617", "774", "781", "857", "978"), 4, "MA"),
    _Place("US-WI", "America/Chicago", ("262", "414", "608", "715", "920"), 4, "WI"),
    # Everywhere else federal rules alone apply (jurisdiction "US"); weights roughly by population.
    _Place("US", "America/New_York", (
        "212", "315", "347", "516", "518", "585", "607", "631", "646", "716", "718", "845",
        "914", "917"), 3.0, "NY"),
    _Place("US", "America/New_York", (
        "305", "321", "352", "386", "407", "561", "727", "754", "772", "786", "813", "904",
        "941", "954"), 3.3, "FL"),
    _Place("US", "America/New_York", ("404", "470", "478", "678", "706", "770", "912"), 1.6, "GA"),
    _Place("US", "America/New_York", (
        "215", "267", "412", "484", "570", "610", "717", "724", "814"), 1.9, "PA"),
    _Place("US", "America/New_York", ("216", "330", "419", "440", "513", "614", "937"), 1.7, "OH"),
    _Place("US", "America/New_York", ("252", "336", "704", "828", "910", "919", "980"), 1.6, "NC"),
    _Place("US", "America/Chicago", (
        "217", "224", "309", "312", "618", "630", "708", "773", "815", "847"), 1.8, "IL"),
    _Place("US", "America/Chicago", (
        "210", "214", "254", "281", "361", "409", "469", "512", "682", "713", "737", "806",
        "817", "830", "832", "903", "936", "940", "956", "972", "979"), 4.5, "TX"),
    _Place("US", "America/Chicago", ("218", "320", "507", "612", "651", "763", "952"), 0.9, "MN"),
    _Place("US", "America/Denver", ("303", "719", "720", "970"), 0.9, "CO"),
    _Place("US", "America/Denver", ("385", "435", "801"), 0.5, "UT"),
    _Place("US", "America/Denver", ("505", "575"), 0.3, "NM"),
    _Place("US", "America/Phoenix", ("480", "520", "602", "623", "928"), 1.1, "AZ"),
    _Place("US", "America/Los_Angeles", ("206", "253", "360", "425", "509"), 1.2, "WA"),
    _Place("US", "America/Los_Angeles", ("702", "725", "775"), 0.5, "NV"),
    _Place("US", "America/Los_Angeles", ("503", "971"), 0.6, "OR"),
    _Place("US", "America/Anchorage", ("907",), 0.2, "AK"),
    _Place("US", "Pacific/Honolulu", ("808",), 0.3, "HI"),
)  # fmt: skip

# Roughly half the book is Chinese. Xinjiang borrowers keep Xinjiang time (Asia/Urumqi, UTC+6),
# which moves their 08:00-22:00 contact window two hours later in UTC.
_PLACES: tuple[_Place, ...] = (
    _Place("CN", "Asia/Shanghai", _CN_MOBILE, 47.5),
    _Place("CN", "Asia/Urumqi", _CN_MOBILE, 2.5),
    *_US_PLACES,
)
_PLACE_CUM = tuple(accumulate(p.weight for p in _PLACES))

# Exchanges (NXX) a US subscriber number may start with: N11 service codes, 555 (directory and
# fictional numbers) and the 950/958/959/976 special codes are left out.
_US_EXCHANGES = tuple(x for x in range(200, 1000) if x % 100 != 11 and x not in (555, 950, 958, 959, 976))

# Subscriber numbers come from an affine permutation of the borrower's index over half the
# number space (the other half serves alternate phones), so that distinct borrowers never share a
# number while the portfolio is smaller than the half space (CN 50,000,000; US 3,935,000).
_CN_HALF = 10**8 // 2
_US_HALF = len(_US_EXCHANGES) * 10_000 // 2

_CN_SURNAMES = (
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
)  # fmt: skip
_CN_GIVEN = (
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "霞", "平", "刚", "华", "辉", "玲", "鹏", "飞", "婷", "雪", "琳", "宇", "浩", "欣", "晨",
    "建", "国", "文", "红", "英", "秀", "志", "海", "佳", "子", "思", "梦", "俊", "嘉", "晓", "凯",
)  # fmt: skip
_UYGHUR_GIVEN = ("艾力", "阿依古丽", "买买提", "古丽娜尔", "艾尔肯", "热依拉", "阿卜杜拉", "努尔")
_UYGHUR_FAMILY = ("买买提", "吐尔逊", "艾买提", "阿不都", "热合曼", "依明", "卡德尔", "玉素甫")
_US_FIRST = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Christopher", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Betty", "Mark",
    "Sandra", "Donald", "Ashley", "Steven", "Kimberly", "Andrew", "Emily", "Joshua", "Donna",
    "Kevin", "Michelle", "Brian", "Carol", "Jose", "Maria", "Luis", "Ana", "Carlos", "Rosa",
    "Wei", "Mei", "Tuan", "Linh", "Jamal", "Aaliyah", "Darnell", "Keisha", "Priya", "Arjun",
)  # fmt: skip
_US_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "O'Brien", "Kowalski", "Patel", "Chen",
)  # fmt: skip

# World manufacturer identifiers of cars financed in each market.
_VIN_WMI_US = (
    "1FA", "1FT", "1G1", "1GC", "1HG", "1N4", "2HG", "2T1", "3VW", "4T1", "5YJ", "5NP", "JTD", "KMH",
)  # fmt: skip
_VIN_WMI_CN = ("LSV", "LFV", "LVS", "LGB", "LBV", "LHG", "LVG", "LRW", "LGX", "LB3", "LDC", "LFM")
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # ISO 3779: no I, O or Q
_VIN_VALUES = (
    dict(zip("ABCDEFGH", range(1, 9), strict=False))
    | dict(zip("JKLMN", range(1, 6), strict=False))
    | {"P": 7, "R": 9}
)
_VIN_VALUES |= dict(zip("STUVWXYZ", range(2, 10), strict=False)) | {str(d): d for d in range(10)}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_YEAR = "ABCDEFGHJKLMNPRSTVWXY123456789"  # position 10: model years 2010, 2011, ... (30-year cycle)

# Holds carried in the file, per jurisdiction family, as (hold, probability). A few percent in
# total. SCRA (military) is a US protection only.
_HOLDS_BORROWER: dict[str, tuple[tuple[Hold, float], ...]] = {
    "CN": ((Hold.BANKRUPTCY, 0.003), (Hold.SMS_OPT_OUT, 0.012), (Hold.CEASE_CONTACT, 0.004)),
    "US": (
        (Hold.BANKRUPTCY, 0.006), (Hold.MILITARY, 0.005), (Hold.SMS_OPT_OUT, 0.015),
        (Hold.CEASE_CONTACT, 0.005),
    ),
}  # fmt: skip
_DISPUTE_RATE = 0.01  # a dispute is about one loan, not the borrower

# Segment proportions (self_cure, hardship, strategic, distressed).
_SEGMENTS = (Segment.SELF_CURE, Segment.HARDSHIP, Segment.STRATEGIC, Segment.DISTRESSED)
_SEGMENT_CUM = tuple(accumulate((0.50, 0.20, 0.15, 0.15)))

# Delinquency by segment: the share still current, then weights of DPD ranges. Borrowers able and
# willing to pay mostly fall only a few days behind; the unwilling and the unable sink deeper.
_DPD_RANGES = ((1, 15), (16, 30), (31, 60), (61, 90), (91, 120), (121, 200))
_DPD_BY_SEGMENT: dict[Segment, tuple[float, tuple[float, ...]]] = {
    Segment.SELF_CURE: (0.14, tuple(accumulate((45, 25, 15, 8, 4, 3)))),
    Segment.HARDSHIP: (0.06, tuple(accumulate((25, 20, 25, 15, 8, 7)))),
    Segment.STRATEGIC: (0.06, tuple(accumulate((20, 15, 20, 20, 12, 13)))),
    Segment.DISTRESSED: (0.04, tuple(accumulate((15, 10, 20, 20, 15, 20)))),
}

# Mailing addresses: cities with the first digits of their postal codes, in each US state the
# places above use (so that an address's state is the one its phone number and jurisdiction
# imply) and in China (Xinjiang for borrowers on Xinjiang time). A few borrowers have none on
# file, as a servicing file sometimes has none: their right-to-cure letters are written blocked.
_US_CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "CA": (("Los Angeles", "900"), ("San Francisco", "941"), ("Sacramento", "958"), ("San Diego", "921")),
    "IA": (("Des Moines", "503"), ("Cedar Rapids", "524"), ("Davenport", "528")),
    "MA": (("Boston", "021"), ("Worcester", "016"), ("Springfield", "011")),
    "WI": (("Milwaukee", "532"), ("Madison", "537"), ("Green Bay", "543")),
    "NY": (("New York", "100"), ("Buffalo", "142"), ("Albany", "122")),
    "FL": (("Miami", "331"), ("Orlando", "328"), ("Tampa", "336")),
    "GA": (("Atlanta", "303"), ("Savannah", "314")),
    "PA": (("Philadelphia", "191"), ("Pittsburgh", "152")),
    "OH": (("Columbus", "432"), ("Cleveland", "441")),
    "NC": (("Charlotte", "282"), ("Raleigh", "276")),
    "IL": (("Chicago", "606"), ("Springfield", "627")),
    "TX": (("Houston", "770"), ("Dallas", "752"), ("Austin", "787"), ("San Antonio", "782")),
    "MN": (("Minneapolis", "554"), ("Saint Paul", "551")),
    "CO": (("Denver", "802"), ("Colorado Springs", "809")),
    "UT": (("Salt Lake City", "841"),),
    "NM": (("Albuquerque", "871"),),
    "AZ": (("Phoenix", "850"), ("Tucson", "857")),
    "WA": (("Seattle", "981"), ("Spokane", "992")),
    "NV": (("Las Vegas", "891"), ("Reno", "895")),
    "OR": (("Portland", "972"),),
    "AK": (("Anchorage", "995"),),
    "HI": (("Honolulu", "968"),),
}
_US_STREETS = (
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Park Blvd", "Elm St", "Washington Ave",
    "Lake Rd", "Hill St", "Pine St", "Sunset Blvd", "River Rd", "Church St", "Highland Ave",
)  # fmt: skip
# (province, city, district, postal code); the four municipalities have no province.
_CN_CITIES = (
    ("", "上海市", "浦东新区", "200120"), ("", "北京市", "朝阳区", "100020"),
    ("广东省", "广州市", "天河区", "510630"), ("广东省", "深圳市", "南山区", "518052"),
    ("浙江省", "杭州市", "西湖区", "310012"), ("江苏省", "南京市", "鼓楼区", "210008"),
    ("四川省", "成都市", "武侯区", "610041"), ("湖北省", "武汉市", "武昌区", "430061"),
    ("", "重庆市", "渝中区", "400010"), ("山东省", "济南市", "历下区", "250011"),
)  # fmt: skip
_XJ_CITIES = (
    ("新疆维吾尔自治区", "乌鲁木齐市", "天山区", "830002"),
    ("新疆维吾尔自治区", "喀什市", "人民东路街道", "844000"),
)
_CN_STREETS = ("人民路", "中山路", "解放路", "建设路", "和平路", "新华路", "长江路", "胜利路")
_NO_ADDRESS_RATE = 0.01

_UNREACHABLE_RATE = 0.03
_ALT_PHONE_RATE = 0.25
_SHARED_BORROWER_RATE = 0.02  # a second car loan of the previous account's borrower

_CN_TERMS = (12, 24, 36, 36, 36, 60, 60)
_US_TERMS = (48, 60, 60, 72, 72, 72, 84)


@dataclass(frozen=True, slots=True)
class _Borrower:
    borrower_id: str
    name: str
    phone: str
    alt_phone: str | None
    place: _Place
    segment: Segment
    ability: float
    willingness: float
    reachable: bool
    holds: tuple[Hold, ...]
    address: MailingAddress | None


# --------------------------------------------------------------------------------------------
# Portfolio


def generate_portfolio(
    n: int, *, seed: int, business_date: date, addresses: bool = True
) -> Iterator[PortfolioRow]:
    """Stream `n` simulated accounts, the same ones for the same seed and business date.

    The argument check runs at once; the rows are made one at a time as they are consumed, so
    `islice(generate_portfolio(10**9, ...), 10)` costs ten rows.

    The mailing addresses come from a random stream of their own: without them (`addresses=False`,
    the portfolio the performance figures were first measured on) every other value is the same.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    return _portfolio(n, seed, business_date, addresses)


def _portfolio(n: int, seed: int, business_date: date, addresses: bool) -> Iterator[PortfolioRow]:
    rng = random.Random(f"arrears.simulate.portfolio:{seed}")
    mail = random.Random(f"arrears.simulate.address:{seed}") if addresses else None
    r = rng.random
    numbering = {
        "CN": _Numbering(_CN_HALF, _affine(rng, _CN_HALF), _affine(rng, _CN_HALF), _cn_number),
        "US": _Numbering(_US_HALF, _affine(rng, _US_HALF), _affine(rng, _US_HALF), _us_number),
    }
    serials = _affine(rng, 1_000_000)
    borrower: _Borrower | None = None
    for i in range(n):
        if borrower is None or r() >= _SHARED_BORROWER_RATE:
            place = _PLACES[bisect(_PLACE_CUM, r() * _PLACE_CUM[-1])]
            borrower = _new_borrower(rng, i, place, numbering[place.jurisdiction[:2]], mail)
        yield _account(rng, i, borrower, business_date, (serials[0] * i + serials[1]) % 1_000_000)


def _affine(rng: random.Random, size: int) -> tuple[int, int]:
    """A seeded permutation x -> (a*x + b) mod size: injective because gcd(a, size) is 1."""
    while True:
        mul = rng.randrange(size // 3, size)
        if math.gcd(mul, size) == 1:
            return mul, rng.randrange(size)


@dataclass(frozen=True, slots=True)
class _Numbering:
    """Unique subscriber numbers: primaries from the lower half of the space, alternates above."""

    half: int
    primary: tuple[int, int]
    alternate: tuple[int, int]
    spell: Callable[[random.Random, _Place, int], str]

    def phone(self, rng: random.Random, place: _Place, i: int) -> str:
        mul, add = self.primary
        return self.spell(rng, place, (mul * i + add) % self.half)

    def alt_phone(self, rng: random.Random, place: _Place, i: int) -> str:
        mul, add = self.alternate
        return self.spell(rng, place, self.half + (mul * i + add) % self.half)


def _cn_number(rng: random.Random, place: _Place, local: int) -> str:
    return f"+86{_pick(rng, place.prefixes)}{local:08d}"


def _us_number(rng: random.Random, place: _Place, local: int) -> str:
    return f"+1{_pick(rng, place.prefixes)}{_US_EXCHANGES[local // 10_000]}{local % 10_000:04d}"


def _pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    # `rng.choice` costs three times as much, and this runs several times per row.
    return seq[int(rng.random() * len(seq))]


def _new_borrower(
    rng: random.Random, i: int, place: _Place, numbering: _Numbering, mail: random.Random | None
) -> _Borrower:
    r = rng.random
    segment = _SEGMENTS[bisect(_SEGMENT_CUM, r() * _SEGMENT_CUM[-1])]
    able = segment in (Segment.SELF_CURE, Segment.STRATEGIC)
    willing = segment in (Segment.SELF_CURE, Segment.HARDSHIP)
    # Each score spreads over its own half of 0..1, rounded for readability.
    ability = round(0.5 + 0.5 * r(), 3) if able else min(round(0.5 * r(), 3), 0.499)
    willingness = round(0.5 + 0.5 * r(), 3) if willing else min(round(0.5 * r(), 3), 0.499)
    reachable = r() >= _UNREACHABLE_RATE
    # A dead primary number with a live alternate would not be unreachable: give those none.
    has_alt = reachable and r() < _ALT_PHONE_RATE
    holds = tuple(h for h, p in _HOLDS_BORROWER[place.jurisdiction[:2]] if r() < p)
    return _Borrower(
        borrower_id=f"B-{i + 1:07d}",
        name=_name(rng, place),
        phone=numbering.phone(rng, place, i),
        alt_phone=numbering.alt_phone(rng, place, i) if has_alt else None,
        place=place,
        segment=segment,
        ability=ability,
        willingness=willingness,
        reachable=reachable,
        holds=holds,
        address=_address(mail, place) if mail is not None else None,
    )


def _address(rng: random.Random, place: _Place) -> MailingAddress | None:
    r = rng.random
    if r() < _NO_ADDRESS_RATE:
        return None
    if place.jurisdiction == "CN":
        cities = _XJ_CITIES if place.timezone == "Asia/Urumqi" else _CN_CITIES
        province, city, district, postal = cities[int(r() * len(cities))]
        line1 = f"{district}{_pick(rng, _CN_STREETS)}{1 + int(r() * 300)}号"
        line2 = f"{1 + int(r() * 20)}栋{1 + int(r() * 30)}{1 + int(r() * 4):02d}室"
        return MailingAddress(line1, line2, city, province, postal, "CN")
    city, zip3 = _pick(rng, _US_CITIES[place.state])
    line1 = f"{1 + int(r() * 9_899)} {_pick(rng, _US_STREETS)}"
    line2 = f"Apt {1 + int(r() * 40)}" if r() < 0.3 else ""
    return MailingAddress(line1, line2, city, place.state, f"{zip3}{int(r() * 100):02d}", "US")


def _name(rng: random.Random, place: _Place) -> str:
    if place.jurisdiction != "CN":
        return f"{_pick(rng, _US_FIRST)} {_pick(rng, _US_LAST)}"
    if place.timezone == "Asia/Urumqi" and rng.random() < 0.6:
        return f"{_pick(rng, _UYGHUR_GIVEN)}·{_pick(rng, _UYGHUR_FAMILY)}"
    given = _pick(rng, _CN_GIVEN) + (_pick(rng, _CN_GIVEN) if rng.random() < 0.7 else "")
    return _pick(rng, _CN_SURNAMES) + given


def _account(rng: random.Random, i: int, b: _Borrower, business_date: date, serial: int) -> PortfolioRow:
    r = rng.random
    cn = b.place.jurisdiction == "CN"

    current_share, dpd_cum = _DPD_BY_SEGMENT[b.segment]
    if r() < current_share:
        dpd = 0
    else:
        lo, hi = _DPD_RANGES[bisect(dpd_cum, r() * dpd_cum[-1])]
        dpd = lo + int(r() * (hi - lo + 1))
    # Monthly instalments: the oldest one unpaid, plus each later one whose due date has passed.
    missed = 0 if dpd == 0 else 1 + (dpd - 1) // 30

    # The loan: price, down payment, term and rate, amortised monthly.
    if cn:
        price = 60_000 * math.exp(1.4 * r())  # CNY 60k .. 243k, weighted to the cheaper cars
        term = _CN_TERMS[int(r() * len(_CN_TERMS))]
        apr_bp = 299 + int(900 * r() ** 1.5)  # 2.99 % .. 11.99 %
    else:
        price = 12_000 * math.exp(1.6 * r())  # USD 12k .. 59k
        term = _US_TERMS[int(r() * len(_US_TERMS))]
        # Unable borrowers were subprime at origination more often than not.
        risk = r() ** (0.6 if b.ability < DEFAULT_POLICY.segmentation.ability_threshold else 1.8)
        apr_bp = 399 + int(2000 * risk)  # 3.99 % .. 23.99 %
    principal = price * (0.7 + 0.25 * r())
    rate = apr_bp / 120_000
    growth = (1 + rate) ** term
    installment_c = round(100 * principal * rate * growth / (growth - 1))
    # Payments made so far: leave at least one more than those missed, so that the outstanding
    # principal covers the missed instalments.
    paid = int(r() * (term - missed))
    balance_c = round(100 * principal * (growth - (1 + rate) ** paid) / (growth - 1))
    past_due_c = missed * installment_c
    balance_c = max(balance_c, past_due_c)
    age_months = paid + missed
    vehicle_c = round(100 * price * 0.82 * 0.985**age_months * (0.9 + 0.2 * r()))

    holds = b.holds + ((Hold.DISPUTE,) if r() < _DISPUTE_RATE else ())
    return PortfolioRow(
        account_id=f"A-{i + 1:07d}",
        borrower_id=b.borrower_id,
        borrower_name=b.name,
        phone=b.phone,
        alt_phone=b.alt_phone,
        timezone=b.place.timezone,
        jurisdiction=b.place.jurisdiction,
        currency="CNY" if cn else "USD",
        balance=_cents(balance_c),
        installment_amount=_cents(installment_c),
        past_due_amount=_cents(past_due_c),
        oldest_due_date=business_date - timedelta(days=dpd) if dpd else None,
        vin=_vin(rng, serial, cn, business_date.year - age_months // 12 - int(r() * 3)),
        vehicle_value=_cents(vehicle_c),
        apr=_cents(apr_bp),
        flags=holds,
        ability=b.ability,
        willingness=b.willingness,
        reachable=b.reachable,
        address=b.address,
    )


def _cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _vin(rng: random.Random, serial: int, cn: bool, model_year: int) -> str:
    """A 17-character VIN with a valid ISO 3779 / FMVSS 565 check digit (position 9)."""
    r = rng.random
    models = _VIN_MODELS_CN if cn else _VIN_MODELS_US
    head, head_sum = models[int(r() * len(models))]
    year = _VIN_YEAR[(model_year - 2010) % 30]
    plant = _VIN_CHARS[int(r() * 23)]  # a letter
    total = head_sum + 9 * _VIN_VALUES[year] + 8 * _VIN_VALUES[plant]
    s = serial
    for weight in (2, 3, 4, 5, 6, 7):  # positions 17 back to 12
        s, digit = divmod(s, 10)
        total += weight * digit
    check = total % 11
    return f"{head}{'X' if check == 10 else check}{year}{plant}{serial:06d}"


def _vin_models(wmis: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """A few vehicle descriptor sections per manufacturer, with their share of the check sum.

    A maker builds a handful of models, so VINs of one maker share their first eight characters;
    the pool is fixed (not seeded) like the makers themselves.
    """
    models = []
    for wmi in wmis:
        rng = random.Random(f"arrears.simulate.vin-models:{wmi}")
        for _ in range(6):
            head = wmi + "".join(rng.choice(_VIN_CHARS) for _ in range(5))
            models.append((head, sum(_VIN_VALUES[ch] * w for ch, w in zip(head, _VIN_WEIGHTS, strict=False))))
    return tuple(models)


_VIN_MODELS_US = _vin_models(_VIN_WMI_US)
_VIN_MODELS_CN = _vin_models(_VIN_WMI_CN)
