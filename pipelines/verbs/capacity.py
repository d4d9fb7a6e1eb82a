"""Capacity-aware hand-off in `predict` (`[grades.capacity]`): the leads the routing table sends to sales, ranked by
expected value, go to sales up to the capacity left this ISO week; the rest are nurtured "over capacity".

"Per week" holds across runs: the leads handed to sales by earlier runs of the same week are read from the score
history (rows with a `due_by`, the handovers `monitor` counts) and use up capacity first; such a lead keeps its
hand-off without being counted again. The rules themselves live in `models.capacity`.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from leadscore.models.capacity import (
    ACCEPTED,
    EARLIER,
    NEW,
    OVER,
    CapacityRules,
    allocate,
    capture_summary,
    capture_table,
    captured_at_capacity,
    expected_value,
)
from leadscore.models.capacity import team_key as _team_key
from leadscore.models.monitoring import week_start
from leadscore.models.routing import join_notes
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.validation import CrmData

log = logging.getLogger(__name__)

CAPACITY_COLUMNS = ["team", "expected_value", "table_action", "handoff", "handoff_rank"]
_FLOATS = ("expected_conversions", "rules_expected_conversions", "rules_at_capacity_random")


def lead_attribute(data: CrmData, column: str, key: str) -> pd.Series:
    """A column of the loaded leads table, or of the accounts table through the lead's account; by lead id."""
    leads = data.tables["leads"]
    ids = leads["lead_id"].astype(str).to_numpy()
    if column in leads:
        return pd.Series(leads[column].to_numpy(), index=ids)
    accounts = data.tables.get("accounts")
    if accounts is not None and column in accounts and "account_id" in leads:
        by_account = accounts.drop_duplicates("account_id").set_index("account_id")[column]
        return pd.Series(leads["account_id"].map(by_account).to_numpy(), index=ids)
    known = sorted(set(leads.columns) | (set(accounts.columns) if accounts is not None else set()))
    raise UsageError(
        f"'{column}' is not a column of the loaded leads or accounts tables",
        where=f"grades.capacity.{key}",
        hint=f"name a contract role or a custom field (tables.leads.custom); loaded: {known}",
    )


def week_of(as_of: pd.Timestamp) -> tuple[pd.Timestamp, str]:
    """Monday 00:00 UTC of the as-of's ISO week, and its ISO label (2025-W27)."""
    start = week_start(pd.Series([pd.Timestamp(as_of)]))[0]
    year, week, _ = pd.Timestamp(as_of).tz_convert("UTC").isocalendar()
    return start, f"{year}-W{week:02d}"


def earlier_handoffs(history: pd.DataFrame, as_of: pd.Timestamp, *, accepted_at: pd.Series | None = None) -> pd.Series:
    """Lead ids handed to sales (a `due_by`) by runs earlier than `as_of` in its ISO week, leaving out leads sales
    had accepted before that run (they used no capacity; `accepted_at`: acceptance time by lead id). Runs at
    `as_of` itself are left out: a rerun replaces its own rows and must give the same answer."""
    start, _ = week_of(as_of)
    when = pd.to_datetime(history["as_of"], utc=True)
    rows = history[((when >= start) & (when < as_of) & history["due_by"].notna()).to_numpy(dtype=bool)]
    if accepted_at is not None and len(rows):
        accepted = pd.to_datetime(rows["lead_id"].astype(str).map(accepted_at), utc=True)
        rows = rows[~(accepted < pd.to_datetime(rows["as_of"], utc=True)).to_numpy(dtype=bool)]
    return pd.Series(rows["lead_id"].astype(str).unique(), name="lead_id", dtype=object)


