"""The data contract: canonical tables, their column roles and the event vocabulary.

A role is the contract's name for a column; users map their own column names onto roles in the config.
"""

from __future__ import annotations

import re

# role -> required?  Order is the canonical column order of the loaded table.
TABLE_ROLES: dict[str, dict[str, bool]] = {
    "leads": {
        "lead_id": True,
        "created_at": True,
        "account_id": False,
        "email": False,
        "phone": False,
        "job_title": False,
        "seniority": False,
        "department": False,
        "country": False,
        "source": False,
        "email_domain_type": False,
        "sales_accepted_at": False,
        "sales_rejected_at": False,
        "rejection_reason": False,
        "first_sales_touch_at": False,
        "bant_budget": False,
        "bant_authority": False,
        "bant_need": False,
        "bant_timeline": False,
    },
    "accounts": {
        "account_id": True,
        "industry": False,
        "employee_count": False,
        "annual_revenue": False,
        "country": False,
    },
    "events": {
        "lead_id": True,
        "occurred_at": True,
        "event_type": True,
        "value": False,
    },
    "opportunities": {
        "opportunity_id": True,
        "lead_id": True,
        "created_at": True,
        "closed_at": False,
        "status": True,
        "amount": False,
        "probability": False,
    },
    # one row per change of a deal's field: Salesforce OpportunityHistory / OpportunityFieldHistory, HubSpot property
    # history. `field` is one of HISTORY_FIELDS (vendor names accepted, see `history_field`), `value` its new value.
    "opportunity_history": {
        "opportunity_id": True,
        "field": True,
        "value": False,
        "changed_at": True,
    },
}

ID_COLUMNS = {"leads": "lead_id", "accounts": "account_id", "opportunities": "opportunity_id"}
TIME_COLUMNS = {
    "leads": ("created_at", "sales_accepted_at", "sales_rejected_at", "first_sales_touch_at"),
    "accounts": (),
    "events": ("occurred_at",),
    "opportunities": ("created_at", "closed_at"),
    "opportunity_history": ("changed_at",),
}
NUMERIC_COLUMNS = {
    "accounts": ("employee_count", "annual_revenue"),
    "events": ("value",),
    "opportunities": ("amount", "probability"),
}
STATUSES = ("open", "won", "lost")

# The deal fields whose changes the opportunity history records, and the vendors' names for them (compared by
# `event_type_key`): Salesforce OpportunityFieldHistory.Field / OpportunityHistory columns, HubSpot deal properties.
HISTORY_FIELDS: dict[str, tuple[str, ...]] = {
    "stage": ("stage", "stagename", "dealstage", "deal_stage"),
    "amount": ("amount",),
    "close_date": ("close_date", "closedate"),
    "probability": ("probability", "hs_deal_stage_probability", "deal_stage_probability"),
}

# A lead field filled in after the lead was created (a BANT answer, a phone number learnt on a call) may come with the
# time it was filled in (`tables.leads.known_at`), loaded beside it as `<field>_known_at`: the field is known from then.
KNOWN_AT_SUFFIX = "_known_at"

# Event type -> plain-language label used in feature descriptions and reason texts.
EVENT_TYPES: dict[str, str] = {
    "page_view": "Web page views",
    "pricing_page_view": "Pricing-page views",
    "email_open": "Marketing e-mails opened",
    "email_click": "Marketing e-mail clicks",
    "form_submit": "Forms submitted",
    "content_download": "Content downloads",
    "webinar_attended": "Webinars attended",
    "demo_request": "Demo requests",
    "trial_signup": "Trial sign-ups",
    "product_login": "Product logins",
    "feature_used": "Product features used",
    "upgrade_page_view": "Upgrade-page views",
    "support_ticket": "Support tickets",
}
PRODUCT_EVENTS = ("trial_signup", "product_login", "feature_used", "upgrade_page_view", "support_ticket")
MARKETING_EVENTS = tuple(t for t in EVENT_TYPES if t not in PRODUCT_EVENTS)

# Sales' own actions on a lead. They measure sales' follow-up (time to first touch, SLA compliance) and are never
# features: a model fed with them would learn sales' reaction to a lead rather than the lead's own intent.
SALES_TOUCH_EVENTS: dict[str, str] = {
    "sales_call": "Sales calls",
    "sales_email": "Sales e-mails",
    "meeting": "Sales meetings",
}


def event_type_key(name: str) -> str:
    """An event type compared by meaning, as validation reads the events: case, surrounding blanks and runs of
    spaces, dashes and underscores do not count (`Webinar Registration` -> `webinar_registration`)."""
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


def history_field(name: str) -> str | None:
    """The contract's name of a history row's field (`stage`, `amount`, `close_date`, `probability`), or None for a
    field no feature reads."""
    key = event_type_key(name)
    return next((field for field, names in HISTORY_FIELDS.items() if key in names), None)


# Text that means "no value" in a number or a time column (pandas' default list). Text columns keep such values as
# written: "NA" is Namibia's country code and a common "no answer"; a user lists their own placeholders per table
# (`missing_values`).
NUMBER_MISSING = frozenset(
    {
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
