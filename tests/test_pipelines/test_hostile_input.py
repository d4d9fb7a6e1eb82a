"""Hostile input, as a new user's CRM export brings it: each case asserts the exit code, that the message names the
culprit (file or table, column, row or line, cause), that no traceback is printed, and for accepted input that
every row is accounted for exactly."""

from __future__ import annotations

import codecs
import errno
import io
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake import validation
from leadscore.pipelines.intake.validation import load_crm

runner = CliRunner()

LEADS = "lead_id,created_at,account_id,job_title\nL1,2025-01-01,A1,CTO\nL2,2025-01-02,A1,VP Sales\nL3,2025-01-03,,\n"
ACCOUNTS = "account_id,industry,employee_count\nA1,software,120\n"
EVENTS = "lead_id,occurred_at,event_type\nL1,2025-01-05,page_view\nL2,2025-01-06,pricing_page_view\n"
OPPS = (
    "opportunity_id,lead_id,created_at,closed_at,status,amount\n"
    "O1,L1,2025-02-01,2025-03-01,won,1000\nO2,L2,2025-02-01,2025-02-20,lost,500\nO3,L3,2025-02-01,,open,\n"
)
TABLES = ("leads", "accounts", "events", "opportunities")


def project(tmp_path: Path, *, extra: str = "", table_extra: dict[str, str] | None = None, **texts) -> Path:
    """A CRM project of four small CSV tables; `texts` replaces a table's text (str) or bytes (bytes)."""
    defaults = {"leads": LEADS, "accounts": ACCOUNTS, "events": EVENTS, "opportunities": OPPS}
    lines = [extra]
    for name in TABLES:
        content = texts.get(name, defaults[name])
        path = tmp_path / f"{name}.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        lines.append(f'[tables.{name}]\npath = "{name}.csv"\n' + (table_extra or {}).get(name, ""))
    config = tmp_path / "leadscore.toml"
    config.write_text("\n".join(lines))
    return config


def invoke(*args: str, code: int):
    """Run the CLI; the exit code must be `code` and no traceback may reach the user."""
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    return result.output


def validate(config: Path, code: int) -> str:
    return invoke("validate", "--config", config, code=code)


def point_at(config: Path, table: str, path: str) -> None:
    config.write_text(config.read_text().replace(f'path = "{table}.csv"', f'path = "{path}"'))


# -- reading: encodings, empty files, file kinds ------------------------------------------------------------------
LATIN1 = "lead_id,created_at,job_title\nL1,2025-01-01,CTO\nL2,2025-01-02,Directeur Général\nL3,2025-01-03,\n"


def test_latin1_is_refused_naming_file_line_and_the_fix(tmp_path):
    out = validate(project(tmp_path, leads=LATIN1.encode("latin-1")), 1)
    assert "leads.csv" in out and "line 3" in out and "not valid utf-8" in out
    assert 'tables.leads.encoding = "latin-1"' in out


def test_latin1_reads_exactly_once_declared(tmp_path):
    config = project(tmp_path, leads=LATIN1.encode("latin-1"), table_extra={"leads": 'encoding = "latin-1"\n'})
    validate(config, 0)
    leads = load_crm(load_settings(config)).tables["leads"]
    assert leads["job_title"].tolist()[1] == "Directeur Général" and len(leads) == 3


@pytest.mark.parametrize(
    "encoded",
    [
        codecs.BOM_UTF16_LE + LATIN1.encode("utf-16-le"),  # Excel's "Unicode text"
        codecs.BOM_UTF16_BE + LATIN1.encode("utf-16-be"),
        LATIN1.encode("utf-16-le"),  # no byte-order mark
        codecs.BOM_UTF8 + LATIN1.encode("utf-8"),  # the BOM must not become part of the first column's name
        LATIN1.replace("\n", "\r\n").encode("utf-8"),  # Windows line ends
    ],
    ids=["utf16-le-bom", "utf16-be-bom", "utf16-le-no-bom", "utf8-bom", "crlf"],
)
def test_detected_encodings_read_every_row_exactly(tmp_path, encoded):
    config = project(tmp_path, leads=encoded)
    validate(config, 0)
    leads = load_crm(load_settings(config)).tables["leads"]
    assert leads["lead_id"].tolist() == ["L1", "L2", "L3"]
    assert leads["job_title"].tolist()[:2] == ["CTO", "Directeur Général"]


