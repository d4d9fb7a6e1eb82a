"""What a Salesforce or HubSpot export looks like: its objects, their fields' API names and the UI labels the same
fields carry as headers when a user exports a report or a view, and what each field feeds here.

Data Loader, the Bulk API and HubSpot's API write API names (`CreatedDate`, `createdate`); report and UI exports write
labels ("Create Date", "Created Date", "Original Traffic Source"), which also changed between releases. A config names
the API name; `headers_as_api_names` reads any known label as its API name, so one config serves both kinds of
export. Labels were checked against Salesforce's Field Reference and HubSpot's property lists, and against genuine
export headers (see docs/real-exports.md); exports in another UI language are not covered.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "VENDORS",
    "FoundObject",
    "Vendor",
    "VendorField",
    "VendorObject",
    "field_table",
    "find_objects",
    "found_in",
    "header_key",
    "headers_as_api_names",
]


@dataclass(frozen=True)
class VendorField:
    """One field of a CRM object: its API name, its UI labels, and what goes dark here without it."""

    api: str
    labels: tuple[str, ...] = ()
    cost: str = ""  # what leadscore loses when the export lacks the field; empty: not used

    def names(self) -> tuple[str, ...]:
        return (self.api, *self.labels)


@dataclass(frozen=True)
class VendorObject:
    """A CRM object exported as one file, and the preset table it fills (`leads`, ..., or `more_events`)."""

    name: str
    table: str
    file_words: tuple[str, ...]  # words of a file name that say which object it holds
    fields: tuple[VendorField, ...]
    required: tuple[str, ...] = ()  # API names without which the object cannot be used

    def field(self, api: str) -> VendorField:
        return next(f for f in self.fields if f.api == api)


@dataclass(frozen=True)
class Vendor:
    name: str
    objects: tuple[VendorObject, ...]

    def object(self, name: str) -> VendorObject:
        return next(o for o in self.objects if o.name == name)


def header_key(name: str) -> str:
    """A header compared without case, blanks around it, a byte-order mark or doubled spaces."""
    return re.sub(r"\s+", " ", str(name).lstrip("\ufeff").strip()).lower()


def api_name_renames(columns: list[str], vendor_object: VendorObject) -> dict[str, str]:
    """{header: API name} for each known UI label among `columns` (an API name present as well wins)."""
    present = {header_key(c): c for c in columns}
    renames: dict[str, str] = {}
    for spec in vendor_object.fields:
        if spec.api in columns:
            continue
        found = next((present[header_key(n)] for n in spec.names() if header_key(n) in present), None)
        if found is not None and found not in renames:
            renames[found] = spec.api
    return renames


def headers_as_api_names(frame: pd.DataFrame, vendor_object: VendorObject) -> pd.DataFrame:
    """The frame with each known UI label renamed to its API name (a new frame; an API name present as well wins)."""
    renames = api_name_renames(list(frame.columns), vendor_object)
    return frame.rename(columns=renames) if renames else frame


_F = VendorField
_SALES_TOUCH = "sales' follow-up for `monitor` (never a feature)"

SALESFORCE = Vendor(
    "salesforce",
    (
        VendorObject(
            "Lead",
            "leads",
            ("lead",),
            (
                _F("Id", ("Lead ID", "Record ID"), "every lead: required"),
                _F("CreatedDate", ("Created Date", "Create Date"), "the lead's creation time: required"),
                _F("Title", ("Title",), "lead_seniority, lead_department; the seniority fit rule"),
                _F("Email", ("Email",), "lead_email_is_business; the e-mail fit rule"),
                _F("Phone", ("Phone",), "lead_has_contact_details (the stage rules)"),
                _F("Country", ("Country",), "lead_country; the country fit rule"),
                _F("LeadSource", ("Lead Source",), "lead_source; the source fit rule"),
                _F("Status", ("Lead Status", "Status"), "leads disqualified without a deal stay open"),
                _F("Industry", ("Industry",), "company_industry; the industry fit rule"),
                _F(
                    "NumberOfEmployees",
                    ("No. of Employees", "Employees", "Number of Employees"),
                    "company_employees; the company-size fit rule",
                ),
                _F("AnnualRevenue", ("Annual Revenue",), "company_annual_revenue"),
                _F("IsConverted", ("Converted",), "converted leads whose deal is not exported look open"),
                _F("ConvertedDate", ("Converted Date",)),
                _F(
                    "ConvertedOpportunityId",
                    ("Converted Opportunity ID", "Converted Opportunity"),
                    "no deal is linked to its lead: no outcome but disqualification, nothing to train on",
                ),
                _F("LastModifiedDate", ("Last Modified Date",), "leads disqualified without a deal stay open"),
            ),
            required=("Id", "CreatedDate"),
        ),
        VendorObject(
            "Opportunity",
            "opportunities",
            ("opportunit", "deal", "pipeline"),
            (
                _F("Id", ("Opportunity ID", "Record ID"), "every deal: required"),
                _F("CreatedDate", ("Created Date", "Create Date"), "the deal's creation time: required"),
                _F("CloseDate", ("Close Date",), "when a deal was won or lost: required for closed deals"),
                _F("StageName", ("Stage", "Stage Name"), "the outcome when Won / Closed are absent"),
                _F("IsWon", ("Won",), "the outcome is read from stage names (list yours in status_values)"),
                _F("IsClosed", ("Closed",), "the outcome is read from stage names (list yours in status_values)"),
                _F("Amount", ("Amount",), "deal amounts in the account reports"),
            ),
            required=("Id", "CreatedDate"),
        ),
        VendorObject(
            "OpportunityFieldHistory",
            "opportunity_history",
            ("fieldhistory", "history"),
            (
                _F("OpportunityId", ("Opportunity ID",), "every change: required"),
                _F("Field", ("Field / Event", "Field"), "which field changed (StageName, Amount, CloseDate): required"),
                _F("NewValue", ("New Value",), "the deal's stage, amount and close date features"),
                _F("CreatedDate", ("Edit Date", "Created Date"), "when the change was made: required"),
            ),
            required=("OpportunityId", "Field", "CreatedDate"),
        ),
        VendorObject(
            "Account",
            "accounts",
            ("account", "compan"),
            (
                _F("Id", ("Account ID", "Record ID")),
                _F("Industry", ("Industry",)),
                _F("NumberOfEmployees", ("Employees", "Number of Employees", "No. of Employees")),
                _F("AnnualRevenue", ("Annual Revenue",)),
                _F("BillingCountry", ("Billing Country",)),
            ),
            required=("Id",),
        ),
        VendorObject(
            "Task",
            "events",
            ("task", "activit"),
            (
                _F("WhoId", ("Name ID", "Who ID"), "calls and e-mails logged by sales: " + _SALES_TOUCH),
                _F("CreatedDate", ("Created Date", "Create Date")),
                _F("TaskSubtype", ("Task Subtype",)),
            ),
            required=("WhoId", "CreatedDate", "TaskSubtype"),
        ),
        VendorObject(
            "Event",
            "more_events",
            ("event", "meeting", "calendar"),
            (
                _F("WhoId", ("Name ID", "Who ID"), "meetings: " + _SALES_TOUCH),
                _F("StartDateTime", ("Start Date Time", "Start", "Start Date")),
                _F("EventSubtype", ("Event Subtype",)),
            ),
            required=("WhoId", "StartDateTime", "EventSubtype"),
        ),
        VendorObject(
            "CampaignMember",
            "more_events",
            ("campaign", "member"),
            (
                _F("LeadId", ("Lead ID", "Lead"), "campaign responses: forms submitted, webinars attended"),
                _F("LastModifiedDate", ("Last Modified Date",)),
                _F("Status", ("Member Status", "Status")),
            ),
            required=("LeadId", "LastModifiedDate", "Status"),
        ),
    ),
)

HUBSPOT = Vendor(
    "hubspot",
    (
        VendorObject(
            "contacts",
            "leads",
            ("contact", "lead"),
            (
                _F("hs_object_id", ("Record ID", "Contact ID"), "every contact: required"),
                _F("createdate", ("Create Date",), "the contact's creation time: required"),
                _F(
                    "associatedcompanyid",
                    ("Primary Associated Company ID", "Associated Company ID"),
                    "account_* features and the industry and company-size fit rules",
                ),
                _F("jobtitle", ("Job Title",), "lead_seniority, lead_department; the seniority fit rule"),
                _F("email", ("Email",), "lead_email_is_business; the e-mail fit rule"),
                _F("phone", ("Phone Number",), "lead_has_contact_details (the stage rules)"),
                _F("country", ("Country/Region", "Country"), "lead_country; the country fit rule"),
                _F(
                    "hs_analytics_source",
                    ("Original Traffic Source", "Original Source"),
                    "lead_source; the source fit rule",
                ),
                _F("hs_lead_status", ("Lead Status",), "contacts disqualified without a deal stay open"),
                _F("lastmodifieddate", ("Last Modified Date",), "contacts disqualified without a deal stay open"),
                _F(
                    "hs_lifecyclestage_salesqualifiedlead_date",
                    ("Became a Sales Qualified Lead Date",),
                    "the SQL stage from HubSpot's own lifecycle date",
                ),
            ),
            required=("hs_object_id", "createdate"),
        ),
        VendorObject(
            "companies",
            "accounts",
            ("compan", "account"),
            (
                _F("hs_object_id", ("Record ID", "Company ID")),
                _F("industry", ("Industry",)),
                _F("numberofemployees", ("Number of Employees",)),
                _F("annualrevenue", ("Annual Revenue",)),
                _F("country", ("Country/Region", "Country")),
            ),
            required=("hs_object_id",),
        ),
        VendorObject(
            "deals",
            "opportunities",
            ("deal", "opportunit"),
            (
                _F("hs_object_id", ("Record ID", "Deal ID"), "every deal: required"),
                _F(
                    "Associated Contact IDs",
                    ("associated_contact_ids", "associatedcontactids", "Associated Contact ID"),
                    "no deal is linked to its contact: no outcome but disqualification, nothing to train on",
                ),
                _F("createdate", ("Create Date",), "the deal's creation time: required"),
                _F("closedate", ("Close Date",), "when a deal was won or lost: required for closed deals"),
                _F("dealstage", ("Deal Stage",), "the outcome when Is Closed Won / Is Deal Closed? are absent"),
                _F("hs_is_closed_won", ("Is Closed Won",), "the outcome is read from deal stages"),
                _F("hs_is_closed", ("Is Deal Closed?", "Is Closed"), "the outcome is read from deal stages"),
                _F("amount", ("Amount",), "deal amounts in the account reports"),
            ),
            required=("hs_object_id", "createdate"),
        ),
        VendorObject(
            "engagements",
            "events",
            ("engagement", "activit", "call", "meeting", "email"),
            (
                _F("associations.contactIds", ("Associated Contact IDs",), "calls, e-mails, meetings: " + _SALES_TOUCH),
                _F("engagement.timestamp", ("Activity date", "Activity Date")),
                _F("engagement.type", ("Activity type", "Activity Type")),
            ),
            required=("associations.contactIds", "engagement.timestamp", "engagement.type"),
        ),
    ),
)

VENDORS: dict[str, Vendor] = {v.name: v for v in (SALESFORCE, HUBSPOT)}


# -- what an export folder holds ---------------------------------------------------------------------------------
@dataclass
class FoundObject:
    """Where one object of a vendor's export is, and which of its fields the file has (API name -> its header)."""

    spec: VendorObject
    path: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None  # None: UTF-8 (with or without a byte-order mark)

    def missing(self) -> list[VendorField]:
        return [f for f in self.spec.fields if f.api not in self.headers]


