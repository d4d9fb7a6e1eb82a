"""The Spark engine (local[2]) gives the same rows, features, scores, grades and reasons as the local engine."""

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[dev]')")
if shutil.which("java") is None:
    pytest.skip(
        "Java is not installed: Spark needs a JVM (e.g. apt-get install openjdk-17-jre-headless)",
        allow_module_level=True,
    )

runner = CliRunner()


@pytest.fixture(scope="module")
def project(trained_project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark")
    config = folder / "leadscore.toml"
    text = trained_project.read_text()
    config.write_text(
        text + f'\n[mlflow]\ntracking_uri = "sqlite:///{trained_project.parent}/mlflow.db"\n[engine]\npartitions = 3\n'
    )
    return config


def run(*args) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def sort(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, kind="stable").reset_index(drop=True)


def same_frames(local: pd.DataFrame, spark: pd.DataFrame, by: list[str]) -> None:
    local, spark = sort(local, by), sort(spark[list(local.columns)], by)
    assert len(local) == len(spark) > 0
    for column in local.columns:
        a, b = local[column], spark[column]
        if pd.api.types.is_numeric_dtype(a.dtype) and not pd.api.types.is_bool_dtype(a.dtype):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-9, err_msg=column)
        elif pd.api.types.is_datetime64_any_dtype(a.dtype):
            assert (
                pd.to_datetime(a, utc=True).fillna(pd.Timestamp(0, tz="UTC"))
                == pd.to_datetime(b, utc=True).fillna(pd.Timestamp(0, tz="UTC"))
            ).all(), column
        else:
            assert a.astype("string").fillna("<NA>").tolist() == b.astype("string").fillna("<NA>").tolist(), column


def test_predict_on_spark_matches_the_local_engine(project, tmp_path):
    run("predict", "--config", str(project), "--out", str(tmp_path / "local.parquet"))
    output = run("predict", "--config", str(project), "--engine", "spark", "--out", str(tmp_path / "spark"))
    assert "on Spark (local[2])" in output
    # score movement (score_change, change_reasons) is the local engine's: Spark writes the scores without it
    local = pd.read_parquet(tmp_path / "local.parquet").drop(columns=["score_change", "change_reasons"])
    same_frames(local, pd.read_parquet(tmp_path / "spark"), ["lead_id"])


def test_grade_on_spark_matches_the_local_engine(project, tmp_path):
    run("grade", "--config", str(project), "--out", str(tmp_path / "local.parquet"))
    run("grade", "--config", str(project), "--engine", "spark", "--out", str(tmp_path / "spark"))
    same_frames(pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark"), ["lead_id"])


def test_training_set_on_spark_matches_the_local_engine(project, tmp_path):
    import json

    run("build-training-set", "--config", str(project), "--out", str(tmp_path / "local.parquet"))
    run("build-training-set", "--config", str(project), "--engine", "spark", "--out", str(tmp_path / "spark"))
    # the local file's order column counts rows over all leads; the Spark folder is ordered by cutoff and lead id
    local = pd.read_parquet(tmp_path / "local.parquet").drop(columns="row_order")
    same_frames(local, pd.read_parquet(tmp_path / "spark"), ["lead_id", "cutoff_time"])
    local_manifest = json.loads((tmp_path / "local.manifest.json").read_text())
    spark_manifest = json.loads((tmp_path / "spark.manifest.json").read_text())
    assert spark_manifest["censored"] == local_manifest["spine"]["censored"]
    assert spark_manifest["rows"] == local_manifest["rows"]


def test_train_reads_the_training_set_the_spark_build_wrote(project, tmp_path):
    run("build-training-set", "--config", str(project), "--engine", "spark", "--out", str(tmp_path / "ts"))
    config = tmp_path / "leadscore.toml"
    config.write_text(
        project.read_text().replace(
            "[mlflow]\n", '[mlflow]\nexperiment = "from-spark"\nregistered_model = "from-spark"\n#', 1
        )
    )
    output = run("train", "--config", str(config), "--training-set", str(tmp_path / "ts"))
    assert "rules-only baseline is left out" in output and "lightgbm_calibrated" in output


@pytest.mark.parametrize("preset", ["salesforce", "hubspot"])
def test_a_vendor_export_scores_the_same_on_spark(preset, tmp_path):
    """UI labels as headers, local dates, a report footer, won / closed flags, deals from contacts, a missing
    activity file: the Spark engine reads the export as the local engine does and gives the same scores."""
    from tests.test_pipelines.test_real_exports import _project, hubspot_ui_export, salesforce_report_export

    build = salesforce_report_export if preset == "salesforce" else hubspot_ui_export
    config, expected, _ = _project(tmp_path, preset, build)
    config.write_text(config.read_text() + "\n[engine]\npartitions = 3\n")
    run("train", "--config", str(config))
    run("predict", "--config", str(config), "--out", str(tmp_path / "local.parquet"))
    run("predict", "--config", str(config), "--engine", "spark", "--out", str(tmp_path / "spark"))
    local = pd.read_parquet(tmp_path / "local.parquet").drop(columns=["score_change", "change_reasons"])
    spark = pd.read_parquet(tmp_path / "spark")
    assert len(local) == expected["open"]
    same_frames(local, spark, ["lead_id"])
