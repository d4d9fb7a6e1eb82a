"""`leadscore init --preset salesforce|hubspot`: a tiny export in each vendor's documented column names runs
validate -> train -> predict with the preset's config and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app

N = 700
SMALL_MODEL = "\n[model]\nn_estimators = 60\nnum_leaves = 7\nmin_child_samples = 10\nearly_stopping_rounds = 10\n"


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _iso(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def crm_story(seed: int = 11) -> pd.DataFrame:
    """Leads over 16 months; referrals and senior titles convert more; each lead ends won, lost (with a deal),
    disqualified without a deal, or still open (the latest ones)."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 480, N)), unit="D")
    source = rng.choice(["Partner Referral", "Web", "Purchased List"], N, p=[0.3, 0.4, 0.3])
    title = rng.choice(["VP Sales", "Sales Manager", "Analyst"], N)
    p = 1 / (
        1
        + np.exp(
            -(
                -1.0
                + np.where(source == "Partner Referral", 1.6, 0.0)
                - np.where(source == "Purchased List", 1.0, 0.0)
                + np.where(title == "VP Sales", 0.8, 0.0)
            )
        )
    )
    closes = created + pd.to_timedelta(rng.uniform(12, 70, N), unit="D")
    end = pd.Timestamp("2025-04-25", tz="UTC")
    outcome = np.where(rng.random(N) < p, "won", np.where(rng.random(N) < 0.5, "lost", "disqualified"))
    outcome = np.where(closes > end, "open", outcome)
    return pd.DataFrame(
        {
            "i": np.arange(N),
            "created": created,
            "closes": closes,
            "source": source,
            "title": title,
            "outcome": outcome,
            "employees": rng.integers(5, 5000, N),
            "industry": rng.choice(["Technology", "Retail", "Banking"], N),
        }
    )


def salesforce_export(folder: Path) -> None:
    s = crm_story()
    lead_ids = [f"00Q{i:015d}" for i in s["i"]]
    has_opp = s["outcome"].isin(["won", "lost", "open"]) & (s["i"] % 3 != 0) | s["outcome"].isin(["won", "lost"])
    opp_ids = np.where(has_opp, [f"006{i:015d}" for i in s["i"]], "")
    status = s["outcome"].map(
        {
            "won": "Closed - Converted",
            "lost": "Closed - Converted",
            "disqualified": "Closed - Not Converted",
            "open": "Working - Contacted",
        }
    )
    status = status.where(~((s["outcome"] == "open") & ~has_opp), "Open - Not Contacted")
    leads = pd.DataFrame(
        {
            "Id": lead_ids,
            "CreatedDate": _iso(s["created"]),
            "Title": s["title"],
            "Email": [f"p{i}@acme.example" for i in s["i"]],
            "Phone": "+1 555 0100",
            "Country": "US",
            "LeadSource": s["source"],
            "Status": status,
            "Industry": s["industry"],
            "NumberOfEmployees": s["employees"],
            "AnnualRevenue": s["employees"] * 1e5,
            "ConvertedOpportunityId": opp_ids,
            "LastModifiedDate": _iso(s["closes"]),
        }
    )
    leads.loc[s["outcome"] == "open", "LastModifiedDate"] = _iso(s["created"])[s["outcome"] == "open"]
    leads.to_csv(folder / "Lead.csv", index=False)
    opps = s[has_opp]
    stage = opps["outcome"].map({"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation/Review"})
    pd.DataFrame(
        {
            "Id": opp_ids[has_opp],
            "Name": "Deal",
            "CreatedDate": _iso(opps["created"] + pd.Timedelta(days=3)),
            "CloseDate": opps["closes"].dt.strftime("%Y-%m-%d"),
            "StageName": stage,
            "Amount": 12000.0,
        }
    ).to_csv(folder / "Opportunity.csv", index=False)
    pd.DataFrame(
        {
            "Id": ["001000000000000001"],
            "Name": ["Acme"],
            "Industry": ["Technology"],
            "NumberOfEmployees": [120],
            "AnnualRevenue": [1.2e7],
            "BillingCountry": ["US"],
        }
    ).to_csv(folder / "Account.csv", index=False)
    touched = s[s["i"] % 2 == 0]
    pd.DataFrame(
        {
            "Id": [f"00T{i:015d}" for i in touched["i"]],
            "WhoId": [lead_ids[i] for i in touched["i"]],
            "CreatedDate": _iso(touched["created"] + pd.Timedelta(days=1)),
            "TaskSubtype": "Call",
            "Subject": "Call",
        }
    ).to_csv(folder / "Task.csv", index=False)
    met = s[s["i"] % 5 == 0]
    pd.DataFrame(
        {
            "Id": [f"00U{i:015d}" for i in met["i"]],
            "WhoId": [lead_ids[i] for i in met["i"]],
            "StartDateTime": _iso(met["created"] + pd.Timedelta(days=2)),
            "EventSubtype": "Event",
        }
    ).to_csv(folder / "Event.csv", index=False)
    members = s[s["source"] != "Purchased List"]
    pd.DataFrame(
        {
            "Id": [f"00v{i:015d}" for i in members["i"]],
            "CampaignId": "701000000000000001",
            "LeadId": [lead_ids[i] for i in members["i"]],
            "LastModifiedDate": _iso(members["created"] + pd.Timedelta(days=1)),
            "Status": np.where(members["i"] % 2 == 0, "Responded", "Sent"),
        }
    ).to_csv(folder / "CampaignMember.csv", index=False)


