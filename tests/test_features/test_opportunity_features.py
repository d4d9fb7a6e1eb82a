"""Opportunity features read the deal's history point in time: a stage, amount or close date is seen only from the
first cutoff strictly after it was set; without a history only what is fixed at creation is read."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.opportunities import (
    OpportunityContext,
    build_opportunity_features,
    opportunity_feature_specs,
)

UTC = "UTC"
T0 = pd.Timestamp("2025-01-01", tz=UTC)
DEAL_FEATURES = [n for n, s in opportunity_feature_specs().items() if s.group == "deal"]


def at(days: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days)


DEALS = pd.DataFrame(
    {
        "opportunity_id": ["O1", "O2"],
        "lead_id": ["L1", "L2"],
        "created_at": [at(0), at(0)],
        "closed_at": pd.to_datetime([None, None], utc=True),
        "status": ["open", "open"],
    }
)
LEADS = pd.DataFrame({"lead_id": ["L1", "L2"], "created_at": [at(-10), at(-10)]})


def history(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    ids, fields, values, days = zip(*rows, strict=True)
    return pd.DataFrame(
        {"opportunity_id": ids, "field": fields, "value": values, "changed_at": [at(d) for d in days]}
    ).astype({"value": object})


HISTORY = history(
    [
        ("O1", "StageName", "Qualification", 0),  # a vendor's field name, read as `stage`
        ("O1", "amount", "1000", 0),
        ("O1", "close_date", "2025-02-01", 0),
        ("O1", "stage", "Proposal", 10),
        ("O1", "amount", "800", 12),
        ("O1", "close_date", "2025-02-20", 12),  # slipped later
        ("O1", "close_date", "2025-02-10", 14),  # pulled in: not a slip
        ("O1", "close_date", "2025-03-01", 20),  # at the cutoff below: not yet known
        ("O1", "stage", "Negotiation", 20),
    ]
)


def features(spine_rows, history_table, names=None):
    spine = pd.DataFrame({"opportunity_id": [r[0] for r in spine_rows], "cutoff_time": [at(r[1]) for r in spine_rows]})
    context = OpportunityContext(spine, opportunities=DEALS, leads=LEADS, history=history_table)
    return build_opportunity_features(context, names or DEAL_FEATURES)


def test_each_deal_field_as_it_stood_before_the_cutoff():
    got = features([("O1", 20), ("O1", 5), ("O2", 20)], HISTORY)
    expected = pd.DataFrame(
        {
            "deal_age_days": [20.0, 5.0, 20.0],
            "deal_stage": pd.array(["proposal", "qualification", None], dtype="string"),
            "deal_days_in_stage": [10.0, 5.0, np.nan],
            "deal_stage_changes": [1.0, 0.0, 0.0],
            "deal_days_since_update": [6.0, 5.0, np.nan],
            "deal_amount": [800.0, 1000.0, np.nan],
            "deal_amount_change_pct": [-20.0, 0.0, np.nan],
            "deal_amount_changes": [1.0, 0.0, 0.0],
            "deal_close_date_slips": [1.0, 0.0, 0.0],
            "deal_days_to_close_date": [(pd.Timestamp("2025-02-10", tz=UTC) - at(20)).days, 26.0, np.nan],
        }
    )
    got["deal_stage"] = got["deal_stage"].astype("string")
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)


def test_without_a_history_only_what_is_fixed_at_creation_is_read():
    specs = opportunity_feature_specs(with_history=False)
    deal = [n for n, s in specs.items() if s.group == "deal"]
    assert deal == ["deal_age_days"]
    assert "deal_amount" not in specs and "deal_stage" not in specs
    got = features([("O1", 3)], None, ["deal_age_days", "deal_stage"])
    assert got["deal_age_days"].tolist() == [3.0] and got["deal_stage"].isna().all()


FIELDS = ["stage", "amount", "close_date"]
VALUES = {"stage": ["a", "b", "c"], "amount": ["100", "250", "400"], "close_date": ["2025-02-01", "2025-03-01"]}
change = st.tuples(
    st.sampled_from(["O1", "O2"]), st.sampled_from(FIELDS), st.integers(0, 2), st.integers(min_value=0, max_value=40)
)


def _table(changes) -> pd.DataFrame:
    rows = [(deal, field, VALUES[field][i % len(VALUES[field])], day) for deal, field, i, day in changes]
    return history(rows) if rows else history([("O1", "stage", "a", 0)]).iloc[:0]


@settings(max_examples=60, deadline=None)
@given(st.lists(change, max_size=12), st.lists(change, min_size=1, max_size=6), st.integers(1, 40))
def test_a_change_at_or_after_the_cutoff_is_invisible(before, later, cutoff):
    """Adding or rewriting history rows dated at or after a row's cutoff leaves its deal features unchanged, and the
    stage read is the latest set strictly before the cutoff (checked against a plain loop)."""
    base = _table(before)
    late = _table([(d, f, i, cutoff + day % 5) for d, f, i, day in later])  # at the cutoff or up to 4 days after
    rewritten = base.assign(value=np.where(base["changed_at"] >= at(cutoff), "rewritten", base["value"]))
    rows = [("O1", cutoff), ("O2", cutoff)]
    plain = features(rows, base)
    pd.testing.assert_frame_equal(plain, features(rows, pd.concat([base, late], ignore_index=True)))
    pd.testing.assert_frame_equal(plain, features(rows, rewritten))
    for position, (deal, _) in enumerate(rows):
        seen = base[(base["opportunity_id"] == deal) & (base["field"] == "stage") & (base["changed_at"] < at(cutoff))]
        latest = seen.sort_values("changed_at", kind="stable")["value"].iloc[-1] if len(seen) else None
        assert (plain["deal_stage"].iloc[position] if pd.notna(plain["deal_stage"].iloc[position]) else None) == latest


# -- the company's activity and the lead's last score ---------------------------------------------------------------
# O1 is L1's deal at company A1, whose other contacts are L3 (known since day -20) and L4 (created on day 10); O2 is
# L2's deal at a company of its own with no other contact; O3 has no lead in the table and no account.
ACCOUNT_DEALS = pd.DataFrame(
    {
        "opportunity_id": ["O1", "O2", "O3"],
        "lead_id": ["L1", "L2", "L9"],
        "created_at": [at(0), at(0), at(0)],
        "closed_at": pd.to_datetime([None, None, None], utc=True),
        "status": ["open", "open", "open"],
    }
)
ACCOUNT_LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3", "L4"],
        "created_at": [at(-30), at(-30), at(-20), at(10)],
        "account_id": ["A1", "A2", "A1", "A1"],
    }
)
ACTIVITY = ["deal_account_events_7d", "deal_account_events_30d", "deal_account_events_90d", "account_contacts"]


def events(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "occurred_at": pd.to_datetime([at(r[1]) for r in rows], utc=True),
            "event_type": "page_view",
            "value": np.nan,
        }
    )


def company_features(spine_rows, events_table, *, leads=ACCOUNT_LEADS, scores=None, names=ACTIVITY):
    spine = pd.DataFrame({"opportunity_id": [r[0] for r in spine_rows], "cutoff_time": [at(r[1]) for r in spine_rows]})
    context = OpportunityContext(
        spine, opportunities=ACCOUNT_DEALS, leads=leads, events=events_table, history=None, scores=scores
    )
    return build_opportunity_features(context, names)


def test_the_company_activity_counts_every_known_contact_in_each_window():
    table = events([("L1", 14), ("L3", 19), ("L3", 5), ("L3", -50), ("L4", 18), ("L2", 19), ("L3", 20)])
    got = company_features([("O1", 20), ("O2", 20), ("O3", 20)], table)
    expected = pd.DataFrame(
        {
            # O1 at day 20: L1 (day 14) and L3 (days 19, 5; day -50 is 70 days back; day 20 is the cutoff itself);
            # L4 was created on day 10 but its events count once it is known, the contact being created before
            "deal_account_events_7d": [3.0, 1.0, 0.0],
            "deal_account_events_30d": [4.0, 1.0, 0.0],
            "deal_account_events_90d": [5.0, 1.0, 0.0],
            "account_contacts": [3.0, 1.0, 0.0],
        }
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # on day 8, L4 does not exist yet and is no contact: L3's events of days 5 and -50
    early = company_features([("O1", 8)], table)
    assert early[ACTIVITY].iloc[0].tolist() == [1.0, 1.0, 2.0, 2.0]


contact_event = st.tuples(st.sampled_from(["L1", "L2", "L3", "L4"]), st.integers(-100, 40))


@settings(max_examples=60, deadline=None)
@given(st.lists(contact_event, max_size=15), st.lists(contact_event, min_size=1, max_size=6), st.integers(1, 40))
def test_no_company_activity_at_or_after_the_cutoff_is_seen(before, later, cutoff):
    """Events at or after a row's cutoff, and a contact created at it, leave the company features unchanged."""
    base = events(before) if before else events([("L1", -500)])
    late = events([(lead, cutoff + day % 5) for lead, day in later])
    leads = pd.concat(
        [ACCOUNT_LEADS, pd.DataFrame({"lead_id": ["L5"], "created_at": [at(cutoff)], "account_id": ["A1"]})]
    )
    with_l5 = pd.concat([late, events([("L5", cutoff + 1)])], ignore_index=True)
    rows = [("O1", cutoff), ("O2", cutoff)]
    plain = company_features(rows, base)
    pd.testing.assert_frame_equal(plain, company_features(rows, pd.concat([base, late], ignore_index=True)))
    pd.testing.assert_frame_equal(plain, company_features(rows, pd.concat([base, with_l5]), leads=leads))
    contacts = ACCOUNT_LEADS[(ACCOUNT_LEADS["account_id"] == "A1") & (ACCOUNT_LEADS["created_at"] < at(cutoff))]
    seen = base[base["lead_id"].isin(contacts["lead_id"]) & base["occurred_at"].between(at(cutoff - 30), at(cutoff))]
    assert plain["deal_account_events_30d"].iloc[0] == (seen["occurred_at"] < at(cutoff)).sum()


