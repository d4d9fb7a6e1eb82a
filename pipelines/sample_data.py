"""A realistic synthetic B2B SaaS CRM: accounts, leads, behavioral events and opportunities.

Generating effects (documented so that tests and analysts can check that a model recovers them):

* **Profile fit** (a latent log-odds term): seniority (c_level +0.9, vp +0.7, director +0.4, manager +0.1,
  individual -0.4), industry (software +0.6, fintech +0.5, healthcare +0.2, manufacturing 0, retail -0.2,
  media -0.2, education -0.5, government -0.6), company size (best between 50 and 5,000 employees: +0.5;
  under 10 employees -0.6), free e-mail domain -0.7, department (sales, marketing, executive +0.3; hr -0.3),
  country (US, GB, DE, CA, AU +0.2; elsewhere 0).
* **Intent** (latent, standard normal): more events of every kind, more pricing-page views and demo requests,
  more trial sign-ups.
* **Recency**: leads heading for a decision surge in the three weeks before it (pricing pages, demo requests,
  clicks, product use), buyers twice as much as those who end up lost, so the last 7-30 days carry more signal
  than the lead's whole history.
* **Product usage**: trial users who log in on many days and use many features convert more (+0.8 per s.d.).
* **Interaction**: intent counts for more when fit is high (+0.35 x fit x intent); plus noise (s.d. 0.6).
* **Buying committee** (an account-level effect no single lead shows): 70 % of the senior leads (director, VP,
  C-level) with a company join another senior lead's company within three weeks of it (either side), so
  committees of several senior contacts form. When a company has two or more *engaged* senior contacts
  (intent > -0.25: lukewarm or better on their own) created within 45 days of each other, the committee may buy
  as a whole, through its first engaged senior contact: that lead converts with probability
  sigmoid(1.5 + 1.0 x (n - 2)), n the engaged senior contacts within 45 days of it counted up to 3 (82 % for two,
  92 % for three or more), whatever its own odds. So such accounts convert more than the sum of their leads
  suggests. `SampleSpec(committee=False)` switches the buying off (committees still form). Drawn from its own
  seeded generator: every other draw is unchanged.
* Conversion log-odds: -2.0 + 0.9 fit + 0.8 intent + 0.8 usage + 0.35 fit x intent + noise. Converted leads
  get an opportunity that closes won at the decision time; some others get one that closes lost; decisions
  after the end date leave opportunities open (or not yet created): those leads are open, to be scored.
* **Deal history** (`opportunity_history`, its own seeded stream): stages with the CRM's stage probability (won deals
  reach every open stage, lost ones stall at one to four), the amount first entered (revised on half the deals, cut
  more often on those that will be lost) and the expected close date (slipping 0.4 times per deal that will be won,
  1.2 per deal that will be lost, on average).
* **Sales follow-up** (never a feature: the feature context ignores sales touches): sales works every lead that
  gets an opportunity and some others (more often when fit and intent are high). Its first touch (`sales_email`
  or `sales_call`) comes an exponential delay (mean 8 h x exp(-0.5 fit - 0.3 intent)) after the lead becomes
  ready, partway through its journey, and never after sales accepts the lead; further touches (`sales_call`,
  `sales_email`, `meeting`) follow at 0.15 x exp(0.6 fit + 0.3 intent) a day (at most 1 a day, 20 in all) until a
  week after the decision. So acceptance (`sales_accepted_at`, set for leads with an opportunity) and speed of
  follow-up both rise from the D/4 cells to A1. Worked leads without an opportunity are rejected with probability
  sigmoid(0.3 - 0.9 fit - 0.3 intent), 1-14 days after the first touch, with a reason: "personal e-mail address"
  (free e-mail), "not a decision maker" (individual contributors), "no budget" (low fit), else "no response" or
  "bad timing". `leads.first_sales_touch_at` is the first touch event.

Leads are generated in fixed-size chunks, each from its own seeded generator, and streamed to Parquet, so the
output is identical for a seed whatever the size of memory, and 1M leads with about 50M events fit in a few GiB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.features.schemas import EVENT_TYPES, SALES_TOUCH_EVENTS

log = logging.getLogger(__name__)

CHUNK_LEADS = 20_000
DAY = np.timedelta64(86_400, "s")

SENIORITY = {"c_level": 0.9, "vp": 0.7, "director": 0.4, "manager": 0.1, "individual": -0.4}
SENIORITY_P = [0.05, 0.10, 0.18, 0.27, 0.40]
INDUSTRY = {
    "software": 0.6,
    "fintech": 0.5,
    "healthcare": 0.2,
    "manufacturing": 0.0,
    "retail": -0.2,
    "media": -0.2,
    "education": -0.5,
    "government": -0.6,
}
INDUSTRY_P = [0.22, 0.10, 0.12, 0.14, 0.12, 0.08, 0.12, 0.10]
DEPARTMENT = {
    "sales": 0.3,
    "marketing": 0.3,
    "executive": 0.3,
    "engineering": 0.0,
    "it": 0.0,
    "finance": 0.0,
    "operations": 0.0,
    "hr": -0.3,
}
DEPARTMENT_P = [0.18, 0.20, 0.04, 0.18, 0.14, 0.10, 0.10, 0.06]
COUNTRY = ["US", "GB", "DE", "CA", "AU", "FR", "NL", "IN", "BR", "ES"]
COUNTRY_P = [0.38, 0.12, 0.09, 0.06, 0.05, 0.07, 0.04, 0.10, 0.05, 0.04]
GOOD_COUNTRIES = {"US", "GB", "DE", "CA", "AU"}
COMMITTEE_LEVELS = ("c_level", "vp", "director")
COMMITTEE_JOIN = 0.7  # share of senior leads with a company that join another senior lead's company
COMMITTEE_JOIN_DAYS = 21.0  # ... created this close to that lead
COMMITTEE_WINDOW_DAYS = 45.0  # engaged senior contacts created this close to each other form one committee
COMMITTEE_BASE = 1.5  # log-odds that a committee of two buys ...
COMMITTEE_EFFECT = 1.0  # ... plus this per further engaged senior contact
COMMITTEE_MAX_SIZE = 3
COMMITTEE_MIN_INTENT = -0.25  # engaged enough to sit on a committee: lukewarm on their own
SOURCE = [
    "organic_search",
    "paid_search",
    "referral",
    "webinar",
    "event",
    "content_syndication",
    "outbound",
    "partner",
    "website_direct",
]
SOURCE_P = [0.22, 0.16, 0.08, 0.08, 0.07, 0.12, 0.12, 0.05, 0.10]
TITLE_DEPARTMENT = {
    "sales": "Sales",
    "marketing": "Marketing",
    "executive": "Operations",
    "engineering": "Engineering",
    "it": "IT",
    "finance": "Finance",
    "operations": "Operations",
    "hr": "HR",
}
CHIEF = {
    "sales": "Chief Revenue Officer",
    "marketing": "Chief Marketing Officer",
    "executive": "CEO",
    "engineering": "CTO",
    "it": "CIO",
    "finance": "CFO",
    "operations": "COO",
    "hr": "Chief People Officer",
}
INDIVIDUAL = {
    "sales": "Account Executive",
    "marketing": "Marketing Specialist",
    "executive": "Chief of Staff",
    "engineering": "Software Engineer",
    "it": "Systems Administrator",
    "finance": "Financial Analyst",
    "operations": "Operations Analyst",
    "hr": "HR Generalist",
}
TIMELINE = ["<3 months", "3-6 months", "6-12 months", ">12 months"]

# a deal's open stages with the CRM's stage probability (Salesforce's defaults), then its closing stages
DEAL_STAGES = {"Qualification": 10, "Needs Analysis": 20, "Proposal/Price Quote": 75, "Negotiation/Review": 90}
CLOSED_STAGES = {"won": ("Closed Won", 100), "lost": ("Closed Lost", 0)}
LOST_STAGES_REACHED_P = [0.30, 0.30, 0.25, 0.15]  # a deal that will be lost stalls early (won deals reach the last)

TYPES = list(EVENT_TYPES)
T = {name: i for i, name in enumerate(TYPES)}


@dataclass(frozen=True)
class SampleSpec:
    n_leads: int = 20_000
    seed: int = 42
    end: str = "2025-12-31"
    days: int = 730
    events_per_lead: float = 50.0
    committee: bool = True  # the buying-committee effect (see the module's docstring)

    @property
    def end_ts(self) -> np.datetime64:
        return np.datetime64(pd.Timestamp(self.end).normalize() + pd.Timedelta(days=1, seconds=-1), "s")

    @property
    def start_ts(self) -> np.datetime64:
        return self.end_ts - self.days * DAY


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_accounts(spec: SampleSpec) -> pd.DataFrame:
    rng = np.random.default_rng([spec.seed, 0])
    n = max(20, spec.n_leads // 4)
    employees = np.clip(np.round(rng.lognormal(np.log(180), 1.6, n)), 1, 200_000)
    revenue = np.round(employees * rng.lognormal(np.log(150_000), 0.5, n), -3)
    return pd.DataFrame(
        {
            "account_id": [f"A{i:07d}" for i in range(n)],
            "industry": rng.choice(list(INDUSTRY), n, p=INDUSTRY_P),
            "employee_count": employees.astype("int64"),
            "annual_revenue": revenue,
            "country": rng.choice(COUNTRY, n, p=COUNTRY_P),
        }
    )


def _account_fit(accounts: pd.DataFrame) -> np.ndarray:
    employees = accounts["employee_count"].to_numpy()
    size = np.where((employees >= 50) & (employees <= 5000), 0.5, np.where(employees < 10, -0.6, 0.0))
    return accounts["industry"].map(INDUSTRY).to_numpy() + size


def _job_titles(rng: np.random.Generator, seniority: np.ndarray, department: np.ndarray) -> np.ndarray:
    titles = np.empty(len(seniority), dtype=object)
    for i, (level, dept) in enumerate(zip(seniority, department, strict=True)):
        name = TITLE_DEPARTMENT[dept]
        titles[i] = {
            "c_level": CHIEF[dept],
            "vp": f"VP of {name}",
            "director": f"Director of {name}",
            "manager": f"{name} Manager",
            "individual": INDIVIDUAL[dept],
        }[level]
    titles[rng.random(len(titles)) < 0.08] = None
    return titles


def _leads_chunk(
    spec: SampleSpec, chunk: int, first: int, n: int, accounts: pd.DataFrame, account_fit: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng([spec.seed, 1, chunk])
    n_accounts = len(accounts)
    has_account = rng.random(n) < 0.85
    account_idx = rng.integers(0, n_accounts, n)
    free_email = np.where(has_account, rng.random(n) < 0.10, rng.random(n) < 0.80)
    seniority = rng.choice(list(SENIORITY), n, p=SENIORITY_P)
    department = rng.choice(list(DEPARTMENT), n, p=DEPARTMENT_P)
    committee_rng = np.random.default_rng([spec.seed, 3, chunk])
    account_idx, anchor = _join_committees(committee_rng, account_idx, has_account, seniority)
    account_country = accounts["country"].to_numpy()[account_idx]
    country = np.where(has_account & (rng.random(n) < 0.8), account_country, rng.choice(COUNTRY, n, p=COUNTRY_P))

    fit = (
        pd.Series(seniority).map(SENIORITY).to_numpy()
        + pd.Series(department).map(DEPARTMENT).to_numpy()
        + np.where(has_account, account_fit[account_idx], -0.3)
        + np.where(free_email, -0.7, 0.0)
        + np.where(np.isin(country, list(GOOD_COUNTRIES)), 0.2, 0.0)
    )
    fit_c = (fit - 0.55) / 0.8
    intent = rng.normal(0, 1, n)
    trial = rng.random(n) < _sigmoid(-1.0 + 0.8 * intent + 0.3 * fit_c)
    usage = np.where(trial, rng.normal(0, 1, n) + 0.3 * intent, 0.0)
    noise = rng.normal(0, 0.6, n)
    logit = -2.0 + 0.9 * fit_c + 0.8 * intent + 0.8 * np.where(trial, usage, -0.3) + 0.35 * fit_c * intent + noise
    # the outcome draws keep their place in the stream; the committee term needs the creation times drawn next
    converts_draw, lost_draw = rng.random(n), rng.random(n)

    created = spec.start_ts + (rng.random(n) * spec.days * 86_400).astype("int64").astype("timedelta64[s]")
    created = _committee_times(committee_rng, spec, created, anchor)
    engaged_senior = has_account & np.isin(seniority, COMMITTEE_LEVELS) & (intent > COMMITTEE_MIN_INTENT)
    size, buyer = committees(account_idx, created, engaged_senior)
    committee_buys = (
        spec.committee
        & buyer
        & (
            committee_rng.random(n)
            < _sigmoid(COMMITTEE_BASE + COMMITTEE_EFFECT * (np.minimum(size, COMMITTEE_MAX_SIZE) - 2))
        )
    )
    converts = (converts_draw < _sigmoid(logit)) | committee_buys
    gets_lost_opp = ~converts & (lost_draw < _sigmoid(-1.6 + 0.5 * fit_c + 0.6 * intent))
    journey_days = 10 + rng.gamma(2.0, 22.0, n)
    decided = created + (journey_days * 86_400).astype("int64").astype("timedelta64[s]")
    trial_at = created + (journey_days * rng.uniform(0.1, 0.6, n) * 86_400).astype("int64").astype("timedelta64[s]")

    lead_ids = np.array([f"L{i:07d}" for i in range(first, first + n)], dtype=object)
    events = _events_chunk(
        rng, spec, lead_ids, created, decided, trial_at, trial, usage, intent, fit_c, converts, gets_lost_opp
    )
    opportunities = _opportunities_chunk(
        rng,
        spec,
        lead_ids,
        created,
        decided,
        converts,
        gets_lost_opp,
        accounts["employee_count"].to_numpy()[account_idx],
        has_account,
    )
    accepted = opportunities.set_index("lead_id")["created_at"] - pd.to_timedelta(
        rng.uniform(0, 3, len(opportunities)), unit="D"
    )
    # sales accepts a lead some hours before its deal opens, but never before the lead exists
    lead_created = pd.Series(pd.to_datetime(created).tz_localize("UTC"), index=lead_ids).reindex(accepted.index)
    accepted = accepted.where(accepted >= lead_created, lead_created)
    email_domain = np.where(free_email, "gmail.com", "example-corp.com")
    leads = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "created_at": pd.to_datetime(created).tz_localize("UTC"),
            "account_id": np.where(has_account, accounts["account_id"].to_numpy()[account_idx], None),
            "email": [f"{lid.lower()}@{dom}" for lid, dom in zip(lead_ids, email_domain, strict=True)],
            "phone": np.where(rng.random(n) < 0.55, "+1 555 0100", None),
            "job_title": _job_titles(rng, seniority, department),
            "seniority": np.where(rng.random(n) < 0.35, None, seniority),
            "department": np.where(rng.random(n) < 0.15, None, department),
            "country": np.where(rng.random(n) < 0.05, None, country),
            "source": rng.choice(SOURCE, n, p=SOURCE_P),
            "email_domain_type": np.where(free_email, "free", "business"),
            "sales_accepted_at": pd.Series(lead_ids).map(accepted.dt.floor("s")).to_numpy(),
            "bant_budget": np.where(
                rng.random(n) < 0.3, np.where(rng.random(n) < _sigmoid(0.3 + 0.5 * fit_c), "yes", "no"), None
            ),
            "bant_authority": np.where(
                rng.random(n) < 0.3,
                np.where(np.isin(seniority, ["c_level", "vp", "director"]), "decision_maker", "influencer"),
                None,
            ),
            "bant_need": np.where(
                rng.random(n) < 0.3,
                np.where(intent > 0.5, "high", np.where(intent > -0.5, "medium", "low")),
                None,
            ),
            "bant_timeline": np.where(
                rng.random(n) < 0.3,
                np.array(TIMELINE)[np.clip(np.round(1.5 - intent + rng.normal(0, 0.7, n)), 0, 3).astype(int)],
                None,
            ),
        }
    )
    touches, first_touch, rejected_at, reason = _sales_activity(
        rng,
        spec,
        created,
        decided,
        journey_days,
        fit_c,
        intent,
        has_opp=converts | gets_lost_opp,
        accepted=pd.to_datetime(leads["sales_accepted_at"], utc=True).dt.tz_localize(None).to_numpy("datetime64[s]"),
        free_email=free_email,
        seniority=seniority,
    )
    leads["sales_rejected_at"] = _utc(rejected_at)
    leads["rejection_reason"] = reason
    leads["first_sales_touch_at"] = _utc(first_touch)
    deal_rng = np.random.default_rng([spec.seed, 4, chunk])  # its own stream: every other draw is unchanged
    position = pd.Index(lead_ids).get_indexer(opportunities["lead_id"])
    history = deal_history(deal_rng, spec, opportunities, decided[position], converts[position])
    opportunities["probability"] = current_probability(opportunities, history)
    touches = touches.assign(lead_id=lead_ids[touches.pop("lead")])
    events = pd.concat([events, touches[list(events.columns)]], ignore_index=True)
    events = events.sort_values(["lead_id", "occurred_at"], kind="stable").reset_index(drop=True)
    return leads, events, opportunities, history


def deal_history(
    rng: np.random.Generator, spec: SampleSpec, deals: pd.DataFrame, decided: np.ndarray, won: np.ndarray
) -> pd.DataFrame:
    """Each deal's changes (opportunity_id, field, value, changed_at) up to the end date: its stage and stage
    probability (won deals reach every open stage; lost ones stall early), its amount (first entered, then perhaps
    revised to the table's amount) and its expected close date (slipping more often on deals that will be lost)."""
    rows: list[tuple[str, str, str, np.datetime64]] = []
    names = list(DEAL_STAGES)
    for i, deal in enumerate(deals.itertuples(index=False)):
        start = np.datetime64(deal.created_at.tz_convert(None), "s")
        life = max(float((decided[i] - start) / DAY), 0.5)

        def at(share: float, _start=start, _life=life) -> np.datetime64:
            return _start + np.timedelta64(int(share * _life * 86_400), "s")

        reached = len(names) if won[i] else 1 + rng.choice(4, p=LOST_STAGES_REACHED_P)
        for stage, share in zip(names[:reached], [0.0, *np.sort(rng.uniform(0.05, 0.9, reached - 1))], strict=True):
            rows += [(deal.opportunity_id, "stage", stage, at(share))]
            rows += [(deal.opportunity_id, "probability", str(DEAL_STAGES[stage]), at(share))]
        closing, probability = CLOSED_STAGES["won" if won[i] else "lost"]
        rows += [
            (deal.opportunity_id, "stage", closing, decided[i]),
            (deal.opportunity_id, "probability", str(probability), decided[i]),
        ]
        revised = rng.random() < 0.5  # deals that will be lost are more often cut
        first = deal.amount * np.exp(rng.normal(0.0 if won[i] else 0.2, 0.15)) if revised else deal.amount
        rows += [(deal.opportunity_id, "amount", f"{round(first, -2):.0f}", start)]
        if revised:
            rows += [(deal.opportunity_id, "amount", f"{deal.amount:.0f}", at(rng.uniform(0.1, 0.9)))]
        expected = at(rng.uniform(0.6, 1.0) if won[i] else rng.uniform(0.3, 0.8))
        rows += [(deal.opportunity_id, "close_date", str(expected.astype("datetime64[D]")), start)]
        for share in np.sort(rng.uniform(0.1, 0.9, rng.poisson(0.4 if won[i] else 1.2))):
            expected = expected + np.timedelta64(int(rng.uniform(14, 30)), "D")
            rows += [(deal.opportunity_id, "close_date", str(expected.astype("datetime64[D]")), at(share))]
    history = pd.DataFrame(rows, columns=["opportunity_id", "field", "value", "changed_at"])
    history = history[history["changed_at"].to_numpy("datetime64[s]") <= spec.end_ts]
    history["changed_at"] = pd.to_datetime(history["changed_at"]).dt.tz_localize("UTC")
    return history.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True)


