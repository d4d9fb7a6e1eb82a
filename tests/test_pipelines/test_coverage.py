"""Property: the training rows cover the leads that predict scores (lead age and recency), whatever the seed."""

import pandas as pd
import pytest

from leadscore.features.build import build_features
from leadscore.features.spine import scoring_spine
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import load_crm
from leadscore.pipelines.training_set import crm_training_set

TABLES = ("leads", "accounts", "events", "opportunities")


def project(folder, seed: int, spine: str = ""):
    from leadscore.pipelines.sample_data import SampleSpec, generate

    generate(folder / "data", SampleSpec(n_leads=600, seed=seed, events_per_lead=10.0))
    config = folder / "leadscore.toml"
    config.write_text("".join(f'[tables.{n}]\npath = "data/{n}.parquet"\n' for n in TABLES) + spine)
    return load_settings(config)


def uncovered(settings) -> tuple[dict, float, dict]:
    """Per feature (lead age, recency), the share of scored leads outside the training range among the leads that
    fully observed rows reach with room to spare (age <= as_of - horizon - the first lead's creation - two snapshot
    steps: on 600 leads only a few are that old, and the seeded draw may skip their oldest cutoffs); the share of
    scored leads older than that; and the coverage report."""
    data = load_crm(settings)
    t = data.tables
    training = crm_training_set(settings, data)
    spine = scoring_spine(t["leads"], t["opportunities"], as_of=data.as_of)
    columns = ["lead_age_days", "events_days_since_last"]
    scored = build_features(spine, leads=t["leads"], events=t["events"], feature_names=columns)
    reachable = (data.as_of - pd.Timedelta(days=settings.spine.horizon_days) - t["leads"]["created_at"].min()).days
    reachable -= 2 * settings.spine.every_days
    created = t["leads"].set_index("lead_id")["created_at"]
    age = (data.as_of - spine["lead_id"].map(created)).dt.days  # the true age: lead_age_days stops at a year
    within = scored[age.to_numpy() <= reachable]
    outside = {}
    for column in columns:
        lo, hi = training.frame[column].min(), training.frame[column].max()
        outside[column] = float(((within[column] < lo) | (within[column] > hi)).mean())
    return outside, float((age > reachable).mean()), training.manifest["coverage"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_training_rows_cover_the_scored_leads_of_every_age_they_can_reach(tmp_path, seed):
    settings = project(tmp_path, seed)
    outside, unreachable, coverage = uncovered(settings)
    assert outside["lead_age_days"] <= 0.02 and outside["events_days_since_last"] <= 0.02
    # what is left outside is (nearly) only the leads older than any fully observed row can be
    assert coverage["lead_age_days"]["scored_outside_share"] <= unreachable + 0.02


def test_one_cutoff_per_lead_would_fail_the_property(tmp_path):
    settings = project(tmp_path, 1, spine='[spine]\npolicy = "fixed_delay"\n')
    outside, _, coverage = uncovered(settings)
    assert outside["lead_age_days"] > 0.5 and coverage["lead_age_days"]["scored_outside_share"] > 0.5
