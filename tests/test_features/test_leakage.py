"""Property: nothing dated at or after a cutoff can change the features of that cutoff's rows."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.features.build import build_features
from leadscore.features.schemas import EVENT_TYPES, SALES_TOUCH_EVENTS

CUTOFF = pd.Timestamp("2025-03-01", tz="UTC")
TYPES = list(EVENT_TYPES)
LEAD_IDS = ["L0", "L1", "L2"]

event = st.tuples(
    st.integers(0, 2),  # lead
    st.integers(-120 * 86_400, 40 * 86_400),  # seconds from the cutoff
    st.integers(0, len(TYPES) - 1),
    st.integers(1, 5),  # value
)
future_event = st.tuples(
    st.integers(0, 2), st.integers(0, 40 * 86_400), st.integers(0, len(TYPES) - 1), st.integers(1, 5)
)


def events_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [LEAD_IDS[r[0]] for r in rows],
            "occurred_at": [CUTOFF + pd.Timedelta(seconds=r[1]) for r in rows],
            "event_type": [TYPES[r[2]] for r in rows],
            "value": [float(r[3]) for r in rows],
        }
    ).astype({"occurred_at": "datetime64[ns, UTC]"})


LEADS = pd.DataFrame(
    {
        "lead_id": LEAD_IDS,
        "created_at": pd.to_datetime(["2024-10-01", "2024-12-15", "2025-02-27"], utc=True),
        "account_id": ["A1", "A1", "A2"],
        "job_title": ["VP Sales", None, "Engineer"],
    }
)
ACCOUNTS = pd.DataFrame({"account_id": ["A1", "A2"], "industry": ["software", "retail"], "employee_count": [10, 500]})
PAST_OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O9"],
        "lead_id": ["L9"],
        "created_at": [CUTOFF - pd.Timedelta(days=60)],
        "closed_at": [CUTOFF - pd.Timedelta(days=30)],
        "status": ["won"],
    }
)
OLD_LEAD = pd.DataFrame(
    {"lead_id": ["L9"], "created_at": [pd.Timestamp("2024-06-01", tz="UTC")], "account_id": ["A1"], "job_title": [None]}
)
SPINE = pd.DataFrame({"lead_id": LEAD_IDS, "cutoff_time": [CUTOFF] * 3})


def features(leads, events, opps) -> pd.DataFrame:
    return build_features(SPINE, leads=leads, accounts=ACCOUNTS, events=events, opportunities=opps)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.lists(event, max_size=40),
    appended=st.lists(future_event, min_size=1, max_size=15),
    retype=st.integers(0, len(TYPES) - 1),
    late_close_days=st.integers(0, 30),
    late_status=st.sampled_from(["won", "lost"]),
    new_lead_days=st.integers(0, 30),
)
def test_rows_at_or_after_the_cutoff_never_change_features(
    past, appended, retype, late_close_days, late_status, new_lead_days
):
    leads = pd.concat([LEADS, OLD_LEAD], ignore_index=True)
    before = features(leads, events_frame(past), PAST_OPPS)

    changed = events_frame(past)
    future = changed["occurred_at"] >= CUTOFF
    changed.loc[future, "event_type"] = TYPES[retype]  # change rows dated at or after the cutoff
    changed.loc[future, "value"] = 99.0
    changed = pd.concat([changed, events_frame(appended)], ignore_index=True)  # and append new ones
    late_opp = pd.DataFrame(
        {
            "opportunity_id": ["O10"],
            "lead_id": ["L9"],
            "created_at": [CUTOFF - pd.Timedelta(days=5)],
            "closed_at": [CUTOFF + pd.Timedelta(days=late_close_days)],
            "status": [late_status],
        }
    )
    new_lead = pd.DataFrame(
        {
            "lead_id": ["L8"],
            "created_at": [CUTOFF + pd.Timedelta(days=new_lead_days)],
            "account_id": ["A1"],
            "job_title": [None],
        }
    )
    after = features(
        pd.concat([leads, new_lead], ignore_index=True), changed, pd.concat([PAST_OPPS, late_opp], ignore_index=True)
    )
    pd.testing.assert_frame_equal(before, after)


def test_the_property_test_would_catch_an_inclusive_cutoff():
    """Sanity check of the test itself: an event exactly at the cutoff is the classic off-by-one leak."""
    at_cutoff = events_frame([(0, 0, TYPES.index("demo_request"), 1)])
    with_it = features(LEADS, at_cutoff, PAST_OPPS.iloc[:0])
    without = features(LEADS, at_cutoff.iloc[:0], PAST_OPPS.iloc[:0])
    pd.testing.assert_frame_equal(with_it, without)
    just_before = events_frame([(0, -1, TYPES.index("demo_request"), 1)])
    assert not features(LEADS, just_before, PAST_OPPS.iloc[:0]).equals(without)
    assert np.isclose(features(LEADS, just_before, PAST_OPPS.iloc[:0])["events_demo_request_count_7d"].iloc[0], 1)


SALES_TYPES = list(SALES_TOUCH_EVENTS)
sales_touch = st.tuples(
    st.integers(0, 2), st.integers(-120 * 86_400, 40 * 86_400), st.integers(0, len(SALES_TYPES) - 1)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(past=st.lists(event, max_size=30), touches=st.lists(sales_touch, min_size=1, max_size=15))
def test_sales_touches_never_become_features(past, touches):
    """Sales' own calls, e-mails and meetings, even long before the cutoff, leave every feature unchanged."""
    marketing = events_frame(past)
    sales = pd.DataFrame(
        {
            "lead_id": [LEAD_IDS[t[0]] for t in touches],
            "occurred_at": [CUTOFF + pd.Timedelta(seconds=t[1]) for t in touches],
            "event_type": [SALES_TYPES[t[2]] for t in touches],
            "value": np.nan,
        }
    ).astype({"occurred_at": "datetime64[ns, UTC]"})
    before = features(LEADS, marketing, PAST_OPPS)
    after = features(LEADS, pd.concat([marketing, sales], ignore_index=True), PAST_OPPS)
    pd.testing.assert_frame_equal(before, after)


