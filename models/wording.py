"""Numbers and rates in words: natural units and the precision a person says them at ("about 120 employees",
"3 days", "2.3", "0.022", "1,532", "41 %"), for the reasons of a score and the analysts' report."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)  # NaN only


def format_number(number: float) -> str:
    """A number at the precision a person says it: whole numbers as such (with thousands separators), two
    significant figures below 10 (2.3, 0.022), at most one decimal below 100 (12.5, 75), whole numbers above."""
    if not math.isfinite(number):
        return str(number)
    if 0 < abs(number) < 0.001:
        return "less than 0.001" if number > 0 else "more than -0.001"
    if float(number).is_integer() or abs(number) >= 100:
        return f"{number:,.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}".removesuffix(".0")
    return f"{float(f'{number:.2g}'):g}"


def _parts(number: float, spec: FeatureSpec | None, *, exact: bool = False) -> tuple[str, str]:
    """(the number, its unit) as said: ("3", " days"), ("about 120", " employees"), ("1.4", "x"), ("50", " %")."""
    unit = spec.unit if spec is not None else ""
    if unit == "days":
        if number < 1:
            return "less than 1", " day"
        whole = math.floor(number)  # "3 days ago" for 3.6 days, as people count days
        return f"{whole:,}", " day" if whole == 1 else " days"
    if unit == "%":
        return f"{number:.0f}", " %"
    if unit == "log10 employees":
        employees = _round_employees(10**number - 1)
        return (f"{employees:,.0f}", " employees") if exact else (f"about {employees:,.0f}", " employees")
    if unit == "x":
        return f"{number:.1f}", "x"
    return format_number(number), ""


def format_value(value: object, spec: FeatureSpec | None) -> str | None:
    """The value as a person would say it, or None when it is missing."""
    if _missing(value):
        return None
    if spec is not None and spec.kind == "categorical":
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if spec is not None and spec.kind == "boolean":
        return "yes" if number >= 0.5 else "no"
    if spec is not None and spec.at_most is not None and number >= spec.at_most:
        return f"{format_value(spec.at_most, replace(spec, at_most=None))} or more"
    text, unit = _parts(number, spec)
    return text + unit


def _round_employees(count: float) -> float:
    """Two significant figures: 'about 124 employees' claims more precision than a CRM field holds."""
    if count < 100:
        return round(count)
    digits = int(np.floor(np.log10(count))) - 1
    return round(count, -digits)


def format_rate(rate: float) -> str:
    """A conversion rate as shown: whole per cent from 10 %, one decimal below ('4.1 %'), '< 0.1 %' near zero."""
    percent = rate * 100
    if percent >= 9.95:
        return f"{percent:.0f} %"
    if percent >= 0.05 or percent == 0:
        return f"{percent:.1f} %"
    return "less than 0.1 %"


def _shown_rate(rates: np.ndarray) -> np.ndarray:
    """Rates rounded as `format_rate` shows them: what good or bad news is judged on (equal as shown: neither)."""
    percent = np.asarray(rates, dtype="float64") * 100
    return np.where(percent >= 9.95, np.round(percent), np.round(percent, 1))
