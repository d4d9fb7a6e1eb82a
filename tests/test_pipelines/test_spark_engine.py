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
    local, spark = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    assert list(spark.columns) == list(local.columns)  # score movement included
    same_frames(local, spark, ["lead_id"])


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
    local, spark = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    assert list(spark.columns) == list(local.columns)
    assert len(local) == expected["open"]
    same_frames(local, spark, ["lead_id"])


def _project_copy(project, folder):
    """The project's config in its own folder: its own output folder and score history, the same data and model."""
    folder.mkdir()
    config = folder / "leadscore.toml"
    config.write_text(project.read_text())
    return config


def _history_run(config, as_of: str) -> pd.DataFrame:
    (run_file,) = (config.parent / "output" / "history").glob(f"as_of_date={as_of}/*.parquet")
    return pd.read_parquet(run_file)


def test_local_and_spark_runs_follow_each_other_in_the_score_history(project, tmp_path):
    """A Spark predict reads the previous run a local one wrote (and the other way round): the same score movement,
    change reasons and history rows as two local runs in turn."""
    from leadscore.pipelines.config import load_settings

    settings = load_settings(project)
    latest = pd.read_parquet(settings.resolve(settings.tables.events.path), columns=["occurred_at"]).max().iloc[0]
    later = pd.Timestamp(latest).floor("D")
    first, later = f"{later - pd.Timedelta(days=21):%Y-%m-%d}", f"{later:%Y-%m-%d}"
    runs = {}
    for name, engines in {
        "local": ("local", "local"),
        "spark_then_local": ("spark", "local"),
        "local_then_spark": ("local", "spark"),
    }.items():
        config = _project_copy(project, tmp_path / name)
        for as_of, engine in zip((first, later), engines, strict=True):
            out = tmp_path / f"{name}_{as_of}" if engine == "spark" else tmp_path / f"{name}_{as_of}.parquet"
            output = run("predict", "--config", str(config), "--engine", engine, "--as-of", as_of, "--out", str(out))
        runs[name] = (config, pd.read_parquet(out), output)
    local_config, local, local_output = runs["local"]
    assert local["score_change"].notna().sum() > 0 and (local["change_reasons"].fillna("") != "").any()
    for name in ("spark_then_local", "local_then_spark"):
        config, scores, output = runs[name]
        assert list(scores.columns) == list(local.columns), name
        same_frames(local, scores, ["lead_id"])
        for as_of in (first, later):
            same_frames(_history_run(local_config, as_of), _history_run(config, as_of), ["lead_id"])
    movement = [line for line in local_output.splitlines() if line.startswith("score movement:")]
    assert movement and movement[0] in runs["local_then_spark"][2]


def test_custom_and_derived_fields_score_the_same_on_spark(sample_project, tmp_path):
    """A CRM's own lead and account columns (`tables.<name>.custom`) and the features derived from the lead's
    timestamps (`tables.leads.derived`) reach the model and its reasons on Spark as locally."""
    from tests.test_pipelines.test_custom_fields import write_custom_project

    (tmp_path / "project").mkdir()
    config = write_custom_project(sample_project, tmp_path / "project")
    config.write_text(config.read_text() + "\n[engine]\npartitions = 3\n")
    run("train", "--config", str(config))
    run("predict", "--config", str(config), "--out", str(tmp_path / "local.parquet"))
    run("predict", "--config", str(config), "--engine", "spark", "--out", str(tmp_path / "spark"))
    local, spark = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    assert local["reasons_positive"].fillna("").str.contains("How the lead first reached us").any()
    assert list(spark.columns) == list(local.columns)
    same_frames(local, spark, ["lead_id"])


@pytest.mark.parametrize("preset", ["salesforce", "hubspot"])
def test_an_api_export_scores_the_same_on_spark(preset, tmp_path):
    """The presets' exports under the vendors' API names (Data Loader, HubSpot's API) score alike on both engines."""
    from tests.test_pipelines.test_presets import SMALL_MODEL, hubspot_export, salesforce_export

    folder = tmp_path / preset
    run("init", str(folder), "--preset", preset)
    (folder / "data").mkdir()
    (salesforce_export if preset == "salesforce" else hubspot_export)(folder / "data")
    config = folder / "leadscore.toml"
    config.write_text(config.read_text() + SMALL_MODEL + "\n[engine]\npartitions = 3\n")
    run("train", "--config", str(config))
    run("predict", "--config", str(config), "--out", str(tmp_path / "local.parquet"))
    run("predict", "--config", str(config), "--engine", "spark", "--out", str(tmp_path / "spark"))
    local, spark = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    assert list(spark.columns) == list(local.columns)
    same_frames(local, spark, ["lead_id"])


FLAT_DERIVED = """
[flat.derived.created_weekday]
date_part = "weekday"
of = "Deal - Deal created"

[engine]
partitions = 3
"""


def test_flat_predict_on_spark_matches_the_local_engine(tmp_path):
    """A flat export without an id column (lead ids are row numbers in the file), open values, identifying columns
    and a derived column: Spark scores exactly the open rows, under the same ids, with the same values."""
    from tests.test_pipelines.test_flat_open_rows import PIPEDRIVE_CONFIG, pipedrive_deals, write_project

    settings = PIPEDRIVE_CONFIG.replace('categorical = ["', 'categorical = ["created_weekday", "') + FLAT_DERIVED
    config = write_project(tmp_path / "p", pipedrive_deals(), "deals.csv", settings)
    run("train", "--config", str(config))
    run("predict", "--config", str(config), "--out", str(tmp_path / "local.parquet"))
    output = run("predict", "--config", str(config), "--engine", "spark", "--out", str(tmp_path / "spark"))
    local, spark = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark")
    assert "on Spark" in output and list(spark.columns) == list(local.columns)
    assert list(local.columns[:3]) == ["lead_id", "Deal - Title", "Organization - Name"]
    same_frames(local, spark, ["lead_id"])
    assert pd.read_parquet(tmp_path / "spark_rejects").empty


@pytest.mark.parametrize("option", ["--contributions", "--to-sql"])
def test_outputs_spark_does_not_write_are_refused_before_any_work(project, tmp_path, option):
    result = runner.invoke(app, ["predict", "--config", str(project), "--engine", "spark", option, str(tmp_path / "x")])
    assert result.exit_code == 2 and "local engine only" in result.output
