"""`tables.leads.known_at`: the time a late-filled lead field was filled in, read by validation, the as-of view,
the features and the training set's feature list."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import ConfigError, load_settings
from leadscore.pipelines.intake.validation import load_crm

LEADS = (
    "lead_id,created_at,job_title,BANT Budget,Budget Answered\n"
    "L1,2025-01-01,CTO,yes,2025-02-10\n"
    "L2,2025-01-02,VP Sales,no,\n"
    "L3,2025-01-03,Engineer,,\n"
)
OPPS = "opportunity_id,lead_id,created_at,closed_at,status\nO1,L1,2025-02-01,2025-03-01,won\n"


def project(tmp_path: Path, known_at: str = 'known_at = { bant_budget = "Budget Answered" }\n') -> Path:
    (tmp_path / "leads.csv").write_text(LEADS)
    (tmp_path / "opps.csv").write_text(OPPS)
    config = tmp_path / "leadscore.toml"
    config.write_text(
        '[tables.leads]\npath = "leads.csv"\ncolumns = { bant_budget = "BANT Budget" }\n'
        + known_at
        + '[tables.opportunities]\npath = "opps.csv"\n'
    )
    return config


def test_validation_reads_the_time_warns_of_values_without_one_and_the_as_of_view_hides_later_answers(tmp_path):
    settings = load_settings(project(tmp_path))
    data = load_crm(settings)
    leads = data.tables["leads"].set_index("lead_id")
    assert leads.loc["L1", "bant_budget_known_at"] == pd.Timestamp("2025-02-10", tz="UTC")
    assert [p.message for p in data.problems if p.rule == "value without its known_at time"] == [
        "leads.bant_budget: 1 value(s) with no time they were filled in (tables.leads.known_at.bant_budget): "
        "read as not yet known at every cutoff"
    ]
    earlier = load_crm(settings, as_of=pd.Timestamp("2025-02-05", tz="UTC")).tables["leads"].set_index("lead_id")
    assert pd.isna(earlier.loc["L1", "bant_budget"]) and pd.isna(earlier.loc["L1", "bant_budget_known_at"])
    assert settings.feature_params().known_at == ("bant_budget",)
    assert "lead_bant_budget" in settings.selected_features()
    assert set(settings.filled_late()) == {
        "lead_bant_authority",
        "lead_bant_need",
        "lead_bant_timeline",
        "lead_profile_completeness",
    }


def test_build_training_set_says_which_features_it_left_out(tmp_path):
    config = project(tmp_path, known_at="")
    result = CliRunner().invoke(app, ["build-training-set", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "warning: left out of the feature set: lead_profile_completeness, lead_bant_budget" in result.output
    assert "give tables.leads.known_at (the column saying when each was filled in) for account_id, bant_" in (
        result.output
    )
    manifest = pd.read_json(tmp_path / "output" / "training_set.manifest.json", typ="series")
    assert "lead_bant_budget" not in manifest["features"] and manifest["filled_late"]["kept"] is False


@pytest.mark.parametrize(
    ("known_at", "message"),
    [
        (
            'known_at = { created_at = "Budget Answered" }\n',
            "tables.leads.known_at: ['created_at'] are not lead fields",
        ),
        ('known_at = { bant_budget = "Answered On" }\n', "column 'Answered On' (when 'bant_budget' was filled in)"),
    ],
)
def test_a_known_at_that_names_no_lead_field_or_no_column_is_refused(tmp_path, known_at, message):
    config = project(tmp_path, known_at)
    if "not lead fields" in message:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_settings(config)
        return
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 1 and message in result.output
