"""Account roll-up maths, the account grade from the lead rules, and the open-lead list, with exact values."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.accounts import AccountContext
from leadscore.models.account import grade_accounts, leads_by_score, rollup_probability
from leadscore.models.grade_rules import GradeRules


def test_rollup_is_one_minus_the_product_of_the_complements():
    p = np.array([0.5, 0.2, 0.1, 1.0, 0.3])
    row = np.array([0, 0, 1, 2, 0])
    got = rollup_probability(p, row, 4)
    # row 0: 1 - 0.5 x 0.8 x 0.7; row 1: 0.1; row 2: a certain lead; row 3: no open lead
    np.testing.assert_allclose(got, [1 - 0.5 * 0.8 * 0.7, 0.1, 1.0, 0.0], rtol=1e-12)


def test_rollup_of_one_lead_is_its_probability():
    p = np.array([0.0, 0.37, 0.999])
    np.testing.assert_allclose(rollup_probability(p, np.arange(3), 3), p, rtol=1e-12)


def test_open_leads_are_listed_best_score_first_ties_by_id():
    lead_ids = pd.Series(["L3", "L1", "L2", "L9"], dtype="string")
    accounts = pd.Series([0, 0, 0, 1])
    listed = leads_by_score(lead_ids, accounts, pd.Series([40, 87, 87, 12]))
    assert listed.to_dict() == {0: "L1 (87); L2 (87); L3 (40)", 1: "L9 (12)"}
    assert leads_by_score(lead_ids, accounts, None).to_dict() == {0: "L1; L2; L3", 1: "L9"}


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_account_grade_takes_the_best_fit_and_sums_engagement_over_contacts():
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "created_at": [ts("2025-01-01")] * 2,
            "account_id": ["A", "A"],
            "seniority": ["c_level", "individual"],
            "email": ["a@corp.com", "b@corp.com"],
        }
    )
    cutoff = ts("2025-03-01")
    # two pricing-page views a day before the cutoff, one per contact: 25 points each in the lead rules
    events = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "occurred_at": [cutoff - pd.Timedelta(days=1)] * 2,
            "event_type": ["pricing_page_view"] * 2,
            "value": [1.0, 1.0],
        }
    )
    never = pd.Series([], dtype="datetime64[ns, UTC]")
    opps = pd.DataFrame({"opportunity_id": [], "lead_id": [], "created_at": never, "closed_at": never, "status": []})
    context = AccountContext(
        pd.DataFrame({"account_id": ["A"], "cutoff_time": [cutoff]}), leads=leads, events=events, opportunities=opps
    )
    rules = GradeRules()
    graded = grade_accounts(context, rules)
    # fit: c_level 30 % x 100 + business e-mail 15 % x 100 + unknown country 10 % x 40 = 49 (the individual: 23.5)
    assert graded["fit_points"].iloc[0] == pytest.approx(49.0)
    assert graded["fit_grade"].iloc[0] == "C"
    decayed = 2 * 2 ** (-1 / rules.engagement.half_life_days)  # two views, one day old, summed over contacts
    high_intent = rules.engagement.categories["high_intent"]
    expected = high_intent.weight / 100 * min(100, decayed * high_intent.points_per_event)
    assert graded["engagement_points"].iloc[0] == pytest.approx(round(expected, 1))
    assert graded["cell"].iloc[0] == "C3"  # 17.3 points: engagement 3 (>= 10); one contact alone would be 4
