"""Exports as users bring them: a Salesforce report export and a HubSpot UI export, shaped like the genuine ones
(UI labels as headers, US dates with two-digit years and a 12-hour clock, a report footer, no Task/Event/engagement
files, deals from contacts that no lead converted into, "Unqualified" leads, newer stage names, label deal stages,
a converted lead whose deal is missing, a deal with no date). Each goes `init --from` -> `validate` -> `grade` ->
`train` -> `predict` with exact counts of what was set aside and rejected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from tests.test_pipelines.test_presets import SMALL_MODEL, crm_story

FOOTER = (
    '\n"Copyright © 2000-2026 salesforce.com, inc. All rights reserved."\n'
    '"Confidential Information - Do Not Distribute"\n'
)
FROM_CONTACTS = 31  # Salesforce deals of contacts: no lead converted into them
CONVERTED_WITHOUT_DEAL = 2
SAME_DAY_CLOSE = 3
HUBSPOT_COMPANY_DEALS = 12


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _us(times: pd.Series) -> pd.Series:
    """Salesforce's US report format: `02/23/26 08:55 PM`."""
    return times.dt.strftime("%m/%d/%y %I:%M %p")


def _us_day(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%-m/%-d/%Y")


def salesforce_report_export(folder: Path) -> dict[str, int]:
    """Lead, Opportunity and Account report exports; returns the expected counts."""
    folder.mkdir(parents=True, exist_ok=True)
    s = crm_story()
    lead_ids = np.array([f"00Q{i:015d}" for i in s["i"]])
    has_opp = (s["outcome"].isin(["won", "lost"]) | (s["outcome"].eq("open") & (s["i"] % 3 != 0))).to_numpy()
    opp_ids = np.where(has_opp, [f"006{i:015d}" for i in s["i"]], "")
    converted = s["outcome"].isin(["won", "lost"]) | (s["outcome"].eq("open") & has_opp)
    status = s["outcome"].map(
        {"won": "Qualified", "lost": "Qualified", "disqualified": "Unqualified", "open": "Working"}
    )
    leads = pd.DataFrame(
        {
            "Lead ID": lead_ids,
            "First Name": "Pat",
            "Title": s["title"],
            "Company / Account": "Acme",
            "Email": [f"p{i}@acme.example" for i in s["i"]],
            "Phone": "+1 555 0100",
            "Lead Source": s["source"],
            "Status": status,
            "Industry": s["industry"],
            "No. of Employees": s["employees"],
            "Annual Revenue": s["employees"] * 1e5,
            "Create Date": _us(s["created"]),
            "Converted": np.where(converted, "1", "0"),
            "Converted Opportunity ID": opp_ids,
            "Last Modified Date": _us(s["closes"].where(s["outcome"] != "open", s["created"])),
        }
    )
    # two converted leads whose deals are not in the Opportunity export (converted in another pipeline)
    lost_deals = np.flatnonzero((s["outcome"] == "won").to_numpy())[:CONVERTED_WITHOUT_DEAL]
    deals = s[has_opp].copy()
    deals = deals[~deals["i"].isin(lost_deals)]
    stage = deals["outcome"].map({"won": "Closed Won", "lost": "Closed Lost", "open": "Proposal"})
    stage = stage.where(deals["i"] % 2 == 0, stage.replace({"Proposal": "Negotiation"}))
    created = deals["created"] + pd.Timedelta(days=3)
    close_day = deals["closes"]
    same_day = deals.index[deals["outcome"].eq("won")][-SAME_DAY_CLOSE:]  # closed the day they were created, 11 PM
    created = created.where(~deals.index.isin(same_day), close_day.dt.normalize() + pd.Timedelta(hours=23))
    opportunities = pd.DataFrame(
        {
            "Opportunity ID": [f"006{i:015d}" for i in deals["i"]],
            "Opportunity Name": "Deal",
            "Stage": stage,
            "Close Date": _us_day(close_day),
            "Created Date": _us(created),
            "Amount": "12000",
            "Won": np.where(deals["outcome"] == "won", "1", "0"),
            "Closed": np.where(deals["outcome"].isin(["won", "lost"]), "1", "0"),
            "Account ID": "001000000000000001",
        }
    )
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2024-02-01", tz="UTC")
    from_contacts = pd.DataFrame(
        {
            "Opportunity ID": [f"006C{i:014d}" for i in range(FROM_CONTACTS)],
            "Opportunity Name": "Renewal",
            "Stage": rng.choice(["Closed Won", "Closed Lost", "Prospecting"], FROM_CONTACTS),
            "Close Date": _us_day(pd.Series(start + pd.to_timedelta(rng.uniform(30, 300, FROM_CONTACTS), unit="D"))),
            "Created Date": _us(pd.Series(start + pd.to_timedelta(rng.uniform(0, 29, FROM_CONTACTS), unit="D"))),
            "Amount": "5000",
            "Won": "0",
            "Closed": "0",
            "Account ID": "001000000000000001",
        }
    )
    from_contacts.loc[0, "Created Date"] = None  # a prospect with no date, of a contact
    pd.concat([opportunities, from_contacts]).to_csv(folder / "report_opportunities.csv", index=False)
    leads.to_csv(folder / "report_leads.csv", index=False)
    for name in ("report_opportunities.csv", "report_leads.csv"):
        with open(folder / name, "a", encoding="utf-8") as handle:
            handle.write(FOOTER)
    pd.DataFrame(
        {
            "Account ID": ["001000000000000001"],
            "Account Name": ["Acme"],
            "Industry": ["Technology"],
            "Employees": ["120"],
            "Annual Revenue": ["12000000"],
            "Billing Country": ["United States"],
        }
    ).to_csv(folder / "accounts.csv", index=False)
    still_open = s["outcome"].eq("open")
    return {
        "leads_aside": CONVERTED_WITHOUT_DEAL + 2,  # the two footer lines
        "opportunities_aside": FROM_CONTACTS + 2,
        "open": int(still_open.sum()),
        "disqualified": int(s["outcome"].eq("disqualified").sum()),
    }


def hubspot_ui_export(folder: Path) -> dict[str, int]:
    """Contacts, companies and deals as HubSpot's UI exports them (labels, label values); no engagements file."""
    folder.mkdir(parents=True, exist_ok=True)
    s = crm_story(seed=12)
    ids = (s["i"] + 1001).astype(str)
    company = (s["i"] % 40 + 9001).astype(str)
    has_deal = s["outcome"].isin(["won", "lost", "open"])
    hubspot_time = "%Y-%m-%d %H:%M"
    sql_date = s["created"] + pd.Timedelta(days=2)
    pd.DataFrame(
        {
            "Record ID": ids,
            "First Name": "Pat",
            "Last Name": "Lee",
            "Email": [f"p{i}@acme.example" for i in s["i"]],
            "Job Title": s["title"],
            "Phone Number": "+1 555 0100",
            "Country/Region": "United States",
            "Original Traffic Source": s["source"].map(
                {"Partner Referral": "Referrals", "Web": "Organic Search", "Purchased List": "Offline Sources"}
            ),
            "Lead Status": s["outcome"].map(
                {"won": "Open Deal", "lost": "Open Deal", "open": "In Progress", "disqualified": "Unqualified"}
            ),
            "Lifecycle Stage": "Lead",
            "Create Date": s["created"].dt.strftime(hubspot_time),
            "Last Modified Date": s["closes"].dt.strftime(hubspot_time),
            "Primary Associated Company ID": company,
            "Became a Sales Qualified Lead Date": sql_date.dt.strftime(hubspot_time).where(has_deal, None),
        }
    ).to_csv(folder / "hubspot-crm-exports-all-contacts-2025-04-26.csv", index=False)
    pd.DataFrame(
        {
            "Record ID": [str(c) for c in range(9001, 9041)],
            "Company name": "Acme",
            "Industry": np.resize(["Computer Software", "Retail", "Banking"], 40),
            "Number of Employees": (np.arange(40) * 50 + 10).astype(str),
            "Annual Revenue": "1000000",
            "Country/Region": "United States",
            "Create Date": "2023-12-01 09:00",
        }
    ).to_csv(folder / "hubspot-crm-exports-all-companies-2025-04-26.csv", index=False)
    deals = s[has_deal]
    stage = deals["outcome"].map({"won": "Closed Won", "lost": "Closed Lost", "open": "Contract Sent"})
    frame = pd.DataFrame(
        {
            "Record ID": (deals["i"] + 70001).astype(str),
            "Deal Name": "Deal",
            "Pipeline": "Sales Pipeline",
            "Deal Stage": stage,
            "Create Date": (deals["created"] + pd.Timedelta(days=3)).dt.strftime(hubspot_time),
            "Close Date": deals["closes"].dt.strftime(hubspot_time).where(deals["outcome"] != "open", None),
            "Amount": "8000",
            "Is Closed Won": np.where(deals["outcome"] == "won", "true", "false"),
            "Is Deal Closed?": np.where(deals["outcome"] != "open", "true", "false"),
            "Associated Contact": "Pat Lee (p@acme.example)",
            "Associated Contact IDs": ids[has_deal] + ";" + (deals["i"] + 5001).astype(str),
        }
    )
    undated = frame.index[deals["outcome"].eq("open").to_numpy()][0]
    frame.loc[undated, ["Create Date", "Deal Stage"]] = [None, "Appointment Scheduled"]  # a deal with no date
    company_deals = pd.DataFrame(
        {
            "Record ID": [str(80001 + i) for i in range(HUBSPOT_COMPANY_DEALS)],
            "Deal Name": "Upsell",
            "Pipeline": "Sales Pipeline",
            "Deal Stage": "Closed Won",
            "Create Date": "2024-06-01 10:00",
            "Close Date": "2024-07-01 10:00",
            "Amount": "3000",
            "Is Closed Won": "true",
            "Is Deal Closed?": "true",
            "Associated Contact": None,
            "Associated Contact IDs": None,
        }
    )
    pd.concat([frame, company_deals]).to_csv(folder / "hubspot-crm-exports-all-deals-2025-04-26.csv", index=False)
    return {
        "opportunities_aside": HUBSPOT_COMPANY_DEALS,
        "opportunities_broken": 1,
        "open": int(s["outcome"].eq("open").sum()) - 1,  # the undated deal's contact is withheld
    }


def _project(tmp_path: Path, preset: str, build) -> tuple[Path, dict[str, int], str]:
    expected = build(tmp_path / "export")
    out = invoke("init", tmp_path / "project", "--preset", preset, "--from", tmp_path / "export")
    config = tmp_path / "project" / "leadscore.toml"
    config.write_text(config.read_text() + SMALL_MODEL)
    return config, expected, out


def test_init_from_a_salesforce_report_export_prints_the_field_table(tmp_path):
    config, _, out = _project(tmp_path, "salesforce", salesforce_report_export)
    assert "  Lead            report_leads.csv          13/15  Country: lead_country; the country fit rule\n" in out
    assert "  Opportunity     report_opportunities.csv  7/7\n" in out
    assert "  Task            (no file)                 0/3    all: calls and e-mails logged by sales" in out
    assert "fit rules: dropped country (no column for lead_country); the others' weights rescaled" in out
    text = config.read_text()
    assert 'path = "../export/report_leads.csv"' in text and "Task.csv" not in text and "more_events" not in text
    assert "country =" not in text.split("[tables.leads]")[1].split("[")[0]  # no role for an absent column


def test_salesforce_report_export_runs_end_to_end(tmp_path):
    config, expected, _ = _project(tmp_path, "salesforce", salesforce_report_export)
    out = invoke("validate", "--config", config)
    assert f"{expected['opportunities_aside']:,} set aside" in out
    assert "0 error(s)" in out and "the other verbs run on the valid rows" in out
    assert "read two-digit years as 20xx" in out
    assert f"{SAME_DAY_CLOSE} close date(s) on the creation's day" in out
    assert "table 'events': file" not in out  # init left the absent Task file out: nothing to warn about
    rejects = pd.read_csv(config.parent / "output" / "rejects" / "opportunities.csv")
    assert (rejects["reject_kind"] == "set aside").sum() == expected["opportunities_aside"]
    assert rejects["reject_reason"].str.contains("no lead").sum() == FROM_CONTACTS
    leads = pd.read_csv(config.parent / "output" / "rejects" / "leads.csv")
    assert leads["reject_reason"].str.startswith("converted (IsConverted)").sum() == CONVERTED_WITHOUT_DEAL
    assert len(leads) == expected["leads_aside"]

    graded = invoke("grade", "--config", config, "--analyze")
    grades = pd.read_csv(config.parent / "output" / "grades.csv")
    assert len(grades) == expected["open"]
    assert grades["fit_grade"].isin(["A", "B"]).any()  # the preset's fit rules read the Lead's own fields
    assert "closed-deal analysis" in graded
    invoke("train", "--config", config)
    invoke("predict", "--config", config, "--out", tmp_path / "scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == expected["open"]


def test_hubspot_ui_export_runs_end_to_end(tmp_path):
    config, expected, out = _project(tmp_path, "hubspot", hubspot_ui_export)
    assert "  contacts        hubspot-crm-exports-all-contacts-2025-04-26.csv   11/11\n" in out
    assert "  engagements     (no file)                                         0/3    all: calls, e-mails" in out
    validated = invoke("validate", "--config", config)
    assert f"{expected['opportunities_aside']:,} set aside" in validated
    assert "1 error(s)" in validated and "the other verbs run on the valid rows" in validated
    invoke("grade", "--config", config)
    grades = pd.read_csv(config.parent / "output" / "grades.csv")
    assert len(grades) == expected["open"]
    assert grades["fit_grade"].isin(["A", "B"]).any()
    assert grades["stage"].eq("SQL").any()  # "Became a Sales Qualified Lead Date" is the SQL stage
    invoke("train", "--config", config)
    invoke("predict", "--config", config, "--out", tmp_path / "scores.csv")
    assert len(pd.read_csv(tmp_path / "scores.csv")) == expected["open"]


@pytest.mark.parametrize("preset", ["salesforce", "hubspot"])
def test_a_missing_optional_file_is_a_warning_in_every_verb(tmp_path, preset, caplog):
    build = salesforce_report_export if preset == "salesforce" else hubspot_ui_export
    config, expected, _ = _project(tmp_path, preset, build)
    text = config.read_text()
    name = "accounts.csv" if preset == "salesforce" else "hubspot-crm-exports-all-companies-2025-04-26.csv"
    (tmp_path / "export" / name).unlink()
    config.write_text(text)
    warning = f"table 'accounts': file {tmp_path / 'export' / name} not found: left out"
    assert f"warning: {warning}" in invoke("validate", "--config", config)
    for verb in (["grade"], ["train"], ["predict", "--out", tmp_path / "scores.csv"]):
        caplog.clear()
        result = CliRunner().invoke(app, [verb[0], "--config", str(config), *map(str, verb[1:])])
        assert result.exit_code == 0, result.output
        assert any(r.levelname == "WARNING" and warning in r.getMessage() for r in caplog.records), verb
    assert len(pd.read_csv(tmp_path / "scores.csv")) == expected["open"]
