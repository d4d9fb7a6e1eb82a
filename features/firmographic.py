"""Firmographic features: the lead's company, from the accounts table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.context import FeatureContext
from leadscore.features.pointintime import count_before, to_ns
from leadscore.features.spec import FeatureSpec, feature

REVENUE_BANDS = ("<1M", "1M-10M", "10M-100M", "100M-1B", ">=1B")
_REVENUE_EDGES = (1e6, 1e7, 1e8, 1e9)


@feature("firmographic", kind="categorical")
def account_industry(ctx: FeatureContext) -> pd.Series:
    """Industry of the lead's company."""
    return ctx.account_rows["industry"].astype("string").str.strip().str.lower().rename("account_industry")


@feature("firmographic", unit="log10 employees", concept="company_size")
def account_employee_count_log(ctx: FeatureContext) -> pd.Series:
    """Company size.

    The model reads log10(employees + 1); reasons show the number of employees.
    """
    employees = pd.to_numeric(ctx.account_rows["employee_count"], errors="coerce").astype("float64")
    return pd.Series(np.log10(employees.clip(lower=0) + 1.0), name="account_employee_count_log")


@feature("firmographic", unit="employees", for_model=False)
def account_employee_count(ctx: FeatureContext) -> pd.Series:
    """Number of employees at the company."""
    employees = pd.to_numeric(ctx.account_rows["employee_count"], errors="coerce").astype("float64")
    return employees.rename("account_employee_count")


@feature("firmographic", kind="categorical", concept="company_size")
def account_revenue_band(ctx: FeatureContext) -> pd.Series:
    """Company annual revenue band (USD)."""
    revenue = pd.to_numeric(ctx.account_rows["annual_revenue"], errors="coerce").astype("float64").to_numpy()
    band = np.asarray(REVENUE_BANDS, dtype=object)[np.searchsorted(_REVENUE_EDGES, revenue, side="right")]
    return pd.Series(np.where(np.isnan(revenue), None, band), name="account_revenue_band", dtype="string")


@feature("firmographic", kind="categorical", concept="country")  # one reason with the lead's country
def account_country(ctx: FeatureContext) -> pd.Series:
    """Country of the lead's company."""
    return ctx.account_rows["country"].astype("string").str.strip().str.upper().rename("account_country")


@feature("firmographic", unit="leads")
def account_other_leads_before(ctx: FeatureContext) -> pd.Series:
    """Other leads from the same company created before this one was scored."""
    codes, index = ctx.account_codes
    if len(index) == 0:
        return pd.Series(np.zeros(ctx.n), name="account_other_leads_before")
    lead_codes = index.get_indexer(ctx.leads["account_id"])
    counts, _ = count_before(lead_codes, to_ns(ctx.leads["created_at"]), codes, ctx.cutoff_ns)
    # the lead itself was created before its cutoff, so it is among the counted rows
    own = (codes >= 0) & (to_ns(ctx.lead_rows["created_at"]) < ctx.cutoff_ns)
    return pd.Series(np.where(codes >= 0, counts - own, np.nan), name="account_other_leads_before")


# The group's features, in the order the model sees them.
FEATURES: tuple[FeatureSpec, ...] = (
    account_industry.spec,
    account_employee_count_log.spec,
    account_employee_count.spec,
    account_revenue_band.spec,
    account_country.spec,
    account_other_leads_before.spec,
)
