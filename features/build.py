"""Assemble a feature table: one row per spine row, one column per requested feature."""

from __future__ import annotations

import pandas as pd

from leadscore.features.context import FeatureContext, FeatureParams
from leadscore.features.custom import custom_specs
from leadscore.features.registry import FeatureSpec, all_features


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
    context = FeatureContext(
        spine, leads=leads, accounts=accounts, events=events, opportunities=opportunities, params=params
    )
    features = feature_columns(context, feature_names)
    return pd.concat([spine.reset_index(drop=True), features], axis=1)


def features_of_tables(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    *,
    feature_names: list[str] | None = None,
    params: FeatureParams | None = None,
) -> pd.DataFrame:
    """`build_features` over the canonical tables by name (`leads`, `opportunities`; `accounts`, `events` optional)."""
    features = feature_columns(FeatureContext.of_tables(spine, tables, params=params), feature_names)
    return pd.concat([spine.reset_index(drop=True), features], axis=1)


def feature_columns(context: FeatureContext, feature_names: list[str] | None = None) -> pd.DataFrame:
    """The requested features (all when None) for the context's spine rows; several callers may share one
    context, so the point-in-time joins are done once."""
    specs = feature_specs(context.params)
    names = list(all_features()) if feature_names is None else list(feature_names)
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise ValueError(f"unknown feature(s): {unknown}")
    columns = {name: pd.Series(specs[name].build(context), name=name).reset_index(drop=True) for name in names}
    return pd.DataFrame(columns, index=range(context.n))


def feature_specs(params: FeatureParams | None) -> dict[str, FeatureSpec]:
    """The registry plus the project's custom fields (their descriptions are their reason texts)."""
    custom = custom_specs(params.custom_fields) if params is not None else {}
    return {**all_features(), **custom}
