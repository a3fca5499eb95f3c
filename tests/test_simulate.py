"""The portfolio simulator: determinism, realism of the rows, the files and simulated payments."""

import csv
import itertools
import json
import time as clock
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import geocoder
from phonenumbers import timezone as phone_zones

from arrears.jurisdictions import KNOWN_JURISDICTIONS
from arrears.simulate import (
    ACCOUNT_COLUMNS,
    PAYMENT_COLUMNS,
    AccountState,
    PortfolioRow,
    generate_portfolio,
    portfolio,
    simulate_payments,
    write_accounts_file,
    write_payments_file,
)
from arrears.vocabulary import Hold, Segment

BUSINESS_DATE = date(2026, 3, 2)
SEED = 20260302

ZONES = {
    "CN": {"Asia/Shanghai", "Asia/Urumqi"},
    "US-CA": {"America/Los_Angeles"},
    "US-IA": {"America/Chicago"},
    "US-MA": {"America/New_York"},
    "US-WI": {"America/Chicago"},
    "US": {
        "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
        "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu",
    },
}  # fmt: skip
STATE_NAMES = {
    "AK": "Alaska", "AZ": "Arizona", "CA": "California", "CO": "Colorado", "FL": "Florida",
    "GA": "Georgia", "HI": "Hawaii", "IA": "Iowa", "IL": "Illinois", "MA": "Massachusetts",
    "MN": "Minnesota", "NC": "North Carolina", "NM": "New Mexico", "NV": "Nevada", "NY": "New York",
    "OH": "Ohio", "OR": "Oregon", "PA": "Pennsylvania", "TX": "Texas", "UT": "Utah",
    "WA": "Washington State", "WI": "Wisconsin",
}  # fmt: skip
MONEY_FIELDS = ("balance", "installment_amount", "past_due_amount", "vehicle_value", "apr")
VIN_VALUES = {
    **{c: v for v, c in enumerate("0123456789")},
    **dict(zip("ABCDEFGH", range(1, 9), strict=False)),
}
VIN_VALUES |= dict(zip("JKLMN", range(1, 6), strict=False)) | {"P": 7, "R": 9}
VIN_VALUES |= dict(zip("STUVWXYZ", range(2, 10), strict=False))


@pytest.fixture(scope="module")
def rows() -> list[PortfolioRow]:
    return list(generate_portfolio(2_000, seed=SEED, business_date=BUSINESS_DATE))


def same_clock(zone_a: str, zone_b: str) -> bool:
    """Two zones keep the same local time in winter and in summer (Juneau and Anchorage do)."""
    instants = (
        datetime(2026, 1, 15, 12, tzinfo=ZoneInfo("UTC")),
        datetime(2026, 7, 15, 12, tzinfo=ZoneInfo("UTC")),
    )
    return all(
        t.astimezone(ZoneInfo(zone_a)).utcoffset() == t.astimezone(ZoneInfo(zone_b)).utcoffset()
        for t in instants
    )


def vin_check_digit(vin: str) -> str:
    weights = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
    check = sum(VIN_VALUES[c] * w for c, w in zip(vin, weights, strict=False)) % 11
    return "X" if check == 10 else str(check)


# --- the portfolio


def test_same_seed_same_rows_and_prefix_stable() -> None:
    """The same seed and business date give the same rows; a smaller portfolio is a prefix of a larger."""
    a = list(generate_portfolio(500, seed=7, business_date=BUSINESS_DATE))
    b = list(generate_portfolio(800, seed=7, business_date=BUSINESS_DATE))
    assert a == b[:500]
    assert a != list(generate_portfolio(500, seed=8, business_date=BUSINESS_DATE))


def test_generator_is_lazy() -> None:
    """A billion-account portfolio yields its first rows at once, because rows are made only as consumed."""
    started = clock.perf_counter()
    first = list(itertools.islice(generate_portfolio(10**9, seed=SEED, business_date=BUSINESS_DATE), 10))
    assert len(first) == 10
    assert clock.perf_counter() - started < 1.0


def test_negative_size_is_refused_at_once() -> None:
    """A negative size fails when the portfolio is asked for, not later when it is first iterated."""
    with pytest.raises(ValueError):
        generate_portfolio(-1, seed=SEED, business_date=BUSINESS_DATE)


