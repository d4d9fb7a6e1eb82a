"""Custom fields in CRM mode: the CRM's own lead and account columns, declared with a type and a description,
become features, are validated like the contract's columns, and speak in their own words in the reasons."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.features.context import FeatureContext, FeatureParams
from leadscore.features.custom import CustomField, custom_field_values
from leadscore.pipelines.cli import app

CUSTOM = """
[tables.leads.custom.lead_origin]
column = "Lead Origin"
type = "categorical"
description = "How the lead first reached us"

[tables.accounts.custom.account_tech_fit]
column = "Tech Fit"
type = "numeric"
description = "Fit of the company's technology stack (0-10)"
"""
DERIVED = """
[tables.leads.derived.created_weekday]
date_part = "weekday"
of = "created_at"
description = "Weekday the lead was created"

[tables.leads.custom.first_visit_at]
column = "First Visit"
type = "timestamp"
description = "First visit to the website"

[tables.leads.derived.days_from_first_visit]
days_between = ["first_visit_at", "created_at"]
description = "Days from the first website visit to the lead's creation"
"""
SMALL_MODEL = "\n[model]\nn_estimators = 80\nnum_leaves = 7\nearly_stopping_rounds = 15\n"


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def test_custom_values_follow_the_lead_and_its_account():
    leads = pd.DataFrame({"lead_id": ["a", "b", "c"], "account_id": ["x", None, "zz"], "origin": [" Web ", "", "Ads"]})
    accounts = pd.DataFrame({"account_id": ["x", "y"], "fit": [7.0, 2.0]})
    spine = pd.DataFrame({"lead_id": ["c", "a", "b"], "cutoff_time": pd.to_datetime(["2025-01-01"] * 3, utc=True)})
    context = FeatureContext(spine, leads=leads, accounts=accounts, params=FeatureParams())
    origin = custom_field_values(context, CustomField("origin", "leads", "categorical", "Origin"))
    fit = custom_field_values(context, CustomField("fit", "accounts", "numeric", "Fit"))
    assert origin.tolist() == ["Ads", "Web", pd.NA]
    assert fit.isna().tolist() == [True, False, True] and fit.iloc[1] == 7.0


@pytest.fixture(scope="module")
def custom_project(sample_project, tmp_path_factory):
    return write_custom_project(sample_project, tmp_path_factory.mktemp("custom"))


def write_custom_project(sample_project, folder):
    """The sample CRM with two extra columns that carry signal (a lead origin and an account's tech fit), a timestamp
    and the features derived from the lead's timestamps, in `folder`; returns its config."""
    shutil.copytree(sample_project.parent / "data", folder / "data")
    leads = pd.read_parquet(folder / "data" / "leads.parquet")
    deals = pd.read_parquet(folder / "data" / "opportunities.parquet")
    won = leads["lead_id"].isin(deals.loc[deals["status"] == "won", "lead_id"]).to_numpy()
    rng = np.random.default_rng(0)
    referral = rng.random(len(leads)) < np.where(won, 0.7, 0.1)
    leads["Lead Origin"] = np.where(referral, "Partner referral", rng.choice(["Web form", "Trade show"], len(leads)))
    # the first visit mostly precedes the lead, sometimes follows it (then it is known only from that day)
    created = pd.to_datetime(leads["created_at"], utc=True)
    leads["First Visit"] = (created + pd.to_timedelta(rng.uniform(-20, 40, len(leads)), unit="D")).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    leads.to_parquet(folder / "data" / "leads.parquet", index=False)
    accounts = pd.read_parquet(folder / "data" / "accounts.parquet")
    accounts["Tech Fit"] = rng.integers(0, 11, len(accounts)).astype(str)
    accounts.to_parquet(folder / "data" / "accounts.parquet", index=False)
    config = folder / "leadscore.toml"
    config.write_text(sample_project.read_text() + CUSTOM + DERIVED + SMALL_MODEL)
    return config


def test_custom_fields_train_and_appear_in_reasons(custom_project, tmp_path):
    invoke("build-training-set", "--config", custom_project, "--out", tmp_path / "ts.parquet")
    frame = pd.read_parquet(tmp_path / "ts.parquet")
    assert {"lead_origin", "account_tech_fit"} <= set(frame.columns)
    assert set(frame["lead_origin"].dropna()) == {"Partner referral", "Web form", "Trade show"}
    assert frame["account_tech_fit"].dropna().between(0, 10).all()
    # derived from the lead's timestamps, point in time: a first touch at or after the cutoff is not yet known
    leads = pd.read_parquet(custom_project.parent / "data" / "leads.parquet").set_index("lead_id")
    created = pd.to_datetime(frame["lead_id"].map(leads["created_at"]), utc=True)
    assert (frame["created_weekday"] == created.dt.day_name()).all()
    visit = pd.to_datetime(frame["lead_id"].map(leads["First Visit"]), utc=True)
    before = visit < frame["cutoff_time"]
    assert 0 < before.sum() < len(frame) and frame.loc[~before, "days_from_first_visit"].isna().all()
    expected = (created - visit).dt.total_seconds() / 86_400
    assert np.allclose(frame.loc[before, "days_from_first_visit"], expected[before])
    assert "first_visit_at" not in frame  # a timestamp is an input, not a feature
    invoke("train", "--config", custom_project)
    out = tmp_path / "scores.csv"
    invoke("predict", "--config", custom_project, "--out", out, "--contributions", tmp_path / "c.parquet")
    scores = pd.read_csv(out)
    reasons = scores["reasons_positive"].fillna("") + scores["reasons_negative"].fillna("")
    assert reasons.str.contains("How the lead first reached us: Partner referral").any()
    assert {"lead_origin", "account_tech_fit"} <= set(pd.read_parquet(tmp_path / "c.parquet").columns)


def test_custom_fields_are_validated_like_the_rest(custom_project, tmp_path):
    folder = custom_project.parent
    accounts = pd.read_parquet(folder / "data" / "accounts.parquet")
    broken = tmp_path / "accounts.parquet"
    accounts.assign(**{"Tech Fit": ["high"] + accounts["Tech Fit"].tolist()[1:]}).to_parquet(broken, index=False)
    config = tmp_path / "leadscore.toml"
    text = custom_project.read_text().replace('path = "data/', f'path = "{folder}/data/')
    config.write_text(text.replace(f'path = "{folder}/data/accounts.parquet"', f'path = "{broken}"'))
    out = invoke("validate", "--config", config, "--strict", code=1)
    assert "accounts.account_tech_fit row 1: not a number 'high'" in out
    config.write_text(text.replace('column = "Lead Origin"', 'column = "Origin"'))
    assert "column 'Origin' of custom field 'lead_origin' is absent" in invoke("validate", "--config", config, code=1)
    config.write_text(text.replace("[tables.leads.custom.lead_origin]", "[tables.leads.custom.lead_seniority]"))
    assert "the name is taken" in invoke("validate", "--config", config, code=2)
    config.write_text(
        text.replace(
            'days_between = ["first_visit_at", "created_at"]', 'days_between = ["created_at", "first_sales_touch_at"]'
        )
    )
    assert "sales' own timestamps are never features" in invoke("validate", "--config", config, code=2)
