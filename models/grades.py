"""Rule-based grades: profile fit A-D x engagement 1-4, the A1..D4 matrix, the lifecycle stage (IQL, MQL, PQL, SQL)
with the rule that fired, dormancy, and the follow-up action with its SLA from one routing table keyed by stage, cell
and the model's band (`models.routing`). Pure functions over a feature table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from leadscore.features.behavioral import decayed_event_count
from leadscore.features.build import feature_columns
from leadscore.features.context import FeatureContext, FeatureParams
from leadscore.models.grade_rules import (
    ENGAGEMENT_GRADES,
    FIT_GRADES,
    STAGES,
    BandCutoffs,
    ColumnEngagementRules,
    EngagementRules,
    FitCategory,
    FitRules,
    GradeRules,
    RoutingRules,
    StageRules,
)
from leadscore.models.routing import assign_actions, keep_rejections, priority_band, sales_rejections


def _key(value: object) -> str | None:
    """Categorical values compared case-insensitively; 1.0 and "1" are the same answer."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # runs of spaces, dashes and underscores count as one: a label ("Computer Software") meets its id
    return re.sub(r"[\s\-_]+", "_", str(value).strip().lower())


def per_distinct(values: pd.Series, function) -> np.ndarray:
    """`values.map(function)` as an object array, with `function` called once per distinct value (and once with None
    for missing values) instead of once per row: a few hundred thousand leads share a handful of answers."""
    if values.dtype == object:  # mixed objects: 1 and True would count as one distinct value, yet word apart
        return values.map(function).to_numpy(dtype=object)
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    results = np.empty(len(distinct) + 1, dtype=object)  # the last slot answers code -1 (missing)
    for i, value in enumerate([*distinct, None]):
        results[i] = function(value)
    return results[codes]


def category_points(values: pd.Series, category: FitCategory) -> pd.Series:
    """Points (0-100) each lead earns in one fit category."""
    if category.tiers:
        numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        tiers = sorted(category.tiers, key=lambda t: t.min)
        mins = np.array([t.min for t in tiers])
        points = np.array([t.points for t in tiers])
        reached = np.searchsorted(mins, numbers, side="right") - 1
        result = np.where(np.isnan(numbers) | (reached < 0), category.default, points[np.clip(reached, 0, None)])
        return pd.Series(result, index=values.index)
    lookup = {_key(k): v for k, v in category.points.items()}
    points = per_distinct(values, lambda v: lookup.get(_key(v), category.default))
    return pd.Series(points, index=values.index).astype("float64")


def fit_points(features: pd.DataFrame, rules: FitRules) -> pd.Series:
    """Weighted profile-fit points, 0-100."""
    total = pd.Series(0.0, index=features.index)
    for category in rules.categories.values():
        total += category.weight / 100.0 * category_points(features[category.feature], category)
    return total.rename("fit_points")


def grade_from_points(points: pd.Series, cutoffs: dict[str, float], grades: tuple[str, ...]) -> pd.Series:
    """The best grade whose cut-off the points reach (points >= cut-off); the last grade otherwise."""
    result = pd.Series(grades[-1], index=points.index, dtype="string")
    for grade in reversed(grades[:-1]):
        result[points.to_numpy() >= cutoffs[grade]] = grade
    return result


def engagement_counts(context: FeatureContext, rules: EngagementRules) -> pd.DataFrame:
    """Recency-decayed event counts per engagement category, before each of the context's cutoffs."""
    return pd.DataFrame(
        {
            name: decayed_event_count(
                context, tuple(c.events), half_life_days=rules.half_life_days, window_days=c.window_days
            )
            for name, c in rules.categories.items()
        }
    )


def engagement_points(counts: pd.DataFrame, rules: EngagementRules) -> pd.Series:
    """Weighted engagement points, 0-100: each category's decayed count x points per event, capped at 100."""
    total = np.zeros(len(counts))
    for name, category in rules.categories.items():
        total += category.weight / 100.0 * np.minimum(100.0, counts[name].to_numpy() * category.points_per_event)
    return pd.Series(total, index=counts.index, name="engagement_points")


