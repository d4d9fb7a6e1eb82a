"""Time travel: the full data viewed `--as-of D` is exactly the data as it stood at D (training set, grades,
scores), for several D; and every verb works with an as-of inside the data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.pipelines.config import load_settings
from leadscore.pipelines.grading import grade_open_leads
from leadscore.pipelines.intake.validation import validate_frames
from leadscore.pipelines.training_set import build_training_set, crm_training_set
from leadscore.pipelines.verbs.scoring import score_open_leads
from leadscore.pipelines.verbs.train import fit_model

TABLES = ("leads", "accounts", "events", "opportunities")
START, END = pd.Timestamp("2024-09-01", tz="UTC"), pd.Timestamp("2025-12-20", tz="UTC")


@pytest.fixture(scope="module")
def small_project(tmp_path_factory) -> Path:
    """500 sample leads (a different seed from the shared fixture) with their own config."""
    from leadscore.pipelines.sample_data import SampleSpec, generate

    folder = tmp_path_factory.mktemp("time_travel")
    generate(folder / "data", SampleSpec(n_leads=500, seed=11, events_per_lead=20.0))
    tables = "".join(f'[tables.{n}]\npath = "data/{n}.parquet"\n' for n in TABLES)
    config = folder / "leadscore.toml"
    config.write_text(tables + "[model]\nmin_positives = 5\nmin_negatives = 5\nn_estimators = 40\n")
    return config


@pytest.fixture(scope="module")
def raw(small_project) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(small_project.parent / "data" / f"{n}.parquet") for n in TABLES}


def truncated_at(raw: dict[str, pd.DataFrame], at: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The tables as the CRM held them at `at`: later rows absent, later closes, acceptances and rejections not yet
    made."""
    leads = raw["leads"][raw["leads"]["created_at"] <= at].copy()
    if "sales_accepted_at" in leads:
        leads.loc[leads["sales_accepted_at"] > at, "sales_accepted_at"] = pd.NaT
    if "sales_rejected_at" in leads:
        later = leads["sales_rejected_at"] > at
        leads.loc[later, "sales_rejected_at"] = pd.NaT
        leads.loc[later, "rejection_reason"] = None
    events = raw["events"][(raw["events"]["occurred_at"] <= at) & raw["events"]["lead_id"].isin(leads["lead_id"])]
    opps = raw["opportunities"]
    opps = opps[(opps["created_at"] <= at) & opps["lead_id"].isin(leads["lead_id"])].copy()
    later = opps["closed_at"] > at
    opps.loc[later, "status"] = "open"
    opps.loc[later, "closed_at"] = pd.NaT
    return {"leads": leads, "accounts": raw["accounts"], "events": events, "opportunities": opps}


@pytest.fixture(scope="module")
def model(small_project):
    cfg = load_settings(small_project)
    training = build_training_set(cfg)
    return fit_model(cfg, training, np.arange(len(training.frame)))


class _Wrapper:
    reference_profile: dict = {}
    feature_set = "default"


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seconds=st.integers(0, int((END - START).total_seconds())))
def test_full_data_as_of_d_equals_the_data_truncated_at_d(small_project, raw, model, seconds):
    cfg = load_settings(small_project)
    at = START + pd.Timedelta(seconds=seconds)
    full = validate_frames({n: f.copy() for n, f in raw.items()}, cfg, as_of=at)
    past = validate_frames(truncated_at(raw, at), cfg, as_of=at)
    assert full.errors == [] and past.errors == []
    assert sum(full.after_as_of.values()) > 0 and past.after_as_of == {}
    a, b = crm_training_set(cfg, full), crm_training_set(cfg, past)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.manifest["spine"] == b.manifest["spine"] and a.manifest["coverage"] == b.manifest["coverage"]
    pd.testing.assert_frame_equal(grade_open_leads(cfg, full), grade_open_leads(cfg, past))
    scored = [
        score_open_leads(cfg, d, model, _Wrapper(), model_name="m", model_version="1").scores for d in (full, past)
    ]
    assert len(scored[0]) > 0
    pd.testing.assert_frame_equal(scored[0], scored[1])


def test_every_verb_runs_with_an_as_of_in_the_middle_of_the_data(small_project, tmp_path):
    from typer.testing import CliRunner

    from leadscore.pipelines.cli import app

    runner = CliRunner()
    config = ["--config", str(small_project), "--as-of", "2025-03-01"]
    for verb, extra in [
        ("validate", []),
        ("build-training-set", ["--out", str(tmp_path / "ts.parquet")]),
        ("grade", ["--out", str(tmp_path / "grades.csv")]),
        ("train", []),
        ("predict", ["--out", str(tmp_path / "scores.csv")]),
    ]:
        result = runner.invoke(app, [verb, *config, *extra])
        assert result.exit_code == 0, (verb, result.output)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert (pd.to_datetime(scores["as_of"], utc=True) == pd.Timestamp("2025-03-01", tz="UTC")).all()
    assert not (tmp_path / "scores.rejects.csv").exists() or len(pd.read_csv(tmp_path / "scores.rejects.csv")) == 0
