"""`--level opportunity` of `train` (and what `predict`, `explain` and `backtest` share with it): every open deal's
chance to close won within the horizon. Scoring the open deals is `opportunity_scores`.

Training runs the lead level's recipe (the same factory and settings, the same time-ordered holdout with a
one-horizon gap, the same refit on all rows, the same gate) on the opportunity spine and features
(features/opportunity_spine.py, features/opportunities.py). The holdout is also scored by two baselines:
- `logistic_regression` on the same features, as at the lead level;
- `crm_stage_probability`: the CRM's own stage probability (Salesforce `Probability`) as it stood at each cutoff,
  read from the opportunity history's `probability` changes. The opportunities table's `probability` column is
  today's value (100 or 0 on a closed deal) and is never read for a past cutoff.
The opportunity model is registered as `<mlflow.registered_model>-opportunity`, with its own champion and challenger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd

from leadscore.features.opportunities import (
    OpportunityContext,
    build_opportunity_features,
    opportunity_directions,
    opportunity_feature_specs,
)
from leadscore.features.opportunity_spine import KEY, build_opportunity_spine, opportunity_scoring_spine
from leadscore.models.conversion import TooLittleDataError
from leadscore.models.evaluation import calibration_table, evaluate, metrics_table
from leadscore.models.factory import build_model
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.targets import check_outputs
from leadscore.pipelines.training_set import (
    TrainingSet,
    content_fingerprint,
    fit_recipe,
    input_fingerprint,
    with_rows,
)
from leadscore.pipelines.verbs.levels import (
    MODEL_ROW,
    LevelRun,
    leak_summary,
    level_settings,
    log_level_model,
)
from leadscore.pipelines.verbs.train import (
    ReferencePopulation,
    TrainResult,
    baseline_scores,
    gap_days,
    holdout_figures,
    holdout_split,
    refit_on_all_rows,
)

log = logging.getLogger(__name__)
LEVEL = "opportunity"
STAGE_BASELINE = "crm_stage_probability"


def opportunity_settings(settings: Settings) -> Settings:
    """The settings with the opportunity model's registry name and `[opportunities]` as the spine in force."""
    p = settings.opportunity_policy()
    spine = {k: getattr(p, k) for k in ("delay_days", "every_days", "max_snapshots", "horizon_days", "max_age_days")}
    return level_settings(settings, LEVEL, spine={**spine, "policy": "snapshots"})


def history_of(data: CrmData) -> pd.DataFrame | None:
    history = data.tables.get("opportunity_history")
    return history if history is not None and len(history) else None


LEAD_SCORES = "lead_scores"  # the lead score history's production rows, beside the CRM tables (`with_lead_scores`)


def with_lead_scores(settings: Settings, data: CrmData) -> CrmData:
    """`data` with the lead score history's production runs scored before its as-of (lead_id, as_of, score, model
    name and version) beside its tables, for the lead's last score before its deal was opened; none when no run was
    kept."""
    from leadscore.pipelines.outputs.history import read_history

    rows = read_history(settings)
    rows = rows[rows["production"].to_numpy(dtype=bool) & (rows["as_of"] < data.as_of).to_numpy(dtype=bool)]
    if len(rows):
        data.tables[LEAD_SCORES] = rows[["lead_id", "as_of", "score", "model_name", "model_version"]].reset_index(
            drop=True
        )
    return data


def scores_of(data: CrmData) -> pd.DataFrame | None:
    return data.tables.get(LEAD_SCORES)


def history_line(data: CrmData) -> str:
    """What the deal features read: the history point in time, or only creation-time fields; and the lead scores."""
    history, scores = history_of(data), scores_of(data)
    if scores is None:
        said = "no lead score history: the lead's last score before its deal is left out"
    else:
        said = f"lead score history: {scores['as_of'].nunique():,} run(s); the lead's last score before its deal read"
    if history is None:
        return (
            "no opportunity history (tables.opportunity_history): the deal features read only what is fixed at "
            f"creation (its age, its lead and company); stage, amount and close date are left out; {said}"
        )
    return (
        f"opportunity history: {len(history):,} changes of {history[KEY].nunique():,} deals: stage, amount and close "
        f"date read as they stood before each cutoff; {said}"
    )


