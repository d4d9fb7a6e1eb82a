"""`backtest --level opportunity`: each step trains on the deal training set `train --level opportunity` would have
built on the step's date from the CRM as it was then, nothing later; its test rows are the final set's."""

import pandas as pd
import pytest

from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import CrmData, load_crm
from leadscore.pipelines.verbs.backtest import as_of_steps, opportunity_steps, step_rows
from leadscore.pipelines.verbs.opportunities import opportunity_settings, opportunity_training_set

STEP = pd.Timestamp("2025-05-01", tz="UTC")


def known_at(tables: dict[str, pd.DataFrame], at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The CRM as an export taken on `at` would hold it: later leads, deals, events and history rows absent, deals
    closed later still open."""
    opps = tables["opportunities"]
    opps = opps[opps["created_at"] <= at].copy()
    later = opps["closed_at"] > at
    opps.loc[later, "status"] = "open"
    opps.loc[later, "closed_at"] = pd.NaT
    history = tables["opportunity_history"]
    return {
        **tables,
        "leads": tables["leads"][tables["leads"]["created_at"] <= at].reset_index(drop=True),
        "opportunities": opps.reset_index(drop=True),
        "events": tables["events"][tables["events"]["occurred_at"] <= at].reset_index(drop=True),
        "opportunity_history": history[history["changed_at"] <= at].reset_index(drop=True),
    }


@pytest.fixture(scope="module")
def step(sample_project):
    settings = load_settings(sample_project)
    data = load_crm(settings)
    level, final = opportunity_steps(settings, data)
    grown, steps = as_of_steps(level.settings, data, final, start=STEP, every=pd.Timedelta(days=90), level=level)
    return settings, data, final, grown, steps[0]


def test_the_step_trains_on_the_deal_training_set_of_the_crm_as_known_then(step):
    settings, data, _, grown, first = step
    rows = step_rows(grown, first).frame
    then = opportunity_training_set(opportunity_settings(settings), CrmData(known_at(data.tables, STEP), as_of=STEP))
    assert len(rows) > 100 and rows["converted"].nunique() == 2
    pd.testing.assert_frame_equal(rows, then.frame, check_dtype=False)


def test_the_step_tests_on_the_final_rows_of_its_period(step):
    _, _, final, grown, first = step
    tested = grown.frame.iloc[first.test]
    assert tested["cutoff_time"].between(STEP, STEP + pd.Timedelta(days=89, hours=23)).all()
    pd.testing.assert_frame_equal(tested, final.frame.iloc[first.test])
    trained = step_rows(grown, first).frame
    horizon = pd.Timedelta(days=opportunity_settings(step[0]).spine.horizon_days)
    assert (trained["cutoff_time"] + horizon <= STEP).all()  # every label it learns from was known at the step
