"""Hostile output targets (issue 29): no output over anything the tool reads or owns, and outputs and score history
as one unit. Each case asserts the exit code, the culprit named in the message and, where output existed before,
that every file is byte-for-byte unchanged (and that no temporary or journal is left behind)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

runner = CliRunner()

LEADS = "lead_id,created_at,account_id,job_title\nL1,2025-01-01,A1,CTO\nL2,2025-01-02,A1,VP Sales\nL3,2025-01-03,,\n"
ACCOUNTS = "account_id,industry,employee_count\nA1,software,120\n"
EVENTS = "lead_id,occurred_at,event_type\nL1,2025-01-05,page_view\nL2,2025-01-06,pricing_page_view\n"
OPPS = (
    "opportunity_id,lead_id,created_at,closed_at,status,amount\n"
    "O1,L1,2025-02-01,2025-03-01,won,1000\nO2,L2,2025-02-01,2025-02-20,lost,500\nO3,L3,2025-02-01,,open,\n"
)
TABLES = {"leads": LEADS, "accounts": ACCOUNTS, "events": EVENTS, "opportunities": OPPS}


def invoke(*args, code: int) -> str:
    """Run the CLI; the exit code must be `code` and no traceback may reach the user."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    return result.output


def small_project(tmp_path: Path, extra: str = "", *, skip: tuple[str, ...] = ()) -> Path:
    """Four small CSV tables in data/ and a config beside them; `skip` leaves a table's file out."""
    (tmp_path / "data").mkdir(exist_ok=True)
    lines = [extra]
    for name, text in TABLES.items():
        if name not in skip:
            (tmp_path / "data" / f"{name}.csv").write_text(text)
        lines.append(f'[tables.{name}]\npath = "data/{name}.csv"\n')
    config = tmp_path / "leadscore.toml"
    config.write_text("\n".join(lines))
    return config


