"""Flat exports with open rows and without an id (issue 26), in the shapes CRMs really write them.

A Pipedrive deals export says Won / Lost / Open in "Deal - Status" and has no id column; a Salesforce lead report's
"Converted" is false for the leads still being worked, and only "Lead Status" tells them apart from the lost ones.
Open rows are scored by `predict`, never trained as negatives (nor positives); a row without an id is known by its
row number, with the columns named in `flat.identify_columns` beside it in the scores file.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.features.flat import FlatSpec, flat_counts, flat_open_leads, flat_training_set, is_open
from leadscore.pipelines.cli import app
from leadscore.pipelines.config import ConfigError, load_settings
from leadscore.pipelines.intake.files import setting_key
from leadscore.pipelines.intake.flat_checks import flat_problems

SMALL_MODEL = "[model]\nn_estimators = 60\nnum_leaves = 7\nmin_child_samples = 10\nearly_stopping_rounds = 10\n"
ROW_ID = "lead_id: row number in the file (1 = first data row)"


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


# --- the label and open resolution on hand-made frames ----------------------------------------------------------


def test_open_values_in_the_label_column_and_an_empty_label_are_open():
    frame = pd.DataFrame({"Deal - Status": ["Won", "lost", " open ", "OPEN", None, "  ", "Lost"], "v": range(7)})
    spec = FlatSpec(label_column="Deal - Status", numeric=("v",), positive_values=("Won",), open_values=("Open",))
    assert is_open(frame, spec).tolist() == [False, False, True, True, True, True, False]
    assert flat_counts(frame, spec).__dict__ == {"rows": 7, "labelled": 3, "positive": 1, "open": 4}
    trained = flat_training_set(frame, spec).training_set
    assert trained["lead_id"].tolist() == ["1", "2", "7"] and trained["converted"].tolist() == [1, 0, 0]
    assert flat_open_leads(frame, spec)["lead_id"].tolist() == ["3", "4", "5", "6"]


def test_a_status_column_makes_a_row_open_whatever_its_label_says():
    frame = pd.DataFrame(
        {
            "Converted": ["true", "false", "false", "true", "false", "false"],
            "Lead Status": [
                "Closed - Converted",
                "Working -  Contacted",  # spaces and case do not matter
                "Closed - Not Converted",
                "open - not contacted",
                "Unqualified",
                None,
            ],
            "Lead Source": ["Web", "Web", "Partner", "Web", "Partner", "Web"],
        }
    )
    spec = FlatSpec(
        label_column="Converted",
        categorical=("Lead Source",),
        positive_values=("true",),
        status_column="Lead Status",
        open_values=("Open - Not Contacted", "Working - Contacted"),
    )
    assert is_open(frame, spec).tolist() == [False, True, False, True, False, False]
    assert flat_counts(frame, spec).__dict__ == {"rows": 6, "labelled": 4, "positive": 1, "open": 2}
    result = flat_training_set(frame, spec)
    assert result.training_set["lead_id"].tolist() == ["1", "3", "5", "6"]
    assert result.training_set["converted"].tolist() == [1, 0, 0, 0] and result.unlabelled == 2
    assert flat_open_leads(frame, spec)["lead_id"].tolist() == ["2", "4"]


def test_without_open_values_only_an_empty_label_is_open_as_before():
    frame = pd.DataFrame({"id": ["a", "b", "c"], "y": ["yes", "", "no"], "v": [1, 2, 3]})
    spec = FlatSpec(label_column="y", numeric=("v",), id_column="id")
    assert is_open(frame, spec).tolist() == [False, True, False]
    assert flat_open_leads(frame, spec)["lead_id"].tolist() == ["b"]


def flat_settings(extra: str, tmp_path: Path):
    config = tmp_path / "leadscore.toml"
    config.write_text(
        'mode = "flat"\n[flat]\npath = "x.csv"\nlabel_column = "Deal - Status"\npositive_values = ["Won"]\n'
        'negative_values = ["Lost"]\ncategorical = ["Deal - Pipeline"]\n' + extra
    )
    return load_settings(config).flat


def test_an_unknown_label_names_open_values_and_missing_values_do_not_hide_it(tmp_path):
    frame = pd.DataFrame({"Deal - Status": ["Won", "Open", "Lost", "Open"], "Deal - Pipeline": ["a", "b", "a", "b"]})
    for extra in ("", 'missing_values = ["Open"]\n'):
        [problem] = flat_problems(frame, flat_settings(extra, tmp_path), where="flat table (deals.csv)")
        assert problem.error.row == 2 and problem.error.column == "Deal - Status"
        assert "2 label(s) are neither positive_values, negative_values nor open_values: 'Open' (2)" in problem.message
        assert "flat.open_values" in problem.error.hint
    assert flat_problems(frame, flat_settings('open_values = ["open"]\n', tmp_path), where="t") == []


def test_an_unknown_label_beside_a_status_column_names_the_statuses_to_list(tmp_path):
    frame = pd.DataFrame({"Deal - Status": ["Won", "Pending", "Lost"], "S": ["x", "y", "z"], "Deal - Pipeline": "a"})
    flat = flat_settings('status_column = "S"\nopen_values = ["y2"]\n', tmp_path)
    [problem] = flat_problems(frame, flat, where="t")
    assert "list the statuses of 'S' that mean still open in flat.open_values" in problem.error.hint


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('open_values = ["won"]\n', "open_values also listed as positive or negative values: ['won']"),
        ('status_column = "S"\n', "status_column needs open_values"),
        ('status_column = "Deal - Pipeline"\nopen_values = ["x"]\n', "declared more than once"),
    ],
)
def test_contradictory_open_settings_are_config_errors(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        flat_settings(extra, tmp_path)


# --- a Pipedrive deals export: Won / Lost / Open, no id column ---------------------------------------------------

PIPEDRIVE_ROWS = 400
PIPEDRIVE_OPEN = 53  # the 50 latest deals, and three older ones still lingering


def pipedrive_deals() -> pd.DataFrame:
    """Deals in creation order, a real signal in the pipeline and the value; outcomes leak into the won / lost
    times and the lost reason."""
    rng = np.random.default_rng(26)
    n = PIPEDRIVE_ROWS
    created = pd.Timestamp("2025-01-02 08:00") + pd.to_timedelta(np.sort(rng.uniform(0, 360, n)), unit="D")
    pipeline = rng.choice(["Inbound", "Outbound", "Partner"], n)
    value = rng.integers(5, 200, n) * 100
    logit = -0.4 + np.select([pipeline == "Partner", pipeline == "Outbound"], [1.6, -1.4], 0.0) + value / 20_000
    status = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Won", "Lost").astype(object)
    status[[100, 200, 300, *range(n - 50, n)]] = "Open"
    closed_at = (created + pd.to_timedelta(rng.integers(3, 60, n), unit="D")).strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(
        {
            "Deal - Title": [f"Deal {i} with Org {i % 97}" for i in range(n)],
            "Deal - Status": status,
            "Deal - Deal created": created.strftime("%Y-%m-%d %H:%M:%S"),
            "Deal - Won time": np.where(status == "Won", closed_at, ""),
            "Deal - Lost time": np.where(status == "Lost", closed_at, ""),
            "Deal - Lost reason": np.where(status == "Lost", rng.choice(["Price", "No budget", "Competitor"], n), ""),
            "Deal - Value": value,
            "Deal - Currency": "EUR",
            "Deal - Pipeline": pipeline,
            "Deal - Stage": np.where(status == "Open", rng.choice(["Qualified", "Proposal Made"], n), "Negotiations"),
            "Deal - Owner": rng.choice(["Ana Silva", "Tom Berg"], n),
            "Organization - Name": [f"Org {i % 97}" for i in range(n)],
            "Person - Name": [f"Person {i}" for i in range(n)],
        }
    )


PIPEDRIVE_CONFIG = """mode = "flat"
[flat]
path = "deals.csv"
label_column = "Deal - Status"
positive_values = ["Won"]
negative_values = ["Lost"]
open_values = ["Open"]
time_column = "Deal - Deal created"
categorical = ["Deal - Pipeline", "Deal - Owner", "Deal - Currency"]
numeric = ["Deal - Value"]
leaking = ["Deal - Won time", "Deal - Lost time", "Deal - Lost reason", "Deal - Stage"]
identify_columns = ["Deal - Title", "Organization - Name"]
"""


def write_project(folder: Path, frame: pd.DataFrame, name: str, config: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    path = folder / "leadscore.toml"
    path.write_text(config + SMALL_MODEL)
    return path


def test_a_pipedrive_deals_export_validates_trains_and_scores_exactly_its_open_deals(tmp_path):
    deals = pipedrive_deals()
    won = int((deals["Deal - Status"] == "Won").sum())
    trained = PIPEDRIVE_ROWS - PIPEDRIVE_OPEN
    config = write_project(tmp_path / "p", deals, "deals.csv", PIPEDRIVE_CONFIG)
    out = invoke("validate", "--config", config)
    assert f"{trained:,} labelled ({won:,} positive, {won / trained:.1%}), {PIPEDRIVE_OPEN} open " in out
    assert "(empty label, or Deal - Status in 'Open': scored by predict, never trained)" in out
    assert (
        "no id column: lead_id is the row number in the file (1 = first data row); carried into the scores: "
        "['Deal - Title', 'Organization - Name']"
    ) in out
    assert "0 error(s), 0 warning(s)" in out
    out = invoke("train", "--config", config)
    assert f"flat export: {trained} rows trained ({won} positive), {PIPEDRIVE_OPEN} open (" in out
    assert "registered leadscore-conversion version 1" in out
    scores_path = tmp_path / "scores.csv"
    out = invoke("predict", "--config", config, "--out", scores_path)
    assert f"scored {PIPEDRIVE_OPEN} open leads" in out
    assert f"open rows in the export: {PIPEDRIVE_OPEN}; {ROW_ID}; identifying columns: " in out
    scores = pd.read_csv(scores_path)
    open_rows = np.flatnonzero(deals["Deal - Status"] == "Open") + 1
    assert len(scores) == PIPEDRIVE_OPEN and sorted(scores["lead_id"]) == open_rows.tolist()
    assert list(scores.columns[:3]) == ["lead_id", "Deal - Title", "Organization - Name"]
    behind = deals.iloc[scores["lead_id"] - 1]
    assert scores["Deal - Title"].tolist() == behind["Deal - Title"].tolist()
    assert scores["Organization - Name"].tolist() == behind["Organization - Name"].tolist()
    assert scores["probability"].between(0, 1).all()


def test_a_pipedrive_export_without_open_values_stops_with_a_hint_naming_them(tmp_path):
    config_text = PIPEDRIVE_CONFIG.replace('open_values = ["Open"]\n', 'missing_values = ["Open"]\n')
    config = write_project(tmp_path / "p", pipedrive_deals(), "deals.csv", config_text)
    out = invoke("validate", "--config", config, code=1)
    assert f"{PIPEDRIVE_OPEN} label(s) are neither positive_values, negative_values nor open_values: 'Open' (53)" in out
    assert "flat.open_values" in out
    assert "flat.open_values" in invoke("train", "--config", config, code=1)


# --- a Salesforce lead report: UI labels, two-digit years, Converted and Lead Status -----------------------------

SALESFORCE_ROWS = 400
SALESFORCE_OPEN = len(range(3, SALESFORCE_ROWS, 7))  # 57 leads still being worked


def salesforce_leads() -> pd.DataFrame:
    """A lead report as the UI exports it: no Lead ID, "Created Date" like 02/23/26 08:55 PM, Converted false for
    the lost leads and for the open ones alike."""
    rng = np.random.default_rng(261)
    n = SALESFORCE_ROWS
    created = pd.Timestamp("2025-02-01 09:00") + pd.to_timedelta(np.sort(rng.uniform(0, 300, n)), unit="D")
    source = rng.choice(["Web", "Partner Referral", "Trade Show", "Cold Call"], n)
    logit = np.select([source == "Partner Referral", source == "Cold Call"], [1.5, -1.5], -0.2)
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    status = np.where(converted, "Closed - Converted", rng.choice(["Closed - Not Converted", "Unqualified"], n))
    still_open = np.arange(n) % 7 == 3
    converted[still_open] = False
    status = np.where(still_open, rng.choice(["Open - Not Contacted", "Working - Contacted"], n), status)
    return pd.DataFrame(
        {
            "First Name": [f"Jo{i}" for i in range(n)],
            "Last Name": [f"Smith{i}" for i in range(n)],
            "Title": rng.choice(["VP Sales", "Director of IT", "Analyst"], n),
            "Company": [f"Acme {i % 150}" for i in range(n)],
            "Lead Source": source,
            "Industry": rng.choice(["Technology", "Finance", "Retail"], n),
            "Lead Status": status,
            "Created Date": created.strftime("%m/%d/%y %I:%M %p"),
            "Converted": np.where(converted, "true", "false"),
        }
    )


SALESFORCE_CONFIG = """mode = "flat"
[flat]
path = "lead_report.csv"
label_column = "Converted"
positive_values = ["true"]
negative_values = ["false"]
status_column = "Lead Status"
open_values = ["Open - Not Contacted", "Working - Contacted"]
time_column = "Created Date"
categorical = ["Lead Source", "Industry", "Title"]
identify_columns = ["First Name", "Last Name", "Company"]
"""


def test_a_salesforce_lead_report_scores_the_leads_being_worked_not_as_lost(tmp_path):
    leads = salesforce_leads()
    assert leads["Created Date"].iloc[0] == "02/01/25 10:25 AM"  # the UI's two-digit year and 12-hour clock
    won = int((leads["Converted"] == "true").sum())
    trained = SALESFORCE_ROWS - SALESFORCE_OPEN
    config = write_project(tmp_path / "p", leads, "lead_report.csv", SALESFORCE_CONFIG)
    out = invoke("validate", "--config", config)
    assert f"{trained:,} labelled ({won:,} positive, {won / trained:.1%}), {SALESFORCE_OPEN} open " in out
    assert "(empty label, or Lead Status in 'Open - Not Contacted', 'Working - Contacted': scored by predict" in out
    assert "0 error(s), 0 warning(s)" in out
    out = invoke("train", "--config", config)
    assert f"flat export: {trained} rows trained ({won} positive), {SALESFORCE_OPEN} open (" in out
    scores_path = tmp_path / "scores.csv"
    out = invoke("predict", "--config", config, "--out", scores_path)
    assert f"scored {SALESFORCE_OPEN} open leads" in out and f"open rows in the export: {SALESFORCE_OPEN}" in out
    scores = pd.read_csv(scores_path)
    assert sorted(scores["lead_id"]) == list(range(4, SALESFORCE_ROWS + 1, 7))  # row numbers 4, 11, 18, ...
    assert list(scores.columns[:4]) == ["lead_id", "First Name", "Last Name", "Company"]
    behind = leads.iloc[scores["lead_id"] - 1]
    assert (scores["Last Name"] == behind["Last Name"].to_numpy()).all()
    assert set(behind["Lead Status"]) == {"Open - Not Contacted", "Working - Contacted"}
    latest = pd.to_datetime(behind["Created Date"], format="%m/%d/%y %I:%M %p").max()
    assert (pd.to_datetime(scores["as_of"]) == latest.tz_localize("UTC")).all()  # as_of: the latest open row


# --- hints name keys that exist ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
FLAT_KEY = re.compile(r"(?<![\w.\[])flat\.([a-z_]+(?:\.[a-z_]+)*)")


def _texts(tree: ast.AST) -> list[str]:
    """Every string literal of a module, an f-string with its replacement fields as `{}`."""
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append(node.value)
    return texts


def _flat_key_exists(path: list[str]) -> bool:
    """Whether `flat.<path>` is a key of [flat]: a field of a section, or any name below a dict of sections."""
    from pydantic import BaseModel

    from leadscore.pipelines.config import FlatSettings

    annotation = FlatSettings
    for segment in path:
        models = [a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)]
        models = [m for m in models if issubclass(m, BaseModel)]
        if models and segment in models[0].model_fields:
            annotation = models[0].model_fields[segment].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]  # a name the user chooses, e.g. flat.derived.<column>
        else:
            return False
    return True


def test_every_flat_key_the_code_names_exists():
    named = {}
    for folder in ("pipelines", "features", "models"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for text in _texts(ast.parse(path.read_text(encoding="utf-8"))):
                assert "tables.flat" not in text, f"{path.name}: {text!r} names tables.flat (the key is flat.*)"
                for match in FLAT_KEY.finditer(text):
                    named[match.group(0)] = path.name
    assert {"flat.open_values", "flat.status_column", "flat.identify_columns", "flat.encoding"} <= set(named)
    unknown = {key: where for key, where in named.items() if not _flat_key_exists(key.split(".")[1:])}
    assert unknown == {}


def test_the_key_check_refuses_an_invented_key():
    assert _flat_key_exists(["label_from", "encoding"]) and _flat_key_exists(["derived", "my_column", "of"])
    assert not _flat_key_exists(["open_value"]) and not _flat_key_exists(["label_from", "sql_table"])


def test_an_undecodable_flat_export_names_flat_encoding(tmp_path):
    deals = pipedrive_deals()
    deals.loc[5, "Organization - Name"] = "Société Générale"
    folder = tmp_path / "p"
    config = write_project(folder, deals, "deals.csv", PIPEDRIVE_CONFIG)
    (folder / "deals.csv").write_bytes(deals.to_csv(index=False).encode("latin-1"))
    out = invoke("validate", "--config", config, code=1)
    assert 'declare its encoding: flat.encoding = "latin-1"' in out and "tables.flat" not in out
    config.write_text(config.read_text().replace("[flat]\n", '[flat]\nencoding = "latin-1"\n'))
    assert "0 error(s)" in invoke("validate", "--config", config)


def test_file_hints_name_the_key_of_the_table_read():
    assert setting_key("leads", "encoding") == "tables.leads.encoding"
    assert setting_key("flat", "sql_table") == "flat.sql_table"
    assert setting_key("flat.label_from", "encoding") == "flat.label_from.encoding"
    assert setting_key("exports.more_events[0]", "encoding") == "exports.more_events[0].encoding"
    assert setting_key("previous grades", "encoding") is None


def test_a_missing_flat_sql_table_names_flat_sql_table(tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "crm.db").execute("create table other (x integer)").connection.commit()
    config = write_project(tmp_path, pipedrive_deals(), "deals.csv", PIPEDRIVE_CONFIG)
    sql = f'sql_url = "sqlite:///{tmp_path / "crm.db"}"\nsql_table = "deals"\n'
    config.write_text(config.read_text().replace('path = "deals.csv"\n', sql))
    out = invoke("validate", "--config", config, code=1)
    assert "no such table" in out and "check flat.sql_table" in out


def test_without_identify_columns_validate_suggests_nearly_unique_text_columns(tmp_path):
    config_text = PIPEDRIVE_CONFIG.replace('identify_columns = ["Deal - Title", "Organization - Name"]\n', "")
    config = write_project(tmp_path / "p", pipedrive_deals(), "deals.csv", config_text)
    out = invoke("validate", "--config", config)
    assert (
        "no id column: lead_id is the row number in the file (1 = first data row); candidates for "
        "flat.identify_columns: ['Deal - Title', 'Person - Name']"
    ) in out  # 'Organization - Name' repeats (97 organisations): not a candidate