def days_since_activity(features: pd.DataFrame) -> pd.Series:
    """Days since the lead's last activity, or since its creation when it has none."""
    last_event = pd.to_numeric(features["events_days_since_last"], errors="coerce").astype("float64")
    age = pd.to_numeric(features["lead_age_days"], errors="coerce").astype("float64")
    return last_event.where(last_event.notna(), age).rename("days_since_activity")


def is_dormant(features: pd.DataFrame, rules: RoutingRules) -> pd.Series:
    """No activity for `dormant_after_days` (never, when that is not set)."""
    if rules.dormant_after_days is None:
        return pd.Series(False, index=features.index, name="dormant")
    return (days_since_activity(features) >= rules.dormant_after_days).rename("dormant")


def bant_met(features: pd.DataFrame, rules: GradeRules) -> pd.Series:
    """How many BANT criteria the lead's answers qualify on."""
    met = pd.Series(0, index=features.index)
    for column, values in rules.bant.qualified.items():
        if column in features:
            wanted = {_key(v) for v in values}
            qualified = per_distinct(features[column], lambda v, wanted=wanted: _key(v) in wanted)
            met += pd.Series(qualified, index=features.index).astype(int)
    return met


def _better_or_equal(grades: pd.Series, threshold: str, order: tuple[str, ...]) -> np.ndarray:
    rank = {g: i for i, g in enumerate(order)}
    return grades.map(rank).to_numpy() <= rank[threshold]


def assign_stage(
    features: pd.DataFrame,
    fit: pd.Series,
    engagement: pd.Series,
    rules: StageRules,
    *,
    bant: pd.Series,
    probability: pd.Series | None = None,
    previous_stage: pd.Series | None = None,
) -> pd.DataFrame:
    """The furthest stage whose rule holds, never behind a stage the lead already reached; and the rule's text."""
    n = len(features)
    stage = np.full(n, "IQL", dtype=object)
    contact = features["lead_has_contact_details"].to_numpy() == 1
    rule = np.where(contact, "IQL: contact details known", "IQL: no contact details yet").astype(object)

    mql = _better_or_equal(fit, rules.mql_min_fit, FIT_GRADES) & _better_or_equal(
        engagement, rules.mql_min_engagement, ENGAGEMENT_GRADES
    )
    stage[mql] = "MQL"
    rule[mql] = [f"MQL: fit {f} and engagement {e}" for f, e in zip(fit[mql], engagement[mql], strict=True)]

    active = features["product_active_days_14d"].to_numpy()
    used = features["product_distinct_features_used"].to_numpy()
    upgrade = features["product_upgrade_page_views_30d"].to_numpy()
    profile = features["lead_profile_completeness"].to_numpy()
    pql = (
        (features["product_trial_started"].to_numpy() == 1)
        & (active >= rules.pql_min_active_days_14d)
        & (used >= rules.pql_min_features_used)
        & (upgrade >= rules.pql_min_upgrade_page_views_30d)
        & (profile >= rules.pql_min_profile_completeness)
    )
    stage[pql] = "PQL"
    rule[pql] = [
        f"PQL: trial with {a:g} active days in 14 d, {u:g} features used, profile {p:.0f} % complete"
        for a, u, p in zip(active[pql], used[pql], profile[pql], strict=True)
    ]

    good_fit = fit.isin(rules.sql_fits).to_numpy()
    by_bant = good_fit & (bant.to_numpy() >= rules.sql_min_bant)
    stage[by_bant] = "SQL"
    rule[by_bant] = [
        f"SQL: fit {f} with {b} of 4 BANT criteria met" for f, b in zip(fit[by_bant], bant[by_bant], strict=True)
    ]
    if probability is not None and rules.sql_min_probability is not None:
        p = probability.to_numpy()
        by_model = good_fit & (p >= rules.sql_min_probability)
        stage[by_model] = "SQL"
        rule[by_model] = [
            f"SQL: fit {f} and conversion probability {q:.0%} >= {rules.sql_min_probability:.0%}"
            for f, q in zip(fit[by_model], p[by_model], strict=True)
        ]
    accepted = features["lead_sales_accepted"].to_numpy() == 1
    stage[accepted] = "SQL"
    rule[accepted] = "SQL: accepted by sales"

    if previous_stage is not None:
        order = {s: i for i, s in enumerate(STAGES)}
        before = previous_stage.map(order).fillna(-1).to_numpy()
        kept = before > pd.Series(stage).map(order).to_numpy()
        stage[kept] = previous_stage.to_numpy()[kept]
        rule[kept] = [f"{s}: reached earlier (a lead never moves back)" for s in stage[kept]]
    return pd.DataFrame({"stage": stage, "stage_rule": rule}, index=features.index).astype("string")