def route_within_capacity(
    scores: pd.DataFrame, rules: CapacityRules, *, data: CrmData, history: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores with the capacity columns and the held-back leads' actions set to nurture, and the capture
    summary (per team and total). `history`: the score history (may be empty)."""
    out = scores.copy()
    ids = out["lead_id"].astype(str)
    team_of = _team_key(lead_attribute(data, rules.by, "by")) if rules.by else None
    out["team"] = ids.map(team_of).fillna("(missing)").to_numpy() if team_of is not None else "all"
    amount = ids.map(lead_attribute(data, rules.value_column, "value_column")) if rules.value_column else None
    out["expected_value"] = expected_value(out["probability"], amount).to_numpy()
    leads = data.tables["leads"]
    accepted_at = None
    if "sales_accepted_at" in leads:
        times = pd.to_datetime(leads["sales_accepted_at"], utc=True)
        known = times.notna().to_numpy()
        accepted_at = pd.Series(times[known].to_numpy(), index=leads.loc[known, "lead_id"].astype(str).to_numpy())
    out["to_sales"] = out["sla_hours"].notna().to_numpy()
    out["accepted"] = ids.isin(set(accepted_at.index[accepted_at < as_of]) if accepted_at is not None else set())
    before = earlier_handoffs(history, as_of, accepted_at=accepted_at)
    earlier = pd.DataFrame(
        {"lead_id": before, "team": before.map(team_of).fillna("(missing)") if team_of is not None else "all"}
    )
    out = out.join(allocate(out, rules, earlier=earlier))
    out["table_action"] = out["action"]
    held = (out["handoff"] == OVER).fillna(False).to_numpy(dtype=bool)
    out.loc[held, "action"] = rules.over_capacity_action
    out.loc[held, "sla_hours"] = np.nan
    out.loc[held, "due_by"] = pd.NaT
    # a held-back lead's row says so, a hot one's too: the table (and the model) sent it to sales
    held_note = ("over this week's capacity: held back from " + out["table_action"].astype("string")).where(held)
    out["route_note"] = join_notes(out.get("route_note", pd.Series(pd.NA, index=out.index)), held_note)
    summary = capture_summary(out, rules, earlier=earlier)
    log.info(
        "capacity: %d new hand-off(s), %d earlier this week, %d over capacity",
        int((out["handoff"] == NEW).sum()),
        int((out["handoff"] == EARLIER).sum()),
        int(held.sum()),
    )
    return out.drop(columns=["to_sales", "accepted"]), summary


def apply_capacity(settings: Settings, data: CrmData, scores: pd.DataFrame) -> tuple[pd.DataFrame, dict | None]:
    """`predict`'s step: route within `grades.capacity` (when set) using the score history; returns the scores and
    a JSON-able summary (None without capacity)."""
    rules = settings.grades.capacity
    if rules is None or scores.empty:
        return scores, None
    from leadscore.pipelines.outputs.history import read_history

    as_of = pd.Timestamp(data.as_of)
    start, label = week_of(as_of)
    history = (
        read_history(settings, since=start)
        if settings.history.enabled
        else pd.DataFrame(columns=["lead_id", "as_of", "due_by"])
    )
    if not settings.history.enabled:
        log.warning("grades.capacity without a score history: earlier runs of this week cannot be counted")
    routed, table = route_within_capacity(scores, rules, data=data, history=history, as_of=as_of)
    summary = {
        "week": label,
        "week_start": start.isoformat(),
        "by": rules.by,
        "value_column": rules.value_column,
        "teams": {
            str(k): {c: (round(float(v), 4) if c in _FLOATS else int(v)) for c, v in row.items()}
            for k, row in table.to_dict("index").items()
        },
    }
    return routed, summary


def capture_lines(summary: dict) -> list[str]:
    """The printed capture table: one row per team (and the total)."""
    head = (
        f"capacity, ISO week {summary['week']} (from {summary['week_start'][:10]})"
        + (f", per {summary['by']}" if summary["by"] else "")
        + (f", ranked by probability x {summary['value_column']}" if summary["value_column"] else "")
        + "\n  week = earlier runs + new; expected conversions = sum of probabilities of the leads with sales now; "
        "rules = what the routing table alone sends (at capacity: as many of them at random)"
    )
    table = pd.DataFrame(summary["teams"]).T.rename(
        columns={
            "handed_off_earlier": "earlier",
            "over_capacity": "over capacity",
            "week_total": "week",
            "to_sales": "with sales",
            "expected_conversions": "expected conv.",
            "rules_leads": "rules leads",
            "rules_expected_conversions": "rules expected conv.",
            "rules_at_capacity_random": "rules at capacity",
        }
    )
    table.index.name = "team"
    counts = ["capacity", "earlier", "new", "week", "over capacity", "with sales", "rules leads"]
    table = table.astype("float64").astype({c: "int64" for c in counts})
    columns = [
        "capacity",
        "earlier",
        "new",
        "week",
        "over capacity",
        "with sales",
        "expected conv.",
        "rules leads",
        "rules expected conv.",
        "rules at capacity",
    ]
    return [head, table[columns].to_string(float_format=lambda v: f"{v:.1f}")]


__all__ = [
    "ACCEPTED",
    "CAPACITY_COLUMNS",
    "EARLIER",
    "NEW",
    "OVER",
    "apply_capacity",
    "capture_lines",
    "earlier_handoffs",
    "route_within_capacity",
    "week_of",
]


# -- backtest and report: captured conversions at capacity -----------------------------------------------------
POLICIES = {"lightgbm_calibrated": "model", "logistic_regression": "logistic regression", "rules_grade": "rules"}


def capture_frame(
    predictions: pd.DataFrame, times: pd.Series, *, teams: pd.Series | None = None, period: pd.Series | None = None
) -> pd.DataFrame:
    """Scored rows with the group they compete in: the ISO week (Monday, UTC) of their cutoff, or their backtest
    period when the rows have no times (flat, row-ordered data); and their team when capacity is per team."""
    out = predictions.copy()
    stamps = pd.to_datetime(times, utc=True)
    if stamps.notna().all():
        out["week"] = week_start(stamps.reset_index(drop=True)).dt.strftime("%Y-%m-%d").to_numpy()
    else:
        out["week"] = (period if period is not None else pd.Series("all", index=out.index)).to_numpy()
    if teams is not None:
        out["team"] = teams.to_numpy()
    return out


def capture_at_capacity(
    frame: pd.DataFrame, rules: CapacityRules | None, *, capacity: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
    """Captured conversions of each policy's top N per week (per team with `by`), at `capacity` (overriding the
    configured `per_week`, per team too): per-week rows, the total table (renamed policies), the scorers."""
    if rules is None and capacity is None:
        return None
    scorers = [s for s in POLICIES if s in frame]
    if rules is not None and rules.by is not None and "team" in frame and capacity is None:
        limit: int | dict[str, int] = {t: rules.capacity_of(t) for t in frame["team"].unique()}
    else:
        limit = capacity if capacity is not None else rules.per_week
    per_week = captured_at_capacity(frame, scorers, capacity=limit)
    table = capture_table(per_week, scorers).rename(index=POLICIES)
    return per_week, table, scorers


def backtest_capture(
    settings: Settings,
    data: CrmData | None,
    training_frame: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    capacity: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]] | None:
    """`backtest`'s capture table from its pooled predictions (one row per scored test row)."""
    rules = settings.grades.capacity
    rows = training_frame.iloc[predictions["row"].to_numpy()]
    teams = None
    if rules is not None and rules.by is not None and capacity is None and data is not None:
        teams = rows["lead_id"].astype(str).map(_team_key(lead_attribute(data, rules.by, "by"))).fillna("(missing)")
    frame = capture_frame(
        predictions,
        rows["cutoff_time"] if "cutoff_time" in rows else pd.Series(pd.NaT, index=rows.index),
        teams=teams,
        period=predictions["period"],
    )
    return capture_at_capacity(frame, rules, capacity=capacity)


def capture_text(table: pd.DataFrame, per_week: pd.DataFrame) -> str:
    weeks = len(per_week)
    head = (
        f"captured conversions at capacity ({int(table['handed_off'].iloc[0]):,} hand-offs over {weeks} "
        f"week(s); {int(table['all_conversions'].iloc[0]):,} conversions in all):"
    )
    return (
        head
        + "\n"
        + table[["captured_conversions", "share_of_all_conversions"]].to_string(float_format=lambda v: f"{v:.3f}")
    )
