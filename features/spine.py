"""The label-times spine: one row per (lead_id, cutoff_time) with the label `converted`.

Training and scoring share one path: cutoffs are proposed by a policy, only leads still open at their cutoff are
kept, and training rows are then labelled from closed outcomes inside (cutoff, cutoff + horizon]. A row whose
horizon runs past the end of the data with no outcome yet is censored: counted and dropped, never labelled 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.pointintime import NAT, to_ns


@dataclass(frozen=True)
class CutoffPolicy:
    """When a lead is scored for training: `delay_days` after creation, then every `every_days` while open."""

    policy: str = "fixed_delay"
    delay_days: float = 7.0
    every_days: float = 30.0
    max_snapshots: int = 6
    horizon_days: float = 90.0

    def __post_init__(self) -> None:
        if self.policy not in {"fixed_delay", "snapshots"}:
            raise ValueError(f"unknown cutoff policy {self.policy!r}: use 'fixed_delay' or 'snapshots'")

    @property
    def horizon(self) -> pd.Timedelta:
        return pd.Timedelta(days=self.horizon_days)


@dataclass(frozen=True)
class SpineStats:
    candidates: int
    closed_before_cutoff: int
    censored: int
    rows: int
    positives: int


def first_decision(leads: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """When each lead's first deal closed (won or lost), NaT while none has; indexed by lead_id."""
    closed = opportunities[opportunities["status"].isin(["won", "lost"])]
    first = closed.groupby("lead_id", observed=True)["closed_at"].min()
    return first.reindex(pd.Index(leads["lead_id"], name="lead_id"))


def candidate_cutoffs(leads: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every cutoff the policy proposes that is not after `as_of`."""
    count = 1 if policy.policy == "fixed_delay" else policy.max_snapshots
    steps = np.arange(count)
    offsets = pd.to_timedelta(policy.delay_days + steps * policy.every_days, unit="D").to_numpy().astype("m8[ns]")
    cutoffs = (to_ns(leads["created_at"])[:, None] + offsets.view("int64")[None, :]).ravel()
    spine = pd.DataFrame(
        {"lead_id": np.repeat(leads["lead_id"].to_numpy(), count), "cutoff_time": pd.to_datetime(cutoffs, utc=True)}
    )
    return spine[spine["cutoff_time"] <= as_of].reset_index(drop=True)


def still_open(spine: pd.DataFrame, leads: pd.DataFrame, opportunities: pd.DataFrame) -> np.ndarray:
    """The lead existed at the cutoff and no deal of its had closed at or before it."""
    decided = to_ns(first_decision(leads, opportunities).reindex(spine["lead_id"]))
    created = to_ns(leads.set_index("lead_id")["created_at"].reindex(spine["lead_id"]))
    cutoff = to_ns(spine["cutoff_time"])
    return (created <= cutoff) & ((decided == NAT) | (decided > cutoff))


def label(
    spine: pd.DataFrame, opportunities: pd.DataFrame, *, horizon: pd.Timedelta, data_end: pd.Timestamp
) -> pd.Series:
    """1 if a deal closes won in (cutoff, cutoff + horizon]; 0 if one closes lost there, or the horizon passed
    within the data without a win; NaN (censored) otherwise."""
    closed = opportunities.loc[opportunities["status"].isin(["won", "lost"]), ["lead_id", "closed_at", "status"]]
    pairs = spine[["lead_id", "cutoff_time"]].reset_index(names="row").merge(closed, on="lead_id")
    inside = (pairs["closed_at"] > pairs["cutoff_time"]) & (pairs["closed_at"] <= pairs["cutoff_time"] + horizon)
    won = np.zeros(len(spine), bool)
    lost = np.zeros(len(spine), bool)
    won[pairs.loc[inside & (pairs["status"] == "won"), "row"].to_numpy()] = True
    lost[pairs.loc[inside & (pairs["status"] == "lost"), "row"].to_numpy()] = True
    observed = (spine["cutoff_time"] + horizon <= data_end).to_numpy()
    result = np.where(won, 1.0, np.where(lost | observed, 0.0, np.nan))
    return pd.Series(result, index=spine.index, name="converted")


def build_spine(
    leads: pd.DataFrame, opportunities: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, SpineStats]:
    """Labelled training rows for leads open at their cutoff; censored rows counted and dropped."""
    candidates = candidate_cutoffs(leads, policy, as_of=as_of)
    open_rows = candidates[still_open(candidates, leads, opportunities)].reset_index(drop=True)
    converted = label(open_rows, opportunities, horizon=policy.horizon, data_end=as_of)
    spine = open_rows.assign(converted=converted)
    kept = spine[converted.notna()].astype({"converted": "int8"})
    kept = kept.sort_values(["cutoff_time", "lead_id"], kind="stable").reset_index(drop=True)
    stats = SpineStats(
        candidates=len(candidates),
        closed_before_cutoff=len(candidates) - len(open_rows),
        censored=int(converted.isna().sum()),
        rows=len(kept),
        positives=int(kept["converted"].sum()),
    )
    return kept, stats


def scoring_spine(leads: pd.DataFrame, opportunities: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The leads open at `as_of`, each with cutoff_time = as_of: the same rule as training, at one instant."""
    candidates = pd.DataFrame({"lead_id": leads["lead_id"].to_numpy(), "cutoff_time": as_of})
    candidates["cutoff_time"] = candidates["cutoff_time"].astype("datetime64[ns, UTC]")
    return candidates[still_open(candidates, leads, opportunities)].reset_index(drop=True)


__all__ = ["CutoffPolicy", "SpineStats", "build_spine", "scoring_spine", "label", "still_open", "to_ns"]
