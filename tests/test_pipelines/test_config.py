from pathlib import Path

import pytest

from leadscore.pipelines.config import ConfigError, load_settings

GOOD = """
[tables.leads]
path = "leads.csv"
[tables.opportunities]
path = "opps.csv"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadscore.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return str(info.value)


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.spine.horizon_days == 90
    assert settings.resolve("data/x.csv") == tmp_path / "data/x.csv"
    assert settings.output_dir == tmp_path / "output"


def test_unknown_key_is_named_with_the_file(tmp_path):
    message = error_of(tmp_path, GOOD + "[spine]\nhorizon_dayz = 30\n")
    assert str(tmp_path / "leadscore.toml") in message
    assert "spine.horizon_dayz: unknown key" in message


def test_wrong_type_names_key_and_value(tmp_path):
    message = error_of(tmp_path, GOOD + '[spine]\nhorizon_days = "soon"\n')
    assert "spine.horizon_days: Input should be a valid number" in message
    assert "'soon'" in message


def test_missing_required_key(tmp_path):
    message = error_of(tmp_path, "[tables.leads]\npath = 'leads.csv'\n")
    assert "tables.opportunities: missing required key" in message


def test_unknown_column_role(tmp_path):
    message = error_of(tmp_path, GOOD.replace('path = "leads.csv"', 'path = "leads.csv"\ncolumns = {lead_idd = "Id"}'))
    assert "tables.leads.columns: unknown role(s) ['lead_idd']" in message


def test_table_needs_exactly_one_source(tmp_path):
    message = error_of(tmp_path, GOOD.replace('path = "opps.csv"', 'path = "o.csv"\nsql_url = "sqlite:///x.db"'))
    assert "tables.opportunities: Value error, give exactly one of 'path' or 'sql_url'" in message


def test_unknown_time_zone(tmp_path):
    assert "timezone: Value error, unknown time zone 'Mars/Base'" in error_of(
        tmp_path, 'timezone = "Mars/Base"\n' + GOOD
    )


def test_invalid_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in error_of(tmp_path, "[tables\n")
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_shipped_template_is_valid(tmp_path):
    from importlib import resources

    text = resources.files("leadscore.pipelines").joinpath("templates/leadscore.toml").read_text()
    settings = load_settings(write(tmp_path, text))
    assert settings.tables.opportunities.status_values["won"] == ["won", "closed won"]


def test_a_sales_touch_named_as_the_leads_activity_is_refused(tmp_path):
    message = error_of(tmp_path, GOOD + '[features]\nhigh_intent_events = ["demo_request", "Sales Call"]\n')
    assert "features.high_intent_events: ['sales_call'] are sales' own touches" in message


def test_declared_event_types_are_the_vocabulary_validation_knows(tmp_path):
    from leadscore.pipelines.intake.validation import known_event_types

    text = GOOD + '[features]\nevent_weights = { "Webinar Registration" = 7 }\n'
    text += '[grades.engagement.categories.trials]\nevents = ["trial_extended"]\nweight = 100\npoints_per_event = 10\n'
    settings = load_settings(write(tmp_path, text))
    types = settings.feature_params().event_types
    assert types[-2:] == ("trial_extended", "webinar_registration")
    assert known_event_types(settings) == {*types, "sales_call", "sales_email", "meeting"}


def test_the_live_minimum_is_counted_in_leads_and_reads_its_old_name(tmp_path):
    assert load_settings(write(tmp_path, GOOD)).monitor.min_live_leads == 200
    old = load_settings(write(tmp_path, GOOD + "[monitor]\nmin_live_outcomes = 50\n"))
    assert old.monitor.min_live_leads == 50
