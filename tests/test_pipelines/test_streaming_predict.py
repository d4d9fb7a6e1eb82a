"""Streaming predict (issue 32): leads in partitions by a stable hash of the lead id, events spilled and validated by
partition; the scores, the rejects, the validation rejects and the score history are those of the single pass."""

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.partitions import LeadRouter, TableParts, partition_of
from leadscore.pipelines.intake.streamed import spill_source
from leadscore.pipelines.intake.validation import load_crm

runner = CliRunner()
NOW = pd.Timestamp("2026-12-01", tz="UTC")  # the wall clock a problem's message quotes, fixed for comparisons


def test_partition_of_is_a_stable_hash_of_the_id_text():
    ids = pd.Series(["L1", "L2", "L3", None, "L1"], dtype="string")
    parts = partition_of(ids, 7)
    assert parts.tolist() == [1, 3, 3, 0, 1]  # pandas' SipHash under its fixed key: the same in every run
    assert parts[0] == parts[4] and parts[3] == 0  # one id, one partition; a missing id goes to 0
    # a categorical (the events' lead ids) lands where its text does
    assert partition_of(ids.astype("category"), 7).tolist() == parts.tolist()
    # and in another process (Python's hash() of str is salted per process)
    code = "import pandas as pd; from leadscore.pipelines.intake.partitions import partition_of; "
    code += "print(partition_of(pd.Series(['L1','L2','L3']), 7).tolist())"
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert shown.strip() == "[1, 3, 3]"


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=50), st.integers(1, 40))
def test_every_id_gets_one_partition_in_range(ids, partitions):
    parts = partition_of(pd.Series(ids, dtype="string"), partitions)
    assert ((parts >= 0) & (parts < partitions)).all()
    frame = pd.DataFrame({"id": ids, "part": parts})
    assert frame.groupby("id")["part"].nunique().max() == 1


def test_a_lead_goes_where_its_account_goes_and_without_one_where_its_id_goes():
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5"],
            "account_id": pd.Series(["A1", "A2", "A1", None, "A2"], dtype="string"),
        }
    )
    router = LeadRouter.of_leads(leads["lead_id"], leads["account_id"], 7)
    account = partition_of(pd.Series(["A1", "A2"]), 7)
    own = partition_of(pd.Series(["L4", "nope"]), 7)
    assert account.tolist() != [own[0], own[0]]  # the ids do not all hash alike: the test tells them apart
    asked = pd.Series(["L3", "L1", "L5", "L2", "L4", "nope", None], dtype="string")
    expected = [account[0], account[0], account[1], account[1], own[0], own[1], 0]
    assert router.of(asked).tolist() == expected  # account-mates together; no account, or unknown: the id's own
    assert router.of(asked.astype("category")).tolist() == expected
    # without an account column every lead goes where its id does, as the spill of the raw events routes them
    assert router.of(leads["lead_id"]).tolist() != partition_of(leads["lead_id"], 7).tolist()
    alone = LeadRouter.of_leads(leads["lead_id"], None, 7)
    assert alone.of(leads["lead_id"]).tolist() == partition_of(leads["lead_id"], 7).tolist()


def test_a_table_read_back_by_partition_is_its_rows_in_order_with_the_whole_types(tmp_path):
    frame = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "d"],
            "title": pd.Categorical(["x", "y", "x", "x"], categories=["z", "y", "x"]),
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-02", None, "2026-01-04"], utc=True),
        }
    )
    parts = TableParts.write(frame, np.array([1, 0, 1, 1]), partitions=3, folder=tmp_path)
    one = parts.read(1)
    pd.testing.assert_frame_equal(one, frame.iloc[[0, 2, 3]].reset_index(drop=True))
    assert list(one["title"].cat.categories) == ["z", "y", "x"]  # every level, in the whole table's order
    pd.testing.assert_frame_equal(parts.read(2), frame.iloc[:0])  # a partition without rows: none, same types


