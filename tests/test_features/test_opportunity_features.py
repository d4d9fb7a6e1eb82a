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
