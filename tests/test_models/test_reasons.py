"""Reasons a seller can act on: the rules of models/reasons.py on hand-made rows with exact expected texts."""

import numpy as np
import pandas as pd
import pytest

from leadscore.features.registry import all_features
from leadscore.models.reasons import (
    format_number,
    format_rate,
    format_value,
    reason_reference,
    reason_text,
    top_reasons,
)

SPECS = all_features()


def bands(cuts, rates, *, typical, overall=0.10, integer=True, lowest=0.0, missing_rate=None, first_single=True):
    """A numeric feature's reference as `reason_reference` stores it."""
    return {
        "cuts": cuts,
        "rates": rates,
        "rows": [100] * len(rates),
        "integer": integer,
        "lowest": lowest,
        "first_single": first_single,
        "typical": typical,
        "overall_rate": overall,
        "missing_rate": missing_rate,
    }


REFERENCE = {
    "events_demo_request_count_7d": bands([1, 2], [0.06, 0.25, 0.41], typical=0.0),
    "events_page_view_count_30d": bands([1, 5], [0.04, 0.11, 0.2], typical=2.0),
    "events_days_since_last": bands(
        [1, 7, 30], [0.18, 0.12, 0.05, 0.01], typical=9.0, integer=False, lowest=0.1, first_single=False
    ),
    "events_active_days_30d": bands([1, 5, 10], [0.02, 0.09, 0.2, 0.35], typical=2.0),
    "events_trend_7d_vs_21d": bands(
        [0.8, 1.2], [0.08, 0.1, 0.14], typical=1.0, integer=False, lowest=0.2, first_single=False
    ),
    "engagement_decayed_score": bands([10, 50], [0.03, 0.15, 0.3], typical=12.0, integer=False, first_single=False),
    "lead_email_is_business": bands([1], [0.06, 0.13], typical=1.0),
    "product_trial_started": bands([1], [0.07, 0.3], typical=0.0),
    "account_employee_count_log": bands(
        [np.log10(101), np.log10(1001)],  # the model reads log10(employees + 1)
        [0.08, 0.12, 0.1],
        typical=2.2,
        integer=False,
        lowest=0.5,
        missing_rate=0.04,
        first_single=False,
    ),
    "lead_seniority": {"rates": {"vp": 0.15, "individual": 0.05, "manager": 0.1004}, "overall_rate": 0.10},
}


def reasons_for(contributions: dict, values: dict, *, k: int = 3, reference=None, specs=SPECS, **options):
    frame = pd.DataFrame({n: [v] for n, v in contributions.items()}).assign(base_value=-3.0)
    reference = REFERENCE if reference is None else reference
    row = top_reasons(
        frame, pd.DataFrame({n: [v] for n, v in values.items()}), specs, k=k, reference=reference, **options
    )
    return row.loc[0, "reasons_positive"], row.loc[0, "reasons_negative"]


def test_sparse_counts_quote_the_rate_of_similar_leads_not_a_median():
    positive, _ = reasons_for({"events_demo_request_count_7d": 0.9}, {"events_demo_request_count_7d": 2.0})
    assert positive == "Demo requests in the last 7 days: 2 - leads with 2 or more convert at 41 % (all leads 10 %)"
    _, negative = reasons_for({"events_demo_request_count_7d": -0.3}, {"events_demo_request_count_7d": 0.0})
    assert negative == "Demo requests in the last 7 days: 0 - leads with 0 convert at 6.0 % (all leads 10 %)"
    # a count whose band converts at the average rate (as shown) is no bad news; as the largest push it is cited on
    # the model's word, without a rate that would contradict it
    at_average = {"events_page_view_count_30d": bands([1, 5], [0.04, 0.1004, 0.2], typical=0.0)}
    cited = reasons_for({"events_page_view_count_30d": 0.4}, {"events_page_view_count_30d": 3.0}, reference=at_average)
    assert cited == ("Web page views in the last 30 days: 3", "")
    assert reasons_for(
        {"events_page_view_count_30d": -0.4}, {"events_page_view_count_30d": 3.0}, reference=at_average
    ) == ("", "")


