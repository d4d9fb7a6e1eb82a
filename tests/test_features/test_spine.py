"""Labels, censoring and cutoffs on a hand-made CRM with known answers."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.spine import (
    CutoffPolicy,
    build_spine,
    candidate_cutoffs,
    label,
    lead_weights,
    scoring_spine,
    thin_snapshots,
)

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
POLICY = CutoffPolicy(policy="fixed_delay", delay_days=7, horizon_days=30)
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
    result = label(spine, OPPS, horizon=pd.Timedelta(days=30), data_end=ts("2025-03-03"))
    assert result.iloc[0] == 0.0
    assert result.iloc[1] == 1.0
    # a horizon ending exactly at the data end is fully observed; one second later it is not
    assert label(spine, OPPS, horizon=pd.Timedelta(days=30), data_end=ts("2025-02-01")).iloc[1] == 1.0
    assert pd.isna(label(spine, OPPS, horizon=pd.Timedelta(days=30), data_end=ts("2025-01-31 23:59:59")).iloc[1])


def test_rows_whose_horizon_runs_past_the_data_end_are_censored_won_lost_or_open_alike():
    # L1 won on 02-01, L2 lost on 01-20, L3 nothing yet: all inside a horizon that ends after data_end
    spine = pd.DataFrame({"lead_id": ["L1", "L2", "L3"], "cutoff_time": [ts("2025-01-08")] * 3})
    result = label(spine, OPPS, horizon=pd.Timedelta(days=90), data_end=ts("2025-02-15"))
    assert result.isna().all()
    # once the horizon is over, the same rows are labelled from what happened inside it
    result = label(spine, OPPS, horizon=pd.Timedelta(days=30), data_end=ts("2025-02-15"))
    assert result.tolist() == [1.0, 0.0, 0.0]


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


def test_snapshots_cover_the_whole_open_life_and_every_lead_weighs_the_same():
    leads = pd.DataFrame({"lead_id": ["OLD", "NEW"], "created_at": [ts("2023-01-01"), ts("2025-04-01")]})
    policy = CutoffPolicy(delay_days=7, every_days=30, max_snapshots=4, horizon_days=30)
    as_of = ts("2025-07-01")
    candidates = candidate_cutoffs(leads, policy, as_of=as_of)
    old = candidates.loc[candidates.lead_id == "OLD", "cutoff_time"]
    assert len(old) == 31 and old.max() == ts("2025-06-26")
    spine, stats = build_spine(leads, OPPS.iloc[:0], policy, as_of=as_of)
    # OLD: 4 of its 31 open cutoffs drawn (the 2025-06-26 one would be censored); NEW: cutoffs 04-08 and 05-08
    # observed, 06-07 censored
    sizes = spine.groupby("lead_id").size().to_dict()
    assert stats.thinned == 27 and stats.leads == 2
    assert sizes["NEW"] == 2 and sizes["OLD"] == 4 - (stats.censored - 1)
    totals = spine.groupby("lead_id")["sample_weight"].sum()
    np.testing.assert_allclose(totals.to_numpy(), [1.0, 1.0])  # every lead counts 1 in total
    # the draw is spread over the lead's life, not its first months: the oldest lead has rows older than a year
    assert (spine.loc[spine.lead_id == "OLD", "cutoff_time"] > ts("2024-01-01")).any()


def test_max_age_days_stops_the_snapshots():
    leads = pd.DataFrame({"lead_id": ["OLD"], "created_at": [ts("2023-01-01")]})
    policy = CutoffPolicy(delay_days=7, every_days=30, max_snapshots=50, horizon_days=30, max_age_days=100)
    cutoffs = candidate_cutoffs(leads, policy, as_of=ts("2025-07-01"))["cutoff_time"]
    assert cutoffs.tolist() == [ts("2023-01-08"), ts("2023-02-07"), ts("2023-03-09"), ts("2023-04-08")]


def test_thinning_is_seeded_and_keeps_at_most_the_maximum_per_lead():
    spine = pd.DataFrame(
        {
            "lead_id": ["A"] * 10 + ["B"] * 2,
            "cutoff_time": [ts("2025-01-01") + pd.Timedelta(days=30 * i) for i in range(10)] * 1
            + [ts("2025-01-01"), ts("2025-02-01")],
        }
    )
    keep = thin_snapshots(spine, max_snapshots=3, seed=0)
    assert keep[:10].sum() == 3 and keep[10:].all()
    np.testing.assert_array_equal(keep, thin_snapshots(spine, max_snapshots=3, seed=0))
    # over many seeds, the first and the last cutoff of A are kept about equally often (no position preference)
    kept = np.array([thin_snapshots(spine, max_snapshots=3, seed=s)[:10] for s in range(300)])
    assert abs(kept[:, 0].mean() - kept[:, 9].mean()) < 0.12


def test_lead_weights_split_each_lead_evenly():
    weights = lead_weights(pd.Series(["A", "A", "A", "B"]))
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3, 1 / 3, 1.0])
