"""The account spine: one row per (account_id, cutoff_time) with the label `converted`.

The same point-in-time rules as the lead spine (features/spine.py), reusing its machinery with the account in the
lead's place:
- **Cutoffs.** An account gets a cutoff `delay_days` after its first lead was created, then every `every_days`
  (up to `max_age_days`), never after `as_of`. A cutoff is kept only when the account then has at least one open
  lead (a lead created at or before the cutoff with no deal closed at or before it): exactly the accounts that
  `predict --level account` scores at `as_of`. At most `max_snapshots` cutoffs per account are kept, chosen by the
  same seeded hash; each kept row weighs 1 / (rows kept for its account).
- **Label.** 1 if any deal of any lead of the account (leads created later included: the account buys) closes won
  in (cutoff, cutoff + horizon]; 0 otherwise; censored (counted and dropped, whatever happened inside it) when the
  horizon runs past `as_of`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.pointintime import NAT, to_ns
from leadscore.features.spine import (
    CutoffPolicy,
    SpineStats,
    candidate_cutoffs,
    first_decision,
    label,
    labelled_rows,
    still_open,
    thin_snapshots,
)

KEY = "account_id"


def account_of_deals(leads: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """Each deal's account: its own `account_id` when it has one, else its lead's."""
    by_lead = (
        opportunities["lead_id"].map(leads.set_index("lead_id")["account_id"])
        if "account_id" in leads
        else pd.Series(pd.NA, index=opportunities.index)
    )
    if "account_id" in opportunities:
        own = opportunities["account_id"].astype("string")
        return own.where(own.notna(), by_lead.astype("string"))
    return by_lead.astype("string")


def account_leads(leads: pd.DataFrame) -> pd.DataFrame:
    """The leads that belong to a known account: lead_id, account_id, created_at."""
    if "account_id" not in leads:
        return pd.DataFrame({"lead_id": [], KEY: [], "created_at": pd.Series([], dtype="datetime64[ns, UTC]")})
    known = leads[leads["account_id"].notna()]
    return pd.DataFrame(
        {
            "lead_id": known["lead_id"].to_numpy(),
            KEY: known["account_id"].astype("string").to_numpy(),
            "created_at": known["created_at"].to_numpy(),
        }
    )


def _as_lead_key(frame: pd.DataFrame) -> pd.DataFrame:
    """The account in the lead's column, so that the lead spine's helpers run on accounts unchanged."""
    return frame.rename(columns={KEY: "lead_id"})


def contact_pairs(
    spine: pd.DataFrame, leads: pd.DataFrame, opportunities: pd.DataFrame, *, known_only: bool = False
) -> pd.DataFrame:
    """Every (spine row, lead of its account created at or before the cutoff), with `open`: the lead was still
    open at the cutoff (the lead spine's rule: no deal closed at or before it), and `undecided`: no deal of the
    lead had closed strictly before the cutoff (what features may know: nothing at the cutoff itself).

    `known_only`: only the leads created strictly before the cutoff, the contacts features may know of (a contact
    created at the cutoff itself is not yet known, as an event at the cutoff is not); the spine's rule for an open
    lead (at or before, as the lead spine's) decides which accounts are scored."""
    members = account_leads(leads)
    rows = spine[[KEY, "cutoff_time"]].reset_index(drop=True).reset_index(names="row")
    rows[KEY] = rows[KEY].astype("string")
    pairs = rows.merge(members, on=KEY, how="inner")
    created, cutoff = to_ns(pairs["created_at"]), to_ns(pairs["cutoff_time"])
    pairs = pairs[(created < cutoff) if known_only else (created <= cutoff)]
    pairs = pairs.sort_values(["row", "lead_id"], kind="stable").reset_index(drop=True)
    pairs["open"] = still_open(pairs[["lead_id", "cutoff_time"]], leads, opportunities)
    decided = to_ns(first_decision(leads, opportunities).reindex(pairs["lead_id"]))
    pairs["undecided"] = (decided == NAT) | (decided >= to_ns(pairs["cutoff_time"]))
    return pairs[["row", KEY, "lead_id", "cutoff_time", "open", "undecided"]]


def has_open_lead(spine: pd.DataFrame, leads: pd.DataFrame, opportunities: pd.DataFrame) -> np.ndarray:
    pairs = contact_pairs(spine, leads, opportunities)
    return np.bincount(pairs.loc[pairs["open"], "row"].to_numpy(), minlength=len(spine)) > 0


def account_label(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    horizon: pd.Timedelta,
    data_end: pd.Timestamp,
) -> pd.Series:
    """The lead spine's label with the account as key: a won deal of any of the account's leads counts."""
    deals = opportunities.assign(lead_id=account_of_deals(leads, opportunities))
    deals = deals[deals["lead_id"].notna()]
    keyed = _as_lead_key(spine[[KEY, "cutoff_time"]]).astype({"lead_id": "string"})
    return label(keyed, deals, horizon=horizon, data_end=data_end)


def build_account_spine(
    leads: pd.DataFrame, opportunities: pd.DataFrame, policy: CutoffPolicy, *, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, SpineStats]:
    """Labelled training rows for accounts with an open lead at their cutoff, with a `sample_weight` per row;
    censored rows are counted and dropped. `SpineStats.leads` counts accounts."""
    members = account_leads(leads)
    first = members.groupby(KEY, observed=True)["created_at"].min().reset_index()
    candidates = candidate_cutoffs(_as_lead_key(first), policy, as_of=as_of).rename(columns={"lead_id": KEY})
    open_rows = candidates[has_open_lead(candidates, leads, opportunities)].reset_index(drop=True)
    kept_open = thin_snapshots(_as_lead_key(open_rows), max_snapshots=policy.max_snapshots, seed=policy.seed)
    thinned = open_rows[kept_open].reset_index(drop=True)
    converted = account_label(thinned, leads, opportunities, horizon=policy.horizon, data_end=as_of)
    return labelled_rows(
        thinned,
        converted,
        key=KEY,
        candidates=len(candidates),
        closed_before_cutoff=len(candidates) - len(open_rows),
        thinned_out=int((~kept_open).sum()),
    )


def account_scoring_spine(leads: pd.DataFrame, opportunities: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
    """The accounts with at least one lead open at `as_of`, each with cutoff_time = as_of."""
    accounts = account_leads(leads)[KEY].drop_duplicates().sort_values(kind="stable")
    candidates = pd.DataFrame({KEY: accounts.to_numpy(), "cutoff_time": as_of})
    candidates["cutoff_time"] = candidates["cutoff_time"].astype("datetime64[ns, UTC]")
    return candidates[has_open_lead(candidates, leads, opportunities)].reset_index(drop=True)


__all__ = [
    "account_label",
    "account_leads",
    "account_of_deals",
    "account_scoring_spine",
    "build_account_spine",
    "contact_pairs",
    "has_open_lead",
]
