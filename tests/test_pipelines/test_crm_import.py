"""`predict --crm-import salesforce|hubspot`: the scores in each vendor's import shape, beside the scores file."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.pipelines.cli import app
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.outputs.crm_import import crm_import_frame, crm_import_path

SCORES = pd.DataFrame(
    {
        "lead_id": ["00Q000000000001AAA", "00Q000000000002AAA"],
        "as_of": pd.to_datetime(["2025-06-30T08:00:00Z"] * 2),
        "probability": [0.41234, 0.0021],
        "score": [88, 12],
        "cell": ["A1", "D4"],
        "stage": ["SQL", "IQL"],
        "action": ["sales call", "nurture"],
        "due_by": pd.to_datetime(["2025-07-01T08:00:00Z", None], utc=True),
        "reasons_positive": ["Demo requests in the last 7 days: 2", None],
        "reasons_negative": [None, "Days since the lead's last activity: 90 days"],
    }
)


def test_salesforce_rows_use_api_names_ids_and_iso_datetimes():
    frame = crm_import_frame(SCORES, "salesforce")
    assert list(frame.columns) == [
        "Id",
        "Lead_Score__c",
        "Lead_Conversion_Probability__c",
        "Lead_Grade__c",
        "Lead_Stage__c",
        "Lead_Next_Action__c",
        "Lead_Action_Due__c",
        "Lead_Score_Reasons__c",
        "Lead_Scored_At__c",
    ]
    first = frame.iloc[0]
    assert first["Id"] == "00Q000000000001AAA" and first["Lead_Conversion_Probability__c"] == 41.23
    assert first["Lead_Action_Due__c"] == "2025-07-01T08:00:00.000Z"
    assert first["Lead_Score_Reasons__c"] == "+ Demo requests in the last 7 days: 2"
    assert pd.isna(frame.iloc[1]["Lead_Action_Due__c"])
    assert frame.iloc[1]["Lead_Score_Reasons__c"] == "- Days since the lead's last activity: 90 days"


def test_hubspot_rows_use_record_id_internal_names_and_dates_and_fields_can_be_renamed():
    frame = crm_import_frame(SCORES, "hubspot", renamed={"score": "ml_lead_score"})
    assert frame.columns[0] == "Record ID" and "ml_lead_score" in frame and "leadscore_score" not in frame
    assert frame["leadscore_scored_at"].tolist() == ["2025-06-30", "2025-06-30"]
    with pytest.raises(UsageError, match="--crm-import: use one of salesforce, hubspot, not 'pipedrive'"):
        crm_import_frame(SCORES, "pipedrive")


def test_the_import_file_lies_beside_the_scores():
    assert crm_import_path("out/scores.csv", "hubspot") == "out/scores.hubspot-import.csv"
    assert crm_import_path("out.d/scores", "salesforce") == "out.d/scores.salesforce-import.csv"


def test_predict_writes_the_import_file_with_the_scores(trained_project, tmp_path):
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app, ["predict", "--config", str(trained_project), "--out", str(out), "--crm-import", "salesforce"]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"lead_id": str})
    imported = pd.read_csv(tmp_path / "scores.salesforce-import.csv", dtype={"Id": str})
    assert imported["Id"].tolist() == scores["lead_id"].tolist()
    assert imported["Lead_Score__c"].tolist() == scores["score"].tolist()


def test_an_unknown_vendor_is_refused_before_any_work(trained_project, tmp_path):
    result = CliRunner().invoke(
        app, ["predict", "--config", str(trained_project), "--out", str(tmp_path / "s.csv"), "--crm-import", "zoho"]
    )
    assert result.exit_code == 2 and "--crm-import: use one of salesforce, hubspot" in result.output
    assert not (tmp_path / "s.csv").exists()
