"""Grade rules: tables of cases with values exactly on the cut-offs, actions and due-by times, stages."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from leadscore.models.grade_analysis import contradictions, conversion_table, propose_cutoffs
from leadscore.models.grade_rules import (
    CELLS,
    ENGAGEMENT_GRADES,
    FIT_GRADES,
    STAGES,
    EngagementRules,
    FitCategory,
    GradeRules,
    RoutingRules,
    StageRules,
    Tier,
)
from leadscore.models.grades import (
    assign_actions,
    assign_stage,
    category_points,
    days_since_activity,
    engagement_points,
    fit_points,
    grade_from_points,
    grade_leads,
    is_dormant,
)

RULES = GradeRules()


@pytest.mark.parametrize(
    ("points", "grade"),
    [(100, "A"), (70, "A"), (69.99, "B"), (50, "B"), (49.99, "C"), (30, "C"), (29.99, "D"), (0, "D")],
)
def test_fit_grade_on_and_around_the_cutoffs(points, grade):
    assert grade_from_points(pd.Series([points]), RULES.fit.cutoffs, FIT_GRADES).iloc[0] == grade


@pytest.mark.parametrize(
    ("points", "grade"), [(50, "1"), (49.9, "2"), (25, "2"), (24.9, "3"), (10, "3"), (9.9, "4"), (0, "4")]
)
def test_engagement_grade_on_and_around_the_cutoffs(points, grade):
    assert grade_from_points(pd.Series([points]), RULES.engagement.cutoffs, ENGAGEMENT_GRADES).iloc[0] == grade


def test_categorical_points_are_case_insensitive_with_a_default():
    category = FitCategory(feature="x", weight=10, points={"VP": 90, "1": 100}, default=5)
    values = pd.Series(["vp", "Vp ", None, "intern", 1.0])
    assert category_points(values, category).tolist() == [90, 90, 5, 5, 100]


@pytest.mark.parametrize(
    ("employees", "points"), [(0, 10), (9, 10), (10, 40), (49.9, 40), (50, 100), (5000, 100), (5001, 60), (np.nan, 0)]
)
def test_numeric_tiers_take_the_highest_tier_reached(employees, points):
    category = RULES.fit.categories["company_size"]
    assert category_points(pd.Series([employees]), category).iloc[0] == points


def test_fit_points_are_the_weighted_sum():
    features = pd.DataFrame(
        {
            "lead_seniority": ["vp"],
            "account_industry": ["retail"],
            "account_employee_count": [60],
            "lead_email_is_business": [1.0],
            "lead_country": ["FR"],
        }
    )
    # 0.30*90 + 0.25*40 + 0.20*100 + 0.15*100 + 0.10*40
    assert fit_points(features, RULES.fit).iloc[0] == pytest.approx(27 + 10 + 20 + 15 + 4)


def test_engagement_points_cap_each_category_at_100():
    counts = pd.DataFrame(
        {
            "high_intent": [10.0, 1.0],
            "web": [0.0, 2.0],
            "email": [0.0, 0.0],
            "events": [0.0, 0.0],
            "product": [0.0, 0.0],
        }
    )
    # 10 x 25 capped at 100 -> 35; 1 x 25 -> 8.75 plus 2 x 8 = 16 -> 3.2
    assert engagement_points(counts, RULES.engagement).tolist() == pytest.approx([35.0, 8.75 + 3.2])


def test_weights_must_sum_to_100_and_the_error_names_them():
    with pytest.raises(ValidationError, match=r"category weights must sum to 100, got 90 \(a=50, b=40\)"):
        GradeRules.model_validate(
            {
                "fit": {
                    "categories": {
                        "a": {"feature": "lead_seniority", "weight": 50, "points": {"vp": 100}},
                        "b": {"feature": "lead_country", "weight": 40, "points": {"US": 100}},
                    }
                }
            }
        )
    with pytest.raises(ValidationError, match="strictly decrease"):
        EngagementRules(cutoffs={"1": 10, "2": 20, "3": 5})
    with pytest.raises(ValidationError, match=r"unknown key\(s\) \['E1'\]"):
        GradeRules.model_validate(
            {"routing": {"table": {s: {"*": {"action": "call"}, "E1": {"action": "call"}} for s in STAGES}}}
        )
    with pytest.raises(ValidationError, match=r"give '\*' or every cell"):
        RoutingRules(table={s: {"A1": {"action": "call"}} for s in STAGES})
    with pytest.raises(ValidationError, match=r"unknown stage\(s\) \['XQL'\]"):
        RoutingRules(table={"XQL": {"*": {"action": "call"}}})
    with pytest.raises(ValidationError, match="either 'points'"):
        FitCategory(feature="x", weight=10, points={"a": 1}, tiers=[Tier(min=0, points=1)])


def test_config_error_names_the_offending_key(tmp_path):
    from leadscore.pipelines.config import ConfigError, load_settings

    config = tmp_path / "leadscore.toml"
    config.write_text(
        '[tables.leads]\npath = "l.csv"\n[tables.opportunities]\npath = "o.csv"\n'
        "[grades.fit.categories.seniority]\nfeature = 'lead_seniority'\nweight = 100\npoints = {vp = 100}\n"
        "[grades.stages]\nsql_min_probabilty = 0.3\n"
    )
    with pytest.raises(ConfigError, match=r"grades\.stages\.sql_min_probabilty: unknown key"):
        load_settings(config)


def expected_route(stage: str, cell: str, dormant: bool) -> tuple[str, float | None]:
    """The default routing table, written out independently of its implementation."""
    if cell in ("A1", "B1") and stage != "IQL" and not (dormant and stage != "SQL"):
        return "sales call", 24
    if cell in ("A2", "A3", "B2", "B3") and stage != "IQL" and not (dormant and stage != "SQL"):
        return "sales follow-up", 48
    if stage == "SQL":  # sales keeps SQL leads: never nurtured, never recycled
        return "sales follow-up", 48
    return ("recycle", None) if dormant else ("nurture", None)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("dormant", [False, True])
def test_default_routing_table_for_every_stage_and_cell(stage, dormant):
    as_of = pd.Series([pd.Timestamp("2025-06-02 09:00", tz="UTC")] * len(CELLS))
    result = assign_actions(
        pd.Series(CELLS),
        as_of,
        RULES.routing,
        stages=pd.Series([stage] * len(CELLS)),
        dormant=pd.Series([dormant] * len(CELLS)),
    )
    for (_, row), cell in zip(result.iterrows(), CELLS, strict=True):
        action, hours = expected_route(stage, cell, dormant)
        assert row["action"] == action, (stage, cell, dormant)
        if hours is None:
            assert pd.isna(row["due_by"]) and pd.isna(row["due_by_local"])
        else:
            assert row["due_by"] == as_of.iloc[0] + pd.Timedelta(hours=hours)
    if stage == "SQL":
        assert not result["action"].isin(["nurture", "recycle"]).any()


def test_a_configured_route_overrides_one_cell_of_one_stage_only():
    table = {s: dict(RoutingRules().table[s]) for s in STAGES}
    table["MQL"]["C1"] = {"action": "inside sales call", "sla_hours": 4}
    rules = RoutingRules.model_validate({"table": table})
    as_of = pd.Series([pd.Timestamp("2025-06-02", tz="UTC")] * 2)
    result = assign_actions(pd.Series(["C1", "C1"]), as_of, rules, stages=pd.Series(["MQL", "PQL"]))
    assert result["action"].tolist() == ["inside sales call", "nurture"]
    assert result["sla_hours"].iloc[0] == 4


def test_dormant_means_no_activity_for_the_configured_days_counting_from_creation_without_any():
    features = pd.DataFrame(
        {
            "events_days_since_last": [89.9, 90.0, np.nan, np.nan, 3.0],
            "lead_age_days": [400.0, 400.0, 120.0, 10.0, 400.0],
        }
    )
    assert days_since_activity(features).tolist() == [89.9, 90.0, 120.0, 10.0, 3.0]
    assert is_dormant(features, RoutingRules(dormant_after_days=90)).tolist() == [False, True, True, False, False]
    assert not is_dormant(features, RoutingRules(dormant_after_days=None)).any()


def test_dormancy_longer_than_the_lead_age_cap_is_refused():
    # a lead without activity is dormant by its age, which stops at 365: a longer threshold would never fire
    assert RoutingRules(dormant_after_days=365).dormant_after_days == 365
    with pytest.raises(ValidationError, match="less than or equal to 365"):
        RoutingRules(dormant_after_days=400)


def test_due_by_is_elapsed_time_across_a_dst_change_and_shown_in_the_business_zone():
    # New York springs forward on 2025-03-09 at 02:00: 24 h after Saturday 12:00 EST is Sunday 13:00 EDT.
    as_of = pd.Series([pd.Timestamp("2025-03-08 12:00", tz="America/New_York")])
    result = assign_actions(
        pd.Series(["A1"]), as_of, RULES.routing, stages=pd.Series(["MQL"]), timezone="America/New_York"
    ).iloc[0]
    assert result["due_by"] == pd.Timestamp("2025-03-09 17:00", tz="UTC")
    assert result["due_by_local"] == "2025-03-09 13:00 EDT"
    tokyo = assign_actions(
        pd.Series(["A2"]), as_of, RULES.routing, stages=pd.Series(["MQL"]), timezone="Asia/Tokyo"
    ).iloc[0]
    assert tokyo["due_by_local"] == "2025-03-11 02:00 JST"


def stage_features(**overrides) -> pd.DataFrame:
    base = {
        "lead_has_contact_details": 1.0,
        "product_trial_started": 0.0,
        "product_active_days_14d": 0.0,
        "product_distinct_features_used": 0.0,
        "product_upgrade_page_views_30d": 0.0,
        "lead_profile_completeness": 100.0,
        "lead_sales_accepted": 0.0,
        "events_days_since_last": 2.0,
        "lead_age_days": 30.0,
    }
    return pd.DataFrame({k: [v] for k, v in (base | overrides).items()})


@pytest.mark.parametrize(
    ("features", "fit", "engagement", "probability", "bant", "stage", "rule"),
    [
        ({}, "C", "3", None, 0, "IQL", "IQL: contact details known"),
        ({"lead_has_contact_details": 0.0}, "D", "4", None, 0, "IQL", "IQL: no contact details yet"),
        ({}, "B", "2", None, 0, "MQL", "MQL: fit B and engagement 2"),
        ({}, "B", "3", None, 0, "IQL", "IQL: contact details known"),
        (
            {
                "product_trial_started": 1.0,
                "product_active_days_14d": 3.0,
                "product_distinct_features_used": 3.0,
                "lead_profile_completeness": 60.0,
            },
            "D",
            "4",
            None,
            0,
            "PQL",
            "PQL: trial with 3 active days in 14 d, 3 features used, profile 60 % complete",
        ),
        (
            {"product_trial_started": 1.0, "product_active_days_14d": 2.0, "product_distinct_features_used": 3.0},
            "D",
            "4",
            None,
            0,
            "IQL",
            "IQL: contact details known",
        ),
        # rules only by default: the model's probability does not move the stage (grade and predict agree)
        ({}, "A", "4", 0.99, 0, "IQL", "IQL: contact details known"),
        ({}, "B", "4", 0.49, 3, "SQL", "SQL: fit B with 3 of 4 BANT criteria met"),
        ({"lead_sales_accepted": 1.0}, "D", "4", None, 0, "SQL", "SQL: accepted by sales"),
    ],
)
def test_stage_rules(features, fit, engagement, probability, bant, stage, rule):
    result = assign_stage(
        stage_features(**features),
        pd.Series([fit]),
        pd.Series([engagement]),
        RULES.stages,
        bant=pd.Series([bant]),
        probability=None if probability is None else pd.Series([probability]),
    ).iloc[0]
    assert (result["stage"], result["stage_rule"]) == (stage, rule)


@pytest.mark.parametrize(
    ("fit", "engagement", "probability", "stage", "rule"),
    [
        ("A", "4", 0.5, "SQL", "SQL: fit A and conversion probability 50% >= 50%"),
        ("A", "4", 0.49, "IQL", "IQL: contact details known"),
        # a high probability alone does not make a C lead sales-qualified, nor does engagement 1 make it an MQL
        ("C", "1", 0.9, "IQL", "IQL: contact details known"),
    ],
)
def test_stage_by_model_probability_when_configured(fit, engagement, probability, stage, rule):
    result = assign_stage(
        stage_features(),
        pd.Series([fit]),
        pd.Series([engagement]),
        StageRules(sql_min_probability=0.5),
        bant=pd.Series([0]),
        probability=pd.Series([probability]),
    ).iloc[0]
    assert (result["stage"], result["stage_rule"]) == (stage, rule)


def test_a_lead_never_moves_back_from_a_stage_it_reached():
    previous = pd.Series(["PQL", "IQL", None, "SQL"])
    features = pd.concat([stage_features()] * 4, ignore_index=True)
    result = assign_stage(
        features,
        pd.Series(["B"] * 4),
        pd.Series(["2"] * 4),
        RULES.stages,
        bant=pd.Series([0] * 4),
        previous_stage=previous,
    )
    assert result["stage"].tolist() == ["PQL", "MQL", "MQL", "SQL"]
    assert result["stage_rule"].iloc[0] == "PQL: reached earlier (a lead never moves back)"
    order = {"IQL": 0, "MQL": 1, "PQL": 2, "SQL": 3}
    assert all(order[s] >= order.get(p, -1) for s, p in zip(result["stage"], previous, strict=True))


def test_grade_leads_gives_every_column():
    features = stage_features().assign(
        cutoff_time=pd.Timestamp("2025-01-01", tz="UTC"),
        lead_seniority="c_level",
        account_industry="software",
        account_employee_count=200,
        lead_email_is_business=1.0,
        lead_country="US",
    )
    counts = pd.DataFrame({"high_intent": [4.0], "web": [5.0], "email": [5.0], "events": [1.0], "product": [0.0]})
    row = grade_leads(features, counts, RULES).iloc[0]
    assert (row["fit_grade"], row["engagement_grade"], row["cell"], row["stage"], row["action"]) == (
        "A",
        "1",
        "A1",
        "MQL",
        "sales call",
    )
    assert row["due_by"] == pd.Timestamp("2025-01-02", tz="UTC") and not row["dormant"]
    asleep = grade_leads(features.assign(events_days_since_last=200.0), counts, RULES).iloc[0]
    assert (asleep["dormant"], asleep["action"]) == (True, "recycle") and pd.isna(asleep["due_by"])


def test_conversion_table_and_contradictions_on_known_rates():
    graded = pd.DataFrame(
        {
            "cell": ["A1"] * 40 + ["B1"] * 40 + ["A2"] * 10,
            "stage": ["SQL"] * 40 + ["MQL"] * 50,
            "converted": [1] * 10 + [0] * 30 + [1] * 20 + [0] * 20 + [1] * 10,
        }
    )
    table = conversion_table(graded)
    assert table.loc["A1", "conversion_rate"] == 0.25 and table.loc["B1", "conversion_rate"] == 0.5
    assert table.loc["D4", "leads"] == 0 and np.isnan(table.loc["D4", "conversion_rate"])
    # A2 converts at 100 % but has only 10 leads: too few to call a contradiction
    assert contradictions(table) == ["B1 converts better than A1: 50.0% vs 25.0% (n = 40 vs 40)"]
    by_stage = conversion_table(graded, by="stage")
    assert by_stage.loc["SQL", "converted"] == 10 and by_stage.loc["MQL", "conversion_rate"] == 0.6


def test_proposed_cutoffs_separate_won_from_lost():
    points = pd.Series(
        np.r_[np.linspace(0, 24, 100), np.linspace(26, 49, 100), np.linspace(51, 74, 100), np.linspace(76, 100, 100)]
    )
    converted = pd.Series(np.r_[np.zeros(100), np.zeros(90), np.ones(10), np.ones(40), np.zeros(60), np.ones(100)])
    proposed = propose_cutoffs(points, converted, FIT_GRADES)
    assert list(proposed) == ["A", "B", "C"]
    assert proposed["A"] == pytest.approx(75, abs=1.5)
    assert proposed["A"] > proposed["B"] > proposed["C"]


def test_no_cut_off_is_proposed_without_both_outcomes():
    points = pd.Series([10.0, 50.0, 90.0])
    assert propose_cutoffs(points, pd.Series([0, 0, 0]), FIT_GRADES) == {}
    assert propose_cutoffs(points.iloc[:0], pd.Series([], dtype="int64"), FIT_GRADES) == {}
