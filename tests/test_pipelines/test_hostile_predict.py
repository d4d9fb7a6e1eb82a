"""`predict` on hostile CRM tables with a trained champion: it refuses broken ground, never scores a lead as open
whose deal was rejected, and accounts for every lead (scored + rejected + closed = leads in)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.ground import check_model_fits_crm

runner = CliRunner()

LEADS = (
    "lead_id,created_at,account_id,job_title,email_domain_type\n"
    "321,2025-01-01,A1,VP Sales,business\n 322 ,2025-01-02,A1,CTO,business\nL3,2025-01-03,,Analyst,free\n"
    "L4,2025-01-04,A1,Head of IT,business\nL5,2025-01-05,,,free\n"
)
ACCOUNTS = "account_id,industry,employee_count\nA1,software,120\n"
EVENTS = (
    "lead_id,occurred_at,event_type\n321.0,2025-02-05,DEMO_REQUEST\n321,2025-02-06, Pricing Page View \n"
    "322,2025-02-07,page_view\nL4,2025-02-08,email_open\n"
)
OPPS = (
    "opportunity_id,lead_id,created_at,closed_at,status,amount\n"
    "O1,L3,2025-01-10,2025-02-01,won,1000\nO2,L4,2025-01-10,,open,\nO3,321.0,2025-02-09,,Open,\n"
)


def project(tmp_path: Path, trained: Path, *, extra: str = "", **texts: str) -> Path:
    tables = {"leads": LEADS, "accounts": ACCOUNTS, "events": EVENTS, "opportunities": OPPS} | texts
    parts = [extra]
    for name, text in tables.items():
        (tmp_path / f"{name}.csv").write_text(text)
        parts.append(f'[tables.{name}]\npath = "{name}.csv"\n')
    parts.append(f'[mlflow]\ntracking_uri = "sqlite:///{trained.parent / "mlflow.db"}"\n')
    config = tmp_path / "leadscore.toml"
    config.write_text("\n".join(parts))
    return config


def predict(config: Path, code: int, *args: str) -> str:
    result = runner.invoke(app, ["predict", "--config", str(config), "--out", str(config.parent / "s.csv"), *args])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    return result.output


def outputs(config: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = config.parent
    return pd.read_csv(folder / "s.csv", dtype=str), pd.read_csv(folder / "s.rejects.csv", dtype=str)


def test_hostile_but_valid_input_is_scored_and_every_lead_accounted_for(tmp_path, trained_project):
    config = project(tmp_path, trained_project)
    out = predict(config, 0)
    scores, rejects = outputs(config)
    # 5 leads in: L3 closed (won), the other four open and scored; ids normalised so 321 keeps its events
    assert sorted(scores["lead_id"]) == ["321", "322", "L4", "L5"] and rejects.empty
    assert "as of 2025-02-09T00:00:00+00:00" in out
    top = scores.set_index("lead_id")
    # 321's events were written 321.0 / DEMO_REQUEST / ' Pricing Page View ': they count (last one 3 days ago)
    reasons = " ".join(top.loc["321", ["reasons_positive", "reasons_negative"]].fillna(""))
    # one concept gives one reason, worded by its most telling feature: the recency of the last (high-intent)
    # activity, or the last 7 days' activity against the 21 before (1.0x without those events)
    recent = r"(last activity|pricing-page view or demo request): 3 days|weekly average[^|]*: (?!1\.0x)\d+\.\dx"
    assert re.search(recent, reasons), reasons


def test_a_lead_whose_deal_was_rejected_is_never_scored_as_open(tmp_path, trained_project):
    opps = OPPS + "O4,322,2025-01-20,2025-02-01,wonn,900\n"  # a won deal with a typo in its status
    config = project(tmp_path, trained_project, opportunities=opps, extra="[validation]\nmax_rejected_share = 0.5\n")
    out = predict(config, 0)
    scores, rejects = outputs(config)
    assert "322" not in set(scores["lead_id"])
    assert rejects["lead_id"].tolist() == ["322"]
    assert rejects["reason"].iloc[0].startswith("validation: opportunity rejected (status: unknown final status)")
    assert len(scores) + len(rejects) + 1 == 5  # + L3, closed
    assert "2 row(s) rejected by validation" in out  # the deal, and its lead withheld
    # the rejected deal itself is written out with its reason, as `validate` writes it (not only its lead)
    deals = pd.read_csv(config.parent / "output" / "rejects" / "opportunities.csv", dtype=str)
    assert deals["opportunity_id"].tolist() == ["O4"] and "unknown final status" in deals["reject_reason"].iloc[0]
    assert str(config.parent / "output" / "rejects" / "opportunities.csv") in out


@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        (
            "opportunities",
            OPPS.replace(",won,", ",wonn,").replace(",open,", ",lost-ish,").replace(",Open,", ",closed?,"),
            "table 'opportunities': validation rejected 3 of 3 rows as broken (100.0%), more than "
            "validation.max_rejected_share = 2.0%",
        ),
        ("leads", LEADS.replace("2025-01-0", "2025-13-0"), "table 'leads': validation rejected 5 of 5 rows as broken"),
        ("leads", "id,created\nL1,2025-01-01\n", "table 'leads': leads: required column 'lead_id' is absent"),
    ],
    ids=["all-deals-rejected", "all-leads-rejected", "leads-unusable"],
)
def test_predict_refuses_broken_ground(tmp_path, trained_project, table, text, expected):
    config = project(tmp_path, trained_project, **{table: text})
    out = predict(config, 1)
    assert expected in out and "hint:" in out
    assert not (tmp_path / "s.csv").exists()


def test_no_open_lead_is_a_message_not_a_traceback(tmp_path, trained_project):
    opps = "opportunity_id,lead_id,created_at,closed_at,status,amount\n" + "".join(
        f"O{i},{lead},2025-01-10,2025-02-01,lost,1\n" for i, lead in enumerate(["321", "322", "L3", "L4", "L5"])
    )
    out = predict(project(tmp_path, trained_project, opportunities=opps), 1)
    assert "no lead is open at as_of 2025-02-08T00:00:00+00:00" in out


def test_an_event_in_the_year_2100_does_not_move_now(tmp_path, trained_project):
    events = EVENTS + "L4,2100-01-01,page_view\n"  # rejected: 1 of 5 events, within this project's share
    extra = "[validation]\nmax_rejected_share = { events = 0.25 }\n"
    out = predict(project(tmp_path, trained_project, events=events, extra=extra), 0)
    assert "as of 2025-02-09T00:00:00+00:00" in out
    scores, _ = outputs(tmp_path / "leadscore.toml")
    assert set(scores["as_of"]) == {"2025-02-09 00:00:00+00:00"}


def test_out_resolving_to_an_input_is_refused_before_the_model_loads(tmp_path, trained_project, monkeypatch):
    config = project(tmp_path, trained_project)
    monkeypatch.setattr(
        "leadscore.pipelines.outputs.tracking.load_conversion_model", lambda uri: pytest.fail("model loaded")
    )
    result = runner.invoke(app, ["predict", "--config", str(config), "--out", str(tmp_path / "events.csv")])
    assert result.exit_code == 2 and "resolves to an input" in result.output
    (tmp_path / "events.parquet").symlink_to(tmp_path / "events.csv")
    clash = runner.invoke(
        app,
        [
            "predict",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "x.csv"),
            "--contributions",
            str(tmp_path / "events.parquet"),
        ],
    )
    assert clash.exit_code == 2 and "--contributions" in clash.output and "resolves to an input" in clash.output


def test_a_flat_mode_model_is_refused_on_crm_data():
    class FlatModel:
        feature_names_in_ = ["age", "job", "euribor3m"]

    with pytest.raises(UsageError, match="a flat-mode model cannot score CRM tables") as caught:
        check_model_fits_crm(FlatModel(), "models:/bank@champion")
    assert caught.value.exit_code == 2 and "age, job, euribor3m" in str(caught.value)