def opportunity_context(settings: Settings, data: CrmData, spine: pd.DataFrame) -> OpportunityContext:
    t = data.tables
    return OpportunityContext(
        spine,
        opportunities=t["opportunities"],
        leads=t["leads"],
        history=history_of(data),
        accounts=t.get("accounts"),
        events=t.get("events"),
        params=settings.feature_params(),
        scores=scores_of(data),
    )


def opportunity_training_set(settings: Settings, data: CrmData) -> TrainingSet:
    """Opportunity spine -> point-in-time deal features, as a TrainingSet the lead training code accepts."""
    policy = settings.opportunity_policy()
    spine, stats = build_opportunity_spine(data.tables["opportunities"], policy, as_of=data.as_of)
    log.info(
        "opportunity spine: %d rows (%d won, %d censored) over %d deals",
        stats.rows,
        stats.positives,
        stats.censored,
        stats.leads,
    )
    specs = opportunity_feature_specs(
        with_history=history_of(data) is not None, with_scores=scores_of(data) is not None
    )
    names = list(specs)
    frame = deal_rows(settings, data, names, spine)
    manifest = {
        "mode": "crm",
        "level": LEVEL,
        "as_of": data.as_of.isoformat(),
        "spine": {**asdict(stats), "deals": stats.leads},
        "cutoff_policy": asdict(policy),
        "rows": len(frame),
        "positives": int(frame["converted"].sum()),
        "features": names,
        "feature_set": LEVEL,
        "opportunity_history": history_of(data) is not None,
        "lead_score_history": scores_of(data) is not None,
        "input_sha256": input_fingerprint(settings),
        "content_sha256": content_fingerprint(data.tables),
        "sample_weight": "1 / (rows kept for the deal); the model scales the weights to average 1",
    }
    return TrainingSet(frame, names, manifest, [n for n in names if specs[n].kind == "categorical"])


def deal_rows(settings: Settings, data: CrmData, names: list[str], spine: pd.DataFrame) -> pd.DataFrame:
    """The spine's rows with their deal features `names` beside them."""
    features = build_opportunity_features(opportunity_context(settings, data, spine), names)
    return pd.concat([spine.reset_index(drop=True), features], axis=1)


def opportunity_spine_as_of(settings: Settings, data: CrmData, as_of: pd.Timestamp) -> pd.DataFrame:
    """The labelled, weighted deal spine `train --level opportunity --as-of` would build on that date, from tables
    read later: cutoffs up to `as_of`, labels only where the horizon ended by then (the lead level's `spine_as_of`)."""
    return build_opportunity_spine(data.tables["opportunities"], settings.opportunity_policy(), as_of=as_of)[0]


def with_deal_rows(
    settings: Settings, data: CrmData, training: TrainingSet, spine: pd.DataFrame
) -> tuple[TrainingSet, np.ndarray]:
    """The deal training set grown by the rows of `spine` it lacks, and each `spine` row's position in it."""
    build = partial(deal_rows, settings, data, training.feature_names)
    return with_rows(settings, data, training, spine, key=KEY, build=build)


def stage_probability_rows(settings: Settings, data: CrmData, training: TrainingSet) -> dict[str, np.ndarray]:
    """The CRM's stage probability of every training row as it stood before its cutoff (NaN: never recorded)."""
    return {
        STAGE_BASELINE: stage_probability(opportunity_context(settings, data, training.frame[[KEY, "cutoff_time"]]))
    }


