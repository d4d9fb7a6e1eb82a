"""What a second scoring level (`--level account`, `--level opportunity`) shares with the lead level and with the
other: its own registered model name, the MLflow run of its training (params, metrics, feature table, manifest, the
deployed model, the gate), and its scores (probability from exact contributions, 1-99 score, reasons in words).

Each level keeps its spine, its features and its baselines in its own module; the recipe (model factory, time-ordered
holdout with a one-horizon gap, refit on all rows), the gate and the reason writer are the lead level's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.spec import FeatureSpec
from leadscore.models.reasons import top_reasons
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.verbs.gate import register_and_gate, training_data_id
from leadscore.pipelines.verbs.scoring import _score
from leadscore.pipelines.verbs.train import (
    ReferencePopulation,
    TrainResult,
    drift_profile,
    feature_table,
    leak_report,
    reasons_reference,
)

MODEL_ROW = "lightgbm_calibrated"  # the level model's row in the metrics (the gate reads this name)


def level_settings(settings: Settings, level: str, *, spine: dict | None = None, model: dict | None = None) -> Settings:
    """The same settings with the level's registry name, `<mlflow.registered_model>-<level>`, its own score history
    (the folder `<history>/<level>`, or the table `<history.sql_table>_<level>`), and with `spine` / `model` the
    level's spine keys and data minimums in `spine.*` / `model.*`, so that the lead training helpers (holdout gap,
    model factory) and the history's readers and writers read the level's."""
    name = f"{settings.mlflow.registered_model}-{level}"
    history = {"path": str(settings.history_dir / level), "sql_table": f"{settings.history.sql_table}_{level}"}
    update: dict = {
        "mlflow": settings.mlflow.model_copy(update={"registered_model": name}),
        "history": settings.history.model_copy(update=history),
    }
    if spine:
        update["spine"] = settings.spine.model_copy(update=spine)
    if model:
        update["model"] = settings.model.model_copy(update=model)
    return settings.model_copy(update=update)


# what each level is made of, for the one check before any work (`check_level`)
LEVEL_SOURCES = {
    "account": "accounts come from leads.account_id",
    "opportunity": "deals come from the opportunities table",
}


def check_level(settings: Settings, level: str, **unsupported: object) -> None:
    """`--level account|opportunity` needs the CRM tables and this machine, and takes none of the options given in
    `unsupported` (name -> value; a value other than None was given)."""
    if settings.mode != "crm":
        raise UsageError(f"--level {level} needs the CRM tables (mode = 'crm'): {LEVEL_SOURCES[level]}")
    if settings.engine.name == "spark":
        raise UsageError(f"--level {level} runs on this machine: --engine local")
    given = [name.replace("_", "-") for name, value in unsupported.items() if value is not None]
    if given:
        raise UsageError(f"--level {level} does not take --{', --'.join(given)}")


SCORED = {"account": "accounts", "opportunity": "deals"}  # what a level's predict scores, in words


@dataclass
class LevelRun:
    """What a level's training run logs beside the shared figures: the level's name, its feature specs (the
    feature table and the reasons' units), its params, and the population its scores rank against."""

    level: str
    specs: dict[str, FeatureSpec]
    params: dict[str, object]
    population: ReferencePopulation


def log_level_model(
    settings: Settings, data: CrmData, result: TrainResult, run: LevelRun, *, promote_anyway: bool = False
) -> tuple[str, str, str]:
    """Log a level's evaluated and deployed model in one MLflow run, register it under the level's name (`settings`
    are the level's) and gate it. Returns (version, decision, run id)."""
    from leadscore.pipelines.outputs import tracking

    mlflow = tracking.mlflow_module()
    experiment = tracking.use_store(settings)
    training, deployed = result.training, result.deployed
    # the lead level's leak guards, against the rows the level's predict would score: a suspect blocks promotion
    scored = f"{SCORED[run.level]} predict would score"
    result.leaks = leak_report(settings, result, population=run.population, prebuilt=False, scored_name=scored)
    name = tracking.run_name("train", data.as_of, run.level)
    with mlflow.start_run(experiment_id=experiment, run_name=name) as active:
        mlflow.log_params({f"model.{k}": v for k, v in settings.model.model_dump().items()})
        mlflow.log_params(
            {
                "level": run.level,
                "rows": len(training.frame),
                "dev_rows": len(result.split.dev),
                "holdout_rows": len(result.split.holdout),
                "training_data": training_data_id(training.manifest),
                "family": result.model.family,
                "best_iteration": getattr(result.model, "best_iteration_", None),
                "deployed.rows": deployed.n_train_,
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in run.params.items()})
        for scorer, row in result.metrics.iterrows():
            mlflow.log_metrics({f"{scorer}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.loc[MODEL_ROW].items() if pd.notna(v)})
        tracking.log_frame(result.metrics, "evaluation/metrics.csv")
        tracking.log_frame(result.calibration, "evaluation/calibration_by_decile.csv")
        tracking.log_frame(feature_table(training.feature_names, specs=run.specs), "features/features.csv")
        manifest = json.dumps(training.manifest, indent=2, sort_keys=True, default=str)
        mlflow.log_text(manifest, "training_set/manifest.json")
        mlflow.log_metric("base_rate", deployed.base_rate_)
        example = training.frame.iloc[result.split.holdout][training.feature_names].head(5)
        # the evaluated fit (development rows only) beside the deployed one: `explain` reads its holdout figures
        tracking.log_conversion_model(
            result.model,
            example,
            training.categorical,
            reference_profile={},
            feature_set=run.level,
            name="evaluated_model",
        )
        info = tracking.log_conversion_model(
            deployed,
            example,
            training.categorical,
            reference_profile=drift_profile(deployed, run.population, categorical=training.categorical),
            feature_set=run.level,
            reason_reference=reasons_reference(training, specs=run.specs),
        )
        mlflow.log_text("\n".join(result.leaks.lines()) + "\n", "evaluation/leak_guard.txt")
        version, decision = register_and_gate(
            settings,
            result,
            info.model_uri,
            run_id=active.info.run_id,
            promote_anyway=promote_anyway,
            refusals=result.leaks.refusals(),
        )
        mlflow.set_tags({"level": run.level})
    return version, decision, active.info.run_id


def explained_scores(
    model, wrapper, X: pd.DataFrame, specs: dict[str, FeatureSpec], *, subject: str, kept_top: int = 0
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Probability (from the exact contributions: SHAP values add up to the raw score), the 1-99 score and the top
    reasons in words ("<subject>s like this ...") of each row of `X`; with `kept_top`, the reasons also hold each
    row's margin and its `kept_top` largest contributions (what the score history keeps to explain a move)."""
    from leadscore.models.movement import compact_contributions

    contributions = model.contributions(X)
    margin = contributions.sum(axis=1).to_numpy()
    probability = model.probability_of_margin(margin)
    reference = getattr(wrapper, "reason_reference", None)
    reasons = top_reasons(contributions, X, specs, reference=reference, subject=subject)
    if kept_top:
        reasons = reasons.assign(margin=margin, top_contributions=compact_contributions(contributions, X, top=kept_top))
    return probability, _score(model, wrapper, probability), reasons


def level_scoring(
    settings: Settings, named: Settings, out: Path | None, default_name: str, model_uri: str | None
) -> tuple[Path, tuple]:
    """What a level's predict starts from: its scores file (`out`, else `default_name` in the output folder), checked
    with its rejects file before any data is read, and (model, wrapper, name, version) of `model_uri`, default the
    champion of `named` (the level's settings)."""
    from leadscore.pipelines.outputs.targets import Target, check_outputs
    from leadscore.pipelines.outputs.tracking import load_model
    from leadscore.pipelines.verbs.scoring import rejects_path

    target = Path(out or settings.output_dir / default_name)
    check_outputs(
        settings,
        Target(target, "--out", (".csv", ".parquet")),
        Target(rejects_path(target), "--out (its rejects file)", (".csv",)),
    )
    return target, load_model(named, model_uri)


def publish_level_scores(publication, target: Path, scores: pd.DataFrame, rejects: pd.DataFrame) -> None:
    """A level's scores and their rejects beside them, staged in the run's publication."""
    from leadscore.pipelines.outputs.files import frame_writer
    from leadscore.pipelines.verbs.scoring import rejects_path

    publication.write(target, frame_writer(scores, target))
    publication.write(rejects_path(target), frame_writer(rejects, rejects_path(target)))


def leak_summary(result: TrainResult, echo: Callable[..., None]) -> list[dict]:
    """Print the leak guards' findings of a level's training, one line each; return them for the JSON summary."""
    for line in result.leaks.lines():
        echo(line)
    return result.leaks.as_dict()


__all__ = [
    "leak_summary",
    "level_scoring",
    "publish_level_scores",
    "LEVEL_SOURCES",
    "MODEL_ROW",
    "LevelRun",
    "check_level",
    "explained_scores",
    "level_settings",
    "log_level_model",
]
