import numpy as np
import pandas as pd
import pytest

from leadscore.features.registry import all_features
from leadscore.models.drift import population_stability, profile, psi
from leadscore.models.reasons import format_value, reason_reference, reason_text, top_reasons

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
    # natural units, two significant figures: the model reads log10(employees + 1)
    assert format_value(3.0, SPECS["account_employee_count_log"]) == "about 1,000 employees"
    assert format_value(np.log10(125.0), SPECS["account_employee_count_log"]) == "about 120 employees"
    assert format_value(np.log10(43.0), SPECS["account_employee_count_log"]) == "about 42 employees"
    assert format_value(83.3333, SPECS["lead_profile_completeness"]) == "83 %"
    # lead age is capped at a year by its builder: the cap reads as a bound, not as an exact age
    assert format_value(365.0, SPECS["lead_age_days"]) == "365 days or more"
    assert format_value(364.0, SPECS["lead_age_days"]) == "364 days"


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


PAGE_VIEWS = ["events_page_view_count_7d", "events_page_view_count_30d", "events_page_view_count_90d"]
REFERENCE = {
    "events_page_view_count_7d": {"typical": 0.0, "converting": 2.0},
    "events_page_view_count_30d": {"typical": 1.0, "converting": 5.0},
    "events_page_view_count_90d": {"typical": 3.0, "converting": 12.0},
    "events_pricing_page_view_count_30d": {"typical": 0.0, "converting": 2.0},
    "events_days_since_last": {"typical": 40.0, "converting": 3.0},
    "lead_seniority": {"rates": {"vp": 0.041, "individual": 0.012, "manager": 0.0201}, "overall_rate": 0.02},
    "product_trial_started": {"typical": 0.0, "converting": 1.0},
    "events_email_click_count_7d": {"typical": 0.0, "converting": 0.0},
    "product_active_days_14d": {"typical": 0.0, "converting": 2.0},
}


def reasons_for(contributions: dict, values: dict, k: int = 3) -> tuple[str, str]:
    frame = pd.DataFrame({n: [v] for n, v in contributions.items()}).assign(base_value=-3.0)
    row = top_reasons(frame, pd.DataFrame({n: [v] for n, v in values.items()}), SPECS, k=k, reference=REFERENCE)
    return row.loc[0, "reasons_positive"], row.loc[0, "reasons_negative"]


def test_a_positive_reason_never_cites_an_absence():
    positive, negative = reasons_for(
        {
            "events_pricing_page_view_count_30d": 0.9,
            "lead_seniority": 0.5,
            "product_trial_started": 0.4,
            "events_days_since_last": 0.3,
        },
        {
            "events_pricing_page_view_count_30d": 0.0,
            "lead_seniority": None,
            "product_trial_started": 0.0,
            "events_days_since_last": 0.4,
        },
    )
    # a zero count, an unknown category and a flag of "no" are skipped; recency "less than 1 day" is a presence
    assert positive == "Days since the lead's last activity: less than 1 day, typical converting lead: 3 days"
    assert negative == ""


def test_one_concept_yields_one_reason_named_by_its_strongest_citable_feature():
    positive, _ = reasons_for(
        {
            "events_page_view_count_7d": 0.5,
            "events_page_view_count_30d": 0.3,
            "events_page_view_count_90d": 0.2,
            "lead_seniority": 0.6,
        },
        {
            "events_page_view_count_7d": 4.0,
            "events_page_view_count_30d": 9.0,
            "events_page_view_count_90d": 20.0,
            "lead_seniority": "vp",
        },
    )
    # page views sum to 1.0 across three windows: one reason, ahead of seniority (0.6)
    assert positive == (
        "Web page views in the last 7 days: 4, typical converting lead: 2"
        " | Seniority of the lead's role (read from the job title when not given): vp,"
        " leads like this convert at 4.1 % (all leads 2.0 %)"
    )


def test_the_headline_skips_a_zero_window_of_its_concept():
    positive, _ = reasons_for(
        {"events_page_view_count_7d": 0.5, "events_page_view_count_30d": 0.2, "events_page_view_count_90d": 0.1},
        {"events_page_view_count_7d": 0.0, "events_page_view_count_30d": 6.0, "events_page_view_count_90d": 20.0},
    )
    assert positive == "Web page views in the last 30 days: 6, typical converting lead: 5"