def read_headers(path: Path) -> tuple[list[str], str | None]:
    """A file's column names, and the text encoding a CSV needs when it is not UTF-8 (Excel saves cp1252)."""
    if path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names), None
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            with open(path, encoding=encoding, newline="") as handle:
                header = next(csv.reader(handle), [])
            return [c.strip() for c in header], None if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    return [], None


def find_objects(vendor: Vendor, folder: Path) -> dict[str, FoundObject]:
    """Each object of `vendor` matched to the export file that holds it, by its headers (API names or UI labels)
    and its file name; an object no file holds has no path."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in {".csv", ".parquet", ".pq"})
    headers = {path: read_headers(path) for path in files}
    candidates = []
    for spec in vendor.objects:
        for path, (names, encoding) in headers.items():
            found = _matched(spec, names)
            named = any(word in path.stem.lower() for word in spec.file_words)
            if named or all(api in found for api in spec.required):
                candidates.append((len(found) + (5 if named else 0), spec.name, path, found, encoding))
    result = {spec.name: FoundObject(spec) for spec in vendor.objects}
    used: set[Path] = set()
    for _, name, path, found, encoding in sorted(candidates, key=lambda c: (-c[0], c[1], str(c[2]))):
        if result[name].path is None and path not in used:
            result[name] = FoundObject(vendor.object(name), path, found, encoding)
            used.add(path)
    return result


def found_in(vendor: Vendor, files: dict[str, Path | None]) -> dict[str, FoundObject]:
    """The objects of a project's config (object name -> its file, None when absent) with their headers."""
    result = {}
    for name, path in files.items():
        spec = vendor.object(name)
        if path is None or not path.exists():
            result[name] = FoundObject(spec)
            continue
        names, encoding = read_headers(path)
        result[name] = FoundObject(spec, path, _matched(spec, names), encoding)
    return result


