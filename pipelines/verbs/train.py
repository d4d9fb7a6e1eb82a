"""`leadscore train`: training set -> time-ordered holdout -> evaluate the recipe (fit on the earlier rows,
calibrate, score the holdout beside the baselines) -> refit the same recipe on every row -> log both fits to MLflow
-> register the refit as challenger, carrying its recipe's holdout figures -> champion only through the gate.

The gate (pipelines/verbs/gate.py) scores the champion as `predict` serves it on the holdout rows it has not seen, or
refits its recipe on the challenger's development rows when there are none."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.features.build import feature_specs
from leadscore.features.registry import all_features
from leadscore.models.baselines import CellRateBaseline, logistic_regression
from leadscore.models.choice import Choice, choose, rolling_origin_folds
from leadscore.models.conversion import TooLittleDataError, time_ordered_split
from leadscore.models.drift import outside_range
from leadscore.models.evaluation import calibration_table, evaluate, metrics_table
from leadscore.models.factory import candidate_recipes, negative_rate
from leadscore.models.linear import one_blas_thread
from leadscore.models.margin_model import MarginModel
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import DataError, UsageError
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.outputs.targets import check_outputs
from leadscore.pipelines.training_set import (
    TrainingSet,
    base_rate_of,
    build_training_set,
    by_lead_blocks,
    fit_recipe,
    sample_time,
    sample_weight,
)
from leadscore.pipelines.verbs.gate import register_and_gate, training_data_id
from leadscore.pipelines.verbs.leaks import LeakReport, check_leaks, flat_scoring_rows

log = logging.getLogger(__name__)


@dataclass
class Split:
    dev: np.ndarray
    holdout: np.ndarray


@dataclass
class TrainResult:
    model: MarginModel  # the recipe's evaluated fit: development rows only
    training: TrainingSet
    split: Split
    metrics: pd.DataFrame
    calibration: pd.DataFrame
    holdout_probability: np.ndarray
    run_id: str | None = None
    version: str | None = None
    decision: str = ""
    extra: dict = field(default_factory=dict)
    deployed: MarginModel | None = None  # the same recipe refit on every row: what is registered
    leaks: LeakReport | None = None  # the leak guards' findings: suspect features block promotion


def gap_days(settings: Settings) -> float:
    return settings.spine.horizon_days if settings.mode == "crm" else 0.0


def feature_directions(settings: Settings) -> dict[str, int] | None:
    """Declared business directions: flat mode's from [flat] directions; None (the feature registry's) in CRM mode."""
    return dict(settings.flat.directions) if settings.mode == "flat" else None


def holdout_split(settings: Settings, training: TrainingSet) -> Split:
    """The most recent `holdout_fraction` of rows, after a gap of one horizon from the rows used to fit."""
    frame = training.frame
    dev, holdout = time_ordered_split(
        len(frame),
        fraction=settings.model.holdout_fraction,
        sample_time=sample_time(training),
        gap_days=gap_days(settings),
    )
    y = frame["converted"].to_numpy()
    if len(np.unique(y[holdout])) < 2:
        raise TooLittleDataError(f"the time-ordered holdout ({len(holdout)} rows) holds only one class; add history")
    return Split(dev, holdout)


def choose_recipe(settings: Settings, training: TrainingSet, rows: np.ndarray) -> Choice:
    """The candidate recipe (family x recency, models.factory) that scores best on the latest rolling-origin folds of
    `rows` (models.choice); the only one when the settings allow one."""
    m = settings.model
    bound = min(m.choice_max_rows, m.max_training_rows)
    converted = int(training.frame["converted"].iloc[rows].sum())
    candidates = candidate_recipes(
        m,
        categorical_features=training.categorical,
        gap_days=gap_days(settings),
        directions=feature_directions(settings),
        negative_rate=negative_rate(converted, len(rows), bound),
    )
    if len(candidates) == 1:
        name, recipe = next(iter(candidates.items()))
        why = f"{name}: the only candidate (model.family = {m.family!r}, model.recency = {m.recency!r})"
        return Choice(name, recipe, pd.DataFrame(), {}, m.gate_metric, why)
    times, weights = sample_time(training), sample_weight(training)
    times = None if times is None else times.iloc[rows].reset_index(drop=True)
    folds = rolling_origin_folds(
        len(rows),
        k=m.choice_folds,
        fold_fraction=m.choice_fold_fraction,
        sample_time=times,
        gap_days=gap_days(settings),
    )
    frame = training.frame.iloc[rows]
    return choose(
        candidates,
        frame[training.feature_names],
        frame["converted"],
        folds=folds,
        sample_time=times,
        sample_weight=None if weights is None else weights.iloc[rows].reset_index(drop=True),
        metric=m.gate_metric,
    )


def training_rate(settings: Settings, training: TrainingSet) -> float:
    """The share of not-converted rows the margin is fitted on (`model.max_training_rows`; 1: every row)."""
    y = training.frame["converted"]
    return negative_rate(int(y.sum()), len(y), settings.model.max_training_rows)


def fitted_recipe(settings: Settings, training: TrainingSet, recipe: MarginModel, rows: np.ndarray) -> MarginModel:
    """A chosen recipe fitted on `rows`, at the training set's negative sampling rate (the choice's may be lower)."""
    recipe = clone(recipe).set_params(negative_rate=training_rate(settings, training))
    return fit_recipe(recipe, training, rows, training.feature_names)


def fit_model(settings: Settings, training: TrainingSet, rows: np.ndarray) -> MarginModel:
    """The recipe chosen on `rows`, fitted on them."""
    return fitted_recipe(settings, training, choose_recipe(settings, training, rows).recipe, rows)


def sampling_line(settings: Settings, model: MarginModel, rows: int) -> str | None:
    """Train's summary line when the margin was fitted on a sample of the not-converted rows."""
    rate = model.negative_rate
    if rate >= 1:
        return None
    return (
        f"negative sampling: {rows:,} training rows exceed model.max_training_rows = "
        f"{settings.model.max_training_rows:,}; the trees fit every converted row and a seeded {rate:.1%} of the "
        f"not-converted ones, each weighing {1 / rate:.2f}; calibration and the base rate use every row"
    )


