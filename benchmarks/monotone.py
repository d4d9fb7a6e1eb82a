"""Holdout ROC AUC of the conversion model with and without the declared monotone constraints.

The same time-ordered holdout as `leadscore train` (no MLflow): sample data (CRM mode, every declared direction of
the feature registry) and the real datasets under ../shared/datasets (flat mode, `[flat] directions`).
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import REPO, print_table, sample_data

COLUMNS = ["dataset", "constrained_features", "auc_constrained", "auc_unconstrained", "difference", "seconds"]


def _auc(settings, *, monotone: bool, data=None, training=None) -> float:
    from leadscore.pipelines.verbs.train import train_and_evaluate

    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"monotone": monotone})})
    result, _ = train_and_evaluate(settings, data=data, training=training)
    return float(result.metrics.loc["lightgbm_calibrated", "roc_auc"])


def compare(name: str, settings, *, data=None) -> dict:
    from leadscore.features.registry import declared_directions
    from leadscore.pipelines.training_set import build_training_set

    start = time.perf_counter()
    training = build_training_set(settings, data=data)
    directions = settings.flat.directions if settings.mode == "flat" else declared_directions()
    constrained = [f for f in training.feature_names if f in directions]
    on = _auc(settings, monotone=True, data=data, training=training)
    off = _auc(settings, monotone=False, data=data, training=training)
    return {
        "dataset": name,
        "constrained_features": len(constrained),
        "auc_constrained": on,
        "auc_unconstrained": off,
        "difference": on - off,
        "seconds": time.perf_counter() - start,
    }


def sample_settings(leads: int):
    from leadscore.pipelines.config import Settings

    folder = sample_data(leads)
    tables = {n: {"path": str(folder / f"{n}.parquet")} for n in ("leads", "accounts", "events", "opportunities")}
    spine = {"policy": "snapshots", "delay_days": 7, "every_days": 30, "max_snapshots": 6, "horizon_days": 90}
    return Settings.model_validate({"tables": tables, "spine": spine})  # the template's spine policy


def main(leads: int) -> None:
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.intake.validation import load_crm

    settings = sample_settings(leads)
    rows = [compare(f"sample data, {leads:,} leads", settings, data=load_crm(settings))]
    for config, name in (("bank_marketing.toml", "bank-additional-full"), ("x_education.toml", "x_education")):
        flat = load_settings(REPO / "configs" / config)
        if not flat.resolve(flat.flat.path).exists():
            print(f"skipped {name}: {flat.resolve(flat.flat.path)} not found", file=sys.stderr)
            continue
        rows.append(compare(name, flat))
    print("\nholdout ROC AUC with and without monotone constraints (model.monotone), time-ordered holdout")
    print_table(rows, COLUMNS)
