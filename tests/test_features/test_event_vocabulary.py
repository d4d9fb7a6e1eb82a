"""Only event types the vocabulary knows build features: the contract's and those the config declares.

A CRM's notes, tasks and any other record the config does not name are kept by validation (counted in a warning
that says they feed no feature); these tests hold the builders to that message.
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.features.behavioral import decayed_event_count
from leadscore.features.build import build_features
from leadscore.features.context import FeatureContext, FeatureParams
from leadscore.features.schemas import EVENT_TYPES, SALES_TOUCH_EVENTS, event_type_key

CUTOFF = pd.Timestamp("2025-03-01", tz="UTC")
DAY = pd.Timedelta(days=1)
LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2"],
        "created_at": pd.to_datetime(["2024-12-01", "2025-01-15"], utc=True),
        "account_id": ["A1", "A1"],
        "job_title": ["VP Sales", "Engineer"],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O1"],
        "lead_id": ["L2"],
        "created_at": [CUTOFF - 20 * DAY],
        "closed_at": [CUTOFF + 10 * DAY],
        "status": ["won"],
    }
)
SPINE = pd.DataFrame({"lead_id": ["L1", "L2", "L1"], "cutoff_time": [CUTOFF, CUTOFF, CUTOFF + 20 * DAY]})
# a declared custom type: weighted, high-intent, and in a grade category
PARAMS = FeatureParams(
    event_weights={"Webinar Registration": 7.0},
    high_intent_events=("pricing_page_view", "demo_request", "webinar_registration"),
    declared_events=("trial_extended",),
)
KNOWN = {*PARAMS.event_types, *SALES_TOUCH_EVENTS}


def events(rows, *, categorical: bool = False) -> pd.DataFrame:
    """rows: (lead, days before CUTOFF, type)."""
    frame = pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "occurred_at": [CUTOFF - r[1] * DAY for r in rows],
            "event_type": [r[2] for r in rows],
            "value": 1.0,
        }
    ).astype({"occurred_at": "datetime64[ns, UTC]"})
    return frame.astype({"event_type": "category", "lead_id": "category"}) if categorical else frame


BASE = [("L1", 40, "page_view"), ("L1", 3, "pricing_page_view"), ("L2", 12, "email_open"), ("L1", -5, "demo_request")]


def features(rows, *, categorical: bool = False, params: FeatureParams = PARAMS) -> pd.DataFrame:
    return build_features(
        SPINE, leads=LEADS, events=events(rows, categorical=categorical), opportunities=OPPS, params=params
    )


def test_the_vocabulary_is_the_contract_then_the_declared_types_in_name_order():
    assert PARAMS.event_types == (*EVENT_TYPES, "trial_extended", "webinar_registration")
    # a sales touch never joins the vocabulary, whatever the config says
    assert "meeting" not in FeatureParams(declared_events=("meeting",)).event_types


def test_a_note_the_day_before_the_cutoff_changes_no_feature():
    alone = build_features(
        SPINE.iloc[:1], leads=LEADS, events=events([("L1", 40, "page_view")]), opportunities=OPPS, params=PARAMS
    )
    noted = build_features(
        SPINE.iloc[:1],
        leads=LEADS,
        events=events([("L1", 40, "page_view"), ("L1", 1, "note")]),
        opportunities=OPPS,
        params=PARAMS,
    )
    # before: a NOTE moved the days since the last activity from 40 to 1 and the active days from 0 to 1
    assert noted["events_days_since_last"].iloc[0] == 40.0
    assert noted["events_active_days_30d"].iloc[0] == 0.0
    assert np.isnan(noted["events_days_since_last_high_intent"].iloc[0])
    pd.testing.assert_frame_equal(noted, alone)


unknown_type = st.one_of(
    st.sampled_from(["note", "NOTE", "task", "Task", "cadence", "incoming_email", "chat", "sales_call", "meeting"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_ -", min_size=1, max_size=12),
).filter(lambda t: t not in KNOWN or t in SALES_TOUCH_EVENTS)
unknown_type = unknown_type.filter(lambda t: event_type_key(t) not in PARAMS.event_types)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    added=st.lists(
        st.tuples(st.sampled_from(["L1", "L2"]), st.integers(-30, 120), unknown_type), min_size=1, max_size=12
    ),
    categorical=st.booleans(),
)
def test_events_of_types_outside_the_vocabulary_change_no_feature_column(added, categorical):
    before = features(BASE, categorical=categorical)
    after = features(BASE + added, categorical=categorical)
    assert list(after.columns) == list(before.columns)
    for column in before.columns:
        pd.testing.assert_series_equal(after[column], before[column], obj=column)


def test_a_declared_custom_type_has_its_own_code_weight_and_high_intent_and_matches_no_other_type():
    rows = [("L1", 40, "page_view"), ("L1", 2, "webinar_registration"), ("L1", 1, "note"), ("L1", 1, "chat")]
    row = build_features(
        SPINE.iloc[:1],
        leads=LEADS,
        events=events(rows),
        opportunities=OPPS,
        params=PARAMS,
        feature_names=[
            "engagement_decayed_score",
            "events_days_since_last_high_intent",
            "events_days_since_last",
            "events_count_30d",
            "events_active_days_30d",
        ],
    ).iloc[0]
    # its weight from the config (declared as "Webinar Registration": compared by meaning), decayed over 2 days
    assert row["engagement_decayed_score"] == pytest.approx(1.0 * 2 ** (-40 / 14) + 7.0 * 2 ** (-2 / 14))
    # high intent 2 days ago: the notes and chats of the day after are not the custom type
    assert row["events_days_since_last_high_intent"] == 2.0
    assert row["events_days_since_last"] == 2.0
    assert (row["events_count_30d"], row["events_active_days_30d"]) == (1.0, 1.0)


def test_a_grade_category_counts_its_custom_type_and_nothing_else():
    context = FeatureContext(
        SPINE.iloc[:1],
        leads=LEADS,
        events=events([("L1", 14, "trial_extended"), ("L1", 1, "note"), ("L1", 1, "trial extended x")]),
        opportunities=OPPS,
        params=PARAMS,
    )
    counted = decayed_event_count(context, ("trial_extended",), half_life_days=14.0)
    np.testing.assert_allclose(counted, [0.5])
    assert decayed_event_count(context, ("never_declared",), half_life_days=14.0).tolist() == [0.0]


def test_without_the_declaration_the_custom_type_feeds_nothing():
    rows = [("L1", 40, "page_view"), ("L1", 2, "webinar_registration")]
    plain = build_features(
        SPINE.iloc[:1], leads=LEADS, events=events(rows), opportunities=OPPS, params=FeatureParams()
    ).iloc[0]
    assert plain["events_days_since_last"] == 40.0
    assert plain["engagement_decayed_score"] == pytest.approx(2 ** (-40 / 14))
