"""Borrowers' words and the import's known gaps: our own footer echoed back, a hardship told with
STOP, what an envelope may show, fixed-offset time zones, a UTF-8 file read in another encoding,
and the borrower id an account id too long makes."""

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from arrears.compliance.content import screen_address
from arrears.importing import AccountRow, Kind, UnreadableFile, open_source, parse_account
from arrears.inbound import InboundKind, classify
from arrears.models import Account, AccountHold, AuditEvent, Message
from arrears.policy import load_policy
from arrears.simulate.portfolio import generate_portfolio
from arrears.storage import get_engine, migrate
from arrears.storage.importer import run_import
from tests.factories import account_record, write_csv

account = Account.__table__  # type: ignore[attr-defined]
hold = AccountHold.__table__  # type: ignore[attr-defined]
audit = AuditEvent.__table__  # type: ignore[attr-defined]
message = Message.__table__  # type: ignore[attr-defined]

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PHONE = "+12133734253"  # account_record's default phone, in E.164
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _rejections(**overrides: str) -> dict[str, str]:
    result = parse_account(2, account_record(**overrides))
    assert isinstance(result, list), result
    return {r.field: r.reason for r in result}


def _import(engine: Engine, path: Path, encoding: str = "utf-8") -> int:
    with open_source(path, Kind.ACCOUNTS, encoding) as source:
        return run_import(engine, source, now=NOW, parse_workers=0).rejected


def _count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(account)).scalar_one())


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = get_engine(f"sqlite:///{tmp_path / 'arrears.db'}")
    migrate(engine)
    return engine


# -- 1. our own footer, echoed back -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "Reply STOP to opt out.",  # profiles/US.toml's footer, pasted back whole
        "reply stop to opt out",
        '"Reply STOP to opt out."',
        "> Reply STOP to opt out.",
    ],
)
def test_our_own_footer_echoed_back_opts_out(body: str) -> None:
    """Kept on purpose: a borrower who answers with the instruction itself has done what it says,
    and STOP and "opt out" are two of the FCC's seven words, which revoke consent in a reply
    whatever else it holds (47 CFR 64.1200(a)(10)); erring the other way texts someone who asked us
    to stop. The mainland footer echoed, 回T, opts out the same way (`test_inbound_words`)."""
    assert classify(body).kind is InboundKind.OPT_OUT


# -- 2. a hardship told with STOP -------------------------------------------------------------------


def _stop(engine: Engine, text: str, callback_id: str) -> tuple[str, ...]:
    from tasks.inbound import record_inbound_sms

    result = record_inbound_sms(
        engine, address=PHONE, text=text, at=T0, provider="twilio", callback_id=callback_id
    )
    assert result.classified.kind is InboundKind.OPT_OUT
    return result.lifecycle_accounts


