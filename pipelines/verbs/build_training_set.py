"""`leadscore build-training-set`: the point-in-time training set and its manifest, written beside each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.outputs.files import write_json
from leadscore.pipelines.outputs.publish import check_target
from leadscore.pipelines.training_set import build_training_set, coverage_lines, filled_late_lines, write_training_set


def run_build_training_set(
    settings: Settings, *, out: Path | None = None, as_of: pd.Timestamp | None = None, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore build-training-set`: the training set (CRM or flat, locally or on Spark) and its
    manifest, written beside it; returns the manifest."""
    spark_folder = settings.engine.name == "spark" and settings.mode == "crm"
    check_target(out, "--out", (".parquet",), settings, folder=spark_folder)
    if spark_folder:
        from leadscore.pipelines.spark_engine import training_set_spark

        target = out or settings.output_dir / "training_set_parquet"
        manifest = training_set_spark(settings, as_of=as_of, out=target)
        write_json(manifest, target.with_name(target.name + ".manifest.json"))
        echo(
            f"training set on Spark: {manifest['rows']:,} rows, {manifest['positives']:,} positives, "
            f"{manifest['censored']:,} censored -> {target}"
        )
        return manifest
    data = load_valid_crm(settings, as_of=as_of) if settings.mode == "crm" else None
    training = build_training_set(settings, data=data)
    path, manifest_path = write_training_set(training, out or settings.output_dir / "training_set.parquet")
    m = training.manifest
    echo(
        f"training set: {m['rows']:,} rows, {m['positives']:,} positives "
        f"({'no rows' if m['positive_rate'] is None else format(m['positive_rate'], '.1%')}), "
        f"{len(m['features'])} features -> {path}"
    )
    if "spine" in m:
        sp = m["spine"]
        echo(
            f"censored (horizon not over by as_of, whatever happened in it; never labelled): {sp['censored']:,}; "
            f"snapshots over the cap per lead left out: {sp.get('thinned', 0):,}"
        )
        for line in coverage_lines(m.get("coverage")):
            echo(line)
        for line in filled_late_lines(m):
            echo(line, err=True)
    if m.get("excluded_leaking_columns"):
        echo(f"excluded as leaking: {', '.join(m['excluded_leaking_columns'])}")
    echo(f"manifest -> {manifest_path}")
    return m