def grade_leads(
    features: pd.DataFrame,
    counts: pd.DataFrame,
    rules: GradeRules,
    *,
    probability: pd.Series | None = None,
    previous_stage: pd.Series | None = None,
    cutoffs: BandCutoffs | None = None,
    rejections: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Fit and engagement points and grades, cell, stage, dormancy, the model's band (with `probability` and band
    `cutoffs`) and the routed action with its due-by and note, one row per feature row. `rejections`
    (`models.routing.sales_rejections`) keep sales' rejections standing."""
    fit_pts = fit_points(features, rules.fit)
    eng_pts = engagement_points(counts.set_axis(features.index), rules.engagement)
    fit = grade_from_points(fit_pts, rules.fit.cutoffs, FIT_GRADES).rename("fit_grade")
    engagement = grade_from_points(eng_pts, rules.engagement.cutoffs, ENGAGEMENT_GRADES).rename("engagement_grade")
    cell = (fit + engagement).rename("cell")
    bant = bant_met(features, rules).rename("bant_met")
    stages = assign_stage(
        features, fit, engagement, rules.stages, bant=bant, probability=probability, previous_stage=previous_stage
    )
    dormant = is_dormant(features, rules.routing)
    band = _band(probability, cutoffs, features.index)
    actions = assign_actions(
        cell,
        features["cutoff_time"],
        rules.routing,
        stages=stages["stage"],
        dormant=dormant,
        bands=band,
        accepted=features["lead_sales_accepted"] == 1 if "lead_sales_accepted" in features else None,
        cutoffs=cutoffs,
        timezone=rules.timezone,
    )
    if rejections is not None:
        actions = keep_rejections(actions, rejections, rejected_action=rules.routing.rejected_action)
    return pd.concat(
        [fit_pts.round(2), eng_pts.round(2), fit, engagement, cell, bant, dormant, band, actions, stages], axis=1
    )


def _band(probability: pd.Series | None, cutoffs: BandCutoffs | None, index: pd.Index) -> pd.Series:
    """The model's band per row; missing throughout without a probability or cut-offs (rules only)."""
    if probability is None or cutoffs is None:
        return pd.Series(pd.NA, index=index, name="band", dtype="string")
    return priority_band(probability.set_axis(index), cutoffs)


def grade_inputs_needed(rules: GradeRules) -> list[str]:
    """The feature columns the rules read."""
    return rules.fit_features()