@pytest.fixture(scope="module")
def broken_events_project(trained_project, tmp_path_factory):
    """The trained sample project with a few broken events (unknown and missing leads, an unreadable and a future
    timestamp, an unknown type, an event before its lead), written as a Parquet file of several row groups."""
    folder = tmp_path_factory.mktemp("streamed")
    text = trained_project.read_text()
    source = text.split('[tables.events]\npath = "')[1].split('"')[0]
    events = pd.read_parquet(source).astype({"occurred_at": "object", "lead_id": "object"})
    events.loc[5, "lead_id"], events.loc[100, "lead_id"], events.loc[5000, "lead_id"] = "nope", "nope2", None
    events.loc[17, "occurred_at"], events.loc[3000, "occurred_at"] = "garbage", "2099-01-01"
    events.loc[6000, "occurred_at"], events.loc[4000, "event_type"] = "1990-01-01", "Weird Thing"
    events = events.astype({"occurred_at": "string", "lead_id": "string"})
    events.to_parquet(folder / "events.parquet", row_group_size=20_000)
    # the configs sit beside the trained project's (its MLflow store is found from there)
    return folder, text.replace(source, str(folder / "events.parquet")), trained_project.parent


def _config(project, folder, text, name, partitions):
    config = project / f"streamed_{name}.toml"
    assert text.count("[output]\n") == 1 and text.count('dir = "output"') == 1
    text = text.replace("[output]\n", f"[output]\npartitions = {partitions}\n")
    config.write_text(text.replace('dir = "output"', f'dir = "{folder / name}"'))
    return config


def _without_run_id(output: str) -> str:
    return re.sub(r"MLflow run \w+", "MLflow run", output)


