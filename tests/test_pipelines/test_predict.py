"""End to end: train on small sample data, then score every open lead with reasons, grades and actions."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.spine import scoring_spine
from pipelines.cli import app
from pipelines.config import load_settings
from pipelines.validation import load_crm

runner = CliRunner()


@pytest.fixture(scope="module")
def project(trained_project):
    return trained_project


@pytest.fixture(scope="module")
def scored(project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scores")
    out = folder / "scores.csv"
    result = runner.invoke(
        app,
        ["predict", "--config", str(project), "--out", str(out), "--contributions", str(folder / "contrib.parquet")],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_every_open_lead_appears_exactly_once(scored, project):
    out, _ = scored
    scores = pd.read_csv(out)
    data = load_crm(load_settings(project))
    open_leads = scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
    rejects = pd.read_csv(out.with_name("scores.rejects.csv"))
    assert scores["lead_id"].is_unique
    assert set(scores["lead_id"]) | set(rejects["lead_id"]) == set(open_leads["lead_id"])


def test_output_columns_and_values(scored):
    out, output = scored
    scores = pd.read_csv(out)
    assert list(scores.columns) == [
        "lead_id",
        "account_id",
        "as_of",
        "probability",
        "score",
        "percentile",
        "fit_grade",
        "engagement_grade",
        "cell",
        "stage",
        "stage_rule",
        "action",
        "due_by",
        "reasons_positive",
        "reasons_negative",
        "model_name",
        "model_version",
        "feature_set",
    ]
    assert scores["probability"].between(0, 1).all()
    assert (scores["score"] == (scores["probability"] * 100).round()).all()
    assert scores["probability"].is_monotonic_decreasing
    assert scores["percentile"].max() == 100
    assert scores["reasons_positive"].notna().mean() > 0.95
    assert scores["cell"].str.fullmatch(r"[ABCD][1234]").all()
    assert (scores["model_version"] == 1).all() and (scores["model_name"] == "leadscore-conversion").all()
    assert "top 10 leads" in output
    assert "drift (PSI per feature and score) and the summary logged to MLflow run" in output


def test_contribution_matrix_sums_to_the_raw_score(scored, project):
    out, _ = scored
    contributions = pd.read_parquet(out.with_name("contrib.parquet"))
    assert set(pd.read_csv(out)["lead_id"]) == set(contributions["lead_id"])
    assert "base_value" in contributions


def test_rerun_is_byte_identical(scored, project, tmp_path):
    out, _ = scored
    again = tmp_path / "again.csv"
    result = runner.invoke(app, ["predict", "--config", str(project), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == out.read_bytes()


def test_scores_to_a_sql_table(project, tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'scores.db'}"
    result = runner.invoke(app, ["predict", "--config", str(project), "--to-sql", "lead_scores", "--sql-url", url])
    assert result.exit_code == 0, result.output
    engine = sqlalchemy.create_engine(url)
    frame = pd.read_sql_table("lead_scores", engine)
    assert len(frame) > 100 and frame["lead_id"].is_unique
    assert "lead_scores__leadscore_tmp" not in sqlalchemy.inspect(engine).get_table_names()
    engine.dispose()


def test_predict_without_a_model_says_what_to_do(sample_project, tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    result = runner.invoke(app, ["predict", "--config", str(config)])
    assert result.exit_code == 1 and "Run `leadscore train` first" in result.output
