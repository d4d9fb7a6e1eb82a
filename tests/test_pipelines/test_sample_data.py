"""The synthetic CRM: deterministic per seed, valid under the contract, with its documented effects visible."""

import hashlib

import pandas as pd
import pytest

from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm
from leadscore.pipelines.sample_data import SampleSpec, generate


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crm")
    generate(folder, SampleSpec(n_leads=6000, seed=3))
    return {n: pd.read_parquet(folder / f"{n}.parquet") for n in ("accounts", "leads", "events", "opportunities")}


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    generate(tmp_path / "a", SampleSpec(n_leads=500, seed=1))
    generate(tmp_path / "b", SampleSpec(n_leads=500, seed=1))
    generate(tmp_path / "c", SampleSpec(n_leads=500, seed=2))
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_csv_format_round_trips_through_validation(tmp_path):
    generate(tmp_path / "data", SampleSpec(n_leads=300, seed=1), fmt="csv")
    from importlib import resources

    text = (
        resources.files("leadscore.pipelines")
        .joinpath("templates/leadscore.toml")
        .read_text()
        .replace(".parquet", ".csv")
    )
    (tmp_path / "leadscore.toml").write_text(text)
    data = load_crm(load_settings(tmp_path / "leadscore.toml"))
    assert data.errors == [] and len(data.tables["leads"]) == 300


def test_outcomes_are_plausible(crm):
    opps, leads = crm["opportunities"], crm["leads"]
    won = (opps["status"] == "won").sum() / len(leads)
    assert 0.08 < won < 0.25
    closed = opps[opps["status"] != "open"]
    assert 0.35 < (closed["status"] == "won").mean() < 0.75
    assert (opps["status"] == "open").sum() > 0  # leads still open at the end date, to be scored
    assert (closed["closed_at"] >= closed["created_at"]).all()
    assert 30 < len(crm["events"]) / len(leads) < 60
    assert crm["events"]["occurred_at"].max() <= pd.Timestamp("2025-12-31 23:59:59", tz="UTC")
    assert leads["created_at"].min() >= pd.Timestamp("2024-01-01", tz="UTC")


def test_every_lead_timestamp_follows_its_creation(crm):
    leads = crm["leads"].set_index("lead_id")
    accepted = leads["sales_accepted_at"].dropna()
    assert len(accepted) > 100
    assert (accepted >= leads.loc[accepted.index, "created_at"]).all()
    opps, events = crm["opportunities"], crm["events"]
    assert (opps["created_at"] >= opps["lead_id"].map(leads["created_at"])).all()
    assert (events["occurred_at"] >= events["lead_id"].astype(str).map(leads["created_at"])).all()


def test_missing_fields_like_a_real_crm(crm):
    leads = crm["leads"]
    assert 0.25 < leads["seniority"].isna().mean() < 0.45
    assert 0.03 < leads["job_title"].isna().mean() < 0.15


def test_planted_effects_are_visible_in_group_bys(crm):
    leads, opps, events = crm["leads"], crm["opportunities"], crm["events"]
    won_ids = set(opps.loc[opps["status"] == "won", "lead_id"])
    leads = leads.assign(won=leads["lead_id"].isin(won_ids))
    by_title = leads.assign(level=leads["job_title"].str.extract(r"^(VP|Chief|CEO|CTO|CFO|CIO|COO)", expand=False))
    senior = by_title.loc[by_title["level"].notna(), "won"].mean()
    junior = leads.loc[leads["job_title"].isin(["Software Engineer", "HR Generalist", "Financial Analyst"]), "won"]
    assert senior > junior.mean() + 0.05
    free = leads.groupby("email_domain_type")["won"].mean()
    assert free["business"] > free["free"] + 0.05
    demo_ids = set(events.loc[events["event_type"] == "demo_request", "lead_id"])
    trial_ids = set(events.loc[events["event_type"] == "trial_signup", "lead_id"])
    assert leads.loc[leads["lead_id"].isin(demo_ids), "won"].mean() > leads["won"].mean() + 0.05
    assert leads.loc[leads["lead_id"].isin(trial_ids), "won"].mean() > leads["won"].mean()


SALES_TYPES = ["sales_call", "sales_email", "meeting"]


def test_sales_touches_and_feedback_are_consistent(crm):
    leads, events = crm["leads"].set_index("lead_id"), crm["events"]
    touches = events[events["event_type"].isin(SALES_TYPES)]
    assert len(touches) > 1000 and set(touches["event_type"]) == set(SALES_TYPES)
    first = touches.groupby(touches["lead_id"].astype(str))["occurred_at"].min()
    stored = leads["first_sales_touch_at"].dropna()
    assert stored.index.astype(str).sort_values().equals(first.index.sort_values())
    assert (stored.rename(index=str).reindex(first.index) == first).all()
    rejected = leads[leads["sales_rejected_at"].notna()]
    assert len(rejected) > 100
    assert rejected["rejection_reason"].notna().all() and leads["rejection_reason"].notna().sum() == len(rejected)
    assert rejected["sales_accepted_at"].isna().all()  # sales never both accepts and rejects a lead
    assert (rejected["sales_rejected_at"] > rejected["first_sales_touch_at"]).all()
    accepted = leads[leads["sales_accepted_at"].notna()]
    assert (accepted["first_sales_touch_at"] <= accepted["sales_accepted_at"]).all()
    # touches stop at a rejection
    last = touches.groupby(touches["lead_id"].astype(str))["occurred_at"].max()
    assert (last.reindex(rejected.index) <= rejected["sales_rejected_at"]).all()


def test_sales_follow_up_and_acceptance_favour_good_fit(crm):
    leads = crm["leads"].set_index("lead_id")
    senior = leads["job_title"].str.match(r"^(VP|Chief|CEO|CTO|CFO|CIO|COO)").fillna(False).astype(bool)
    business = leads["email_domain_type"] == "business"
    good, poor = senior & business, ~senior & ~business
    worked = leads["first_sales_touch_at"].notna()
    accepted = leads["sales_accepted_at"].notna()
    assert accepted[good].mean() > accepted[poor].mean() + 0.1
    touches = crm["events"][crm["events"]["event_type"].isin(SALES_TYPES)]
    per_lead = touches.groupby(touches["lead_id"].astype(str)).size().reindex(leads.index, fill_value=0)
    assert per_lead[good & worked].mean() > 1.5 * per_lead[poor & worked].mean()  # more frequent follow-up
    rejected = leads["sales_rejected_at"].notna()
    assert rejected[poor & worked].mean() > rejected[good & worked].mean() + 0.1
    reasons = leads.loc[rejected & ~business, "rejection_reason"].value_counts(normalize=True)
    assert reasons.idxmax() == "personal e-mail address"