def test_unknown_configured_encoding_is_a_usage_error(tmp_path):
    out = validate(project(tmp_path, table_extra={"leads": 'encoding = "klingon"\n'}), 2)
    assert "unknown encoding 'klingon'" in out and "leads.csv" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"\n\n\n", "no header line"),
        (b"\x00\x01\x02\xff\x00\x00\x10binary", "binary data"),
        (b"PAR1\x00\x00garbage", "this is a Parquet file, not CSV"),
        (__import__("gzip").compress(EVENTS.encode()), "this is a gzip-compressed file"),
        (b"PK\x03\x04\x14\x00\x06\x00", "zip archive (or an Excel .xlsx workbook)"),
        (EVENTS.replace(",", ";").encode(), "the file seems separated by ';', not by ','"),
        (EVENTS.replace(",", "\t").encode(), "the file seems separated by '\\t', not by ','"),
    ],
    ids=[
        "zero-bytes",
        "blank-lines",
        "binary",
        "parquet-named-csv",
        "gzip-named-csv",
        "xlsx-named-csv",
        "semicolons",
        "tabs",
    ],
)
def test_unreadable_csv_files_are_named(tmp_path, content, expected):
    out = validate(project(tmp_path, events=content), 1)
    assert expected in out and "events.csv" in out and "table 'events'" in out


def test_header_only_table_is_an_error_naming_the_table(tmp_path):
    out = validate(project(tmp_path, events="lead_id,occurred_at,event_type\n"), 1)
    assert "events: the table has no rows" in out


