"""The scoring engine behind `leadscore predict`: every lead open at a date, scored with reasons, grades, actions.

Leads are scored in chunks (features, probabilities, SHAP reasons and grades per chunk), so memory stays bounded
by the chunk size beyond the loaded tables. Every open lead ends up once in the scores or in the rejects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import feature_columns, feature_specs
from leadscore.features.context import FeatureContext
from leadscore.features.keys import is_in, positions
from leadscore.features.spine import scoring_spine
from leadscore.models.drift import (
    add_counts,
    outside_counts,
    population_stability,
    stability_counts,
    stability_of_counts,
)
from leadscore.models.grade_rules import BandCutoffs
from leadscore.models.grades import grade_spine
from leadscore.models.movement import compact_contributions
from leadscore.models.reasons import top_reasons
from leadscore.models.scores import base_rate_of, percentile_in_run, score_1_99
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.memory import release_unused_memory

log = logging.getLogger(__name__)

# the grade and the routing of a lead: what the rules and the priority band decide
ROUTE_COLUMNS = [
    "fit_grade",
    "engagement_grade",
    "cell",
    "stage",
    "stage_rule",
    "dormant",
    "band",
    "action",
    "sla_hours",
    "due_by",
    "route_note",
]

OUTPUT_COLUMNS = [
    "lead_id",
    "account_id",
    "as_of",
    "probability",
    "score",
    "percentile",
    *ROUTE_COLUMNS,
    "reasons_positive",
    "reasons_negative",
    "model_name",
    "model_version",
    "feature_set",
]


@dataclass
class Scored:
    scores: pd.DataFrame
    rejects: pd.DataFrame
    contributions: pd.DataFrame | None
    drift: pd.Series
    summary: dict = field(default_factory=dict)
    # per scored lead: its margin and top contributions as the history keeps them (models.movement); None when off
    explained: pd.DataFrame | None = None
    # share of scored rows outside each numeric feature's training range (only features with some)
    outside_range: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (STAGES), summed over chunks


# the columns of a scored chunk that the output needs (grading's working columns are dropped chunk by chunk)
_KEPT = [
    "lead_id",
    "cutoff_time",
    "probability",
    "raw_score",
    *ROUTE_COLUMNS,
    "reasons_positive",
    "reasons_negative",
    "top_contributions",
]

# predict's stages, in order, as `Scored.timings` names them (the predict benchmark prints them as a table)
STAGES = (
    "spine",
    "events_by_chunk",
    "features",
    "model_scoring",
    "shap_contributions",
    "reason_text",
    "grades",
    "assembly",
    "drift",
)


@contextmanager
def _timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the time spent in the block to `timings[stage]` (when timings are kept)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _chunks(spine: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [spine.iloc[i : i + size] for i in range(0, len(spine), size)] or [spine]


def _events_by_chunk(events: pd.DataFrame | None, chunks: list[pd.DataFrame]):
    """Each chunk's events in turn, found in one pass over all events and copied one chunk at a time."""
    if events is None:
        yield from [None] * len(chunks)
        return
    # the smallest integer that numbers the chunks: one event-sized array (2 bytes per event for up to 32k chunks)
    dtype = "int16" if len(chunks) < np.iinfo("int16").max else "int32"
    chunk_of = np.append(np.repeat(np.arange(len(chunks), dtype=dtype), [len(c) for c in chunks]), -1).astype(dtype)
    spine_leads = pd.Index(pd.concat([c["lead_id"] for c in chunks]))
    lead = events["lead_id"]
    if isinstance(lead.dtype, pd.CategoricalDtype):  # map each distinct lead once, then take by code
        # code -1 (missing lead) and position -1 (a lead not scored) read the appended -1
        per_level = np.append(chunk_of[positions(lead.cat.categories, spine_leads)], -1).astype(dtype)
        which = per_level[lead.array.codes]
    else:
        which = chunk_of[positions(lead, spine_leads)]
    # one comparison pass per chunk instead of sorting all events: no event-sized index arrays beyond `which`
    for i in range(len(chunks)):
        yield events.iloc[np.flatnonzero(which == i)]


