"""Account-level spine settings that fit the book: each one the config leaves unset is derived from the data.

Real books have few accounts, long sales cycles, and most accounts convert (or most do not). The lead spine's
defaults (a 90-day horizon, 6 snapshots, 40 rows of each class) then leave the account training set with one class,
or too few rows of one. So, for each setting of `[accounts]` that is not given:
- **horizon**: the 80th percentile of the days from an account's first lead to its first won deal (the time most
  buying accounts take to buy), rounded up to a whole day; when that horizon's rows would not train, half of it,
  then half again, down to a week;
- **snapshots**: a cutoff every horizon / 3 days (the lead defaults' ratio, 30 of 90), at most enough per account for
  about 2,000 rows in all, never fewer than the lead spine's 6;
- **minimums**: a quarter of the accounts, at least 10, at most the lead model's `model.min_positives` /
  `min_negatives` (a book of 85 accounts cannot show 40 accounts of each class without repeating them).
A candidate is taken only when its account spine passes what training will check: enough converted and
not-converted rows before the holdout, and at least 5 rows of each class in the time-ordered holdout and in the
model's training fold, each after a gap of one horizon. Given settings are used as given, and checked the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from leadscore.features.account_spine import KEY, account_leads, account_of_deals, build_account_spine
from leadscore.features.spine import CutoffPolicy, SpineStats
from leadscore.models.conversion import TooLittleDataError, time_ordered_split

HORIZON_PERCENTILE = 80
SHORTEST_HORIZON_DAYS = 7.0  # below a week, a "win within the horizon" is the next deal's paperwork, not a purchase
SNAPSHOTS_PER_HORIZON = 3  # the lead defaults: every 30 days for a 90-day horizon
TARGET_ROWS = 2_000  # enough for LightGBM's 40-row leaves to split a few levels deep; small enough to train in seconds
MIN_PER_FOLD = 5  # fewer rows of a class in a fold make its ROC AUC a coin toss
MIN_FLOOR = 10


class AccountSettingsError(TooLittleDataError):
    """No account spine setting (given or derived) leaves rows the account model can train and be tested on."""


@dataclass(frozen=True)
class AccountGiven:
    """The `[accounts]` settings as the user wrote them (None: derive it from the book)."""

    horizon_days: float | None = None
    every_days: float | None = None
    max_snapshots: int | None = None
    min_positives: int | None = None
    min_negatives: int | None = None


@dataclass(frozen=True)
class Folds:
    """The training's time-ordered fractions and the lead model's minimums (the derived minimums' ceiling)."""

    holdout_fraction: float = 0.2
    validation_fraction: float = 0.2
    min_positives: int = 40
    min_negatives: int = 40


@dataclass(frozen=True)
class AccountChoice:
    """The account spine settings in force, how each was set ("given" or "derived: ..."), and the spine they built."""

    policy: CutoffPolicy
    min_positives: int
    min_negatives: int
    how: dict[str, str]
    spine: pd.DataFrame = field(repr=False)
    stats: SpineStats

    def summary(self) -> str:
        p, how = self.policy, self.how
        return (
            f"account horizon {p.horizon_days:g} days ({how['horizon_days']}), snapshots every {p.every_days:g} "
            f"days ({how['every_days']}), at most {p.max_snapshots} per account ({how['max_snapshots']}), "
            f"minimums {self.min_positives} converted and {self.min_negatives} not-converted rows "
            f"({how['min_positives']})"
        )


def first_win_days(leads: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    """Days from each account's first lead to its first won deal, for the accounts that have won one."""
    first_lead = account_leads(leads).groupby(KEY, observed=True)["created_at"].min()
    deals = opportunities.assign(**{KEY: account_of_deals(leads, opportunities)})
    won = deals[(deals["status"] == "won") & deals[KEY].notna()]
    first_won = won.groupby(KEY, observed=True)["closed_at"].min()
    days = (first_won - first_lead.reindex(first_won.index)).dt.total_seconds() / 86_400
    return days[days >= 0].sort_index()


def horizon_ladder(days: pd.Series) -> list[float]:
    """The horizons to try, longest first: the percentile of `days`, then halved while at least a week."""
    if days.empty:
        return []
    horizon = max(SHORTEST_HORIZON_DAYS, float(math.ceil(np.percentile(days, HORIZON_PERCENTILE))))
    ladder = [horizon]
    while ladder[-1] / 2 >= SHORTEST_HORIZON_DAYS:
        ladder.append(float(math.ceil(ladder[-1] / 2)))
    return ladder


def derived_snapshots(horizon_days: float, accounts: int) -> tuple[float, int]:
    """(every_days, max_snapshots) for a horizon and a number of accounts."""
    every = float(max(1, round(horizon_days / SNAPSHOTS_PER_HORIZON)))
    per_account = math.ceil(TARGET_ROWS / max(accounts, 1))
    return every, max(CutoffPolicy.max_snapshots, per_account)


def derived_minimum(accounts: int, ceiling: int) -> int:
    return min(ceiling, max(MIN_FLOOR, accounts // 4))


def _counts(y: np.ndarray) -> tuple[int, int]:
    return int(y.sum()), int(len(y) - y.sum())


def shortfall(spine: pd.DataFrame, *, horizon_days: float, folds: Folds) -> tuple[str, str] | None:
    """Why these labelled rows would not train, and the setting that governs it; None when they would."""
    y, times = spine["converted"].to_numpy(), spine["cutoff_time"]
    try:
        dev, holdout = time_ordered_split(
            len(spine), fraction=folds.holdout_fraction, sample_time=times, gap_days=horizon_days
        )
        train, _ = time_ordered_split(
            len(dev), fraction=folds.validation_fraction, sample_time=times.iloc[dev], gap_days=horizon_days
        )
    except TooLittleDataError as exc:
        return f"{len(spine)} labelled rows: {exc}", "horizon_days"
    positives, negatives = _counts(y[dev])
    if positives < folds.min_positives or negatives < folds.min_negatives:
        need = f"need {folds.min_positives} and {folds.min_negatives}"
        return f"{positives} converted and {negatives} not-converted rows before the holdout ({need})", "minimums"
    for name, rows in (("holdout", y[holdout]), ("training fold", y[dev][train])):
        positives, negatives = _counts(rows)
        if min(positives, negatives) < MIN_PER_FOLD:
            return (
                f"the {name} holds {positives} converted and {negatives} not-converted rows "
                f"(need {MIN_PER_FOLD} of each)",
                "horizon_days",
            )
    return None


def _candidates(given: AccountGiven, days: pd.Series) -> list[tuple[float, str]]:
    """(horizon, how it was set) to try in order."""
    if given.horizon_days is not None:
        return [(float(given.horizon_days), "given")]
    ladder = horizon_ladder(days)
    how = f"derived: {HORIZON_PERCENTILE}th percentile of first-lead-to-win time"
    return [(h, how if i == 0 else f"{how} ({ladder[0]:g} days), halved {i}x") for i, h in enumerate(ladder)]


def _policy_for(horizon: float, given: AccountGiven, base: CutoffPolicy, accounts: int) -> tuple[CutoffPolicy, dict]:
    every, most = derived_snapshots(horizon, accounts)
    policy = replace(
        base,
        horizon_days=horizon,
        every_days=given.every_days or every,
        max_snapshots=given.max_snapshots or most,
    )
    how = {
        "every_days": "given" if given.every_days else f"derived: horizon / {SNAPSHOTS_PER_HORIZON}",
        "max_snapshots": "given"
        if given.max_snapshots
        else f"derived: about {TARGET_ROWS:,} rows over {accounts:,} accounts",
    }
    return policy, how


def choose_account_spine(
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    base: CutoffPolicy,
    given: AccountGiven,
    folds: Folds,
) -> AccountChoice:
    """The account spine settings in force (given ones as given, the others derived) and the spine they build.
    Raises AccountSettingsError, with every horizon tried and its counts, when none leaves trainable rows."""
    accounts = int(account_leads(leads)[KEY].nunique())
    minimums = (
        given.min_positives or derived_minimum(accounts, folds.min_positives),
        given.min_negatives or derived_minimum(accounts, folds.min_negatives),
    )
    checked = replace(folds, min_positives=minimums[0], min_negatives=minimums[1])
    given_minimums = given.min_positives is not None or given.min_negatives is not None
    min_how = "given" if given_minimums else f"derived: a quarter of {accounts:,} accounts, at least {MIN_FLOOR}"
    tried = []
    for horizon, horizon_how in _candidates(given, first_win_days(leads, opportunities)):
        policy, how = _policy_for(horizon, given, base, accounts)
        spine, stats = build_account_spine(leads, opportunities, policy, as_of=as_of)
        reason = shortfall(spine, horizon_days=horizon, folds=checked)
        if reason is None:
            if tried:  # say why the longer horizons were passed over
                horizon_how += f"; {tried[-1][0]:g} days: {tried[-1][2]}"
            how = {**how, "horizon_days": horizon_how, "min_positives": min_how, "min_negatives": min_how}
            return AccountChoice(policy, *minimums, how, spine, stats)
        tried.append((horizon, horizon_how, *reason))
    raise AccountSettingsError(_nothing_works(tried, accounts=accounts, leads=leads, as_of=as_of))


def _nothing_works(tried: list[tuple], *, accounts: int, leads: pd.DataFrame, as_of: pd.Timestamp) -> str:
    """The one error: every horizon tried with its counts, and the setting to change."""
    members = account_leads(leads)
    span = (as_of - members["created_at"].min()).days if len(members) else 0
    head = f"no account spine setting leaves rows to train and test on ({accounts:,} accounts, {span:,} days of data)"
    if not tried:
        return f"{head}: no account has won a deal, so there is nothing to learn yet; add history"
    lines = [f"  horizon {h:g} days ({how}): {reason}" for h, how, reason, _ in tried]
    setting = tried[-1][3]
    advice = (
        "lower accounts.min_positives / accounts.min_negatives or add history"
        if setting == "minimums"
        else "set accounts.horizon_days to a horizon within which some accounts buy and some do not, or add history"
    )
    return "\n".join([f"{head}:", *lines, f"Change: {advice}."])


__all__ = [
    "AccountChoice",
    "AccountGiven",
    "AccountSettingsError",
    "Folds",
    "choose_account_spine",
    "derived_minimum",
    "derived_snapshots",
    "first_win_days",
    "horizon_ladder",
    "shortfall",
]
