"""Jurisdiction profiles as data (issue 4, part 1): one TOML file per profile, overlays by
`extends`, and a policy file that may tighten what a rule states but never loosen it."""

from datetime import time
from importlib import resources
from pathlib import Path

import pytest

from arrears.jurisdictions import KNOWN_JURISDICTIONS, profile
from arrears.policy import Policy, PolicyError, load_policy


def test_every_profile_is_a_file_in_the_package() -> None:
    """The eight profiles of the issue exist, each one file under arrears/profiles (shipped in the wheel)."""
    files = {p.name for p in (resources.files("arrears") / "profiles").iterdir() if p.name.endswith(".toml")}
    expected = {"CN", "US", "US-CA", "US-IA", "US-MA", "US-WI", "GB", "IE"}
    assert {f.removesuffix(".toml") for f in files} - {"_base"} == expected == set(KNOWN_JURISDICTIONS)


def test_profiles_hold_the_numbers_of_their_rules() -> None:
    """Hours, closed days, call caps, the opt-out and the cure periods are the sourced numbers."""
    cn, us, ie, gb = profile("CN"), profile("US"), profile("IE"), profile("GB")
    assert (cn.hours.start, cn.hours.end, cn.locale, cn.third_parties) == (
        time(8),
        time(22),
        "zh-CN",
        "when_unreachable",
    )
    caps = {c.name: c for c in cn.caps}
    assert (caps["call-connected-borrower-1d"].limit, caps["call-connected-borrower-1d"].counts) == (
        3,
        "connected",
    )
    assert (caps["call-unanswered-address-1d"].limit, caps["call-unanswered-address-1d"].scope) == (
        6,
        "address",
    )
    assert (us.hours.start, us.hours.end, us.sms_opt_out_required) == (time(8), time(21), True)
    reg_f = {c.name: c for c in us.caps}["call-attempts-account-7d"]
    assert (reg_f.limit, reg_f.window_days, reg_f.quiet_after_conversation_days, reg_f.binding) == (
        7,
        7,
        7,
        True,
    )
    assert (ie.hours.start, ie.hours.end, ie.hours.closed_weekdays, ie.hours.closed_on_holidays) == (
        time(9),
        time(21),
        frozenset({6}),
        True,
    )
    assert ie.third_parties == "never"
    assert (gb.breathing_space_days, gb.cure_notice_days) == (60, 14)
    assert all(c.source for p in (cn, us, ie, gb) for c in p.caps)


def test_ireland_owes_the_default_notice_and_a_court_order_for_protected_goods_as_gb_does() -> None:
    """compliance.md's "United Kingdom (GB) and Ireland (IE)" rows bind Ireland too: a default
    notice with at least 14 days to remedy before enforcement, and no repossession of protected
    goods without a court order. Each is sourced from the row and Ireland's own Consumer Credit
    Act 1995 (ss.54, 63-64), marked unverified; counted as GB counts them."""
    ie, gb = profile("IE"), profile("GB")
    assert (
        (ie.cure_notice_days, ie.cure_business_days, ie.cure_mailing_days)
        == (
            gb.cure_notice_days,
            gb.cure_business_days,
            gb.cure_mailing_days,
        )
        == (14, False, 5)
    )
    assert ie.repossession_needs_court_order and gb.repossession_needs_court_order
    sources = dict(ie.sources)
    assert sources["cure"].startswith("Consumer Credit Act 1995 s.54 (unverified):")
    assert sources["protected_goods"].startswith("Consumer Credit Act 1995 ss.63-64 (unverified):")
    assert all("compliance.md" in sources[k] for k in ("cure", "protected_goods"))


def test_us_state_overlays_inherit_reg_f_and_add_their_own() -> None:
    """US-CA/IA/MA/WI keep Reg F's hours, caps and opt-out, with their cure periods and holiday calendars."""
    us = profile("US")
    for code, cure in (("US-CA", None), ("US-IA", 20), ("US-MA", 21), ("US-WI", 15)):
        p = profile(code)
        assert (p.hours.start, p.hours.end, p.caps, p.sms_opt_out_required) == (
            us.hours.start,
            us.hours.end,
            us.caps,
            True,
        )
        assert (p.cure_notice_days, p.hours.holidays) == (cure, code)
    assert profile("US-MA").max_cures == 3


def test_sms_caps_are_policy_numbers_everywhere() -> None:
    """Every profile carries the two SMS caps, marked as policy numbers (not binding) with that said."""
    for code in KNOWN_JURISDICTIONS:
        sms = {c.name: c for c in profile(code).caps_for("sms")}
        assert (
            sms["sms-account-1d"].limit,
            sms["sms-borrower-7d"].limit,
            sms["sms-borrower-7d"].window_days,
        ) == (1, 3, 7)
        assert not any(c.binding for c in sms.values()) and all(
            c.source.startswith("policy") for c in sms.values()
        )


