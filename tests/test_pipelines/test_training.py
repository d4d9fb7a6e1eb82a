"""End to end: train on small sample data into a temporary MLflow store, gate, load the champion and score."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import load_settings
from pipelines.training import gate, train_and_evaluate

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
    assert "promoted: no champion yet" in trained
    for scorer in ("lightgbm_calibrated", "logistic_regression", "rules_grade"):
        assert scorer in trained
    assert (project.parent / "mlflow.db").exists()


def test_champion_loads_from_the_registry_and_scores_a_frame_read_back_from_csv(trained, project, tmp_path):
    import mlflow

    from pipelines.tracking import load_conversion_model
    from pipelines.training_set import build_training_set

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


def test_the_gate_never_promotes_a_worse_challenger(trained, project):
    settings = load_settings(project)
    worse = settings.model_copy(
        update={"model": settings.model.model_copy(update={"n_estimators": 1, "num_leaves": 2})}
    )
    result, _ = train_and_evaluate(worse)

    class Champion:  # the real, better model trained on the same data
        def __init__(self, model):
            self.model = model

        def predict_proba(self, frame):
            return self.model.predict_proba(frame[result.training.feature_names])

    strong, _ = train_and_evaluate(settings)
    promoted, decision, figures = gate(settings, result, Champion(strong.model))
    assert not promoted and decision.startswith("not promoted")
    assert figures["champion_roc_auc"] > result.metrics.loc["lightgbm_calibrated", "roc_auc"]
    promoted, decision, _ = gate(settings, strong, Champion(result.model))
    assert promoted and decision.startswith("promoted")


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
    # same data and seed: identical metrics, so it is promoted only if not worse (gate_min_improvement = 0)
    assert ("promoted:" in again.output) == (champion == "2")
    forced = runner.invoke(app, ["train", "--config", str(project), "--promote"])
    assert "promoted: --promote given" in forced.output
    assert str(client.get_model_version_by_alias(name, "champion").version) == "3"


def test_too_little_data_stops_train_with_a_message(project, tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text(project.read_text() + "\n[model]\nmin_positives = 100000\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1
    assert "too little data to train" in result.output and "need at least 100000" in result.output


def test_backtest_trains_only_on_outcomes_known_before_each_step(project):
    from pipelines.backtest import time_steps

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
    from pipelines.backtest import row_steps

    steps = row_steps(10, start=6, every=3)
    assert [(s.train.max(), s.test.tolist()) for s in steps] == [(5, [6, 7, 8]), (8, [9])]


def test_train_from_python_loads_the_crm_itself_and_logs_the_grade_analysis(trained, project):
    import mlflow

    from pipelines.training import train

    settings = load_settings(project)
    result = train(settings)  # no preloaded data: the benchmark's and a notebook's way in
    artifacts = mlflow.MlflowClient(settings.tracking_uri).list_artifacts(result.run_id, "grades")
    assert {"grades/conversion_by_cell.csv", "grades/analysis.txt"} <= {a.path for a in artifacts}
