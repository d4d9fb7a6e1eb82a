"""The score history: each predict run stored once, a rerun replacing its own rows, Parquet or SQL alike."""

import pandas as pd
import pytest

from leadscore.pipelines.config import Settings
from leadscore.pipelines.outputs.history import (
    HISTORY_COLUMNS,
    append_history,
    previous_runs,
    read_history,
    run_file,
)


def run_scores(as_of: str, version: str, leads=("L1", "L2", "L3"), probability=0.5) -> pd.DataFrame:
    stamp = pd.Timestamp(as_of, tz="UTC")
    n = len(leads)
    return pd.DataFrame(
        {
            "lead_id": list(leads),
            "account_id": ["A1"] * n,
            "as_of": [stamp] * n,
            "probability": [probability] * n,
            "score": [50] * n,
            "cell": ["A1", "B2", "D4"][:n],
            "stage": ["SQL", "MQL", "IQL"][:n],
            "action": ["sales call", "sales follow-up", "nurture"][:n],
            "due_by": [stamp + pd.Timedelta(hours=24), stamp + pd.Timedelta(hours=48), pd.NaT][:n],
            "model_name": ["leadscore-conversion"] * n,
            "model_version": [version] * n,
        }
    )


@pytest.fixture(params=["parquet", "sql"])
def settings(request, tmp_path) -> Settings:
    history = {"path": str(tmp_path / "history")}
    if request.param == "sql":
        history = {"sql_url": f"sqlite:///{tmp_path / 'history.db'}", "sql_table": "score_history"}
    return Settings.model_validate(
        {"tables": {"leads": {"path": "l.csv"}, "opportunities": {"path": "o.csv"}}, "history": history}
    ).model_copy(update={"base_dir": tmp_path})


def test_same_run_twice_keeps_one_copy(settings):
    append_history(settings, run_scores("2025-06-01", "1"))
    once = read_history(settings)
    append_history(settings, run_scores("2025-06-01", "1"))
    twice = read_history(settings)
    assert list(twice.columns) == HISTORY_COLUMNS and len(twice) == 3
    pd.testing.assert_frame_equal(once, twice)


def test_a_rerun_replaces_its_own_rows_and_leaves_other_runs(settings):
    append_history(settings, run_scores("2025-06-01", "1"))
    append_history(settings, run_scores("2025-06-01", "2"))  # same day, another model version: another run
    append_history(settings, run_scores("2025-07-01", "2"))
    append_history(settings, run_scores("2025-06-01", "1", leads=("L1", "L9"), probability=0.9))  # rerun, new rows
    rows = read_history(settings).sort_values(["as_of", "model_version", "lead_id"]).reset_index(drop=True)
    assert len(rows) == 2 + 3 + 3
    rerun = rows[(rows["model_version"] == "1")]
    assert list(rerun["lead_id"]) == ["L1", "L9"] and (rerun["probability"] == 0.9).all()
    assert rows["as_of"].dt.tz is not None and str(rows["due_by"].dtype).startswith("datetime64")
    assert rows.loc[rows["cell"] == "D4", "due_by"].isna().all()
    assert rows.loc[(rows["lead_id"] == "L1") & (rows["model_version"] == "2"), "due_by"].iloc[0] == pd.Timestamp(
        "2025-06-02", tz="UTC"
    )


def test_since_keeps_later_runs_only(settings):
    append_history(settings, run_scores("2025-06-01", "1"))
    append_history(settings, run_scores("2025-07-01", "1"))
    rows = read_history(settings, since=pd.Timestamp("2025-06-15", tz="UTC"))
    assert set(rows["as_of"]) == {pd.Timestamp("2025-07-01", tz="UTC")}


def test_parquet_layout_is_partitioned_by_as_of_date(tmp_path):
    root = tmp_path / "history"
    path = run_file(root, pd.Timestamp("2025-06-01 08:30", tz="UTC"), "my model", "3")
    assert path.parent == root / "as_of_date=2025-06-01"
    assert path.name == "my-model__v3__20250601T083000.parquet"


def test_disabled_history_writes_nothing(tmp_path):
    settings = Settings.model_validate(
        {"tables": {"leads": {"path": "l.csv"}, "opportunities": {"path": "o.csv"}}, "history": {"enabled": False}}
    ).model_copy(update={"base_dir": tmp_path})
    assert append_history(settings, run_scores("2025-06-01", "1")) is None
    assert not (tmp_path / "output").exists()