def test_every_phone_is_valid_e164_for_its_region(rows: list[PortfolioRow]) -> None:
    """Every phone and alternate phone is valid E.164 of the jurisdiction's country (CN: mobiles)."""
    for row in rows:
        for number in filter(None, (row.phone, row.alt_phone)):
            parsed = phonenumbers.parse(number)
            assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == number
            assert phonenumbers.is_valid_number(parsed), number
            assert phonenumbers.region_code_for_number(parsed) == row.jurisdiction[:2], number
            if row.jurisdiction == "CN":
                assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE, number


def test_phone_patterns_are_valid_in_their_state_and_zone() -> None:
    """Every prefix and area code drawn from gives valid numbers in the place's state and time zone."""
    exchanges = portfolio._US_EXCHANGES
    for place in portfolio._PLACES:
        for prefix in place.prefixes:
            if place.jurisdiction == "CN":
                samples = [f"+86{prefix}{tail}" for tail in ("00000000", "50505050", "99999999")]
            else:
                picks = (exchanges[0], exchanges[-1], *exchanges[7 :: len(exchanges) // 12])
                samples = [f"+1{prefix}{x}{(x * 37) % 10_000:04d}" for x in picks]
            for number in samples:
                parsed = phonenumbers.parse(number)
                assert phonenumbers.is_valid_number(parsed), number
                if place.jurisdiction == "CN":
                    continue
                zones = phone_zones.time_zones_for_number(parsed)
                assert any(same_clock(place.timezone, z) for z in zones), (number, place.timezone, zones)
                where = geocoder.description_for_number(parsed, "en")
                assert where == STATE_NAMES[place.state] or where.endswith(f", {place.state}"), (
                    number,
                    where,
                )


def test_time_zone_matches_jurisdiction_and_phone(rows: list[PortfolioRow]) -> None:
    """The zone is an IANA zone of the jurisdiction and, for US numbers, keeps the area code's clock."""
    assert {row.jurisdiction for row in rows} == set(ZONES)
    assert {row.jurisdiction for row in rows} <= KNOWN_JURISDICTIONS
    for row in rows:
        ZoneInfo(row.timezone)
        assert row.timezone in ZONES[row.jurisdiction], row
        assert row.currency == ("CNY" if row.jurisdiction == "CN" else "USD")
        if row.jurisdiction != "CN":
            zones = phone_zones.time_zones_for_number(phonenumbers.parse(row.phone))
            assert any(same_clock(row.timezone, z) for z in zones), (row.phone, row.timezone, zones)


def test_jurisdiction_and_zone_mix(rows: list[PortfolioRow]) -> None:
    """About half the accounts are Chinese, a few in Xinjiang time; the US ones span several zones."""
    by_jurisdiction = Counter(row.jurisdiction for row in rows)
    assert 0.4 < by_jurisdiction["CN"] / len(rows) < 0.6
    zones = Counter(row.timezone for row in rows)
    assert 0 < zones["Asia/Urumqi"] < zones["Asia/Shanghai"] / 5
    assert len([z for z in zones if z.startswith(("America/", "Pacific/"))]) >= 5


def test_past_due_is_whole_instalments_within_balance(rows: list[PortfolioRow]) -> None:
    """Past due is a whole number of instalments, never more than the balance, and money has two decimals."""
    for row in rows:
        assert row.installment_amount > 0
        assert 0 <= row.past_due_amount <= row.balance
        assert row.past_due_amount % row.installment_amount == 0, row
        for name in MONEY_FIELDS:
            value = getattr(row, name)
            assert isinstance(value, Decimal) and value.as_tuple().exponent == -2, (name, value)


def test_oldest_due_date_empty_exactly_when_current(rows: list[PortfolioRow]) -> None:
    """The oldest due date is empty iff nothing is past due, else 1 to 200 days before the business date."""
    for row in rows:
        assert (row.oldest_due_date is None) == (row.past_due_amount == 0), row
        dpd = row.days_past_due(BUSINESS_DATE)
        assert 0 <= dpd <= 200
        if row.oldest_due_date is not None:
            assert dpd >= 1
            assert row.past_due_amount == row.installment_amount * (1 + (dpd - 1) // 30)


def test_days_past_due_weighted_to_early_buckets(rows: list[PortfolioRow]) -> None:
    """Delinquency spans 0 to 200 days, each 30-day bucket up to 120 days smaller than the one before."""
    dpd = [row.days_past_due(BUSINESS_DATE) for row in rows]
    buckets = Counter(min((d - 1) // 30, 4) if d else -1 for d in dpd)
    assert buckets[-1] > 0  # some current accounts
    assert buckets[0] > buckets[1] > buckets[2] > buckets[3] > 0
    assert max(dpd) > 150


def test_all_four_behavioural_segments_present(rows: list[PortfolioRow]) -> None:
    """Self-cure, hardship, strategic and distressed borrowers all appear, about 50/20/15/15."""
    segments = Counter(replace(row, reachable=True).segment for row in rows)
    shares = {s: segments[s] / len(rows) for s in segments}
    assert shares[Segment.SELF_CURE] == pytest.approx(0.50, abs=0.06)
    assert shares[Segment.HARDSHIP] == pytest.approx(0.20, abs=0.05)
    assert shares[Segment.STRATEGIC] == pytest.approx(0.15, abs=0.05)
    assert shares[Segment.DISTRESSED] == pytest.approx(0.15, abs=0.05)
    assert all(0 <= row.ability <= 1 and 0 <= row.willingness <= 1 for row in rows)


def test_some_contacts_unreachable_but_valid_looking(rows: list[PortfolioRow]) -> None:
    """A few percent of borrowers are unreachable: flagged, without alternate, phone still valid-looking."""
    dead = [row for row in rows if not row.reachable]
    assert 0.005 < len(dead) / len(rows) < 0.08
    for row in dead:
        assert row.segment is Segment.UNREACHABLE
        assert row.alt_phone is None
        assert phonenumbers.is_valid_number(phonenumbers.parse(row.phone))
    assert any(row.alt_phone for row in rows)


def test_holds_are_rare_and_known(rows: list[PortfolioRow]) -> None:
    """Holds are known hold names on a few percent of accounts; SCRA military holds only in the US."""
    flagged = [row for row in rows if row.flags]
    assert 0.005 < len(flagged) / len(rows) < 0.08
    for row in flagged:
        assert all(isinstance(h, Hold) for h in row.flags)
        assert len(set(row.flags)) == len(row.flags)
        if Hold.MILITARY in row.flags:
            assert row.jurisdiction.startswith("US")


def test_borrowers_keep_one_identity_and_own_their_numbers(rows: list[PortfolioRow]) -> None:
    """One borrower's accounts share name, phones and place; distinct borrowers never share a number."""
    identity: dict[str, tuple[object, ...]] = {}
    owner: dict[str, str] = {}
    for row in rows:
        me = (row.borrower_name, row.phone, row.alt_phone, row.timezone, row.jurisdiction, row.reachable)
        assert identity.setdefault(row.borrower_id, me) == me
        for number in filter(None, (row.phone, row.alt_phone)):
            assert owner.setdefault(number, row.borrower_id) == row.borrower_id, number
        assert row.alt_phone != row.phone
    assert len({row.account_id for row in rows}) == len(rows)
    assert len(identity) < len(rows)  # some borrowers hold two loans


def test_most_borrowers_have_a_mailing_address_in_their_state(rows: list[PortfolioRow]) -> None:
    """About 1% of borrowers have no address on file; the others have one in the country of their
    jurisdiction, a US one in the state its jurisdiction and phone number imply (the overlay
    states' right-to-cure letters go there), and every account of a borrower the same one."""
    missing = sum(r.address is None for r in rows)
    assert 0 < missing < len(rows) * 0.03
    by_borrower: dict[str, object] = {}
    for r in rows:
        assert by_borrower.setdefault(r.borrower_id, r.address) == r.address
        if r.address is None:
            continue
        assert r.address.country == r.jurisdiction[:2]
        if r.address.country == "US":
            state = r.address.state
            where = geocoder.description_for_number(phonenumbers.parse(r.phone), "en")
            assert where == STATE_NAMES[state] or where.endswith(f", {state}"), (r.phone, r.address)
            assert r.jurisdiction in ("US", f"US-{state}")
            assert len(r.address.postal_code) == 5
        else:  # Xinjiang's postal codes begin 83 and 84
            assert len(r.address.postal_code) == 6
            assert (r.address.postal_code[:2] in ("83", "84")) == (r.timezone == "Asia/Urumqi")


def test_addresses_leave_every_other_value_alone() -> None:
    """Addresses come from a stream of their own: without them the rows are the same in every other
    value, so the portfolio the performance figures were measured on can still be generated."""
    with_ = list(generate_portfolio(3_000, seed=SEED, business_date=BUSINESS_DATE))
    without = list(generate_portfolio(3_000, seed=SEED, business_date=BUSINESS_DATE, addresses=False))
    assert all(r.address is None for r in without)
    assert [replace(r, address=None) for r in with_] == without


def test_vins_are_well_formed(rows: list[PortfolioRow]) -> None:
    """Every VIN has 17 characters without I, O or Q, a correct check digit, and a maker of its market."""
    for row in rows:
        assert len(row.vin) == 17 and set(row.vin) <= set("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), row.vin
        assert row.vin[8] == vin_check_digit(row.vin), row.vin
        assert row.vin.startswith("L") == (row.jurisdiction == "CN"), row.vin
    assert len({row.vin for row in rows}) == len(rows)


# --- files


def test_csv_file_has_exactly_the_design_columns(tmp_path: Path) -> None:
    """A 1,000-row CSV accounts file re-reads with exactly the DESIGN §8 columns and the values written."""
    source = list(generate_portfolio(1_000, seed=SEED, business_date=BUSINESS_DATE))
    path = tmp_path / "accounts.csv"
    assert write_accounts_file(iter(source), path) == 1_000
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == ACCOUNT_COLUMNS
        read = list(reader)
    assert len(read) == 1_000
    assert set(ACCOUNT_COLUMNS) == {
        "account_id", "borrower_id", "borrower_name", "phone", "alt_phone", "timezone", "jurisdiction",
        "currency", "balance", "installment_amount", "past_due_amount", "oldest_due_date", "vin",
        "vehicle_value", "apr", "flags",
        "address_line1", "address_line2", "city", "state", "postal_code", "country",
    }  # fmt: skip
    for row, line in zip(source, read, strict=False):
        assert line["account_id"] == row.account_id
        assert line["borrower_name"] == row.borrower_name
        assert Decimal(line["balance"]) == row.balance
        assert line["oldest_due_date"] == (row.oldest_due_date.isoformat() if row.oldest_due_date else "")
        assert line["flags"] == "|".join(row.flags)
        assert line["alt_phone"] == (row.alt_phone or "")
        assert line["city"] == (row.address.city if row.address else "")


def test_jsonl_file_has_exactly_the_design_columns(tmp_path: Path) -> None:
    """A JSON Lines accounts file has one object per row, the DESIGN §8 columns as strings like the CSV."""
    source = list(generate_portfolio(1_000, seed=SEED, business_date=BUSINESS_DATE))
    path = tmp_path / "accounts.jsonl"
    assert write_accounts_file(source, path) == 1_000
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1_000
    for row, line in zip(source, lines, strict=False):
        obj = json.loads(line)
        assert tuple(obj) == ACCOUNT_COLUMNS
        assert all(isinstance(v, str) for v in obj.values())
        assert obj == dict(zip(ACCOUNT_COLUMNS, row.file_values(), strict=False))


def test_payments_file_has_the_design_columns(tmp_path: Path) -> None:
    """A payments file has the DESIGN §8 columns, with received_at in ISO 8601 with its offset."""
    states = [
        AccountState.from_row(r, business_date=BUSINESS_DATE)
        for r in generate_portfolio(1_000, seed=SEED, business_date=BUSINESS_DATE)
    ]
    payments = list(simulate_payments(states, day=BUSINESS_DATE, seed=SEED))
    path = tmp_path / "payments.csv"
    assert write_payments_file(payments, path) == len(payments) > 0
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == PAYMENT_COLUMNS
        for line in reader:
            assert datetime.fromisoformat(line["received_at"]).utcoffset() is not None


# --- payments


@pytest.fixture(scope="module")
def states(rows: list[PortfolioRow]) -> list[AccountState]:
    return [AccountState.from_row(row, business_date=BUSINESS_DATE) for row in rows]


def test_payments_deterministic_and_independent_of_order(states: list[AccountState]) -> None:
    """The same seed and day give the same payments whatever the order or grouping of the accounts."""
    whole = list(simulate_payments(states, day=BUSINESS_DATE, seed=1))
    assert whole == list(simulate_payments(states, day=BUSINESS_DATE, seed=1))
    halves = list(simulate_payments(states[1::2], day=BUSINESS_DATE, seed=1)) + list(
        simulate_payments(reversed(states[::2]), day=BUSINESS_DATE, seed=1)
    )
    assert sorted(whole, key=lambda p: p.account_id) == sorted(halves, key=lambda p: p.account_id)
    assert whole != list(simulate_payments(states, day=BUSINESS_DATE, seed=2))


def test_payments_are_sane(states: list[AccountState]) -> None:
    """Only delinquent accounts pay, at most the past due, in local daytime, under an (account, day) id."""
    by_id = {s.account_id: s for s in states}
    seen: set[str] = set()
    for k in range(10):
        day = BUSINESS_DATE + timedelta(days=k)
        for p in simulate_payments(states, day=day, seed=SEED):
            account = by_id[p.account_id]
            assert account.past_due_amount > 0
            assert Decimal("0.01") <= p.amount <= account.past_due_amount
            assert p.amount.as_tuple().exponent == -2
            local = p.received_at.astimezone(ZoneInfo(account.timezone))
            assert p.received_at.utcoffset() == local.utcoffset()
            assert local.date() == day and 8 <= local.hour < 21, p
            assert p.account_id in p.payment_id and day.strftime("%Y%m%d") in p.payment_id
            assert p.payment_id not in seen
            seen.add(p.payment_id)


def test_payment_behaviour_follows_segments(states: list[AccountState]) -> None:
    """Over a month self-curers cure, hardship pays in part, strategic rarely, distressed almost never."""
    current = {s.account_id: s for s in states if s.past_due_amount > 0}
    start = dict(current)
    paid: Counter[Segment] = Counter()
    partial: Counter[Segment] = Counter()
    for k in range(30):
        for p in simulate_payments(list(current.values()), day=BUSINESS_DATE + timedelta(days=k), seed=SEED):
            s = current[p.account_id]
            paid[s.segment] += 1
            if p.amount < s.past_due_amount:
                partial[s.segment] += 1
            current[p.account_id] = replace(s, past_due_amount=s.past_due_amount - p.amount)
        current = {
            a: replace(s, days_past_due=s.days_past_due + 1) for a, s in current.items() if s.past_due_amount
        }
    cured = Counter(s.segment for a, s in start.items() if a not in current)
    total = Counter(s.segment for s in start.values())
    rate = {seg: cured[seg] / total[seg] for seg in total}
    assert rate[Segment.SELF_CURE] > 0.7
    assert rate[Segment.STRATEGIC] < 0.35
    assert rate[Segment.DISTRESSED] < 0.05
    assert rate[Segment.SELF_CURE] > rate[Segment.HARDSHIP] > rate[Segment.DISTRESSED]
    assert partial[Segment.HARDSHIP] > 0 and partial[Segment.SELF_CURE] == 0
    per_account = {seg: paid[seg] / total[seg] for seg in total}
    assert per_account[Segment.HARDSHIP] > per_account[Segment.STRATEGIC]


def test_long_account_ids_still_give_short_payment_ids() -> None:
    """A payment id fits its 64-character column even for a 64-character account id, and stays distinct."""
    state = AccountState("X" * 64, Decimal("100.00"), Decimal("100.00"), 0.9, 0.9, "Asia/Shanghai", 3)
    other = replace(state, account_id="Y" * 64)
    ids = set()
    for k in range(120):
        for p in simulate_payments([state, other], day=BUSINESS_DATE + timedelta(days=k), seed=SEED):
            assert len(p.payment_id) <= 64
            ids.add(p.payment_id)
    assert len(ids) >= 2
