"""The label-times spine: one row per (lead_id, cutoff_time) with the label `converted`.

Training and scoring share one path: cutoffs are proposed by a policy, only leads still open at their cutoff are
kept, and training rows are then labelled from closed outcomes inside (cutoff, cutoff + horizon].

Two rules keep the training population honest:
- **Coverage.** With the `snapshots` policy a lead gets a cutoff every `every_days` from `delay_days` after its
  creation for its whole open life (up to `max_age_days`, default: no limit), so the rows cover leads of every age
  that `predict` scores, dormant ones included. At most `max_snapshots` of a lead's open cutoffs are kept, chosen
  by a seeded hash of (lead, cutoff) and not by position, so that every open cutoff of a lead has the same chance;
  each kept row weighs 1 / (rows kept for its lead), so every lead counts the same whatever its age.
- **No selection by outcome.** A row whose horizon runs past `as_of` is censored whatever happened inside it
  (won, lost or nothing yet): counted and dropped, never labelled. Keeping only the rows that already closed would
  select them by outcome (early wins and losses) and bias the latest rows, i.e. the holdout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.pointintime import NAT, to_ns


@dataclass(frozen=True)
class CutoffPolicy:
    """When a lead is scored for training: `delay_days` after creation, then every `every_days` while open (up to
    `max_age_days`), keeping at most `max_snapshots` cutoffs per lead."""

    policy: str = "snapshots"
    delay_days: float = 1.0
    every_days: float = 30.0
    max_snapshots: int = 6
    horizon_days: float = 90.0
    max_age_days: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.policy not in {"fixed_delay", "snapshots"}:
            raise ValueError(f"unknown cutoff policy {self.policy!r}: use 'fixed_delay' or 'snapshots'")
        if self.every_days <= 0 or self.max_snapshots < 1:
            raise ValueError("every_days must be > 0 and max_snapshots >= 1")

    @property
    def horizon(self) -> pd.Timedelta:
        return pd.Timedelta(days=self.horizon_days)


@dataclass(frozen=True)
class SpineStats:
    candidates: int
    closed_before_cutoff: int
    thinned: int
    censored: int
    rows: int
    positives: int
    leads: int


def first_decision(leads: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """When each lead's first deal closed (won or lost), NaT while none has; indexed by lead_id."""
    closed = opportunities[opportunities["status"].isin(["won", "lost"])]
    first = closed.groupby("lead_id", observed=True)["closed_at"].min()
    return first.reindex(pd.Index(leads["lead_id"], name="lead_id"))