def test_a_sales_touch_would_otherwise_move_recency_features():
    """Sanity check of the test above: the same event under a marketing type does change the features."""
    touch = pd.DataFrame({"lead_id": ["L0"], "occurred_at": [CUTOFF - pd.Timedelta(hours=2)], "value": [np.nan]})
    empty = features(LEADS, events_frame([]), PAST_OPPS)
    as_sales = features(LEADS, touch.assign(event_type="sales_call"), PAST_OPPS)
    as_web = features(LEADS, touch.assign(event_type="page_view"), PAST_OPPS)
    pd.testing.assert_frame_equal(as_sales, empty)
    assert as_web["events_days_since_last"].iloc[0] < 1


# several snapshots of one lead at different cutoffs, as the whole-life spine makes them: a leak across snapshots
# (a later snapshot's data reaching an earlier one) passes a test where every lead shares one cutoff
MULTI_SPINE = pd.DataFrame(
    {
        "lead_id": ["L0", "L0", "L0", "L1", "L1", "L9", "L2"],
        "cutoff_time": [CUTOFF - pd.Timedelta(days=d) for d in (60, 20, 0, 40, -20, 0, -10)],
    }
)


def truncated(events: pd.DataFrame, opps: pd.DataFrame, leads: pd.DataFrame, at: pd.Timestamp):
    """The data as it stood just before `at`: later rows absent, later outcomes still open."""
    opps = opps[opps["created_at"] < at].copy()
    late = opps["closed_at"] >= at
    opps.loc[late, "closed_at"] = pd.NaT
    opps.loc[late, "status"] = "open"
    return events[events["occurred_at"] < at], opps, leads[leads["created_at"] < at]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=40), close_days=st.integers(-50, 30), status=st.sampled_from(["won", "lost"]))
def test_each_snapshot_sees_only_what_was_known_at_its_own_cutoff(events, close_days, status):
    leads = pd.concat([LEADS, OLD_LEAD], ignore_index=True)
    opps = pd.concat(
        [
            PAST_OPPS,
            pd.DataFrame(
                {
                    "opportunity_id": ["O10"],
                    "lead_id": ["L0"],
                    "created_at": [CUTOFF - pd.Timedelta(days=70)],
                    "closed_at": [CUTOFF + pd.Timedelta(days=close_days)],
                    "status": [status],
                }
            ),
        ],
        ignore_index=True,
    )
    frame = events_frame(events)
    together = build_features(MULTI_SPINE, leads=leads, accounts=ACCOUNTS, events=frame, opportunities=opps)
    for i, row in MULTI_SPINE.iterrows():
        past_events, past_opps, past_leads = truncated(frame, opps, leads, row["cutoff_time"])
        alone = build_features(
            MULTI_SPINE.iloc[[i]], leads=past_leads, accounts=ACCOUNTS, events=past_events, opportunities=past_opps
        )
        pd.testing.assert_frame_equal(together.iloc[[i]].reset_index(drop=True), alone, check_dtype=False)