def scores(rows: list[tuple[str, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "as_of": pd.to_datetime([at(r[1]) for r in rows], utc=True),
            "score": [r[2] for r in rows],
        }
    )


def test_runs_of_one_time_are_read_in_the_score_history_order():
    """Two production runs of the same day (a rerun with a newer version): the later version's score is read, in
    whichever order the history lists them."""
    table = scores([("L1", -3, 30), ("L1", -3, 80)]).assign(model_name="m", model_version=["2", "1"])
    got = company_features([("O1", 5)], None, scores=table, names=["lead_last_score"])
    assert got["lead_last_score"].tolist() == [30.0]


def test_the_lead_last_score_is_the_latest_run_before_the_deal_was_opened():
    table = scores([("L1", -5, 40), ("L1", -1, 60), ("L1", 0, 90), ("L1", 3, 99), ("L2", 2, 70), ("L3", -1, 10)])
    got = company_features([("O1", 20), ("O2", 20), ("O3", 20)], None, scores=table, names=["lead_last_score"])
    # O1: the run on day -1 (day 0 is the deal's creation itself); O2 was scored only after its deal opened; O3's
    # lead was never scored
    assert got["lead_last_score"].tolist()[0] == 60.0 and got["lead_last_score"].iloc[1:].isna().all()
    none = company_features([("O1", 20)], None, scores=None, names=["lead_last_score"])
    assert none["lead_last_score"].isna().all()
    assert "lead_last_score" not in opportunity_feature_specs(with_scores=False)


run = st.tuples(st.sampled_from(["L1", "L2"]), st.integers(-30, 30), st.integers(1, 99))


@settings(max_examples=60, deadline=None)
@given(st.lists(run, max_size=12), st.lists(run, min_size=1, max_size=6), st.integers(0, 30))
def test_no_score_from_the_deal_creation_on_is_seen(before, later, cutoff):
    """Runs at or after the deal's creation (day 0) never change the last score, whatever the cutoff; the value is
    the latest run strictly before it (checked against a plain loop)."""
    base = scores(before)
    late = scores([(lead, day % 31, score) for lead, day, score in later])  # day 0 or later
    rows = [("O1", cutoff), ("O2", cutoff)]
    plain = company_features(rows, None, scores=base, names=["lead_last_score"])
    with_late = company_features(rows, None, scores=pd.concat([base, late]), names=["lead_last_score"])
    pd.testing.assert_frame_equal(plain, with_late)
    for position, lead in enumerate(["L1", "L2"]):
        seen = base[(base["lead_id"] == lead) & (base["as_of"] < at(0))].sort_values("as_of", kind="stable")
        expected = float(seen["score"].iloc[-1]) if len(seen) else None
        value = plain["lead_last_score"].iloc[position]
        assert (None if np.isnan(value) else value) == expected
