"""Flat mode: a hand-made table, and the two real datasets through the configs shipped in configs/."""

from pathlib import Path

import pandas as pd
import pytest

from leadscore.features.flat import FlatSpec, flat_training_set
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.training_set import build_training_set
from tests.conftest import REPO, dataset

TABLE = pd.DataFrame(
    {
        "id": [3, 1, 2, 4],
        "when": ["2025-01-03", "2025-01-01", "2025-01-02", "2025-01-04"],
        "source": ["web", "Select", "ads", "web"],
        "visits": ["5", "Select", "2", "1"],
        "tags": ["won!", "lost", "won!", "?"],
        "label": ["yes", "no", "yes", None],
    }
)


def test_flat_table_in_time_order_with_placeholders_missing_and_leaks_excluded():
    spec = FlatSpec(
        label_column="label",
        categorical=("source",),
        numeric=("visits",),
        positive_values=("yes",),
        id_column="id",
        time_column="when",
        missing_values=("Select",),
        leaking=("tags",),
    )
    result = flat_training_set(TABLE, spec)
    frame = result.training_set
    assert frame["lead_id"].tolist() == ["1", "2", "3"]
    assert frame["converted"].tolist() == [0, 1, 1]
    assert frame["source"].isna().tolist() == [True, False, False]
    assert frame["visits"].tolist()[1:] == [2.0, 5.0] and pd.isna(frame["visits"].iloc[0])
    assert "tags" not in frame and result.excluded_leaking == ["tags"]
    assert result.unlabelled == 1


def test_absent_declared_column_is_named():
    with pytest.raises(KeyError, match=r"declared column\(s\) absent: \['nope'\]"):
        flat_training_set(TABLE, FlatSpec(label_column="label", numeric=("nope",)))


@pytest.mark.parametrize(
    ("config", "data", "rows", "rate", "excluded"),
    [
        ("bank_marketing.toml", "uci_bank_marketing/bank-additional-full.csv", 41_188, 0.1127, ["duration"]),
        ("x_education.toml", "x_education_leads/Leads.csv", 9_240, 0.3854, ["Tags", "Lead Quality"]),
    ],
)
def test_real_datasets_load_in_flat_mode(config, data, rows, rate, excluded):
    dataset(data)
    settings = load_settings(REPO / "configs" / config)
    training = build_training_set(settings)
    frame = training.frame
    assert len(frame) == rows
    assert frame["converted"].mean() == pytest.approx(rate, abs=5e-4)
    for column in excluded:
        assert column not in frame and column in training.manifest["excluded_leaking_columns"]
    assert list(frame["row_order"]) == sorted(frame["row_order"])
    if config.startswith("x_"):
        assert not (frame["Specialization"] == "Select").any()


def test_configs_point_at_shared_relative_to_the_repo():
    settings = load_settings(REPO / "configs" / "bank_marketing.toml")
    assert settings.resolve(settings.flat.path) == (REPO / "configs" / settings.flat.path)
    assert Path(settings.resolve(settings.flat.path)).resolve().parent.name == "uci_bank_marketing"
