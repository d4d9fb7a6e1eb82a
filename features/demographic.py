"""Demographic features: who the lead is, from the lead's own record."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from leadscore.features.context import NS_PER_DAY, FeatureContext
from leadscore.features.keys import is_in, on_distinct
from leadscore.features.pointintime import to_ns
from leadscore.features.spec import FeatureSpec, feature

# Lead age counts up to a year. A lead created within one horizon of the start of the data is older at scoring than
# any fully observed training row can be (its row would need a horizon after as_of), so uncapped ages put every such
# lead outside what the model has seen; capped, those leads and the year-old ones the model learnt from look alike.
MAX_LEAD_AGE_DAYS = 365.0
SENIORITY_LEVELS = ("c_level", "vp", "director", "manager", "individual")
_TITLE_PATTERNS = (
    ("c_level", r"\b(?:chief|ceo|cto|cfo|cio|coo|cmo|cro|president|founder|owner)\b"),
    ("vp", r"\b(?:vp|svp|evp|vice[ -]president)\b"),
    ("director", r"\b(?:director|head of)\b"),
    ("manager", r"\b(?:manager|lead|supervisor)\b"),
)
_SENIORITY_SYNONYMS = {
    "c_level": "c_level",
    "c-level": "c_level",
    "c level": "c_level",
    "c-suite": "c_level",
    "executive": "c_level",
    "vp": "vp",
    "vice president": "vp",
    "director": "director",
    "manager": "manager",
    "individual": "individual",
    "individual contributor": "individual",
    "ic": "individual",
    "staff": "individual",
}
FREE_EMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "proton.me",
        "protonmail.com",
        "yandex.ru",
        "qq.com",
        "163.com",
    }
)
PROFILE_FIELDS = ("email", "phone", "job_title", "department", "country", "account_id")
# the profile fields sales completes while working a lead (the e-mail address is how the lead arrived)
LATE_PROFILE_FIELDS = PROFILE_FIELDS[1:]


def seniority_from_title(titles: pd.Series) -> pd.Series:
    """Seniority level read from a job title ('VP of Sales' -> 'vp'); a title matching nothing is 'individual'."""
    return on_distinct(titles, _seniority_from_title)


def _seniority_from_title(titles: pd.Series) -> pd.Series:
    lowered = titles.astype("string").str.lower()
    result = pd.Series(pd.NA, index=titles.index, dtype="string")
    result[lowered.notna()] = "individual"
    for level, pattern in reversed(_TITLE_PATTERNS):  # the most senior match wins: apply it last
        result[lowered.str.contains(pattern, flags=re.IGNORECASE, regex=True).fillna(False).astype(bool)] = level
    return result


def _column(ctx: FeatureContext, name: str) -> pd.Series:
    rows = ctx.lead_rows
    if name in rows:
        return on_distinct(rows[name], lambda v: v.astype("string").str.strip().str.lower().replace("", pd.NA))
    return pd.Series(pd.NA, index=rows.index, dtype="string")


@feature("demographic", kind="categorical")
def lead_seniority(ctx: FeatureContext) -> pd.Series:
    """Seniority of the lead's role (read from the job title when not given)."""
    given = _column(ctx, "seniority").map(_SENIORITY_SYNONYMS).astype("string")
    title = ctx.lead_rows["job_title"] if "job_title" in ctx.lead_rows else pd.Series(pd.NA, index=given.index)
    return given.fillna(seniority_from_title(title)).rename("lead_seniority")


@feature("demographic", kind="categorical")
def lead_department(ctx: FeatureContext) -> pd.Series:
    """Department the lead works in."""
    return _column(ctx, "department").rename("lead_department")


@feature("demographic", kind="categorical")
def lead_source(ctx: FeatureContext) -> pd.Series:
    """Marketing channel the lead came from."""
    return _column(ctx, "source").rename("lead_source")


@feature("demographic", kind="categorical", concept="country")  # one reason with the company's country
def lead_country(ctx: FeatureContext) -> pd.Series:
    """Country of the lead."""
    return _column(ctx, "country").str.upper().rename("lead_country")