def test_the_largest_push_comes_first_even_when_leads_like_it_convert_below_average():
    positive, _ = reasons_for(
        {"lead_age_days": 0.9, "lead_seniority": 0.3, "events_page_view_count_30d": 0.2},
        {"lead_age_days": 68.0, "lead_seniority": "individual", "events_page_view_count_30d": 6.0},
        reference=REFERENCE | {"lead_age_days": bands([30, 100], [0.2, 0.07, 0.02], typical=120.0, integer=False)},
    )
    # lead age (50 to 99 days: 7 %) is the model's largest push: first, without the contradicting rate; the other
    # reasons need leads like them to convert above average (individual contributors, 5 %, do not)
    assert positive == (
        "Days since the lead was created: 68 days"
        " | Web page views in the last 30 days: 6 - leads with 5 or more convert at 20 % (all leads 10 %)"
    )


def test_recency_active_days_trend_and_engagement_are_one_concept_headlined_by_the_most_telling():
    positive, _ = reasons_for(
        {
            "events_days_since_last": 0.9,
            "events_active_days_30d": 0.3,
            "events_trend_7d_vs_21d": 0.1,
            "engagement_decayed_score": 0.2,
            "lead_seniority": 0.5,
        },
        {
            "events_days_since_last": 0.2,
            "events_active_days_30d": 12.0,
            "events_trend_7d_vs_21d": 1.5,
            "engagement_decayed_score": 60.0,
            "lead_seniority": "vp",
        },
    )
    # one reason for the four (sum 1.5, ahead of seniority's 0.5), worded by the band converting best (35 %), not
    # by the largest single push (less than 1 day: 18 %)
    assert positive == (
        "Distinct days with any activity in the last 30 days: 12 - leads with 10 or more convert at 35 % "
        "(all leads 10 %) | Seniority of the lead's role (read from the job title when not given): vp - leads like "
        "this convert at 15 % (all leads 10 %)"
    )


def test_an_absence_that_pushes_the_score_up_is_stated_as_what_it_is():
    # a flat export's column (no registry entry): no page view per visit, and leads like that convert above average
    views = {"Page Views Per Visit": bands([1.0, 3.0], [0.45, 0.3, 0.35], typical=2.0, integer=False, overall=0.385)}
    positive, _ = reasons_for(
        {"Page Views Per Visit": 1.27, "TotalVisits": 0.2},
        {"Page Views Per Visit": 0.0, "TotalVisits": 4.0},
        reference=views | {"TotalVisits": bands([2, 5], [0.3, 0.4, 0.5], typical=3.0, overall=0.385)},
        specs={},
        directions={"TotalVisits": 1},
    )
    assert positive == (
        "Page Views Per Visit: 0 - leads with 0 convert at 45 % (all leads 38 %)"
        " | TotalVisits: 4 - leads with 2 to 4 convert at 40 % (all leads 38 %)"
    )
    # a missing value is an absence too: cited with the rate of leads without it, as good or as bad news
    company = {"account_employee_count_log": REFERENCE["account_employee_count_log"] | {"missing_rate": 0.2}}
    positive, _ = reasons_for(
        {"account_employee_count_log": 0.4}, {"account_employee_count_log": None}, reference=company
    )
    assert positive == "Company size: not known - leads where it is not known convert at 20 % (all leads 10 %)"
    _, negative = reasons_for({"account_employee_count_log": -0.4}, {"account_employee_count_log": None})
    assert negative == "Company size: not known - leads where it is not known convert at 4.0 % (all leads 10 %)"


def test_inactivity_is_never_a_plus_and_activity_beyond_the_typical_lead_never_a_minus():
    long_ago = {"events_days_since_last": 45.0}
    assert reasons_for({"events_days_since_last": 0.8}, long_ago)[0] == ""
    # even where long inactivity happened to convert above average, the declared direction keeps it from good news
    lucky = {"events_days_since_last": REFERENCE["events_days_since_last"] | {"rates": [0.18, 0.12, 0.05, 0.2]}}
    assert reasons_for({"events_days_since_last": 0.8}, long_ago, reference=lucky)[0] == ""
    _, negative = reasons_for({"events_days_since_last": -0.8}, long_ago)
    assert negative == (
        "Days since the lead's last activity: 45 days - leads with 30 days or more convert at 1.0 % (all leads 10 %)"
    )
    # rising activity (1.5x) that converts above average is no bad news, whatever its push
    assert reasons_for({"events_trend_7d_vs_21d": -0.4}, {"events_trend_7d_vs_21d": 1.5}) == ("", "")
    # and a category converting above average is never bad news
    assert reasons_for({"lead_seniority": -0.3}, {"lead_seniority": "vp"}) == ("", "")


