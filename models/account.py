"""Account-level scoring helpers: the independent roll-up of lead probabilities, and the account's grade from the
same rule engine as the leads (models/grades.py) applied to its contacts.

- **Roll-up.** P(account converts) = 1 - prod(1 - p_lead) over its open leads: what the lead model implies if its
  leads converted independently. A buying committee breaks that independence; the account model is compared
  with this roll-up on the same holdout.
- **Account grade.** Fit: the best fit points among the account's contacts (the firmographic categories are the
  account's own; seniority, e-mail and country are those of its best-fitting contact). Engagement: each
  engagement category's decayed event counts summed over the contacts, then the lead rules' points (capped per
  category) and cut-offs, so three engaged people at one company read as one engaged account.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.accounts import AccountContext
from leadscore.models.grade_rules import ENGAGEMENT_GRADES, FIT_GRADES, GradeRules
from leadscore.models.grades import engagement_counts, engagement_points, fit_points, grade_from_points


def rollup_probability(probability: np.ndarray, row: np.ndarray, n: int) -> np.ndarray:
    """1 - prod(1 - p) of the probabilities belonging to each of `n` rows (0 for a row with none)."""
    p = np.clip(np.asarray(probability, dtype="float64"), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_none = np.bincount(np.asarray(row, dtype="int64"), weights=np.log1p(-p), minlength=n)
    return 1.0 - np.exp(log_none)


def grade_accounts(context: AccountContext, rules: GradeRules) -> pd.DataFrame:
    """Fit points and grade, engagement points and grade, and the cell (A1..D4) of each account row."""
    fit_inputs = context.lead_features(list(dict.fromkeys(c.feature for c in rules.fit.categories.values())))
    lead_fit = fit_points(fit_inputs, rules.fit).to_numpy()
    best_fit = np.full(context.n, -np.inf)
    np.maximum.at(best_fit, context.row, lead_fit)
    best_fit = np.where(np.isinf(best_fit), 0.0, best_fit)
    counts = engagement_counts(context.lead_context, rules.engagement)
    summed = pd.DataFrame(
        {c: np.bincount(context.row, weights=counts[c].to_numpy(), minlength=context.n) for c in counts.columns}
    )
    fit = pd.Series(best_fit, name="fit_points")
    engagement = engagement_points(summed, rules.engagement)
    fit_grade = grade_from_points(fit, rules.fit.cutoffs, FIT_GRADES)
    engagement_grade = grade_from_points(engagement, rules.engagement.cutoffs, ENGAGEMENT_GRADES)
    return pd.DataFrame(
        {
            "fit_points": fit.round(1),
            "fit_grade": fit_grade,
            "engagement_points": engagement.round(1),
            "engagement_grade": engagement_grade,
            "cell": fit_grade + engagement_grade,
        }
    )


def leads_by_score(lead_ids: pd.Series, accounts: pd.Series, scores: pd.Series | None) -> pd.Series:
    """Per account: its open leads as "lead_id (score)", best first (ties by lead id); only the ids when no lead
    score is known."""
    frame = pd.DataFrame({"lead_id": lead_ids.astype("string").to_numpy(), "account_id": accounts.to_numpy()})
    if scores is None:
        frame = frame.sort_values(["account_id", "lead_id"], kind="stable")
        text = frame["lead_id"]
    else:
        frame["score"] = scores.to_numpy()
        frame = frame.sort_values(["account_id", "score", "lead_id"], ascending=[True, False, True], kind="stable")
        text = frame["lead_id"] + " (" + frame["score"].map(lambda s: "?" if pd.isna(s) else f"{s:.0f}") + ")"
    return text.groupby(frame["account_id"].to_numpy(), sort=False).agg("; ".join)


__all__ = ["grade_accounts", "leads_by_score", "rollup_probability"]