@feature("demographic", kind="boolean", direction=1, when_false="The lead signed up with a free e-mail domain")
def lead_email_is_business(ctx: FeatureContext) -> pd.Series:
    """The lead signed up with a business e-mail domain."""
    domain_type = _column(ctx, "email_domain_type")
    free = FREE_EMAIL_DOMAINS | set(ctx.params.free_email_domains)
    domain = _column(ctx, "email").str.extract(r"@([^@\s]+)$", expand=False)
    from_email = pd.Series(np.where(domain.isna(), np.nan, ~is_in(domain, free)), index=domain.index)
    from_type = domain_type.map({"business": 1.0, "free": 0.0}).astype("float64")
    return from_type.fillna(from_email.astype("float64")).rename("lead_email_is_business")


@feature("demographic", unit="days", at_most=MAX_LEAD_AGE_DAYS)
def lead_age_days(ctx: FeatureContext) -> pd.Series:
    """Days since the lead was created."""
    age = (ctx.cutoff_ns - to_ns(ctx.lead_rows["created_at"])) / NS_PER_DAY
    return pd.Series(np.minimum(age, MAX_LEAD_AGE_DAYS), name="lead_age_days")


@feature("demographic", unit="%", direction=1, filled_late=LATE_PROFILE_FIELDS)
def lead_profile_completeness(ctx: FeatureContext) -> pd.Series:
    """Share of key profile fields filled in (e-mail, phone, job title, department, country, company)."""
    present = [_column(ctx, name).notna().to_numpy() for name in PROFILE_FIELDS]
    return pd.Series(np.mean(present, axis=0) * 100.0, name="lead_profile_completeness")


@feature("demographic", kind="categorical", filled_late=("bant_budget",))
def lead_bant_budget(ctx: FeatureContext) -> pd.Series:
    """Budget answer given by the lead (BANT)."""
    return _column(ctx, "bant_budget").rename("lead_bant_budget")


@feature("demographic", kind="categorical", filled_late=("bant_authority",))
def lead_bant_authority(ctx: FeatureContext) -> pd.Series:
    """Buying authority of the lead (BANT)."""
    return _column(ctx, "bant_authority").rename("lead_bant_authority")


@feature("demographic", kind="categorical", filled_late=("bant_need",))
def lead_bant_need(ctx: FeatureContext) -> pd.Series:
    """Stated need (BANT)."""
    return _column(ctx, "bant_need").rename("lead_bant_need")


@feature("demographic", kind="categorical", filled_late=("bant_timeline",))
def lead_bant_timeline(ctx: FeatureContext) -> pd.Series:
    """Stated buying timeline (BANT)."""
    return _column(ctx, "bant_timeline").rename("lead_bant_timeline")


@feature("demographic", kind="boolean", for_model=False)
def lead_has_contact_details(ctx: FeatureContext) -> pd.Series:
    """The lead left an e-mail address or a phone number."""
    known = _column(ctx, "email").notna() | _column(ctx, "phone").notna()
    return known.astype("float64").rename("lead_has_contact_details")


def _time_column(ctx: FeatureContext, name: str) -> np.ndarray:
    if name not in ctx.lead_rows:
        return np.full(ctx.n, np.iinfo("int64").min)
    return to_ns(ctx.lead_rows[name])


@feature("demographic", kind="boolean", for_model=False)
def lead_sales_accepted(ctx: FeatureContext) -> pd.Series:
    """Sales had accepted the lead."""
    accepted = _time_column(ctx, "sales_accepted_at")
    seen = (accepted != np.iinfo("int64").min) & (accepted < ctx.cutoff_ns)
    return pd.Series(seen.astype("float64"), name="lead_sales_accepted")


# The group's features, in the order the model sees them.
FEATURES: tuple[FeatureSpec, ...] = (
    lead_seniority.spec,
    lead_department.spec,
    lead_source.spec,
    lead_country.spec,
    lead_email_is_business.spec,
    lead_age_days.spec,
    lead_profile_completeness.spec,
    lead_bant_budget.spec,
    lead_bant_authority.spec,
    lead_bant_need.spec,
    lead_bant_timeline.spec,
    lead_has_contact_details.spec,
    lead_sales_accepted.spec,
)