def test_truncated_parquet_is_named(tmp_path):
    config = project(tmp_path)
    pd.read_csv(tmp_path / "events.csv").to_parquet(tmp_path / "events.parquet")
    data = (tmp_path / "events.parquet").read_bytes()
    (tmp_path / "events.parquet").write_bytes(data[: len(data) // 2])
    point_at(config, "events", "events.parquet")
    out = validate(config, 1)
    assert "events.parquet" in out and "truncated" in out


def test_csv_named_parquet_is_named(tmp_path):
    config = project(tmp_path)
    (tmp_path / "events.parquet").write_text(EVENTS)
    point_at(config, "events", "events.parquet")
    out = validate(config, 1)
    assert "not a Parquet file" in out and "a CSV named .parquet?" in out


def test_corrupt_parquet_body_is_named(tmp_path):
    config = project(tmp_path)
    (tmp_path / "events.parquet").write_bytes(b"PAR1" + b"\x13" * 64 + b"PAR1")
    point_at(config, "events", "events.parquet")
    out = validate(config, 1)
    assert "events.parquet" in out and ("not a readable Parquet file" in out or "truncated" in out)


@pytest.mark.parametrize(
    ("make", "expected", "code"),
    [
        (lambda p: (p / "folder").mkdir(), "is a folder, not a table file", 1),
        # an optional table's missing file costs its features, not the run (an export often lacks it)
        (lambda p: None, "folder not found: left out (the account_* and history features stay empty)", 0),
        (lambda p: (p / "folder").write_text("x"), "unknown file type", 1),
    ],
    ids=["folder", "missing", "no-suffix"],
)
def test_wrong_paths_are_named(tmp_path, make, expected, code):
    config = project(tmp_path)
    make(tmp_path)
    point_at(config, "accounts", "folder")
    out = validate(config, code)
    assert expected in out and "table 'accounts'" in out


def test_duplicate_column_names_are_refused(tmp_path):
    leads = "lead_id,created_at,job_title,job_title\nL1,2025-01-01,CTO,CEO\n"
    out = validate(project(tmp_path, leads=leads), 1)
    assert "column name 'job_title' appears twice (columns 3 and 4)" in out and "leads.csv" in out


def test_duplicate_column_names_in_parquet_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = project(tmp_path)
    table = pa.table([pa.array(["A1"]), pa.array(["x"]), pa.array(["y"])], names=["account_id", "industry", "industry"])
    pq.write_table(table, tmp_path / "accounts.parquet")
    point_at(config, "accounts", "accounts.parquet")
    assert "column name 'industry' appears twice" in validate(config, 1)


def test_unbalanced_quote_that_swallows_rows_is_refused(tmp_path):
    leads = (
        'lead_id,created_at,account_id,job_title\nL1,2025-01-01,A1,"CTO\nL2,2025-01-02,A1,VP\n'
        'L3,2025-01-03,,Head"\nL4,2025-01-04,,CEO\n'
    )
    out = validate(project(tmp_path, leads=leads), 1)
    assert "unbalanced quote" in out and "column 'job_title'" in out and "row 1" in out and "line 2" in out


def test_quote_left_open_to_the_end_of_the_file_is_refused(tmp_path):
    leads = 'lead_id,created_at,account_id,job_title\nL1,2025-01-01,A1,"CTO\nL2,2025-01-02,A1,VP\n'
    out = validate(project(tmp_path, leads=leads), 1)
    assert "leads.csv" in out and "cannot be parsed as CSV" in out and "EOF inside string" in out


def test_a_row_with_too_many_fields_is_named_by_line(tmp_path):
    leads = LEADS + "L4,2025-01-04,A1,CTO,surplus,more\n"
    out = validate(project(tmp_path, leads=leads), 1)
    assert "line 5" in out and "Expected 4 fields" in out


def test_a_genuine_multiline_cell_is_accepted_with_every_row(tmp_path):
    leads = 'lead_id,created_at,account_id,job_title\nL1,2025-01-01,A1,"Head of\nSales"\nL2,2025-01-02,A1,VP\n'
    config = project(tmp_path, leads=leads, opportunities=OPPS.rsplit("\n", 2)[0] + "\n")
    validate(config, 0)
    leads_table = load_crm(load_settings(config)).tables["leads"]
    assert leads_table["job_title"].tolist() == ["Head of\nSales", "VP"]


def test_blank_and_whitespace_only_lines_are_skipped_and_every_row_counted(tmp_path):
    leads = LEADS.replace("\nL2", "\n   \n\t\nL2").replace("\nL3", "\n\r\nL3") + "\n  "
    config = project(tmp_path, leads=leads)
    validate(config, 0)
    assert load_crm(load_settings(config)).tables["leads"]["lead_id"].tolist() == ["L1", "L2", "L3"]


def test_missing_sql_table_and_locked_sqlite_are_named(tmp_path):
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        pd.read_csv(io.StringIO(LEADS)).to_sql("leads", connection)
    config = project(tmp_path)
    url = f"sqlite:///{db}?timeout=0.1"  # a locked database fails after 0.1 s instead of SQLite's 5 s
    text = config.read_text().replace('path = "leads.csv"', f'sql_url = "{url}"\nsql_table = "lead"')
    config.write_text(text)
    out = validate(config, 1)
    assert "SQL table 'lead'" in out and "no such table" in out
    config.write_text(text.replace('sql_table = "lead"', 'sql_table = "leads"'))
    lock = sqlite3.connect(db)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        out = validate(config, 1)
    finally:
        lock.close()
    assert "database is locked" in out and "another program holds a lock" in out and "SQL table 'leads'" in out


def test_sql_password_is_never_shown(tmp_path):
    config = project(tmp_path)
    text = config.read_text().replace(
        'path = "leads.csv"', 'sql_url = "postgresql+nosuchdriver://bob:s3cret@localhost/crm"\nsql_table = "leads"'
    )
    config.write_text(text)
    out = validate(config, 2)
    assert "s3cret" not in out and "***" in out


# -- timestamps -----------------------------------------------------------------------------------------------------
def leads_with(created: list[str]) -> str:
    rows = "".join(f"L{i},{value},,\n" for i, value in enumerate(created, start=1))
    return "lead_id,created_at,account_id,job_title\n" + rows


def only_leads(tmp_path, created, *, extra="", leads_extra="") -> Path:
    opps = "opportunity_id,lead_id,created_at,closed_at,status,amount\nO1,L1,2025-02-01,,open,\n"
    events = "lead_id,occurred_at,event_type\nL1,2025-02-02,page_view\n"
    return project(
        tmp_path,
        leads=leads_with(created),
        opportunities=opps,
        events=events,
        extra=extra,
        table_extra={"leads": leads_extra},
    )


def test_utc_suffix_and_offsets_are_read_exactly(tmp_path):
    config = only_leads(
        tmp_path,
        [
            "2025-01-01 10:00:00 UTC",
            "2025-01-02T10:00:00Z",
            "2025-01-03 12:00 +02:00",
            "2025-01-04T05:00:00-05",
            "2025-01-05 10:00:00.000 GMT",
        ],
    )
    validate(config, 0)
    created = load_crm(load_settings(config)).tables["leads"]["created_at"]
    assert created.tolist() == [pd.Timestamp(f"2025-01-0{d} 10:00", tz="UTC") for d in (1, 2, 3, 4, 5)]


def test_dashed_day_first_dates_and_dates_with_a_zone_name_are_read_exactly(tmp_path):
    config = only_leads(tmp_path, ["31-12-2024", "01-02-2025 UTC", "15-01-2025 10:00 -0100"])
    validate(config, 0)
    created = load_crm(load_settings(config)).tables["leads"]["created_at"]
    assert created.tolist() == [
        pd.Timestamp("2024-12-31", tz="UTC"),
        pd.Timestamp("2025-02-01", tz="UTC"),
        pd.Timestamp("2025-01-15 11:00", tz="UTC"),
    ]


@pytest.mark.parametrize("value", ["9999-12-31", "1066-10-14", "2262-04-12"])
def test_years_out_of_range_are_refused_by_row(tmp_path, value):
    out = validate(only_leads(tmp_path, ["2025-01-01", value]), 1)
    assert f"leads.created_at row 2: year out of range (1900-2199) '{value}'" in out


def test_day_first_column_settled_by_its_values_is_read_day_first(tmp_path):
    config = only_leads(tmp_path, ["31/12/2024", "01/02/2025", "05/01/2025"])
    out = validate(config, 0)
    assert "read day first: '31/12/2024' settles the order" in out
    created = load_crm(load_settings(config)).tables["leads"]["created_at"]
    assert created.dt.strftime("%Y-%m-%d").tolist() == ["2024-12-31", "2025-02-01", "2025-01-05"]


def test_ambiguous_day_month_is_refused_with_the_fix(tmp_path):
    out = validate(only_leads(tmp_path, ["01/02/2025", "03/01/2025"]), 1)
    assert "leads.created_at row 1: ambiguous day/month order" in out
    assert "tables.leads.timestamp_format" in out


def test_the_format_key_settles_ambiguous_dates(tmp_path):
    config = only_leads(tmp_path, ["01/02/2025", "03/01/2025"], leads_extra='timestamp_format = "%d/%m/%Y"\n')
    validate(config, 0)
    created = load_crm(load_settings(config)).tables["leads"]["created_at"]
    assert created.dt.strftime("%Y-%m-%d").tolist() == ["2025-02-01", "2025-01-03"]


def test_both_orders_in_one_column_are_refused(tmp_path):
    out = validate(only_leads(tmp_path, ["31/12/2024", "12/31/2024"]), 1)
    assert "day/month order differs between rows ('31/12/2024' vs '12/31/2024')" in out


def test_a_value_not_matching_the_format_key_is_named(tmp_path):
    config = only_leads(tmp_path, ["01/02/2025", "2025-01-03"], leads_extra='timestamp_format = "%d/%m/%Y"\n')
    out = validate(config, 1)
    assert "leads.created_at row 2: does not match timestamp_format '%d/%m/%Y' '2025-01-03'" in out


def test_a_local_time_made_ambiguous_by_daylight_saving_is_named(tmp_path):
    config = only_leads(tmp_path, ["2024-11-03 01:30", "2025-01-02"], extra='timezone = "America/New_York"\n')
    assert "leads.created_at row 1: ambiguous local time in America/New_York" in validate(config, 1)


# -- ids and category labels ---------------------------------------------------------------------------------------
def test_integral_float_and_padded_ids_join_exactly(tmp_path):
    leads = "lead_id,created_at,account_id\n321,2025-01-01,A1\n 322 ,2025-01-02,A1\n"
    opps = (
        "opportunity_id,lead_id,created_at,closed_at,status,amount\nO1,321.0,2025-02-01,,open,\n"
        "O2,322,2025-02-01,,open,\n"
    )
    events = "lead_id,occurred_at,event_type\n321.00,2025-01-05,page_view\n322 ,2025-01-06,page_view\n"
    accounts = "account_id,industry\n A1,software\n"
    config = project(tmp_path, leads=leads, opportunities=opps, events=events, accounts=accounts)
    out = validate(config, 0)
    assert "0 error(s), 0 warning(s)" in out
    data = load_crm(load_settings(config))
    assert data.tables["leads"]["lead_id"].tolist() == ["321", "322"]
    assert data.tables["opportunities"]["lead_id"].tolist() == ["321", "322"]
    assert data.tables["events"]["lead_id"].astype(str).tolist() == ["321", "322"]


def test_parquet_float_ids_join_text_ids(tmp_path):
    config = project(
        tmp_path,
        leads="lead_id,created_at\n321,2025-01-01\n",
        opportunities=("opportunity_id,lead_id,created_at,closed_at,status,amount\nO1,321,2025-02-01,,open,\n"),
    )
    pd.DataFrame(
        {
            "lead_id": [321.0, 321.0],
            "occurred_at": pd.to_datetime(["2025-01-05", "2025-01-06"], utc=True),
            "event_type": ["page_view", "email_open"],
        }
    ).to_parquet(tmp_path / "events.parquet")
    point_at(config, "events", "events.parquet")
    assert "0 error(s)" in validate(config, 0)
    assert load_crm(load_settings(config)).tables["events"]["lead_id"].astype(str).tolist() == ["321", "321"]


def test_a_blank_id_is_a_missing_value(tmp_path):
    out = validate(project(tmp_path, leads=LEADS + "   ,2025-01-04,,\n"), 1)
    assert "leads.lead_id row 4: missing value" in out


def test_event_types_differing_in_case_or_spacing_count_as_one(tmp_path):
    events = (
        "lead_id,occurred_at,event_type\nL1,2025-01-05,DEMO_REQUEST\nL1,2025-01-06, Product Login \n"
        "L2,2025-01-06,pricing-page-view\nL2,2025-01-07,Pricing Page View\n"
    )
    config = project(tmp_path, events=events)
    assert "0 warning(s)" in validate(config, 0)
    types = load_crm(load_settings(config)).tables["events"]["event_type"].astype(str).tolist()
    assert types == ["demo_request", "product_login", "pricing_page_view", "pricing_page_view"]


def test_unknown_event_types_are_counted_in_one_warning_and_kept(tmp_path):
    events = EVENTS + "L1,2025-01-07,chat\nL2,2025-01-08,Chat\nL2,2025-01-09,webinar registered\n"
    events += "L1,2025-01-10,Sales Call\n"  # a sales touch is known: monitor reads it, no feature does
    config = project(tmp_path, events=events)
    out = validate(config, 0)
    assert "events.event_type: 3 row(s) with event types outside the vocabulary" in out
    assert "'chat' (2), 'webinar_registered' (1)" in out and "sales_call" not in out
    assert len(load_crm(load_settings(config)).tables["events"]) == 6


@pytest.mark.parametrize("value", ["WON", " Won ", "won"])
def test_status_case_and_spacing_do_not_matter(tmp_path, value):
    config = project(tmp_path, opportunities=OPPS.replace(",won,", f",{value},"))
    validate(config, 0)
    assert load_crm(load_settings(config)).tables["opportunities"]["status"].tolist() == ["won", "lost", "open"]


def test_configured_status_values_match_by_meaning(tmp_path):
    opps = OPPS.replace(",won,", ",Closed  Won,").replace(",lost,", ",closed-lost,").replace(",open,", ",Open,")
    values = 'status_values = {won = ["Closed_Won"], lost = ["Closed Lost"], open = ["open"]}\n'
    config = project(tmp_path, opportunities=opps, table_extra={"opportunities": values})
    validate(config, 0)
    assert load_crm(load_settings(config)).tables["opportunities"]["status"].tolist() == ["won", "lost", "open"]


# -- numbers ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        ("accounts", ACCOUNTS + "A2,retail,-5\n", "accounts.employee_count row 2: negative value '-5'"),
        ("accounts", ACCOUNTS + "A2,retail,inf\n", "accounts.employee_count row 2: not a finite number 'inf'"),
        ("accounts", ACCOUNTS + "A2,retail,many\n", "accounts.employee_count row 2: not a number 'many'"),
        ("opportunities", OPPS.replace("won,1000", "won,-1000"), "opportunities.amount row 1: negative value"),
        ("opportunities", OPPS.replace("won,1000", "won,1e999"), "opportunities.amount row 1: not a finite number"),
    ],
    ids=["negative-count", "inf", "text", "negative-amount", "overflow"],
)
def test_numbers_are_range_checked(tmp_path, table, text, expected):
    assert expected in validate(project(tmp_path, **{table: text}), 1)


