"""The leak guards on hand-made sets: an account entered only for deals that closed, a field filled only at closing,
and a strong but legitimate feature that must raise nothing."""

import numpy as np
import pandas as pd
import pytest

from leadscore.models.leakage import (
    LeakThresholds,
    missing_share_gaps,
    pure_groups,
    separating_features,
    single_feature_auc,
    value_groups,
)

ROWS = 100


def book() -> tuple[pd.DataFrame, pd.DataFrame]:
    """100 closed rows (30 converted) in a seeded time order, and 10 open leads to score.

    `account` is missing on 40 rows, none converted (entered only once a deal was won or still being worked: most open
    leads lack it); `close_reason` is filled on every closed row and on no open one; `tier` converts at 67 % (A), 9 %
    (B) and 33 % (missing), missing as often on open leads as on closed ones; `visits` is higher for converters."""
    converted = np.array([0] * 70 + [1] * 30)
    account = np.array([None] * 40 + ["acme", "globex"] * 15 + ["acme"] * 15 + ["globex"] * 15, dtype=object)
    tier = np.array(["A"] * 10 + ["B"] * 50 + [None] * 10 + ["A"] * 20 + ["B"] * 5 + [None] * 5, dtype=object)
    visits = np.concatenate([np.arange(70) % 12, 6 + np.arange(30) % 12]).astype(float)
    frame = pd.DataFrame(
        {
            "converted": converted,
            "account": account,
            "close_reason": np.where(np.arange(ROWS) % 2 == 0, "price", "timing"),
            "tier": tier,
            "visits": visits,
        }
    )
    frame = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    scored = pd.DataFrame(
        {
            "account": [None] * 8 + ["acme", "globex"],
            "close_reason": [None] * 10,
            "tier": ["A", "B", "B", "A", "B", None, "A", "B", "B", "A"],
            "visits": [1.0, 5, 9, 2, 14, 7, 3, 0, 11, 6],
        }
    )
    return frame, scored


DEV, HOLDOUT = np.arange(80), np.arange(80, ROWS)
FEATURES, CATEGORICAL = ["account", "close_reason", "tier", "visits"], ["account", "close_reason", "tier"]


def test_an_account_missing_only_on_deals_that_never_converted_is_named():
    frame, _ = book()
    found = separating_features(frame, features=FEATURES, categorical=CATEGORICAL, dev=DEV, holdout=HOLDOUT)
    assert [(s.feature, s.check, s.text) for s in found] == [
        (
            "account",
            "separates",
            "suspect feature account: missing on 40 training rows, none of which converted (at the overall 30.0% "
            "about 12 would have): it separates the outcomes by itself",
        )
    ]


def test_a_field_filled_only_at_closing_and_the_account_missing_on_open_leads_are_named():
    frame, scored = book()
    found = missing_share_gaps(frame, scored, features=FEATURES)
    assert [s.text for s in found] == [
        "suspect feature account: missing on 80.0% of the 10 leads predict would score but on 40.0% of the 100 "
        "training rows (gap > 25%): the signature of a field filled only when a deal closes",
        "suspect feature close_reason: missing on 100.0% of the 10 leads predict would score but on 0.0% of the 100 "
        "training rows (gap > 25%): the signature of a field filled only when a deal closes",
    ]
    assert {s.check for s in found} == {"missing_gap"}


def test_a_strong_but_legitimate_feature_raises_nothing():
    """`tier` alone reaches a holdout ROC AUC near 0.8 and `visits` separates well too, but no group of theirs is
    pure and they are missing as often on the open leads: neither check fires."""
    frame, scored = book()
    clean = ["tier", "visits"]
    auc = single_feature_auc(frame["tier"], frame["converted"], DEV, HOLDOUT, categorical=True)
    assert 0.7 < auc < 0.95
    assert separating_features(frame, features=clean, categorical=["tier"], dev=DEV, holdout=HOLDOUT) == []
    assert missing_share_gaps(frame, scored, features=clean) == []


