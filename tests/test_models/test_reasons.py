import numpy as np
import pandas as pd

from features.registry import all_features
from models.drift import population_stability, profile, psi
from models.reasons import format_value, reason_text, top_reasons

SPECS = all_features()


def test_reason_text_for_numeric_categorical_boolean_and_missing_values():
    assert reason_text("events_pricing_page_view_count_30d", 4.0, SPECS["events_pricing_page_view_count_30d"]) == (
        "Pricing-page views in the last 30 days: 4"
    )
    assert reason_text("lead_seniority", "vp", SPECS["lead_seniority"]).endswith(": vp")
    assert reason_text("lead_email_is_business", 1.0, SPECS["lead_email_is_business"]) == (
        "The lead signed up with a business (not a free) e-mail domain: yes"
    )
    assert reason_text("account_industry", None, SPECS["account_industry"]) == (
        "Industry of the lead's company: not known"
    )
    assert reason_text("events_days_since_last", np.nan, SPECS["events_days_since_last"]).endswith("not known")
    assert format_value(0.3, SPECS["events_days_since_last"]) == "less than 1 day"
    assert format_value(1.0, SPECS["events_days_since_last"]) == "1 day"
    assert format_value(3.0, SPECS["account_employee_count_log"]) == "about 999 employees"
    assert format_value(83.3333, SPECS["lead_profile_completeness"]) == "83 %"


def test_top_reasons_order_and_sign():
    contributions = pd.DataFrame(
        {
            "lead_age_days": [0.5, -0.1],
            "lead_country": [-0.9, 0.0],
            "events_count_30d": [0.2, 0.3],
            "lead_source": [0.5, -0.4],
            "base_value": [-2.0, -2.0],
        }
    )
    values = pd.DataFrame(
        {
            "lead_age_days": [3.0, 40.0],
            "lead_country": ["US", None],
            "events_count_30d": [2.0, 7.0],
            "lead_source": ["webinar", "paid_search"],
        }
    )
    reasons = top_reasons(contributions, values, SPECS, k=2)
    # equal contributions (0.5) are ordered by feature name; zero contributions are never reasons
    assert (
        reasons.loc[0, "reasons_positive"]
        == "Days since the lead was created: 3 days | Marketing channel the lead came from: webinar"
    )
    assert reasons.loc[0, "reasons_negative"] == "Country of the lead: US"
    assert reasons.loc[1, "reasons_positive"] == "All marketing and product events in the last 30 days: 7"
    assert reasons.loc[1, "reasons_negative"].startswith(
        "Marketing channel the lead came from: paid_search | Days since"
    )


def test_psi_is_zero_on_the_same_population_and_large_on_a_shift():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], 5000)})
    reference = profile(frame, categorical=["c"])
    same = population_stability(reference, frame)
    assert same.max() < 1e-9
    shifted = population_stability(reference, frame.assign(x=frame["x"] + 2, c="z"))
    assert shifted["x"] > 1 and shifted["c"] > 1
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