def test_parquet_numbers_are_range_checked_too(tmp_path):
    config = project(tmp_path)
    pd.DataFrame({"account_id": ["A1"], "employee_count": [float("-inf")]}).to_parquet(tmp_path / "a.parquet")
    point_at(config, "accounts", "a.parquet")
    assert "accounts.employee_count row 1: not a finite number" in validate(config, 1)


# -- across tables ---------------------------------------------------------------------------------------------------
def test_events_before_their_lead_was_created_are_flagged_and_not_counted(tmp_path):
    config = project(tmp_path, events=EVENTS + "L3,2024-12-25,demo_request\n")
    out = validate(config, 0)
    assert "events.occurred_at row 3: dated 2024-12-25T00:00:00+00:00, before its lead was created" in out
    data = load_crm(load_settings(config))
    assert len(data.tables["events"]) == 2 and data.rejects["events"]["lead_id"].astype(str).tolist() == ["L3"]
    assert (tmp_path / "output" / "rejects" / "events.csv").exists()


# -- no single row moves "now" ---------------------------------------------------------------------------------------
@pytest.fixture
def wall_clock(monkeypatch):
    now = pd.Timestamp("2026-01-15", tz="UTC")
    monkeypatch.setattr(validation, "_wall_clock", lambda: now)
    return now