def _hardships(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as c:
        rows = c.execute(
            select(audit.c.account_id, audit.c.data).where(audit.c.kind == "hardship").order_by(audit.c.id)
        ).all()
    return [(r.account_id, r.data["statement"]) for r in rows]


def test_stop_with_a_hardship_opts_out_at_once_and_states_the_hardship_without_a_text(
    engine: Engine, tmp_path: Path
) -> None:
    """ "STOP, I lost my job" opts the number out of texts at once and tells that the borrower cannot
    pay: each of their open accounts is made unable (a hardship event with the words, what
    segmentation and a later bureau pull read), a closed one is not, nothing is sent, no lifecycle
    run is started for it, and the same callback again states nothing more."""
    path = write_csv(
        tmp_path / "a.csv",
        [
            account_record(account_id="A-1", borrower_id="B-1"),
            account_record(account_id="A-2", borrower_id="B-1"),
            account_record(account_id="A-3", borrower_id="B-1"),
        ],
    )
    with open_source(path, Kind.ACCOUNTS) as source:
        assert run_import(engine, source).rejected == 0
    with engine.begin() as c:
        c.execute(update(account).where(account.c.account_id == "A-3").values(stage="paid_off"))
        c.execute(update(account).where(account.c.account_id != "A-3").values(stage="negotiation"))
    for _ in range(2):
        assert _stop(engine, "STOP, I lost my job", "SM-in-1") == ()
    assert _hardships(engine) == [("A-1", "LOST MY JOB"), ("A-2", "LOST MY JOB")]
    threshold = load_policy(None).segmentation.ability_threshold
    with engine.connect() as c:
        abilities = dict(c.execute(select(account.c.account_id, account.c.ability)).all())
        held = c.execute(
            select(hold.c.account_id).where(hold.c.kind == "sms_opt_out").order_by(hold.c.account_id)
        ).scalars()
        assert list(held) == ["A-1", "A-2", "A-3"]
        assert c.execute(select(func.count()).select_from(message)).scalar_one() == 0
    assert abilities["A-1"] < threshold and abilities["A-2"] < threshold
    assert abilities["A-3"] is None


def test_stop_with_a_hardship_from_a_number_two_borrowers_hold_states_none(
    engine: Engine, tmp_path: Path
) -> None:
    """Whose job was lost cannot be told from a family phone: the number is opted out for both,
    and no one is made unable (the opt-out's event keeps the words for an agent)."""
    path = write_csv(
        tmp_path / "a.csv",
        [
            account_record(account_id="A-1", borrower_id="B-1"),
            account_record(account_id="A-2", borrower_id="B-2"),
        ],
    )
    with open_source(path, Kind.ACCOUNTS) as source:
        assert run_import(engine, source).rejected == 0
    with engine.begin() as c:
        c.execute(update(account).values(stage="negotiation"))
    _stop(engine, "STOP. I was laid off", "SM-in-2")
    assert _hardships(engine) == []
    with engine.connect() as c:
        held = c.execute(select(hold.c.account_id).where(hold.c.kind == "sms_opt_out")).scalars()
        assert sorted(held) == ["A-1", "A-2"]


# -- 3. what an envelope may show ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("c/o DEBT COLLECTIONS DEPT", "content:third-party-debt"),
        ("Attn: Collections Department", "content:third-party-debt"),
        ("OVERDUE ACCOUNT - 4th floor", "content:third-party-debt"),
        ("催收部转交", "content:third-party-debt"),
        ("逾期客户 张伟收", "content:third-party-debt"),
        ("PAY OR WE WILL KILL YOU", "content:threat"),
        ("DEADBEAT - DO NOT TRUST", "content:abuse"),
        ("逾期不还将报警抓你坐牢", "content:threat"),
        ("Apt 4\u202e", "content:control"),  # a bidi override: the line reads otherwise than stored
    ],
)
def test_an_address_line_that_threatens_insults_or_tells_of_the_debt_is_screened(
    line: str, rule: str
) -> None:
    """What a servicing file's address may hold that a letter's window would print: a threat, an
    insult, or a word that tells whoever handles the post of the debt (FDCPA 808(8), Reg F
    1006.22(f); CN: a third party is never told of the debt)."""
    finding = screen_address(line)
    assert finding is not None and finding.rule == rule


@pytest.mark.parametrize(
    "line",
    [
        "1234 Main St Apt 5",
        "Kill Devil Hills",
        "12 Killarney Road",
        "Thief River Falls",
        "Truth or Consequences",
        "Hell",
        "Crook County",
        "Owen Street",
        "Balance Rock Rd",
        "The Collection at Riverside",
        "湖北省荆州市公安县斗湖堤镇",
        "公安局宿舍3栋",
        "浦东新区人民路12号",
    ],
)
def test_real_places_holding_a_word_of_the_lexicon_are_not_screened(line: str) -> None:
    """Places read as names are (Kill Devil Hills, Hell, Crook County), and the real places of
    `[places]` (Ireland's Kill- towns, Thief River Falls, 公安县), pass; the debt words of
    messages to a third party that are also places' words (Owen, Balance, The Collection) are not
    envelope words."""
    assert screen_address(line) is None


