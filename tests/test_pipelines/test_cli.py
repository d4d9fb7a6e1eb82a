import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

runner = CliRunner()
VERBS = ["init", "sample-data", "validate", "build-training-set", "grade", "train", "backtest", "predict", "explain"]


@pytest.mark.parametrize("verb", [*VERBS, "monitor"])
def test_every_verb_has_help(verb):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert f"Example:\n    leadscore {verb} " in result.output  # on one line, ready to copy
    assert "<bool>" not in result.output  # flags take no value


def test_version_and_the_engine_help_as_written():
    from importlib import metadata

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"leadscore {metadata.version('leadscore')}\n"
    assert "default: [engine] name" in runner.invoke(app, ["grade", "--help"]).output


def test_validate_json_is_the_only_stdout(sample_project):
    import json

    result = runner.invoke(app, ["validate", "--config", str(sample_project), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["verb"] == "validate" and summary["exit_code"] == 0 and summary["errors"] == 0
    assert summary["tables"]["leads"]["rows"] == 3000 and "0 error(s)" in result.stderr


def test_init_then_sample_data_then_validate_works_as_is(sample_project):
    result = runner.invoke(app, ["validate", "--config", str(sample_project)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output
    assert "conversion among closed" in result.output


def test_init_refuses_to_overwrite(tmp_path):
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["init", str(tmp_path)])
    assert again.exit_code != 0 and "exists" in again.output


def test_validate_fails_with_rejects_file_on_bad_rows(tmp_path):
    (tmp_path / "leads.csv").write_text("lead_id,created_at\nL1,2025-01-01\nL1,2025-01-02\n")
    (tmp_path / "opps.csv").write_text("opportunity_id,lead_id,created_at,status\nO1,L1,2025-01-03,open\n")
    config = tmp_path / "leadscore.toml"
    config.write_text('[tables.leads]\npath = "leads.csv"\n[tables.opportunities]\npath = "opps.csv"\n')
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 1
    assert "leads.lead_id row 2: duplicate id 'L1'" in result.output
    rejects = (tmp_path / "output" / "rejects" / "leads.csv").read_text().splitlines()
    assert len(rejects) == 3 and rejects[0].endswith("reject_reason,reject_kind")


def test_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text("[spine]\nhorizon = 3\n")
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert "spine.horizon: unknown key" in result.output


def test_build_training_set_writes_parquet_and_manifest(sample_project, tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "ts.parquet"
    result = runner.invoke(app, ["build-training-set", "--config", str(sample_project), "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    manifest = json.loads((tmp_path / "ts.manifest.json").read_text())
    assert manifest["rows"] == len(frame) > 1000
    assert manifest["positives"] == int(frame["converted"].sum()) > 50
    assert manifest["spine"]["censored"] > 0
    assert set(manifest["features"]) <= set(frame.columns)
    assert len(manifest["input_sha256"]) == 64
    assert str(frame["cutoff_time"].dtype).endswith("UTC]")
    # a rerun on the same inputs gives the same bytes
    again = tmp_path / "again.parquet"
    runner.invoke(app, ["build-training-set", "--config", str(sample_project), "--out", str(again)])
    assert out.read_bytes() == again.read_bytes()


def test_grade_gives_every_open_lead_a_grade_and_the_analysis_prints(sample_project, tmp_path):
    import pandas as pd

    from leadscore.features.spine import scoring_spine
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.grading import analyze_closed_deals
    from leadscore.pipelines.intake.validation import load_crm

    out = tmp_path / "grades.parquet"
    result = runner.invoke(app, ["grade", "--config", str(sample_project), "--out", str(out), "--analyze"])
    assert result.exit_code == 0, result.output
    graded = pd.read_parquet(out)
    data = load_crm(load_settings(sample_project))
    open_leads = scoring_spine(data.tables["leads"], data.tables["opportunities"], as_of=data.as_of)
    assert graded["lead_id"].is_unique and set(graded["lead_id"]) == set(open_leads["lead_id"])
    for column in ("fit_grade", "engagement_grade", "cell", "stage", "stage_rule", "action"):
        assert graded[column].notna().all(), column
    assert graded.loc[~graded["action"].isin(["nurture", "recycle"]), "due_by"].notna().all()
    assert graded.loc[graded["action"] == "recycle", "dormant"].all()
    assert "conversion by cell" in result.output and "grade-order contradictions" in result.output
    analysis, _ = analyze_closed_deals(load_settings(sample_project), data)
    rate = analysis.by_cell["conversion_rate"]
    assert rate["A1"] > rate["D4"]
