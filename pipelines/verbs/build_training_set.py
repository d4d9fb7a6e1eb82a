"""`leadscore build-training-set`: the point-in-time training set and its manifest, written beside each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.outputs.files import write_json
from leadscore.pipelines.outputs.publish import project_publication
from leadscore.pipelines.outputs.targets import Target, check_outputs
from leadscore.pipelines.training_set import (
    build_training_set,
    coverage_lines,
    filled_late_lines,
    manifest_file,
    write_training_set,
)


def run_build_training_set(
    settings: Settings, *, out: Path | None = None, as_of: pd.Timestamp | None = None, echo: Callable[..., None]
) -> dict:
    """The whole `leadscore build-training-set`: the training set (CRM or flat, locally or on Spark) and its
    manifest, written beside it; returns the manifest."""
    spark_folder = settings.engine.name == "spark" and settings.mode == "crm"
    default = "training_set_parquet" if spark_folder else "training_set.parquet"
    target = Path(out or settings.output_dir / default)
    manifest_path = manifest_file(target, folder=spark_folder)
    check_outputs(
        settings,
        Target(target, "--out", (".parquet",), folder=spark_folder),
        Target(manifest_path, "--out (its manifest)", (".json",)),
    )
    if spark_folder:
        from leadscore.pipelines.spark_engine import training_set_spark

        manifest = training_set_spark(settings, as_of=as_of, out=target)
        write_json(manifest, manifest_path, None)
        echo(
            f"training set on Spark: {manifest['rows']:,} rows, {manifest['positives']:,} positives, "
            f"{manifest['censored']:,} censored -> {target}"
        )
        return manifest
    with project_publication(settings) as publication:  # the set, its manifest and the validation rejects
        data = load_valid_crm(settings, as_of=as_of, publication=publication) if settings.mode == "crm" else None
        training = build_training_set(settings, data=data)
        path, manifest_path = write_training_set(training, target, publication)
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
