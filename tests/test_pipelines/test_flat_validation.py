"""`leadscore validate` in flat mode is as strict as in CRM mode: every problem named with column, row and values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.flat_checks import flat_problems

CONFIG = (
    'mode = "flat"\n[flat]\npath = "flat.csv"\nid_column = "id"\nlabel_column = "y"\nnumeric = ["age"]\n'
    'categorical = ["job"]\nmissing_values = ["unknown"]\n'
)


def project(tmp_path: Path, text: str, extra: str = "") -> Path:
    (tmp_path / "flat.csv").write_text(text)
    config = tmp_path / "leadscore.toml"
    config.write_text(CONFIG + extra)
    return config


def validate(config: Path, code: int) -> str:
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == code, result.output
    return result.output


def test_a_clean_export_is_summarised(tmp_path):
    out = validate(project(tmp_path, "id,age,job,y\n1,30,a,1\n2,unknown,b,0\n3,50,c,\n4,60,d,0\n"), 0)
    assert "4 rows" in out and "3 labelled (1 positive, 33.3%), 1 open" in out and "0 error(s), 0 warning(s)" in out


def test_absent_declared_columns_are_listed_with_the_columns_present(tmp_path):
    out = validate(project(tmp_path, "id,Age,job,label\n1,30,a,1\n"), 1)
    assert "declared column(s) absent: ['y', 'age']; the file has 4 column(s): 'id', 'Age', 'job', 'label'" in out
    assert "1 error(s), 0 warning(s)" in out


def test_every_problem_is_listed_at_once(tmp_path):
    text = "id,age,job,y\n1,30,a,1\n1,thirty,b,maybe\n2,forty,c,0\n,50,d,0\n"
    out = validate(project(tmp_path, text, 'leaking = ["Tags"]\n'), 1)
    assert "warning: flat table" in out and "leaking column(s) not in the file: ['Tags']" in out
    outside = "column 'y', row 2: 1 label(s) are neither positive_values, negative_values nor open_values: 'maybe' (1)"
    assert outside in out
    assert "column 'age', row 2: 2 value(s) are not finite numbers: 'thirty' (1), 'forty' (1)" in out
    assert "column 'id', row 1: 2 row(s) share an id with another row: '1' (2)" in out
    assert "column 'id', row 4: 1 row(s) have no id" in out
    assert "4 error(s), 1 warning(s)" in out


def test_no_positive_label_names_the_setting_to_check(tmp_path):
    out = validate(project(tmp_path, "id,age,job,y\n1,30,a,no\n2,40,b,no\n", 'negative_values = ["no", "yes"]\n'), 1)
    assert "no positive label among 2 labelled row(s) (labels: 'no' (2))" in out and "flat.positive_values" in out


def test_unreadable_times_are_refused(tmp_path):
    config = project(tmp_path, "id,when,age,job,y\n1,2025-01-02,30,a,1\n2,yesterday,40,b,0\n", 'time_column = "when"\n')
    assert "column 'when', row 2: 1 value(s) are not timestamps: 'yesterday' (1)" in validate(config, 1)


def test_a_column_declared_twice_is_a_config_error(tmp_path):
    config = project(tmp_path, "id,age,job,y\n1,30,a,1\n", 'time_column = "age"\n')
    out = validate(config, 2)
    assert "declared more than once" in out and "'age'" in out


def test_train_stops_at_the_first_flat_error(tmp_path):
    config = project(tmp_path, "id,age,job,y\n1,30,a,1\n1,40,b,0\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 1 and "share an id with another row" in result.output


def test_flat_problems_on_a_frame():
    settings = load_settings_from_text(CONFIG)
    frame = pd.DataFrame({"id": ["a", "b"], "age": ["1", "2"], "job": ["x", "y"], "y": ["1", "0"]})
    assert flat_problems(frame, settings.flat, where="t") == []


def load_settings_from_text(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leadscore.toml"
        path.write_text(text)
        return load_settings(path)


def test_rows_listed_newest_first_are_a_warning_naming_the_order_column(tmp_path):
    text = "id,age,job,y\n104,30,a,1\n103,40,b,0\n102,50,c,0\n101,60,d,1\n"
    out = validate(project(tmp_path, text), 0)
    assert "the rows run from the highest id to the lowest" in out
    assert "set flat.order_column = 'id'" in out and "0 error(s), 1 warning(s)" in out
    out = validate(project(tmp_path, text, 'order_column = "id"\n'), 0)
    assert "0 error(s), 0 warning(s)" in out


def test_an_order_column_with_blanks_is_an_error_naming_the_first_row(tmp_path):
    text = "id,n,age,job,y\n1,3,30,a,1\n2,,40,b,0\n3,1,50,c,0\n"
    out = validate(project(tmp_path, text, 'order_column = "n"\n'), 1)
    assert "row 2" in out and "1 row(s) have no value in the order column" in out


def test_a_time_column_and_an_order_column_together_are_refused(tmp_path):
    import pytest

    from leadscore.pipelines.errors import ConfigError

    config = project(tmp_path, "id,age,job,y\n1,30,a,1\n", 'time_column = "t"\norder_column = "id"\n')
    with pytest.raises(ConfigError, match="give time_column or order_column, not both"):
        load_settings(config)