def refit_on_all_rows(training: TrainingSet, evaluated: MarginModel) -> MarginModel:
    """The evaluated recipe refit on every row, holdout included: what gets registered and scores open leads. It
    calibrates with the method the evaluated fit chose, so that the figures it carries are those of its method."""
    recipe = clone(evaluated).set_params(calibration=evaluated.calibration_method_)
    return fit_recipe(recipe, training, np.arange(len(training.frame)), training.feature_names)


# the logistic-regression baseline's dense one-hot design took about 3x the training frame (438 MiB at 316k rows);
# beyond this many development rows it is fitted on a sample of them (it still scores the whole holdout)
BASELINE_MAX_ROWS = 500_000


def baseline_scores(
    settings: Settings, training: TrainingSet, split: Split, cells: pd.Series | None
) -> dict[str, np.ndarray]:
    """Holdout probabilities of the logistic regression and (CRM mode) the rules-only grade."""
    frame, features = training.frame, training.feature_names
    numeric = [c for c in features if c not in training.categorical]
    lr = logistic_regression(training.categorical, numeric, random_state=settings.model.random_state)
    rows = split.dev
    if len(rows) > BASELINE_MAX_ROWS:  # a seeded, uniform draw: the yardstick's coefficients are settled by then
        rng = np.random.default_rng(settings.model.random_state)
        rows = np.sort(rng.choice(rows, BASELINE_MAX_ROWS, replace=False))
    with one_blas_thread():
        lr.fit(frame[features].iloc[rows], frame["converted"].iloc[rows])
    scores = {"logistic_regression": lr.predict_proba(frame[features].iloc[split.holdout])[:, 1]}
    if cells is not None:
        rules = CellRateBaseline().fit(cells.iloc[split.dev].to_frame("cell"), frame["converted"].iloc[split.dev])
        scores["rules_grade"] = rules.predict_proba(cells.iloc[split.holdout].to_frame("cell"))[:, 1]
    return scores