def test_every_generated_address_passes_the_screen() -> None:
    """The demo portfolio's addresses, US and CN, import as they did."""
    rows = generate_portfolio(3000, seed=7, business_date=datetime(2026, 12, 1).date())
    parts = {
        part
        for row in rows
        if row.address is not None
        for part in (row.address.line1, row.address.line2, row.address.city, row.address.state)
        if part
    }
    assert parts and [p for p in parts if screen_address(p) is not None] == []


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("address_line2", "c/o DEBT COLLECTIONS DEPT", "content:third-party-debt"),
        ("address_line1", "PAY OR WE WILL KILL YOU", "content:threat"),
        ("city", "Deadbeatville", "content:abuse"),
        ("borrower_name", "Dana Whitfield c/o Debt Recovery", "content:third-party-debt"),
    ],
)
def test_an_import_rejects_an_address_or_name_a_window_must_not_show(
    field: str, value: str, rule: str
) -> None:
    """The row is rejected naming the field and the rule, as a name with a threat in it is."""
    address = {"address_line1": "1 Main St", "city": "Los Angeles", "state": "CA", "postal_code": "90012"}
    reasons = _rejections(**(address | {field: value}))
    assert list(reasons) == [field] and reasons[field].startswith(rule)


def test_a_letter_whose_window_tells_of_the_debt_is_refused() -> None:
    """An address stored before the import screened addresses (or an agent's) is caught as the
    letter is vetted: its window would tell the post of the debt."""
    from arrears.letters import render, vet
    from tests.test_letters_render import _notice

    context = _notice(
        borrower_address=("Dana Borrower", "c/o DEBT COLLECTIONS DEPT", "1 Main St", "Ames IA 50010")
    )
    finding = vet(render("right_to_cure", context), context)
    assert finding is not None and finding.rule == "content:third-party-debt"


# -- 4. fixed-offset time zones ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "region"),
    [
        ("EST", "America/New_York"),
        ("Etc/GMT+5", "America/New_York"),
        ("MST", "America/Denver"),
        ("Etc/GMT-8", "Asia/Shanghai"),
        ("UTC", "Europe/London"),
        ("Etc/GMT-14", "America/New_York or Asia/Shanghai"),
    ],
)
def test_a_fixed_offset_time_zone_is_rejected_naming_a_region_zone(zone: str, region: str) -> None:
    """EST and Etc/GMT+5 keep no daylight saving: a New York borrower's 8:00 would be 9:00 from
    March to November, and a text at 20:30 their time one at 21:30. Rejected as any unknown zone
    is, naming a region zone as an example (which region is the borrower's only the file knows)."""
    reason = _rejections(timezone=zone)["timezone"]
    assert f"{zone!r} is a fixed offset" in reason and "no daylight saving" in reason
    assert reason.endswith(region) or reason.endswith(f"{region} are")


@pytest.mark.parametrize("zone", ["America/New_York", "America/Phoenix", "Asia/Shanghai", "EST5EDT", "PRC"])
def test_a_region_zone_or_one_that_keeps_its_rules_is_accepted(zone: str) -> None:
    """Phoenix keeps no daylight saving by its region's rule, EST5EDT keeps the US rules, PRC is
    Asia/Shanghai's other name."""
    assert isinstance(parse_account(2, account_record(timezone=zone)), AccountRow)


def test_a_fixed_offset_zone_is_kept_in_the_rejects_file(db: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [account_record(account_id="A-1", timezone="EST"), account_record()])
    assert _import(db, path) == 1 and _count(db) == 1
    with (tmp_path / "a.csv.rejects.csv").open(encoding="utf-8", newline="") as file:
        [row] = list(csv.DictReader(file))
    assert (row["line"], row["field"], row["account_id"], row["timezone"]) == ("2", "timezone", "A-1", "EST")


# -- 5. a UTF-8 file read in another encoding -------------------------------------------------------