def test_a_shadow_run_is_stored_as_such(settings):
    append_history(settings, run_scores("2025-06-01", "1"))
    append_history(settings, run_scores("2025-06-01", "2"), production=False)
    rows = read_history(settings)
    assert rows.groupby("model_version")["production"].agg(set).to_dict() == {"1": {True}, "2": {False}}


def test_runs_stored_before_the_production_flag_read_as_production(settings, tmp_path):
    """A history written by an earlier release has no `production` column: its runs were the routed ones."""
    old = run_scores("2025-06-01", "1")
    if settings.history.sql_url:
        import sqlalchemy as sa

        engine = sa.create_engine(settings.history.sql_url)
        with engine.begin() as connection:
            stored = old.assign(run_key="old").drop(columns="account_id")
            for column in ("as_of", "due_by"):
                stored[column] = stored[column].dt.tz_localize(None)
            stored.to_sql("score_history", connection, index=False)
        engine.dispose()
    else:
        path = run_file(tmp_path / "history", pd.Timestamp("2025-06-01", tz="UTC"), "leadscore-conversion", "1")
        path.parent.mkdir(parents=True)
        old.drop(columns="account_id").to_parquet(path, index=False)
    assert read_history(settings)["production"].tolist() == [True] * 3
    append_history(settings, run_scores("2025-07-01", "2"), production=False)  # an old SQL table gains the column
    rows = read_history(settings)
    assert rows.groupby("model_version")["production"].agg(set).to_dict() == {"1": {True}, "2": {False}}


def test_previous_runs_are_each_leads_latest_production_row_before_the_run(settings):
    """What score movement compares with: the lead's last scores sales saw before this run (a shadow run's and the
    run's own as-of are not earlier runs), read back with the contributions kept for it."""
    kept = '[["events_demo_request_count_30d",0.5,1.0]]'
    append_history(settings, run_scores("2025-06-01", "1").assign(margin=0.25, top_contributions=kept))
    append_history(settings, run_scores("2025-07-01", "1", leads=("L1", "L2")).assign(score=60))
    append_history(settings, run_scores("2025-07-01", "2", leads=("L3",)).assign(score=99), production=False)
    wanted = pd.Series(["L1", "L3", "L9"], dtype="string")
    before = previous_runs(settings, pd.Timestamp("2025-08-01", tz="UTC"), wanted).sort_values("lead_id")
    assert before["lead_id"].tolist() == ["L1", "L3"]
    assert before["as_of"].dt.strftime("%Y-%m-%d").tolist() == ["2025-07-01", "2025-06-01"]
    assert before["score"].tolist() == [60, 50]
    assert before["top_contributions"].isna().tolist() == [True, False]
    assert before.loc[before["lead_id"] == "L3", "top_contributions"].iloc[0] == kept
    assert before.loc[before["lead_id"] == "L3", "margin"].iloc[0] == 0.25
    same_day = previous_runs(settings, pd.Timestamp("2025-07-01", tz="UTC"), wanted)
    assert set(same_day["as_of"].dt.strftime("%Y-%m-%d")) == {"2025-06-01"}
    assert previous_runs(settings, pd.Timestamp("2025-06-01", tz="UTC"), wanted).empty


def test_a_history_from_before_score_movement_is_read_and_extended(settings, tmp_path):
    """Rows stored without the movement columns read as missing ones; an old SQL table gains them on the next run."""
    old = run_scores("2025-06-01", "1")
    if settings.history.sql_url:
        import sqlalchemy as sa

        engine = sa.create_engine(settings.history.sql_url)
        with engine.begin() as connection:
            stored = old.assign(run_key="old", production=True).drop(columns="account_id")
            for column in ("as_of", "due_by"):
                stored[column] = stored[column].dt.tz_localize(None)
            stored.to_sql("score_history", connection, index=False)
        engine.dispose()
    else:
        path = run_file(tmp_path / "history", pd.Timestamp("2025-06-01", tz="UTC"), "leadscore-conversion", "1")
        path.parent.mkdir(parents=True)
        old.drop(columns="account_id").to_parquet(path, index=False)
    before = previous_runs(settings, pd.Timestamp("2025-07-01", tz="UTC"), pd.Series(["L1"], dtype="string"))
    assert before["score"].tolist() == [50] and before["top_contributions"].isna().all()
    append_history(settings, run_scores("2025-07-01", "1").assign(margin=0.1, score_change=3, change_reasons="x"))
    rows = read_history(settings).sort_values(["as_of", "lead_id"])
    assert rows["score_change"].tolist() == [pd.NA] * 3 + [3] * 3
    assert rows["margin"].isna().sum() == 3