def _predict(config, out, *options):
    result = runner.invoke(app, ["predict", "--config", str(config), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_scores_rejects_and_history_are_the_single_pass_ones(broken_events_project, monkeypatch):
    import leadscore.pipelines.intake.streamed as streamed
    import leadscore.pipelines.intake.validation as validation

    monkeypatch.setattr(validation, "_wall_clock", lambda: NOW)
    monkeypatch.setattr(streamed, "BATCH_ROWS", 40_000)  # several batches, so that verdicts travel across them
    folder, text, project = broken_events_project
    # two runs two weeks apart: the second one's score movement reads the first one's history rows
    as_of = load_crm(load_settings(_config(project, folder, text, "whole", 1))).as_of
    earlier = (as_of - pd.Timedelta(days=14)).isoformat()
    runs = {}
    for name, partitions in (("whole", 1), ("three", 3), ("eleven", 11)):
        config = _config(project, folder, text, name, partitions)
        runs[f"{name} earlier"] = _predict(config, folder / f"{name}_earlier.csv", "--as-of", earlier)
        runs[name] = _predict(config, folder / f"{name}.csv")
    whole = pd.read_csv(folder / "whole.csv")
    assert whole["score_change"].notna().mean() > 0.8 and whole["change_reasons"].notna().any()
    for name in ("three", "eleven"):
        for run in ("", "_earlier"):
            assert (folder / f"{name}{run}.csv").read_bytes() == (folder / f"whole{run}.csv").read_bytes()
        assert (folder / f"{name}.rejects.csv").read_bytes() == (folder / "whole.rejects.csv").read_bytes()
        for file in ("events.csv", "problems.csv"):
            assert (folder / name / "rejects" / file).read_bytes() == (folder / "whole" / "rejects" / file).read_bytes()
        pd.testing.assert_frame_equal(
            pd.read_parquet(folder / name / "history"), pd.read_parquet(folder / "whole" / "history")
        )
        # the counts, routes, movement, warnings and top leads printed (each run logs its own MLflow run)
        for run in (name, f"{name} earlier"):
            assert _without_run_id(runs[run].replace(name, "whole")) == _without_run_id(
                runs[run.replace(name, "whole")]
            )
    assert "score movement:" in runs["whole"] and "outside the range" in runs["whole"]
    problems = pd.read_csv(folder / "three" / "rejects" / "problems.csv")
    assert {"unknown lead", "no lead", "unparseable timestamp", "in the future", "before lead created"} <= set(
        problems["rule"]
    )


def test_the_validated_events_are_the_single_pass_ones_partition_by_partition(
    broken_events_project, tmp_path, monkeypatch
):
    import leadscore.pipelines.intake.validation as validation

    monkeypatch.setattr(validation, "_wall_clock", lambda: NOW)
    folder, text, project = broken_events_project
    settings = load_settings(_config(project, folder, text, "direct", 1))
    whole = load_crm(settings)
    parts = load_crm(settings, events=spill_source(settings.tables.events, settings, partitions=5, folder=tmp_path))
    assert (
        parts.as_of == whole.as_of and "events" not in parts.tables and parts.events.rows == len(whole.tables["events"])
    )
    spilled = pd.concat([parts.events.read(i) for i in range(5)], ignore_index=True)
    key = ["lead_id", "occurred_at", "event_type"]
    as_text = {"lead_id": "string", "event_type": "string"}
    pd.testing.assert_frame_equal(
        spilled.astype(as_text).sort_values(key, ignore_index=True),
        whole.tables["events"].astype(as_text).sort_values(key, ignore_index=True),
        check_dtype=False,
    )
    router = parts.events.router
    for i in range(5):  # each partition holds exactly the events of its leads: those of the accounts routed there
        lead = parts.events.read(i)["lead_id"]
        assert (router.of(lead) == i).all()
    leads = whole.tables["leads"]
    owner = leads["account_id"].astype("string").fillna(leads["lead_id"].astype("string"))
    assert np.array_equal(router.of(leads["lead_id"]), partition_of(owner, 5))
    assert not (tmp_path / "spilled").exists()  # the raw spill is gone once validated: the disk holds events once
    rejected = parts.rejects["events"]
    assert rejected["source_row"].is_monotonic_increasing and np.array_equal(
        rejected["source_row"], whole.rejects["events"]["source_row"]
    )


def test_auto_keeps_a_small_book_in_one_pass(trained_project):
    from leadscore.pipelines.verbs.predict import PredictTargets, partitions_for_run

    settings = load_settings(trained_project)
    assert settings.output.partitions == "auto"
    assert partitions_for_run(settings, PredictTargets()) == 1  # 170k events: far below output.partition_events
    few = settings.model_copy(update={"output": settings.output.model_copy(update={"partition_events": 50_000})})
    assert partitions_for_run(few, PredictTargets()) == 4  # one partition per 50,000 events
    # an output that needs every score at once keeps the single pass
    assert partitions_for_run(few, PredictTargets(contributions=settings.output_dir / "c.parquet")) == 1


def test_leads_without_accounts_stream_to_the_single_pass_scores_and_history(broken_events_project, monkeypatch):
    import leadscore.pipelines.intake.validation as validation

    monkeypatch.setattr(validation, "_wall_clock", lambda: NOW)
    folder, text, project = broken_events_project
    source = text.split('[tables.leads]\npath = "')[1].split('"')[0]
    pd.read_parquet(source).drop(columns="account_id").to_parquet(folder / "leads_alone.parquet")
    text = text.replace(source, str(folder / "leads_alone.parquet"))
    for name, partitions in (("alone_whole", 1), ("alone_five", 5)):
        _predict(_config(project, folder, text, name, partitions), folder / f"{name}.csv")
    assert (folder / "alone_five.csv").read_bytes() == (folder / "alone_whole.csv").read_bytes()
    assert pd.read_csv(folder / "alone_whole.csv")["account_id"].isna().all()
    whole = pd.read_parquet(folder / "alone_whole" / "history")
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "alone_five" / "history"), whole)