_CN = {"phone": "13812345678", "jurisdiction": "CN", "timezone": "Asia/Shanghai", "currency": "CNY"}
_NAMES = ("王伟", "张伟", "李娜", "刘洋", "陈静")


def test_a_utf8_file_read_as_gb18030_is_refused_naming_the_encoding_and_stores_nothing(
    db: Engine, tmp_path: Path
) -> None:
    """Read as GB18030, 王伟 in UTF-8 is 鐜嬩紵, with no error: stored, every Chinese name would be
    garbled. Refused, saying what the file is and what the names would have been."""
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name=n, **_CN) for n in _NAMES])
    with pytest.raises(UnreadableFile) as refused:
        _import(db, path, "gb18030")
    message = str(refused.value)
    assert "is UTF-8 text, not gb18030" in message and "import it without --encoding" in message
    assert "'王伟'" in message and repr("王伟".encode().decode("gb18030")) in message
    assert _count(db) == 0


def test_a_utf8_file_whose_chinese_rows_come_late_is_refused_too(db: Engine, tmp_path: Path) -> None:
    """A portfolio sorted by jurisdiction has its CN rows after a first block of US ones: the
    probe reads the first lines that hold non-ASCII bytes, wherever they are."""
    records = [account_record() for _ in range(300)] + [
        account_record(borrower_name=n, **_CN) for n in _NAMES
    ]
    path = write_csv(tmp_path / "a.csv", records)
    with pytest.raises(UnreadableFile, match="is UTF-8 text, not gb18030"):
        _import(db, path, "gb18030")
    assert _count(db) == 0


def test_a_utf8_file_read_as_cp1252_is_refused(db: Engine, tmp_path: Path) -> None:
    names = ("José Núñez", "Zoë Brontë", "Renée Côté", "François Gérard", "Søren Ångström")
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name=n) for n in names])
    with pytest.raises(UnreadableFile, match=r"is UTF-8 text, not cp1252.*'é'.*'Ã©'"):
        _import(db, path, "cp1252")


@pytest.mark.parametrize(
    ("encoding", "names"), [("gb18030", _NAMES), ("cp1252", ("José Núñez", "Zoë Brontë"))]
)
def test_a_file_in_the_encoding_named_is_read_as_before(
    db: Engine, tmp_path: Path, encoding: str, names: tuple[str, ...]
) -> None:
    extra = _CN if encoding == "gb18030" else {}
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name=n, **extra) for n in names])
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    assert _import(db, path, encoding) == 0 and _count(db) == len(names)


def test_a_utf8_line_that_is_not_valid_gb18030_says_it_is_utf8(db: Engine, tmp_path: Path) -> None:
    """王小明 in UTF-8 is nine bytes, which GB18030 cannot read whole: the error names the offset as
    before, and says the line is UTF-8."""
    path = write_csv(tmp_path / "a.csv", [account_record(borrower_name="王小明", **_CN)])
    with pytest.raises(UnreadableFile, match=r"not valid gb18030 .*the line is UTF-8 text"):
        _import(db, path, "gb18030")


# -- 6. the borrower id an account id makes ----------------------------------------------------------


@pytest.mark.parametrize("length", [63, 64])
def test_an_account_id_too_long_to_make_a_borrower_id_is_rejected_naming_account_id(length: int) -> None:
    """Without a borrower_id the borrower is B-<account_id>, 2 characters longer: the rejection
    names the account_id, which the file gave, with the limit, not a borrower_id it did not give."""
    reasons = _rejections(account_id="A" * length)
    assert list(reasons) == ["account_id"]
    assert reasons["account_id"].startswith("longer than 62 characters without a borrower_id")
    assert "64" in reasons["account_id"]


def test_a_long_account_id_with_its_borrower_id_is_accepted_and_a_long_borrower_id_is_named() -> None:
    assert isinstance(parse_account(2, account_record(account_id="A" * 64, borrower_id="B-1")), AccountRow)
    assert list(_rejections(borrower_id="B" * 65)) == ["borrower_id"]