def flat_stage(
    fit: pd.Series, engagement: pd.Series, rules: StageRules, *, probability: pd.Series | None = None
) -> pd.DataFrame:
    """Flat mode knows no contact details, product usage or sales acceptance: IQL, MQL by fit and engagement, SQL
    by the model's probability when `sql_min_probability` is set."""
    stage = np.full(len(fit), "IQL", dtype=object)
    rule = np.full(len(fit), "IQL: below the MQL thresholds", dtype=object)
    mql = _better_or_equal(fit, rules.mql_min_fit, FIT_GRADES) & _better_or_equal(
        engagement, rules.mql_min_engagement, ENGAGEMENT_GRADES
    )
    stage[mql] = "MQL"
    rule[mql] = [f"MQL: fit {f} and engagement {e}" for f, e in zip(fit[mql], engagement[mql], strict=True)]
    if probability is not None and rules.sql_min_probability is not None:
        p = probability.to_numpy()
        by_model = fit.isin(rules.sql_fits).to_numpy() & (p >= rules.sql_min_probability)
        stage[by_model] = "SQL"
        rule[by_model] = [
            f"SQL: fit {f} and conversion probability {q:.0%} >= {rules.sql_min_probability:.0%}"
            for f, q in zip(fit[by_model], p[by_model], strict=True)
        ]
    return pd.DataFrame({"stage": stage, "stage_rule": rule}, index=fit.index).astype("string")


def grade_flat_rows(
    features: pd.DataFrame,
    rules: GradeRules,
    engagement_rules: ColumnEngagementRules,
    *,
    as_of: pd.Timestamp,
    probability: pd.Series | None = None,
    cutoffs: BandCutoffs | None = None,
) -> pd.DataFrame:
    """Flat mode's grades, one row per feature row: fit from the `grades.fit` categories and engagement from the
    `flat.engagement` categories (both on the export's columns), the cell, stage, the model's band and the routed
    action (flat exports know no sales decisions)."""
    fit_pts = fit_points(features, rules.fit)
    eng_pts = fit_points(features, engagement_rules).rename("engagement_points")
    fit = grade_from_points(fit_pts, rules.fit.cutoffs, FIT_GRADES).rename("fit_grade")
    engagement = grade_from_points(eng_pts, engagement_rules.cutoffs, ENGAGEMENT_GRADES).rename("engagement_grade")
    cell = (fit + engagement).rename("cell")
    stages = flat_stage(fit, engagement, rules.stages, probability=probability)
    dormant = pd.Series(False, index=features.index, name="dormant")
    times = pd.Series(as_of, index=features.index)
    band = _band(probability, cutoffs, features.index)
    actions = assign_actions(
        cell,
        times,
        rules.routing,
        stages=stages["stage"],
        dormant=dormant,
        bands=band,
        cutoffs=cutoffs,
        timezone=rules.timezone,
    )
    return pd.concat(
        [fit_pts.round(2), eng_pts.round(2), fit, engagement, cell, dormant, band, actions, stages], axis=1
    )


def grade_spine(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    rules: GradeRules,
    params: FeatureParams,
    *,
    probability: pd.Series | None = None,
    previous_stage: pd.Series | None = None,
    context: FeatureContext | None = None,
    features: pd.DataFrame | None = None,
    cutoffs: BandCutoffs | None = None,
) -> pd.DataFrame:
    """The spine's rows with every grade column, using the same point-in-time builders as the model; the band from
    `probability` and the model's band `cutoffs` (none without a model); sales' rejections as known at each cutoff.

    A caller that already built a context (and features) for these spine rows passes them, so that nothing is
    computed twice.
    """
    if context is None:
        context = FeatureContext.of_tables(spine, tables, params=params)
    needed = rules.fit_features()
    have = [] if features is None else [n for n in needed if n in features]
    missing = feature_columns(context, [n for n in needed if n not in have])
    features = pd.concat([missing, features[have].reset_index(drop=True)] if have else [missing], axis=1)
    features["cutoff_time"] = spine["cutoff_time"].array  # positional; to_numpy would box tz-aware times one by one
    counts = engagement_counts(context, rules.engagement)
    graded = grade_leads(
        features,
        counts,
        rules,
        probability=probability,
        previous_stage=previous_stage,
        cutoffs=cutoffs,
        rejections=sales_rejections(context, new_activity_events=rules.routing.new_activity_events),
    )
    return pd.concat([spine.reset_index(drop=True), graded], axis=1)