def hubspot_export(folder: Path) -> None:
    s = crm_story(seed=12)
    ids = (s["i"] + 1001).astype(str)
    company = (s["i"] % 40 + 9001).astype(str)
    has_deal = s["outcome"].isin(["won", "lost", "open"])
    lead_status = s["outcome"].map(
        {"won": "OPEN_DEAL", "lost": "OPEN_DEAL", "open": "IN_PROGRESS", "disqualified": "UNQUALIFIED"}
    )
    pd.DataFrame(
        {
            "hs_object_id": ids,
            "createdate": _iso(s["created"]),
            "jobtitle": s["title"],
            "email": [f"p{i}@acme.example" for i in s["i"]],
            "phone": "+1 555 0100",
            "country": "United States",
            "hs_analytics_source": s["source"].map(
                {"Partner Referral": "REFERRALS", "Web": "ORGANIC_SEARCH", "Purchased List": "OFFLINE"}
            ),
            "associatedcompanyid": company,
            "hs_lead_status": lead_status,
            "lifecyclestage": "lead",
            "lastmodifieddate": _iso(s["closes"]),
        }
    ).to_csv(folder / "contacts.csv", index=False)
    companies = pd.DataFrame(
        {
            "hs_object_id": [str(c) for c in range(9001, 9041)],
            "name": "Acme",
            "industry": np.resize(["COMPUTER_SOFTWARE", "RETAIL", "BANKING"], 40),
            "numberofemployees": np.arange(40) * 50 + 10,
            "annualrevenue": 1e6,
            "country": "United States",
        }
    )
    companies.to_csv(folder / "companies.csv", index=False)
    deals = s[has_deal]
    stage = deals["outcome"].map({"won": "closedwon", "lost": "closedlost", "open": "contractsent"})
    # a deal's contacts as one association cell: the primary contact first, then a colleague
    contacts = ids[has_deal] + ";" + (deals["i"] + 5001).astype(str)
    pd.DataFrame(
        {
            "hs_object_id": (deals["i"] + 70001).astype(str),
            "dealname": "Deal",
            "pipeline": "default",
            "dealstage": stage,
            "createdate": _iso(deals["created"] + pd.Timedelta(days=3)),
            "closedate": _iso(deals["closes"]),
            "amount": 8000,
            "associated_contact_ids": contacts,
        }
    ).to_csv(folder / "deals.csv", index=False)
    touched = s[s["i"] % 2 == 0]
    engagements = pd.DataFrame(
        {
            "engagement.id": touched["i"] + 1,
            "engagement.type": np.where(touched["i"] % 4 == 0, "CALL", "EMAIL"),
            "engagement.timestamp": _iso(touched["created"] + pd.Timedelta(days=1)),
            "associations.contactIds": ids[touched.index],
        }
    )
    engagements.to_csv(folder / "engagements.csv", index=False)


@pytest.mark.parametrize(("preset", "build"), [("salesforce", salesforce_export), ("hubspot", hubspot_export)])
def test_preset_runs_validate_train_predict_on_a_vendor_export(tmp_path, preset, build):
    folder = tmp_path / preset
    assert "wrote" in invoke("init", folder, "--preset", preset)
    (folder / "data").mkdir()
    build(folder / "data")
    config = folder / "leadscore.toml"
    config.write_text(config.read_text() + SMALL_MODEL)
    out = invoke("validate", "--config", config)
    assert "0 error(s)" in out
    assert f"registered {preset}-conversion version 1" in invoke("train", "--config", config)  # named by its folder
    invoke("predict", "--config", config, "--out", tmp_path / "scores.csv")
    scores = pd.read_csv(tmp_path / "scores.csv", dtype={"lead_id": str})
    story = crm_story(seed=11 if preset == "salesforce" else 12)
    still_open = story["outcome"].isin(["open"])
    assert len(scores) == int(still_open.sum()) and scores["probability"].between(0, 1).all()
    assert scores["reasons_positive"].fillna("").str.len().gt(0).any()


def test_unknown_preset_is_refused(tmp_path):
    assert "--preset: 'pipedrive' is not one of salesforce, hubspot" in invoke(
        "init", tmp_path, "--preset", "pipedrive", code=2
    )


# Every activity type the vendors document for sales' own records (Salesforce Task.TaskSubtype, Event.EventSubtype and
# the default Task.Type values; HubSpot engagement types): none may reach a feature, and monitor reads them as touches.
SALES_ACTIVITY = {
    "salesforce": ["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn", "Event", "Meeting", "Send Letter"],
    "hubspot": ["CALL", "EMAIL", "MEETING", "NOTE", "TASK", "INCOMING_EMAIL", "FORWARDED_EMAIL", "POSTAL_MAIL"],
}


@pytest.mark.parametrize("preset", sorted(SALES_ACTIVITY))
def test_presets_map_every_standard_sales_activity_type_to_a_sales_touch(tmp_path, preset):
    from leadscore.features.schemas import SALES_TOUCH_EVENTS
    from leadscore.pipelines.config import load_settings, write_project_config
    from leadscore.pipelines.intake.exports import map_event_types

    settings = load_settings(write_project_config(tmp_path, preset=preset))
    raw = pd.DataFrame({"type": SALES_ACTIVITY[preset]})
    mapped = map_event_types(raw, "type", settings.exports.event_type_values)["type"]
    assert dict(zip(raw["type"], mapped, strict=True)) == {
        t: m for t, m in zip(raw["type"], mapped, strict=True) if m in SALES_TOUCH_EVENTS
    }
