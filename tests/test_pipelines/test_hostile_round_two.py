"""Hostile input, second round (issue 29): missing means missing only where the user says so, a typed config, bounded
work, relative SQLite files, and messages that name the real cause. Each case asserts the exit code and the culprit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import Settings, load_settings
from leadscore.pipelines.intake.validation import load_crm
from leadscore.pipelines.outputs.tracking import why_not_loaded
from tests.test_pipelines.test_flat_predict import flat_export, flat_project

LEADS = "lead_id,created_at,country,job_title\nL1,2025-01-01,NA,n/a\nL2,2025-01-02,DE,CTO\nL3,2025-01-03,null,VP\n"
OPPS = "opportunity_id,lead_id,created_at,closed_at,status\nO1,L1,2025-02-01,2025-02-20,won\n"
NA_WORDS = ["NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A", "<NA>"]


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def crm(tmp_path: Path, *, leads: str = LEADS, accounts: str | None = None, extra: str = "", leads_extra: str = ""):
    (tmp_path / "leads.csv").write_text(leads)
    (tmp_path / "opps.csv").write_text(OPPS)
    text = f'{extra}\n[tables.leads]\npath = "leads.csv"\n{leads_extra}\n[tables.opportunities]\npath = "opps.csv"\n'
    if accounts is not None:
        (tmp_path / "accounts.csv").write_text(accounts)
        text += '[tables.accounts]\npath = "accounts.csv"\n'
    config = tmp_path / "leadscore.toml"
    config.write_text(text)
    return config


# -- missing means missing only where the user says so ------------------------------------------------------------
@pytest.mark.parametrize("word", NA_WORDS)
def test_na_words_in_a_text_column_are_kept_as_written(tmp_path, word):
    leads = f"lead_id,created_at,country\nL1,2025-01-01,{word}\nL2,2025-01-02,DE\n"
    data = load_crm(load_settings(crm(tmp_path, leads=leads)))
    assert data.tables["leads"]["country"].tolist() == [word, "DE"]  # "NA" is Namibia, not a missing value


@pytest.mark.parametrize("word", NA_WORDS)
def test_na_words_in_a_number_or_time_column_are_missing_as_before(tmp_path, word):
    accounts = f"account_id,employee_count\nA1,{word}\nA2,40\n"
    leads = f"lead_id,created_at,account_id,sales_accepted_at\nL1,2025-01-01,A1,{word}\nL2,2025-01-02,A2,2025-01-05\n"
    data = load_crm(load_settings(crm(tmp_path, leads=leads, accounts=accounts)))
    assert not data.errors
    assert data.tables["accounts"]["employee_count"].isna().tolist() == [True, False]
    assert data.tables["leads"]["sales_accepted_at"].isna().tolist() == [True, False]


def test_a_tables_own_placeholders_are_missing(tmp_path):
    data = load_crm(load_settings(crm(tmp_path, leads_extra='missing_values = ["n/a", "null"]')))
    leads = data.tables["leads"]
    assert leads["job_title"].isna().tolist() == [True, False, False]
    assert leads["country"].tolist()[0] == "NA" and pd.isna(leads["country"].tolist()[2])


def test_flat_text_keeps_na_and_flat_numbers_read_it_as_missing(tmp_path):
    frame = flat_export(300)
    frame["source"] = frame["source"].where(frame.index % 7 != 0, "NA")
    frame["visits"] = frame["visits"].astype(object).where(frame.index % 11 != 0, "NA")
    config = flat_project(tmp_path, frame=frame)
    out = invoke("validate", "--config", config)
    assert "0 error(s)" in out
    training = pd.read_parquet(_training(config, tmp_path))  # the labelled rows: the first 90 %
    assert (training["source"] == "NA").sum() == (frame["source"].iloc[: len(training)] == "NA").sum() > 0
    assert training["visits"].isna().sum() == (frame["visits"].iloc[: len(training)] == "NA").sum() > 0


def _training(config: Path, tmp_path: Path) -> Path:
    invoke("build-training-set", "--config", config, "--out", tmp_path / "t.parquet")
    return tmp_path / "t.parquet"


def test_a_derived_month_of_unreadable_dates_is_an_error_naming_the_column(tmp_path):
    frame = flat_export(200)
    frame["signup"] = pd.date_range("2024-01-01", periods=200, freq="D").strftime("%Y-%m-%d")
    frame.loc[:59, "signup"] = "sometime"
    config = flat_project(tmp_path, frame=frame)
    derived = '[flat.derived.signup_month]\ndate_part = "month"\nof = "signup"\n[model]'
    text = config.read_text().replace('categorical = ["source"]', 'categorical = ["source", "signup_month"]')
    config.write_text(text.replace("[model]", derived))
    out = invoke("validate", "--config", config, code=1)
    assert "column 'signup'" in out and "60 value(s) cannot be read as timestamps" in out and "'sometime' (60)" in out


# -- a typed config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("as_of = 2025", "as_of"),
        ("as_of = 1.5", "as_of"),
        ("as_of = true", "as_of"),
        ('as_of = "yesterday"', "as_of"),
        ('[spine]\nhorizon_days = "90"', "spine.horizon_days"),
        ("[spine]\nmax_snapshots = 6.5", "spine.max_snapshots"),
        ('[spine]\nmax_snapshots = "6"', "spine.max_snapshots"),
        ("[output]\nchunk_size = true", "output.chunk_size"),
        ('[validation]\nmax_rejected_share = "0.1"', "validation.max_rejected_share"),
        ('[model]\nn_estimators = "300"', "model.n_estimators"),
        ('[history]\nenabled = "yes"', "history.enabled"),
        ("timezone = 1", "timezone"),
        ('[features]\nhigh_intent_events = "demo_request"', "features.high_intent_events"),
        ('[grades.fit]\ncutoffs = { A = "70", B = 50, C = 30 }', "grades.fit.cutoffs.A"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(tmp_path, line, key):
    config = crm(tmp_path)
    config.write_text(line + "\n" + config.read_text())
    out = invoke("validate", "--config", config, code=2)
    assert f"  {key}:" in out


@pytest.mark.parametrize("line", ['as_of = "2025-06-30"', "as_of = 2025-06-30", "as_of = 2025-06-30T12:00:00Z"])
def test_dates_are_read_as_written(tmp_path, line):
    config = crm(tmp_path)
    config.write_text(line + "\n" + config.read_text())
    assert load_settings(config).as_of.date().isoformat() == "2025-06-30"


# -- bounded work --------------------------------------------------------------------------------------------------
def test_more_features_than_the_cap_is_refused_before_any_work(tmp_path):
    config = flat_project(tmp_path, extra="[features]\nmax_features = 1\n")
    out = invoke("train", "--config", config, code=2)
    assert "2 features (flat.categorical + flat.numeric), more than features.max_features = 1" in out


# -- relative SQLite files -----------------------------------------------------------------------------------------
def _sqlite_project(folder: Path) -> Path:
    folder.mkdir()
    with sqlite3.connect(folder / "crm.db") as connection:
        pd.read_csv(__import__("io").StringIO(LEADS)).to_sql("leads", connection, index=False)
        pd.read_csv(__import__("io").StringIO(OPPS)).to_sql("opps", connection, index=False)
    config = folder / "leadscore.toml"
    config.write_text(
        '[tables.leads]\nsql_url = "sqlite:///crm.db"\nsql_table = "leads"\n'
        '[tables.opportunities]\nsql_url = "sqlite:///crm.db"\nsql_table = "opps"\n'
    )
    return config


def test_a_relative_sqlite_url_is_taken_from_the_configs_folder(tmp_path, monkeypatch):
    config = _sqlite_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert "leads                  3 rows" in invoke("validate", "--config", config)
    assert not (elsewhere / "crm.db").exists()  # no empty database left behind in the current folder
    assert load_settings(config).tables.leads.sql_url == f"sqlite:///{(tmp_path / 'project' / 'crm.db').resolve()}"


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path):
    config = _sqlite_project(tmp_path / "project")
    (tmp_path / "project" / "crm.db").unlink()
    out = invoke("validate", "--config", config, code=1)
    assert f"database file {(tmp_path / 'project' / 'crm.db').resolve()} not found" in out
    assert not (tmp_path / "project" / "crm.db").exists()


# -- messages that name the real cause -----------------------------------------------------------------------------
def _settings(model: str = "leadscore-conversion") -> Settings:
    return Settings.model_validate(
        {
            "mode": "crm",
            "tables": {"leads": {"path": "l"}, "opportunities": {"path": "o"}},
            "mlflow": {"registered_model": model},
        }
    )


@pytest.mark.parametrize(
    ("error", "cause", "hint"),
    [
        (RuntimeError("(sqlite3.OperationalError) database is locked"), "the store is locked", "retry when"),
        (OSError("No such artifact: ''"), "the model's files are missing", "restore the artifact folder"),
        (FileNotFoundError("model.pkl"), "the model's files are missing", "or retrain"),
        (RuntimeError("Registered Model with name=x not found"), "no such registered model", "leadscore train`"),
    ],
)
def test_a_failed_model_load_names_its_real_cause(error, cause, hint):
    found_cause, found_hint = why_not_loaded(error, _settings())
    assert found_cause.startswith(cause) and hint in found_hint


def test_a_missing_account_model_says_to_train_at_account_level():
    _, hint = why_not_loaded(RuntimeError("alias champion not found"), _settings("acme-conversion-account"))
    assert hint == "train one first: `leadscore train --level account`"


def test_flat_predict_scores_a_file_of_open_rows_only(tmp_path):
    config = flat_project(tmp_path / "p")
    invoke("train", "--config", config)
    frame = flat_export()
    frame["y"] = ""  # this week's export: every lead still open
    frame.to_csv(tmp_path / "p" / "export.csv", index=False)
    invoke("predict", "--config", config, "--out", tmp_path / "scores.csv")
    assert len(pd.read_csv(tmp_path / "scores.csv")) == len(frame)


def test_a_damaged_history_file_is_named_by_monitor(tmp_path, trained_project):
    config = tmp_path / "leadscore.toml"
    config.write_text(trained_project.read_text() + f'\n[history]\npath = "{tmp_path / "history"}"\n')
    damaged = tmp_path / "history" / "as_of_date=2025-01-01" / "leadscore-conversion__v1__20250101T000000.parquet"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PAR1 this is not a parquet file PAR1")
    out = invoke("monitor", "--config", config, "--out", tmp_path / "monitor.html", code=1)
    assert str(damaged) in out and "a damaged score-history file" in out


def test_a_long_fit_logs_its_boosting_round_and_a_short_one_stays_quiet(caplog):
    from leadscore.models.conversion import progress

    class Round:
        iteration = 41

    caplog.set_level("INFO", logger="leadscore.models.conversion")
    progress(300, every_seconds=0.0)(Round())
    progress(300, every_seconds=3600.0)(Round())
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["boosting round 42 of at most 300"]
