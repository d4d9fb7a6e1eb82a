"""`--level account` end to end on the small sample CRM: train beside the lead roll-ups, predict and grade every
account with an open lead, and the sample data's buying-committee effect recovered by the account model."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.features.spine import scoring_spine
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm

runner = CliRunner()


def invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def account_project(trained_project, tmp_path_factory):
    """A copy of the trained project (its lead champion included) with an account model trained on top."""
    folder = tmp_path_factory.mktemp("accounts")
    config = folder / "leadscore.toml"
    shutil.copy(trained_project, config)
    shutil.copy(trained_project.parent / "mlflow.db", folder / "mlflow.db")
    trained = invoke("train", "--config", str(config), "--level", "account")
    return config, trained


def accounts_with_open_leads(config) -> set[str]:
    data = load_crm(load_settings(config))
    leads = data.tables["leads"]
    open_leads = scoring_spine(leads, data.tables["opportunities"], as_of=data.as_of)["lead_id"]
    accounts = leads.set_index("lead_id")["account_id"].reindex(open_leads)
    return set(accounts.dropna().astype(str))


def test_train_reports_the_account_model_beside_both_roll_ups(account_project):
    _, trained = account_project
    assert trained["level"] == "account" and trained["registered_model"] == "leadscore-conversion-account"
    holdout = trained["holdout"]
    assert set(holdout) == {"lightgbm_calibrated", "rollup_lead_recipe", "rollup_lead_champion"}
    assert all(0.5 < holdout[s]["roc_auc"] <= 1 and 0 < holdout[s]["pr_auc"] <= 1 for s in holdout)
    assert "champion" in trained["rollups"]["rollup_lead_champion"]
    assert "lead rows observed before the holdout" in trained["rollups"]["rollup_lead_recipe"]
    assert trained["decision"].startswith("gate: promoted")


def test_predict_scores_every_account_with_an_open_lead(account_project, tmp_path):
    config, _ = account_project
    out = tmp_path / "accounts.csv"
    summary = invoke("predict", "--config", str(config), "--level", "account", "--out", str(out))
    expected = accounts_with_open_leads(config)
    scores = pd.read_csv(out, dtype={"account_id": str})
    assert set(scores["account_id"]) == expected and len(scores) == len(expected) == summary["scored"]
    assert summary["accounts_with_open_leads"] == len(expected) and summary["rejected"] == 0
    assert scores["probability"].between(0, 1).all() and scores["score"].between(1, 99).all()
    assert scores["probability"].is_monotonic_decreasing
    assert set(scores["cell"]) <= {f + e for f in "ABCD" for e in "1234"}
    # the lead champion scores the open leads: listed best first as "lead_id (score)"
    first = scores["open_leads"].iloc[0].split("; ")
    lead_scores = [int(item.split("(")[1].rstrip(")")) for item in first]
    assert lead_scores == sorted(lead_scores, reverse=True)
    assert (scores["open_lead_count"] == scores["open_leads"].str.count(";") + 1).all()
    assert scores["lead_rollup_probability"].between(0, 1).all()
    assert scores["reasons_positive"].notna().mean() > 0.5
    assert (tmp_path / "accounts.rejects.csv").exists()
    # score and percentile agree on order (both rise with the probability), and ties are the probability's own
    assert scores["score"].is_monotonic_decreasing and scores["percentile"].is_monotonic_decreasing
    tied = scores.groupby("probability")["percentile"].nunique()
    assert (tied == 1).all() and scores["probability"].nunique() > 0.5 * len(scores)
    # account reasons speak of accounts
    reasons = scores["reasons_positive"].fillna("") + scores["reasons_negative"].fillna("")
    assert (
        reasons.str.contains("(all accounts ", regex=False).any()
        and not reasons.str.contains(r"leads (?:with|like this|where)|all leads", regex=True).any()
    )


def test_grade_grades_every_account_with_an_open_lead(account_project, tmp_path):
    config, _ = account_project
    out = tmp_path / "grades.csv"
    result = runner.invoke(app, ["grade", "--config", str(config), "--level", "account", "--out", str(out)])
    assert result.exit_code == 0, result.output
    graded = pd.read_csv(out, dtype={"account_id": str})
    assert set(graded["account_id"]) == accounts_with_open_leads(config)
    assert list(graded.columns[:7]) == [
        "account_id",
        "as_of",
        "fit_points",
        "fit_grade",
        "engagement_points",
        "engagement_grade",
        "cell",
    ]
    assert (graded["cell"] == graded["fit_grade"] + graded["engagement_grade"].astype(str)).all()


def test_account_level_refuses_what_it_does_not_do(account_project):
    config, _ = account_project
    result = runner.invoke(app, ["predict", "--config", str(config), "--level", "account", "--to-sql", "t"])
    assert result.exit_code == 2 and "--level account does not take --to-sql" in result.output
    result = runner.invoke(app, ["predict", "--config", str(config), "--level", "team"])
    assert result.exit_code == 2 and "--level: use 'lead' or 'account'" in result.output


def committee_probability(config) -> float:
    """The account model's mean probability on its rows with two or more engaged senior contacts. The account spine
    settings are given (the lead spine's), so that both CRMs are cut the same way rather than each by its own
    derived horizon."""
    from leadscore.pipelines.verbs.accounts import (
        account_settings,
        account_training_set,
        choose_spine,
        fit_account_model,
    )

    settings = load_settings(config)
    given = {"horizon_days": 90, "every_days": 30, "max_snapshots": 6, "min_positives": 40, "min_negatives": 40}
    settings = settings.model_copy(update={"accounts": settings.accounts.model_copy(update=given)})
    data = load_crm(settings)
    choice = choose_spine(settings, data)
    training = account_training_set(settings, data, choice)
    model = fit_account_model(account_settings(settings, choice), training, np.arange(len(training.frame)))
    committee = training.frame["account_senior_engaged_contacts_30d"].to_numpy() >= 2
    return float(model.predict_proba(training.frame.loc[committee, training.feature_names])[:, 1].mean())


def test_the_account_model_recovers_the_buying_committee_effect(sample_project, tmp_path):
    """The same CRM (seed 7) with and without committees buying: every other draw is the same, so the account
    model's higher probability for accounts with several engaged senior contacts is the effect's (without the
    effect the two CRMs, hence the two models, are identical: a difference of exactly 0)."""
    from leadscore.pipelines.sample_data import SampleSpec, generate

    generate(tmp_path / "data", SampleSpec(n_leads=3000, seed=7, committee=False))
    off = tmp_path / "leadscore.toml"
    off.write_text(sample_project.read_text())
    with_effect, without = committee_probability(sample_project), committee_probability(off)
    assert with_effect > without + 0.02, (with_effect, without)


def test_the_account_grade_matrix_counts_every_labelled_account_row(sample_project):
    from leadscore.features.account_spine import build_account_spine
    from leadscore.pipelines.verbs.accounts import account_grade_conversion, choose_spine

    settings = load_settings(sample_project)
    data = load_crm(settings)
    by_cell, matrix = account_grade_conversion(settings, data)
    choice = choose_spine(settings, data)
    spine, stats = build_account_spine(
        data.tables["leads"], data.tables["opportunities"], choice.policy, as_of=data.as_of
    )
    assert by_cell["accounts"].sum() == stats.rows == len(spine)
    assert by_cell["converted"].sum() == stats.positives
    assert matrix.shape == (4, 4) and list(matrix.index) == ["A", "B", "C", "D"]
    a1 = by_cell.loc["A1"]
    assert matrix.loc["A", "1"] == (f"{a1.conversion_rate:.1%} ({int(a1.accounts):,})" if a1.accounts else "-")


# --- issue 26: account settings derived from the book -------------------------------------------------------------
def write_book(folder, leads: pd.DataFrame, deals: pd.DataFrame, *, accounts: pd.DataFrame | None = None, extra=""):
    """A CRM project over the given tables (CSV), optionally with more config text; returns the config path."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    leads.to_csv(folder / "data" / "leads.csv", index=False)
    deals.to_csv(folder / "data" / "opportunities.csv", index=False)
    text = 'mode = "crm"\n[tables.leads]\npath = "data/leads.csv"\n'
    text += '[tables.opportunities]\npath = "data/opportunities.csv"\n'
    if accounts is not None:
        accounts.to_csv(folder / "data" / "accounts.csv", index=False)
        text += '[tables.accounts]\npath = "data/accounts.csv"\n'
    config = folder / "leadscore.toml"
    config.write_text(text + extra)
    return config


OLD_DEFAULTS = (
    "[accounts]\nhorizon_days = 90\nevery_days = 30\nmax_snapshots = 6\nmin_positives = 40\nmin_negatives = 40\n"
)


def test_a_small_book_that_failed_with_the_old_defaults_trains_with_the_derived_ones(tmp_path):
    from tests.test_models.test_account_defaults import real_shaped_book

    leads, deals, _ = real_shaped_book(0)
    old = write_book(tmp_path / "old", leads, deals, extra=OLD_DEFAULTS)
    result = runner.invoke(app, ["train", "--config", str(old), "--level", "account"])
    assert result.exit_code == 1, result.output
    assert "132 converted and 15 not-converted rows before the holdout (need 40 and 40)" in result.output
    assert "Change: lower accounts.min_positives / accounts.min_negatives or add history." in result.output

    new = write_book(tmp_path / "new", leads, deals)
    result = runner.invoke(app, ["train", "--config", str(new), "--level", "account", "--json"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert "account horizon 100 days (derived: 80th percentile of first-lead-to-win time), snapshots every 33" in (
        result.output
    )
    spine = trained["account_spine"]
    assert (spine["horizon_days"], spine["every_days"], spine["max_snapshots"]) == (100.0, 33.0, 50)
    assert trained["decision"].startswith("gate: promoted") and trained["holdout_rows"] > 0


def test_train_warns_when_the_account_horizon_is_not_the_lead_models(tmp_path):
    from tests.test_models.test_account_defaults import real_shaped_book

    leads, deals, _ = real_shaped_book(0)
    config = write_book(tmp_path / "apart", leads, deals)
    result = runner.invoke(app, ["train", "--config", str(config), "--level", "account", "--json"])
    warning = (
        "warning: the account model's horizon (100 days) differs from the lead model's spine.horizon_days (90 days)"
    )
    assert result.exit_code == 0 and warning in result.output
    assert json.loads(result.stdout)["warnings"][0].startswith(warning)
    assert "Compare their rankings (ROC AUC, PR AUC, lift), not their probabilities" in result.output

    aligned = write_book(tmp_path / "aligned", leads, deals, extra="[spine]\nhorizon_days = 100\n")
    result = runner.invoke(app, ["train", "--config", str(aligned), "--level", "account", "--json"])
    assert result.exit_code == 0 and "warning: the account model's horizon" not in result.output
    assert json.loads(result.stdout)["warnings"] == []


def test_when_no_setting_can_work_train_stops_with_one_error_naming_the_setting(tmp_path):
    from tests.test_models.test_account_defaults import real_shaped_book

    leads, deals, _ = real_shaped_book(0, accounts=2)
    config = write_book(tmp_path, leads, deals)
    result = runner.invoke(app, ["train", "--config", str(config), "--level", "account"])
    assert result.exit_code == 1
    assert result.output.count("error:") == 1
    assert "no account spine setting leaves rows to train and test on (2 accounts, " in result.output
    assert "horizon 12 days" in result.output and "Change: set accounts.horizon_days" in result.output


def maven_book(folder) -> tuple:
    """The public Maven CRM sample as CRM tables: one lead per deal created at its engage date, the deal's account as
    the lead's (deals without an engage date dropped); skips when the dataset is absent."""
    from tests.conftest import dataset

    source = dataset("maven_crm_sales_opportunities")
    deals = pd.read_csv(source / "sales_pipeline.csv")
    deals = deals[deals["engage_date"].notna()]
    status = deals["deal_stage"].map({"Won": "won", "Lost": "lost", "Engaging": "open", "Prospecting": "open"})
    leads = pd.DataFrame(
        {"lead_id": deals["opportunity_id"], "created_at": deals["engage_date"], "account_id": deals["account"]}
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": deals["opportunity_id"],
            "lead_id": deals["opportunity_id"],
            "created_at": deals["engage_date"],
            "closed_at": deals["close_date"].where(status != "open"),
            "status": status,
            "amount": deals["close_value"],
        }
    )
    raw = pd.read_csv(source / "accounts.csv")
    accounts = pd.DataFrame(
        {
            "account_id": raw["account"],
            "industry": raw["sector"],
            "employee_count": raw["employees"],
            "annual_revenue": raw["revenue"],
            "country": raw["office_location"],
        }
    )
    return leads, opportunities, accounts


def test_the_public_maven_crm_trains_at_account_level_with_the_derived_settings(tmp_path):
    """The book of the issue: the lead spine's settings stop at 368 converted and 27 not-converted rows."""
    leads, opportunities, accounts = maven_book(tmp_path)
    old = write_book(tmp_path / "old", leads, opportunities, accounts=accounts, extra=OLD_DEFAULTS)
    result = runner.invoke(app, ["train", "--config", str(old), "--level", "account"])
    assert result.exit_code == 1 and "(given): 182 converted and 27 not-converted rows before" in result.output
    new = write_book(tmp_path / "new", leads, opportunities, accounts=accounts)
    result = runner.invoke(app, ["train", "--config", str(new), "--level", "account", "--json"])
    assert result.exit_code == 0, result.output
    assert "account horizon 30 days (derived: 80th percentile of first-lead-to-win time (119 days), halved 2x" in (
        result.output
    )
