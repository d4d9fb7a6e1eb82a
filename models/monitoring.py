"""Closing the loop: what happened to the leads that were scored and routed (pure tables, no files, no MLflow).

* **Realized conversion**: a history row (lead scored at `as_of`) has its outcome once `as_of + horizon` has passed:
  the training label, computed the same way (won within the horizon = 1).
* **One outcome per lead**: a lead scored by many runs has one outcome per run that matured; figures and counts
  take one of them per lead and model (drawn as the training spine draws its rows), so a lead scored 70 times
  counts once, and the minimums of live figures are numbers of leads.
* **Handover**: the first production run (the champion's, not a shadow model's) that routed a lead to sales (an
  action with an SLA, so a `due_by`); its `as_of` is when sales got the lead, its `due_by` the deadline. Leads that
  sales had already accepted or rejected before that run are not handovers.
* **Acceptance**: a handover is accepted (or rejected) when sales' decision falls within `window` of it; the rate
  is accepted / handed over, read only for handovers whose window has passed.
* **Re-route after rejection**: a scoring run that sent to sales (a `due_by`) a lead that sales had rejected before
  the run (and not accepted since); legitimate only when the lead showed new activity after the rejection.
* **Biggest movers**: the latest production run's leads whose score moved most since their previous run (the
  `score_change` and `change_reasons` predict stored with the run; see models.movement).
* **SLA compliance**: share of handovers, whose deadline has passed, touched by sales (first touch at or after
  the handover) by their `due_by`. Times are compared as instants (UTC), so an SLA is elapsed hours, also across
  a daylight-saving change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.spine import label, thin_snapshots
from leadscore.models.evaluation import calibration_table, evaluate

HOURS = pd.Timedelta(hours=1)


def week_start(times: pd.Series) -> pd.Series:
    """Monday 00:00 UTC of each timestamp's week."""
    utc = pd.to_datetime(times, utc=True)
    return utc.dt.normalize() - pd.to_timedelta(utc.dt.day_of_week, unit="D")


def score_deciles(history: pd.DataFrame) -> pd.Series:
    """Decile of each row's probability within its own scoring run (10 = the highest scored tenth)."""
    run = history.groupby(["as_of", "model_name", "model_version"], sort=False, observed=True)["probability"]
    share = run.rank(method="first", pct=True)
    return np.ceil(share * 10).clip(1, 10).astype("int64").rename("decile")


def realized_outcomes(
    history: pd.DataFrame, opportunities: pd.DataFrame, *, horizon: pd.Timedelta, data_end: pd.Timestamp
) -> pd.DataFrame:
    """History rows whose horizon has passed by `data_end`, with their score decile and `converted` (0/1)."""
    rows = history.assign(decile=score_deciles(history))
    rows = rows[rows["as_of"] + horizon <= data_end].reset_index(drop=True)
    spine = pd.DataFrame({"lead_id": rows["lead_id"].astype("string"), "cutoff_time": rows["as_of"]})
    converted = label(spine, opportunities, horizon=horizon, data_end=data_end)
    return rows.assign(converted=converted.astype("int64").to_numpy())


