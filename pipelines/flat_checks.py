"""Flat mode: the label and numeric columns are checked before anything is built from them.

A label outside the declared positive and negative values would silently become a negative; text in a numeric
column would silently become missing. Both stop with the values and their counts instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.flat import label_key
from pipelines.errors import DataError

SHOWN = 8


def _counts(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False)
    shown = ", ".join(f"{value!r} ({n:,})" for value, n in counts.head(SHOWN).items())
    return shown + (f" and {len(counts) - SHOWN} more" if len(counts) > SHOWN else "")


def check_flat_table(frame: pd.DataFrame, flat, *, where: str) -> None:
    """Refuse labels outside positive_values and negative_values, and numeric cells that are not finite numbers."""
    if flat.label_column in frame:
        labels = frame[flat.label_column]
        declared = {str(v) for v in [*flat.positive_values, *flat.negative_values]}
        allowed = set(label_key(pd.Series(sorted(declared))).dropna())
        keys = label_key(labels)
        outside = labels.notna() & ~keys.isin(allowed)
        if outside.any():
            first = int(np.flatnonzero(outside.to_numpy())[0]) + 1
            raise DataError(
                f"{int(outside.sum()):,} label(s) are neither positive_values nor negative_values: "
                f"{_counts(labels[outside].astype('string'))}", where=where, column=flat.label_column, row=first,
                hint="add each value to flat.positive_values or flat.negative_values (a label must never be "
                "guessed)",
            )  # fmt: skip
    placeholders = {str(v) for v in flat.missing_values}
    for column in flat.numeric:
        if column not in frame:
            continue
        text = frame[column].astype("string").str.strip()
        number = pd.to_numeric(text, errors="coerce")
        bad = text.notna() & (text != "") & ~text.isin(placeholders) & (number.isna() | np.isinf(number))
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise DataError(
                f"{int(bad.sum()):,} value(s) are not finite numbers: {_counts(text[bad])}", where=where,
                column=column, row=first,
                hint="fix the values, or list a placeholder in flat.missing_values to read it as missing",
            )  # fmt: skip