def test_booleans_read_as_statements_without_double_negatives():
    positive, negative = reasons_for(
        {"lead_email_is_business": -0.5, "product_trial_started": 0.4},
        {"lead_email_is_business": 0.0, "product_trial_started": 1.0},
    )
    assert positive == "The lead has started a product trial - leads like this convert at 30 % (all leads 10 %)"
    assert (
        negative == "The lead signed up with a free e-mail domain - leads like this convert at 6.0 % (all leads 10 %)"
    )
    for name, spec in SPECS.items():
        if spec.kind == "boolean" and spec.for_model:
            assert spec.when_false, f"{name} has no statement for false: its reason would read '...: no'"
            assert "not a" not in spec.description, name


def test_account_reasons_speak_of_accounts():
    positive, _ = reasons_for(
        {"events_demo_request_count_7d": 0.9}, {"events_demo_request_count_7d": 1.0}, subject="account"
    )
    assert positive == "Demo requests in the last 7 days: 1 - accounts with 1 convert at 25 % (all accounts 10 %)"


def test_numbers_in_natural_units_and_sensible_precision():
    assert [format_number(x) for x in (7.0, 0.022222222, 2.3333, 1532.4, 12.47, -3.0)] == [
        "7",
        "0.022",
        "2.3",
        "1,532",
        "12.5",
        "-3",
    ]
    assert format_value(7.0, None) == "7" and format_value(0.022222222, None) == "0.022"
    assert format_value(0.3, SPECS["events_days_since_last"]) == "less than 1 day"
    assert format_value(1.0, SPECS["events_days_since_last"]) == "1 day"
    assert format_value(6.8, SPECS["events_days_since_last"]) == "6 days"  # days as people count them
    assert format_value(3.0, SPECS["account_employee_count_log"]) == "about 1,000 employees"
    assert format_value(np.log10(125.0), SPECS["account_employee_count_log"]) == "about 120 employees"
    assert format_value(83.3333, SPECS["lead_profile_completeness"]) == "83 %"
    assert format_value(365.0, SPECS["lead_age_days"]) == "365 days or more"
    assert format_value(1.0, SPECS["product_trial_started"]) == "yes"
    assert [format_rate(r) for r in (0.41, 0.0996, 0.041, 0.0004, 0.0)] == [
        "41 %",
        "10 %",
        "4.1 %",
        "less than 0.1 %",
        "0.0 %",
    ]


def test_bands_read_in_the_features_units():
    company = reason_text(
        "account_employee_count_log",
        np.log10(251.0),
        SPECS["account_employee_count_log"],
        REFERENCE["account_employee_count_log"],
    )
    assert (
        company
        == "Company size: about 250 employees - leads with 100 to 1,000 employees convert at 12 % (all leads 10 %)"
    )
    recent = reason_text(
        "events_days_since_last", 3.5, SPECS["events_days_since_last"], REFERENCE["events_days_since_last"]
    )
    assert (
        recent
        == "Days since the lead's last activity: 3 days - leads with 1 to 6 days convert at 12 % (all leads 10 %)"
    )
    today = reason_text(
        "events_days_since_last", 0.4, SPECS["events_days_since_last"], REFERENCE["events_days_since_last"]
    )
    assert today.endswith("less than 1 day - leads with less than 1 day convert at 18 % (all leads 10 %)")


def test_an_older_reference_quotes_no_rate_and_cites_no_absence_as_good_news():
    old = {"events_page_view_count_30d": {"typical": 1.0, "converting": 5.0}}
    positive, _ = reasons_for({"events_page_view_count_30d": 0.5}, {"events_page_view_count_30d": 4.0}, reference=old)
    assert positive == "Web page views in the last 30 days: 4"
    assert reasons_for({"events_page_view_count_30d": 0.5}, {"events_page_view_count_30d": 0.0}, reference=old)[0] == ""


