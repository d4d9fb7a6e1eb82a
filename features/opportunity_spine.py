"""The opportunity spine: one row per (opportunity_id, cutoff_time) with the label `converted` (the deal is won).

The lead spine's rules (features/spine.py), reusing its machinery with the deal in the lead's place:
- **Cutoffs.** A deal gets a cutoff `delay_days` after it was created, then every `every_days` (up to
  `max_age_days`), never after `as_of`. A cutoff is kept only while the deal is open (created at or before it, not
  closed at or before it): exactly the deals `predict --level opportunity` scores at `as_of`. At most
  `max_snapshots` cutoffs per deal are kept, chosen by the same seeded hash; each kept row weighs
  1 / (rows kept for its deal), so every deal counts the same whatever its length.
- **Label.** 1 if the deal closes won in (cutoff, cutoff + horizon]; 0 if it closes lost or stays open through it;
  censored (counted and dropped, whatever happened inside it, won and lost alike) when the horizon runs past
  `as_of`.
"""

from __future__ import annotations

import pandas as pd

from leadscore.features.pointintime import NAT, to_ns
from leadscore.features.spine import CutoffPolicy, SpineStats, candidate_cutoffs, label, labelled_rows, thin_snapshots

KEY = "opportunity_id"


def _as_lead_key(frame: pd.DataFrame) -> pd.DataFrame:
    """The deal in the lead's column, so that the lead spine's helpers run on deals unchanged."""
    return frame.rename(columns={KEY: "lead_id"})


def deal_open(spine: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """The deal existed at the cutoff and had not closed at or before it (a deal without an id or a creation time is
    never open)."""
    deals = opportunities.drop_duplicates(KEY).set_index(KEY)
    created = to_ns(deals["created_at"].reindex(spine[KEY]))
    closed = to_ns(deals["closed_at"].reindex(spine[KEY]))
    cutoff = to_ns(spine["cutoff_time"])
    return pd.Series((created != NAT) & (created <= cutoff) & ((closed == NAT) | (closed > cutoff)), index=spine.index)


def build_opportunity_spine(
    opportunities: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, SpineStats]:
    """Labelled training rows for deals open at their cutoff, with a `sample_weight` per row; censored rows are
    counted and dropped. `SpineStats.leads` counts deals."""
    deals = opportunities.loc[opportunities["created_at"].notna(), [KEY, "created_at"]].drop_duplicates(KEY)
    candidates = candidate_cutoffs(_as_lead_key(deals), policy, as_of=as_of).rename(columns={"lead_id": KEY})
    open_rows = candidates[deal_open(candidates, opportunities).to_numpy()].reset_index(drop=True)
    kept = thin_snapshots(_as_lead_key(open_rows), max_snapshots=policy.max_snapshots, seed=policy.seed)
    thinned = open_rows[kept].reset_index(drop=True)
    outcomes = _as_lead_key(opportunities[[KEY, "closed_at", "status"]])
    converted = label(_as_lead_key(thinned), outcomes, horizon=policy.horizon, data_end=as_of)
    return labelled_rows(
        thinned,
        converted,
        key=KEY,
        candidates=len(candidates),
        closed_before_cutoff=len(candidates) - len(open_rows),
        thinned_out=int((~kept).sum()),
    )


def opportunity_scoring_spine(opportunities: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The deals open at `as_of`, each with cutoff_time = as_of: the same rule as training, at one instant."""
    ids = opportunities[KEY].dropna().drop_duplicates().sort_values(kind="stable")
    candidates = pd.DataFrame({KEY: ids.to_numpy(), "cutoff_time": as_of})
    candidates["cutoff_time"] = candidates["cutoff_time"].astype("datetime64[ns, UTC]")
    return candidates[deal_open(candidates, opportunities).to_numpy()].reset_index(drop=True)


__all__ = ["KEY", "build_opportunity_spine", "deal_open", "opportunity_scoring_spine"]
