"""Routing end to end on the sample CRM: the model's band and sales' decisions in `predict`, the re-routes `monitor`
counts, and an as-of after the end of the data refused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.models.grade_rules import NEW_ACTIVITY_EVENTS
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.validation import check_as_of_within_data

runner = CliRunner()
CAPACITY = 3  # per week: fewer than the hot leads, so that capacity holds some back


REJECTED = 30  # leads the table sends to sales that the fixture has sales reject 3 days before the as-of


@pytest.fixture(scope="module")
def routed(trained_project, tmp_path_factory):
    """`predict` at the end of the sample data with a small weekly capacity, after sales rejected (3 days before the
    as-of, "no response") REJECTED leads that the table sends to sales: (config, summary, scores, rejected ids)."""
    from leadscore.pipelines.grading import grade_open_leads
    from leadscore.pipelines.intake.validation import load_crm

    folder = tmp_path_factory.mktemp("routing")
    settings = load_settings(trained_project)
    data = load_crm(settings)
    graded = grade_open_leads(settings, data)
    accepted = graded["stage_rule"] == "SQL: accepted by sales"
    picked = graded.loc[graded["sla_hours"].notna() & ~accepted & graded["route_note"].isna(), "lead_id"]
    picked = picked.head(REJECTED)
    source = settings.resolve(settings.tables.leads.path)
    leads = pd.read_parquet(source)
    mine = leads["lead_id"].astype("string").isin(set(picked)).to_numpy()
    leads.loc[mine, "sales_rejected_at"] = data.as_of - pd.Timedelta(days=3)
    leads.loc[mine, "rejection_reason"] = "no response"
    leads.to_parquet(folder / "leads.parquet", index=False)
    config = folder / "leadscore.toml"
    config.write_text(
        trained_project.read_text().replace(f'"{source}"', f'"{folder / "leads.parquet"}"')
        + f'\n[mlflow]\ntracking_uri = "sqlite:///{trained_project.parent / "mlflow.db"}"\n'
        + f"\n[grades.capacity]\nper_week = {CAPACITY}\n"
    )
    assert str(folder / "leads.parquet") in config.read_text() and len(picked) == REJECTED
    out = folder / "scores.csv"
    result = runner.invoke(app, ["predict", "--config", str(config), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"lead_id": "string"}, parse_dates=["as_of"])
    return config, json.loads(result.stdout), scores, set(picked)


def _crm(config) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = load_settings(config)
    leads = pd.read_parquet(settings.resolve(settings.tables.leads.path))
    events = pd.read_parquet(
        settings.resolve(settings.tables.events.path), columns=["lead_id", "occurred_at", "event_type"]
    )
    return leads.astype({"lead_id": "string"}), events.astype({"lead_id": "string"})


def test_no_hot_lead_is_nurtured_or_recycled_unless_capacity_or_sales_holds_it_back(routed):
    _, summary, scores, _ = routed
    cut = summary["bands"]
    assert 0 < cut["base_rate"] < 1 and cut["hot"] == pytest.approx(2 * cut["base_rate"])
    hot = scores[scores["probability"] >= cut["hot"]]
    assert len(hot) > CAPACITY and (hot["band"] == "hot").all()
    assert (scores.loc[scores["probability"] < cut["cold"], "band"] == "cold").all()
    quiet = hot[hot["action"].isin(["nurture", "recycle"])]
    held = quiet["handoff"] == "over capacity"
    assert held.any()  # capacity held some hot leads back, and their rows say so
    assert quiet.loc[held, "route_note"].str.contains("over this week's capacity: held back from sales").all()
    # any other quiet hot lead is one sales rejected, with no new activity since: sales' "no" stands
    assert quiet.loc[~held, "route_note"].str.startswith("rejected by sales on ").all()
    assert "new activity since" not in "".join(quiet.loc[~held, "route_note"])
    # the cold leads the table would send to sales are reviewed instead, unless sales accepted them
    cold_sales = scores[(scores["band"] == "cold") & scores["sla_hours"].notna()]
    assert cold_sales["route_note"].str.startswith("accepted by sales: stays with sales").all()


def test_no_rejected_lead_goes_back_to_sales_without_new_activity(routed):
    config, _, scores, picked = routed
    leads, events = _crm(config)
    as_of = scores["as_of"].iloc[0]
    info = leads.set_index("lead_id")
    rejected = pd.to_datetime(scores["lead_id"].map(info["sales_rejected_at"]), utc=True)
    accepted = pd.to_datetime(scores["lead_id"].map(info["sales_accepted_at"]), utc=True)
    stands = (rejected < as_of) & ~((accepted > rejected) & (accepted < as_of))
    wanted = events[events["event_type"].isin(NEW_ACTIVITY_EVENTS) & (events["occurred_at"] < as_of)]
    last = pd.to_datetime(scores["lead_id"].map(wanted.groupby("lead_id")["occurred_at"].max()), utc=True)
    active = last > rejected
    assert (stands & ~active).sum() > 10 and (stands & active).sum() > 0
    assert scores.loc[stands & ~active, "sla_hours"].isna().all()
    # the leads the table sends to sales and sales rejected: those quiet since are kept from sales, and say so
    ours = scores["lead_id"].isin(picked)
    assert (ours & ~active).sum() >= 10 and (ours & active).sum() > 0
    assert scores.loc[ours & ~active, "action"].isin(["nurture", "review"]).all()
    assert scores.loc[ours & ~active, "route_note"].str.contains("; kept from sales until new activity").any()
    reason = scores["lead_id"].map(info["rejection_reason"]).fillna("no reason given")
    said = "rejected by sales on " + rejected.dt.strftime("%Y-%m-%d") + ": " + reason
    notes = scores["route_note"].fillna("")
    assert all(n.startswith(s) for n, s in zip(notes[stands], said[stands], strict=True))
    assert notes[stands & active].str.contains("; new activity since: ").all()
    assert not notes[~stands].str.contains("rejected by sales").any()


def test_monitor_counts_rejected_leads_sent_to_sales_again(routed):
    from leadscore.pipelines.verbs.monitor import build_monitoring

    config, _, scores, _ = routed
    result = build_monitoring(load_settings(config), score_drift=False)
    back = scores["route_note"].fillna("").str.contains("new activity since") & scores["sla_hours"].notna()
    assert result.reroutes["rerouted"].sum() == back.sum() > 0
    assert result.reroutes["without_new_activity"].sum() == 0


@pytest.mark.parametrize("verb", ["predict", "grade", "train"])
def test_an_as_of_after_the_end_of_the_data_is_refused_naming_the_end(trained_project, tmp_path, verb):
    history = trained_project.parent / "output" / "history"
    before = sorted(history.glob("as_of_date=*")) if history.exists() else []
    extra = ["--out", str(tmp_path / "out.csv")] if verb != "train" else []
    result = runner.invoke(app, [verb, "--config", str(trained_project), "--as-of", "2026-03-01", *extra])
    assert result.exit_code == 2, result.output
    assert "--as-of: 2026-03-01 00:00:00 UTC is after the end of the data" in result.output
    assert "the latest timestamp in the tables is 2025-12-31" in result.output
    assert (sorted(history.glob("as_of_date=*")) if history.exists() else []) == before  # no history row written


def test_the_as_of_may_be_the_end_of_the_data_and_not_a_second_later():
    end = pd.Timestamp("2025-12-31 17:20:05", tz="UTC")
    check_as_of_within_data(end, end, option="--as-of")
    with pytest.raises(UsageError, match=r"^--as-of: 2025-12-31 17:20:06 UTC is after the end of the data") as refused:
        check_as_of_within_data(end + pd.Timedelta(seconds=1), end, option="--as-of")
    assert refused.value.hint.startswith("give a time up to 2025-12-31T17:20:05 (e.g. 2025-12-31)")
