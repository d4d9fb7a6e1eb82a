"""The pieces that read real exports, on tiny hand-made frames: US report times, checkbox outcomes, a report's
footer, UI labels, which file holds which object, `where`, set-aside rows and the per-table reject share."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leadscore.models.grade_rules import GradeRules
from leadscore.pipelines.config import ConfigError, Settings, ValidationSettings, load_settings
from leadscore.pipelines.grading import dark_fit_features, fit_reach_warning
from leadscore.pipelines.intake.exports import flag_values, outcome_from_flags, report_footer
from leadscore.pipelines.intake.ground import ground_problems
from leadscore.pipelines.intake.parsing import parse_time_column
from leadscore.pipelines.intake.sources import SET_ASIDE_COLUMN
from leadscore.pipelines.intake.validation import load_crm, rows_kept_by
from leadscore.pipelines.intake.vendors import VENDORS, find_objects, headers_as_api_names


def test_us_report_times_with_two_digit_years_and_a_12_hour_clock():
    parsed = parse_time_column(pd.Series(["02/23/26 08:55 PM", "12/01/25 12:10 AM", "1/5/70 12:30 PM", None]))
    assert parsed.values.tolist()[:3] == [
        pd.Timestamp("2026-02-23 20:55", tz="UTC"),
        pd.Timestamp("2025-12-01 00:10", tz="UTC"),
        pd.Timestamp("1970-01-05 12:30", tz="UTC"),
    ]
    assert parsed.reasons.isna().all()
    assert any("read two-digit years as 20xx (19xx from 69)" in note for note in parsed.notes)


def test_checkboxes_read_as_exports_write_them():
    values = pd.Series(["true", "1", "Yes", "", None, "false", "0", "maybe"])
    assert flag_values(values).tolist() == [True, True, True, False, False, False, False, pd.NA]


def _settings(**exports) -> Settings:
    return Settings.model_validate(
        {
            "tables": {
                "leads": {"path": "l.csv"},
                "opportunities": {
                    "path": "o.csv",
                    "columns": {"status": "StageName"},
                    "status_values": {"won": ["Closed Won"], "lost": ["Closed Lost"], "open": ["Prospecting"]},
                },
            },
            "exports": exports,
        }
    )


def test_the_won_and_closed_flags_decide_before_the_stage_name():
    deals = pd.DataFrame(
        {
            "StageName": ["Proposal", "Contract Signed", "Lost to rival", "Prospecting", "Negotiation"],
            "IsWon": ["false", "true", "false", "false", "?"],
            "IsClosed": ["false", "true", "true", "false", "?"],
        }
    )
    out = outcome_from_flags(deals, _settings(won_column="IsWon", closed_column="IsClosed"))
    # the org's own stage names do not matter; unreadable flags keep the stage
    assert out["StageName"].tolist() == ["Prospecting", "Closed Won", "Closed Lost", "Prospecting", "Negotiation"]
    assert deals["StageName"].iloc[0] == "Proposal"  # the input is not modified


def test_a_reports_footer_is_set_aside_and_nothing_else():
    frame = pd.DataFrame(
        {
            "Lead ID": ["00Q1", "Total records", "00Q2", "Copyright © 2000-2026 salesforce.com, inc.", None],
            "Created Date": ["1/2/2025", None, "1/3/2025", None, None],
        }
    )
    frame.loc[4, "Lead ID"] = "Confidential Information - Do Not Distribute"
    marked = report_footer(frame)[SET_ASIDE_COLUMN]
    # "Total records" inside the data is not at the end: only the unbroken run of footer rows at the end goes
    assert marked.notna().tolist() == [False, False, False, True, True]


def test_ui_labels_are_read_as_api_names_and_an_api_name_present_wins():
    lead = VENDORS["salesforce"].object("Lead")
    frame = pd.DataFrame(columns=["Lead ID", " create date ", "Lead Source", "LeadSource", "Unknown Field"])
    renamed = headers_as_api_names(frame, lead)
    assert list(renamed.columns) == ["Id", "CreatedDate", "Lead Source", "LeadSource", "Unknown Field"]


def test_each_object_is_found_by_its_headers_whatever_the_file_is_called(tmp_path: Path):
    (tmp_path / "report1.csv").write_text("Lead ID,Create Date,Status,Last Modified Date,Lead Source\n")
    (tmp_path / "report2.csv").write_text("Opportunity ID,Created Date,Stage,Close Date,Won,Closed\n")
    (tmp_path / "notes.txt").write_text("not an export")
    found = find_objects(VENDORS["salesforce"], tmp_path)
    assert found["Lead"].path.name == "report1.csv" and found["Opportunity"].path.name == "report2.csv"
    assert found["CampaignMember"].path is None  # its three fields are in the Lead file, which the Lead took
    assert found["Lead"].headers["CreatedDate"] == "Create Date"


def test_a_cp1252_export_is_found_and_its_encoding_noted(tmp_path: Path):
    text = "Record ID,Create Date,Job Title\n1,2025-01-01 10:00,Directeur Général\n"
    (tmp_path / "contacts.csv").write_text(text, encoding="utf-8")
    assert find_objects(VENDORS["hubspot"], tmp_path)["contacts"].encoding is None
    (tmp_path / "contacts.csv").write_bytes(text.encode("cp1252"))  # saved by Excel
    found = find_objects(VENDORS["hubspot"], tmp_path)["contacts"]
    assert found.encoding == "cp1252" and found.headers["jobtitle"] == "Job Title"


def test_where_keeps_the_rows_it_names_and_a_bad_expression_names_its_key():
    raw = pd.DataFrame({"Deal Stage": ["Won", "Prospecting", None], "amount": ["1", "2", "3"]})
    assert rows_kept_by(raw, "`Deal Stage` != 'Prospecting'", key="tables.opportunities.where").tolist() == [
        True,
        False,
        True,
    ]
    with pytest.raises(ConfigError, match="tables.opportunities.where: cannot evaluate"):
        rows_kept_by(raw, "`No Such Column` == 1", key="tables.opportunities.where")
    with pytest.raises(ConfigError, match="must be a condition"):
        rows_kept_by(raw, "amount", key="tables.opportunities.where")


def test_the_reject_share_can_differ_per_table():
    assert ValidationSettings().limit("events") == 0.02
    per_table = ValidationSettings(max_rejected_share={"events": 0.1})
    assert per_table.limit("events") == 0.1 and per_table.limit("leads") == 0.02
    with pytest.raises(ValueError, match="unknown table"):
        ValidationSettings(max_rejected_share={"deals": 0.1})


def _crm(tmp_path: Path, *, opportunities: str, extra: str = "") -> Settings:
    (tmp_path / "leads.csv").write_text("lead_id,created_at\nL1,2025-01-01T08:00:00Z\nL2,2025-01-02T08:00:00Z\n")
    (tmp_path / "opps.csv").write_text(opportunities)
    config = tmp_path / "leadscore.toml"
    config.write_text(
        f'{extra}\n[tables.leads]\npath = "leads.csv"\n[tables.opportunities]\npath = "opps.csv"\n'
        'status_values = { won = ["closedwon"], lost = ["closedlost"], open = ["open"] }\n'
    )
    return load_settings(config)


def test_deal_stage_labels_meet_their_ids_and_rows_of_no_lead_are_set_aside(tmp_path: Path):
    opportunities = (
        "opportunity_id,lead_id,created_at,closed_at,status\n"
        "O1,L1,2025-01-05,2025-02-01,Closed Won\n"
        "O2,,2025-01-05,2025-02-01,Closed Lost\n"  # a contact's deal
        "O3,L9,2025-01-05,,open\n"  # a lead not in the export
        "O4,L2,2025-01-05,,Qualified To Buy\n"  # a stage no list names: read as open
    )
    data = load_crm(_crm(tmp_path, opportunities=opportunities))
    deals = data.tables["opportunities"]
    assert deals["status"].tolist() == ["won", "open"]
    rejects = data.rejects["opportunities"]
    assert rejects["reject_kind"].tolist() == ["set aside", "set aside"]
    assert data.set_aside == {"opportunities": 2} and data.broken_rows("opportunities") == 0
    assert ground_problems(data, _crm(tmp_path, opportunities=opportunities)) == []


def test_a_close_day_on_the_creation_day_is_not_before_it(tmp_path: Path):
    opportunities = (
        "opportunity_id,lead_id,created_at,closed_at,status\n"
        "O1,L1,2025-02-01T20:00:00Z,2025-02-01,closedwon\n"  # same calendar day
        "O2,L2,2025-02-01T20:00:00Z,2025-01-28,closedlost\n"  # days before: a real mistake
    )
    data = load_crm(_crm(tmp_path, opportunities=opportunities))
    assert data.tables["opportunities"]["closed_at"].tolist() == [pd.Timestamp("2025-02-01 20:00", tz="UTC")]
    assert data.rejects["opportunities"]["reject_reason"].tolist() == ["closed_at: closed before created"]


def test_the_share_of_broken_rows_decides_per_table(tmp_path: Path):
    opportunities = "opportunity_id,lead_id,created_at,closed_at,status\nO1,L1,someday,,open\nO2,L2,2025-01-05,,open\n"
    settings = _crm(tmp_path, opportunities=opportunities)
    refusals = ground_problems(load_crm(settings), settings)
    assert [str(r).split(":")[0] for r in refusals] == ["table 'opportunities'"]
    assert "validation rejected 1 of 2 rows as broken (50.0%)" in str(refusals[0])
    lenient = _crm(
        tmp_path, opportunities=opportunities, extra="[validation]\nmax_rejected_share = { opportunities = 0.5 }"
    )
    assert ground_problems(load_crm(lenient), lenient) == []


def test_fit_rules_that_cannot_reach_b_are_named():
    rules = GradeRules()
    has = {("leads", "job_title"), ("leads", "email")}
    dark = dark_fit_features(rules, lambda t, c: (t, c) in has, custom={})
    assert dark == ["account_industry", "account_employee_count", "lead_country"]
    warning = fit_reach_warning(rules, dark)
    # seniority 30 x 100 + email 15 x 100 + country's default 40 x 10 % = 49 < B's 50
    assert warning.startswith("grades.fit: with the columns present the fit points reach at most 49, below grade B")
    assert fit_reach_warning(rules, []) is None