def train_and_evaluate(
    settings: Settings, *, data: CrmData | None = None, training: TrainingSet | None = None
) -> tuple[TrainResult, pd.DataFrame | None]:
    """Fit on the earlier rows, evaluate on the time-ordered holdout beside the baselines (no MLflow).

    With a prebuilt `training` set (e.g. written by the Spark engine) and no `data`, the rules baseline is left out.
    """
    if training is None:
        if settings.mode == "crm" and data is None:
            data = load_valid_crm(settings)
        training = build_training_set(settings, data=data)
    y = training.frame["converted"]
    positives, negatives = int(y.sum()), int((1 - y).sum())
    if positives < settings.model.min_positives or negatives < settings.model.min_negatives:
        raise TooLittleDataError(
            f"the training set has {positives} converted and {negatives} not-converted examples; need at least "
            f"{settings.model.min_positives} and {settings.model.min_negatives}. Add history (more closed deals), use "
            "cutoff snapshots (spine.policy = 'snapshots'), or grade with the rules only (`leadscore grade`) until "
            "enough deals have closed."
        )
    split = holdout_split(settings, training)
    choice = choose_recipe(settings, training, split.dev)
    log.info("%s", choice.reason)
    model = fitted_recipe(settings, training, choice.recipe, split.dev)
    holdout = training.frame.iloc[split.holdout]
    probability = model.predict_proba(holdout[training.feature_names])[:, 1]
    uncalibrated = 1 / (1 + np.exp(-model.raw_score(holdout[training.feature_names])))
    graded = None
    if settings.mode == "crm" and data is not None:
        from leadscore.models.grades import grade_spine

        params = settings.feature_params()
        graded = by_lead_blocks(  # block by block of leads, as the features: one context over 3M rows took 6 GiB
            training.frame[["lead_id", "cutoff_time", "converted"]],
            data.tables,
            lambda rows, tables: grade_spine(rows, tables, settings.grades, params),
        )
    scores = {"lightgbm_calibrated": probability, "lightgbm_uncalibrated": uncalibrated}
    scores |= baseline_scores(settings, training, split, None if graded is None else graded["cell"])
    metrics = metrics_table({name: evaluate(holdout["converted"], p) for name, p in scores.items()})
    result = TrainResult(
        model, training, split, metrics, calibration_table(holdout["converted"], probability), probability
    )
    result.extra["choice"] = choice
    result.extra["outside_range"] = outside_range(
        training.frame.iloc[split.dev][training.feature_names],
        holdout[training.feature_names],
        categorical=training.categorical,
    )
    return result, graded


REFERENCE_LEADS = 20_000  # open leads scored for the reference distributions (a seeded sample beyond that)


@dataclass
class ReferencePopulation:
    """Who a deployed model's scores and drift are judged against, with their feature values."""

    features: pd.DataFrame
    description: str


def reference_population(settings: Settings, training: TrainingSet, data: CrmData | None) -> ReferencePopulation:
    """The leads the model is deployed on: every lead open at the training as-of (CRM mode, at most REFERENCE_LEADS
    of them), else the training rows (flat mode, prebuilt training sets: there is no open population to score).

    Scores rank against this population and predict measures drift against it: the training rows are the wrong
    yardstick, since they weigh every lead equally over its whole life while the open leads are mostly the old
    ones that did not convert (the same leads at the same as-of must show no drift)."""
    if data is None:
        frame = training.frame[training.feature_names]
        return ReferencePopulation(frame, f"{len(frame):,} training rows")
    from leadscore.features.build import feature_columns
    from leadscore.features.context import FeatureContext
    from leadscore.features.spine import scoring_spine

    t = data.tables
    spine = scoring_spine(t["leads"], t["opportunities"], as_of=data.as_of)
    if len(spine) > REFERENCE_LEADS:
        spine = spine.sample(n=REFERENCE_LEADS, random_state=settings.model.random_state)
    spine = spine.reset_index(drop=True)
    events = t.get("events")
    if events is not None:
        events = events[events["lead_id"].isin(spine["lead_id"])]
    context = FeatureContext.of_tables(spine, {**t, "events": events}, params=settings.feature_params())
    features = feature_columns(context, list(training.feature_names))
    return ReferencePopulation(features, f"{len(features):,} leads open at {data.as_of.isoformat()}")


def drift_profile(
    model: MarginModel,
    population: ReferencePopulation,
    *,
    categorical: list[str],
    trained_on: pd.DataFrame | None = None,
) -> dict:
    """Feature and probability profile of the reference population, for predict's and monitor's drift checks; each
    numeric feature's range is the one the model was trained on (`trained_on`, default the population's)."""
    from leadscore.models.drift import profile

    reference = profile(population.features, categorical=categorical)
    if trained_on is not None:
        for column, seen in profile(trained_on, categorical=categorical).items():
            if column in reference and "range" in seen:
                reference[column]["range"] = seen["range"]
    scores = pd.DataFrame({"probability": model.predict_proba(population.features)[:, 1]})
    reference.update(profile(scores, categorical=[]))
    return reference


