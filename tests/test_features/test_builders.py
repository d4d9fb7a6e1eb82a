"""Exact feature values on hand-made frames, with events just before, at and after the cutoff."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.build import build_features
from leadscore.features.context import FeatureParams
from leadscore.features.demographic import seniority_from_title
from leadscore.features.registry import GROUPS, all_features, feature_set

CUTOFF = pd.Timestamp("2025-01-10", tz="UTC")
SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)

LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3"],
        "created_at": pd.to_datetime(["2024-12-01", "2024-12-20", "2025-01-20"], utc=True),
        "account_id": ["A1", "A1", "A1"],
        "email": ["a@acme.com", "b@gmail.com", None],
        "phone": ["1", None, None],
        "job_title": ["VP of Sales", None, "Marketing Manager"],
        "seniority": [None, "Director", None],
        "department": ["sales", "it", None],
        "country": ["us", "DE", None],
        "source": ["Webinar", "paid_search", None],
    }
)
ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["A1"],
        "industry": ["Software"],
        "employee_count": [999.0],
        "annual_revenue": [2.5e7],
        "country": ["us"],
    }
)
EVENTS = pd.DataFrame(
    {
        "lead_id": ["L1"] * 7,
        "occurred_at": [
            CUTOFF - SECOND,
            CUTOFF,
            CUTOFF + DAY,
            CUTOFF - 8 * DAY,
            CUTOFF - 31 * DAY,
            CUTOFF - 2 * DAY,
            CUTOFF - 3 * DAY,
        ],
        "event_type": [
            "pricing_page_view",
            "pricing_page_view",
            "demo_request",
            "page_view",
            "demo_request",
            "feature_used",
            "feature_used",
        ],
        "value": [np.nan, np.nan, np.nan, np.nan, np.nan, 4.0, 4.0],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O0"],
        "lead_id": ["L3"],
        "created_at": [CUTOFF],
        "closed_at": [CUTOFF + DAY],
        "status": ["won"],
    }
)


def features_for(spine: pd.DataFrame, **kwargs) -> pd.DataFrame:
    tables = {"leads": LEADS, "accounts": ACCOUNTS, "events": EVENTS, "opportunities": OPPS} | kwargs
    return build_features(spine, **tables).set_index("lead_id")


@pytest.fixture
def row() -> pd.Series:
    spine = pd.DataFrame({"lead_id": ["L1"], "cutoff_time": [CUTOFF]})
    return features_for(spine).loc["L1"]


def test_window_counts_see_only_events_strictly_before_the_cutoff(row):
    assert row["events_pricing_page_view_count_7d"] == 1  # at cutoff - 1 s: in; at the cutoff: out
    assert row["events_demo_request_count_90d"] == 1  # the one 31 days back; the one after the cutoff is unseen
    assert row["events_demo_request_count_30d"] == 0
    assert row["events_page_view_count_7d"] == 0 and row["events_page_view_count_30d"] == 1
    assert row["events_count_30d"] == 4


def test_recency_and_activity(row):
    assert row["events_days_since_last"] == pytest.approx(1 / 86_400)
    assert row["events_days_since_last_high_intent"] == pytest.approx(1 / 86_400)
    assert row["events_active_days_30d"] == 4  # 01-09, 01-08, 01-07, 01-02
    # last 7 days: 3 events; the 21 days before: 1 -> (3 + 1) / (1/3 + 1)
    assert row["events_trend_7d_vs_21d"] == pytest.approx(4 / (1 / 3 + 1))


def test_decayed_engagement_score_uses_weights_and_half_life():
    spine = pd.DataFrame({"lead_id": ["L1"], "cutoff_time": [CUTOFF]})
    params = FeatureParams(half_life_days=10, event_weights={"feature_used": 0.0, "page_view": 2.0})
    frame = build_features(spine, leads=LEADS, events=EVENTS, params=params, feature_names=["engagement_decayed_score"])
    expected = 5 * 2 ** (-1 / 86_400 / 10) + 2 * 2 ** (-8 / 10) + 10 * 2 ** (-31 / 10)
    assert frame["engagement_decayed_score"].iloc[0] == pytest.approx(expected)


def test_product_usage(row):
    assert row["product_active_days_14d"] == 2
    assert row["product_distinct_features_used"] == 1
    assert row["product_trial_started"] == 0


def test_a_sparse_event_value_column_gives_the_same_features(row):
    # validation holds a mostly-missing `value` sparse; a second feature value tells a wrong take apart
    events = EVENTS.assign(value=[np.nan, np.nan, np.nan, np.nan, np.nan, 4.0, 7.0])
    sparse = events.assign(value=pd.arrays.SparseArray(events["value"].to_numpy(), fill_value=np.nan))
    spine = pd.DataFrame({"lead_id": ["L1"], "cutoff_time": [CUTOFF]})
    dense_row, sparse_row = (features_for(spine, events=e).loc["L1"] for e in (events, sparse))
    assert dense_row["product_distinct_features_used"] == sparse_row["product_distinct_features_used"] == 2
    pd.testing.assert_series_equal(dense_row, sparse_row)


def test_demographic(row):
    assert row["lead_seniority"] == "vp"
    assert row["lead_department"] == "sales"
    assert row["lead_country"] == "US"
    assert row["lead_source"] == "webinar"
    assert row["lead_email_is_business"] == 1.0
    assert row["lead_age_days"] == 40
    assert row["lead_profile_completeness"] == pytest.approx(100.0)


def test_lead_age_stops_at_a_year():
    spine = pd.DataFrame(
        {"lead_id": ["L1", "L1", "L1"], "cutoff_time": [CUTOFF, CUTOFF + 324 * DAY, CUTOFF + 1000 * DAY]}
    )
    frame = build_features(spine, leads=LEADS, feature_names=["lead_age_days"])
    assert frame["lead_age_days"].tolist() == [40.0, 364.0, 365.0]


def test_firmographic_and_other_leads_before_the_cutoff():
    spine = pd.DataFrame({"lead_id": ["L1", "L2"], "cutoff_time": [CUTOFF, CUTOFF]})
    frame = features_for(spine)
    assert frame.loc["L1", "account_industry"] == "software"
    assert frame.loc["L1", "account_employee_count_log"] == pytest.approx(3.0)
    assert frame.loc["L1", "account_revenue_band"] == "10M-100M"
    # L3 of the same account is created after the cutoff: not counted
    assert frame.loc["L1", "account_other_leads_before"] == 1
    assert frame.loc["L2", "lead_seniority"] == "director"
    assert frame.loc["L2", "lead_email_is_business"] == 0.0
    assert frame.loc["L2", "lead_profile_completeness"] == pytest.approx(100 * 4 / 6)


def test_history_counts_deals_only_once_closed_strictly_before_the_cutoff():
    at_close = pd.DataFrame({"lead_id": ["L1", "L1"], "cutoff_time": [CUTOFF + DAY, CUTOFF + 3 * DAY]})
    frame = build_features(
        at_close,
        leads=LEADS,
        accounts=ACCOUNTS,
        opportunities=OPPS,
        feature_names=["history_account_won_deals", "history_days_since_account_last_win"],
    )
    assert frame["history_account_won_deals"].tolist() == [0, 1]
    assert np.isnan(frame["history_days_since_account_last_win"].iloc[0])
    assert frame["history_days_since_account_last_win"].iloc[1] == pytest.approx(2.0)


def test_builders_do_not_mutate_inputs():
    spine = pd.DataFrame({"lead_id": ["L1", "L2"], "cutoff_time": [CUTOFF, CUTOFF]})
    copies = {
        name: frame.copy()
        for name, frame in {"leads": LEADS, "accounts": ACCOUNTS, "events": EVENTS, "opportunities": OPPS}.items()
    }
    features_for(spine)
    for name, frame in copies.items():
        pd.testing.assert_frame_equal(frame, globals()[name.upper() if name != "opportunities" else "OPPS"])


@pytest.mark.parametrize(
    ("title", "level"),
    [
        ("VP of Sales", "vp"),
        ("Chief Marketing Officer", "c_level"),
        ("Head of IT", "director"),
        ("Marketing Manager", "manager"),
        ("Financial Analyst", "individual"),
        ("SVP, Revenue", "vp"),
        ("Director, Engineering", "director"),
        ("CEO & Founder", "c_level"),
    ],
)
def test_seniority_from_title(title, level):
    assert seniority_from_title(pd.Series([title])).iloc[0] == level


def test_registry_describes_every_feature():
    specs = all_features()
    assert len(specs) >= 50
    for name, spec in specs.items():
        assert spec.description and spec.group in GROUPS, name
    assert specs["events_pricing_page_view_count_30d"].description == "Pricing-page views in the last 30 days"
    assert set(feature_set("product_usage")) == {n for n, s in specs.items() if s.group == "product_usage"}
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_set("nope")
    assert feature_set("mine", {"mine": ["lead_age_days"]}) == ["lead_age_days"]


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
@pytest.mark.parametrize("several_cutoffs", [False, True])
def test_event_features_do_not_depend_on_how_events_are_stored(unit, several_cutoffs):
    """Plain-text ids in nanoseconds, or categorical ids and types (as loaded) in coarser units: the same features,
    with a sales touch (never a feature), an event of an unknown lead and a cutoff between two microseconds."""
    extra = pd.DataFrame(
        {
            "lead_id": ["L1", "L9", "L2"],
            "occurred_at": [CUTOFF - DAY, CUTOFF - DAY, CUTOFF],
            "event_type": ["sales_call", "page_view", "page_view"],
            "value": [np.nan] * 3,
        }
    )
    events = pd.concat([EVENTS, extra], ignore_index=True)
    cutoffs = [CUTOFF, CUTOFF + pd.Timedelta(nanoseconds=500)]
    spine = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"] * (2 if several_cutoffs else 1),
            "cutoff_time": cutoffs * (2 if several_cutoffs else 1),
        }
    )
    if several_cutoffs:
        spine.loc[2:, "cutoff_time"] = [CUTOFF + 3 * DAY, CUTOFF - 2 * DAY - SECOND]
    spine.loc[len(spine)] = ["L3", CUTOFF]  # a lead without events
    stored = events.astype({"occurred_at": "datetime64[ns, UTC]"})
    loaded = events.astype({"lead_id": "category", "event_type": "category", "occurred_at": f"datetime64[{unit}, UTC]"})
    expected, got = features_for(spine, events=stored), features_for(spine, events=loaded)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert expected["events_page_view_count_7d"].tolist()[:2] == [0, 1]  # L2's view at CUTOFF is before CUTOFF+500ns
