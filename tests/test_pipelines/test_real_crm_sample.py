"""The public Maven CRM sample (fictitious data: it exercises a CRM schema; its scores are never evidence) mapped
as one lead per deal: its 500 undated prospecting rows are left out by `where`, not fixed by hand."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from tests.conftest import dataset


def _config(tmp_path, *, where: bool) -> str:
    folder = dataset("maven_crm_sales_opportunities")
    filter_ = "where = \"deal_stage != 'Prospecting'\"\n" if where else ""
    text = f"""
[tables.leads]
path = "{folder / "sales_pipeline.csv"}"
columns = {{ lead_id = "opportunity_id", created_at = "engage_date", account_id = "account" }}
{filter_}
[tables.accounts]
path = "{folder / "accounts.csv"}"
columns = {{ account_id = "account", industry = "sector", employee_count = "employees", country = "office_location" }}

[tables.opportunities]
path = "{folder / "sales_pipeline.csv"}"
status_values = {{ won = ["Won"], lost = ["Lost"], open = ["Engaging", "Prospecting"] }}
{filter_}
[tables.opportunities.columns]
opportunity_id = "opportunity_id"
lead_id = "opportunity_id"
created_at = "engage_date"
closed_at = "close_date"
status = "deal_stage"
amount = "close_value"
"""
    config = tmp_path / "leadscore.toml"
    config.write_text(text)
    return str(config)


def test_undated_prospects_stop_the_verbs_until_where_leaves_them_out(tmp_path):
    runner = CliRunner()
    refused = runner.invoke(app, ["validate", "--config", _config(tmp_path, where=False)])
    assert refused.exit_code == 1
    assert "table 'leads': validation rejected 500 of 8,800 rows as broken (5.7%)" in refused.output
    assert "leave rows out of scope with tables.leads.where" in refused.output

    config = _config(tmp_path, where=True)
    result = runner.invoke(app, ["validate", "--config", config])
    assert result.exit_code == 0, result.output
    assert "leads              8,300 rows      500 rejected (500 set aside)" in result.output
    assert "0 error(s)" in result.output
    rejects = pd.read_csv(tmp_path / "output" / "rejects" / "leads.csv")
    assert rejects["reject_reason"].eq("tables.leads.where").all() and len(rejects) == 500
    graded = runner.invoke(app, ["grade", "--config", config])
    assert graded.exit_code == 0, graded.output
    assert len(pd.read_csv(tmp_path / "output" / "grades.csv")) == 1589  # the deals still being engaged