def reasons_reference(training: TrainingSet, rows: np.ndarray | None = None, *, specs: dict | None = None) -> dict:
    """How leads like each one converted (rates per band of a numeric feature, per level of a category; each lead
    weighted once, as in fitting) in the rows a model was fitted on (all training rows for the deployed refit).
    `specs` (default: the lead features') give the units the bands are cut in."""
    from leadscore.models.reasons import reason_reference

    frame = training.frame if rows is None else training.frame.iloc[rows]
    weight = frame.get("sample_weight")
    return reason_reference(
        frame[training.feature_names],
        frame["converted"],
        categorical=training.categorical,
        sample_weight=weight,
        specs=all_features() if specs is None else specs,
    )


def leak_report(
    settings: Settings,
    result: TrainResult,
    *,
    population: ReferencePopulation,
    prebuilt: bool,
    scored_name: str = "leads predict would score",
) -> LeakReport:
    """The leak guards on the training set, against the rows predict would score (`scored_name`): the open leads
    (accounts, deals) at as-of (CRM mode), the export's open rows (flat mode); none for a prebuilt training set."""
    training = result.training
    scored = None
    if settings.mode == "flat" and not prebuilt:
        scored = flat_scoring_rows(settings)
    elif settings.mode == "crm" and not prebuilt:
        scored = population.features
    return check_leaks(
        settings,
        training.frame,
        features=training.feature_names,
        categorical=training.categorical,
        dev=result.split.dev,
        holdout=result.split.holdout,
        scored=scored,
        scored_name=scored_name,
    )


def feature_table(names: list[str], *, specs: dict | None = None) -> pd.DataFrame:
    """Each feature's group and description (`specs`, default the lead registry; a flat column: its own name)."""
    specs = all_features() if specs is None else specs
    rows = [(n, specs[n].group, specs[n].description) if n in specs else (n, "flat", n) for n in names]
    return pd.DataFrame(rows, columns=["feature", "group", "description"]).set_index("feature")


def shap_importance(model: MarginModel, X: pd.DataFrame, *, max_rows: int = 5000) -> pd.DataFrame:
    """Mean |SHAP| per feature (log-odds) on up to `max_rows` rows, with the feature's group."""
    contributions = model.contributions(X.iloc[:max_rows]).drop(columns="base_value")
    importance = contributions.abs().mean().sort_values(ascending=False).rename("mean_abs_shap").to_frame()
    specs = all_features()
    importance["group"] = [specs[n].group if n in specs else "flat" for n in importance.index]
    return importance


