"""`--level opportunity` end to end on the small sample CRM (its deals have a stage, amount and close-date history):
train beside the CRM's own stage probability, then predict one row per open deal; and a book without a history
table reads only what is fixed at a deal's creation, and says so."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.features.opportunities import opportunity_feature_specs
from leadscore.features.opportunity_spine import opportunity_scoring_spine
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm
from leadscore.pipelines.verbs.opportunities import history_line, opportunity_settings, opportunity_training_set

runner = CliRunner()


def invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def opportunity_project(sample_project, tmp_path_factory):
    """The sample project's tables, its own MLflow store, and an opportunity model trained on them."""
    folder = tmp_path_factory.mktemp("opportunities")
    config = folder / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    trained = invoke("train", "--config", str(config), "--level", "opportunity")
    return config, trained


def test_train_reports_the_model_beside_the_crm_stage_probability(opportunity_project):
    _, trained = opportunity_project
    assert trained["level"] == "opportunity" and trained["registered_model"] == "leadscore-conversion-opportunity"
    holdout = trained["holdout"]
    assert set(holdout) == {"lightgbm_calibrated", "logistic_regression", "crm_stage_probability"}
    assert all(0 < holdout[s]["roc_auc"] <= 1 for s in holdout)
    # the deal's own history (stage, amount, slips) and its lead's activity tell more than the stage alone
    assert holdout["lightgbm_calibrated"]["roc_auc"] > holdout["crm_stage_probability"]["roc_auc"]
    assert "before each cutoff" in trained["baseline"] and trained["history"].startswith("opportunity history:")
    assert trained["decision"].startswith("gate: promoted")


def test_predict_scores_every_open_deal_with_reasons(opportunity_project, tmp_path):
    config, _ = opportunity_project
    out = tmp_path / "deals.csv"
    summary = invoke("predict", "--config", str(config), "--level", "opportunity", "--out", str(out))
    data = load_crm(load_settings(config))
    expected = set(opportunity_scoring_spine(data.tables["opportunities"], as_of=data.as_of)["opportunity_id"])
    scores = pd.read_csv(out, dtype={"opportunity_id": str, "lead_id": str})
    assert len(expected) > 0 and set(scores["opportunity_id"]) == expected
    assert len(scores) == len(expected) == summary["scored"] and summary["rejected"] == 0
    assert scores["probability"].between(0, 1).all() and scores["score"].between(1, 99).all()
    assert scores["probability"].is_monotonic_decreasing and scores["score"].is_monotonic_decreasing
    # the CRM's probability and stage as they stood at the as-of: the sample's stages and their probabilities
    assert scores["crm_probability"].isin([0.1, 0.2, 0.75, 0.9]).all()
    assert set(scores["stage"]) <= {"qualification", "needs analysis", "proposal/price quote", "negotiation/review"}
    reasons = scores["reasons_positive"].fillna("") + scores["reasons_negative"].fillna("")
    assert (reasons != "").all() and reasons.str.contains("deals").all()
    assert (tmp_path / "deals.rejects.csv").exists()


def test_without_a_history_table_only_creation_time_fields_are_read(sample_project):
    settings = load_settings(sample_project)
    data = load_crm(settings)
    del data.tables["opportunity_history"]
    training = opportunity_training_set(opportunity_settings(settings), data)
    specs = opportunity_feature_specs()
    deal = [n for n in training.feature_names if specs[n].group == "deal"]
    assert deal == ["deal_age_days"] and not training.manifest["opportunity_history"]
    # the company's activity is read from the events, the history or not; no score history: no last score
    assert "deal_account_events_30d" in training.feature_names and "lead_last_score" not in training.feature_names
    assert history_line(data).startswith("no opportunity history")


def test_the_account_and_lead_options_are_refused_at_the_opportunity_level(opportunity_project):
    config, _ = opportunity_project
    result = runner.invoke(app, ["predict", "--config", str(config), "--level", "opportunity", "--to-sql", "t"])
    assert result.exit_code == 2 and "--level opportunity does not take --to-sql" in result.output
    result = runner.invoke(app, ["grade", "--config", str(config), "--level", "opportunity"])
    assert result.exit_code == 2 and "'lead' or 'account'" in result.output


def test_explain_writes_the_deal_report_beside_the_stage_probability(opportunity_project, tmp_path):
    config, _ = opportunity_project
    out = tmp_path / "deals.html"
    summary = invoke("explain", "--config", str(config), "--level", "opportunity", "--out", str(out))
    page = out.read_text(encoding="utf-8")
    assert summary["level"] == "opportunity" and summary["run_id"]
    assert "Opportunity scoring review: leadscore-conversion-opportunity v1" in page
    assert "crm_stage_probability" in page and "Why this deal: one holdout deal per score band" in page
    assert "Days until the deal&#39;s expected close date" in page  # the deal features in their own words
    assert "(all deals " in page  # the reasons speak of deals
    # the lead level's grades, capture at capacity and live record are not the deals'
    assert "Capture at capacity" not in page and "Grades A1..D4" not in page