def test_a_timestamp_after_the_wall_clock_is_rejected_and_does_not_move_as_of(tmp_path, wall_clock):
    config = project(tmp_path, events=EVENTS + "L1,2100-01-07,page_view\n")
    out = validate(config, 1)
    assert "events.occurred_at row 3: dated 2100-01-07T00:00:00+00:00, after the wall clock" in out
    data = load_crm(load_settings(config))
    assert data.as_of == pd.Timestamp("2025-03-01", tz="UTC") and len(data.tables["events"]) == 2


def test_a_far_outlier_in_the_past_is_rejected_and_does_not_move_as_of(tmp_path, wall_clock):
    days = pd.date_range("2025-01-01", periods=30, freq="D")
    leads = "lead_id,created_at\n" + "".join(f"L{i},{d.date()}\n" for i, d in enumerate(days))
    events = "lead_id,occurred_at,event_type\nL1,2025-02-01,page_view\nL2,2025-12-24,page_view\n"
    opps = "opportunity_id,lead_id,created_at,closed_at,status,amount\nO1,L1,2025-02-05,,open,\n"
    config = project(tmp_path, leads=leads, events=events, opportunities=opps)
    out = validate(config, 1)
    assert "events.occurred_at row 2: dated 2025-12-24T00:00:00+00:00, more than 90 days after" in out
    data = load_crm(load_settings(config))
    assert data.as_of == pd.Timestamp("2025-02-05", tz="UTC")
    assert len(data.tables["events"]) + len(data.rejects["events"]) == 2


