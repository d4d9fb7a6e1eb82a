"""End to end: train on small sample data, then score every open lead with reasons, grades and actions."""

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.features.registry import all_features
from leadscore.features.spine import scoring_spine
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm

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
        "score_change",
        "percentile",
        "fit_grade",
        "engagement_grade",
        "cell",
        "stage",
        "stage_rule",
        "dormant",
        "band",
        "action",
        "sla_hours",
        "due_by",
        "route_note",
        "reasons_positive",
        "reasons_negative",
        "change_reasons",
        "model_name",
        "model_version",
        "feature_set",
    ]
    assert scores["probability"].between(0, 1).all()
    assert scores["score"].between(1, 99).all()
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


def test_the_score_reads_the_probability_against_the_models_base_rate(scored, project):
    from leadscore.models.scores import probability_at_score, score_1_99
    from leadscore.pipelines.outputs import tracking

    scores = pd.read_csv(scored[0])
    tracking.use_store(load_settings(project))
    model, _ = tracking.load_conversion_model("models:/leadscore-conversion@champion")
    base = model.base_rate_  # stored with the fitted model: the training rows' conversion rate, each lead once
    assert 0.01 < base < 0.5
    assert (scores["score"].to_numpy() == score_1_99(scores["probability"].to_numpy(), base)).all()
    # the bands mean likelihood on the sample data: 70 or more is never below the base rate (at least four times
    # its odds), 50 or more never below it, and the sample has leads on both sides
    assert (scores.loc[scores["score"] >= 70, "probability"] >= probability_at_score(70, base)).all()
    assert (scores.loc[scores["score"] >= 50, "probability"] >= base).all()
    assert (scores.loc[scores["score"] < 50, "probability"] < base).all()
    assert (scores["score"] >= 70).any() and (scores["score"] < 50).any()
    # score and percentile never disagree on order
    ordered = scores.sort_values("probability")
    assert ordered["score"].is_monotonic_increasing and ordered["percentile"].is_monotonic_increasing


def test_reasons_quote_similar_leads_and_read_the_right_way(scored):
    scores = pd.read_csv(scored[0])
    positive, negative = scores["reasons_positive"].fillna(""), scores["reasons_negative"].fillna("")
    assert not (positive + negative).str.contains("typical converting lead").any()
    assert (
        positive.str.contains(r" - leads (?:with .+|like this) convert at [\d.]+ % \(all leads", regex=True).mean()
        > 0.9
    )
    # every quoted rate of a positive reason is above the average, of a negative one below it
    for texts, above in ((positive, True), (negative, False)):
        quoted = (
            texts.str.split(" | ", regex=False).explode().str.extract(r"convert at ([\d.]+) % \(all leads ([\d.]+) %")
        )
        quoted = quoted.dropna().astype(float)
        assert len(quoted) and ((quoted[0] > quoted[1]) if above else (quoted[0] < quoted[1])).all()
    booleans = [re.escape(f"{spec.description}: no") for spec in all_features().values() if spec.kind == "boolean"]
    assert not (positive + negative).str.contains("|".join(booleans), regex=True).any()  # statements, not "...: no"
    first = positive[scores["action"].str.startswith("sales")].str.split(" | ", regex=False).str[0]
    assert first.value_counts(normalize=True).max() <= 0.35  # the first reason is not one text for every hot lead


def test_grade_and_predict_share_stage_dormancy_and_action(scored, project, tmp_path):
    result = runner.invoke(app, ["grade", "--config", str(project), "--out", str(tmp_path / "grades.csv")])
    assert result.exit_code == 0, result.output
    graded = pd.read_csv(tmp_path / "grades.csv").set_index("lead_id")
    scores = pd.read_csv(scored[0]).set_index("lead_id")
    assert set(graded.index) == set(scores.index)
    graded = graded.reindex(scores.index)
    for column in ("stage", "dormant"):
        assert graded[column].equals(scores[column]), column
    assert_same_route_unless_the_band_says_why(graded, scores)
    rejected = scores["route_note"].fillna("").str.startswith("rejected by sales")
    assert not ((scores["stage"] == "SQL") & scores["action"].isin(["nurture", "recycle"]) & ~rejected).any()
    assert set(scores.loc[scores["dormant"] & (scores["stage"] != "SQL"), "action"]) == {"recycle"}
    assert scores["dormant"].any() and (~scores["dormant"]).any()