def stage_probability(context: OpportunityContext) -> np.ndarray:
    """The CRM's stage probability of each row as it stood before the cutoff, in [0, 1] (NaN: never recorded);
    values above 1 are read as percentages (Salesforce writes 0-100)."""
    return probability_share(context.value_at("probability")[0])


def probability_share(values: pd.Series) -> np.ndarray:
    """A CRM probability column in [0, 1]: read as percentages when any value is above 1 (Salesforce: 0-100)."""
    p = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    return np.clip(p / 100.0 if np.nanmax(p, initial=0.0) > 1 else p, 0.0, 1.0)


def stage_baseline(context: OpportunityContext, fallback: float) -> tuple[np.ndarray | None, str]:
    """The stage-probability baseline on the rows of `context`, missing values read as `fallback` (the development
    rows' win rate), or None with the reason when the history records no probability."""
    p = stage_probability(context)
    missing = int(np.isnan(p).sum())
    if missing == len(p):
        return None, "not computed: the opportunity history records no probability (Salesforce Probability)"
    note = "the CRM's probability as it stood before each cutoff (opportunity history)"
    if missing:
        note += f"; {missing:,} rows without one read as the development win rate ({fallback:.3f})"
    return np.where(np.isnan(p), fallback, p), note


def fit_opportunity_model(settings: Settings, training: TrainingSet, rows: np.ndarray):
    specs = opportunity_feature_specs()
    model = build_model(
        settings.model,
        categorical_features=training.categorical,
        gap_days=gap_days(settings),
        directions=opportunity_directions({n: specs[n] for n in training.feature_names}),
    )
    return fit_recipe(model, training, rows, training.feature_names)


@dataclass
class OpportunityTrainResult:
    result: TrainResult
    baseline: str  # how the stage-probability baseline was read
    history: str  # what the deal features read
    version: str | None = None
    decision: str = ""
    run_id: str | None = None
    deals_open: int = 0


def train_and_evaluate_opportunities(settings: Settings, data: CrmData) -> OpportunityTrainResult:
    """Fit on the earlier deal rows; score the holdout with the model, the logistic regression and the CRM's stage
    probability. `settings` are the opportunity level's (`opportunity_settings`)."""
    training = opportunity_training_set(settings, data)
    split = holdout_split(settings, training)
    model = fit_opportunity_model(settings, training, split.dev)
    holdout = training.frame.iloc[split.holdout].reset_index(drop=True)
    probability = model.predict_proba(holdout[training.feature_names])[:, 1]
    scores = {MODEL_ROW: probability, **baseline_scores(settings, training, split, None)}
    dev_rate = float(training.frame["converted"].iloc[split.dev].mean())
    stage, note = stage_baseline(opportunity_context(settings, data, holdout[[KEY, "cutoff_time"]]), dev_rate)
    if stage is not None:
        scores[STAGE_BASELINE] = stage
    metrics = metrics_table({name: evaluate(holdout["converted"], p) for name, p in scores.items()})
    calibration = calibration_table(holdout["converted"], probability)
    result = TrainResult(model, training, split, metrics, calibration, probability)
    return OpportunityTrainResult(result, note, history_line(data))


