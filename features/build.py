"""Assemble a feature table: one row per spine row, one column per requested feature."""

from __future__ import annotations

import pandas as pd

from features.context import FeatureContext, FeatureParams
from features.registry import all_features


def build_features(
    spine: pd.DataFrame,
    *,
    leads: pd.DataFrame,
    accounts: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    opportunities: pd.DataFrame | None = None,
    feature_names: list[str] | None = None,
    params: FeatureParams | None = None,
) -> pd.DataFrame:
    """The spine's rows (lead_id, cutoff_time and any label) followed by the requested features."""
    specs = all_features()
    names = list(specs) if feature_names is None else list(feature_names)
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise ValueError(f"unknown feature(s): {unknown}")
    context = FeatureContext(
        spine, leads=leads, accounts=accounts, events=events, opportunities=opportunities, params=params
    )
    columns = {}
    for name in names:
        values = specs[name].build(context)
        columns[name] = pd.Series(values, name=name).reset_index(drop=True)
    features = pd.DataFrame(columns, index=range(len(context.spine)))
    return pd.concat([spine.reset_index(drop=True), features], axis=1)
