"""The account spine settings derived from the book: exact values on hand-made frames, a property over generated
books (the derived settings always leave both classes in every fold), and the one error when nothing works."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.features.account_spine import build_account_spine
from leadscore.features.spine import CutoffPolicy
from leadscore.models.account_defaults import (
    AccountGiven,
    AccountSettingsError,
    Folds,
    choose_account_spine,
    derived_minimum,
    derived_snapshots,
    first_win_days,
    horizon_ladder,
    shortfall,
)
from leadscore.models.conversion import time_ordered_split


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def real_shaped_book(seed: int = 0, *, accounts: int = 40, days: int = 730, win_share: float = 0.7):
    """Few accounts, each adding a lead every few weeks until it goes quiet, each lead's deal closing weeks later,
    most of them won: the shape on which the lead spine's defaults leave too few not-converted rows.
    Returns (leads, opportunities, as_of)."""
    rng = np.random.default_rng(seed)
    start = ts("2023-01-01")
    end = start + pd.Timedelta(days=days)
    leads, deals = [], []
    for a in range(accounts):
        first, cadence = int(rng.integers(0, days // 3)), int(rng.integers(15, 60))
        stop = int(rng.integers(days // 2, days))
        for k, day in enumerate(range(first, stop, cadence)):
            created = start + pd.Timedelta(days=day)
            close = created + pd.Timedelta(days=int(rng.integers(20, 90)))
            status = "won" if rng.random() < win_share else "lost"
            if close > end:
                status, close = "open", pd.NaT
            leads.append((f"L{a}-{k}", created, f"A{a}"))
            deals.append((f"O{a}-{k}", f"L{a}-{k}", created, close, status))
    leads = pd.DataFrame(leads, columns=["lead_id", "created_at", "account_id"])
    deals = pd.DataFrame(deals, columns=["opportunity_id", "lead_id", "created_at", "closed_at", "status"])
    deals["closed_at"] = pd.to_datetime(deals["closed_at"], utc=True)
    return leads, deals, end


LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3", "L4", "L5"],
        "created_at": [ts("2025-01-01"), ts("2025-02-01"), ts("2025-01-11"), ts("2025-03-01"), ts("2025-01-01")],
        "account_id": ["A", "A", "B", "C", None],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O1", "O2", "O3", "O4", "O5"],
        "lead_id": ["L1", "L2", "L3", "L4", "L5"],
        "created_at": [ts("2025-01-05"), ts("2025-02-05"), ts("2025-01-15"), ts("2025-03-05"), ts("2025-01-02")],
        "closed_at": [ts("2025-03-02"), ts("2025-02-11"), ts("2025-02-10"), ts("2025-04-01"), ts("2025-01-03")],
        "status": ["lost", "won", "won", "lost", "won"],
    }
)


def test_first_win_days_counts_from_the_accounts_first_lead_to_its_first_won_deal():
    # A: first lead Jan 1, first win Feb 11 (L2's; L1's deal was lost) -> 41 days; B: Jan 11 -> Feb 10 = 30 days;
    # C never won; L5 has no account
    assert first_win_days(LEADS, OPPS).to_dict() == {"A": 41.0, "B": 30.0}


def test_the_horizon_is_the_80th_percentile_rounded_up_then_halved_down_to_a_week():
    days = pd.Series([10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100])  # 80th percentile: 82
    assert horizon_ladder(days) == [82.0, 41.0, 21.0, 11.0]
    assert horizon_ladder(pd.Series([2.0, 3.0])) == [7.0]  # never below a week
    assert horizon_ladder(pd.Series([], dtype=float)) == []


def test_snapshots_and_minimums_follow_the_horizon_and_the_number_of_accounts():
    assert derived_snapshots(90, 85) == (30.0, 24)  # 2,000 rows over 85 accounts
    assert derived_snapshots(183, 698) == (61.0, 6)  # never fewer than the lead spine's 6
    assert derived_snapshots(2, 10) == (1.0, 200)
    assert [derived_minimum(n, 40) for n in (8, 85, 1000)] == [10, 21, 40]


def spine_of(labels: list[int], *, every_days: int = 7) -> pd.DataFrame:
    times = [ts("2025-01-01") + pd.Timedelta(days=every_days * i) for i in range(len(labels))]
    return pd.DataFrame({"account_id": "A", "cutoff_time": times, "converted": labels})


def test_shortfall_names_the_counts_and_the_setting_that_governs_them():
    folds = Folds(min_positives=2, min_negatives=2)
    # 60 rows a week apart, gap 30 days: the holdout is the last 12 rows, the rows before it the first 44 (as
    # `time_ordered_split` cuts them for training)
    mixed = [0, 1] * 30
    assert shortfall(spine_of(mixed), horizon_days=30, folds=folds) is None
    assert shortfall(spine_of([0, 1] * 24 + [1] * 12), horizon_days=30, folds=folds) == (
        "the holdout holds 12 converted and 0 not-converted rows (need 5 of each)",
        "horizon_days",
    )
    assert shortfall(spine_of([1] * 44 + [0] * 16), horizon_days=30, folds=folds) == (
        "44 converted and 0 not-converted rows before the holdout (need 2 and 2)",
        "minimums",
    )
    reason, setting = shortfall(spine_of(mixed), horizon_days=800, folds=folds)
    assert setting == "horizon_days" and reason.startswith("60 labelled rows: cannot split 60 rows by time")


def test_a_book_where_most_accounts_convert_gets_a_horizon_that_leaves_both_classes():
    leads, deals, as_of = real_shaped_book(0)
    old = build_account_spine(leads, deals, CutoffPolicy(), as_of=as_of)[0]
    assert shortfall(old, horizon_days=90, folds=Folds()) == (
        "132 converted and 15 not-converted rows before the holdout (need 40 and 40)",
        "minimums",
    )
    choice = choose_account_spine(leads, deals, as_of=as_of, base=CutoffPolicy(), given=AccountGiven(), folds=Folds())
    p = choice.policy
    assert (p.horizon_days, p.every_days, p.max_snapshots) == (100.0, 33.0, 50)
    assert (choice.min_positives, choice.min_negatives) == (10, 10)
    assert choice.summary() == (
        "account horizon 100 days (derived: 80th percentile of first-lead-to-win time), snapshots every 33 days "
        "(derived: horizon / 3), at most 50 per account (derived: about 2,000 rows over 40 accounts), minimums 10 "
        "converted and 10 not-converted rows (derived: a quarter of 40 accounts, at least 10)"
    )
    assert (choice.stats.rows, choice.stats.positives) == (516, 480)


def test_given_settings_are_used_as_given():
    leads, deals, as_of = real_shaped_book(0)
    given = AccountGiven(horizon_days=60, every_days=15, max_snapshots=8, min_positives=12, min_negatives=11)
    choice = choose_account_spine(leads, deals, as_of=as_of, base=CutoffPolicy(), given=given, folds=Folds())
    p = choice.policy
    assert (p.horizon_days, p.every_days, p.max_snapshots, choice.min_positives, choice.min_negatives) == (
        60,
        15,
        8,
        12,
        11,
    )
    assert set(choice.how.values()) == {"given"}


def test_one_error_lists_every_horizon_tried_and_names_the_setting_to_change():
    leads, deals, as_of = real_shaped_book(0)
    old = AccountGiven(horizon_days=90, every_days=30, max_snapshots=6, min_positives=40, min_negatives=40)
    with pytest.raises(AccountSettingsError) as error:
        choose_account_spine(leads, deals, as_of=as_of, base=CutoffPolicy(), given=old, folds=Folds())
    assert str(error.value) == (
        "no account spine setting leaves rows to train and test on (40 accounts, 727 days of data):\n"
        "  horizon 90 days (given): 132 converted and 15 not-converted rows before the holdout (need 40 and 40)\n"
        "Change: lower accounts.min_positives / accounts.min_negatives or add history."
    )
    tiny_leads, tiny_deals, tiny_as_of = real_shaped_book(0, accounts=2)
    tried = r"(?s)\(2 accounts, 525 days of data\):\n  horizon 46 days .*\n  horizon 23 days .*\n  horizon 12 days .*"
    with pytest.raises(AccountSettingsError, match=tried + "Change: set accounts.horizon_days"):
        choose_account_spine(
            tiny_leads, tiny_deals, as_of=tiny_as_of, base=CutoffPolicy(), given=AccountGiven(), folds=Folds()
        )
    never_won = deals.assign(status=deals["status"].replace({"won": "lost"}))
    with pytest.raises(AccountSettingsError, match="no account has won a deal, so there is nothing to learn yet"):
        choose_account_spine(leads, never_won, as_of=as_of, base=CutoffPolicy(), given=AccountGiven(), folds=Folds())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    accounts=st.integers(30, 80),
    days=st.integers(500, 1100),
    win_share=st.floats(0.3, 0.9),
)
def test_derived_settings_always_leave_both_classes_in_every_fold(seed, accounts, days, win_share):
    """Books whose accounts both win and go without a win within the span: the derived settings train."""
    leads, deals, as_of = real_shaped_book(seed, accounts=accounts, days=days, win_share=win_share)
    folds = Folds()
    choice = choose_account_spine(leads, deals, as_of=as_of, base=CutoffPolicy(), given=AccountGiven(), folds=folds)
    y, times, horizon = choice.spine["converted"].to_numpy(), choice.spine["cutoff_time"], choice.policy.horizon_days
    dev, holdout = time_ordered_split(len(y), fraction=0.2, sample_time=times, gap_days=horizon)
    train, _ = time_ordered_split(len(dev), fraction=0.2, sample_time=times.iloc[dev], gap_days=horizon)
    for rows in (y[holdout], y[dev][train]):
        assert 0 < rows.sum() < len(rows)
    assert y[dev].sum() >= choice.min_positives and (1 - y[dev]).sum() >= choice.min_negatives
