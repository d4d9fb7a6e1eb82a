"""The flat export as the pipeline sees it: the file, plus the columns derived in config (`flat.derived`,
`flat.label_from`). One loader for validate, build-training-set, train, predict and explain, so that every verb
sees the same columns."""

from __future__ import annotations

import logging

import pandas as pd

from leadscore.features.derived import date_part, days_between, label_from_outcomes
from leadscore.pipelines.config import Settings, TableSource
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.parsing import parse_time_column
from leadscore.pipelines.intake.sources import read_file, read_source

log = logging.getLogger(__name__)


def _times(frame: pd.DataFrame, column: str, settings: Settings, *, where: str) -> pd.Series:
    if column not in frame:
        raise DataError(
            f"column '{column}' named in [flat] is absent; the file has {list(frame.columns)[:20]}",
            where=where,
            hint="fix the column name in flat.derived / flat.label_from",
        )
    values = frame[column]
    placeholders = {str(v) for v in settings.flat.missing_values}
    if placeholders:
        values = values.mask(values.astype("string").str.strip().isin(placeholders).fillna(False))
    parsed = parse_time_column(values, timezone=settings.timezone)
    unreadable = parsed.reasons.notna().to_numpy()
    if unreadable.any():  # a derived column or a label of unreadable times would be silently missing
        shown = ", ".join(f"{v!r} ({n})" for v, n in values[unreadable].astype("string").value_counts().head(5).items())
        raise DataError(
            f"{int(unreadable.sum()):,} value(s) cannot be read as timestamps ({parsed.reasons[unreadable].iloc[0]}): "
            f"{shown}",
            where=where,
            column=column,
            row=int(unreadable.argmax()) + 1,
            hint="fix the values, or list a placeholder in flat.missing_values to read it as missing",
        )
    return pd.Series(parsed.values, index=frame.index)


def _joined_label(frame: pd.DataFrame, settings: Settings, cutoff: pd.Series, *, where: str) -> pd.DataFrame:
    f, spec = settings.flat, settings.flat.label_from
    if f.label_column in frame:
        raise DataError(
            f"the file already has a column '{f.label_column}', which flat.label_from would compute",
            where=where,
            hint="rename flat.label_column to a new name",
        )
    path = settings.resolve(spec.path)
    outcomes = read_file(path, name="flat.label_from", separator=spec.separator, encoding=spec.encoding)
    source = f"outcome table ({path})"
    outcome_key = spec.outcome_key or spec.key
    absent = [c for c in (outcome_key, spec.outcome_time, spec.outcome_column) if c and c not in outcomes]
    if absent:
        raise DataError(
            f"column(s) absent: {absent}; the file has {list(outcomes.columns)[:20]}",
            where=source,
            hint="fix flat.label_from",
        )
    if spec.key not in frame:
        raise DataError(f"key column '{spec.key}' is absent", where=where, hint="fix flat.label_from.key")
    times = _times(outcomes, spec.outcome_time, settings, where=source)
    positive = pd.Series(True, index=outcomes.index)
    if spec.outcome_column:
        wanted = {v.strip().lower() for v in spec.positive_values}
        positive = outcomes[spec.outcome_column].astype("string").str.strip().str.lower().isin(wanted).fillna(False)
    if settings.as_of is not None:
        as_of = pd.Timestamp(settings.as_of)
        as_of = as_of.tz_localize(settings.timezone) if as_of.tz is None else as_of
        as_of = as_of.tz_convert("UTC")
    else:
        as_of = pd.concat([cutoff.dropna(), times.dropna()]).max()
    joined = label_from_outcomes(
        frame[spec.key],
        cutoff,
        outcomes.loc[positive, outcome_key],
        times[positive],
        horizon_days=spec.horizon_days,
        as_of=as_of,
    )
    if joined.outcomes_before_start:
        log.warning(
            "%d positive outcome(s) are dated at or before their row's time: they label nothing",
            joined.outcomes_before_start,
        )
    return frame.assign(
        **{f.label_column: joined.label.to_numpy(), f"{f.label_column}_time": joined.label_time.to_numpy()}
    )


def with_derived_columns(frame: pd.DataFrame, settings: Settings, *, where: str) -> pd.DataFrame:
    """The export with the label from `label_from` and every `derived` column added (never overwriting one)."""
    f = settings.flat
    if not f.derived and f.label_from is None:
        return frame
    clash = [name for name in f.derived if name in frame]
    if clash:
        raise DataError(
            f"derived column(s) {clash} already exist in the file",
            where=where,
            hint="give the derived columns new names",
        )
    cutoff = _times(frame, f.time_column, settings, where=where) if f.time_column else None
    if f.label_from is not None:
        frame = _joined_label(frame, settings, cutoff, where=where)
    new = {}
    for name, spec in f.derived.items():
        if spec.date_part is not None:
            new[name] = date_part(_times(frame, spec.of, settings, where=where), spec.date_part, cutoff=cutoff)
        else:
            start, end = (_times(frame, c, settings, where=where) for c in spec.days_between)
            new[name] = days_between(start, end, cutoff=cutoff)
    return frame.assign(**{k: v.to_numpy() for k, v in new.items()})


def flat_table_source(settings: Settings) -> TableSource:
    """The flat table as a table source (a file, or a SQL table read in chunks like the CRM tables)."""
    f = settings.flat
    return TableSource(path=f.path, sql_url=f.sql_url, sql_table=f.sql_table, encoding=f.encoding)


def flat_location(settings: Settings) -> str:
    """Where the flat table is read from, as messages name it: `flat table (<file or SQL table>)`."""
    f = settings.flat
    return f"flat table ({settings.resolve(f.path) if f.path is not None else f.sql_table})"


def load_flat_export(settings: Settings) -> pd.DataFrame:
    """The flat table read strictly (a file through pipelines.intake.files, or a SQL table), with the derived columns of
    the config."""
    f = settings.flat
    if f.path is not None:
        raw = read_file(settings.resolve(f.path), name="flat", separator=f.separator, encoding=f.encoding)
    else:
        raw = read_source(flat_table_source(settings), name="flat", base_dir=settings.base_dir)
    return with_derived_columns(raw, settings, where=flat_location(settings))
