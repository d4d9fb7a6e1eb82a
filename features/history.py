"""History features: the outcomes of the company's earlier deals, counted only once they had closed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.context import NS_PER_DAY, FeatureContext
from leadscore.features.pointintime import NAT, count_before, to_ns
from leadscore.features.spec import FeatureSpec, feature


def _closed_deals(ctx: FeatureContext, status: str) -> tuple[np.ndarray, np.ndarray]:
    """For each spine row, the account's deals closed with `status` strictly before the cutoff: count, latest."""
    codes, index = ctx.account_codes
    opps = ctx.opportunities
    if opps is None or len(index) == 0:
        return np.zeros(ctx.n), np.full(ctx.n, NAT)
    chosen = (opps["status"] == status).to_numpy(dtype=bool, na_value=False)
    deal_codes = ctx.deal_account_codes[chosen]
    # the outcome is known at closed_at, not before: that is the time that must precede the cutoff
    return count_before(deal_codes, to_ns(opps.loc[chosen, "closed_at"]), codes, ctx.cutoff_ns)


@feature("history", unit="deals", direction=1, concept="account_wins")
def history_account_won_deals(ctx: FeatureContext) -> pd.Series:
    """Deals the company had already won."""
    counts, _ = _closed_deals(ctx, "won")
    return pd.Series(np.where(ctx.account_codes[0] >= 0, counts, np.nan), name="history_account_won_deals")


@feature("history", unit="deals")
def history_account_lost_deals(ctx: FeatureContext) -> pd.Series:
    """Deals the company had already lost."""
    counts, _ = _closed_deals(ctx, "lost")
    return pd.Series(np.where(ctx.account_codes[0] >= 0, counts, np.nan), name="history_account_lost_deals")


@feature("history", unit="days", concept="account_wins")
def history_days_since_account_last_win(ctx: FeatureContext) -> pd.Series:
    """Days since the company last won a deal."""
    _, latest = _closed_deals(ctx, "won")
    days = np.where(latest == NAT, np.nan, (ctx.cutoff_ns - latest) / NS_PER_DAY)
    return pd.Series(days, name="history_days_since_account_last_win")


# The group's features, in the order the model sees them.
FEATURES: tuple[FeatureSpec, ...] = (
    history_account_won_deals.spec,
    history_account_lost_deals.spec,
    history_days_since_account_last_win.spec,
)