def test_policy_file_tightens_a_profile_and_changes_policy_numbers(tmp_path: Path) -> None:
    """A policy file may narrow CN hours, give Massachusetts borrowers longer and more cures, and move
    an SMS cap for all jurisdictions, which then says where it came from."""
    path = tmp_path / "policy.toml"
    path.write_text(
        '[profiles.CN.hours]\nstart = "09:00"\n\n'
        "[profiles.US-MA]\ncure_notice_days = 30\nmax_cures = 4\n\n"
        '[[profiles."*".caps]]\nname = "sms-borrower-7d"\nlimit = 5\n',
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.profile("CN").hours.start == time(9)
    assert (policy.profile("US-MA").cure_notice_days, policy.profile("US-MA").max_cures) == (30, 4)
    cap = {c.name: c for c in policy.profile("GB").caps}["sms-borrower-7d"]
    assert cap.limit == 5 and cap.source.startswith('policy file [profiles."*"]')
    assert profile("CN").hours.start == time(8)  # the files are untouched


def test_a_profiles_overrides_reach_the_profiles_that_extend_it(tmp_path: Path) -> None:
    """Counsel tightening US contact hours means every US state's: `[profiles.US]` binds US-CA,
    US-IA, US-MA and US-WI, which extend US, unless a state's own override says otherwise; the
    more specific wins ("*" < US < US-CA), and nothing outside the lineage moves."""
    path = tmp_path / "policy.toml"
    path.write_text(
        '[profiles."*".hours]\nend = "20:30"\n\n[profiles.US.hours]\nstart = "09:00"\nend = "20:00"\n\n'
        '[profiles.US-CA.hours]\nstart = "10:00"\n',
        encoding="utf-8",
    )
    policy = load_policy(path)
    hours = {
        code: policy.profile(code).hours for code in ("US", "US-CA", "US-IA", "US-MA", "US-WI", "CN", "GB")
    }
    assert {code: (h.start, h.end) for code, h in hours.items()} == {
        "US": (time(9), time(20)),
        "US-CA": (time(10), time(20)),
        "US-IA": (time(9), time(20)),
        "US-MA": (time(9), time(20)),
        "US-WI": (time(9), time(20)),
        "CN": (time(8), time(20, 30)),
        "GB": (policy.profile("GB").hours.start, time(20, 30)),
    }
    assert policy.profile("US-CA").hours.holidays == "US-CA"  # the state's own file values stay


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ('[profiles.CN.hours]\nstart = "07:00"', "profiles.CN.hours"),
        ("[profiles.IE.hours]\nclosed_weekdays = []", "profiles.IE.hours"),
        ("[profiles.US]\nsms_opt_out_required = false", "sms_opt_out_required"),
        (
            '[[profiles.CN.caps]]\nname = "call-connected-borrower-1d"\nlimit = 4',
            "call-connected-borrower-1d",
        ),
        ('[profiles.GB]\nthird_parties = "always"', "third_parties"),
        # Reg F 1006.6(e): an empty instruction passed the content check (every text holds ""),
        # and one that names no keyword tells nobody how to stop.
        ('[profiles.US]\nopt_out_text = ""', r"opt_out_text: '' does not say how to opt out"),
        ('[profiles.US-CA]\nopt_out_text = "Thanks!"', "opt_out_text: 'Thanks!' does not say how"),
        # The right to cure (compliance.md, right-to-cure table): fewer days, an earlier mailing, or
        # fewer cures owed would let a repossession go ahead before the statute allows.
        ("[profiles.US-IA]\ncure_notice_days = 2", r"cure_notice_days: at least 20 \(Iowa Code 537\.5110"),
        ("[profiles.GB]\ncure_notice_days = 3", r"cure_notice_days: at least 14 \(Consumer Credit Act"),
        ("[profiles.IE]\ncure_notice_days = 3", r"cure_notice_days: at least 14 \(Consumer Credit Act 1995"),
        ("[profiles.US-MA]\ncure_mailing_days = 0", "cure_mailing_days: at least 3"),
        ("[profiles.US-MA]\nmax_cures = 0", r"max_cures: at least 3 \(M\.G\.L\. c\.255B"),
        ("[profiles.GB]\nbreathing_space_days = 30", "breathing_space_days: at least 60"),
        ("[profiles.US-CA]\nsale_notice_days = 5", "sale_notice_days: at least 15"),
        (
            "[profiles.GB]\nrepossession_needs_court_order = false",
            r"court_order: a rule requires it \(Consumer",
        ),
        (
            "[profiles.IE]\nrepossession_needs_court_order = false",
            r"court_order: a rule requires it \(Consumer Credit Act 1995 ss\.63-64",
        ),
        # Skip tracing, the way to a third party, opens no sooner than the CBA guideline allows.
        ("[segmentation]\nunreachable_after_failures = 1", "unreachable_after_failures"),
        ('[profiles.XX.hours]\nstart = "09:00"', "unknown jurisdiction"),
        ('[profiles.CN.hours]\nstart = "9 am"', "HH:MM"),
    ],
)
def test_policy_file_may_not_loosen_a_rule(tmp_path: Path, override: str, complaint: str) -> None:
    """Wider hours, opened days, a dropped opt-out, a looser binding cap, a shorter cure or sale
    notice, fewer cures owed, bad values and unknown codes are refused with the key named (and
    the rule's source)."""
    path = tmp_path / "policy.toml"
    path.write_text(override + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=complaint):
        load_policy(path)


def test_model_copy_with_new_overrides_resolves_again() -> None:
    """A policy copied with other profile overrides answers with the new profiles, not the old."""
    base = Policy()
    tighter = base.model_copy(update={"profiles": {"US": {"hours": {"start": "10:00", "end": "20:00"}}}})
    assert (base.profile("US").hours.start, tighter.profile("US").hours.start) == (time(8), time(10))


def test_the_tasks_read_the_policy_file_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps ask for the policy per batch and per review: the file is read once, and again as
    soon as it changes; a file gone is an error naming it."""
    import os

    from arrears.settings import get_settings
    from tasks.database import policy

    path = tmp_path / "policy.toml"
    path.write_text('[profiles.CN.hours]\nstart = "09:00"\n', encoding="utf-8")
    monkeypatch.setenv("ARREARS_POLICY_FILE", str(path))
    get_settings.cache_clear()
    first = policy()
    assert first is policy() and first.profile("CN").hours.start == time(9)
    path.write_text('[profiles.CN.hours]\nstart = "10:00"\n', encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert policy().profile("CN").hours.start == time(10)
    path.unlink()
    with pytest.raises(PolicyError, match=r"policy\.toml"):
        policy()
