"""The promotion gate of `leadscore train`: gather the figures, let `models.gate.decide` judge, act in the registry.

The champion is judged as it is served: the fitted model `predict` uses scores the challenger's holdout rows it has
never seen (cutoffs after its training as-of), beside the challenger's evaluated fit on the same rows. When no such
rows exist (the champion is less than one horizon older), the champion's recipe (its parameters and features) is
refit on the challenger's development rows and both score the whole holdout, which neither fit has seen.

A refresh is the champion's own recipe on newer data: a strictly later as-of and different content (a key of the
validated tables, not of the file bytes: the same rows re-saved, compressed or re-ordered are the same data). It must
not be worse than the champion by more than `gate_refresh_tolerance` (its evaluated fit may have seen less recent
rows than the champion as served); a new recipe must be better by more than `gate_min_improvement`.
A challenger must not lose to logistic regression or the rules on its own holdout by more than `gate_baseline_margin`
(the first model is only warned), and one trained on older data than the champion's is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.features.build import features_of_tables
from leadscore.features.context import FeatureParams
from leadscore.models.conversion import ConversionModel
from leadscore.models.evaluation import evaluate
from leadscore.models.gate import BASELINES, Comparison, GateDecision, GateEvidence, GateRules, decide
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.training_set import TrainingSet, fit_recipe

log = logging.getLogger(__name__)
MODEL_ROW = "lightgbm_calibrated"  # the challenger's row in the metrics table
MIN_UNSEEN_PER_CLASS = 20  # fewer unseen conversions (or losses) than this: the figure is noise; refit instead


class Evaluated(Protocol):
    """What the gate reads of a training result (train's and the account level's TrainResult)."""

    model: ConversionModel
    training: TrainingSet
    split: object  # .dev and .holdout row positions
    metrics: pd.DataFrame
    holdout_probability: np.ndarray


def gate_rules(settings: Settings) -> GateRules:
    m = settings.model
    return GateRules(
        m.gate_metric,
        m.gate_min_improvement,
        m.gate_calibration_tolerance,
        m.gate_baseline_margin,
        m.gate_refresh_tolerance,
    )


def training_data_id(manifest: dict) -> str:
    """What a model was trained on: the content key of its tables and the as-of at which they were viewed."""
    key = manifest.get("content_sha256") or manifest.get("input_sha256")
    return f"{str(key)[:12]}@{manifest.get('as_of') or data_as_of(manifest) or 'row order'}"


def data_as_of(manifest: dict) -> pd.Timestamp | None:
    """Up to when the data of a training set reach: the as-of (CRM), the last row's time (timed flat data), or None
    (row-ordered flat data)."""
    value = manifest.get("as_of") or (manifest.get("cutoff_range") or [None, None])[1]
    return None if value is None else pd.Timestamp(value)


def same_recipe(result: Evaluated, champion_model: ConversionModel) -> bool:
    """The champion was built by the challenger's recipe: the same parameters and the same features in order. The
    calibration parameter is left out: a deployed model is refit with the method its evaluated fit chose."""

    def recipe(model: ConversionModel) -> tuple[dict, list[str]]:
        params = {k: v for k, v in model.get_params().items() if k != "calibration"}
        return params, [str(c) for c in model.feature_names_in_]

    return recipe(champion_model) == recipe(result.model)


def same_fit(result: Evaluated, champion_model: ConversionModel) -> bool:
    """The champion's recipe refit on the challenger's rows would be the challenger's evaluated fit (LightGBM is
    deterministic): the same recipe, calibrated by the same method."""
    method = getattr(champion_model, "calibration_method_", None)
    return same_recipe(result, champion_model) and method == result.model.calibration_method_


def data_relation(challenger: dict, champion: dict) -> tuple[bool, str]:
    """(newer and different data, why the challenger's data are older or ""), from the two training manifests.
    Row-ordered flat data have no as-of: more rows count as newer."""
    new, old = data_as_of(challenger), data_as_of(champion)
    key, old_key = challenger.get("content_sha256"), champion.get("content_sha256")
    different = key is None or old_key is None or key != old_key
    if new is not None and old is not None:
        older = "" if new >= old else f"older data than the champion's (as-of {new.isoformat()} vs {old.isoformat()})"
        return different and new > old, older
    if new is None and old is None:
        return different and challenger.get("rows", 0) > champion.get("rows", 0), ""
    return False, ""


def with_champion_features(
    result: Evaluated, champion_model: ConversionModel, *, data: CrmData | None, params: FeatureParams | None
) -> TrainingSet:
    """The challenger's training set with every feature the champion reads; those it lacks are built from the CRM
    tables (a KeyError naming them without the tables, e.g. from a prebuilt training set)."""
    training = result.training
    missing = [str(c) for c in champion_model.feature_names_in_ if str(c) not in training.frame]
    if not missing:
        return training
    if data is None:
        raise KeyError(
            f"the champion's feature(s) {missing} are not in this training set and the CRM tables are not loaded "
            "(a prebuilt training set)"
        )
    extra = features_of_tables(
        training.frame[["lead_id", "cutoff_time"]], data.tables, feature_names=missing, params=params
    )
    frame = training.frame.assign(**{c: extra[c].to_numpy() for c in missing})
    return TrainingSet(frame, training.feature_names, training.manifest, training.categorical)


def unseen_comparison(
    result: Evaluated, training: TrainingSet, champion_model: ConversionModel, champion_as_of: pd.Timestamp | None
) -> Comparison | None:
    """The served champion and the challenger on the holdout rows after the champion's as-of, or None when there are
    too few of them (MIN_UNSEEN_PER_CLASS of each class)."""
    holdout = training.frame.iloc[result.split.holdout]
    times = pd.to_datetime(holdout["cutoff_time"], utc=True)
    if champion_as_of is None or times.isna().all():
        return None
    unseen = (times > champion_as_of).to_numpy()
    y = holdout["converted"].to_numpy()[unseen]
    if min(int(y.sum()), int((1 - y).sum())) < MIN_UNSEEN_PER_CLASS:
        return None
    features = [str(c) for c in champion_model.feature_names_in_]
    champion = champion_model.predict_proba(holdout.loc[unseen, features])[:, 1]
    basis = (
        f"the champion as served, on the {int(unseen.sum()):,} holdout rows after its as-of {champion_as_of:%Y-%m-%d}"
    )
    return Comparison(evaluate(y, result.holdout_probability[unseen]), evaluate(y, champion), basis)


def recipe_comparison(result: Evaluated, training: TrainingSet, champion_model: ConversionModel) -> Comparison:
    """The champion's recipe refit on the challenger's development rows, both on the whole holdout."""
    features = [str(c) for c in champion_model.feature_names_in_]
    holdout = training.frame.iloc[result.split.holdout]
    rows = f"refit on the same {len(result.split.dev):,} rows; {len(holdout):,} holdout rows"
    if same_fit(result, champion_model):
        champion, basis = result.holdout_probability, f"its recipe, the challenger's own, {rows}: one fit"
    else:
        model = fit_recipe(clone(champion_model), training, result.split.dev, features)
        champion, basis = model.predict_proba(holdout[features])[:, 1], f"its recipe {rows}"
    y = holdout["converted"]
    return Comparison(evaluate(y, result.holdout_probability), evaluate(y, champion), basis)


def baseline_figures(metrics: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {name: metrics.loc[name].to_dict() for name in BASELINES if name in metrics.index}


def gate(
    settings: Settings,
    result: Evaluated,
    champion_model: ConversionModel | None,
    *,
    data: CrmData | None = None,
    versions: tuple[str, str | None] = ("new", "current"),
    champion_manifest: dict | None = None,
    override: bool = False,
    refusals: Sequence[str] = (),
) -> GateDecision:
    """The gate's decision for a challenger against the champion (None: there is none yet); `refusals` are other
    checks' reasons not to promote (e.g. the leak guards' suspect features)."""
    evidence = GateEvidence(
        versions if champion_model is not None else (versions[0], None),
        holdout=result.metrics.loc[MODEL_ROW].to_dict(),
        baselines=baseline_figures(result.metrics),
    )
    if champion_model is not None:
        evidence = champion_evidence(settings, result, champion_model, evidence, data, champion_manifest or {})
    return decide(evidence, gate_rules(settings), extra_refusals=refusals, override=override)


def champion_evidence(
    settings: Settings,
    result: Evaluated,
    champion_model: ConversionModel,
    evidence: GateEvidence,
    data: CrmData | None,
    champion_manifest: dict,
) -> GateEvidence:
    """The evidence with the champion's side: the comparison on shared rows, refresh and older data."""
    manifest = result.training.manifest
    newer, older = data_relation(manifest, champion_manifest)
    refresh = ""
    if newer and same_recipe(result, champion_model):
        refresh = f"the champion's recipe on newer data, {training_data_id(manifest)} vs "
        refresh += training_data_id(champion_manifest)
    try:
        params = settings.feature_params() if data is not None else None
        training = with_champion_features(result, champion_model, data=data, params=params)
        comparison = unseen_comparison(result, training, champion_model, data_as_of(champion_manifest))
        comparison = comparison or recipe_comparison(result, training, champion_model)
    except (KeyError, ValueError) as exc:
        unscored = f"its recipe cannot be refit here ({exc}); use --promote"
        return replace(evidence, unscored=unscored, refresh=refresh, older_data=older)
    return replace(evidence, comparison=comparison, refresh=refresh, older_data=older)


