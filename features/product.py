"""Product-usage features (PQL signals): trial, logins, active days, breadth of use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.context import FeatureContext, distinct_per_row
from leadscore.features.spec import FeatureSpec, feature

USAGE_EVENTS = ("product_login", "feature_used")


def _count(ctx: FeatureContext, event_type: str, window_days: float) -> np.ndarray:
    code = ctx.event_window.code(event_type)
    return ctx.event_counts(window_days)[:, code].astype("float64")


@feature("product_usage", kind="boolean", direction=1, when_false="The lead has not started a product trial")
def product_trial_started(ctx: FeatureContext) -> pd.Series:
    """The lead has started a product trial."""
    return pd.Series((_count(ctx, "trial_signup", np.inf) > 0).astype("float64"), name="product_trial_started")


@feature("product_usage", unit="active days", direction=1, concept="product_usage")
def product_active_days_14d(ctx: FeatureContext) -> pd.Series:
    """Distinct days with product logins or feature use in the last 14 days."""
    return pd.Series(ctx.distinct_days(14, USAGE_EVENTS).astype("float64"), name="product_active_days_14d")


@feature("product_usage", unit="active days", direction=1, concept="product_usage")
def product_active_days_30d(ctx: FeatureContext) -> pd.Series:
    """Distinct days with product logins or feature use in the last 30 days."""
    return pd.Series(ctx.distinct_days(30, USAGE_EVENTS).astype("float64"), name="product_active_days_30d")


@feature("product_usage", unit="logins", direction=1, concept="product_usage")
def product_logins_14d(ctx: FeatureContext) -> pd.Series:
    """Product logins in the last 14 days."""
    return pd.Series(_count(ctx, "product_login", 14), name="product_logins_14d")


@feature("product_usage", unit="logins", direction=1, concept="product_usage")
def product_logins_30d(ctx: FeatureContext) -> pd.Series:
    """Product logins in the last 30 days."""
    return pd.Series(_count(ctx, "product_login", 30), name="product_logins_30d")


@feature("product_usage", unit="features", direction=1)
def product_distinct_features_used(ctx: FeatureContext) -> pd.Series:
    """Distinct product features the lead has used."""
    window = ctx.event_window
    used = (window.type_code == window.code("feature_used")) & ~np.isnan(window.value)
    counts = distinct_per_row(window.row[used], window.value[used], ctx.n)
    return pd.Series(counts.astype("float64"), name="product_distinct_features_used")


@feature("product_usage", unit="views", direction=1)
def product_upgrade_page_views_30d(ctx: FeatureContext) -> pd.Series:
    """Upgrade-page views in the last 30 days."""
    return pd.Series(_count(ctx, "upgrade_page_view", 30), name="product_upgrade_page_views_30d")


@feature("product_usage", unit="tickets")
def product_support_tickets_30d(ctx: FeatureContext) -> pd.Series:
    """Support tickets opened in the last 30 days."""
    return pd.Series(_count(ctx, "support_ticket", 30), name="product_support_tickets_30d")


# The group's features, in the order the model sees them.
FEATURES: tuple[FeatureSpec, ...] = (
    product_trial_started.spec,
    product_active_days_14d.spec,
    product_active_days_30d.spec,
    product_logins_14d.spec,
    product_logins_30d.spec,
    product_distinct_features_used.spec,
    product_upgrade_page_views_30d.spec,
    product_support_tickets_30d.spec,
)
