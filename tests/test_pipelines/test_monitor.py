"""End to end on sample data: a model trained at a past date scores at two later past dates, then `monitor`."""

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.outputs.history import read_history

runner = CliRunner()
TRAINED_THROUGH = "2025-06-30"
RUNS = ("2025-07-01", "2025-09-01")  # both at least one 90-day horizon before the data's end (2025-12-31)


@pytest.fixture(scope="module")
def monitored(sample_project, tmp_path_factory):
    """A project over the shared sample data with its own MLflow store and history: train, predict twice."""
    folder = tmp_path_factory.mktemp("monitored")
    config = folder / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    result = runner.invoke(app, ["train", "--config", str(config), "--as-of", TRAINED_THROUGH, "--json"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)  # --json: stdout is the summary alone, the rest went to stderr
    assert trained["version"] == "1" and 0.5 < trained["holdout"]["lightgbm_calibrated"]["roc_auc"] <= 1
    for as_of in RUNS:
        out = folder / "output" / f"scores_{as_of}.csv"
        result = runner.invoke(app, ["predict", "--config", str(config), "--as-of", as_of, "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        assert "score history" in result.stderr
        scored = json.loads(result.stdout)
        assert scored["scored"] == len(pd.read_csv(out)) > 0 and scored["as_of"].startswith(as_of)
    return config


def test_runs_and_versions_say_what_ran(monitored):
    from leadscore.pipelines.outputs import tracking

    settings = load_settings(monitored)
    tracking.use_store(settings)
    client = tracking.mlflow_module().MlflowClient()
    runs = client.search_runs([tracking.use_store(settings)])
    names = {run.info.run_name for run in runs}
    assert f"train {TRAINED_THROUGH} default" in names
    assert {f"predict {d} {settings.mlflow.registered_model} v1" for d in RUNS} <= names
    version = client.get_model_version(settings.mlflow.registered_model, "1")
    assert version.description.startswith("holdout: roc_auc 0.")
    assert version.description.endswith("gate: promoted v1: no champion yet")
    assert version.tags["gate.promoted"] == "True" and 0.5 < float(version.tags["holdout.roc_auc"]) <= 1


def test_predict_rerun_leaves_one_copy_of_its_run(monitored):
    settings = load_settings(monitored)
    before = read_history(settings)
    out = monitored.parent / "output" / "again.csv"
    result = runner.invoke(app, ["predict", "--config", str(monitored), "--as-of", RUNS[0], "--out", str(out)])
    assert result.exit_code == 0, result.output
    after = read_history(settings)
    assert len(after) == len(before) and set(after["as_of"]) == {pd.Timestamp(d, tz="UTC") for d in RUNS}
    assert not after.duplicated(["lead_id", "as_of", "model_version"]).any()
    scores = pd.read_csv(out)
    assert len(after[after["as_of"] == pd.Timestamp(RUNS[0], tz="UTC")]) == len(scores)


def test_monitor_reports_realized_conversion_live_record_acceptance_and_sla(monitored):
    from leadscore.pipelines.verbs.monitor import build_monitoring

    settings = load_settings(monitored)
    result = build_monitoring(settings)
    deciles = result.by_decile.set_index("decile")
    assert len(deciles) == 10 and deciles["leads"].sum() == len(read_history(settings))
    assert deciles.loc[10, "conversion_rate"] > deciles.loc[1, "conversion_rate"]
    live = result.live.set_index("model_version").loc[result.champion]
    assert live["trained_through"] == pd.Timestamp(TRAINED_THROUGH, tz="UTC")
    assert live["outcomes"] == len(result.outcomes) and live["conversions"] > 0
    assert 0.6 < live["live_roc_auc"] <= 1 and 0.5 < live["holdout_roc_auc"] <= 1
    history = read_history(settings)
    routed = set(history.loc[history["due_by"].notna(), "cell"])  # the routing table sent these cells to sales
    assert set(result.acceptance["cell"]["cell"]) <= routed < set(history["cell"])
    assert result.acceptance["cell"]["handed_over"].sum() > 20
    assert result.sla["cell"]["sla_compliance"].between(0, 1).all()
    assert result.runs["score_psi"].notna().all()


def test_live_record_is_the_champions_out_of_sample_figure(monitored):
    from leadscore.pipelines.verbs.monitor import live_record

    settings = load_settings(monitored)
    record = live_record(settings)
    assert record is not None and record.outcomes > 100
    assert math.isfinite(record.get("roc_auc")) and "roc_auc" in record.holdout
    assert record.trained_through == pd.Timestamp(TRAINED_THROUGH, tz="UTC")


def test_alert_thresholds_decide_the_exit_code(monitored, tmp_path):
    quiet = (
        "\n[monitor]\nsla_compliance_target = 0.0\nscore_drift_psi = 100\nacceptance_drop_points = 100\n"
        "live_roc_auc_floor = 0.0\n"
    )
    strict = "\n[monitor]\nsla_compliance_target = 1.0\nlive_roc_auc_floor = 0.999\nmin_live_outcomes = 1\n"
    codes = {}
    for name, extra in (("quiet", quiet), ("strict", strict)):
        config = monitored.parent / f"{name}.toml"
        config.write_text(monitored.read_text() + extra)
        out = tmp_path / f"{name}.html"
        result = runner.invoke(app, ["monitor", "--config", str(config), "--out", str(out), "--json"])
        codes[name] = result.exit_code
        summary = json.loads(result.stdout)
        assert summary["exit_code"] == result.exit_code and bool(summary["alerts"]) == (name == "strict")
        assert out.exists() and "Realized conversion by score band" in out.read_text()
        if name == "strict":
            assert "ALERT sla_compliance" in result.output and "ALERT live_roc_auc" in result.output
            assert "realized conversion by score decile" in result.output
        else:
            assert "no alert fired" in result.output
    assert codes == {"quiet": 0, "strict": 3}


def test_since_leaves_out_earlier_runs(monitored):
    from leadscore.pipelines.verbs.monitor import build_monitoring

    result = build_monitoring(load_settings(monitored), since=pd.Timestamp(RUNS[1], tz="UTC"))
    assert set(result.runs["as_of"]) == {pd.Timestamp(RUNS[1], tz="UTC")}


def test_explain_section_shows_the_live_record(monitored):
    from leadscore.pipelines.intake.validation import load_crm
    from leadscore.pipelines.verbs.monitor import live_section

    settings = load_settings(monitored)
    page, figures, tables = live_section(settings, load_crm(settings))
    assert "Realized conversion by score decile" in page and "live_conversion_by_decile" in figures
    assert tables["live_conversion_by_decile"]["leads"].sum() == len(read_history(settings))
    assert {"live_record", "live_acceptance_by_cell", "live_sla_by_cell"} <= set(tables)