def test_a_declared_direction_is_never_read_backwards():
    # 19 page views pushing the score down (an interaction in the trees): not cited as bad, as it is above typical
    positive, negative = reasons_for(
        {"events_page_view_count_30d": -0.8, "events_days_since_last": -0.2, "lead_seniority": -0.1},
        {"events_page_view_count_30d": 19.0, "events_days_since_last": 10.0, "lead_seniority": "individual"},
    )
    assert positive == ""
    # 10 days since the last activity is more recent than typical (40): not bad news either
    assert negative == (
        "Seniority of the lead's role (read from the job title when not given): individual,"
        " leads like this convert at 1.2 % (all leads 2.0 %)"
    )
    # below-typical activity pushing down is cited, with the converting lead as reference
    _, negative = reasons_for({"events_page_view_count_30d": -0.8}, {"events_page_view_count_30d": 0.0})
    assert negative == "Web page views in the last 30 days: 0, typical converting lead: 5"
    # ... and a category converting above average is never bad news
    _, negative = reasons_for({"lead_seniority": -0.3}, {"lead_seniority": "vp"})
    assert negative == ""
    # a category converting at the average rate, as shown (2.0 %), is neither good nor bad news
    assert reasons_for({"lead_seniority": 0.3}, {"lead_seniority": "manager"}) == ("", "")
    assert reasons_for({"lead_seniority": -0.3}, {"lead_seniority": "manager"}) == ("", "")
    # as many clicks as the typical converting lead (0) is no bad news either
    _, negative = reasons_for({"events_email_click_count_7d": -0.4}, {"events_email_click_count_7d": 0.0})
    assert negative == ""


def test_active_days_are_a_count_not_a_duration():
    positive, _ = reasons_for({"product_active_days_14d": 0.3}, {"product_active_days_14d": 0.0})
    assert positive == ""  # no activity is an absence, not "less than 1 day"
    _, negative = reasons_for({"product_active_days_14d": -0.3}, {"product_active_days_14d": 0.0})
    assert negative == (
        "Distinct days with product logins or feature use in the last 14 days: 0, typical converting lead: 2"
    )


def test_reason_reference_from_training_rows():
    X = pd.DataFrame({"views": [0.0, 1.0, 2.0, 4.0, 6.0, np.nan], "tier": ["a", "a", "b", "a", None, "a"]})
    y = [0, 0, 1, 0, 1, 1]
    reference = reason_reference(X, y, categorical=["tier"])
    assert reference["views"] == {"typical": 2.0, "converting": 4.0}  # medians of known values: all, converted
    # levels seen fewer than 30 times get no quoted rate
    assert reference["tier"] == {"rates": {}, "overall_rate": 0.5}
    many = pd.DataFrame({"tier": ["a"] * 40 + ["b"] * 30})
    rates = reason_reference(many, [1] * 10 + [0] * 30 + [1] * 15 + [0] * 15, categorical=["tier"])["tier"]["rates"]
    assert rates == {"a": 0.25, "b": 0.5}


def test_psi_is_zero_on_the_same_population_and_large_on_a_shift():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b"], 5000)})
    reference = profile(frame, categorical=["c"])
    same = population_stability(reference, frame)
    assert same.max() < 1e-9
    shifted = population_stability(reference, frame.assign(x=frame["x"] + 2, c="z"))
    assert shifted["x"] > 1 and shifted["c"] > 1
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0


def test_stability_counts_by_hand_and_chunks_add_up_to_the_whole():
    from leadscore.models.drift import add_counts, stability_counts, stability_of_counts

    reference = {
        "x": {"kind": "numeric", "edges": [1.0, 2.0], "shares": [0.25, 0.25, 0.25, 0.25]},
        "c": {"kind": "categorical", "shares": {"a": 0.5, "(missing)": 0.5}},
    }
    frame = pd.DataFrame({"x": [0.5, 1.0, 1.5, 2.5, np.nan, 3.0], "c": ["a", None, "b", "a", "z", None]})
    counts = stability_counts(reference, frame)
    assert counts["x"].tolist() == [1, 2, 2, 1]  # below 1, [1, 2), 2 and above, missing
    assert counts["c"].tolist() == [2, 2, 2]  # a, (missing), others (b and z)
    chunked = add_counts(stability_counts(reference, frame.iloc[:4]), stability_counts(reference, frame.iloc[4:]))
    assert {k: v.tolist() for k, v in chunked.items()} == {k: v.tolist() for k, v in counts.items()}
    psi_values = stability_of_counts(reference, counts)
    assert psi_values["x"] == pytest.approx(psi([0.25] * 4, [1 / 6, 2 / 6, 2 / 6, 1 / 6]))
    assert psi_values["c"] == pytest.approx(psi([0.5, 0.5, 0.0], [2 / 6, 2 / 6, 2 / 6]))
