"""Plain-language reasons from SHAP contributions: each feature's description with the lead's value and unit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.registry import FeatureSpec

SEPARATOR = " | "


def format_value(value: object, spec: FeatureSpec | None) -> str | None:
    """The value as a person would say it, or None when it is missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if spec is None or spec.kind == "categorical":
        return str(value)
    number = float(value)
    if spec.kind == "boolean":
        return "yes" if number >= 0.5 else "no"
    unit = spec.unit
    if unit == "days":
        return "less than 1 day" if number < 1 else f"{number:.0f} day{'s' if round(number) != 1 else ''}"
    if unit == "%":
        return f"{number:.0f} %"
    if unit == "log10 employees":
        return f"about {10**number - 1:,.0f} employees"
    if unit == "x":
        return f"{number:.1f}x"
    if number.is_integer():
        return f"{number:,.0f}"
    return f"{number:,.1f}"


def reason_text(feature: str, value: object, spec: FeatureSpec | None) -> str:
    description = spec.description if spec is not None else feature
    shown = format_value(value, spec)
    return f"{description}: not known" if shown is None else f"{description}: {shown}"


def top_reasons(
    contributions: pd.DataFrame, values: pd.DataFrame, specs: dict[str, FeatureSpec], *, k: int = 3
) -> pd.DataFrame:
    """Per row, the k features pushing the score up most and the k pushing it down most, as text, largest first.

    Ties are broken by feature name so that reruns give the same text.
    """
    features = [c for c in contributions.columns if c != "base_value"]
    matrix = contributions[features].to_numpy()
    names = np.asarray(features, dtype=object)
    # lexsort keys: last is primary. Order by |contribution| descending, then by name.
    name_rank = np.argsort(np.argsort(names))
    positive, negative = [], []
    for i in range(len(matrix)):
        row = matrix[i]
        order = np.lexsort((name_rank, -np.abs(row)))
        up = [j for j in order if row[j] > 0][:k]
        down = [j for j in order if row[j] < 0][:k]
        positive.append(SEPARATOR.join(reason_text(names[j], values.iat[i, j], specs.get(names[j])) for j in up))
        negative.append(SEPARATOR.join(reason_text(names[j], values.iat[i, j], specs.get(names[j])) for j in down))
    return pd.DataFrame({"reasons_positive": positive, "reasons_negative": negative}, index=contributions.index)