def current_probability(deals: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """The CRM's stage probability today (the end date): each deal's latest probability in its history."""
    latest = history[history["field"] == "probability"].groupby("opportunity_id")["value"].last()
    return pd.to_numeric(deals["opportunity_id"].map(latest), errors="coerce").to_numpy(dtype="float64")


def _join_committees(
    rng: np.random.Generator, account_idx: np.ndarray, has_account: np.ndarray, seniority: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Half the senior leads with a company move to another senior lead's company (its `anchor`, -1: none)."""
    senior = has_account & np.isin(seniority, COMMITTEE_LEVELS)
    joins = senior & (rng.random(len(senior)) < COMMITTEE_JOIN)
    anchors = np.flatnonzero(senior & ~joins)
    anchor = np.full(len(senior), -1)
    if len(anchors) and joins.any():
        anchor[joins] = rng.choice(anchors, int(joins.sum()))
    moved = account_idx.copy()
    moved[anchor >= 0] = account_idx[anchor[anchor >= 0]]
    return moved, anchor


def _committee_times(rng: np.random.Generator, spec: SampleSpec, created: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """A lead that joined a committee is created within COMMITTEE_JOIN_DAYS of its anchor, on the side that stays
    inside the data's span (mirrored rather than clipped, so that no creation times pile up at its ends)."""
    offset = (rng.uniform(-COMMITTEE_JOIN_DAYS, COMMITTEE_JOIN_DAYS, len(created)) * 86_400).astype("int64")
    joined = anchor >= 0
    base, step = created[anchor[joined]], offset[joined].astype("timedelta64[s]")
    moved_to = base + step
    outside = (moved_to < spec.start_ts) | (moved_to > spec.end_ts)
    moved_to[outside] = base[outside] - step[outside]
    moved = created.copy()
    moved[joined] = np.clip(moved_to, spec.start_ts, spec.end_ts)  # a span shorter than the offsets: clip
    return moved


def committees(
    account_idx: np.ndarray, created: np.ndarray, engaged_senior: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per lead: its company's engaged senior contacts created within COMMITTEE_WINDOW_DAYS of it (itself
    included), and whether it is a committee's buyer: an engaged senior contact with at least one such colleague
    and none created in the window before it."""
    seconds = created.astype("datetime64[s]").astype("int64")
    span = np.int64(10**10)  # wider than any span of seconds here: (account, time) packs into one sortable number
    packed = np.sort(account_idx[engaged_senior].astype("int64") * span + seconds[engaged_senior])
    window = np.int64(COMMITTEE_WINDOW_DAYS * 86_400)
    key = account_idx.astype("int64") * span + seconds
    size = np.searchsorted(packed, key + window, side="right") - np.searchsorted(packed, key - window, side="left")
    earlier = np.searchsorted(packed, key, side="left") - np.searchsorted(packed, key - window, side="left")
    return size, engaged_senior & (size >= 2) & (earlier == 0)


def _utc(values: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(values).tz_localize("UTC"))


def _seconds(days: np.ndarray) -> np.ndarray:
    return (np.asarray(days) * 86_400).astype("int64").astype("timedelta64[s]")


def _sales_activity(
    rng, spec, created, decided, journey_days, fit_c, intent, *, has_opp, accepted, free_email, seniority
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Sales' follow-up: touch events, the first touch, rejections and their reasons (effects in the module doc)."""
    n = len(created)
    worked = has_opp | (rng.random(n) < _sigmoid(-1.2 + 0.8 * fit_c + 0.6 * intent))
    ready = created + _seconds(journey_days * rng.uniform(0.05, 0.5, n))
    first = ready + _seconds(rng.exponential(8.0 * np.exp(-0.5 * fit_c - 0.3 * intent)) / 24)
    # sales has spoken to a lead by the time it accepts it
    first = np.where(~np.isnat(accepted) & (accepted < first), accepted, first)
    rejects = worked & ~has_opp & (rng.random(n) < _sigmoid(0.3 - 0.9 * fit_c - 0.3 * intent))
    rejected = first + _seconds(rng.uniform(1, 14, n))
    pick = rng.random(n)
    reason = np.select(
        [free_email & (pick < 0.7), (seniority == "individual") & (pick < 0.7), fit_c < -0.5, pick < 0.85],
        ["personal e-mail address", "not a decision maker", "no budget", "no response"],
        default="bad timing",
    )
    stop = np.where(rejects, rejected, decided + _seconds(np.full(n, 7.0)))
    span = np.maximum((stop - first).astype("int64") / 86_400, 0.0)
    rate = np.minimum(0.15 * np.exp(0.6 * fit_c + 0.3 * intent), 1.0)  # touches per day while worked
    later = np.where(worked, np.minimum(rng.poisson(rate * span), 20), 0)
    lead = np.concatenate([np.flatnonzero(worked), np.repeat(np.arange(n), later)])
    when = np.concatenate(
        [first[worked], first[lead[worked.sum() :]] + _seconds(rng.random(later.sum()) * span[lead[worked.sum() :]])]
    )
    kind = np.concatenate(
        [
            np.where(rng.random(worked.sum()) < 0.6, "sales_email", "sales_call"),
            rng.choice(list(SALES_TOUCH_EVENTS), later.sum(), p=[0.35, 0.5, 0.15]),
        ]
    )
    keep = when <= spec.end_ts
    touches = pd.DataFrame(
        {"lead": lead[keep], "occurred_at": _utc(when[keep]), "event_type": kind[keep], "value": np.nan}
    )
    first_touch = np.where(worked & (first <= spec.end_ts), first, np.datetime64("NaT"))
    decided_reject = rejects & (rejected <= spec.end_ts)
    rejected_at = np.where(decided_reject, rejected, np.datetime64("NaT"))
    return touches, first_touch, rejected_at, np.where(decided_reject, reason, None)


def _with_decision_surge(rng, lead, etype, when, created, decided, trial, converts, evaluating):
    """Leads that reach a decision surge in the three weeks before it (recency matters): pricing pages, demo
    requests, clicks and product use; those that buy surge more."""
    surge_counts = rng.poisson(np.where(converts, 12.0, np.where(evaluating, 6.0, 0.0)))
    surge_lead = np.repeat(np.arange(len(created)), surge_counts)
    weights = np.zeros((len(created), len(TYPES)), dtype=np.float32)
    weights[:, T["pricing_page_view"]] = 30
    weights[:, T["demo_request"]] = 8
    weights[:, T["email_click"]] = 15
    weights[:, T["page_view"]] = 30
    weights[:, T["form_submit"]] = 5
    weights[:, T["webinar_attended"]] = 4
    weights[:, T["product_login"]] = 25 * trial
    weights[:, T["feature_used"]] = 15 * trial
    weights[:, T["upgrade_page_view"]] = 6 * trial
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(surge_lead), dtype=np.float32)
    surge_type = np.minimum((u[:, None] > cum[surge_lead]).sum(axis=1), len(TYPES) - 1)
    span = np.minimum((decided - created).astype("int64"), 21 * 86_400)[surge_lead]
    surge_when = decided[surge_lead] - (rng.random(len(surge_lead)) * span).astype("int64").astype("timedelta64[s]")
    return (
        np.concatenate([lead, surge_lead]),
        np.concatenate([etype, surge_type]),
        np.concatenate([when, surge_when]).astype("datetime64[s]"),
    )


def _events_chunk(rng, spec, lead_ids, created, decided, trial_at, trial, usage, intent, fit_c, converts, evaluating):
    n = len(lead_ids)
    rate = np.exp(0.55 * intent + 0.15 * fit_c)
    rate = spec.events_per_lead * rate / np.exp(0.55**2 / 2 + 0.15**2 / 2) * 1.1
    counts = rng.poisson(rate)
    lead = np.repeat(np.arange(n), counts)
    m = len(lead)
    # Marketing-phase weights per lead, then product weights for trial users.
    weights = np.zeros((n, len(TYPES)), dtype=np.float32)
    hi = np.clip(intent, -1.5, 3)
    weights[:, T["page_view"]] = 30
    weights[:, T["email_open"]] = 22
    weights[:, T["email_click"]] = 5 + 1.5 * hi
    weights[:, T["content_download"]] = 4
    weights[:, T["form_submit"]] = 2.5
    weights[:, T["webinar_attended"]] = 1.5 + 0.5 * (fit_c > 0)
    weights[:, T["pricing_page_view"]] = np.clip(3 + 2.5 * hi, 0.3, None)
    weights[:, T["demo_request"]] = np.clip(0.5 + 0.6 * hi, 0.02, None)
    use = np.clip(1 + usage, 0.05, None) * trial
    weights[:, T["product_login"]] = 14 * use
    weights[:, T["feature_used"]] = 10 * use
    weights[:, T["upgrade_page_view"]] = 1.5 * use
    weights[:, T["support_ticket"]] = 0.8 * trial
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(m, dtype=np.float32)
    etype = (u[:, None] > cum[lead]).sum(axis=1)
    etype = np.minimum(etype, len(TYPES) - 1)

    # Active phase, spread over the journey; the rest is light nurture activity after the decision.
    active = rng.random(m) < 0.78
    span = (decided - created).astype("int64")[lead]
    frac = rng.random(m)
    product = np.isin(etype, [T["product_login"], T["feature_used"], T["upgrade_page_view"], T["support_ticket"]])
    start = np.where(product, trial_at[lead], created[lead]).astype("datetime64[s]")
    span = np.where(product, (decided - trial_at).astype("int64")[lead], span)
    offset_active = (frac * span).astype("int64")
    offset_later = (decided - created).astype("int64")[lead] + (rng.random(m) * 180 * 86_400).astype("int64")
    when = np.where(
        active,
        start + offset_active.astype("timedelta64[s]"),
        created[lead] + offset_later.astype("timedelta64[s]"),
    )
    lead, etype, when = _with_decision_surge(rng, lead, etype, when, created, decided, trial, converts, evaluating)
    # Trial sign-up happens once, at the trial start.
    trial_leads = np.flatnonzero(trial)
    lead = np.concatenate([lead, trial_leads])
    etype = np.concatenate([etype, np.full(len(trial_leads), T["trial_signup"])])
    when = np.concatenate([when, trial_at[trial_leads]]).astype("datetime64[s]")
    value = np.full(len(lead), np.nan)
    is_feature = etype == T["feature_used"]
    breadth = np.clip(3 + 4 * usage, 1, 20)[lead[is_feature]]
    value[is_feature] = np.floor(rng.random(is_feature.sum()) * breadth) + 1
    keep = when <= spec.end_ts
    order = np.lexsort((when[keep], lead[keep]))
    return pd.DataFrame(
        {
            "lead_id": lead_ids[lead[keep]][order],
            "occurred_at": pd.to_datetime(when[keep][order]).tz_localize("UTC"),
            "event_type": np.array(TYPES, dtype=object)[etype[keep]][order],
            "value": value[keep][order],
        }
    )


def _opportunities_chunk(rng, spec, lead_ids, created, decided, converts, gets_lost_opp, employees, has_account):
    has_opp = converts | gets_lost_opp
    idx = np.flatnonzero(has_opp)
    lead_days = (decided - created).astype("int64")[idx] / 86_400
    back = np.minimum(rng.uniform(7, 40, len(idx)), np.maximum(lead_days - 1, 0.5))
    opp_created = decided[idx] - (back * 86_400).astype("int64").astype("timedelta64[s]")
    closed = decided[idx]
    exists = opp_created <= spec.end_ts
    idx, opp_created, closed = idx[exists], opp_created[exists], closed[exists]
    is_closed = closed <= spec.end_ts
    status = np.where(is_closed, np.where(converts[idx], "won", "lost"), "open")
    size = np.where(has_account[idx], employees[idx], 5)
    amount = np.round(2_000 + 40 * np.sqrt(size) * rng.lognormal(0, 0.4, len(idx)) * 100, -2)
    closed_at = pd.Series(pd.to_datetime(closed).tz_localize("UTC"))
    closed_at[~is_closed] = pd.NaT
    return pd.DataFrame(
        {
            "opportunity_id": [f"O{lid[1:]}" for lid in lead_ids[idx]],
            "lead_id": lead_ids[idx],
            "created_at": pd.to_datetime(opp_created).tz_localize("UTC"),
            "closed_at": closed_at.to_numpy(),
            "status": status,
            "amount": amount,
        }
    )


class _Sink:
    """Appends chunks to one Parquet or CSV file under a temporary name, renamed into place at the end."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(
                self.tmp,
                mode="a" if self.rows else "w",
                header=not self.rows,
                index=False,
                date_format="%Y-%m-%dT%H:%M:%SZ",
                lineterminator="\n",
            )
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.replace(self.path)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """One dtype per column across chunks, so that chunks append to one Parquet schema."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column].dtype):
            out[column] = out[column].astype("string")
        elif pd.api.types.is_datetime64_any_dtype(out[column].dtype):
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[ms, UTC]")
    return out


def generate(out_dir: Path, spec: SampleSpec, *, fmt: str = "parquet", progress=None) -> dict[str, int]:
    """Write accounts, leads, events, opportunities and their history for `spec` into `out_dir`; return row
    counts."""
    if fmt not in {"parquet", "csv"}:
        raise ValueError(f"unknown format {fmt!r}: use 'parquet' or 'csv'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accounts = make_accounts(spec)
    account_fit = _account_fit(accounts)
    tables = ("accounts", "leads", "events", "opportunities", "opportunity_history")
    sinks = {name: _Sink(out_dir / f"{name}.{fmt}", fmt) for name in tables}
    try:
        sinks["accounts"].write(_normalise(accounts))
        for chunk, first in enumerate(range(0, spec.n_leads, CHUNK_LEADS)):
            n = min(CHUNK_LEADS, spec.n_leads - first)
            leads, events, opps, history = _leads_chunk(spec, chunk, first, n, accounts, account_fit)
            sinks["leads"].write(_normalise(leads))
            sinks["events"].write(_normalise(events))
            sinks["opportunities"].write(_normalise(opps))
            sinks["opportunity_history"].write(_normalise(history))
            if progress is not None:
                progress(n)
        for sink in sinks.values():
            sink.close()
    finally:
        for sink in sinks.values():
            if sink.tmp.exists():
                sink.tmp.unlink()
    return {name: sink.rows for name, sink in sinks.items()}


def write_sample(out: Path, spec: SampleSpec, *, fmt: str = "parquet") -> dict[str, int]:
    """`leadscore sample-data`: the sample CRM written to the folder `out`, with a progress bar; rows per table."""
    from tqdm import tqdm

    from leadscore.pipelines.errors import UsageError
    from leadscore.pipelines.outputs.targets import check_target

    if fmt not in {"parquet", "csv"}:
        raise UsageError(f"--format: use parquet or csv, not {fmt!r}")
    check_target(out, "--out", (), folder=True)
    with tqdm(total=spec.n_leads, unit="lead", desc="sample-data", disable=None) as bar:
        return generate(out, spec, fmt=fmt, progress=bar.update)