def train(
    settings: Settings,
    *,
    promote_anyway: bool = False,
    data: CrmData | None = None,
    training: TrainingSet | None = None,
) -> TrainResult:
    """The whole `leadscore train`: fit and evaluate, then log, register and gate in MLflow."""
    from leadscore.pipelines.outputs import tracking

    if settings.mode == "crm" and data is None and training is None:
        data = load_valid_crm(settings)  # once: the training set and the grade analysis both read it
    prebuilt = training is not None
    result, graded = train_and_evaluate(settings, data=data, training=training)
    result.deployed = refit_on_all_rows(result.training, result.model)
    population = reference_population(settings, result.training, data)
    result.leaks = leak_report(settings, result, population=population, prebuilt=prebuilt)
    mlflow = tracking.mlflow_module()
    experiment = tracking.use_store(settings)
    training, model, deployed = result.training, result.model, result.deployed
    holdout = training.frame.iloc[result.split.holdout]
    name = tracking.run_name("train", training.manifest.get("as_of"), training.manifest.get("feature_set"))
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        mlflow.log_params({f"model.{k}": v for k, v in settings.model.model_dump().items()})
        mlflow.log_params(
            {
                "mode": settings.mode,
                "feature_set": training.manifest.get("feature_set"),
                "rows": len(training.frame),
                "dev_rows": len(result.split.dev),
                "holdout_rows": len(result.split.holdout),
                "family": model.family,
                "chosen": result.extra["choice"].chosen,
                "choice_reason": result.extra["choice"].reason[:500],
                "best_iteration": getattr(model, "best_iteration_", None),
                "calibration_method": model.calibration_method_,
                "horizon_days": gap_days(settings),
                "training_set_sha256": training.manifest["input_sha256"],
                "training_content_sha256": training.manifest.get("content_sha256"),
                "training_data": training_data_id(training.manifest),
                "deployed.rows": deployed.n_train_,
                "deployed.best_iteration": getattr(deployed, "best_iteration_", None),
                "deployed.calibration_method": deployed.calibration_method_,
                "negative_rate": model.negative_rate,
                "evaluated.rows": model.n_train_,
                "evaluated.calibration_rows": model.n_calibration_,
                "deployed.calibration_rows": deployed.n_calibration_,
            }
        )
        for scorer, row in result.metrics.iterrows():
            mlflow.log_metrics({f"{scorer}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.loc["lightgbm_calibrated"].items() if pd.notna(v)})
        coverage = training.manifest.get("coverage") or {}
        mlflow.log_metrics(
            {
                f"coverage.{c}.scored_outside_share": v["scored_outside_share"]
                for c, v in coverage.items()
                if isinstance(v, dict)
            }
        )
        tracking.log_frame(result.metrics, "evaluation/metrics.csv")
        _log_choice(result.extra["choice"])
        tracking.log_frame(result.calibration, "evaluation/calibration_by_decile.csv")
        tracking.log_frame(feature_table(training.feature_names), "features/features.csv")
        mlflow.log_text(
            json.dumps(training.manifest, indent=2, sort_keys=True, default=str), "training_set/manifest.json"
        )
        importance = shap_importance(model, holdout[training.feature_names])
        tracking.log_frame(importance, "explanations/shap_importance.csv")
        tracking.log_frame(
            importance.groupby("group")["mean_abs_shap"].sum().sort_values(ascending=False).to_frame(),
            "explanations/shap_importance_by_group.csv",
        )
        if graded is not None:
            _log_grade_analysis(settings, data, model, training, graded)
        feature_set = str(training.manifest.get("feature_set"))
        example = holdout[training.feature_names].head(5)
        # the evaluated fit (development rows only) is kept beside the deployed one: its holdout figures are these
        tracking.log_conversion_model(
            model, example, training.categorical, reference_profile={}, feature_set=feature_set, name="evaluated_model"
        )
        mlflow.log_metric("base_rate", deployed.base_rate_)
        base_rate = base_rate_of(training)
        if base_rate["rate"] is not None:
            mlflow.log_metric("new_lead_base_rate", base_rate["rate"])
        result.extra["base_rate"] = base_rate
        info = tracking.log_conversion_model(
            deployed,
            example,
            training.categorical,
            reference_profile=drift_profile(
                deployed,
                population,
                categorical=training.categorical,
                trained_on=training.frame[training.feature_names],
            ),
            feature_set=feature_set,
            reason_reference=reasons_reference(training, specs=feature_specs(settings.feature_params())),
            base_rate=base_rate,
        )
        mlflow.log_text("\n".join(result.leaks.lines()) + "\n", "evaluation/leak_guard.txt")
        version, decision = register_and_gate(
            settings,
            result,
            info.model_uri,
            run_id=run.info.run_id,
            data=data,
            promote_anyway=promote_anyway,
            refusals=result.leaks.refusals(),
        )
        result.run_id, result.version, result.decision = run.info.run_id, version, decision
    return result


def _log_choice(choice: Choice) -> None:
    """Every candidate's rolling-origin figures, the choice and its reason."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    slug = {name: name.replace(", ", "_") for name in choice.weighted}
    mlflow.log_metrics({f"choice.{slug[n]}.{choice.metric}": v for n, v in choice.weighted.items()})
    mlflow.log_text(json.dumps(choice.as_dict(), indent=2), "evaluation/choice.json")


def _log_grade_analysis(
    settings: Settings, data: CrmData, model: MarginModel, training: TrainingSet, graded: pd.DataFrame
) -> None:
    """The grade-matrix conversion table on closed deals (the training rows, `graded` by the rules in their order),
    with the model's mean probability per cell."""
    from leadscore.pipelines.grading import analyze_closed_deals
    from leadscore.pipelines.outputs import tracking

    probability = model.predict_proba(training.frame[training.feature_names])[:, 1]
    analysis, _ = analyze_closed_deals(settings, data, graded=graded.assign(probability=probability))
    tracking.log_frame(analysis.by_cell, "grades/conversion_by_cell.csv")
    tracking.log_frame(analysis.by_stage, "grades/conversion_by_stage.csv")
    tracking.mlflow_module().log_text("\n".join(analysis.lines()) + "\n", "grades/analysis.txt")


def run_train(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    promote: bool = False,
    training_set: Path | None = None,
    echo: Callable[..., None],
) -> dict:
    """The whole `leadscore train` (lead level) as the command line runs it: the data (validated CRM tables, a
    flat export or a prebuilt training set), then `train`, then its figures and the gate's decision."""
    from leadscore.pipelines.intake.files import check_parquet_input
    from leadscore.pipelines.training_set import coverage_lines, filled_late_lines, flat_rows_lines, read_training_set

    if training_set is None and settings.mode == "crm":
        check_outputs(settings)  # train writes the validation rejects
    data, prebuilt = None, None
    if training_set is not None:
        check_parquet_input(training_set, name="training set")
        try:
            prebuilt = read_training_set(training_set)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        echo("training on a prebuilt training set: the rules-only baseline is left out")
    elif settings.mode == "crm":
        data = load_valid_crm(settings, as_of=as_of)
    try:
        result = train(settings, promote_anyway=promote, data=data, training=prebuilt)
    except TooLittleDataError as exc:
        raise DataError(f"too little data to train: {exc}") from None
    model, split, deployed = result.model, result.split, result.deployed
    for line in flat_rows_lines(result.training.manifest):
        echo(line)
    echo(result.extra["choice"].reason)
    sampled = sampling_line(settings, model, len(result.training.frame))
    if sampled:
        echo(sampled)
    echo(
        f"recipe evaluated: fit on {len(split.dev):,} rows, scored on the latest {len(split.holdout):,} (fully "
        f"observed) rows ({model.describe()})"
    )
    echo("holdout metrics (model and baselines):")
    echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    echo(calibration_line(result))
    echo(
        f"deployed: the same recipe refit on all {deployed.n_train_:,} rows ({deployed.describe()}); it carries the "
        "figures above"
    )
    for line in outside_range_lines(result.extra["outside_range"], "the holdout"):
        echo(line)
    for line in coverage_lines(result.training.manifest.get("coverage")):
        echo(line)
    for line in filled_late_lines(result.training.manifest):
        echo(line, err=True)
    for line in result.leaks.lines():
        echo(line)
    echo(band_line(settings, result.extra.get("base_rate")))
    echo(f"registered {settings.mlflow.registered_model} version {result.version} (alias challenger)")
    echo(result.decision)
    echo(f"MLflow run {result.run_id} in {settings.tracking_uri}")
    return {
        "verb": "train",
        "registered_model": settings.mlflow.registered_model,
        "version": result.version,
        "decision": result.decision,
        "run_id": result.run_id,
        "tracking_uri": settings.tracking_uri,
        "dev_rows": len(split.dev),
        "holdout_rows": len(split.holdout),
        "holdout": holdout_figures(result.metrics),
        "family": model.family,
        "choice": result.extra["choice"].as_dict(),
        "outside_training_range": {k: round(float(v), 4) for k, v in result.extra["outside_range"].items()},
        "suspect_features": result.leaks.as_dict(),
    }


def outside_range_lines(shares: pd.Series, where: str) -> list[str]:
    """The features whose values on `where` fall outside the range they had in training (trees stay flat there)."""
    if not len(shares):
        return []
    named = ", ".join(f"{name} ({share:.1%} of rows)" for name, share in shares.head(8).items())
    return [f"outside the training range on {where}: {named}"]


def band_line(settings: Settings, base_rate: dict | None) -> str:
    """The base rate of new leads stored with the model, and the priority bands it sets."""
    if not base_rate or base_rate.get("rate") is None:
        return "base rate of new leads: unknown (no labelled lead on arrival): predict routes without bands"
    cut = settings.grades.routing.bands.cutoffs(base_rate["rate"])
    return (
        f"base rate of new leads: {base_rate['rate']:.1%} ({base_rate['conversions']:,} of {base_rate['leads']:,} "
        f"{base_rate['definition'].split(':')[0]}); priority bands: hot p >= {cut.hot:.1%}, cold p < {cut.cold:.2%}"
    )


def calibration_line(result: TrainResult) -> str:
    """Mean predicted probability against the observed rate on the holdout, in words."""
    y = result.training.frame["converted"].iloc[result.split.holdout].to_numpy()
    p = result.holdout_probability
    return (
        f"calibration on the holdout: mean predicted {p.mean():.4f} vs observed {y.mean():.4f} "
        f"({p.mean() / y.mean():.2f}x; ECE {result.metrics.loc['lightgbm_calibrated', 'ece']:.4f})"
    )


def holdout_figures(metrics: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The holdout metrics table as plain numbers per scorer, for a JSON summary."""
    return {scorer: {k: float(v) for k, v in row.dropna().items()} for scorer, row in metrics.iterrows()}
