"""How the rules hold up on closed deals: conversion per cell and stage, grade-order contradictions, and
data-driven cut-offs proposed (shown, never applied)."""

from __future__ import annotations

import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from leadscore.models.grade_rules import ENGAGEMENT_GRADES, FIT_GRADES, STAGES

CELLS = [f + e for f in FIT_GRADES for e in ENGAGEMENT_GRADES]


def conversion_table(graded: pd.DataFrame, *, by: str = "cell") -> pd.DataFrame:
    """Leads, conversions, conversion rate (and mean model probability when present) per cell or stage."""
    order = CELLS if by == "cell" else list(STAGES)
    aggregations = {
        "leads": ("converted", "size"),
        "converted": ("converted", "sum"),
        "conversion_rate": ("converted", "mean"),
    }
    if "probability" in graded:
        aggregations["mean_probability"] = ("probability", "mean")
    table = graded.groupby(by, observed=True).agg(**aggregations).reindex(order)
    table[["leads", "converted"]] = table[["leads", "converted"]].fillna(0).astype("int64")
    return table


def contradictions(table: pd.DataFrame, *, min_leads: int = 20) -> list[str]:
    """Pairs of cells in one row or column where the better grade converts worse (both with enough leads)."""
    found = []
    rate, leads = table["conversion_rate"], table["leads"]
    pairs = [
        (f1 + e, f2 + e) for e in ENGAGEMENT_GRADES for i, f1 in enumerate(FIT_GRADES) for f2 in FIT_GRADES[i + 1 :]
    ]
    pairs += [
        (f + e1, f + e2)
        for f in FIT_GRADES
        for i, e1 in enumerate(ENGAGEMENT_GRADES)
        for e2 in ENGAGEMENT_GRADES[i + 1 :]
    ]
    for better, worse in pairs:
        if min(leads[better], leads[worse]) < min_leads:
            continue
        if rate[worse] > rate[better]:
            found.append(
                f"{worse} converts better than {better}: {rate[worse]:.1%} vs {rate[better]:.1%} "
                f"(n = {leads[worse]} vs {leads[better]})"
            )
    return found


def propose_cutoffs(points: pd.Series, converted: pd.Series, grades: tuple[str, ...]) -> dict[str, float]:
    """Cut-offs on the points that best separate won from lost, from a shallow decision tree (one leaf a grade);
    none without both won and lost rows."""
    if len(points) == 0 or pd.Series(converted).nunique() < 2:
        return {}
    tree = DecisionTreeClassifier(
        max_leaf_nodes=len(grades), min_samples_leaf=max(20, len(points) // 20), random_state=0
    ).fit(points.to_frame(), converted)
    thresholds = sorted((t for t in tree.tree_.threshold if t != -2), reverse=True)
    return {grade: round(float(t), 1) for grade, t in zip(grades[:-1], thresholds, strict=False)}
