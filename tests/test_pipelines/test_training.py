"""End to end: train on small sample data into a temporary MLflow store, gate, load the champion and score."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.verbs.gate import gate, training_data_id
from leadscore.pipelines.verbs.train import train_and_evaluate

runner = CliRunner()


@pytest.fixture(scope="module")
def project(sample_project, tmp_path_factory):
    """A config over the shared sample data with its own, fresh MLflow store."""
    folder = tmp_path_factory.mktemp("train")
    text = sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/')
    config = folder / "leadscore.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def trained(project):
    result = runner.invoke(app, ["train", "--config", str(project)])
    assert result.exit_code == 0, result.output
    return result.output


def test_train_registers_a_champion_and_prints_metrics_with_baselines(trained, project):
    assert "promoted v1: no champion yet" in trained
    for scorer in ("lightgbm_calibrated", "logistic_regression", "rules_grade"):
        assert scorer in trained
    assert (project.parent / "mlflow.db").exists()


def test_champion_loads_from_the_registry_and_scores_a_frame_read_back_from_csv(trained, project, tmp_path):
    import mlflow

    from leadscore.pipelines.outputs.tracking import load_conversion_model
    from leadscore.pipelines.training_set import build_training_set

    settings = load_settings(project)
    mlflow.set_tracking_uri(settings.tracking_uri)
    uri = f"models:/{settings.mlflow.registered_model}@champion"
    pyfunc = mlflow.pyfunc.load_model(uri)
    training = build_training_set(settings)
    rows = training.frame[training.feature_names].tail(50)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    from_csv = pd.read_csv(tmp_path / "rows.csv")
    scored = pyfunc.predict(from_csv)
    assert list(scored.columns) == ["probability", "raw_score"]
    model, _ = load_conversion_model(uri)
    np.testing.assert_allclose(scored["probability"], model.predict_proba(rows)[:, 1], atol=1e-12)
    assert scored["probability"].between(0, 1).all()


@pytest.fixture(scope="module")
def data(project):
    from leadscore.pipelines.intake.validation import load_crm

    return load_crm(load_settings(project))


@pytest.fixture(scope="module")
def strong(project, data):
    result, _ = train_and_evaluate(load_settings(project), data=data)
    return result


def test_the_gate_refits_the_champions_recipe_on_the_challengers_rows_and_never_promotes_a_worse_one(
    project, data, strong
):
    settings = load_settings(project)
    worse_settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"n_estimators": 1, "num_leaves": 2})}
    )
    worse, _ = train_and_evaluate(worse_settings, data=data)
    assert worse.split.dev.tolist() == strong.split.dev.tolist()
    verdict = gate(settings, worse, strong.model, data=data, versions=("2", "1"))
    assert not verdict.promoted and "champion v1 kept" in verdict.text
    # the champion's figure is its recipe refit on the same rows: here the strong model's own holdout figure
    assert verdict.figures["champion_roc_auc"] == pytest.approx(strong.metrics.loc["lightgbm_calibrated", "roc_auc"])
    assert verdict.figures["champion_roc_auc"] > worse.metrics.loc["lightgbm_calibrated", "roc_auc"]
    better = gate(settings, strong, worse.model, data=data, versions=("3", "2"))
    assert better.promoted and better.text.startswith("gate: roc_auc challenger v3")
    assert "promoted v3" in better.text


def test_a_tie_keeps_the_champion(project, data, strong):
    settings = load_settings(project)
    verdict = gate(settings, strong, strong.model, data=data, versions=("5", "4"))
    assert not verdict.promoted
    assert verdict.text.endswith("champion v4 kept (tie)")
    assert verdict.figures["champion_roc_auc"] == verdict.figures["challenger_roc_auc"]


def test_the_champions_own_recipe_on_newer_different_data_is_a_refresh(project, data, strong):
    settings = load_settings(project)
    own = dict(strong.training.manifest)
    unchanged = gate(settings, strong, strong.model, data=data, versions=("5", "4"), champion_manifest=own)
    assert not unchanged.promoted and "champion v4 kept (tie" in unchanged.text
    # the champion saw older data with other content: the same recipe now is a refresh, and every holdout row lies
    # after the champion's as-of, so the champion as served is scored on them
    older = {**own, "as_of": "2024-06-30T00:00:00+00:00", "content_sha256": "0" * 64}
    newer = gate(settings, strong, strong.model, data=data, versions=("5", "4"), champion_manifest=older)
    assert "refresh" in newer.text and "as served" in newer.text
    # the same content at a later as-of is no refresh: nothing new arrived
    later_only = {**own, "as_of": "2024-06-30T00:00:00+00:00"}
    same = gate(settings, strong, strong.model, data=data, versions=("5", "4"), champion_manifest=later_only)
    assert "refresh" not in same.text
    # another recipe on newer data still has to beat the champion
    weaker = settings.model_copy(update={"model": settings.model.model_copy(update={"n_estimators": 1})})
    worse, _ = train_and_evaluate(weaker, data=data)
    other = gate(settings, worse, strong.model, data=data, versions=("6", "4"), champion_manifest=older)
    assert not other.promoted and "refresh" not in other.text
    assert training_data_id(own).endswith("@" + own["as_of"])


def test_a_champion_on_another_feature_set_is_compared_on_the_same_rows(project, data, strong):
    settings = load_settings(project)
    profile = settings.model_copy(update={"features": settings.features.model_copy(update={"feature_set": "profile"})})
    narrow, _ = train_and_evaluate(profile, data=data)
    assert set(narrow.training.feature_names) < set(strong.training.feature_names)
    # a champion with more features than the challenger's training set: the missing ones are built from the CRM
    verdict = gate(profile, narrow, strong.model, data=data, versions=("7", "6"))
    assert verdict.figures["champion_roc_auc"] == pytest.approx(strong.metrics.loc["lightgbm_calibrated", "roc_auc"])
    assert "champion v6 kept" in verdict.text
    # and the other way round
    verdict = gate(settings, strong, narrow.model, data=data, versions=("8", "7"))
    assert verdict.figures["champion_roc_auc"] == pytest.approx(narrow.metrics.loc["lightgbm_calibrated", "roc_auc"])
    # without the CRM tables (a prebuilt training set) missing features are named, never guessed
    verdict = gate(profile, narrow, strong.model, data=None, versions=("9", "8"))
    assert not verdict.promoted and "not in this training set" in verdict.text


def test_retraining_keeps_the_champion_unless_the_gate_passes(trained, project):
    import mlflow

    again = runner.invoke(app, ["train", "--config", str(project)])
    assert again.exit_code == 0, again.output
    settings = load_settings(project)
    client = mlflow.MlflowClient(settings.tracking_uri)
    name = settings.mlflow.registered_model
    challenger = str(client.get_model_version_by_alias(name, "challenger").version)
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    assert challenger == "2"
    # same data, same recipe: a tie, which keeps the champion
    assert champion == "1"
    assert "champion v1 kept (tie)" in again.output
    tags = client.get_model_version(name, "2").tags
    assert tags["gate.promoted"] == "False" and "tie" in tags["gate.decision"]
    assert "tie" in client.get_model_version(name, "1").tags["gate.last_challenge"]
    forced = runner.invoke(app, ["train", "--config", str(project), "--promote"])
    assert "promoted v3: --promote given" in forced.output
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"


def test_too_little_data_stops_train_with_a_message(project, tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text(project.read_text() + "\n[model]\nmin_positives = 100000\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1
    assert "too little data to train" in result.output and "need at least 100000" in result.output


def test_backtest_trains_only_on_outcomes_known_before_each_step(project):
    from leadscore.pipelines.verbs.backtest import time_steps

    times = pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01"], utc=True))
    steps = time_steps(
        times, start=pd.Timestamp("2025-03-01", tz="UTC"), every=pd.Timedelta(days=45), horizon=pd.Timedelta(days=30)
    )
    assert [s.label for s in steps] == ["2025-03-01", "2025-04-15"]
    assert steps[0].train.tolist() == [0] and steps[0].test.tolist() == [2, 3]  # Feb's horizon ends 3 March
    assert steps[1].train.tolist() == [0, 1, 2] and steps[1].test.tolist() == [4]
    for step in steps:
        assert (times.iloc[step.train] + pd.Timedelta(days=30)).max() <= pd.Timestamp(step.label, tz="UTC")

    result = runner.invoke(app, ["backtest", "--config", str(project), "--start", "2025-06-01", "--every", "90d"])
    assert result.exit_code == 0, result.output
    assert "ROC AUC per period" in result.output and "pooled over all periods" in result.output
    assert "rules_grade" in result.output


def test_row_steps_for_flat_data():
    from leadscore.pipelines.verbs.backtest import row_steps

    steps = row_steps(10, start=6, every=3)
    assert [(s.train.max(), s.test.tolist()) for s in steps] == [(5, [6, 7, 8]), (8, [9])]


def test_train_from_python_loads_the_crm_itself_and_logs_the_grade_analysis(trained, project):
    import mlflow

    from leadscore.pipelines.verbs.train import train

    settings = load_settings(project)
    result = train(settings)  # no preloaded data: the benchmark's and a notebook's way in
    artifacts = mlflow.MlflowClient(settings.tracking_uri).list_artifacts(result.run_id, "grades")
    assert {"grades/conversion_by_cell.csv", "grades/analysis.txt"} <= {a.path for a in artifacts}


def test_the_registered_model_is_the_recipe_refit_on_every_row_and_both_fits_are_logged(trained, project):
    import mlflow

    from leadscore.pipelines.outputs.tracking import load_conversion_model
    from leadscore.pipelines.training_set import build_training_set

    settings = load_settings(project)
    client = mlflow.MlflowClient(settings.tracking_uri)
    version = client.get_model_version_by_alias(settings.mlflow.registered_model, "champion")
    model, _ = load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")
    rows = len(build_training_set(settings).frame)
    assert model.n_train_ == rows
    run = client.get_run(version.run_id)
    assert int(run.data.params["deployed.rows"]) == rows
    assert int(run.data.params["evaluated.rows"]) == int(run.data.params["dev_rows"]) < rows
    assert "roc_auc" in run.data.metrics  # the recipe's holdout figures travel with the deployed model
    evaluated, _ = load_conversion_model(f"runs:/{version.run_id}/evaluated_model")
    assert evaluated.n_train_ == int(run.data.params["dev_rows"])


def test_backtest_steps_never_share_a_row_with_a_zero_horizon():
    from leadscore.pipelines.verbs.backtest import time_steps

    times = pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", "2025-02-01", "2025-03-01"], utc=True))
    steps = time_steps(
        times, start=pd.Timestamp("2025-02-01", tz="UTC"), every=pd.Timedelta(days=60), horizon=pd.Timedelta(0)
    )
    assert steps[0].train.tolist() == [0] and steps[0].test.tolist() == [1, 2, 3]


def test_flat_rows_keep_their_order_through_a_written_training_set(tmp_path):
    from leadscore.pipelines.training_set import build_training_set, read_training_set, write_training_set

    ids = ["778", "7780", "779", "78", "1000", "9"]  # as text, sorting would put "1000" first and "9" last
    flat = pd.DataFrame({"id": ids, "x": [1.0, 2, 3, 4, 5, 6], "y": ["yes", "no", "no", "yes", "no", "yes"]})
    flat.to_csv(tmp_path / "flat.csv", index=False)
    config = tmp_path / "flat.toml"
    config.write_text(
        'mode = "flat"\n[flat]\npath = "flat.csv"\nid_column = "id"\nlabel_column = "y"\n'
        'positive_values = ["yes"]\nnumeric = ["x"]\n'
    )
    training = build_training_set(load_settings(config))
    path, _ = write_training_set(training, tmp_path / "ts.parquet")
    back = read_training_set(path)
    assert back.frame["lead_id"].tolist() == ids
    columns = ["lead_id", "x", "converted"]
    pd.testing.assert_frame_equal(back.frame[columns], training.frame[columns])


def test_more_rows_than_max_training_rows_fit_the_trees_on_a_reweighted_sample_and_train_says_so(project, tmp_path):
    from leadscore.pipelines.training_set import build_training_set

    frame = build_training_set(load_settings(project)).frame
    y = frame["converted"]
    cap = int(y.sum()) + int((1 - y).sum()) // 2  # every conversion and about half the rest
    config = tmp_path / "leadscore.toml"
    config.write_text(project.read_text() + f'\n[model]\nfamily = "lightgbm"\nmax_training_rows = {cap}\n')
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{len(y):,} training rows exceed model.max_training_rows = {cap:,}" in result.output
    assert "a seeded 5" in result.output or "a seeded 4" in result.output  # about half the not-converted rows
    from leadscore.pipelines.outputs.tracking import load_conversion_model

    settings = load_settings(config)
    model, _ = load_conversion_model(f"models:/{settings.mlflow.registered_model}@challenger")
    assert model.negative_rate == pytest.approx(0.5, abs=0.01)
    assert int(y.sum()) < model.n_train_ < len(y)  # every conversion, a sample of the rest
    assert model.base_rate_ == pytest.approx(np.average(y, weights=frame["sample_weight"]))  # every row, as it comes


def test_features_built_block_by_block_of_leads_are_the_features_built_at_once(data, project):
    from leadscore.features.spine import build_spine
    from leadscore.pipelines.training_set import features_by_block

    settings = load_settings(project)
    t = data.tables
    spine, _ = build_spine(t["leads"], t["opportunities"], settings.cutoff_policy(), as_of=data.as_of)
    names, params = settings.selected_features(), settings.feature_params()
    leads = spine["lead_id"].nunique()
    whole = features_by_block(spine, t, names, params, block_leads=leads)
    blocks = features_by_block(spine, t, names, params, block_leads=leads // 3)  # 4 blocks, leads of one account apart
    pd.testing.assert_frame_equal(blocks, whole)


def test_grades_of_the_training_rows_block_by_block_are_the_grades_at_once(data, project):
    from leadscore.features.spine import build_spine
    from leadscore.models.grades import grade_spine
    from leadscore.pipelines.training_set import by_lead_blocks

    settings = load_settings(project)
    t = data.tables
    spine, _ = build_spine(t["leads"], t["opportunities"], settings.cutoff_policy(), as_of=data.as_of)
    rows = spine[["lead_id", "cutoff_time", "converted"]]

    def grade(part, tables):
        return grade_spine(part, tables, settings.grades, settings.feature_params())

    whole = grade(rows, t)
    pd.testing.assert_frame_equal(by_lead_blocks(rows, t, grade, block_leads=rows["lead_id"].nunique() // 3), whole)
