"""End to end: train on small sample data, then score every open lead with reasons, grades and actions."""

import pandas as pd
import pytest
from typer.testing import CliRunner

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


def test_score_is_the_rank_within_the_reference_stored_with_the_model(scored, project):
    from leadscore.models.scores import score_1_99
    from leadscore.pipelines.outputs import tracking

    out, _ = scored
    scores = pd.read_csv(out).set_index("lead_id")
    contributions = pd.read_parquet(out.with_name("contrib.parquet")).set_index("lead_id")
    raw = contributions.sum(axis=1).reindex(scores.index).to_numpy()  # features + base value: the margin
    tracking.use_store(load_settings(project))
    _, wrapper = tracking.load_conversion_model("models:/leadscore-conversion@champion")
    reference = wrapper.score_reference
    assert reference["population"].endswith(f"leads open at {scores['as_of'].iloc[0].replace(' ', 'T')}")
    assert (scores["score"].to_numpy() == score_1_99(raw, reference)).all()
    # the reference is the population scored here (same as-of): the score spreads over 1-99
    assert scores["score"].value_counts(normalize=True).max() < 0.05
    assert scores["score"].min() <= 3 and scores["score"].max() >= 97


def reason_values(text) -> list[str]:
    """The cited values of a reasons cell ("description: value, typical converting lead: ...")."""
    if not isinstance(text, str):
        return []
    heads = [part.split(", typical converting lead")[0].split(", leads like this")[0] for part in text.split(" | ")]
    return [head.rsplit(": ", 1)[-1] for head in heads]


def test_positive_reasons_never_cite_an_absence(scored):
    scores = pd.read_csv(scored[0])
    cited = [v for text in scores["reasons_positive"] for v in reason_values(text)]
    assert len(cited) > len(scores)
    assert not {"0", "0 %", "no", "not known"} & set(cited)


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