def test_top_reasons_order_and_sign_without_a_reference():
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
    # equal contributions (0.5) are ordered by concept name; zero contributions are never reasons
    assert reasons.loc[0, "reasons_positive"] == (
        "Days since the lead was created: 3 days | Marketing channel the lead came from: webinar"
    )
    assert reasons.loc[0, "reasons_negative"] == "Country of the lead: US"
    assert reasons.loc[1, "reasons_positive"] == "All marketing and product events in the last 30 days: 7"
    assert reasons.loc[1, "reasons_negative"].startswith(
        "Marketing channel the lead came from: paid_search | Days since"
    )


def test_reason_reference_cuts_counts_into_bands_of_enough_training_rows():
    # 300 leads with no visit (15 converted), 150 with one (30), 120 with two (48), 30 with five (15)
    visits = np.repeat([0.0, 1.0, 2.0, 5.0], [300, 150, 120, 30])
    converted = np.concatenate(
        [
            np.repeat([1, 0], [15, 285]),
            np.repeat([1, 0], [30, 120]),
            np.repeat([1, 0], [48, 72]),
            np.repeat([1, 0], [15, 15]),
        ]
    )
    reference = reason_reference(pd.DataFrame({"visits": visits}), converted, categorical=[])["visits"]
    # 5 visits (30 rows) join the band of 2: every band holds at least 100 rows
    assert reference["cuts"] == [1.0, 2.0] and reference["rows"] == [300, 150, 150]
    assert reference["rates"] == pytest.approx([0.05, 0.2, 0.42])
    assert reference["overall_rate"] == pytest.approx(108 / 600) and reference["missing_rate"] is None
    text = reason_text("visits", 5.0, None, reference)
    assert text == "visits: 5 - leads with 2 or more convert at 42 % (all leads 18 %)"


def test_reason_reference_weighs_each_lead_once_and_quotes_levels_seen_often_enough():
    tier = pd.DataFrame({"tier": ["a"] * 40 + ["b"] * 30 + ["c"] * 5})
    y = [1] * 10 + [0] * 30 + [1] * 15 + [0] * 15 + [1] * 5
    weight = [1.0] * 40 + [2.0] * 15 + [1.0] * 15 + [1.0] * 5  # b's converted rows count twice
    reference = reason_reference(tier, y, categorical=["tier"], sample_weight=weight)["tier"]
    assert reference["rates"] == pytest.approx({"a": 0.25, "b": 30 / 45})  # c: 5 rows, no quoted rate
    assert reference["overall_rate"] == pytest.approx(45 / 90)


def test_many_zeros_of_a_measure_get_a_band_of_their_own():
    rng = np.random.default_rng(0)
    ratio = np.concatenate([np.zeros(200), rng.uniform(0.5, 6.0, 800)])
    converted = np.concatenate([np.ones(90), np.zeros(110), (rng.random(800) < 0.3).astype(float)])
    reference = reason_reference(pd.DataFrame({"ratio": ratio}), converted, categorical=[])["ratio"]
    assert reference["rows"][0] == 200 and reference["rates"][0] == pytest.approx(0.45)
    assert reason_text("ratio", 0.0, None, reference).startswith("ratio: 0 - leads with 0 convert at 45 %")


def test_a_decayed_remnant_is_no_band_edge_and_tiny_numbers_are_said_plainly():
    score = np.concatenate([np.zeros(300), [1.1e-08] * 100, np.linspace(1, 60, 600)])
    converted = (np.arange(1000) % 5 == 0).astype(float)
    reference = reason_reference(pd.DataFrame({"score": score}), converted, categorical=[])["score"]
    assert min(c for c in reference["cuts"]) >= 1  # two significant figures of a scale of 60: no cut at 1.1e-08
    text = reason_text("score", 1.1e-08, None, reference)
    assert text.startswith("score: less than 0.001 - leads with less than ") and "e-0" not in text
