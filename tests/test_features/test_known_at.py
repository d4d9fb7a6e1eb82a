"""Lead fields filled in after the lead was created (BANT answers, profile details): read only from their known_at
time on, or kept out of the built-in feature sets when the leads table does not say when they were filled in."""

import numpy as np
import pandas as pd

from leadscore.features.build import build_features
from leadscore.features.context import FeatureParams
from leadscore.features.custom import CustomField
from leadscore.features.registry import all_features, feature_set, without_known_at


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


LEADS = pd.DataFrame(
    {
        "lead_id": ["L1", "L2"],
        "created_at": [ts("2025-01-01"), ts("2025-01-01")],
        "email": ["a@corp.com", "b@corp.com"],
        "phone": ["+1 555", "+1 556"],
        "phone_known_at": [ts("2025-01-01"), ts("2025-03-01")],
        "job_title": ["VP Sales", None],
        "department": [None, None],
        "country": ["DE", "FR"],
        "account_id": [None, None],
        "bant_budget": ["yes", "no"],
        "bant_budget_known_at": [ts("2025-02-01"), pd.NaT],  # L2's answer: nobody recorded when
        "lead_origin": ["event", "web"],
        "lead_origin_known_at": [ts("2025-01-20"), ts("2025-01-01")],
    }
)
CUTOFFS = [ts("2025-01-15"), ts("2025-02-01"), ts("2025-02-02"), ts("2025-03-02")]
SPINE = pd.DataFrame({"lead_id": ["L1"] * 4 + ["L2"] * 4, "cutoff_time": CUTOFFS * 2})
ORIGIN = CustomField("lead_origin", "leads", "categorical", "How the lead first reached us")
PARAMS = FeatureParams(known_at=("phone", "bant_budget", "lead_origin"), custom_fields=(ORIGIN,))
NAMES = ["lead_bant_budget", "lead_profile_completeness", "lead_has_contact_details", "lead_origin"]


def test_a_field_counts_only_strictly_after_it_was_filled_in():
    f = build_features(SPINE, leads=LEADS, feature_names=NAMES, params=PARAMS)
    # L1 answered on 1 Feb: unknown at the cutoffs of 15 Jan and 1 Feb itself; L2's answer has no time: never read
    assert f["lead_bant_budget"].tolist()[:4] == [pd.NA, pd.NA, "yes", "yes"]
    assert f["lead_bant_budget"].iloc[4:].isna().all()
    # L2's phone arrived on 1 March: its profile is 3 of 6 fields (e-mail, country, phone) only after it
    np.testing.assert_allclose(f["lead_profile_completeness"].iloc[4:], [200 / 6] * 3 + [50.0])
    np.testing.assert_allclose(f["lead_profile_completeness"].iloc[:4], [400 / 6] * 4)  # title, e-mail, phone, DE
    assert f["lead_origin"].tolist() == [pd.NA, "event", "event", "event"] + ["web"] * 4


def test_without_known_at_the_snapshot_is_read_at_every_cutoff():
    """What every past cutoff read before: today's values."""
    f = build_features(SPINE, leads=LEADS, feature_names=NAMES, params=FeatureParams(custom_fields=(ORIGIN,)))
    assert f["lead_bant_budget"].tolist() == ["yes"] * 4 + ["no"] * 4
    np.testing.assert_allclose(f["lead_profile_completeness"], [400 / 6] * 4 + [50.0] * 4)


def test_built_in_sets_leave_out_features_whose_late_fields_have_no_known_at():
    late = {"lead_bant_budget", "lead_bant_authority", "lead_bant_need", "lead_bant_timeline"}
    default = feature_set("default")
    assert not late & set(default) and "lead_profile_completeness" not in default
    assert "lead_seniority" in default and "lead_age_days" in default
    with_budget = feature_set("default", known_at=("bant_budget",))
    assert set(with_budget) - set(default) == {"lead_bant_budget"}
    every = ("bant_budget", "phone", "job_title", "department", "country", "account_id")
    assert "lead_profile_completeness" in feature_set("demographic", known_at=every)
    # a set of your own keeps what it lists
    assert feature_set("mine", {"mine": ["lead_bant_need"]}) == ["lead_bant_need"]
    assert without_known_at(all_features(), ("phone", "job_title", "department", "country"))[
        "lead_profile_completeness"
    ] == ["account_id"]