def register_and_gate(
    settings: Settings,
    result: Evaluated,
    model_uri: str,
    *,
    run_id: str,
    data: CrmData | None = None,
    promote_anyway: bool = False,
    refusals: Sequence[str] = (),
) -> tuple[str, str]:
    """Register the deployed model under `settings.mlflow.registered_model`, gate it against the champion (or, with
    none yet, against the baselines alone), promote it when the gate passes and no other check refuses it
    (`refusals`, e.g. suspect features) or `promote_anyway` overrides them, and record the decision on both versions
    and the active run. Returns the new version and the decision line."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    version = tracking.register(settings, model_uri, run_id=run_id)
    champion = tracking.champion_version(settings)
    champion_model, manifest = None, None
    if champion is not None:
        champion_model, _wrapper = tracking.load_conversion_model(tracking.champion_uri(settings))
        manifest = tracking.version_manifest(settings, champion)
    verdict = gate(
        settings,
        result,
        champion_model,
        data=data,
        versions=(version, champion),
        champion_manifest=manifest,
        override=promote_anyway,
        refusals=refusals,
    )
    mlflow.log_metrics({f"gate.{k}": v for k, v in verdict.figures.items()})
    if champion is not None:
        tracking.tag_version(settings, champion, {"gate.last_challenge": verdict.text})
    if verdict.promoted:
        tracking.promote(settings, version)
    tags = {"gate.decision": verdict.text, "gate.promoted": str(verdict.promoted)}
    tags["gate.refusals"] = "; ".join(verdict.refusals)
    tracking.tag_version(settings, version, tags)
    mlflow.set_tags({**tags, "registered_version": version})
    tracking.describe_version(settings, version, result.metrics, decision=verdict.text)
    if verdict.refusals and verdict.promoted:
        log.warning("promoted by --promote although the gate refused: %s", "; ".join(verdict.refusals))
    return version, verdict.text
