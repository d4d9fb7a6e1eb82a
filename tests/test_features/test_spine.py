"""Labels, censoring and cutoffs on a hand-made CRM with known answers."""

import pandas as pd
import pytest

from features.spine import CutoffPolicy, build_spine, candidate_cutoffs, label, scoring_spine

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6"],
        "created_at": [ts("2025-01-01")] * 2 + [ts("2025-03-01"), ts("2025-06-01"), ts("2025-01-01"), ts("2025-01-01")],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O1", "O2", "O5", "O6"],
        "lead_id": ["L1", "L2", "L5", "L6"],
        "created_at": [ts("2025-01-02")] * 4,
        "closed_at": [ts("2025-02-01"), ts("2025-01-20"), ts("2025-01-05"), ts("2025-03-01")],
        "status": ["won", "lost", "won", "won"],
    }
)
POLICY = CutoffPolicy(delay_days=7, horizon_days=30)
AS_OF = ts("2025-07-01")


def test_labels_and_censoring():
    spine, stats = build_spine(LEADS, OPPS, POLICY, as_of=AS_OF)
    got = dict(zip(spine["lead_id"], spine["converted"], strict=True))
    # L1 won inside the horizon; L2 lost inside it; L3 horizon passed without a win; L6 won only after the horizon
    assert got == {"L1": 1, "L2": 0, "L3": 0, "L6": 0}
    # L4: the horizon runs past as_of with no outcome: censored, never a negative
    assert stats.censored == 1 and "L4" not in got
    # L5 closed before its cutoff: not an open lead at that time
    assert stats.closed_before_cutoff == 1
    assert stats.rows == 4 and stats.positives == 1
    assert spine["cutoff_time"].tolist() == [ts("2025-01-08")] * 3 + [ts("2025-03-08")]


def test_horizon_edges_are_half_open():
    spine = pd.DataFrame({"lead_id": ["L1", "L1"], "cutoff_time": [ts("2025-02-01"), ts("2025-01-02")]})
    # a win exactly at cutoff + horizon counts; a win exactly at the cutoff is not in (cutoff, cutoff + horizon]
    result = label(spine, OPPS, horizon=pd.Timedelta(days=30), data_end=ts("2025-01-10"))
    assert pd.isna(result.iloc[0])
    assert result.iloc[1] == 1.0


def test_lost_before_data_end_is_a_negative_even_when_horizon_is_not_over():
    spine = pd.DataFrame({"lead_id": ["L2"], "cutoff_time": [ts("2025-01-08")]})
    result = label(spine, OPPS, horizon=pd.Timedelta(days=90), data_end=ts("2025-02-01"))
    assert result.tolist() == [0.0]


def test_snapshots_every_n_days_while_open_and_not_after_as_of():
    policy = CutoffPolicy(policy="snapshots", delay_days=7, every_days=30, max_snapshots=3, horizon_days=30)
    cutoffs = candidate_cutoffs(LEADS[LEADS.lead_id == "L3"], policy, as_of=ts("2025-04-30"))
    assert cutoffs["cutoff_time"].tolist() == [ts("2025-03-08"), ts("2025-04-07")]
    spine, _ = build_spine(LEADS, OPPS, policy, as_of=AS_OF)
    # L1 closed won on 2025-02-01: snapshots stop there
    assert spine.loc[spine.lead_id == "L1", "cutoff_time"].tolist() == [ts("2025-01-08")]
    assert (spine.groupby("lead_id").size() <= 3).all()


def test_scoring_spine_is_the_open_leads_at_as_of():
    spine = scoring_spine(LEADS, OPPS, as_of=ts("2025-06-15"))
    assert spine["lead_id"].tolist() == ["L3", "L4"]
    assert (spine["cutoff_time"] == ts("2025-06-15")).all()
    # a lead created after as_of does not exist yet
    assert scoring_spine(LEADS, OPPS, as_of=ts("2025-05-01"))["lead_id"].tolist() == ["L3"]


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown cutoff policy"):
        CutoffPolicy(policy="weekly")
