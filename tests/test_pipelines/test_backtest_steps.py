"""Backtest: each step trains on the training set `train` would have built on the step's date, nothing later.

A hand-made CRM: L1 wins on 15 June (after the step of 1 June), L2 stays open all year and is lost in December, L3
wins on 10 April (before the step), L4 arrives in July (after it) and wins on 1 August. Horizon 60 days, a cutoff
every 30 days from the day after creation.
"""

import numpy as np
import pandas as pd
import pytest

from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.training_set import crm_training_set
from leadscore.pipelines.verbs.backtest import as_of_steps, step_rows


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


STEP = ts("2025-06-01")
END = ts("2025-12-31")
LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2", "L3", "L4"],
        "created_at": [ts("2025-01-01"), ts("2025-01-01"), ts("2025-03-01"), ts("2025-07-01")],
        "job_title": ["VP Sales", "Engineer", "CEO", "CTO"],
        "country": ["DE", "US", "FR", "US"],
    }
)
OPPS = pd.DataFrame(
    {
        "opportunity_id": ["O1", "O2", "O3", "O4"],
        "lead_id": ["L1", "L2", "L3", "L4"],
        "created_at": [ts("2025-05-01"), ts("2025-11-01"), ts("2025-03-20"), ts("2025-07-10")],
        "closed_at": [ts("2025-06-15"), ts("2025-12-01"), ts("2025-04-10"), ts("2025-08-01")],
        "status": ["won", "lost", "won", "won"],
        "amount": [10.0, 5.0, 7.0, 3.0],
    }
)
EVENTS = pd.DataFrame(
    {
        "lead_id": ["L1", "L1", "L2", "L3", "L1", "L2"],
        "occurred_at": [
            ts("2025-01-20"),
            ts("2025-03-01"),
            ts("2025-02-10"),
            ts("2025-03-15"),
            ts("2025-06-10"),
            ts("2025-09-01"),
        ],
        "event_type": ["pricing_page_view", "page_view", "email_open", "demo_request", "demo_request", "page_view"],
        "value": np.nan,
    }
)
KEY = ["lead_id", "cutoff_time", "converted", "sample_weight"]


def settings(max_snapshots: int) -> Settings:
    return Settings.model_validate(
        {
            "tables": {"leads": {"path": "l.csv"}, "opportunities": {"path": "o.csv"}},
            "spine": {"delay_days": 1, "every_days": 30, "max_snapshots": max_snapshots, "horizon_days": 60},
        }
    )


def tables_known_at(at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The CRM as an export taken on `at` would hold it: later leads, deals and events absent, later closes open."""
    opps = OPPS[OPPS["created_at"] <= at].copy()
    later = opps["closed_at"] > at
    opps.loc[later, "status"] = "open"
    opps.loc[later, "closed_at"] = pd.NaT
    return {
        "leads": LEADS[LEADS["created_at"] <= at].reset_index(drop=True),
        "opportunities": opps.reset_index(drop=True),
        "events": EVENTS[EVENTS["occurred_at"] <= at].reset_index(drop=True),
    }


def backtest_step(max_snapshots: int, opps: pd.DataFrame = OPPS):
    config = settings(max_snapshots)
    data = CrmData({"leads": LEADS, "opportunities": opps, "events": EVENTS}, as_of=END)
    final = crm_training_set(config, data)
    grown, steps = as_of_steps(config, data, final, start=STEP, every=pd.Timedelta(days=90))
    assert steps[0].label == "2025-06-01"  # L4's one cutoff, on 2 July, is always a test row of the first step
    return final, grown, steps[0]


def test_the_step_trains_on_its_own_view_of_rows_labels_and_weights():
    final, grown, step = backtest_step(max_snapshots=20)
    rows = step_rows(grown, step).frame
    cutoffs = [ts(d) for d in ("2025-01-02", "2025-02-01", "2025-03-03", "2025-04-02")]
    expected = pd.DataFrame(
        {
            # rows whose horizon ended by 1 June, in time order; L3's two rows end on 1 and 31 May
            "lead_id": ["L1", "L2", "L1", "L2", "L3", "L1", "L2", "L3", "L1", "L2"],
            "cutoff_time": [
                cutoffs[0],
                cutoffs[0],
                cutoffs[1],
                cutoffs[1],
                ts("2025-03-02"),
                cutoffs[2],
                cutoffs[2],
                ts("2025-04-01"),
                cutoffs[3],
                cutoffs[3],
            ],
            # L1's win on 15 June labels none of them: every horizon here ended by the step
            "converted": [0, 0, 0, 0, 1, 0, 0, 1, 0, 0],
            # each lead counts 1 over the rows known by then; before: L1 1/6 and L2 1/11, from the final
            # training set, where the lead that stayed open (L2, lost in December) had more rows: outcome knowledge
            "sample_weight": [1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 2, 1 / 4, 1 / 4, 1 / 2, 1 / 4, 1 / 4],
        }
    )
    pd.testing.assert_frame_equal(
        rows[KEY].astype({"converted": "int64"}),
        expected.astype({"cutoff_time": rows["cutoff_time"].dtype}),
        check_dtype=False,
    )
    assert final.frame.groupby("lead_id")["sample_weight"].first().round(4).to_dict() == {
        "L1": 0.1667,
        "L2": 0.0909,
        "L3": 0.5,
        "L4": 1.0,
    }
    # the test rows are the final training set's, at their positions, with their final labels
    tested = grown.frame.iloc[step.test]
    assert tested["cutoff_time"].between(STEP, STEP + pd.Timedelta(days=89)).all()
    pd.testing.assert_frame_equal(tested, final.frame.iloc[step.test])


@pytest.mark.parametrize("max_snapshots", [2, 3, 20])
def test_the_step_training_set_is_the_one_built_from_the_crm_as_known_at_the_step(max_snapshots):
    """Rows, thinning, labels, weights and features: as from an export taken on the step's date."""
    _, grown, step = backtest_step(max_snapshots)
    rows = step_rows(grown, step).frame.drop(columns="row_order")
    then = crm_training_set(settings(max_snapshots), CrmData(tables_known_at(STEP), as_of=STEP)).frame
    pd.testing.assert_frame_equal(rows, then.drop(columns="row_order"), check_dtype=False)


@pytest.mark.parametrize("max_snapshots", [3, 20])
def test_an_outcome_after_the_step_changes_nothing_the_step_trains_on(max_snapshots):
    """L1 lost instead of won; L2 won in July instead of lost in December (so it stays open for fewer cutoffs);
    L4 lost: all after the step."""
    later = OPPS.assign(
        status=["lost", "won", "won", "lost"],
        created_at=OPPS["created_at"].where(OPPS["lead_id"] != "L2", ts("2025-06-20")),
        closed_at=OPPS["closed_at"].where(OPPS["lead_id"] != "L2", ts("2025-07-05")),
    )
    _, grown, step = backtest_step(max_snapshots)
    _, regrown, restep = backtest_step(max_snapshots, opps=later)
    pd.testing.assert_frame_equal(step_rows(grown, step).frame, step_rows(regrown, restep).frame)
