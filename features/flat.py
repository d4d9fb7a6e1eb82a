"""Flat mode: one row per lead with a label column, as most CRM exports and public datasets come.

The training set is the declared feature columns; placeholders are read as missing; columns known only after the
outcome (leaking) are excluded and listed. Time order is the time column when there is one, else the order column
(e.g. a sequential lead number: an export is often listed newest first), else the row order.
A row is open (never trained on, scored by predict) when its label is empty or says "still open" (`open_values`,
read in the label column or in a status column): a deal still being worked has no outcome yet, so it is neither a
positive nor a negative. Without an id column a row is known by its row number (1 = the first data row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.schemas import NUMBER_MISSING


@dataclass(frozen=True)
class FlatSpec:
    label_column: str
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    positive_values: tuple[object, ...] = (1, "1", "yes", True)
    id_column: str | None = None
    time_column: str | None = None
    order_column: str | None = None  # without a time column: what orders the rows in time (numbers, else text)
    missing_values: tuple[str, ...] = ()
    leaking: tuple[str, ...] = ()
    open_values: tuple[object, ...] = ()
    status_column: str | None = None


@dataclass(frozen=True)
class FlatResult:
    training_set: pd.DataFrame
    feature_names: list[str]
    excluded_leaking: list[str]
    unlabelled: int


def label_key(values: pd.Series) -> pd.Series:
    """A label as compared with the declared values: stripped, lower case, integral numbers as integers
    (`1.0` -> `1`, `True` -> `true`), runs of spaces as one space."""
    text = values.astype("string").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    return text.str.replace(r"^([+-]?\d+)\.0*$", r"\1", regex=True)


def label_is_empty(values: pd.Series) -> pd.Series:
    """An empty label (missing, or only spaces): the row is an open lead, still to be scored."""
    text = values.astype("string").str.strip()
    return (text.isna() | (text == "")).fillna(True).astype(bool)


def value_keys(values: tuple[object, ...] | list[object]) -> set[str]:
    """Declared values (positive, negative, open) as `label_key` reads them."""
    return set(label_key(pd.Series([str(v) for v in values], dtype="string")).dropna())


def is_open(frame: pd.DataFrame, spec: FlatSpec) -> pd.Series:
    """The rows still open: an empty label, or one of `open_values` in the status column (when there is one,
    whatever the label says: a lead being worked is not lost yet), else in the label column."""
    where = frame[spec.status_column] if spec.status_column else frame[spec.label_column]
    said_open = label_key(where).isin(value_keys(spec.open_values)).fillna(False).astype(bool)
    return label_is_empty(frame[spec.label_column]) | said_open


def row_ids(frame: pd.DataFrame, spec: FlatSpec) -> pd.Series:
    """The id column as text, else the row number in the file (1 = the first data row, as validation counts)."""
    if spec.id_column:
        return frame[spec.id_column].astype("string")
    return pd.Series(np.arange(1, len(frame) + 1), index=frame.index).astype("string")


def flat_rows(frame: pd.DataFrame, spec: FlatSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """Every row as lead_id, cutoff_time, row_order, converted, then the declared features (input order), and
    which rows carry a label. One builder for training rows and open leads alike."""
    declared = [spec.label_column, *spec.categorical, *spec.numeric]
    declared += [c for c in (spec.id_column, spec.time_column, spec.order_column, spec.status_column) if c]
    absent = [column for column in declared if column not in frame.columns]
    if absent:
        raise KeyError(f"flat table: declared column(s) absent: {absent}; columns present: {list(frame.columns)}")
    placeholders = set(spec.missing_values)
    converted = label_key(frame[spec.label_column]).isin(value_keys(spec.positive_values)).astype("int8")
    labelled = ~is_open(frame, spec).to_numpy()
    ids = row_ids(frame, spec)
    if spec.time_column:
        cutoff = pd.to_datetime(frame[spec.time_column], errors="coerce", utc=True, format="mixed")
    else:
        cutoff = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    out = pd.DataFrame(
        {
            "lead_id": ids.to_numpy(),
            "cutoff_time": cutoff.to_numpy(),
            "row_order": np.arange(len(frame), dtype="int64"),
            "converted": converted.to_numpy(),
        }
    )
    for column in spec.categorical:
        values = frame[column].astype("string").str.strip()
        out[column] = values.mask(values.isin(placeholders) | (values == "")).to_numpy()
    for column in spec.numeric:
        text = frame[column].astype("string").str.strip()
        values = frame[column].mask((text.isin(placeholders) | text.isin(NUMBER_MISSING)).fillna(False))
        out[column] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    return out, labelled


@dataclass(frozen=True)
class FlatCounts:
    rows: int
    labelled: int  # rows with an outcome: the training rows
    positive: int
    open: int  # empty label or an open value: scored by predict, never trained


def flat_counts(frame: pd.DataFrame, spec: FlatSpec) -> FlatCounts:
    """How the export's rows divide into outcomes and open rows."""
    closed = ~is_open(frame, spec)
    positive = label_key(frame[spec.label_column]).isin(value_keys(spec.positive_values)).fillna(False) & closed
    return FlatCounts(len(frame), int(closed.sum()), int(positive.sum()), int((~closed).sum()))


def order_key(values: pd.Series) -> pd.Series:
    """An order column as it sorts: numbers when every filled value is one (so 10 follows 9), else text."""
    text = values.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce")
    return numbers if numbers.notna().sum() == text.notna().sum() else text


def flat_training_set(frame: pd.DataFrame, spec: FlatSpec) -> FlatResult:
    """lead_id, cutoff_time, row_order, converted, then the declared features, in time order (the rows with an
    outcome: open rows are left out, neither positives nor negatives). With an order column the rows are sorted by
    it (ties and blanks in file order) and `row_order` numbers them in that order: it is the time order."""
    out, labelled = flat_rows(frame, spec)
    if spec.time_column:
        out = out[labelled].sort_values(["cutoff_time", "row_order"], kind="stable")
    elif spec.order_column:
        out = out.assign(_order=order_key(frame[spec.order_column]).to_numpy())[labelled]
        out = out.sort_values(["_order", "row_order"], kind="stable", na_position="last").drop(columns="_order")
        out["row_order"] = np.arange(len(out), dtype="int64")  # the time order from here on (a Parquet file keeps it)
    else:
        out = out[labelled]
    out = out.reset_index(drop=True)
    excluded = [c for c in spec.leaking if c in frame.columns]
    return FlatResult(out, [*spec.categorical, *spec.numeric], excluded, int((~labelled).sum()))


def flat_open_leads(frame: pd.DataFrame, spec: FlatSpec) -> pd.DataFrame:
    """The open rows (see `is_open`), built exactly as the training rows, in input order."""
    out, labelled = flat_rows(frame, spec)
    return out[~labelled].drop(columns="converted").reset_index(drop=True)
