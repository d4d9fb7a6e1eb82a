"""Behavioral features: web, e-mail, content and event activity strictly before the cutoff."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from leadscore.features.context import FeatureContext
from leadscore.features.schemas import EVENT_TYPES, MARKETING_EVENTS
from leadscore.features.spec import FeatureSpec, feature

WINDOWS_DAYS = (7, 30, 90)


def events_count(ctx: FeatureContext, *, event_type: str, window_days: int) -> pd.Series:
    """Events of one type in the last `window_days` days before the cutoff."""
    code = ctx.event_window.code(event_type)
    name = f"events_{event_type}_count_{window_days}d"
    if code < 0:
        return pd.Series(np.zeros(ctx.n), name=name)
    return pd.Series(ctx.event_counts(window_days)[:, code].astype("float64"), name=name)


# One feature per marketing event type and window: the three windows of one type share a concept (one reason).
EVENT_COUNT_FEATURES: tuple[FeatureSpec, ...] = tuple(
    FeatureSpec(
        name=f"events_{event_type}_count_{window}d",
        group="behavioral",
        description=f"{EVENT_TYPES[event_type]} in the last {window} days",
        kind="numeric",
        unit="",
        build=partial(events_count, event_type=event_type, window_days=window),
        direction=1,
        concept=f"events_{event_type}",
    )
    for event_type in MARKETING_EVENTS
    for window in WINDOWS_DAYS
)


@feature("behavioral", unit="events", direction=1, concept="engagement")
def events_count_30d(ctx: FeatureContext) -> pd.Series:
    """All marketing and product events in the last 30 days."""
    return pd.Series(ctx.event_counts(30).sum(axis=1).astype("float64"), name="events_count_30d")


@feature("behavioral", unit="days", direction=-1, concept="engagement")
def events_days_since_last(ctx: FeatureContext) -> pd.Series:
    """Days since the lead's last activity."""
    return pd.Series(ctx.last_event_age(), name="events_days_since_last")


@feature("behavioral", unit="days", direction=-1)
def events_days_since_last_high_intent(ctx: FeatureContext) -> pd.Series:
    """Days since the lead's last pricing-page view or demo request."""
    return pd.Series(
        ctx.last_event_age(tuple(ctx.params.high_intent_events)), name="events_days_since_last_high_intent"
    )


@feature("behavioral", unit="active days", direction=1, concept="engagement")
def events_active_days_30d(ctx: FeatureContext) -> pd.Series:
    """Distinct days with any activity in the last 30 days."""
    return pd.Series(ctx.distinct_days(30).astype("float64"), name="events_active_days_30d")


@feature("behavioral", unit="x", concept="engagement")
def events_trend_7d_vs_21d(ctx: FeatureContext) -> pd.Series:
    """Activity in the last 7 days relative to the weekly average of the 21 days before (1 = steady)."""
    last_7 = ctx.event_counts(7).sum(axis=1)
    prior_21 = ctx.event_counts(28).sum(axis=1) - last_7
    return pd.Series((last_7 + 1.0) / (prior_21 / 3.0 + 1.0), name="events_trend_7d_vs_21d")


@feature("behavioral", unit="points", direction=1, concept="engagement")
def engagement_decayed_score(ctx: FeatureContext) -> pd.Series:
    """Engagement score (every action weighted by type; recent actions weigh more)."""
    window = ctx.event_window
    weights = ctx.params.weights
    weight = np.array([weights.get(t, 0.0) for t in window.types])[window.type_code]
    decay = np.exp2(-window.age_days / ctx.params.half_life_days)
    score = np.bincount(window.row, weights=weight * decay, minlength=ctx.n)
    return pd.Series(score, name="engagement_decayed_score")


def decayed_event_count(
    ctx: FeatureContext, event_types: tuple[str, ...], *, half_life_days: float, window_days: float | None = None
) -> np.ndarray:
    """Events of `event_types` before the cutoff, each worth 1 halving every `half_life_days` (optionally only
    those within `window_days`): frequency and recency in one number."""
    window = ctx.event_window
    mask = np.isin(window.type_code, [window.code(t) for t in event_types])
    if window_days is not None:
        mask &= window.age_days <= window_days
    decay = np.exp2(-window.age_days[mask] / half_life_days)
    return np.bincount(window.row[mask], weights=decay, minlength=ctx.n)


# The group's features, in the order the model sees them.
FEATURES: tuple[FeatureSpec, ...] = (
    *EVENT_COUNT_FEATURES,
    events_count_30d.spec,
    events_days_since_last.spec,
    events_days_since_last_high_intent.spec,
    events_active_days_30d.spec,
    events_trend_7d_vs_21d.spec,
    engagement_decayed_score.spec,
)