def test_an_explicit_as_of_is_not_second_guessed(tmp_path, wall_clock):
    config = project(tmp_path, events=EVENTS + "L1,2100-01-07,page_view\n")
    data = load_crm(load_settings(config), as_of=pd.Timestamp("2025-03-01", tz="UTC"))
    assert not any(p.rule in {"in the future", "far beyond the data"} for p in data.problems)


# -- flat mode -------------------------------------------------------------------------------------------------------
def flat_project(tmp_path, text: str, extra: str = "") -> Path:
    (tmp_path / "flat.csv").write_text(text)
    config = tmp_path / "leadscore.toml"
    config.write_text(
        'mode = "flat"\n[flat]\npath = "flat.csv"\nlabel_column = "y"\nnumeric = ["age"]\n'
        'categorical = ["job"]\nmissing_values = ["unknown"]\n' + extra
    )
    return config


def build(config: Path, code: int) -> str:
    return invoke("build-training-set", "--config", config, "--out", config.parent / "ts.parquet", code=code)


def test_flat_labels_written_as_floats_are_read_exactly(tmp_path):
    config = flat_project(tmp_path, "age,job,y\n30,a,1.0\n40,b,0.0\n50,c,1\n60,d,\n")
    build(config, 0)
    assert pd.read_parquet(tmp_path / "ts.parquet")["converted"].tolist() == [1, 0, 1]


def test_flat_labels_outside_the_declared_values_are_listed_with_counts(tmp_path):
    config = flat_project(tmp_path, "age,job,y\n30,a,1\n40,b,maybe\n50,c,2\n60,d,maybe\n")
    out = build(config, 1)
    assert "column 'y', row 2: 3 label(s) are neither positive_values, negative_values nor open_values" in out
    assert "'maybe' (2), '2' (1)" in out and not (tmp_path / "ts.parquet").exists()


def test_flat_declared_negative_values_are_accepted(tmp_path):
    config = flat_project(
        tmp_path,
        "age,job,y\n30,a,Converted\n40,b,Lost\n",
        'positive_values = ["converted"]\nnegative_values = ["lost"]\n',
    )
    build(config, 0)
    assert pd.read_parquet(tmp_path / "ts.parquet")["converted"].tolist() == [1, 0]


@pytest.mark.parametrize(("value", "shown"), [("thirty", "'thirty' (1)"), ("inf", "'inf' (1)")])
def test_flat_numbers_that_are_not_finite_are_refused(tmp_path, value, shown):
    out = build(flat_project(tmp_path, f"age,job,y\n30,a,1\n{value},b,0\nunknown,c,0\n"), 1)
    assert "column 'age', row 2: 1 value(s) are not finite numbers" in out and shown in out