def _matched(spec: VendorObject, names: list[str]) -> dict[str, str]:
    present = {header_key(n): n for n in names}
    matched = {}
    for f in spec.fields:
        header = next((present[header_key(n)] for n in f.names() if header_key(n) in present), None)
        if header is not None:
            matched[f.api] = header
    return matched


def field_table(vendor: Vendor, found: dict[str, FoundObject]) -> list[str]:
    """The fields found and missing, object by object, and what each missing one costs: the table `init --from`
    and `validate` print."""
    width = max([len(item.path.name) for item in found.values() if item.path is not None] + [9])
    lines = [
        f"{vendor.name} export: fields found, and what each missing one costs",
        f"  {'object':<15} {'file':<{width}}  found  missing: what it costs",
    ]
    for name, item in found.items():
        file = item.path.name if item.path is not None else "(no file)"
        costly = [f for f in item.missing() if f.cost]
        share = f"{len(item.headers)}/{len(item.spec.fields)}"
        if item.path is None:
            cost = next((f.cost for f in item.spec.fields if f.cost), "")
            lines.append(f"  {name:<15} {file:<{width}}  {share:<5}  all: {cost}")
            continue
        first = f"{costly[0].api}: {costly[0].cost}" if costly else ""
        lines.append(f"  {name:<15} {file:<{width}}  {share:<5}  {first}".rstrip())
        lines += [f"  {'':<15} {'':<{width}}  {'':<5}  {f.api}: {f.cost}" for f in costly[1:]]
    return lines
