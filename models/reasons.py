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


def _top_k(matrix: np.ndarray, order: np.ndarray, sign: int, k: int) -> list[np.ndarray]:
    """Column positions (-1: none) of each row's k largest contributions of one sign, in `order`."""
    ordered = np.take_along_axis(matrix, order, axis=1) * sign
    wanted = ordered > 0
    rank = np.cumsum(wanted, axis=1)
    picks = []
    for j in range(1, k + 1):
        hit = wanted & (rank == j)
        found = hit.any(axis=1)
        position = np.take_along_axis(order, hit.argmax(axis=1)[:, None], axis=1)[:, 0]
        picks.append(np.where(found, position, -1))
    return picks


def top_reasons(
    contributions: pd.DataFrame, values: pd.DataFrame, specs: dict[str, FeatureSpec], *, k: int = 3
) -> pd.DataFrame:
    """Per row, the k features pushing the score up most and the k pushing it down most, as text, largest first.

    Ties are broken by feature name so that reruns give the same text.
    """
    features = [c for c in contributions.columns if c != "base_value"]
    by_name = np.argsort(np.asarray(features, dtype=object))
    matrix = contributions[features].to_numpy()
    # sorting columns by name first, then stably by |contribution|, breaks ties by name
    order = by_name[np.argsort(-np.abs(matrix[:, by_name]), axis=1, kind="stable")]
    columns = [values[name].to_numpy(dtype=object) for name in features]

    def texts(picks: list[np.ndarray]) -> list[str]:
        out = []
        for i in range(len(matrix)):
            parts = [reason_text(features[j], columns[j][i], specs.get(features[j])) for j in (p[i] for p in picks)
                     if j >= 0]  # fmt: skip
            out.append(SEPARATOR.join(parts))
        return out

    return pd.DataFrame(
        {
            "reasons_positive": texts(_top_k(matrix, order, 1, k)),
            "reasons_negative": texts(_top_k(matrix, order, -1, k)),
        },
        index=contributions.index,
    )