def assert_same_route_unless_the_band_says_why(graded: pd.DataFrame, scores: pd.DataFrame) -> None:
    """`grade` (no model) and `predict` give one action per lead, except where predict's band changed it, and then
    predict's row says why."""
    same = graded["action"].eq(scores["action"]) & graded["sla_hours"].fillna(0).eq(scores["sla_hours"].fillna(0))
    assert same[scores["band"] == "warm"].all()
    assert (~same).any()  # the model changed some routes...
    why = scores.loc[~same, "route_note"]
    assert why.str.contains("model says hot|model says unlikely").all()  # ...and the rows say so
    assert set(scores.loc[~same, "band"]) <= {"hot", "cold"}


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
    assert result.exit_code == 1 and "no such registered model or version yet" in result.output
    assert "train one first: `leadscore train`" in result.output


def test_with_a_model_threshold_for_sql_grade_reads_the_champion_and_still_agrees(project, tmp_path):
    config = project.parent / "sql_by_model.toml"
    config.write_text(project.read_text() + "\n[grades.stages]\nsql_min_probability = 0.2\n")
    assert runner.invoke(app, ["predict", "--config", str(config), "--out", str(tmp_path / "s.csv")]).exit_code == 0
    assert runner.invoke(app, ["grade", "--config", str(config), "--out", str(tmp_path / "g.csv")]).exit_code == 0
    scores = pd.read_csv(tmp_path / "s.csv").set_index("lead_id")
    graded = pd.read_csv(tmp_path / "g.csv").set_index("lead_id").reindex(scores.index)
    by_model = scores["stage_rule"].str.contains("conversion probability")
    assert by_model.any()
    assert graded["stage"].equals(scores["stage"])
    assert_same_route_unless_the_band_says_why(graded, scores)


def test_no_drift_when_scoring_the_leads_the_model_was_deployed_on(project):
    """Drift is measured against the leads open at the training as-of, not the training rows (which weigh every lead
    equally over its whole life: against them, the old open leads looked like drift on every run)."""
    from leadscore.pipelines.outputs import tracking
    from leadscore.pipelines.verbs.scoring import score_open_leads

    settings = load_settings(project)
    data = load_crm(settings)
    tracking.use_store(settings)
    model, wrapper = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    result = score_open_leads(settings, data, model, wrapper, model_name="m", model_version="1")
    assert {"lead_age_days", "events_days_since_last", "probability"} <= set(result.drift.index)
    assert result.drift.max() < 0.01


def test_scores_do_not_depend_on_the_chunk_size(project):
    """Each chunk sees only its leads' accounts (their leads and deals): small chunks must give the same scores,
    reasons and grades as one chunk holding every lead (which sees the whole CRM)."""
    from leadscore.pipelines.outputs import tracking
    from leadscore.pipelines.verbs.scoring import score_open_leads

    settings = load_settings(project)
    data = load_crm(settings)
    tracking.use_store(settings)
    model, wrapper = tracking.load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    whole = score_open_leads(settings, data, model, wrapper, model_name="m", model_version="1", chunk_size=10**6)
    small = score_open_leads(settings, data, model, wrapper, model_name="m", model_version="1", chunk_size=97)
    pd.testing.assert_frame_equal(small.scores, whole.scores)
    # a batch run hands the events back once every chunk has its own: the same scores, and the table is gone
    dropped = score_open_leads(
        settings, data, model, wrapper, model_name="m", model_version="1", chunk_size=97, drop_events=True
    )
    pd.testing.assert_frame_equal(dropped.scores, whole.scores)
    assert "events" not in data.tables


def test_a_model_without_a_stored_base_rate_falls_back_and_says_so(caplog):
    import numpy as np

    from leadscore.pipelines.verbs.scoring import _score

    class OldModel:  # registered before base_rate_ was fitted
        pass

    class OldWrapper:  # its reasons reference still quotes the training rate
        reason_reference = {"lead_source": {"rates": {}, "overall_rate": 0.2}}

    with caplog.at_level("WARNING"):
        assert _score(OldModel(), OldWrapper(), np.array([0.2, 0.8])).tolist() == [50, 90]
    assert "stores no base rate" in caplog.text and "training conversion rate" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # nothing stored at all: this run's mean probability (0.2) is the middle
        assert _score(OldModel(), object(), np.array([0.1, 0.3])).tolist() == [38, 57]
    assert "this run's mean probability" in caplog.text
