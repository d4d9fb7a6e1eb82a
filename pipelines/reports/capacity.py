"""The report's "capture at capacity" section: on the time-ordered holdout, the conversions captured when sales
takes only the top N leads of each ISO week (by cutoff), for the model, the rules-only grade and a random pick."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from leadscore.models.baselines import CellRateBaseline
from leadscore.models.capacity import capture_curve
from leadscore.models.capacity import team_key as _team_key
from leadscore.pipelines.verbs.capacity import POLICIES, capture_frame, lead_attribute

TABLE_CAPACITIES = (10, 25, 50, 100, 200)


def holdout_capture_frame(review) -> pd.DataFrame:
    """Holdout rows with their week, outcome and each policy's score (model; rules: the grade's conversion rate on
    the development rows)."""
    holdout = review.holdout
    scores = pd.DataFrame({"converted": holdout["converted"].to_numpy(), "lightgbm_calibrated": review.probability})
    if review.graded is not None:
        cells = review.graded["cell"]
        dev = review.split.dev
        rules = CellRateBaseline().fit(cells.iloc[dev].to_frame("cell"), review.training.frame["converted"].iloc[dev])
        scores["rules_grade"] = rules.predict_proba(cells.iloc[review.split.holdout].to_frame("cell"))[:, 1]
    times = holdout["cutoff_time"] if "cutoff_time" in holdout else pd.Series(pd.NaT, index=holdout.index)
    return capture_frame(scores, times.reset_index(drop=True))


def configured_capacity(review, frame: pd.DataFrame) -> int | None:
    """The configured weekly capacity for the whole sales team: `per_week`, or with `by` the sum over the teams
    met in the holdout (each team's capacity)."""
    rules = review.settings.grades.capacity
    if rules is None:
        return None
    if rules.by is None or review.data is None:
        return rules.per_week
    team_of = _team_key(lead_attribute(review.data, rules.by, "by"))
    teams = review.holdout["lead_id"].astype(str).map(team_of).fillna("(missing)").unique()
    return int(sum(rules.capacity_of(t) for t in teams))


def capacity_grid(frame: pd.DataFrame, highlight: int | None) -> list[int]:
    """Capacities 0 .. the busiest week's rows (about 40 points), with the table's and the configured ones."""
    busiest = int(frame.groupby("week").size().max()) if len(frame) else 0
    grid = set(np.unique(np.linspace(0, busiest, 41).round().astype(int)).tolist())
    grid |= {n for n in TABLE_CAPACITIES if n <= busiest}
    if highlight is not None:
        grid.add(highlight)
    return sorted(grid)


def capture_section_parts(review) -> tuple[pd.DataFrame, pd.DataFrame, object, int | None]:
    """The curve (captured conversions by capacity and policy), the small table (with the configured capacity
    marked) and the figure; and the configured capacity."""
    frame = holdout_capture_frame(review)
    scorers = [s for s in POLICIES if s in frame]
    highlight = configured_capacity(review, frame)
    curve = capture_curve(frame, scorers, capacity_grid(frame, highlight)).rename(columns=POLICIES)
    total = int(frame["converted"].sum())
    rows = sorted({n for n in TABLE_CAPACITIES if n in curve.index} | ({highlight} if highlight is not None else set()))
    table = curve.loc[rows].copy()
    for policy in list(curve.columns):
        table[f"{policy} share"] = table[policy] / total if total else np.nan
    table.index = [f"{n} (configured)" if n == highlight else str(n) for n in rows]
    table.index.name = "capacity per week"
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for policy in curve.columns:
        ax.plot(curve.index, curve[policy], label=policy, linestyle="--" if policy == "random" else "-")
    if highlight is not None:
        ax.axvline(highlight, color="grey", linestyle=":", label=f"configured: {highlight} a week")
    weeks = frame["week"].nunique()
    ax.set(
        xlabel="capacity: leads handed to sales per week",
        ylabel="conversions captured (holdout)",
        title=f"Capture at capacity: {weeks} holdout weeks, {total:,} conversions",
    )
    ax.legend()
    return curve, table, fig, highlight
