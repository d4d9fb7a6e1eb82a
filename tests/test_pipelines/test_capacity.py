"""Capacity-aware hand-off in `predict` and the capture table in `backtest` (docs/capacity.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.models.capacity import EARLIER, NEW, OVER, CapacityRules
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.verbs.capacity import backtest_capture, earlier_handoffs, route_within_capacity, week_of

runner = CliRunner()
UTC = "UTC"


def _history(rows: list[tuple[str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [r[0] for r in rows],
            "as_of": pd.to_datetime([r[1] for r in rows], utc=True),
            "due_by": [pd.Timestamp("2030-01-01", tz=UTC) if r[2] else pd.NaT for r in rows],
        }
    )


def test_week_is_the_iso_week_of_as_of():
    start, label = week_of(pd.Timestamp("2025-12-31 15:00", tz=UTC))  # a Wednesday in ISO week 2026-W01
    assert start == pd.Timestamp("2025-12-29", tz=UTC) and label == "2026-W01"


def test_earlier_handoffs_week_boundary_and_reruns():
    history = _history(
        [
            ("last_week", "2025-12-28 23:59", True),  # Sunday before: last week's capacity
            ("monday", "2025-12-29 00:00", True),
            ("nurtured", "2025-12-30 09:00", False),  # no due_by: not handed to sales
            ("same_run", "2025-12-31 09:00", True),  # the run being redone: not "earlier"
            ("later", "2026-01-02 09:00", True),
        ]
    )
    found = earlier_handoffs(history, pd.Timestamp("2025-12-31 09:00", tz=UTC))
    assert found.tolist() == ["monday"]


def test_earlier_rows_of_leads_already_accepted_used_no_capacity():
    history = _history([("accepted_before", "2025-12-29 10:00", True), ("accepted_after", "2025-12-29 10:00", True)])
    accepted_at = pd.Series(
        pd.to_datetime(["2025-12-01", "2025-12-30"], utc=True), index=["accepted_before", "accepted_after"]
    )
    found = earlier_handoffs(history, pd.Timestamp("2025-12-31 09:00", tz=UTC), accepted_at=accepted_at)
    assert found.tolist() == ["accepted_after"]  # handed over on Monday, accepted on Tuesday: it used capacity


def _crm(leads: pd.DataFrame, accounts: pd.DataFrame | None = None) -> CrmData:
    tables = {"leads": leads} | ({"accounts": accounts} if accounts is not None else {})
    return CrmData(tables=tables, as_of=pd.Timestamp("2025-12-31 09:00", tz=UTC))


def _scores(ids, p, sla) -> pd.DataFrame:
    due = [pd.Timestamp("2026-01-01", tz=UTC) if s == s else pd.NaT for s in sla]
    return pd.DataFrame(
        {
            "lead_id": ids,
            "probability": p,
            "action": ["sales call" if s == s else "nurture" for s in sla],
            "sla_hours": sla,
            "due_by": due,
        }
    )


def test_route_within_capacity_per_team_with_amount_from_accounts():
    leads = pd.DataFrame(
        {
            "lead_id": ["a", "b", "c", "d", "e"],
            "account_id": ["X", "Y", "X", "Z", "Y"],
            "country": ["US", "US", "DE", "DE", None],
            "sales_accepted_at": pd.to_datetime([None, None, None, "2025-12-01", None], utc=True),
        }
    )
    accounts = pd.DataFrame({"account_id": ["X", "Y", "Z"], "annual_revenue": [1000.0, 5000.0, None]})
    scores = _scores(["a", "b", "c", "d", "e"], [0.5, 0.2, 0.3, 0.9, 0.4], [24.0, 24.0, 48.0, 48.0, 24.0])
    rules = CapacityRules(per_week=0, by="country", teams={"US": 1, "DE": 1}, value_column="annual_revenue")
    history = _history([("c-old", "2025-12-29 10:00", True)])
    out, summary = route_within_capacity(
        scores, rules, data=_crm(leads, accounts), history=history, as_of=pd.Timestamp("2025-12-31 09:00", tz=UTC)
    )
    out = out.set_index("lead_id")
    # US: b (0.2 x 5000 = 1000) beats a (0.5 x 1000 = 500); DE: d accepted (no capacity used), c-old is not open and
    # its team is not known here: it used the (missing) team's capacity; DE still has 1: c; e: no country, capacity 0
    assert out["expected_value"].tolist() == pytest.approx([500.0, 1000.0, 300.0, 0.9 * 3000.0, 2000.0])
    assert out["handoff"].tolist() == [OVER, NEW, NEW, "accepted by sales", OVER]
    assert out.loc["a", "action"] == "nurture" and np.isnan(out.loc["a", "sla_hours"])
    assert pd.isna(out.loc["a", "due_by"])
    assert out.loc["a", "table_action"] == "sales call" and out.loc["b", "action"] == "sales call"
    assert summary.loc["US", "expected_conversions"] == pytest.approx(0.2)
    assert summary.loc["US", "rules_expected_conversions"] == pytest.approx(0.7)
    assert summary.loc["(missing)", "over_capacity"] == 1
    assert summary.loc["total", "new"] == 2


def test_route_within_capacity_keeps_earlier_handoff_and_counts_it_once():
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"]})
    scores = _scores(["a", "b", "c"], [0.1, 0.8, 0.7], [24.0, 24.0, 24.0])
    history = _history([("a", "2025-12-29 10:00", True), ("a", "2025-12-30 10:00", True)])
    out, summary = route_within_capacity(
        scores,
        CapacityRules(per_week=2),
        data=_crm(leads),
        history=history,
        as_of=pd.Timestamp("2025-12-31 09:00", tz=UTC),
    )
    assert out["handoff"].tolist() == [EARLIER, NEW, OVER]
    assert summary.loc["all", "week_total"] == 2


def test_unknown_team_column_is_a_usage_error_naming_the_key():
    from leadscore.pipelines.errors import UsageError

    scores = _scores(["a"], [0.5], [24.0])
    with pytest.raises(UsageError, match="grades.capacity.by.*'territory'"):
        route_within_capacity(
            scores,
            CapacityRules(per_week=1, by="territory"),
            data=_crm(pd.DataFrame({"lead_id": ["a"]})),
            history=_history([]),
            as_of=pd.Timestamp("2025-12-31", tz=UTC),
        )


def test_backtest_capture_groups_by_iso_week(tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text(
        '[tables.leads]\npath = "l.csv"\n[tables.opportunities]\npath = "o.csv"\n[grades.capacity]\nper_week = 1\n'
    )
    settings = load_settings(config)
    times = ["2025-12-29 00:00", "2026-01-04 23:00", "2026-01-05 00:00", "2026-01-06 00:00"]  # Sunday 23:00: week 1
    frame = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "cutoff_time": pd.to_datetime(times, utc=True)})
    predictions = pd.DataFrame(
        {
            "period": "p",
            "row": [0, 1, 2, 3],
            "converted": [0, 1, 1, 0],
            "lightgbm_calibrated": [0.1, 0.9, 0.2, 0.8],
            "rules_grade": [0.5, 0.1, 0.5, 0.1],
        }
    )
    per_week, table, _ = backtest_capture(settings, None, frame, predictions)
    assert per_week["week"].tolist() == ["2025-12-29", "2026-01-05"]
    assert per_week["lightgbm_calibrated"].tolist() == [1.0, 0.0]
    assert per_week["rules_grade"].tolist() == [0.0, 1.0]
    assert table.loc["model", "captured_conversions"] == 1.0 and table.loc["rules", "captured_conversions"] == 1.0
    assert table.loc["random", "captured_conversions"] == pytest.approx(0.5 + 0.5)
    assert backtest_capture(settings, None, frame, predictions, capacity=2)[1].loc["model", "captured_conversions"] == 2


# -- end to end: two runs in one week, a rerun, on the small sample CRM ------------------------------------------------
@pytest.fixture(scope="module")
def capacity_project(trained_project, tmp_path_factory):
    folder = tmp_path_factory.mktemp("capacity")
    config = folder / "leadscore.toml"
    config.write_text(
        trained_project.read_text()
        + f'\n[mlflow]\ntracking_uri = "sqlite:///{trained_project.parent / "mlflow.db"}"\n'
        + "\n[grades.capacity]\nper_week = 4\n"
    )
    return config


def _predict(config, as_of: str, out) -> dict:
    result = runner.invoke(app, ["predict", "--config", str(config), "--as-of", as_of, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predict_never_hands_more_than_capacity_in_a_week(capacity_project):
    folder = capacity_project.parent
    tuesday = _predict(capacity_project, "2025-12-02", folder / "tue.csv")
    thursday = _predict(capacity_project, "2025-12-04", folder / "thu.csv")
    first, second = pd.read_csv(folder / "tue.csv"), pd.read_csv(folder / "thu.csv")
    assert tuesday["capacity"]["week"] == thursday["capacity"]["week"] == "2025-W49"
    assert (first["handoff"] == OVER).any()  # the table sends more than 4: some are held back
    week = set(first.loc[first["handoff"] == NEW, "lead_id"]) | set(second.loc[second["handoff"] == NEW, "lead_id"])
    assert len(week) <= 4
    kept = second.loc[second["handoff"] == EARLIER, "lead_id"]
    assert set(kept) <= set(first.loc[first["handoff"] == NEW, "lead_id"])  # kept, not counted again
    t = thursday["capacity"]["teams"]["all"]
    assert t["week_total"] <= 4 and t["handed_off_earlier"] == (first["handoff"] == NEW).sum()
    held = first[first["handoff"] == OVER]
    assert (held["action"] == "nurture").all() and held["due_by"].isna().all() and held["table_action"].notna().all()
    # the capture figures are the sums of the scores file
    with_sales = second[second["handoff"].isin([NEW, EARLIER])]
    assert t["expected_conversions"] == pytest.approx(with_sales["probability"].sum(), abs=1e-3)
    # a rerun of Thursday (the history now holds Thursday itself) gives identical scores
    _predict(capacity_project, "2025-12-04", folder / "thu2.csv")
    pd.testing.assert_frame_equal(second, pd.read_csv(folder / "thu2.csv"))


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("per_week = -1", "grades.capacity.per_week"),
        ("per_week = 5\nteams = { EU = 2 }", "needs grades.capacity.by"),
        ("per_week = 5\nper_team = 3", "per_team"),
    ],
)
def test_bad_capacity_config_names_the_key(tmp_path, extra, key):
    from leadscore.pipelines.config import ConfigError

    config = tmp_path / "leadscore.toml"
    config.write_text(
        f'[tables.leads]\npath = "l.csv"\n[tables.opportunities]\npath = "o.csv"\n[grades.capacity]\n{extra}\n'
    )
    with pytest.raises(ConfigError, match=key):
        load_settings(config)


def test_capture_lines_print_one_row_per_team():
    from leadscore.pipelines.verbs.capacity import capture_lines

    row = {
        "capacity": 5,
        "handed_off_earlier": 2,
        "new": 3,
        "week_total": 5,
        "over_capacity": 7,
        "to_sales": 4,
        "expected_conversions": 1.26,
        "rules_leads": 11,
        "rules_expected_conversions": 2.0,
        "rules_at_capacity_random": 0.73,
    }
    lines = capture_lines(
        {
            "week": "2026-W01",
            "week_start": "2025-12-29T00:00:00+00:00",
            "by": "country",
            "value_column": None,
            "teams": {"US": row, "total": row},
        }
    )
    assert lines[0].startswith("capacity, ISO week 2026-W01 (from 2025-12-29), per country")
    table = lines[1].splitlines()
    assert table[0].split() == [
        "capacity",
        "earlier",
        "new",
        "week",
        "over",
        "capacity",
        "with",
        "sales",
        "expected",
        "conv.",
        "rules",
        "leads",
        "rules",
        "expected",
        "conv.",
        "rules",
        "at",
        "capacity",
    ]
    assert table[-2].split() == ["US", "5", "2", "3", "5", "7", "4", "1.3", "11", "2.0", "0.7"]


def test_backtest_capture_per_team_uses_each_teams_capacity(tmp_path):
    config = tmp_path / "leadscore.toml"
    config.write_text(
        '[tables.leads]\npath = "l.csv"\n[tables.opportunities]\npath = "o.csv"\n'
        '[grades.capacity]\nper_week = 0\nby = "country"\nteams = { US = 1 }\n'
    )
    settings = load_settings(config)
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "country": ["US", "US", "DE"]})
    monday = pd.to_datetime(["2025-12-29 00:00"] * 3, utc=True)
    frame = pd.DataFrame({"lead_id": ["a", "b", "c"], "cutoff_time": monday})
    predictions = pd.DataFrame(
        {"period": "p", "row": [0, 1, 2], "converted": [0, 1, 1], "lightgbm_calibrated": [0.2, 0.9, 0.8]}
    )
    per_team, table, _ = backtest_capture(settings, _crm(leads), frame, predictions)
    assert per_team[["team", "capacity", "lightgbm_calibrated"]].values.tolist() == [["DE", 0, 0.0], ["US", 1, 1.0]]
    assert table.loc["model", "captured_conversions"] == 1.0 and table.loc["model", "all_conversions"] == 2