def open_deal_features(settings: Settings, data: CrmData, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deals open at the as-of (the scoring spine) and their features `names`."""
    spine = opportunity_scoring_spine(data.tables["opportunities"], as_of=data.as_of)
    return spine, build_opportunity_features(opportunity_context(settings, data, spine), names)


def train_opportunities(settings: Settings, data: CrmData, *, promote_anyway: bool = False) -> OpportunityTrainResult:
    """The whole `leadscore train --level opportunity`: fit and evaluate, then log, register and gate in MLflow."""
    opp = opportunity_settings(settings)
    out = train_and_evaluate_opportunities(opp, data)
    result = out.result
    result.deployed = refit_on_all_rows(result.training, result.model)
    spine, X = open_deal_features(opp, data, result.training.feature_names)
    out.deals_open = len(spine)
    population = ReferencePopulation(X, f"{len(X):,} deals open at {data.as_of.isoformat()}")
    params = {f"opportunities.{k}": v for k, v in settings.opportunities.model_dump().items()}
    params |= {"horizon_days": gap_days(opp), "baseline.crm_stage_probability": out.baseline, "history": out.history}
    run = LevelRun(LEVEL, opportunity_feature_specs(), params, population)
    out.version, out.decision, out.run_id = log_level_model(opp, data, result, run, promote_anyway=promote_anyway)
    return out


def run_train_opportunities(
    settings: Settings, *, as_of: pd.Timestamp | None = None, promote: bool = False, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore train --level opportunity`, with its figures and the gate's decision printed."""
    check_outputs(settings)  # the validation rejects
    data = with_lead_scores(settings, load_valid_crm(settings, as_of=as_of))
    echo(history_line(data))
    try:
        out = train_opportunities(settings, data, promote_anyway=promote)
    except TooLittleDataError as exc:
        raise DataError(f"too little data to train: {exc}") from None
    result, name = out.result, opportunity_settings(settings).mlflow.registered_model
    split, stats = result.split, result.training.manifest["spine"]
    echo(
        f"opportunity spine: {stats['rows']:,} rows over {stats['deals']:,} deals ({stats['censored']:,} censored); "
        f"fit on {len(split.dev):,} rows, scored on the latest {len(split.holdout):,} (fully observed) rows "
        f"({result.model.describe()})"
    )
    echo(f"holdout metrics ({MODEL_ROW}: the opportunity model; {STAGE_BASELINE}: the CRM's own stage probability):")
    echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    echo(f"  {STAGE_BASELINE}: {out.baseline}")
    suspects = leak_summary(result, echo)
    echo(f"registered {name} version {out.version} (alias challenger)")
    echo(out.decision)
    echo(f"MLflow run {out.run_id} in {settings.tracking_uri}")
    return {
        "verb": "train",
        "level": LEVEL,
        "registered_model": name,
        "version": out.version,
        "decision": out.decision,
        "run_id": out.run_id,
        "dev_rows": len(split.dev),
        "holdout_rows": len(split.holdout),
        "holdout": holdout_figures(result.metrics),
        "baseline": out.baseline,
        "history": out.history,
        "deals_open": out.deals_open,
        "suspect_features": suspects,
    }


def opportunity_review(settings: Settings, *, model_uri: str | None = None):
    """`explain --level opportunity`: the opportunity model (default its champion) on the deal training set it was
    evaluated on, split as in training, with the CRM's stage probability beside it on the holdout."""
    from leadscore.pipelines.intake.validation import load_crm
    from leadscore.pipelines.reports.analyst import ReviewLevel, registered_model, review_of

    opp = opportunity_settings(settings)
    loaded = registered_model(opp, model_uri)
    data = with_lead_scores(settings, load_crm(settings))
    training = opportunity_training_set(opp, data)
    split = holdout_split(opp, training)
    holdout = training.frame.iloc[split.holdout].reset_index(drop=True)
    dev_rate = float(training.frame["converted"].iloc[split.dev].mean())
    stage, _ = stage_baseline(opportunity_context(opp, data, holdout[[KEY, "cutoff_time"]]), dev_rate)
    baselines = {} if stage is None else {STAGE_BASELINE: stage}
    level = ReviewLevel(LEVEL, KEY, "deal", opportunity_feature_specs(), baselines)
    return review_of(opp, loaded, training, data, level=level, split=split)


__all__ = [
    "LEAD_SCORES",
    "deal_rows",
    "opportunity_context",
    "opportunity_review",
    "opportunity_spine_as_of",
    "opportunity_settings",
    "opportunity_training_set",
    "run_train_opportunities",
    "train_and_evaluate_opportunities",
    "train_opportunities",
    "with_deal_rows",
    "with_lead_scores",
]
