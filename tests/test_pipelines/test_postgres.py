"""End to end against a real PostgreSQL server: validate -> train -> predict -> explain, tables read and written there.

The server is the one `.ci/run` started, or one the `postgres_url` fixture starts; the test skips only where no
PostgreSQL binaries are installed (under CI that fails instead).
"""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

TABLES = ("leads", "accounts", "events", "opportunities")


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def schema_url(postgres_url):
    """A schema of its own on the server (the URL's search_path points at it), dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{postgres_url}?options=-csearch_path%3D{schema}", schema
    with admin.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_validate_train_predict_explain_on_postgresql(schema_url, tmp_path):
    import sqlalchemy as sa

    url, schema = schema_url
    _invoke("sample-data", "--out", str(tmp_path / "data"), "--leads", "2000", "--seed", "11")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for name in TABLES:
            pd.read_parquet(tmp_path / "data" / f"{name}.parquet").to_sql(name, connection, index=False)
    _invoke("init", str(tmp_path))
    config = tmp_path / "leadscore.toml"
    text = config.read_text()
    for name in TABLES:
        text = text.replace(f'path = "data/{name}.parquet"', f'sql_url = "{url}"\nsql_table = "{name}"')
    text += f'\nsql_url = "{url}"\n\n[history]\nsql_url = "{url}"\n'  # lands in [output], the last section
    config.write_text(text)

    _invoke("validate", "--config", str(config))
    trained = json.loads(_invoke("train", "--config", str(config), "--promote", "--json").stdout)
    for _ in range(2):  # a rerun of the same run replaces its rows instead of adding them
        scored = json.loads(_invoke("predict", "--config", str(config), "--to-sql", "scores", "--json").stdout)
    report = tmp_path / "report.html"
    _invoke("explain", "--config", str(config), "--out", str(report))

    with engine.connect() as connection:
        scores = pd.read_sql_table("scores", connection)
        rejects = pd.read_sql_table("scores_rejects", connection)
        history = pd.read_sql_table("score_history", connection)
        key = sa.inspect(connection).get_pk_constraint("score_history")
        leftovers = [t for t in sa.inspect(connection).get_table_names() if "leadscore" in t]
    engine.dispose()
    open_leads = pd.read_parquet(tmp_path / "data" / "leads.parquet")
    assert 0 < len(scores) < len(open_leads)  # open leads only
    assert scores["lead_id"].is_unique and scores["probability"].between(0, 1).all()
    assert scores["score"].between(1, 99).all()
    assert rejects.empty  # the sample CRM is clean
    assert key["constrained_columns"] == ["lead_id", "as_of", "model_name", "model_version"]
    assert len(history) == len(scores) == scored["scored"]  # two identical runs, one copy
    assert trained["version"] == "1" and trained["decision"] == "gate: promoted v1: --promote given"
    _check_mlflow_names(config, trained)
    assert set(history["lead_id"]) == set(scores["lead_id"].astype(str))
    assert leftovers == []  # staging tables are gone
    page = report.read_text(encoding="utf-8")
    assert "<img" in page and "Global importance" in page


def _check_mlflow_names(config, trained: dict) -> None:
    """Runs named after what ran; the registered version described with its holdout figures and the gate."""
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs import tracking

    settings = load_settings(config)
    experiment = tracking.use_store(settings)
    client = tracking.mlflow_module().MlflowClient()
    names = sorted(run.info.run_name for run in client.search_runs([experiment]))
    assert names[-1].startswith("train 2025-12-") and names[-1].endswith(" default"), names
    assert names[0].startswith("predict 2025-12-") and names[0].endswith(f" {settings.mlflow.registered_model} v1")
    version = client.get_model_version(settings.mlflow.registered_model, "1")
    roc_auc = trained["holdout"]["lightgbm_calibrated"]["roc_auc"]
    assert version.description.startswith(f"holdout: roc_auc {roc_auc:.4f}, pr_auc 0.")
    assert version.description.endswith("gate: promoted v1: --promote given")
    assert version.tags["gate.promoted"] == "True" and float(version.tags["holdout.roc_auc"]) == round(roc_auc, 6)


def test_a_flat_table_in_postgresql_gives_the_same_training_set_as_its_csv(schema_url, tmp_path):
    import sqlalchemy as sa

    url, _ = schema_url
    flat = pd.DataFrame(
        {
            "id": [f"L{i}" for i in range(40)],
            "visits": [float(i % 7) for i in range(40)],
            "source": ["web", "ads", "event", "web"] * 10,
            "converted": [i % 3 == 0 for i in range(40)],
            "created": pd.date_range("2025-01-01", periods=40, freq="D", tz="UTC"),
        }
    )
    flat.to_csv(tmp_path / "flat.csv", index=False)
    engine = sa.create_engine(url)
    flat.to_sql("crm_export", engine, index=False)
    engine.dispose()
    common = (
        'mode = "flat"\n[flat]\nid_column = "id"\nlabel_column = "converted"\npositive_values = [true, "True"]\n'
        'negative_values = [false, "False"]\ntime_column = "created"\ncategorical = ["source"]\n'
        'numeric = ["visits"]\n'
    )
    frames = {}
    for name, where in (("csv", 'path = "flat.csv"\n'), ("sql", f'sql_url = "{url}"\nsql_table = "crm_export"\n')):
        config = tmp_path / f"{name}.toml"
        config.write_text(common + where)
        out = tmp_path / f"{name}.parquet"
        _invoke("build-training-set", "--config", str(config), "--out", str(out))
        frames[name] = pd.read_parquet(out)
    assert len(frames["sql"]) == 40 and frames["sql"]["converted"].sum() == 14
    pd.testing.assert_frame_equal(frames["sql"], frames["csv"])
