"""Capacity-aware hand-off: sales can accept only so many leads a week, so the leads the routing table sends to
sales are ranked by expected value and only the best go, up to the capacity left this week; the rest are nurtured
"over capacity". Also the captured-conversions arithmetic behind `backtest` and the report (pure functions).

Definitions (docs/capacity.md):

* **Week**: the ISO week of the scoring run's as-of (Monday 00:00 UTC to the next Monday), the week `monitor` uses.
* **Sent to sales**: the routing table's action for the lead has an SLA (the same test `monitor` uses for a
  handover). Leads sales has already accepted are sales' already: they keep their route and use no capacity.
* **Expected value**: probability, or probability x amount with `value_column`. A missing, non-numeric or non-positive
  amount counts as the median of this run's known positive amounts (a typical deal: neither favoured nor buried);
  with no known amount at all, expected value is the probability.
* **Order** (deterministic, so reruns are identical): expected value descending, then probability descending, then
  lead id ascending (as text).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

MISSING_TEAM = "(missing)"
NEW, EARLIER, ACCEPTED, OVER = "new this week", "earlier this week", "accepted by sales", "over capacity"


class CapacityRules(BaseModel):
    """`[grades.capacity]`: how many new leads sales can accept per ISO week, overall or per team/territory."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a value of the wrong type is an error, never coerced

    per_week: int = Field(ge=0, description="leads per week; with `by`: for each team not listed in `teams`")
    by: str | None = Field(None, description="a leads column (or an accounts column, through the lead's account)")
    teams: dict[str, int] = Field(default_factory=dict, description="team value (as written) -> leads per week")
    value_column: str | None = Field(
        None, description="a leads (or accounts) column with the deal amount: rank by probability x amount"
    )
    over_capacity_action: str = Field("nurture", min_length=1, description="action of a lead held back")

    @model_validator(mode="after")
    def _teams_need_by(self) -> CapacityRules:
        if self.teams and self.by is None:
            raise ValueError("grades.capacity.teams needs grades.capacity.by (the lead column naming the team)")
        if any(v < 0 for v in self.teams.values()):
            raise ValueError("grades.capacity.teams: capacities must be >= 0")
        return self

    def capacity_of(self, team: str) -> int:
        return self.teams.get(team, self.per_week)


def team_key(values: pd.Series) -> pd.Series:
    """Team labels as text; a missing value is its own team, `(missing)`."""
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), MISSING_TEAM).astype(object)


def expected_value(probability: pd.Series, amount: pd.Series | None = None) -> pd.Series:
    """Probability x amount; a missing or non-positive amount counts as the median known positive amount."""
    p = probability.astype("float64")
    if amount is None:
        return p.rename("expected_value")
    numbers = pd.to_numeric(amount, errors="coerce").astype("float64")
    known = numbers[numbers > 0]
    if known.empty:
        return p.rename("expected_value")
    filled = numbers.where(numbers > 0, float(known.median()))
    return (p * filled).rename("expected_value")


def hand_off_order(leads: pd.DataFrame) -> pd.Index:
    """Index of `leads` (expected_value, probability, lead_id) best first: the documented tie-breaking."""
    key = pd.DataFrame(
        {
            "ev": -leads["expected_value"].to_numpy(dtype="float64"),
            "p": -leads["probability"].to_numpy(dtype="float64"),
            "id": leads["lead_id"].astype(str).to_numpy(),
        },
        index=leads.index,
    )
    return key.sort_values(["ev", "p", "id"], kind="stable").index


def allocate(leads: pd.DataFrame, rules: CapacityRules, *, earlier: pd.DataFrame) -> pd.DataFrame:
    """Who goes to sales this run.

    `leads`: lead_id, probability, expected_value, team, to_sales (the routing table's route has an SLA) and
    accepted (sales has accepted the lead). `earlier`: lead_id and team of the leads handed to sales by earlier runs
    of the same week. Returns, per lead (same index): `handoff` (new this week, earlier this week, accepted by
    sales, over capacity; missing when the table does not send the lead to sales) and `handoff_rank` (1 = best
    candidate of its team this run; missing for leads that were not candidates).
    """
    handoff = pd.Series(pd.NA, index=leads.index, dtype="object")
    rank = pd.Series(pd.NA, index=leads.index, dtype="Int64")
    to_sales = leads["to_sales"].to_numpy(dtype=bool)
    accepted = leads["accepted"].to_numpy(dtype=bool)
    before = set(earlier["lead_id"].astype(str))
    was_earlier = leads["lead_id"].astype(str).isin(before).to_numpy()
    handoff[to_sales & accepted] = ACCEPTED
    handoff[to_sales & ~accepted & was_earlier] = EARLIER  # keeps its hand-off, already counted in `used`
    used = earlier.drop_duplicates("lead_id")["team"].value_counts()
    candidates = leads[to_sales & ~accepted & ~was_earlier]
    for team, group in candidates.groupby("team", sort=True):
        left = max(0, rules.capacity_of(str(team)) - int(used.get(team, 0)))
        order = hand_off_order(group)
        rank.loc[order] = np.arange(1, len(order) + 1)
        handoff.loc[order[:left]] = NEW
        handoff.loc[order[left:]] = OVER
    return pd.DataFrame({"handoff": handoff.astype("string"), "handoff_rank": rank}, index=leads.index)