def test_backtest_walks_forward_beside_the_stage_probability(opportunity_project):
    config, _ = opportunity_project
    summary = invoke(
        "backtest", "--config", str(config), "--level", "opportunity", "--start", "2025-03-01", "--every", "120d"
    )
    assert summary["level"] == "opportunity" and summary["steps"] >= 2
    pooled = summary["pooled_roc_auc"]
    assert set(pooled) == {
        "lightgbm_calibrated",
        "lightgbm_uncalibrated",
        "logistic_regression",
        "crm_stage_probability",
    }
    assert pooled["lightgbm_calibrated"] > pooled["crm_stage_probability"]


def test_explain_and_backtest_refuse_the_account_level(opportunity_project):
    config, _ = opportunity_project
    for verb in (["explain"], ["backtest", "--start", "2025-03-01"]):
        result = runner.invoke(app, [*verb, "--config", str(config), "--level", "account"])
        assert result.exit_code == 2 and "--level: use 'lead' or 'opportunity'" in result.output


def test_the_lead_last_score_is_read_from_the_score_history(sample_project, tmp_path):
    """Two production runs per lead, two days before its deal was opened and a day after: the training rows read the
    first; a shadow run before it is not what sales saw and is not read."""
    from leadscore.pipelines.outputs.history import append_history
    from leadscore.pipelines.verbs.opportunities import with_lead_scores

    config = tmp_path / "leadscore.toml"
    config.write_text(sample_project.read_text().replace('path = "data/', f'path = "{sample_project.parent}/data/'))
    settings = load_settings(config)
    deals = load_crm(settings).tables["opportunities"].dropna(subset=["lead_id"])
    deals = deals[
        deals["created_at"].between(pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-06-30", tz="UTC"))
    ]
    picked = deals.sort_values("opportunity_id").head(8)
    runs = [(-2.0, 41, True), (-1.0, 77, False), (1.0, 97, True)]
    for deal in picked.itertuples():
        for days, score, production in runs:
            run = pd.DataFrame(
                {
                    "lead_id": [deal.lead_id],
                    "as_of": [deal.created_at.floor("D") + pd.Timedelta(days=days)],
                    "probability": [score / 100],
                    "score": [score],
                    "model_name": ["leadscore-conversion"],
                    "model_version": ["1" if production else "2"],
                }
            )
            append_history(settings, run, production=production)
    data = with_lead_scores(settings, load_crm(settings))
    assert "lead score history: " in history_line(data)
    training = opportunity_training_set(opportunity_settings(settings), data)
    assert training.manifest["lead_score_history"] and "lead_last_score" in training.feature_names
    frame = training.frame
    mine = frame["opportunity_id"].isin(picked["opportunity_id"])
    assert mine.any() and (frame.loc[mine, "lead_last_score"] == 41).all()
    assert frame.loc[~mine, "lead_last_score"].isna().all()


def test_predict_keeps_the_deal_history_and_explains_each_move(opportunity_project, tmp_path):
    """Two runs a fortnight apart: deals open at both get a score_change whose change_reasons add up to it; the runs
    are kept in the level's own history folder, apart from the leads'."""
    import re

    config, _ = opportunity_project
    settings = load_settings(config)
    end = load_crm(settings).as_of
    runs = []
    for days in (21, 7):
        out = tmp_path / f"deals_{days}.csv"
        when = (end - pd.Timedelta(days=days)).date().isoformat()
        summary = invoke(
            "predict", "--config", str(config), "--level", "opportunity", "--as-of", when, "--out", str(out)
        )
        runs.append((summary, pd.read_csv(out, dtype={"opportunity_id": str})))
    (first, _), (second, scores) = runs
    assert first["production"] and second["history"] == str(settings.history_dir / "opportunity")
    assert second["movement"]["compared"] > 0 and second["movement"]["previous_as_of"][-1][:10] == first["as_of"][:10]
    before = runs[0][1].set_index("opportunity_id")["score"]
    both = scores[scores["opportunity_id"].isin(before.index)]
    assert len(both) == second["movement"]["compared"]
    assert (both["score_change"] == both["score"] - before.reindex(both["opportunity_id"]).to_numpy()).all()
    moved = both[both["score_change"] != 0]
    assert len(moved) and moved["change_reasons"].notna().all()
    for change, reasons in zip(moved["score_change"], moved["change_reasons"], strict=True):
        assert sum(int(p) for p in re.findall(r"([+-]\d+) points?\b", reasons)) == change
    assert scores.loc[~scores["opportunity_id"].isin(before.index), "score_change"].isna().all()
    assert not list(settings.history_dir.glob("as_of_date=*"))  # the lead history holds no deal