def one_per_lead(outcomes: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """One matured score per lead and model: drawn by a seeded hash of (lead, as_of), as the training spine keeps a
    lead's rows, so no score is favoured by its age or outcome (a lead's latest score exists only while it stayed
    open, i.e. did not convert)."""
    if outcomes.empty:
        return outcomes
    model = outcomes["model_name"].astype("string") + "\x1f" + outcomes["model_version"].astype("string")
    keys = pd.DataFrame(
        {"lead_id": outcomes["lead_id"].astype("string") + "\x1f" + model, "cutoff_time": outcomes["as_of"]}
    )
    return outcomes[thin_snapshots(keys, max_snapshots=1, seed=seed)].reset_index(drop=True)


def conversion_by(outcomes: pd.DataFrame, by: str) -> pd.DataFrame:
    """Leads, conversions, realized conversion rate and mean predicted probability per value of `by` (on one
    outcome per lead: `one_per_lead`)."""
    table = outcomes.groupby(by, observed=True).agg(
        leads=("converted", "size"),
        conversions=("converted", "sum"),
        conversion_rate=("converted", "mean"),
        mean_probability=("probability", "mean"),
    )
    return table.reset_index()


def live_figures(outcomes: pd.DataFrame) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, ECE and the rest on matured outcomes, one per lead (`one_per_lead`), with the counts
    they rest on: `leads` (= outcomes), `conversions` and `scores` (the matured scores they were drawn from)."""
    per_lead = one_per_lead(outcomes)
    figures = {
        "leads": float(len(per_lead)),
        "conversions": float(per_lead["converted"].sum()),
        "scores": float(len(outcomes)),
    }
    if len(per_lead):
        figures.update(evaluate(per_lead["converted"].to_numpy(), per_lead["probability"].to_numpy()))
    return figures


def live_calibration(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Mean predicted probability against the realized rate by decile of the probability."""
    if len(outcomes) < 10:
        return pd.DataFrame(columns=["decile", "rows", "mean_predicted", "observed_rate"])
    return calibration_table(outcomes["converted"], outcomes["probability"])


def handovers(history: pd.DataFrame) -> pd.DataFrame:
    """Each lead's first production run (`production`, the champion's; all runs when the column is absent) that
    routed it to sales: handed_at, due_by, sla_hours, cell, stage, action. A shadow model's routes reached no one."""
    production = history["production"].to_numpy(dtype=bool) if "production" in history else True
    routed = history[history["due_by"].notna().to_numpy() & production].sort_values(["as_of", "lead_id"], kind="stable")
    first = routed.drop_duplicates("lead_id").reset_index(drop=True)
    out = first[["lead_id", "as_of", "due_by", "cell", "stage", "action"]].rename(columns={"as_of": "handed_at"})
    out["sla_hours"] = (out["due_by"] - out["handed_at"]) / HOURS
    out["week"] = week_start(out["handed_at"])
    return out


def sales_decisions(
    handed: pd.DataFrame, leads: pd.DataFrame, *, window: pd.Timedelta, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Per handover whose window has passed: accepted, rejected (with reason) or undecided within the window.

    Leads that sales had already accepted or rejected before the handover are left out: nothing was handed over.
    """
    info = leads.set_index("lead_id")
    accepted_at = _lead_time(handed, info, "sales_accepted_at")
    rejected_at = _lead_time(handed, info, "sales_rejected_at")
    start, end = handed["handed_at"], handed["handed_at"] + window
    decided_before = (accepted_at < start) | (rejected_at < start)
    accepted = (accepted_at >= start) & (accepted_at <= end)
    rejected = ~accepted & (rejected_at >= start) & (rejected_at <= end)
    reason = handed["lead_id"].map(info["rejection_reason"]) if "rejection_reason" in info else pd.NA
    out = handed.assign(
        accepted=accepted.to_numpy(),
        rejected=rejected.to_numpy(),
        rejection_reason=pd.Series(reason, index=handed.index).where(rejected),
    )
    return out[~decided_before.to_numpy() & (end <= data_end).to_numpy()].reset_index(drop=True)


def reroutes_after_rejection(history: pd.DataFrame, leads: pd.DataFrame, activity: pd.DataFrame) -> pd.DataFrame:
    """Per scoring run: the leads sent to sales that sales had rejected before the run (and not accepted since),
    split by whether they showed new activity after the rejection. `activity`: lead_id and occurred_at of the events
    that count as new activity."""
    keys = ["as_of", "model_name", "model_version"]
    sent = history[history["due_by"].notna()].reset_index(drop=True)
    info = leads.set_index("lead_id")
    rejected = _lead_time(sent, info, "sales_rejected_at")
    accepted = _lead_time(sent, info, "sales_accepted_at")
    stands = (rejected < sent["as_of"]) & ~((accepted > rejected) & (accepted < sent["as_of"]))
    rows = sent[stands.to_numpy()].assign(rejected_at=rejected[stands.to_numpy()].to_numpy())
    pairs = rows[["lead_id", "as_of", "rejected_at"]].merge(
        activity[["lead_id", "occurred_at"]].astype({"lead_id": "string"}), on="lead_id"
    )
    pairs = pairs[(pairs["occurred_at"] > pairs["rejected_at"]) & (pairs["occurred_at"] < pairs["as_of"])]
    active = pd.MultiIndex.from_frame(rows[["lead_id", "as_of"]]).isin(
        pd.MultiIndex.from_frame(pairs[["lead_id", "as_of"]])
    )
    rows = rows.assign(after_new_activity=active, without_new_activity=~active)
    table = rows.groupby(keys, observed=True).agg(
        rerouted=("lead_id", "size"),
        after_new_activity=("after_new_activity", "sum"),
        without_new_activity=("without_new_activity", "sum"),
    )
    return table.reset_index()


def _lead_time(handed: pd.DataFrame, info: pd.DataFrame, column: str) -> pd.Series:
    if column not in info:
        return pd.Series(pd.NaT, index=handed.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(handed["lead_id"].map(info[column]), utc=True)


def acceptance_by(decisions: pd.DataFrame, by: str) -> pd.DataFrame:
    """Handed over, accepted, rejected, undecided and acceptance rate (accepted / handed over) per `by`."""
    table = decisions.groupby(by, observed=True).agg(
        handed_over=("accepted", "size"),
        accepted=("accepted", "sum"),
        rejected=("rejected", "sum"),
    )
    table["undecided"] = table["handed_over"] - table["accepted"] - table["rejected"]
    table["acceptance_rate"] = table["accepted"] / table["handed_over"]
    return table.reset_index()


def rejection_reasons(decisions: pd.DataFrame) -> pd.DataFrame:
    """How often each rejection reason was given (no reason recorded: "(none given)")."""
    reasons = decisions.loc[decisions["rejected"], "rejection_reason"].astype("string").fillna("(none given)")
    return reasons.value_counts().rename_axis("rejection_reason").reset_index(name="rejections")


def first_touches(handed: pd.DataFrame, touches: pd.DataFrame, *, data_end: pd.Timestamp) -> pd.DataFrame:
    """Per handover whose deadline has passed: first sales touch at or after it, hours to it, within the SLA.

    `touches` has `lead_id` and `touched_at` (any time zone: instants are compared, so hours are elapsed time).
    """
    due = handed[handed["due_by"] <= data_end].reset_index(drop=True)
    if due.empty:
        return due.assign(
            first_touch_at=due["handed_at"],
            hours_to_first_touch=pd.Series(dtype="float64"),
            within_sla=pd.Series(dtype=bool),
        )
    pairs = (
        due[["lead_id", "handed_at"]]
        .astype({"lead_id": "string"})
        .merge(touches[["lead_id", "touched_at"]].astype({"lead_id": "string"}), on="lead_id", how="inner")
    )
    pairs["touched_at"] = pd.to_datetime(pairs["touched_at"], utc=True)
    pairs = pairs[pairs["touched_at"] >= pairs["handed_at"]]
    first = pairs.groupby("lead_id")["touched_at"].min()
    touched_at = pd.to_datetime(due["lead_id"].astype("string").map(first), utc=True)
    hours = (touched_at - due["handed_at"]) / HOURS
    return due.assign(
        first_touch_at=touched_at,
        hours_to_first_touch=hours,
        within_sla=(touched_at <= due["due_by"]).fillna(False).astype(bool),
    )


def sla_by(touched: pd.DataFrame, by: str) -> pd.DataFrame:
    """Handovers, touched within SLA, compliance (share within SLA), median hours to first touch, never touched."""
    table = touched.groupby(by, observed=True).agg(
        handed_over=("within_sla", "size"),
        within_sla=("within_sla", "sum"),
        median_hours_to_first_touch=("hours_to_first_touch", "median"),
        never_touched=("first_touch_at", lambda s: int(s.isna().sum())),
    )
    table["sla_compliance"] = table["within_sla"] / table["handed_over"]
    columns = ["handed_over", "within_sla", "sla_compliance", "median_hours_to_first_touch", "never_touched"]
    return table.reset_index()[[by, *columns]]


def acceptance_drop(weekly: pd.DataFrame) -> float | None:
    """Percentage points by which the latest week's acceptance rate is below that of all earlier weeks pooled."""
    weeks = weekly.sort_values("week")
    if len(weeks) < 2:
        return None
    earlier = weeks.iloc[:-1]
    before = earlier["accepted"].sum() / earlier["handed_over"].sum()
    return float((before - weeks["acceptance_rate"].iloc[-1]) * 100)


MOVER_COLUMNS = ["lead_id", "as_of", "previous_score", "score", "score_change", "change_reasons", "model_version"]


def biggest_movers(history: pd.DataFrame, *, n: int) -> pd.DataFrame:
    """The `n` leads of the latest production run whose score moved most (by absolute change; ties by lead id),
    with the score before and after; empty when that run stored no change (a history written before score
    movement, or `n` = 0)."""
    production = history[history["production"].to_numpy(dtype=bool)]
    if production.empty or n <= 0 or "score_change" not in production:
        return pd.DataFrame(columns=MOVER_COLUMNS)
    latest = production[production["as_of"] == production["as_of"].max()]
    moved = latest[latest["score_change"].notna() & (latest["score_change"] != 0)].copy()
    moved["size"] = moved["score_change"].abs()
    moved = moved.sort_values(["size", "lead_id"], ascending=[False, True], kind="stable").head(n)
    moved["previous_score"] = moved["score"] - moved["score_change"]
    return moved[MOVER_COLUMNS].reset_index(drop=True)