def candidate_cutoffs(leads: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every cutoff the policy proposes that is not after `as_of` (nor past `max_age_days` after creation)."""
    created = to_ns(leads["created_at"])
    day = np.int64(86_400 * 10**9)
    delay, every = np.int64(round(policy.delay_days * day)), np.int64(round(policy.every_days * day))
    if policy.policy == "fixed_delay":
        counts = np.ones(len(leads), dtype=np.int64)
    else:
        last = np.full(len(leads), to_ns(pd.Series([as_of]))[0], dtype=np.int64)
        if policy.max_age_days is not None:
            last = np.minimum(last, created + np.int64(round(policy.max_age_days * day)))
        counts = np.where(last >= created + delay, (last - created - delay) // every + 1, 0).astype(np.int64)
    lead_index = np.repeat(np.arange(len(leads)), counts)
    step = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    cutoffs = created[lead_index] + delay + step * every
    spine = pd.DataFrame(
        {"lead_id": leads["lead_id"].to_numpy()[lead_index], "cutoff_time": pd.to_datetime(cutoffs, utc=True)}
    )
    return spine[spine["cutoff_time"] <= as_of].reset_index(drop=True)


def still_open(spine: pd.DataFrame, leads: pd.DataFrame, opportunities: pd.DataFrame) -> np.ndarray:
    """The lead existed at the cutoff and no deal of its had closed at or before it."""
    decided = to_ns(first_decision(leads, opportunities).reindex(spine["lead_id"]))
    created = to_ns(leads.set_index("lead_id")["created_at"].reindex(spine["lead_id"]))
    cutoff = to_ns(spine["cutoff_time"])
    return (created <= cutoff) & ((decided == NAT) | (decided > cutoff))


def thin_snapshots(spine: pd.DataFrame, *, max_snapshots: int, seed: int = 0) -> np.ndarray:
    """Which rows to keep so that no lead has more than `max_snapshots`: the rows with the smallest seeded hash of
    (lead, cutoff), so every open cutoff of a lead is equally likely to be kept, whatever its position."""
    if spine.empty:
        return np.zeros(0, dtype=bool)
    lead = spine["lead_id"].astype("string").to_numpy()
    keys = pd.DataFrame({"lead_id": lead, "cutoff": to_ns(spine["cutoff_time"])})
    draw = pd.util.hash_pandas_object(keys, index=False, hash_key=f"leadscore{seed:07d}"[:16]).to_numpy()
    rank = pd.Series(draw).groupby(keys["lead_id"].to_numpy()).rank(method="first").to_numpy()
    return rank <= max_snapshots


def lead_weights(lead_ids: pd.Series) -> np.ndarray:
    """1 / (rows of the lead): every lead counts 1 in total. Not rescaled here, so that a partition of leads (the
    Spark engine) gets the same weights as the whole; the model scales them to average 1."""
    if len(lead_ids) == 0:
        return np.zeros(0)
    return 1.0 / lead_ids.map(lead_ids.value_counts()).to_numpy(dtype=float)


def label(
    spine: pd.DataFrame, opportunities: pd.DataFrame, *, horizon: pd.Timedelta, data_end: pd.Timestamp
) -> pd.Series:
    """1 if a deal closes won in (cutoff, cutoff + horizon]; 0 if none does; NaN (censored) when the horizon ends
    after `data_end`, whatever happened inside it, so that rows are never kept or dropped by their outcome."""
    closed = opportunities.loc[opportunities["status"].isin(["won", "lost"]), ["lead_id", "closed_at", "status"]]
    pairs = spine[["lead_id", "cutoff_time"]].reset_index(names="row").merge(closed, on="lead_id")
    inside = (pairs["closed_at"] > pairs["cutoff_time"]) & (pairs["closed_at"] <= pairs["cutoff_time"] + horizon)
    won = np.zeros(len(spine), bool)
    won[pairs.loc[inside & (pairs["status"] == "won"), "row"].to_numpy()] = True
    observed = (spine["cutoff_time"] + horizon <= data_end).to_numpy()
    result = np.where(observed, won.astype(float), np.nan)
    return pd.Series(result, index=spine.index, name="converted")


def build_spine(
    leads: pd.DataFrame, opportunities: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, SpineStats]:
    """Labelled training rows for leads open at their cutoff, with a `sample_weight` per row; censored rows are
    counted and dropped."""
    candidates = candidate_cutoffs(leads, policy, as_of=as_of)
    open_rows = candidates[still_open(candidates, leads, opportunities)].reset_index(drop=True)
    kept_open = thin_snapshots(open_rows, max_snapshots=policy.max_snapshots, seed=policy.seed)
    thinned = open_rows[kept_open].reset_index(drop=True)
    converted = label(thinned, opportunities, horizon=policy.horizon, data_end=as_of)
    return labelled_rows(
        thinned,
        converted,
        key="lead_id",
        candidates=len(candidates),
        closed_before_cutoff=len(candidates) - len(open_rows),
        thinned_out=int((~kept_open).sum()),
    )


def labelled_rows(
    thinned: pd.DataFrame,
    converted: pd.Series,
    *,
    key: str,
    candidates: int,
    closed_before_cutoff: int,
    thinned_out: int,
) -> tuple[pd.DataFrame, SpineStats]:
    """The kept rows of a spine (lead or account, named by `key`) with their labels, in time order and weighted so
    that every `key` counts the same; censored rows (label NaN) counted and dropped."""
    label_values = pd.Series(converted).to_numpy(dtype="float64", na_value=np.nan)
    observed = ~np.isnan(label_values)
    kept = thinned.assign(converted=label_values)[observed].astype({"converted": "int8"})
    kept = kept.sort_values(["cutoff_time", key], kind="stable").reset_index(drop=True)
    kept["sample_weight"] = lead_weights(kept[key])
    stats = SpineStats(
        candidates=candidates,
        closed_before_cutoff=closed_before_cutoff,
        thinned=thinned_out,
        censored=int((~observed).sum()),
        rows=len(kept),
        positives=int(kept["converted"].sum()),
        leads=int(kept[key].nunique()),
    )
    return kept, stats


def scoring_spine(leads: pd.DataFrame, opportunities: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The leads open at `as_of`, each with cutoff_time = as_of: the same rule as training, at one instant."""
    candidates = pd.DataFrame({"lead_id": leads["lead_id"].to_numpy(), "cutoff_time": as_of})
    candidates["cutoff_time"] = candidates["cutoff_time"].astype("datetime64[ns, UTC]")
    return candidates[still_open(candidates, leads, opportunities)].reset_index(drop=True)


__all__ = [
    "CutoffPolicy",
    "SpineStats",
    "build_spine",
    "scoring_spine",
    "label",
    "labelled_rows",
    "lead_weights",
    "still_open",
    "thin_snapshots",
    "to_ns",
]
