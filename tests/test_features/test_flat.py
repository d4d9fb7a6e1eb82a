"""Flat mode: a hand-made table, and the two real datasets through the configs shipped in configs/."""

from pathlib import Path

import pandas as pd
import pytest

from leadscore.features.flat import FlatSpec, flat_open_leads, flat_training_set
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


def test_an_order_column_orders_the_training_rows_and_open_rows_keep_their_place_in_the_file():
    """An export listed newest first: the training rows follow the lead number (numbers, so 10 after 9), row_order
    numbers them in that order; the open row keeps its file position (predict finds it again by it)."""
    table = pd.DataFrame({"n": ["10", "9", "8", "2"], "x": ["a", "b", "a", "b"], "label": ["1", None, "0", "1"]})
    spec = FlatSpec(label_column="label", categorical=("x",), id_column="n", order_column="n")
    frame = flat_training_set(table, spec).training_set
    assert frame["lead_id"].tolist() == ["2", "8", "10"] and frame["row_order"].tolist() == [0, 1, 2]
    assert frame["converted"].tolist() == [1, 0, 1]
    opened = flat_open_leads(table, spec)
    assert opened["lead_id"].tolist() == ["9"] and opened["row_order"].tolist() == [1]


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


def test_the_x_education_holdout_is_the_latest_leads_by_lead_number():
    """Leads.csv lists the newest lead first: ordered by `Lead Number` (flat.order_column), the holdout is the latest
    fifth of the leads, not the oldest."""
    from leadscore.pipelines.verbs.train import holdout_split

    dataset("x_education_leads/Leads.csv")
    settings = load_settings(REPO / "configs" / "x_education.toml")
    training = build_training_set(settings)
    numbers = training.frame["lead_id"].astype(int)
    split = holdout_split(settings, training)
    assert numbers.iloc[split.holdout].min() > numbers.iloc[split.dev].max()
    assert numbers.is_monotonic_increasing and len(split.holdout) == 1848
    assert training.manifest["time_order"] == "column Lead Number"
