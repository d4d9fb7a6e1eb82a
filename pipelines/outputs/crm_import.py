"""Scores written back in the CRM's own import shape (`predict --crm-import salesforce|hubspot`).

Salesforce's Data Loader and Bulk API update records by `Id`, with custom fields named by their API names
(`Lead_Score__c`) and datetimes in ISO 8601 UTC; HubSpot's import tool updates contacts by `Record ID`, with
properties named by their internal names and dates as YYYY-MM-DD (the import's "year month day" format). The field
names are the defaults below unless `output.crm_fields` renames them; docs/crm-import.md says how to create the fields.
"""

from __future__ import annotations

import pandas as pd

from leadscore.pipelines.errors import UsageError

__all__ = ["CRM_IMPORT_FIELDS", "crm_import_frame", "crm_import_path"]

# what we write -> the vendor's field name
CRM_IMPORT_FIELDS: dict[str, dict[str, str]] = {
    "salesforce": {
        "lead_id": "Id",
        "score": "Lead_Score__c",
        "score_change": "Lead_Score_Change__c",
        "probability": "Lead_Conversion_Probability__c",
        "cell": "Lead_Grade__c",
        "stage": "Lead_Stage__c",
        "action": "Lead_Next_Action__c",
        "due_by": "Lead_Action_Due__c",
        "reasons": "Lead_Score_Reasons__c",
        "as_of": "Lead_Scored_At__c",
    },
    "hubspot": {
        "lead_id": "Record ID",
        "score": "leadscore_score",
        "score_change": "leadscore_score_change",
        "probability": "leadscore_probability",
        "cell": "leadscore_grade",
        "stage": "leadscore_stage",
        "action": "leadscore_next_action",
        "due_by": "leadscore_action_due",
        "reasons": "leadscore_reasons",
        "as_of": "leadscore_scored_at",
    },
}
MAX_TEXT = 32_000  # a Salesforce Long Text Area holds 32,768 characters; HubSpot's multi-line text 65,536


def crm_import_path(scores: str, vendor: str) -> str:
    """The import file beside the scores: `scores.csv` -> `scores.salesforce-import.csv`."""
    stem = scores.rsplit(".", 1)[0] if "." in scores.rsplit("/", 1)[-1] else scores
    return f"{stem}.{vendor}-import.csv"


def crm_import_frame(scores: pd.DataFrame, vendor: str, *, renamed: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per scored lead in the vendor's import shape: its record id, the score, the probability in percent,
    the change of the score since the lead's previous run (when predict compared), the grade, stage, next action and its
    due date, the reasons for the score, and when it was scored."""
    if vendor not in CRM_IMPORT_FIELDS:
        raise UsageError(f"--crm-import: use one of {', '.join(CRM_IMPORT_FIELDS)}, not {vendor!r}")
    names = {**CRM_IMPORT_FIELDS[vendor], **(renamed or {})}
    values = {
        "lead_id": scores["lead_id"].astype("string"),
        "score": scores["score"],
        "score_change": scores.get("score_change"),  # since the lead's previous run; empty for a new lead
        "probability": (scores["probability"] * 100).round(2),
        "cell": scores.get("cell"),
        "stage": scores.get("stage"),
        "action": scores.get("action"),
        "due_by": _when(scores.get("due_by"), vendor),
        "reasons": _reasons(scores),
        "as_of": _when(scores.get("as_of"), vendor),
    }
    return pd.DataFrame({names[key]: value for key, value in values.items() if value is not None})


def _when(times: pd.Series | None, vendor: str) -> pd.Series | None:
    if times is None:
        return None
    stamps = pd.to_datetime(times, utc=True, errors="coerce")
    text = stamps.dt.strftime("%Y-%m-%d") if vendor == "hubspot" else stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return text.astype("string")


def _reasons(scores: pd.DataFrame) -> pd.Series | None:
    if "reasons_positive" not in scores:
        return None
    plus = scores["reasons_positive"].astype("string").fillna("")
    minus = scores.get("reasons_negative", pd.Series("", index=scores.index)).astype("string").fillna("")
    text = ("+ " + plus).where(plus != "", "") + ("\n- " + minus).where(minus != "", "")
    return text.str.strip().str.slice(0, MAX_TEXT)
