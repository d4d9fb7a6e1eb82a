"""The shipped configs for the two real datasets run validate -> train -> predict -> explain in flat mode, on a test
copy whose last tenth of rows has an empty label (the open leads). Skipped when ../shared/datasets is absent."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from tests.conftest import REPO, dataset

# small model settings: this test checks the path end to end, not the model's quality (benchmarks/ does that)
SMALL_MODEL = "\n[model]\nn_estimators = 40\nnum_leaves = 7\nearly_stopping_rounds = 10\n"


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def working_copy(config_name: str, relative: str, tmp_path: Path, *, separator: str, every: int) -> tuple[Path, str]:
    """The shipped config pointed at a copy of its data (every `every`-th row, the last tenth unlabelled)."""
    source = dataset(relative)
    text = (REPO / "configs" / config_name).read_text()
    label = re.search(r'label_column = "([^"]+)"', text).group(1)
    frame = pd.read_csv(source, sep=separator, dtype=str, keep_default_na=False).iloc[::every].reset_index(drop=True)
    frame.loc[int(len(frame) * 0.9) :, label] = ""
    copy = tmp_path / Path(relative).name
    frame.to_csv(copy, sep=separator, index=False)
    text = re.sub(r'path = "[^"]+"', f'path = "{copy}"', text, count=1)
    text = re.sub(r'dir = "[^"]+"', 'dir = "output"', text)
    config = tmp_path / config_name
    config.write_text(text + SMALL_MODEL)
    return config, label


@pytest.mark.parametrize(
    ("config_name", "relative", "separator", "every"),
    [
        ("bank_marketing.toml", "uci_bank_marketing/bank-additional-full.csv", ";", 4),
        ("x_education.toml", "x_education_leads/Leads.csv", ",", 1),
    ],
)
def test_shipped_config_validates_trains_predicts_and_explains(tmp_path, config_name, relative, separator, every):
    config, label = working_copy(config_name, relative, tmp_path, separator=separator, every=every)
    rows = len(pd.read_csv(config.parent / Path(relative).name, sep=separator, dtype=str))
    open_rows = rows - int(rows * 0.9)
    out = invoke("validate", "--config", config)
    assert f"{open_rows:,} open" in out and "0 error(s)" in out
    out = invoke("train", "--config", config)
    name = config.stem
    assert f"registered {name}-conversion version 1" in out
    assert (config.parent / "mlflow.db").exists()
    scores_path = tmp_path / "scores.csv"
    invoke("predict", "--config", config, "--out", scores_path)
    scores = pd.read_csv(scores_path)
    assert len(scores) == open_rows and scores["probability"].between(0, 1).all()
    assert scores["reasons_positive"].notna().any() and scores["score"].between(1, 99).all()
    report = tmp_path / "report.html"
    invoke("explain", "--config", config, "--out", report)
    assert report.stat().st_size > 10_000
