"""One factory builds the conversion model from the [model] section of the config."""

from __future__ import annotations

import inspect
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.features.registry import declared_directions
from leadscore.models.conversion import ConversionModel
from leadscore.models.evaluation import METRICS


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


def build_model(
    settings: ModelSettings,
    *,
    categorical_features: list[str],
    gap_days: float,
    directions: dict[str, int] | None = None,
) -> ConversionModel:
    """The conversion model for these settings; `gap_days` (one label horizon) separates train from validation.

    With `settings.monotone`, every feature with a declared direction (`directions`, default: the feature
    registry's) is constrained so that the probability only moves that way as the feature grows.
    """
    constraints = None
    if settings.monotone:
        constraints = dict(declared_directions() if directions is None else directions) or None
    return ConversionModel(
        categorical_features=tuple(categorical_features),
        n_estimators=settings.n_estimators,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        max_depth=settings.max_depth,
        min_child_samples=settings.min_child_samples,
        reg_lambda=settings.reg_lambda,
        colsample_bytree=settings.colsample_bytree,
        early_stopping_rounds=settings.early_stopping_rounds,
        validation_fraction=settings.validation_fraction,
        validation_gap_days=gap_days,
        calibration=settings.calibration,
        refit=settings.refit,
        min_positives=settings.min_positives,
        min_negatives=settings.min_negatives,
        random_state=settings.random_state,
        n_jobs=settings.n_jobs,
        monotone_constraints=constraints,
    )
