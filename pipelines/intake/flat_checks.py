"""Flat mode: the export is checked before anything is built from it, as strictly as the CRM tables.

A label outside the declared positive, negative and open values would silently become a negative; text in a numeric
column would silently become missing; a declared column that is absent, a duplicated id or an unreadable time
would train on something else than the user thinks. Each is a problem naming the column, the first row and
example values with their counts. `validate` lists them all; `train`, `build-training-set` and `predict` stop at
the first error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.flat import is_open, label_key, order_key, value_keys
from leadscore.features.schemas import NUMBER_MISSING
from leadscore.pipelines.errors import DataError

log = logging.getLogger(__name__)
SHOWN = 8


@dataclass(frozen=True)
class FlatProblem:
    severity: str  # "error" or "warning"
    error: DataError

    @property
    def message(self) -> str:
        hint = f" (hint: {self.error.hint})" if self.error.hint else ""
        return self.error.message + hint


def flat_error(message: str, **where) -> FlatProblem:
    """An error about the flat file (`where`: DataError's where, column, row, value, hint)."""
    return FlatProblem("error", DataError(message, **where))


def flat_warning(message: str, **where) -> FlatProblem:
    return FlatProblem("warning", DataError(message, **where))


def _counts(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False)
    shown = ", ".join(f"{value!r} ({n:,})" for value, n in counts.head(SHOWN).items())
    return shown + (f" and {len(counts) - SHOWN} more" if len(counts) > SHOWN else "")


def _first_row(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _declared(flat) -> list[str]:
    roles = (flat.id_column, flat.time_column, flat.order_column, flat.status_column)
    return [flat.label_column, *(c for c in roles if c), *flat.categorical, *flat.numeric, *flat.identify_columns]


def _absent_columns(frame: pd.DataFrame, flat, where: str) -> list[FlatProblem]:
    absent = [c for c in dict.fromkeys(_declared(flat)) if c not in frame.columns]
    problems = []
    if absent:
        present = ", ".join(repr(c) for c in list(frame.columns)[:20])
        problems.append(
            flat_error(
                f"declared column(s) absent: {absent}; the file has {len(frame.columns)} column(s): {present}"
                + (" ..." if len(frame.columns) > 20 else ""),
                where=where,
                hint="fix the names in [flat] (case and spaces count), or the separator (flat.separator)",
            )
        )
    missing_leaks = [c for c in flat.leaking if c not in frame.columns]
    if missing_leaks:
        problems.append(
            flat_warning(
                f"leaking column(s) not in the file: {missing_leaks}",
                where=where,
                hint="a misspelt name in flat.leaking protects nothing: check it",
            )
        )
    return problems


def _label_problems(frame: pd.DataFrame, flat, where: str, *, training: bool = True) -> list[FlatProblem]:
    labels = frame[flat.label_column]
    keys = label_key(labels)
    closed = ~is_open(frame, flat.spec())  # open rows have no outcome yet: neither checked nor trained
    outside = closed & ~keys.isin(value_keys([*flat.positive_values, *flat.negative_values]))
    if outside.any():
        return [
            flat_error(
                f"{int(outside.sum()):,} label(s) are neither positive_values, negative_values nor open_values: "
                f"{_counts(labels[outside].astype('string'))}",
                where=where,
                column=flat.label_column,
                row=_first_row(outside),
                hint=_outside_hint(flat),
            )
        ]
    is_positive = keys.isin(value_keys(flat.positive_values)) & closed
    counts = f"labels: {_counts(labels[closed].astype('string'))}" if closed.any() else "every row is open"
    if training and (not is_positive.any() or not (closed & ~is_positive).any()):  # scoring needs no outcome
        missing = "positive" if not is_positive.any() else "negative"
        return [
            flat_error(
                f"no {missing} label among {int(closed.sum()):,} labelled row(s) ({counts})",
                where=where,
                column=flat.label_column,
                hint=f"check flat.{missing}_values and flat.label_column: a model needs both outcomes",
            )
        ]
    return []


def _outside_hint(flat) -> str:
    """Where an unknown label goes: an outcome, or (rows still being worked) open."""
    still_open = (
        f"list the statuses of {flat.status_column!r} that mean still open in flat.open_values"
        if flat.status_column
        else "add the values that mean still open (a deal being worked) to flat.open_values"
    )
    return (
        f"add each outcome to flat.positive_values or flat.negative_values; {still_open}: those rows are scored by "
        "predict, never trained (a label must never be guessed)"
    )


def _numeric_problems(frame: pd.DataFrame, flat, where: str) -> list[FlatProblem]:
    placeholders = {str(v) for v in flat.missing_values} | NUMBER_MISSING
    problems = []
    for column in flat.numeric:
        if column not in frame:
            continue
        text = frame[column].astype("string").str.strip()
        number = pd.to_numeric(text, errors="coerce")
        bad = (text.notna() & (text != "") & ~text.isin(placeholders) & (number.isna() | np.isinf(number))).fillna(
            False
        )
        if bad.any():
            problems.append(
                flat_error(
                    f"{int(bad.sum()):,} value(s) are not finite numbers: {_counts(text[bad])}",
                    where=where,
                    column=column,
                    row=_first_row(bad),
                    hint="fix the values, declare the column categorical, or list a placeholder in "
                    "flat.missing_values to read it as missing",
                )
            )
    return problems


def _id_and_time_problems(frame: pd.DataFrame, flat, where: str) -> list[FlatProblem]:
    problems = []
    if flat.id_column and flat.id_column in frame:
        ids = frame[flat.id_column].astype("string").str.strip()
        blank = ids.isna() | (ids == "")
        duplicated = ids.duplicated(keep=False) & ~blank
        if blank.any():
            problems.append(
                flat_error(
                    f"{int(blank.sum()):,} row(s) have no id",
                    where=where,
                    column=flat.id_column,
                    row=_first_row(blank),
                    hint="every lead needs an id: its scores are keyed by it",
                )
            )
        if duplicated.any():
            problems.append(
                flat_error(
                    f"{int(duplicated.sum()):,} row(s) share an id with another row: {_counts(ids[duplicated])}",
                    where=where,
                    column=flat.id_column,
                    row=_first_row(duplicated),
                    hint="one row per lead: remove the duplicates (every copy is ambiguous)",
                )
            )
    if flat.time_column and flat.time_column in frame:
        text = frame[flat.time_column].astype("string").str.strip()
        times = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        bad = (text.notna() & (text != "") & times.isna()).fillna(False)
        if bad.any():
            problems.append(
                flat_error(
                    f"{int(bad.sum()):,} value(s) are not timestamps: {_counts(text[bad])}",
                    where=where,
                    column=flat.time_column,
                    row=_first_row(bad),
                    hint="fix the values (ISO 8601 is safest): the time column orders training and holdout",
                )
            )
    return problems


def _order_problems(frame: pd.DataFrame, flat, where: str) -> list[FlatProblem]:
    """An order column with blanks cannot order those rows; without a time or order column, an id that runs
    backwards (an export listed newest first) would make the holdout the oldest rows."""
    if flat.order_column and flat.order_column in frame:
        text = frame[flat.order_column].astype("string").str.strip()
        blank = (text.isna() | (text == "")).fillna(True)
        if blank.any():
            return [
                flat_error(
                    f"{int(blank.sum()):,} row(s) have no value in the order column",
                    where=where,
                    column=flat.order_column,
                    row=_first_row(blank),
                    hint="every row needs its place in time: fill the values or choose another flat.order_column",
                )
            ]
    if flat.time_column or flat.order_column or not flat.id_column or flat.id_column not in frame:
        return []
    ids = order_key(frame[flat.id_column])
    if len(ids) < 3 or not pd.api.types.is_numeric_dtype(ids) or ids.isna().any():
        return []
    if ids.corr(pd.Series(np.arange(len(ids)), index=ids.index), method="spearman") < -0.9:
        return [
            flat_warning(
                f"the rows run from the highest {flat.id_column} to the lowest, and without a time column the "
                "row order is taken as the time order: the holdout would be the oldest rows",
                where=where,
                column=flat.id_column,
                hint=f"if {flat.id_column!r} grows with time, set flat.order_column = {flat.id_column!r}",
            )
        ]
    return []


def open_rule(flat) -> str:
    """Which rows are open, in words (summaries print it)."""
    if not flat.open_values:
        return "empty label"
    shown = ", ".join(repr(str(v)) for v in flat.open_values[:4]) + (" ..." if len(flat.open_values) > 4 else "")
    return f"empty label, or {flat.status_column or flat.label_column} in {shown}"


def identifying_candidates(frame: pd.DataFrame, flat, *, shown: int = 3) -> list[str]:
    """Undeclared text columns whose values are (nearly) all filled and distinct, e.g. a deal's title: suggested
    for flat.identify_columns, never used unasked (they may hold personal data)."""
    used = {*_declared(flat), *flat.leaking}
    found = []
    for column in frame.columns:
        if column in used or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        text = frame[column].astype("string").str.strip().replace("", pd.NA)
        if len(text) and text.notna().mean() >= 0.9 and text.nunique() >= 0.9 * len(text):
            found.append(column)
    return found[:shown]


def flat_problems(frame: pd.DataFrame, flat, *, where: str, training: bool = True) -> list[FlatProblem]:
    """Every problem of the flat export, errors and warnings, in the order a reader would fix them; `training`
    False (scoring with a trained model) does not ask for both outcomes among the labelled rows."""
    problems = _absent_columns(frame, flat, where)
    if any(p.severity == "error" for p in problems):
        return problems  # the other checks would only repeat the absence
    return [
        *problems,
        *_label_problems(frame, flat, where, training=training),
        *_numeric_problems(frame, flat, where),
        *_id_and_time_problems(frame, flat, where),
        *_order_problems(frame, flat, where),
    ]


def check_flat_table(frame: pd.DataFrame, flat, *, where: str, training: bool = True) -> None:
    """Stop at the first error of `flat_problems`; log the warnings (`validate` prints them)."""
    for problem in flat_problems(frame, flat, where=where, training=training):
        if problem.severity == "error":
            raise problem.error
        log.warning("%s", problem.message)
