"""`leadscore predict` in flat mode: the export's open rows (an empty label, or one of `flat.open_values`) are the
open leads, and exactly those are scored.

They are built by the same builder as the training rows (features.flat), scored by the champion with its SHAP
reasons and, where grade rules name the export's columns (`[grades.fit]` and `[flat.engagement]`), graded and
routed through the same routing table as in CRM mode. Without an id column a row's lead_id is its row number in the
file; `flat.identify_columns` are copied beside it so that a user can match the scores back to the export.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from leadscore.features.flat import flat_open_leads
from leadscore.models.drift import outside_counts, stability_counts
from leadscore.models.grades import grade_flat_rows
from leadscore.models.reasons import top_reasons
from leadscore.models.scores import percentile_in_run
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError, UsageError
from leadscore.pipelines.intake.flat_checks import check_flat_table, open_rule
from leadscore.pipelines.intake.flat_source import flat_location, load_flat_export
from leadscore.pipelines.intake.ground import check_model_features
from leadscore.pipelines.training_set import flat_spec
from leadscore.pipelines.verbs.scoring import (
    OUTPUT_COLUMNS,
    ROUTE_COLUMNS,
    Scored,
    _drift,
    _score,
    band_cutoffs,
    outside_shares,
    summarise,
)

log = logging.getLogger(__name__)


def flat_grades_configured(settings: Settings) -> bool:
    """Grades apply in flat mode when every fit category names a declared column and column engagement is set."""
    f = settings.flat
    columns = {*f.categorical, *f.numeric}
    fit_on_columns = all(c.feature in columns for c in settings.grades.fit.categories.values())
    if f.engagement is not None and not fit_on_columns:
        log.warning("flat.engagement is set but [grades.fit] names columns that are not declared features: no grades")
    return f.engagement is not None and fit_on_columns


def read_flat_table(settings: Settings) -> pd.DataFrame:
    raw = load_flat_export(settings)
    check_flat_table(raw, settings.flat, where=flat_location(settings), training=False)  # open rows only is fine
    return raw


def flat_as_of(settings: Settings, open_rows: pd.DataFrame, as_of: pd.Timestamp | None) -> pd.Timestamp:
    """--as-of, else the config's as_of (either refused after the latest time in the export), else the latest time
    in the export, else now (whole seconds, UTC)."""
    from leadscore.pipelines.intake.validation import check_as_of_within_data

    times = open_rows["cutoff_time"].dropna()
    given, option = as_of, "--as-of"
    if given is None and settings.as_of is not None:
        stamp = pd.Timestamp(settings.as_of)
        given = stamp.tz_localize(settings.timezone).tz_convert("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
        option = "as_of (config)"
    if given is not None:
        if len(times):
            check_as_of_within_data(given, times.max(), option=option)
        return given
    if len(times):
        return times.max()
    return pd.Timestamp.now(tz="UTC").floor("s")


def score_flat_open_leads(
    settings: Settings,
    model,
    wrapper,
    *,
    model_name: str,
    model_version: str,
    model_uri: str,
    as_of: pd.Timestamp | None = None,
    keep_contributions: bool = False,
) -> Scored:
    """Every open row of the flat export: probability, score, reasons; grades when configured; the identifying
    columns beside the lead_id."""
    export = read_flat_table(settings)
    rows = flat_open_leads(export, flat_spec(settings))
    f = settings.flat
    check_model_features(model, [*f.categorical, *f.numeric], model_uri)
    check_identify_columns(f.identify_columns)
    if rows.empty:
        raise no_open_lead(settings, rows=len(export))
    return score_flat_rows(
        settings,
        export,
        rows,
        model,
        wrapper,
        model_name=model_name,
        model_version=model_version,
        as_of=flat_as_of(settings, rows, as_of),
        keep_contributions=keep_contributions,
    )


def no_open_lead(settings: Settings, *, rows: int | None) -> DataError:
    """The error for an export without an open row (`rows`: how many it has, when known)."""
    counted = "none of the rows" if rows is None else f"none of the {rows:,} rows"
    return DataError(
        f"no open lead: {counted} is open ({open_rule(settings.flat)})",
        where=flat_location(settings),
        hint="leave the label empty for the leads to score, or list the values that mean still open in "
        "flat.open_values (with flat.status_column for a status column); open rows are left out of training",
    )


def score_flat_rows(
    settings: Settings,
    export: pd.DataFrame,
    rows: pd.DataFrame,
    model,
    wrapper,
    *,
    model_name: str,
    model_version: str,
    as_of: pd.Timestamp,
    keep_contributions: bool = False,
) -> Scored:
    """The open `rows` (`flat_open_leads` of `export`, at least one) scored as of `as_of`: probability, score,
    reasons; grades when configured; the identifying columns beside the lead_id. The Spark engine calls it per bucket
    of rows."""
    f, stamp = settings.flat, as_of
    names = list(model.feature_names_in_)
    X = rows[names]
    contributions = model.contributions(X)
    raw = contributions.sum(axis=1).to_numpy()  # SHAP values add up to the raw score
    probability = model.probability_of_margin(raw)
    reasons = top_reasons(
        contributions, X, {}, reference=getattr(wrapper, "reason_reference", None), directions=dict(f.directions)
    )
    scores = pd.DataFrame({"lead_id": rows["lead_id"].to_numpy(), "probability": probability, "raw_score": raw})
    behind = export.iloc[rows["row_order"].to_numpy()]  # the export's own rows, as written: to find them again
    for column in f.identify_columns:
        scores[column] = behind[column].to_numpy()
    scores = pd.concat([scores, reasons.reset_index(drop=True)], axis=1)
    cutoffs = band_cutoffs(settings, wrapper) if flat_grades_configured(settings) else None
    if flat_grades_configured(settings):
        graded = grade_flat_rows(
            rows,
            settings.grades,
            f.engagement,
            as_of=stamp,
            probability=pd.Series(probability),
            cutoffs=cutoffs,
        )
        scores = pd.concat([scores, graded[ROUTE_COLUMNS].reset_index(drop=True)], axis=1)
    else:
        for column in ROUTE_COLUMNS:
            scores[column] = pd.NA
    valid = np.isfinite(scores["probability"].to_numpy())
    failed = scores.loc[~valid, "lead_id"].astype("string")
    rejects = pd.DataFrame({"lead_id": failed, "reason": "scoring: no finite probability"})
    scores = scores.loc[valid].copy()
    scores["score"] = _score(model, wrapper, scores["probability"].to_numpy(dtype="float64"))
    scores["percentile"] = percentile_in_run(scores["probability"].to_numpy())
    scores["account_id"] = pd.NA
    scores["as_of"] = stamp
    scores["model_name"], scores["model_version"] = model_name, model_version
    scores["feature_set"] = getattr(wrapper, "feature_set", "")
    scores = scores.sort_values(["probability", "lead_id"], ascending=[False, True], kind="stable")
    profile = getattr(wrapper, "reference_profile", {}) or {}
    drift = _drift(profile, stability_counts(profile, X), scores)
    kept = contributions.assign(lead_id=rows["lead_id"].to_numpy()) if keep_contributions else None
    columns = ["lead_id", *f.identify_columns, *OUTPUT_COLUMNS[1:]]
    result = Scored(scores[columns].reset_index(drop=True), rejects.reset_index(drop=True), kept, drift)
    result.outside_range = outside_shares(outside_counts(profile, X), len(X))
    result.summary = summarise(result) | {
        "open_rows": len(rows),
        "row_id": f"column {f.id_column!r}" if f.id_column else "row number in the file (1 = first data row)",
        "identify_columns": list(f.identify_columns),
        "bands": None if cutoffs is None else asdict(cutoffs),
    }
    return result


def check_identify_columns(columns: list[str]) -> None:
    """An identifying column named like a column of the scores would overwrite it."""
    clash = [c for c in columns if c in {*OUTPUT_COLUMNS, "raw_score"}]
    if clash:
        raise UsageError(
            f"flat.identify_columns {clash}: the scores file has columns of the same name",
            hint="rename the column in the export (or leave it out of flat.identify_columns)",
        )
