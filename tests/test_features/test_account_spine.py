"""The account spine and account features on a hand-made CRM with known answers."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.account_spine import account_label, account_scoring_spine, build_account_spine
from leadscore.features.accounts import AccountContext, account_feature_specs, build_account_features
from leadscore.features.spine import CutoffPolicy


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3", "L4"],
        "created_at": [ts("2025-01-01"), ts("2025-02-01"), ts("2025-01-01"), ts("2025-01-01")],
        "account_id": ["A", "A", "B", None],
        "job_title": ["VP Sales", "Engineer", "CEO", "CFO"],
        "department": ["sales", "engineering", "executive", "finance"],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O2", "O3"],
        "lead_id": ["L2", "L3"],
        "created_at": [ts("2025-02-15"), ts("2025-01-05")],
        "closed_at": [ts("2025-03-10"), ts("2025-01-20")],
        "status": ["won", "lost"],
    }
)
# cutoffs of A: Jan 11, Feb 10, Mar 12, Apr 11, May 11; of B: Jan 11 (its only lead closes on Jan 20)
POLICY = CutoffPolicy(policy="snapshots", delay_days=10, every_days=30, max_snapshots=10, horizon_days=60)
AS_OF = ts("2025-06-01")


def test_a_deal_won_by_any_lead_of_the_account_labels_it_and_late_horizons_are_censored():
    spine, stats = build_account_spine(LEADS, OPPS, POLICY, as_of=AS_OF)
    expected = pd.DataFrame(
        {
            "account_id": ["A", "B", "A", "A"],
            "cutoff_time": [ts("2025-01-11"), ts("2025-01-11"), ts("2025-02-10"), ts("2025-03-12")],
            # A on Jan 11: L2 does not exist yet, but its win on Mar 10 is the account's
            "converted": [1, 0, 1, 0],
        }
    )
    pd.testing.assert_frame_equal(
        spine[["account_id", "cutoff_time", "converted"]].astype({"account_id": object}),
        expected.astype({"cutoff_time": spine["cutoff_time"].dtype}),
        check_dtype=False,
    )
    np.testing.assert_allclose(spine["sample_weight"], [1 / 3, 1.0, 1 / 3, 1 / 3])
    # A's Apr 11 and May 11 horizons end after as_of; B after Jan 20 has no open lead; L4 has no account
    assert (stats.censored, stats.closed_before_cutoff, stats.rows, stats.positives, stats.leads) == (2, 4, 4, 2, 2)


def test_the_label_counts_wins_strictly_after_the_cutoff_and_within_the_horizon():
    spine = pd.DataFrame(
        {"account_id": ["A", "A", "A"], "cutoff_time": [ts("2025-03-10"), ts("2025-01-09"), ts("2025-01-10")]}
    )
    converted = account_label(spine, LEADS, OPPS, horizon=pd.Timedelta(days=59), data_end=AS_OF)
    # won at the cutoff itself: not inside; 60 days before: outside a 59-day horizon; 59 days before: inside
    assert converted.tolist() == [0.0, 0.0, 1.0]


def test_scoring_spine_holds_the_accounts_with_an_open_lead():
    spine = account_scoring_spine(LEADS, OPPS, as_of=AS_OF)
    assert spine["account_id"].tolist() == ["A"]  # B's only lead closed lost; L4 has no account
    assert (spine["cutoff_time"] == AS_OF).all()


EVENTS = pd.DataFrame(
    {
        "lead_id": ["L1", "L1", "L1", "L2", "L2", "L3"],
        "occurred_at": [
            ts("2025-02-20"),
            ts("2025-02-25"),
            ts("2025-03-01"),
            ts("2025-02-27"),
            ts("2025-02-28"),
            ts("2025-01-10"),
        ],
        "event_type": ["pricing_page_view", "page_view", "demo_request", "page_view", "pricing_page_view", "page_view"],
        "value": [1.0] * 6,
    }
)
CUTOFF = ts("2025-03-02")


def features(leads=LEADS, events=EVENTS, opps=OPPS) -> pd.DataFrame:
    spine = pd.DataFrame({"account_id": ["A", "B"], "cutoff_time": [CUTOFF, CUTOFF]})
    context = AccountContext(spine, leads=leads, events=events, opportunities=opps)
    return build_account_features(context)


def test_account_features_roll_up_the_contacts_before_the_cutoff():
    f = features()
    # A: L1 (VP, 3 active days) and L2 (engineer, 2 active days); B: L3 (CEO, closed lost, 1 event in January)
    assert f["account_contacts"].tolist() == [2, 1]
    assert f["account_open_leads"].tolist() == [2, 0]
    assert f["account_senior_contacts"].tolist() == [1, 1]
    assert f["account_engaged_contacts_30d"].tolist() == [1, 0]
    assert f["account_senior_engaged_contacts_30d"].tolist() == [1, 0]
    assert f["account_departments_engaged_30d"].tolist() == [1, 0]
    assert f["account_high_intent_events_30d"].tolist() == [3, 0]
    assert f["account_best_events_pricing_page_view_count_30d"].tolist()[0] == 1
    assert np.isnan(f["account_best_events_pricing_page_view_count_30d"].iloc[1])  # no open lead at B
    np.testing.assert_allclose(f["account_days_since_last_activity"], [1.0, 51.0])
    assert f["account_best_contact_seniority"].tolist() == [3, 4]
    assert f["account_lost_deals"].tolist() == [0, 1]  # B's deal closed on Jan 20, before the cutoff
    assert f["account_won_deals"].tolist() == [0, 0]  # A's win on Mar 10 is after it


def test_a_contact_created_at_the_cutoff_is_not_yet_known():
    senior = pd.DataFrame(
        {"lead_id": ["L9"], "created_at": [CUTOFF], "account_id": ["A"], "job_title": ["CEO"], "department": ["it"]}
    )
    f = features(leads=pd.concat([LEADS, senior], ignore_index=True))
    # before: A counted 3 contacts, 2 senior, 3 open leads and a C-level best contact (rank 4) at that very instant
    assert f.loc[0, ["account_contacts", "account_senior_contacts", "account_open_leads"]].tolist() == [2, 1, 2]
    assert f.loc[0, "account_best_contact_seniority"] == 3


@pytest.mark.parametrize("created_after", [pd.Timedelta(0), pd.Timedelta(seconds=1)])
def test_nothing_dated_at_or_after_the_cutoff_changes_an_account_row(created_after):
    """Contacts created at or after the cutoff, events at it, a deal closed at it: the row's features stay the
    same."""
    before = features()
    later_lead = pd.DataFrame(
        {
            "lead_id": ["L9"],
            "created_at": [CUTOFF + created_after],
            "account_id": ["A"],
            "job_title": ["CTO"],
            "department": ["it"],
        }
    )
    later_events = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L9"],
            "occurred_at": [CUTOFF, CUTOFF, CUTOFF],
            "event_type": ["demo_request"] * 3,
            "value": [1.0] * 3,
        }
    )
    later_opps = pd.DataFrame(
        {
            "opportunity_id": ["O9"],
            "lead_id": ["L1"],
            "created_at": [CUTOFF - pd.Timedelta(1, "D")],
            "closed_at": [CUTOFF],
            "status": ["won"],
        }
    )
    after = features(
        pd.concat([LEADS, later_lead], ignore_index=True),
        pd.concat([EVENTS, later_events]),
        pd.concat([OPPS, later_opps], ignore_index=True),
    )
    pd.testing.assert_frame_equal(before, after)


def test_every_account_feature_is_described_and_directions_follow_the_lead_registry():
    specs = account_feature_specs()
    assert all(spec.description and "\n" not in spec.description for spec in specs.values())
    assert specs["account_industry"].description == "Industry of the lead's company"
    assert specs["account_senior_engaged_contacts_30d"].direction == 1
    assert specs["account_best_events_days_since_last_high_intent"].direction == -1