def account_scope(leads: pd.DataFrame, opportunities: pd.DataFrame, lead_ids: pd.Series) -> dict[str, pd.DataFrame]:
    """The leads and deals that features of `lead_ids` can see: those leads, the other leads of their accounts and
    all these leads' deals. No builder looks past the lead's account, so a chunk's features are the same from this
    scope as from the whole CRM, and each chunk no longer walks every lead and deal (at 1M leads that walk, once per
    chunk, cost more than the chunk's own work)."""
    own = is_in(leads["lead_id"], lead_ids)
    if "account_id" in leads:
        accounts = leads.loc[own, "account_id"].dropna().unique()
        own |= is_in(leads["account_id"], accounts)
    scoped = leads[own]
    return {"leads": scoped, "opportunities": opportunities[is_in(opportunities["lead_id"], scoped["lead_id"])]}


def score_chunk(
    settings: Settings,
    data: CrmData,
    spine: pd.DataFrame,
    events: pd.DataFrame | None,
    model,
    *,
    keep_contributions,
    reason_reference: dict | None = None,
    cutoffs: BandCutoffs | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """Scores with reasons and grades for one chunk of the scoring spine (routed by the model's band with the band
    `cutoffs`); also its feature matrix. `timings`, when given, gets the seconds of each stage added."""
    names = list(model.feature_names_in_)
    with _timed(timings, "features"):
        t = {**data.tables, **account_scope(data.tables["leads"], data.tables["opportunities"], spine["lead_id"])}
        context = FeatureContext.of_tables(spine, {**t, "events": events}, params=settings.feature_params())
        # the model's features and the rules' inputs come from one context: one point-in-time join per chunk
        features = feature_columns(context, list(dict.fromkeys(names + settings.grades.fit_features())))
        X = features[names]
    with _timed(timings, "shap_contributions"):
        contributions = model.contributions(X)
    with _timed(timings, "model_scoring"):  # SHAP values add up to the raw score: no second pass over the trees
        raw = contributions.sum(axis=1).to_numpy()
        probability = model.probability_of_margin(raw)
    with _timed(timings, "reason_text"):
        reasons = top_reasons(contributions, X, feature_specs(context.params), reference=reason_reference)
    with _timed(timings, "grades"):
        tables = {**t, "events": events}
        graded = grade_spine(
            spine,
            tables,
            settings.grades,
            context.params,
            probability=pd.Series(probability),
            context=context,
            features=features,
            cutoffs=cutoffs,
        )
    out = graded.assign(probability=probability, raw_score=raw, **{c: reasons[c].to_numpy() for c in reasons})
    kept_top = settings.history.contributions_kept if settings.history.enabled else 0
    if kept_top:
        with _timed(timings, "reason_text"):  # what the history keeps to explain the next run's score moves
            out["top_contributions"] = compact_contributions(contributions, X, top=kept_top)
    kept = contributions.assign(lead_id=spine["lead_id"].to_numpy()) if keep_contributions else None
    return out, kept, X


@dataclass
class Gathered:
    """What a run's chunks gather beside their scored rows, however they are split (chunks of the whole book or of its
    partitions): the feature matrices' rows per training-profile bin (drift), the rows outside each feature's
    training range, the rows scored and the seconds of each stage."""

    profile: dict
    drift_counts: dict | None = None
    outside: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, X: pd.DataFrame) -> None:
        with _timed(self.timings, "drift"):
            self.drift_counts = add_counts(self.drift_counts, stability_counts(self.profile, X))
            self.outside = {k: self.outside.get(k, 0) + v for k, v in outside_counts(self.profile, X).items()}
        self.rows += len(X)

    def outside_range(self) -> pd.Series:
        return outside_shares(self.outside, self.rows)


@dataclass(frozen=True)
class RunLabels:
    """What every row of one run carries: its model and feature set."""

    model_name: str
    model_version: str
    feature_set: str


