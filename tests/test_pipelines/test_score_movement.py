"""Score movement end to end on sample data (issue 31): a model trained at a past date scores at two later dates;
every lead scored by both runs gets its `score_change`, and the biggest movers' `change_reasons` add up to it."""

import json
import re
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.outputs.history import read_history

runner = CliRunner()
RUNS = ("2025-07-01", "2025-07-15")
POINTS = re.compile(r"([+-]\d+) points?(?= \||$)")


def predict(config, as_of: str, *model: str):
    out = config.parent / "output" / f"scores_{as_of}.csv"
    options = ["--config", str(config), "--as-of", as_of, "--out", str(out), "--json", *model]
    result = runner.invoke(app, ["predict", *options])
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, dtype={"lead_id": "string"}), json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def moved(sample_project, tmp_path_factory):
    """A project with its own store and history: trained on data up to 2025-06-30, then two runs two weeks apart."""
    folder = tmp_path_factory.mktemp("moved")
    config = folder / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    result = runner.invoke(app, ["train", "--config", str(config), "--as-of", "2025-06-30", "--promote"])
    assert result.exit_code == 0, result.output
    first, _, _ = predict(config, RUNS[0])
    second, summary, _ = predict(config, RUNS[1])
    return config, first, second, summary


def points(reasons: str) -> list[int]:
    return [int(p) for p in POINTS.findall(reasons)]


def test_every_lead_scored_in_both_runs_has_its_change(moved):
    _, first, second, summary = moved
    assert first["score_change"].isna().all()  # nothing was scored before the first run
    both = second.merge(first[["lead_id", "score"]], on="lead_id", suffixes=("", "_before"), how="left")
    again = both["score_before"].notna()
    assert again.sum() > 0.8 * len(second)
    assert (both.loc[again, "score_change"] == both.loc[again, "score"] - both.loc[again, "score_before"]).all()
    assert both.loc[~again, "score_change"].isna().all()
    assert summary["movement"]["compared"] == int(again.sum())
    assert summary["movement"]["moved"] == int((both["score_change"].fillna(0) != 0).sum()) > 0


def test_the_biggest_movers_reasons_add_up_to_their_change(moved):
    _, _, second, _ = moved
    movers = second.reindex(second["score_change"].abs().sort_values(ascending=False).index).head(20)
    for row in movers.itertuples():
        assert isinstance(row.change_reasons, str) and row.change_reasons, row
        assert sum(points(row.change_reasons)) == row.score_change, row.change_reasons
        named = [part for part in row.change_reasons.split(" | ") if not part.startswith("other changes")]
        assert 1 <= len(named) <= 2
    unmoved = second[second["score_change"] == 0]
    assert unmoved["change_reasons"].isna().all()  # no move, nothing to explain (empty in the CSV)


def test_the_history_keeps_the_run_and_monitor_lists_the_movers(moved):
    config, _, second, _ = moved
    stored = read_history(load_settings(config), with_contributions=True)
    latest = stored[stored["as_of"] == stored["as_of"].max()].set_index("lead_id")
    assert latest["top_contributions"].notna().all() and latest["margin"].notna().all()
    by_lead = second.set_index("lead_id")
    assert (
        latest["score_change"]
        .reindex(by_lead.index)
        .astype("Float64")
        .equals(by_lead["score_change"].astype("Float64"))
    )
    out = config.parent / "output" / "monitor.html"
    result = runner.invoke(app, ["monitor", "--config", str(config), "--out", str(out), "--json"])
    assert result.exit_code in (0, 3), result.output
    movers = json.loads(result.stdout)["movers"]
    expected = second.dropna(subset=["score_change"]).assign(size=lambda f: f["score_change"].abs())
    expected = expected.sort_values(["size", "lead_id"], ascending=[False, True]).head(10)
    assert [m["lead_id"] for m in movers] == expected["lead_id"].tolist()
    assert [m["score_change"] for m in movers] == expected["score_change"].astype(int).tolist()
    assert "Biggest score moves" in out.read_text()


def test_a_new_model_is_a_reason_and_the_parts_still_add_up(moved, tmp_path):
    config, _, _, _ = moved
    result = runner.invoke(app, ["train", "--config", str(config), "--as-of", "2025-07-20", "--promote"])
    assert result.exit_code == 0, result.output
    third, summary, _ = predict(config, "2025-07-29")
    assert summary["model_version"] == "2"
    moved_rows = third[third["score_change"].fillna(0) != 0]
    assert len(moved_rows) and moved_rows["change_reasons"].str.contains("new model v2 (was v1)", regex=False).any()
    for row in moved_rows.itertuples():
        assert sum(points(row.change_reasons)) == row.score_change, row.change_reasons


def test_an_older_history_still_gives_the_change_without_reasons(moved, caplog):
    """A history written before score movement (no margin, no contributions) still gives every score_change."""
    config, first, second, _ = moved
    settings = load_settings(config)
    old_root = config.parent / "old_history"
    first_run = next((settings.history_dir / f"as_of_date={RUNS[0]}").glob("*.parquet"))
    target = old_root / first_run.parent.name / first_run.name
    target.parent.mkdir(parents=True)
    old = pd.read_parquet(first_run).drop(columns=["margin", "top_contributions", "score_change", "change_reasons"])
    old.to_parquet(target, index=False)
    older = config.parent / "older.toml"
    shutil.copy(config, older)
    with older.open("a") as handle:
        handle.write(f'\n[history]\npath = "{old_root}"\n')
    # version 1 as in the second run, whichever model is champion by now
    caplog.set_level("INFO", logger="leadscore.pipelines.verbs.movement")
    again, _, _ = predict(older, RUNS[1], "--model", "models:/leadscore-conversion/1")
    assert again["score_change"].fillna(999).tolist() == second["score_change"].fillna(999).tolist()
    assert again["change_reasons"].isna().all()
    notes = [r.getMessage() for r in caplog.records if "without change_reasons" in r.getMessage()]
    assert len(notes) == 1 and "kept no contributions" in notes[0]
