"""Either family, through the CLI: a forced logistic regression trains, predicts with contributions, explains, and
the gate weighs a LightGBM challenger against it."""

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

runner = CliRunner()


def _invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _champion(config):
    import mlflow

    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs.tracking import load_conversion_model

    settings = load_settings(config)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return load_conversion_model(f"models:/{settings.mlflow.registered_model}@champion")[0]


def test_a_logistic_champion_predicts_explains_and_faces_a_lightgbm_challenger(sample_project, tmp_path):
    text = sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/')
    config = tmp_path / "leadscore.toml"
    config.write_text(text + '\n[model]\nfamily = "logistic"\n')
    trained = json.loads(_invoke("train", "--config", config, "--json"))
    assert trained["family"] == "logistic"
    assert trained["choice"]["reason"].startswith("logistic: the only candidate")

    contributions = tmp_path / "contributions.parquet"
    scored = tmp_path / "scores.csv"
    _invoke("predict", "--config", config, "--out", scored, "--contributions", contributions)
    scores, shap = pd.read_csv(scored), pd.read_parquet(contributions)
    merged = scores.merge(shap, on="lead_id")
    features = [c for c in shap.columns if c not in {"lead_id", "base_value"} and shap[c].dtype.kind == "f"]
    model = _champion(config)
    assert model.family == "logistic"
    margin = merged[[*features, "base_value"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(model.probability_of_margin(margin), merged["probability"], atol=1e-8)
    assert scores["reasons_positive"].notna().any()

    report = tmp_path / "report.html"
    _invoke("explain", "--config", config, "--out", report)
    assert "logistic regression" in report.read_text()

    config.write_text(text + '\n[model]\nfamily = "lightgbm"\n')
    challenger = json.loads(_invoke("train", "--config", config, "--json"))
    assert challenger["family"] == "lightgbm"
    assert challenger["version"] == "2" and challenger["decision"]  # the gate compared it with the logistic champion