def score_chunks(
    settings: Settings,
    data: CrmData,
    spine: pd.DataFrame,
    events: pd.DataFrame | None,
    model,
    wrapper,
    *,
    gathered: Gathered,
    chunk_size: int,
    cutoffs: BandCutoffs | None,
    keep_contributions: bool = False,
    progress=None,
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """`spine`'s leads scored a chunk at a time from `events` (theirs, or more) and routed with the band `cutoffs`:
    each chunk's kept columns and, when kept, its contributions; the drift counts, rows outside the training range
    and timings added to `gathered`."""
    timings = gathered.timings
    with _timed(timings, "spine"):
        chunks = _chunks(spine, chunk_size)
    parts, contributions = [], []
    chunk_events = _events_by_chunk(events, chunks)
    for chunk in chunks:
        with _timed(timings, "events_by_chunk"):
            chunk_of_events = next(chunk_events)
        scored, contrib, X = score_chunk(
            settings,
            data,
            chunk.reset_index(drop=True),
            chunk_of_events,
            model,
            keep_contributions=keep_contributions,
            reason_reference=getattr(wrapper, "reason_reference", None),
            cutoffs=cutoffs,
            timings=timings,
        )
        parts.append(scored[[c for c in _KEPT if c in scored]])  # only what the output needs, chunk by chunk
        gathered.add(X)
        if contrib is not None:
            contributions.append(contrib)
        del scored, contrib, X, chunk_of_events  # this chunk's features and events go before the next chunk's
        release_unused_memory()
        if progress is not None:
            progress(len(chunk))
    return parts, contributions


def add_run_columns(
    scores: pd.DataFrame, leads: pd.DataFrame, labels: RunLabels, *, score: np.ndarray, percentile: np.ndarray
) -> None:
    """Scored rows given (in place) their score and percentile (both of the whole run), account, as-of and the run's
    labels."""
    scores["score"] = score
    scores["percentile"] = percentile
    if "account_id" in leads:
        at = positions(scores["lead_id"], pd.Index(leads["lead_id"]))  # every scored lead is in the table
        scores["account_id"] = leads["account_id"].array.take(at, allow_fill=True)
    else:
        scores["account_id"] = pd.NA
    scores["as_of"] = scores["cutoff_time"]
    scores["model_name"], scores["model_version"] = labels.model_name, labels.model_version
    scores["feature_set"] = labels.feature_set


def score_open_leads(
    settings: Settings,
    data: CrmData,
    model,
    wrapper,
    *,
    model_name: str,
    model_version: str,
    chunk_size: int = 25_000,
    keep_contributions: bool = False,
    drop_events: bool = False,
    progress=None,
) -> Scored:
    """Score every lead open at `data.as_of`; the result's `timings` hold the seconds of each stage (STAGES).

    `drop_events`: take the events table out of `data` once the last chunk has its events, for a caller that needs
    them no more (a batch predict): their memory is back before the scores are put together (0.75 GB at 57M events).
    """
    gathered = Gathered(getattr(wrapper, "reference_profile", {}) or {})
    timings, cutoffs = gathered.timings, band_cutoffs(settings, wrapper)
    with _timed(timings, "spine"):
        spine = scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
        spine = spine.sort_values("lead_id", kind="stable").reset_index(drop=True)
    parts, contributions = score_chunks(
        settings,
        data,
        spine,
        data.tables.get("events"),
        model,
        wrapper,
        gathered=gathered,
        chunk_size=chunk_size,
        cutoffs=cutoffs,
        keep_contributions=keep_contributions,
        progress=progress,
    )
    if drop_events:
        data.tables.pop("events", None)
        release_unused_memory()
    assembly_start = time.perf_counter()
    scores = pd.concat(parts, ignore_index=True)
    parts.clear()
    valid = np.isfinite(scores["probability"].to_numpy())
    rejects = _rejects(data, scores.loc[~valid, "lead_id"])
    if not valid.all():  # the usual case keeps the frame as it is: no copy of every score
        scores = scores.loc[valid]
    probability = scores["probability"].to_numpy(dtype="float64")
    labels = RunLabels(model_name, model_version, getattr(wrapper, "feature_set", ""))
    add_run_columns(
        scores,
        data.tables["leads"],
        labels,
        score=_score(model, wrapper, probability),
        percentile=percentile_in_run(probability),
    )
    timings["assembly"] += time.perf_counter() - assembly_start
    with _timed(timings, "drift"):
        drift = _drift(gathered.profile, gathered.drift_counts, scores)
    with _timed(timings, "assembly"):
        explained = explained_of(scores)
        scores = _sorted_by_score(scores[OUTPUT_COLUMNS])
        result = Scored(
            scores[OUTPUT_COLUMNS].reset_index(drop=True),
            rejects,
            pd.concat(contributions, ignore_index=True) if contributions else None,
            drift,
            explained=explained,
        )
        result.outside_range = gathered.outside_range()
        result.summary = summarise(result) | {"bands": None if cutoffs is None else asdict(cutoffs)}
    result.timings = timings
    log.debug("predict stages (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    return result


def explained_of(scores: pd.DataFrame) -> pd.DataFrame | None:
    """Each scored lead's margin and top contributions (None when the history keeps none), taken out of `scores`."""
    if "top_contributions" not in scores:
        return None
    return pd.DataFrame(
        {
            "lead_id": scores["lead_id"].to_numpy(),
            "margin": scores.pop("raw_score").to_numpy(dtype="float64"),
            "top_contributions": scores.pop("top_contributions").astype("string").to_numpy(),
        }
    )


def outside_shares(counts: dict[str, int], rows: int) -> pd.Series:
    """Rows outside the training range per feature as shares of the rows scored, largest first, only those above 0."""
    shares = pd.Series(counts, dtype="float64") / max(rows, 1)
    return shares[shares > 0].sort_values(ascending=False)


def _sorted_by_score(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` sorted by probability (highest first), then lead id, taken one column at a time, each column taken
    out of `scores` (left empty) before the next, so that the scores are never held twice (720k scores with their
    reasons take 0.5 GB). The order is `sort_values`' (Arrow's sort is stable and compares text by code point, as
    Python does), found in a fifth of its time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = pa.table(
        {
            "probability": scores["probability"].to_numpy(dtype="float64"),
            "lead_id": pa.array(scores["lead_id"].astype("string")),
        }
    )
    order = pc.sort_indices(keys, sort_keys=[("probability", "descending"), ("lead_id", "ascending")]).to_numpy()
    del keys
    index = scores.index[order]
    columns = {}
    for column in list(scores.columns):
        columns[column] = scores.pop(column).take(order).set_axis(index)
        release_unused_memory()  # the freed column's pages go back before the next column is built
    return pd.DataFrame(columns, copy=False)  # dict input would be copied by default


def champion_open_matrix(settings: Settings, *, limit: int | None = None):
    """The registered champion and its feature matrix for the leads open at the CRM's as-of (the first `limit` of
    them), built in one context without predict's chunks: what the benchmarks and the SHAP tests score."""
    from leadscore.pipelines.intake.validation import load_crm
    from leadscore.pipelines.outputs import tracking

    loaded = load_crm(settings)
    tracking.use_store(settings)
    model, _ = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    t = loaded.tables
    spine = scoring_spine(t["leads"], t["opportunities"], as_of=loaded.as_of).head(limit)
    context = FeatureContext.of_tables(spine, t, params=settings.feature_params())
    return model, feature_columns(context, list(model.feature_names_in_))


def band_cutoffs(settings: Settings, wrapper) -> BandCutoffs | None:
    """The priority bands' cut-offs for this model: `grades.routing.bands` against the base rate of new leads stored
    with it; None (routing by stage x cell alone, as `grade` does) for a model trained before the rate was stored."""
    rate = (getattr(wrapper, "base_rate", None) or {}).get("rate")
    if rate is None:
        log.warning(
            "this model stores no base rate of new leads (trained by an older version): routed by stage x cell "
            "only, without priority bands; retrain it to route by the model too"
        )
        return None
    return settings.grades.routing.bands.cutoffs(rate)


def _score(model, wrapper, probability: np.ndarray) -> np.ndarray:
    """1-99 from the probability against the model's base rate (models.scores); a model trained before the base
    rate was stored falls back on the training rate its reasons quote, else on this run's mean probability, and
    says so."""
    base_rate, source = base_rate_of(model, getattr(wrapper, "reason_reference", None))
    if base_rate is None:
        known = probability[np.isfinite(probability)]
        base_rate = float(np.clip(known.mean() if len(known) else 0.5, 1e-6, 1 - 1e-6))
        log.warning(
            "this model stores no base rate (trained by an older version): score 50 = this run's mean probability "
            "(%.4f); retrain to score against the training conversion rate",
            base_rate,
        )
    elif source != "the model's base rate":
        log.warning(
            "this model stores no base rate (trained by an older version): score 50 = %s (%.4f)", source, base_rate
        )
    return score_1_99(probability, base_rate)


def _rejects(data: CrmData, failed: pd.Series) -> pd.DataFrame:
    """Leads rejected at validation (with their reasons) and any lead whose score could not be computed."""
    parts = []
    if "leads" in data.rejects:
        rejected = data.rejects["leads"]
        parts.append(
            pd.DataFrame(
                {
                    "lead_id": rejected["lead_id"].astype("string"),
                    "reason": "validation: " + rejected["reject_reason"].astype("string"),
                }
            )
        )
    if len(failed):
        parts.append(pd.DataFrame({"lead_id": failed.astype("string"), "reason": "scoring: no finite probability"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"lead_id": [], "reason": []})


def _drift(profile: dict, feature_counts: dict | None, scores: pd.DataFrame) -> pd.Series:
    """PSI of the whole scored population against the training profile, per feature (from the counts gathered
    chunk by chunk) and for the probability."""
    if not profile or scores.empty:
        return pd.Series(dtype="float64", name="psi")
    parts = [stability_of_counts(profile, feature_counts or {}), population_stability(profile, scores[["probability"]])]
    return pd.concat(parts).sort_values(ascending=False)


def summarise(result: Scored) -> dict:
    scores = result.scores
    return {
        "scored": len(scores),
        "rejected": len(result.rejects),
        "mean_probability": round(float(scores["probability"].mean()), 4) if len(scores) else None,
        "leads_per_cell": scores["cell"].value_counts().sort_index().to_dict(),
        "leads_per_stage": scores["stage"].value_counts().to_dict(),
        "leads_per_band": {b: int(n) for b, n in scores["band"].value_counts().items()} if "band" in scores else {},
        "leads_per_action": {a: int(n) for a, n in scores["action"].value_counts().items()},
        "max_psi": round(float(result.drift.max()), 4) if len(result.drift) else None,
    }


def rejects_path(out: Path) -> Path:
    return out.with_name(out.stem + ".rejects.csv")


def log_scoring_run(settings: Settings, result: Scored, *, model_name: str, model_version: str, as_of) -> str:
    """One MLflow run per scoring: the summary, the PSI of every feature and of the score, tagged with the model."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    experiment = tracking.use_store(settings)
    name = tracking.run_name("predict", as_of, model_name, f"v{model_version}" if model_version else None)
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        mlflow.set_tags({"model_name": model_name, "model_version": model_version, "as_of": as_of.isoformat()})
        s = result.summary
        mlflow.log_metrics(
            {"scored": s["scored"], "rejected": s["rejected"]}
            | ({"mean_probability": s["mean_probability"]} if s["mean_probability"] is not None else {})
        )
        mlflow.log_metrics({f"psi.{name}": float(value) for name, value in result.drift.items()})
        tracking.log_frame(result.drift.to_frame(), "drift/psi.csv")
        return run.info.run_id