def test_a_pure_group_that_chance_explains_at_a_low_rate_is_not_named():
    """4 conversions in 200 rows (2 %): 50 rows of one industry without one is what chance gives (1 expected)."""
    frame = pd.DataFrame({"industry": ["niche"] * 50 + ["retail"] * 150, "converted": [0] * 196 + [1] * 4})
    groups = value_groups(frame["industry"], categorical=True)
    assert pure_groups(groups, frame["converted"], thresholds=LeakThresholds()).empty
    found = pure_groups(groups, frame["converted"], thresholds=LeakThresholds(group_expected=0.5))
    assert found.to_dict("records") == [
        {"group": "niche", "rows": 50, "leads": 50.0, "converted": 0.0, "expected": 1.0}
    ]


def test_a_value_seen_only_on_converted_leads_is_named_with_its_value():
    frame = pd.DataFrame(
        {
            "tag": ["closed by rep"] * 30 + ["ringing", "busy"] * 35,
            "converted": [1] * 30 + [1, 0, 0, 0, 0] * 14,
        }
    )
    found = separating_features(
        frame, features=["tag"], categorical=["tag"], dev=np.arange(50), holdout=np.arange(50, 100)
    )
    assert [s.text for s in found] == [
        "suspect feature tag: = 'closed by rep' on 30 training rows, every one of which converted (at the overall "
        "44.0% about 17 would not have): it separates the outcomes by itself"
    ]


def test_a_numeric_range_without_conversions_is_a_finding_of_the_model_but_a_coded_flag_is_a_group():
    """A lead age converting at 0 % from some age on is a real signal: numbers form no groups but the missing one.
    A number with at most five values is a coded category (Maven: the profile completeness is 0 exactly when the
    account is missing)."""
    ages = pd.Series([float(v) for v in range(60)] + [np.nan] * 20)
    assert value_groups(ages, categorical=False).dropna().tolist() == ["(missing)"] * 20
    flag = pd.Series([0.0] * 40 + [1.0] * 60)
    assert value_groups(flag, categorical=False).tolist() == ["0.0"] * 40 + ["1.0"] * 60
    frame = pd.DataFrame({"completeness": flag, "converted": [0] * 40 + [0, 1] * 30})
    found = separating_features(
        frame, features=["completeness"], categorical=[], dev=np.arange(70), holdout=np.arange(70, 100)
    )
    assert [s.text for s in found] == [
        "suspect feature completeness: = '0.0' on 40 training rows, none of which converted (at the overall 30.0% "
        "about 12 would have): it separates the outcomes by itself"
    ]


@pytest.mark.parametrize(("values", "expected"), [([0.0, 1.0] * 50, 1.0), ([1.0, 1.0, 0.0, 0.0] * 25, 0.5)])
def test_single_feature_auc_scores_the_holdout_with_the_development_rates(values, expected):
    y = pd.Series([0, 1] * 50)
    assert single_feature_auc(pd.Series(values), y, DEV, HOLDOUT, categorical=False) == expected


def test_the_missing_share_check_is_silent_without_leads_to_score():
    frame, scored = book()
    assert missing_share_gaps(frame, scored.iloc[:0], features=FEATURES) == []


def test_a_field_filled_more_often_on_the_open_leads_is_named_but_blocks_nothing():
    """The bank's last contacts had more often been contacted before (`pdays` filled): a shift, not a leak."""
    training = pd.DataFrame({"pdays": [np.nan] * 95 + [3.0] * 5})
    scored = pd.DataFrame({"pdays": [np.nan] * 6 + [4.0] * 4})
    [found] = missing_share_gaps(training, scored, features=["pdays"])
    assert not found.blocks and found.text == (
        "suspect feature pdays: missing on 60.0% of the 10 leads predict would score but on 95.0% of the 100 training "
        "rows (gap > 25%): filled more often now than in the training rows: a shift, not a leak"
    )
    frame, open_leads = book()
    assert all(s.blocks for s in missing_share_gaps(frame, open_leads, features=FEATURES))