def test_flat_duplicate_columns_are_refused(tmp_path):
    assert "column name 'age' appears twice" in build(flat_project(tmp_path, "age,job,age,y\n1,a,2,1\n"), 1)


# -- output targets, checked before any work -------------------------------------------------------------------------
def test_unsupported_out_suffix_is_refused_before_work(tmp_path, monkeypatch):
    config = project(tmp_path)
    monkeypatch.setattr("leadscore.pipelines.intake.validation.load_crm", _must_not_run)
    out = invoke("grade", "--config", config, "--out", tmp_path / "grades.xlsx", code=2)
    assert "--out" in out and "unsupported file type '.xlsx'" in out and ".csv or .parquet" in out


def _must_not_run(*args, **kwargs):
    raise AssertionError("heavy work started before the arguments were checked")


@pytest.mark.parametrize(
    ("verb", "target"),
    [("grade", "leads.csv"), ("grade", "./sub/../opportunities.csv"), ("build-training-set", "mlflow.db")],
)
def test_out_resolving_to_an_input_is_refused(tmp_path, monkeypatch, verb, target):
    config = project(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr("leadscore.pipelines.intake.validation.load_crm", _must_not_run)
    target = "mlflow.parquet" if target == "mlflow.db" else target
    if target == "mlflow.parquet":
        config.write_text(config.read_text() + f'\n[mlflow]\ntracking_uri = "sqlite:///{tmp_path}/mlflow.parquet"\n')
    before = (tmp_path / "leads.csv").read_bytes()
    out = invoke(verb, "--config", config, "--out", tmp_path / target, code=2)
    assert ("resolves to the MLflow store" if target == "mlflow.parquet" else "resolves to an input") in out
    assert (tmp_path / "leads.csv").read_bytes() == before


def test_out_through_a_symlink_to_an_input_is_refused(tmp_path):
    config = project(tmp_path)
    (tmp_path / "alias.csv").symlink_to(tmp_path / "leads.csv")
    assert "resolves to an input" in invoke("grade", "--config", config, "--out", tmp_path / "alias.csv", code=2)


def test_out_under_a_file_or_on_a_folder_is_refused(tmp_path):
    config = project(tmp_path)
    out = invoke("grade", "--config", config, "--out", tmp_path / "leads.csv" / "g.csv", code=2)
    assert "is a file, not a folder" in out
    (tmp_path / "dir.csv").mkdir()
    assert "is a folder" in invoke("grade", "--config", config, "--out", tmp_path / "dir.csv", code=2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_refused(tmp_path):
    config = project(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = invoke("grade", "--config", config, "--out", locked / "g.csv", code=2)
    assert "no permission to write" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["explain", "--out", "report.pdf"], "unsupported file type '.pdf'"),
        (["grade", "--as-of", "someday"], "--as-of: not a date or timestamp: 'someday'"),
        (["grade", "--as-of", "9999-01-01"], "--as-of: '9999-01-01' is outside the years 1900-2199"),
        (["predict", "--out", "s.csv", "--to-sql", "t"], "give --out or --to-sql, not both"),
        (["predict", "--out", "scores.json"], "unsupported file type '.json'"),
        (["predict", "--out", "s.csv", "--contributions", "c.csv"], "--contributions"),
        (["predict", "--to-sql", "leads_scores"], "--to-sql needs --sql-url"),
    ],
)
def test_usage_errors_exit_2_before_any_work(tmp_path, monkeypatch, args, expected):
    config = project(tmp_path)
    monkeypatch.setattr("leadscore.pipelines.intake.validation.load_crm", _must_not_run)
    monkeypatch.chdir(tmp_path)
    assert expected in invoke(args[0], "--config", config, *args[1:], code=2)


def test_sample_data_refuses_an_unknown_format_and_a_file_as_folder(tmp_path):
    assert "--format: use parquet or csv" in invoke("sample-data", "--out", tmp_path / "d", "--format", "xml", code=2)
    (tmp_path / "f").write_text("x")
    assert "is a file, not a folder" in invoke("sample-data", "--out", tmp_path / "f" / "d", code=2)


def test_to_sql_into_an_input_table_is_refused(tmp_path):
    import sqlite3

    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as connection:
        pd.read_csv(io.StringIO(LEADS)).to_sql("leads", connection)
    config = project(tmp_path)
    source = f'sql_url = "sqlite:///{db}"\nsql_table = "leads"'
    config.write_text(config.read_text().replace('path = "leads.csv"', source))
    out = invoke("predict", "--config", config, "--to-sql", "LEADS", "--sql-url", f"sqlite:///{db}", code=2)
    assert "is the input table 'leads'" in out


