"""One factory builds the conversion model from the [model] section of the config: the candidate recipes (LightGBM,
regularised logistic regression, each with a recency weighting) among which models.choice picks on the latest folds."""

from __future__ import annotations

import inspect
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.features.registry import declared_directions
from leadscore.models.conversion import ConversionModel
from leadscore.models.evaluation import METRICS
from leadscore.models.linear import LinearConversionModel
from leadscore.models.margin_model import MarginModel

FAMILIES = ("lightgbm", "logistic")
RECENCIES = ("none", "half_life", "window")
# beyond 2M rows the trees gain nothing measurable and cost time: at 1M sample leads (3.16M rows) sampling to 2M kept
# the holdout ROC AUC (0.9463 vs 0.9464) and took 23 % off train's CPU time (docs/benchmarks.md)
MAX_TRAINING_ROWS = 2_000_000


def _estimator_default(parameter: str):
    """The estimator's own default: the settings and `ConversionModel` never disagree on one."""
    return inspect.signature(ConversionModel).parameters[parameter].default


class ModelSettings(BaseModel):
    """LightGBM defaults that suit small, imbalanced CRM data; the training gate; the data minimums."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a value of the wrong type is an error, never coerced

    n_estimators: int = Field(
        _estimator_default("n_estimators"), ge=1, description="upper bound; early stopping picks the number"
    )
    learning_rate: float = Field(_estimator_default("learning_rate"), gt=0, le=1)
    num_leaves: int = Field(_estimator_default("num_leaves"), ge=2)
    max_depth: int = Field(
        _estimator_default("max_depth"), description="-1: no limit; deep trees make SHAP reasons slower"
    )
    min_child_samples: int = Field(_estimator_default("min_child_samples"), ge=1)
    reg_lambda: float = Field(_estimator_default("reg_lambda"), ge=0)
    colsample_bytree: float = Field(_estimator_default("colsample_bytree"), gt=0, le=1)
    early_stopping_rounds: int = Field(_estimator_default("early_stopping_rounds"), ge=1)
    calibration: Literal["auto", "sigmoid", "isotonic", "none"] = _estimator_default("calibration")
    refit: bool = Field(_estimator_default("refit"), description="after early stopping, refit on all rows")
    validation_fraction: float = Field(
        _estimator_default("validation_fraction"), gt=0, lt=1, description="latest share of training rows: validation"
    )
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="latest share of all rows: the test holdout")
    min_positives: int = Field(_estimator_default("min_positives"), ge=1)
    min_negatives: int = Field(_estimator_default("min_negatives"), ge=1)
    random_state: int = _estimator_default("random_state")
    n_jobs: int = Field(_estimator_default("n_jobs"), ge=1)
    monotone: bool = Field(True, description="declared feature directions become LightGBM monotone constraints")
    family: Literal["auto", "lightgbm", "logistic"] = Field(
        "auto", description="auto: LightGBM or logistic regression, whichever wins the rolling-origin folds"
    )
    recency: Literal["none", "half_life", "window", "auto"] = Field(
        "none", description="weigh training rows by recency; auto: chosen on the rolling-origin folds"
    )
    recency_half_life: float = Field(
        0.25, gt=0, description="half_life: a row's weight halves every this share of the training period"
    )
    recency_window: float = Field(0.5, gt=0, le=1, description="window: train on the latest share of the period")
    choice_folds: int = Field(3, ge=1, description="k: the latest time folds of the development rows the choice uses")
    choice_fold_fraction: float = Field(0.1, gt=0, lt=0.5, description="each choice fold's share of development rows")
    choice_max_rows: int = Field(
        300_000, ge=1000, description="the choice's fits sample not-converted rows (reweighted) beyond this many rows"
    )
    max_training_rows: int = Field(
        MAX_TRAINING_ROWS,
        ge=1000,
        description="beyond this many rows the margin sees every conversion and a reweighted sample of the rest",
    )
    linear_c: float = Field(0.5, gt=0, description="logistic regression: inverse L2 regularisation strength")
    linear_numeric: Literal["linear", "splines"] = Field(
        "linear", description="logistic regression: numbers standardised (with missing indicators) or as B-splines"
    )
    rare_min_frequency: int = Field(20, ge=1, description="logistic regression: rarer levels are grouped into one")
    gate_metric: str = Field("roc_auc", description=f"one of {list(METRICS)}")
    gate_min_improvement: float = Field(0.0, ge=0, description="a new recipe must beat the champion by more")
    gate_refresh_tolerance: float = Field(
        0.005, ge=0, description="the most a refresh (the champion's recipe on newer data) may lose to the champion"
    )
    gate_calibration_tolerance: float = Field(0.01, ge=0, description="max ECE increase over the champion")
    gate_baseline_margin: float = Field(
        0.02, ge=0, description="max loss to logistic regression or the rules on the challenger's own holdout"
    )

    def model_post_init(self, _context) -> None:
        if self.gate_metric not in METRICS:
            raise ValueError(f"gate_metric must be one of {list(METRICS)}, got {self.gate_metric!r}")


def negative_rate(converted: int, rows: int, max_rows: int) -> float:
    """The share of not-converted rows a fit keeps so that at most `max_rows` rows remain (every converted row is
    kept); 1 when all fit."""
    if rows <= max_rows or rows == converted:
        return 1.0
    return min(1.0, max(max_rows - converted, 1) / (rows - converted))


def candidate_recipes(
    settings: ModelSettings,
    *,
    categorical_features: list[str],
    gap_days: float,
    directions: dict[str, int] | None = None,
    negative_rate: float = 1.0,
) -> dict[str, MarginModel]:
    """Every recipe the settings allow, named "lightgbm", "logistic", "logistic, half_life", ...: each family of
    `family` (both for auto) with each recency of `recency` (all three for auto). The first is the default."""
    families = FAMILIES if settings.family == "auto" else (settings.family,)
    recencies = RECENCIES if settings.recency == "auto" else (settings.recency,)
    recipes = {}
    for family in families:
        for recency in recencies:
            name = family if recency == "none" else f"{family}, {recency}"
            recipes[name] = build_model(
                settings,
                categorical_features=categorical_features,
                gap_days=gap_days,
                directions=directions,
                family=family,
                recency=recency,
            ).set_params(negative_rate=negative_rate)
    return recipes


def build_model(
    settings: ModelSettings,
    *,
    categorical_features: list[str],
    gap_days: float,
    directions: dict[str, int] | None = None,
    family: str | None = None,
    recency: str | None = None,
) -> MarginModel:
    """The conversion model for these settings; `gap_days` (one label horizon) separates train from validation.
    `family` and `recency` default to the settings' (LightGBM and no recency weighting where those say auto).

    With `settings.monotone`, every feature with a declared direction (`directions`, default: the feature
    registry's) is constrained so that the probability only moves that way as the feature grows.
    """
    family = family or (settings.family if settings.family != "auto" else "lightgbm")
    recency = recency or (settings.recency if settings.recency != "auto" else "none")
    shared = {
        "categorical_features": tuple(categorical_features),
        "validation_fraction": settings.validation_fraction,
        "validation_gap_days": gap_days,
        "calibration": settings.calibration,
        "refit": settings.refit,
        "min_positives": settings.min_positives,
        "min_negatives": settings.min_negatives,
        "random_state": settings.random_state,
        "recency": recency,
        "recency_half_life": settings.recency_half_life,
        "recency_window": settings.recency_window,
    }
    if family == "logistic":
        return LinearConversionModel(
            C=settings.linear_c,
            numeric=settings.linear_numeric,
            rare_min_frequency=settings.rare_min_frequency,
            **shared,
        )
    constraints = None
    if settings.monotone:
        constraints = dict(declared_directions() if directions is None else directions) or None
    return ConversionModel(
        n_estimators=settings.n_estimators,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        max_depth=settings.max_depth,
        min_child_samples=settings.min_child_samples,
        reg_lambda=settings.reg_lambda,
        colsample_bytree=settings.colsample_bytree,
        early_stopping_rounds=settings.early_stopping_rounds,
        n_jobs=settings.n_jobs,
        monotone_constraints=constraints,
        **shared,
    )
