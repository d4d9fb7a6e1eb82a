"""Intake: reading the CRM tables (files or SQL), parsing their values, the as-of view and validation against the
data contract, export conventions of Salesforce and HubSpot, flat exports, and the checks before scoring."""

from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.parsing import parse_as_of, parse_time_column
from leadscore.pipelines.intake.sources import read_file, read_source
from leadscore.pipelines.intake.validation import CrmData, Problem, load_crm, validate_frames

__all__ = [
    "CrmData",
    "Problem",
    "load_crm",
    "load_valid_crm",
    "parse_as_of",
    "parse_time_column",
    "read_file",
    "read_source",
    "validate_frames",
]