# -- the one error path ----------------------------------------------------------------------------------------------
def test_traceback_only_with_verbose(tmp_path):
    config = project(tmp_path, leads=b"")
    quiet = runner.invoke(app, ["validate", "--config", str(config)])
    loud = runner.invoke(app, ["-v", "validate", "--config", str(config)])
    assert quiet.exit_code == loud.exit_code == 1
    assert "Traceback" not in quiet.output and "Traceback" in loud.output
    assert "the file is empty (0 bytes)" in quiet.output and "the file is empty (0 bytes)" in loud.output


def test_an_unexpected_failure_is_one_message_without_traceback(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("leadscore.pipelines.verbs.validate.load_crm", boom)
    out = invoke("validate", "--config", project(tmp_path), code=1)
    assert "error: unexpected RuntimeError: kaboom" in out and "rerun with -v" in out


def test_a_full_disk_is_one_message_and_leaves_the_old_file(tmp_path, monkeypatch):
    from leadscore.pipelines.outputs import files as pio

    config = project(tmp_path)
    target = tmp_path / "grades.csv"
    target.write_text("lead_id,stage\nL3,IQL\n")

    def full(frame, path):
        def write(tmp):
            Path(tmp).write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

        return write

    monkeypatch.setattr(pio, "frame_writer", full)
    out = invoke("grade", "--config", config, "--out", target, code=1)
    assert "No space left on device" in out and "free some space" in out
    assert target.read_text() == "lead_id,stage\nL3,IQL\n" and sorted(p.name for p in tmp_path.glob(".grades*")) == []


def test_a_previous_file_that_is_not_a_grade_output_is_named(tmp_path):
    (tmp_path / "old.csv").write_text("a,b\n1,2\n")
    out = invoke("grade", "--config", project(tmp_path), "--previous", tmp_path / "old.csv", code=1)
    assert "old.csv" in out and "not an earlier grade output: column(s) ['lead_id', 'stage'] absent" in out


def test_train_names_the_first_validation_error(tmp_path):
    out = invoke("train", "--config", project(tmp_path, leads=LEADS + "L4,not a date,,\n"), code=1)
    assert "first: leads.created_at row 4: unparseable timestamp 'not a date'" in out


@pytest.mark.parametrize(("start", "every"), [("soon", "30d"), ("2025-01-01", "xd"), ("0.8", "many"), ("0.8", "0")])
def test_backtest_steps_are_checked_before_any_work(tmp_path, monkeypatch, start, every):
    monkeypatch.setattr("leadscore.pipelines.intake.validation.load_crm", _must_not_run)
    out = invoke("backtest", "--config", project(tmp_path), "--start", start, "--every", every, code=2)
    assert f"--start {start!r} / --every {every!r}" in out


def test_spark_default_as_of_refuses_a_timestamp_after_the_wall_clock():
    from leadscore.pipelines.errors import DataError
    from leadscore.pipelines.spark_engine import _not_after_the_wall_clock

    past = pd.Timestamp("2025-03-01", tz="UTC")
    assert _not_after_the_wall_clock([(past, "leads", "created_at"), (pd.NaT, "events", "occurred_at")]) == past
    with pytest.raises(DataError, match="after the wall clock") as caught:
        _not_after_the_wall_clock(
            [(past, "leads", "created_at"), (pd.Timestamp("2100-01-01", tz="UTC"), "events", "occurred_at")]
        )
    assert "table 'events', column 'occurred_at'" in caught.value.message


def test_an_unusable_mlflow_store_is_one_message(tmp_path):
    (tmp_path / "store.db").write_text("this is not an SQLite database\n" * 10)
    config = project(tmp_path, extra=f'[mlflow]\ntracking_uri = "sqlite:///{tmp_path / "store.db"}"\n')
    out = invoke("predict", "--config", config, "--out", tmp_path / "s.csv", code=1)
    assert "cannot load model models:/leadscore-conversion@champion" in out and "file is not a database" in out


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "file not found"), (b"PAR1trunc", "truncated"), (b"a,b\n1,2\n", "not a Parquet")]
)
def test_train_on_a_broken_prebuilt_training_set_is_named(tmp_path, content, expected):
    target = tmp_path / "ts.parquet"
    if content is not None:
        target.write_bytes(content)
    out = invoke("train", "--config", project(tmp_path), "--training-set", target, code=1)
    assert expected in out and "training set" in out and "ts.parquet" in out
