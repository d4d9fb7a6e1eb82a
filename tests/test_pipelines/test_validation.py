"""Each contract rule on a tiny hand-made table, with the exact message."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.features.keys import is_in
from leadscore.pipelines.config import load_settings
from leadscore.pipelines.intake.validation import _stripped_codes, load_crm, summarise

LEADS = "lead_id,created_at,account_id\nL1,2025-01-01,A1\nL2,2025-01-02T10:00:00Z,A1\nL3,2025-01-03,\n"
ACCOUNTS = "account_id,industry,employee_count\nA1,software,120\n"
EVENTS = "lead_id,occurred_at,event_type\nL1,2025-01-05,page_view\nL2,2025-01-06,pricing_page_view\n"
OPPS = (
    "opportunity_id,lead_id,created_at,closed_at,status,amount\n"
    "O1,L1,2025-02-01,2025-03-01,won,1000\nO2,L2,2025-02-01,2025-02-20,lost,500\nO3,L3,2025-02-01,,open,\n"
)


def project(tmp_path: Path, *, leads=LEADS, accounts=ACCOUNTS, events=EVENTS, opps=OPPS, extra: str = "") -> Path:
    for name, text in {"leads": leads, "accounts": accounts, "events": events, "opportunities": opps}.items():
        (tmp_path / f"{name}.csv").write_text(text)
    tables = "".join(f'[tables.{n}]\npath = "{n}.csv"\n' for n in ("leads", "accounts", "events", "opportunities"))
    config = tmp_path / "leadscore.toml"
    config.write_text(extra + tables)
    return config


def messages(config: Path, **kwargs) -> list[str]:
    return [p.message for p in load_crm(load_settings(config), **kwargs).problems]


def test_clean_tables_load_with_utc_timestamps(tmp_path):
    data = load_crm(load_settings(project(tmp_path)))
    assert data.problems == []
    leads = data.tables["leads"]
    assert str(leads["created_at"].dtype) == "datetime64[ns, UTC]"
    assert leads["created_at"].iloc[1] == pd.Timestamp("2025-01-02 10:00", tz="UTC")
    assert data.as_of == pd.Timestamp("2025-03-01", tz="UTC")
    summary = summarise(data)
    assert summary["leads_closed"] == 2 and summary["leads_won"] == 1 and summary["conversion_rate_closed"] == 0.5
    assert summary["leads_open"] == 1


def test_naive_timestamps_are_read_in_the_configured_zone(tmp_path):
    data = load_crm(load_settings(project(tmp_path, extra='timezone = "America/New_York"\n')))
    assert data.tables["leads"]["created_at"].iloc[0] == pd.Timestamp("2025-01-01 05:00", tz="UTC")
    # an explicit offset wins over the configured zone
    assert data.tables["leads"]["created_at"].iloc[1] == pd.Timestamp("2025-01-02 10:00", tz="UTC")


@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        ("leads", LEADS + ",2025-01-04,\n", "leads.lead_id row 4: missing value"),
        ("leads", LEADS + "L1,2025-01-04,\n", "leads.lead_id row 1: duplicate id 'L1'"),
        (
            "leads",
            LEADS + "L4,yesterday-ish,\n",
            "leads.created_at row 4: unparseable timestamp 'yesterday-ish'",
        ),
        (
            "events",
            EVENTS + "L9,2025-01-07,page_view\n",
            "events.lead_id row 3: 'L9' is not in leads: set aside",
        ),
        ("events", EVENTS + "L1,2025-01-07,\n", "events.event_type row 3: missing value"),
        (
            "opps",
            OPPS + "O4,L1,2025-02-01,2025-01-15,lost,1\n",
            "opportunities.closed_at row 4: closed at 2025-01-15T00:00:00+00:00 before it was created",
        ),
        (
            "opps",
            OPPS + "O4,L1,2025-02-01,,won,1\n",
            "opportunities.closed_at row 4: won/lost but no closed_at",
        ),
        (
            "opps",
            OPPS + "O4,L1,2025-02-01,2025-02-02,Closed - Pending,1\n",
            "opportunities.status: 1 row(s) with a closing status no list names, rejected: 'Closed - Pending' (1); "
            "add them to tables.opportunities.status_values (known: open, won, lost)",
        ),
        (
            "opps",
            OPPS + "O4,L7,2025-02-01,,open,1\n",
            "opportunities.lead_id row 4: 'L7' is not in leads: set aside",
        ),
        ("accounts", ACCOUNTS + "A2,retail,many\n", "accounts.employee_count row 2: not a number 'many'"),
        (
            "opps",
            OPPS + "O4,L1,2025-02-01,,Negotiation,1\n",
            "opportunities.status: 1 row(s) with a stage no list names, read as open: 'Negotiation' (1); list them "
            "under tables.opportunities.status_values.open to silence this (or under won / lost)",
        ),
        (
            "opps",
            OPPS + "O4,,2025-02-01,,open,1\n",
            "opportunities.lead_id row 4: linked to no lead (a deal or an activity of a contact, not of a lead): "
            "set aside",
        ),
    ],
)
def test_each_rule_names_table_column_row_and_value(tmp_path, table, text, expected):
    key = {"opps": "opps"}.get(table, table)
    config = project(tmp_path, **{key: text})
    assert expected in messages(config)


def test_rejected_rows_are_kept_with_reasons_and_children_follow(tmp_path):
    config = project(tmp_path, leads=LEADS + "L2,2025-01-09,\n")
    data = load_crm(load_settings(config))
    rejected = data.rejects["leads"]
    assert list(rejected["source_row"]) == [2, 4]
    assert set(rejected["reject_reason"]) == {"lead_id: duplicate id"}
    assert "events.lead_id row 2: lead 'L2' was rejected (see leads problems)" in [p.message for p in data.problems]
    assert list(data.tables["events"]["lead_id"]) == ["L1"]
    # every input row is either clean or rejected
    assert len(data.tables["leads"]) + len(rejected) == 4


def test_unknown_account_is_a_warning_and_keeps_the_lead(tmp_path):
    config = project(tmp_path, leads=LEADS + "L4,2025-01-04,A9\n")
    data = load_crm(load_settings(config))
    assert [p.message for p in data.warnings] == ["leads.account_id row 4: unknown account 'A9' (not in accounts)"]
    assert "L4" in set(data.tables["leads"]["lead_id"])


def test_acceptance_before_creation_is_a_warning_and_keeps_the_lead(tmp_path):
    leads = (
        "lead_id,created_at,sales_accepted_at\n"
        "L1,2025-01-01,2025-01-03\nL2,2025-01-02,2025-01-01T12:00:00Z\nL3,2025-01-03,\n"
    )
    data = load_crm(load_settings(project(tmp_path, leads=leads)))
    assert [p.message for p in data.warnings] == [
        "leads.sales_accepted_at row 2: accepted by sales at 2025-01-01T12:00:00+00:00 before the lead was created"
    ]
    assert data.errors == [] and list(data.tables["leads"]["lead_id"]) == ["L1", "L2", "L3"]


def test_rows_after_as_of_leave_the_view_and_late_outcomes_stay_open(tmp_path):
    data = load_crm(load_settings(project(tmp_path)), as_of=pd.Timestamp("2025-02-25", tz="UTC"))
    assert data.problems == [] and data.rejects == {}  # a row from the future is not a problem of the data
    opps = data.tables["opportunities"].set_index("opportunity_id")
    assert opps.loc["O1", "status"] == "open" and pd.isna(opps.loc["O1", "closed_at"])
    assert opps.loc["O2", "status"] == "lost"


def test_leads_created_after_as_of_leave_the_view_with_their_events_and_deals_never_as_errors(tmp_path, caplog):
    leads = LEADS + "L4,2025-03-10,A1\n"
    events = EVENTS + "L4,2025-03-11,page_view\nL1,2025-03-12,email_open\n"
    opps = OPPS + "O4,L4,2025-03-12,,open,\n"
    config = project(tmp_path, leads=leads, events=events, opps=opps)
    with caplog.at_level("INFO", logger="leadscore.pipelines.intake.validation"):
        data = load_crm(load_settings(config), as_of=pd.Timestamp("2025-03-05", tz="UTC"))
    assert data.problems == [] and data.rejects == {}
    assert data.after_as_of == {"leads": 1, "events": 2, "opportunities": 1}
    assert "rows created after it left the view (leads 1, events 2, opportunities 1)" in caplog.text
    assert list(data.tables["leads"]["lead_id"]) == ["L1", "L2", "L3"]
    assert len(data.tables["events"]) == 2
    assert list(data.tables["opportunities"]["opportunity_id"]) == ["O1", "O2", "O3"]


def test_a_rejected_row_keeps_its_reason_when_earlier_rows_leave_the_view(tmp_path):
    leads = "lead_id,created_at\nL9,2025-06-01\nL1,2025-01-01\n,2025-01-02\n"
    config = project(
        tmp_path,
        leads=leads,
        events="lead_id,occurred_at,event_type\nL1,2025-01-05,page_view\n",
        opps="opportunity_id,lead_id,created_at,closed_at,status\nO1,L1,2025-02-01,,open\n",
    )
    data = load_crm(load_settings(config), as_of=pd.Timestamp("2025-03-01", tz="UTC"))
    assert list(data.tables["leads"]["lead_id"]) == ["L1"]
    assert data.rejects["leads"]["reject_reason"].tolist() == ["lead_id: missing value"]
    assert data.after_as_of == {"leads": 1}


def test_absent_mapped_column_and_empty_table(tmp_path):
    config = project(tmp_path, events="lead_id,occurred_at,event_type\n")
    text = config.read_text().replace('path = "leads.csv"', 'path = "leads.csv"\ncolumns = {account_id = "Company"}')
    config.write_text(text)
    msgs = messages(config)
    assert "leads: column 'Company' mapped to role 'account_id' is absent" in msgs
    assert "events: the table has no rows" in msgs


def test_column_mapping_and_status_values(tmp_path):
    leads = "Id,Created\nL1,2025-01-01\n"
    opps = "opportunity_id,lead_id,created_at,closed_at,status\nO1,L1,2025-01-05,2025-01-09,Closed Won\n"
    config = project(tmp_path, leads=leads, opps=opps, events=EVENTS.splitlines()[0] + "\nL1,2025-01-02,x\n")
    text = config.read_text()
    text = text.replace('path = "leads.csv"', 'path = "leads.csv"\ncolumns = {lead_id = "Id", created_at = "Created"}')
    text = text.replace(
        'path = "opportunities.csv"',
        'path = "opportunities.csv"\nstatus_values = {won = ["closed won"], lost = ["closed lost"]}',
    )
    config.write_text(text)
    data = load_crm(load_settings(config))
    assert data.errors == []
    assert data.tables["opportunities"]["status"].tolist() == ["won"]


def test_sql_tables_through_sqlalchemy(tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sqlalchemy.create_engine(url)
    import io

    for name, text in {"leads": LEADS, "opportunities": OPPS}.items():
        pd.read_csv(io.StringIO(text)).to_sql(name, engine, index=False)
    engine.dispose()
    config = tmp_path / "leadscore.toml"
    config.write_text(
        f'[tables.leads]\nsql_url = "{url}"\nsql_table = "leads"\n'
        f'[tables.opportunities]\nsql_url = "{url}"\nsql_table = "opportunities"\n'
    )
    data = load_crm(load_settings(config))
    assert data.errors == []
    assert len(data.tables["opportunities"]) == 3


@pytest.mark.parametrize(
    "raw",
    [
        pd.Series(["L2", " L1", None, "L1 ", "L2"]),  # padded copies of one id merge
        pd.Series(["L2", "L1", None, "L1", "L2"], dtype="category"),  # already clean: the fast path
        pd.Series(pd.Categorical(["L2", "L1", None, "L1", "L2"], categories=["L2", "L1"])),  # Parquet order
    ],
)
def test_event_ids_become_stripped_sorted_categories_with_missing_kept(raw):
    codes = _stripped_codes(raw)
    assert list(codes.cat.categories) == ["L1", "L2"]
    assert codes.astype("object").where(codes.notna(), None).tolist() == ["L2", "L1", None, "L1", "L2"]


def test_categorical_membership_matches_plain_isin():
    values = pd.Series(pd.Categorical(["a", None, "c", "b", "a"], categories=["c", "b", "a", "z"]))
    allowed = pd.Index(["a", "b"])
    assert is_in(values, allowed).tolist() == [True, False, False, True, True]
    assert is_in(values.astype("object"), allowed).tolist() == [True, False, False, True, True]


def test_mostly_missing_event_values_are_held_sparse_with_the_same_numbers():
    from leadscore.pipelines.intake.validation import _sparse_numbers

    values = [np.nan] * 19 + [2.5]
    sparse = _sparse_numbers(pd.DataFrame({"value": values}), "events")
    assert isinstance(sparse["value"].dtype, pd.SparseDtype)
    np.testing.assert_array_equal(sparse["value"].to_numpy(dtype="float64"), values)
    half = _sparse_numbers(pd.DataFrame({"value": [np.nan, 1.0]}), "events")
    assert half["value"].dtype == "float64"  # half filled: dense stays smaller
    other = _sparse_numbers(pd.DataFrame({"amount": values}), "opportunities")
    assert other["amount"].dtype == "float64"


def test_category_counts_match_value_counts_across_chunks(monkeypatch):
    import leadscore.pipelines.intake.validation as validation

    monkeypatch.setattr(validation, "_CHUNK_ROWS", 3)  # several chunks
    values = pd.Series(pd.Categorical(["b", None, "a", "b", "c", "b", None], categories=["a", "b", "c", "d"]))
    counts = validation._value_counts(values)
    assert counts.to_dict() == {"b": 3, "a": 1, "c": 1, "d": 0}
    assert list(counts.items()) == list(values.value_counts().items())