def capture_summary(scores: pd.DataFrame, rules: CapacityRules, *, earlier: pd.DataFrame) -> pd.DataFrame:
    """Per team (and a total row): capacity, hand-offs this week (`week_total` = earlier runs + new in this run),
    the leads with sales in this run (`to_sales`: new and kept) and their expected conversions (sum of
    probabilities), against what the routing table alone sends (leads and expected conversions,
    already-accepted leads left out on both sides) and the expected conversions of as many of the table's leads
    taken at random (what a team working the table's leads in no particular order would get at its capacity).

    `scores`: team, probability, handoff (from `allocate`)."""
    table = scores[scores["handoff"].notna() & (scores["handoff"] != ACCEPTED)]
    sent = table[table["handoff"].isin([NEW, EARLIER])]
    teams = sorted(set(table["team"]) | set(earlier["team"]) | (set(rules.teams) if rules.by else {"all"}))
    rows = []
    for team in teams:
        mine, went = table[table["team"] == team], sent[sent["team"] == team]
        before = earlier[earlier["team"] == team]["lead_id"].nunique()
        n_table, p_table = len(mine), float(mine["probability"].sum())
        rows.append(
            {
                "team": team,
                "capacity": rules.capacity_of(team),
                "handed_off_earlier": before,
                "new": int((went["handoff"] == NEW).sum()),
                "over_capacity": int((mine["handoff"] == OVER).sum()),
                "week_total": before + int((went["handoff"] == NEW).sum()),
                "to_sales": len(went),
                "expected_conversions": float(went["probability"].sum()),
                "rules_leads": n_table,
                "rules_expected_conversions": p_table,
                "rules_at_capacity_random": p_table * min(1.0, len(went) / n_table) if n_table else 0.0,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "team",
            "capacity",
            "handed_off_earlier",
            "new",
            "week_total",
            "over_capacity",
            "to_sales",
            "expected_conversions",
            "rules_leads",
            "rules_expected_conversions",
            "rules_at_capacity_random",
        ],
    ).set_index("team")
    if rules.by is not None and len(out) > 1:
        out.loc["total"] = out.sum(numeric_only=True)
    return out


# -- captured conversions at capacity (backtest, report) --------------------------------------------------------
def top_n_conversions(score: np.ndarray, converted: np.ndarray, n: int) -> float:
    """Conversions among the `n` highest scores, ties at the boundary broken at random (their exact expectation):
    a constant score gives n / rows x conversions, i.e. a random pick."""
    score, converted = np.asarray(score, dtype="float64"), np.asarray(converted, dtype="float64")
    if n <= 0 or len(score) == 0:
        return 0.0
    if n >= len(score):
        return float(converted.sum())
    threshold = np.sort(score)[::-1][n - 1]
    above, tied = score > threshold, score == threshold
    return float(converted[above].sum() + converted[tied].sum() * (n - above.sum()) / tied.sum())


def captured_at_capacity(
    frame: pd.DataFrame, scorers: list[str], *, capacity: int | dict[str, int], by: str = "week"
) -> pd.DataFrame:
    """Per group (a week, or a week and team): rows, conversions, and the conversions captured by each scorer's top
    `capacity` rows, beside a random pick. `frame`: the `by` column(s), converted, one column per scorer. With a
    dict, `capacity[team]` applies to each group's `team` value (a `team` column is then needed)."""
    keys = [by, "team"] if isinstance(capacity, dict) else [by]
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n = capacity[key[-1]] if isinstance(capacity, dict) else capacity
        y = group["converted"].to_numpy()
        row = dict(zip(keys, key, strict=True)) | {"capacity": n, "rows": len(group), "conversions": int(y.sum())}
        row |= {s: top_n_conversions(group[s].to_numpy(), y, n) for s in scorers}
        row["random"] = top_n_conversions(np.zeros(len(group)), y, n)
        rows.append(row)
    return pd.DataFrame(rows)


def capture_table(per_group: pd.DataFrame, scorers: list[str]) -> pd.DataFrame:
    """Totals over the groups: captured conversions per policy and their share of all conversions."""
    total = per_group["conversions"].sum()
    policies = [*scorers, "random"]
    captured = [float(per_group[p].sum()) for p in policies]
    return pd.DataFrame(
        {
            "captured_conversions": captured,
            "share_of_all_conversions": [c / total if total else np.nan for c in captured],
            "handed_off": float(np.minimum(per_group["capacity"], per_group["rows"]).sum()),
            "all_conversions": int(total),
        },
        index=pd.Index(policies, name="policy"),
    )


def capture_curve(frame: pd.DataFrame, scorers: list[str], capacities: list[int], *, by: str = "week") -> pd.DataFrame:
    """Captured conversions summed over the groups, for each capacity N (rows) and policy (columns)."""
    rows = {n: captured_at_capacity(frame, scorers, capacity=n, by=by)[[*scorers, "random"]].sum() for n in capacities}
    return pd.DataFrame(rows).T.rename_axis("capacity_per_week")