def trained_copy(tmp_path: Path, trained: Path, extra: str = "") -> Path:
    """The trained sample project's tables and MLflow store under a config of this test's own (own output folder)."""
    text = trained.read_text()
    text += f'\n[mlflow]\ntracking_uri = "sqlite:///{trained.parent / "mlflow.db"}"\n' + extra
    config = tmp_path / "leadscore.toml"
    config.write_text(text)
    return config


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under the folders, with its bytes: what 'unchanged' is checked against."""
    return {str(p): p.read_bytes() for folder in folders if folder.exists() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a verb starts reading the tables before its targets were checked."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("heavy work started before the targets were checked")

    monkeypatch.setattr("leadscore.pipelines.intake.validation.load_crm", must_not_run)


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder made read-only: by its mode for a normal user; for root (who ignores modes) immutable."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def scored(tmp_path, trained_project) -> Path:
    """A project whose first predict ran: scores, rejects and one history file exist; returns the config."""
    config = trained_copy(tmp_path, trained_project)
    invoke("predict", "--config", config, code=0)
    output = tmp_path / "output"
    assert (output / "scores.csv").exists() and list((output / "history").rglob("*.parquet"))
    return config


# -- the cases ---------------------------------------------------------------------------------------------
def test_a_read_only_history_folder_stops_predict_before_any_work_and_keeps_every_output(scored, tmp_path):
    output = tmp_path / "output"
    before = snapshot(output)
    with read_only(output / "history"):
        out = invoke("predict", "--config", scored, code=2)
    assert "history.path" in out and "no permission to write in" in out and str(output / "history") in out
    assert snapshot(output) == before


def test_history_sql_url_in_a_missing_folder_is_refused_before_any_work(scored, tmp_path):
    output = tmp_path / "output"
    before = snapshot(output)
    missing = tmp_path / "missing" / "history.db"
    scored.write_text(scored.read_text() + f'\n[history]\nsql_url = "sqlite:///{missing}"\n')
    out = invoke("predict", "--config", scored, code=2)
    assert "history.sql_url" in out and f"the folder '{missing.parent}' of the SQLite file does not exist" in out
    assert snapshot(output) == before and not missing.parent.exists()


def test_out_inside_the_mlflow_artifact_root_is_refused(tmp_path, trained_project):
    config = trained_copy(tmp_path, trained_project)
    metrics = next((trained_project.parent / "mlartifacts").rglob("evaluation/metrics.csv"))
    before = metrics.read_bytes()
    out = invoke("predict", "--config", config, "--out", metrics, code=2)
    assert "is inside the MLflow artifact root" in out and str(metrics) in out
    assert metrics.read_bytes() == before


def test_monitor_out_onto_the_leads_table_is_refused(tmp_path, no_work):
    config = small_project(tmp_path)
    leads = tmp_path / "data" / "leads.csv"
    out = invoke("monitor", "--config", config, "--out", leads, code=2)
    assert f"--out {leads}: resolves to an input (table 'leads')" in out
    (tmp_path / "report.html").symlink_to(leads)  # a report name that is the leads table after all
    out = invoke("monitor", "--config", config, "--out", tmp_path / "report.html", code=2)
    assert "resolves to an input (table 'leads')" in out
    assert leads.read_text() == LEADS


@pytest.mark.parametrize(
    ("verb", "name", "points_at", "culprit"),
    [
        ("grade", "grades.csv", "data/events.csv", "resolves to an input (table 'events')"),
        ("grade", "grades.csv", "leadscore.toml", "resolves to the config"),
        ("explain", "report.html", "leadscore.toml", "resolves to the config"),
        ("explain", "report.html", "data/accounts.csv", "resolves to an input (table 'accounts')"),
        ("build-training-set", "set.parquet", "data/opportunities.csv", "resolves to an input (table 'opportunities')"),
        ("build-training-set", "set.parquet", "leadscore.toml", "resolves to the config"),
    ],
)
def test_verbs_refuse_an_out_that_is_an_input_or_the_config(tmp_path, no_work, verb, name, points_at, culprit):
    config = small_project(tmp_path)
    before = snapshot(tmp_path)
    (tmp_path / name).symlink_to(tmp_path / points_at)  # the output's name is allowed; what it names is not
    out = invoke(verb, "--config", config, "--out", tmp_path / name, code=2)
    assert f"--out {tmp_path / name}: {culprit}" in out
    assert snapshot(tmp_path) == {**before, str(tmp_path / name): (tmp_path / points_at).read_bytes()}


def test_a_parent_folder_of_an_input_is_refused(tmp_path, no_work):
    config = small_project(tmp_path)
    out = invoke("grade", "--config", config, "--out", tmp_path / "data", code=2)
    assert f"--out {tmp_path / 'data'}: is a parent folder of an input (table 'leads')" in out
    config.write_text(config.read_text() + '\n[engine]\nname = "spark"\n')  # Spark's outputs are folders
    out = invoke("grade", "--config", config, "--out", tmp_path, code=2)
    assert "is a parent folder of an input" in out and (tmp_path / "data" / "leads.csv").read_text() == LEADS


# -- publication as one unit, from the command line ----------------------------------------------------------------
def test_a_full_disk_while_writing_the_history_leaves_scores_rejects_and_history_as_they_were(
    scored, tmp_path, monkeypatch
):
    from leadscore.pipelines.outputs import history

    output = tmp_path / "output"
    before = snapshot(output)

    def full(rows, root, publication):
        def write(tmp):
            Path(tmp).write_bytes(b"half a parquet file")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

        publication.write(history.run_file(root, pd.Timestamp("2030-01-01", tz="UTC"), "m", "1"), write)

    monkeypatch.setattr(history, "_stage_parquet", full)
    out = invoke("predict", "--config", scored, "--as-of", "2025-12-01", code=1)
    assert "No space left on device" in out and "free some space" in out
    assert snapshot(output) == before  # the new scores were written (staged) already: none of it is in place
    assert not list(output.rglob(".*")) and not (output / "history" / "as_of_date=2030-01-01").exists()


def test_a_failing_database_history_restores_the_files_already_put_in_place(scored, tmp_path, monkeypatch):
    """The database step runs after the renames: when it fails, the backups of the old files go back."""
    import importlib

    publish = importlib.import_module("leadscore.pipelines.outputs.publish")
    output = tmp_path / "output"
    scored.write_text(scored.read_text() + f'\n[history]\nsql_url = "sqlite:///{tmp_path / "history.db"}"\n')
    before = snapshot(output)

    def locked(step):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(publish, "_apply_sql", locked)
    out = invoke("predict", "--config", scored, "--as-of", "2025-12-01", code=1)
    assert "database is locked" in out
    assert snapshot(output) == before and not list(output.rglob(".*"))
    with sqlite3.connect(tmp_path / "history.db") as connection:
        assert connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []


def test_a_clean_run_leaves_no_stale_rejects(tmp_path):
    config = small_project(tmp_path)
    leads = tmp_path / "data" / "leads.csv"
    leads.write_text(LEADS + "L4,not a date,,\n")
    invoke("validate", "--config", config, code=1)
    rejects = tmp_path / "output" / "rejects"
    assert (rejects / "leads.csv").exists() and (rejects / "problems.csv").exists()
    leads.write_text(LEADS)
    invoke("grade", "--config", config, code=0)  # any verb that validates: its clean run clears the rejects
    assert sorted(p.name for p in rejects.iterdir()) == []  # nothing of the earlier run survives


def test_a_killed_runs_journal_is_rolled_back_by_the_next_start_of_any_verb(tmp_path):
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs.files import frame_writer
    from leadscore.pipelines.outputs.publish import project_publication

    config = small_project(tmp_path)
    target = tmp_path / "output" / "grades.csv"
    dead = project_publication(load_settings(config))
    temp = dead.write(target, frame_writer(pd.DataFrame({"a": [1]}), target))
    dead.journal.handle.close()  # killed: its lock is gone, its journal and temporary stay
    result = runner.invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 0 and not temp.exists() and not target.exists()
    assert not [p for p in (tmp_path / "output").iterdir() if p.name.startswith(".leadscore-publish-")]


# -- further hostile targets -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "culprit"),
    [
        ("data/LEADS.csv", "differs only in case from an input (table 'leads')"),  # one file on macOS / Windows
        ("a/b/../../data/leads.csv", "resolves to an input (table 'leads')"),  # `..` through folders that are not there
        ("alias/leads.csv", "resolves to an input (table 'leads')"),  # a symlinked folder
        ("dangling.csv", "resolves to an input (table 'events')"),  # a symlink to an input not there yet
        ("hard.csv", "resolves to an input (table 'leads')"),  # the same file under a second name
        ("mlflow.csv", "resolves to the MLflow store"),  # a symlink to mlflow.db
        ("mlartifacts/run/metrics.csv", "is inside the MLflow artifact root"),
        ("output/history/as_of_date=2025-01-01/x.csv", "is inside the score history"),
        ("crm.csv", "resolves to the database of an input (exports.more_events[0])"),  # a SQLite file behind a URL
        ("more.csv", "resolves to an input (exports.more_events[1])"),
    ],
)
def test_grade_refuses_every_name_of_what_the_project_reads_or_owns(tmp_path, no_work, target, culprit):
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE touches (lead_id TEXT)")
    (tmp_path / "more.csv").write_text("lead_id,occurred_at,event_type\n")
    extra = (
        f'[[exports.more_events]]\nsql_url = "sqlite:///{db}"\nsql_table = "touches"\n'
        '[[exports.more_events]]\npath = "more.csv"\n'
    )
    config = small_project(tmp_path, extra, skip=("events",))
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "data" / "events.csv")
    os.link(tmp_path / "data" / "leads.csv", tmp_path / "hard.csv")
    (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\x00")
    (tmp_path / "mlflow.csv").symlink_to(tmp_path / "mlflow.db")
    if target == "crm.csv":
        (tmp_path / "crm.csv").symlink_to(db)
    before = snapshot(tmp_path / "data") | snapshot(tmp_path / "mlflow.db") | {str(db): db.read_bytes()}
    out = invoke("grade", "--config", config, "--out", tmp_path / target, code=2)
    assert f"--out {tmp_path / target}: {culprit}" in out
    assert before == snapshot(tmp_path / "data") | snapshot(tmp_path / "mlflow.db") | {str(db): db.read_bytes()}


def test_an_out_that_is_a_folder_is_refused(tmp_path, no_work):
    config = small_project(tmp_path)
    (tmp_path / "scores.csv").mkdir()
    out = invoke("grade", "--config", config, "--out", tmp_path / "scores.csv", code=2)
    assert f"--out {tmp_path / 'scores.csv'}: is a folder" in out


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, no_work):
    config = small_project(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "grades.csv").write_text("old\n")
    with read_only(locked):
        out = invoke("grade", "--config", config, "--out", locked / "grades.csv", code=2)
    assert f"no permission to write in '{locked}'" in out and (locked / "grades.csv").read_text() == "old\n"


def test_a_read_only_rejects_folder_stops_validate_and_train_before_any_work(tmp_path, no_work):
    config = small_project(tmp_path)
    rejects = tmp_path / "output" / "rejects"
    rejects.mkdir(parents=True)
    with read_only(rejects):
        for verb in ("validate", "train"):
            out = invoke(verb, "--config", config, code=2)
            assert "output.dir (validation rejects)" in out and f"no permission to write in '{rejects}'" in out


def test_output_dir_whose_rejects_would_replace_an_input_is_refused(tmp_path, no_work):
    config = small_project(tmp_path, '[output]\ndir = "."\n')
    config.write_text(config.read_text().replace('path = "data/leads.csv"', 'path = "rejects/leads.csv"'))
    (tmp_path / "rejects").mkdir()
    (tmp_path / "rejects" / "leads.csv").write_text(LEADS)
    out = invoke("validate", "--config", config, code=2)
    assert "output.dir (validation rejects)" in out and "resolves to an input (table 'leads')" in out
    assert (tmp_path / "rejects" / "leads.csv").read_text() == LEADS


def test_output_dir_inside_the_mlflow_artifact_root_is_refused(tmp_path, no_work):
    config = small_project(tmp_path, '[output]\ndir = "mlartifacts/output"\n')
    out = invoke("grade", "--config", config, code=2)
    assert "is inside the MLflow artifact root" in out


@pytest.mark.parametrize(
    ("history", "culprit"),
    [
        ('path = "data"', "history.path {tmp}/data: is a parent folder of an input (table 'leads')"),
        ('path = "mlartifacts/history"', "is inside the MLflow artifact root"),
        ('sql_url = "sqlite:///{tmp}/mlflow.db"', "history.sql_url: is the MLflow store"),
        (
            'sql_url = "sqlite:///{tmp}/data/leads.csv"',
            "history.sql_url {tmp}/data/leads.csv: resolves to an input (table 'leads')",
        ),
    ],
)
def test_a_history_over_what_the_project_owns_is_refused_before_the_model_loads(
    tmp_path, no_work, monkeypatch, history, culprit
):
    monkeypatch.setattr("leadscore.pipelines.outputs.tracking.load_conversion_model", lambda uri: pytest.fail("load"))
    config = small_project(tmp_path, "[history]\n" + history.format(tmp=tmp_path) + "\n")
    out = invoke("predict", "--config", config, code=2)
    assert culprit.format(tmp=tmp_path) in out
    assert (tmp_path / "data" / "leads.csv").read_text() == LEADS


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--to-sql", "scores", "--sql-url", "sqlite:///{tmp}/mlflow.db"], "--to-sql: is the MLflow store"),
        (["--to-sql", "score_history", "--sql-url", "sqlite:///{tmp}/h.db"], "--to-sql score_history: is the score"),
        (["--out", "{tmp}/s.parquet", "--contributions", "{tmp}/s.parquet"], "two outputs of this run would go"),
        (["--out", "{tmp}/output/rejects/leads.csv"], "two outputs of this run would go to one file"),
    ],
)
def test_predict_refuses_sql_tables_and_files_it_owns_or_writes_twice(tmp_path, no_work, args, culprit):
    config = small_project(tmp_path, f'[history]\nsql_url = "sqlite:///{tmp_path}/h.db"\n')
    out = invoke("predict", "--config", config, *[a.format(tmp=tmp_path) for a in args], code=2)
    assert culprit in out


# -- the owned paths, as units ---------------------------------------------------------------------------------------
def test_a_relative_sqlite_url_is_owned_from_both_folders_it_may_mean(tmp_path, monkeypatch):
    from leadscore.pipelines.outputs.targets import sqlite_files

    monkeypatch.chdir(tmp_path)
    config_folder = tmp_path / "project"
    assert sqlite_files("sqlite:///crm.db?mode=ro", config_folder) == [tmp_path / "crm.db", config_folder / "crm.db"]
    assert sqlite_files("sqlite:////abs/crm.db") == [Path("/abs/crm.db")]
    assert sqlite_files("sqlite+pysqlite:///:memory:") == sqlite_files("postgresql://h/db") == []


def test_owned_paths_name_every_kind_of_thing_the_project_keeps(tmp_path):
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs.targets import owned_paths

    config = small_project(
        tmp_path, '[history]\nsql_url = "sqlite:////srv/h.db"\n[output]\nsql_url = "sqlite:////srv/o.db"\n'
    )
    kinds = {(item.key, item.what) for item in owned_paths(load_settings(config))}
    assert kinds == {
        ("input", "an input (table 'leads')"),
        ("input", "an input (table 'accounts')"),
        ("input", "an input (table 'events')"),
        ("input", "an input (table 'opportunities')"),
        ("config", "the config"),
        ("mlflow", "the MLflow store"),
        ("mlflow", "the MLflow artifact root"),
        ("history_db", "the score history's database"),
        ("output_db", "the output database (output.sql_url)"),
    }
