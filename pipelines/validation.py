"""Load the canonical CRM tables and check them against the data contract.

Every problem names its table, column, row and value. Rows with an error are taken out of the clean tables
and kept, with their reasons, in `rejects`; nothing is dropped silently. Row numbers count data rows from 1
as they stand in the source (the header line is not a row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.schemas import ID_COLUMNS, NUMERIC_COLUMNS, STATUSES, TABLE_ROLES, TIME_COLUMNS
from pipelines.config import Settings, TableSource
from pipelines.io import read_source

log = logging.getLogger(__name__)

ROW = "source_row"
DEFAULT_STATUS_VALUES = {status: [status] for status in STATUSES}


@dataclass(frozen=True)
class Problem:
    table: str
    column: str | None
    row: int | None
    value: object
    rule: str
    message: str
    severity: str = "error"


@dataclass
class CrmData:
    """Clean canonical tables (UTC timestamps), the problems found and the rejected rows."""

    tables: dict[str, pd.DataFrame]
    as_of: pd.Timestamp
    problems: list[Problem] = field(default_factory=list)
    rejects: dict[str, pd.DataFrame] = field(default_factory=dict)
    after_as_of: dict[str, int] = field(default_factory=dict)  # rows not yet known at as_of, out of the view

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


class _Checker:
    """Collects problems and row rejections for one table."""

    def __init__(self, table: str, frame: pd.DataFrame) -> None:
        self.table = table
        self.frame = frame
        self.problems: list[Problem] = []
        self.reasons: dict[int, str] = {}  # row position -> reasons; only rejected rows, to stay small

    def table_error(self, rule: str, message: str, column: str | None = None) -> None:
        self.problems.append(Problem(self.table, column, None, None, rule, f"{self.table}: {message}"))

    def flag(
        self,
        mask: pd.Series,
        column: str,
        rule: str,
        what: str,
        *,
        severity: str = "error",
        reject: bool = True,
    ) -> None:
        """Record one problem per row where `mask` holds; `what` may use {value}."""
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        rows = self.frame.loc[mask, ROW].to_numpy()
        values = self.frame.loc[mask, column].to_numpy() if column in self.frame else [None] * len(rows)
        for row, value in zip(rows, values, strict=True):
            shown = _show(value)
            self.problems.append(
                Problem(
                    self.table,
                    column,
                    int(row),
                    shown,
                    rule,
                    f"{self.table}.{column} row {row}: {what.format(value=shown)}",
                    severity,
                )
            )
        if reject:
            reason = f"{column}: {rule}"
            for position in np.flatnonzero(mask.to_numpy()):
                self.reasons[position] = f"{self.reasons[position]}; {reason}" if position in self.reasons else reason

    def leave_view(self, mask: np.ndarray) -> int:
        """Take rows out of the table (not rejected: they do not exist at this point in time); keep the reasons
        of the other rows at their new positions."""
        if not mask.any():
            return 0
        keep = np.flatnonzero(~mask)
        new_position = {old: new for new, old in enumerate(keep)}
        self.reasons = {new_position[p]: r for p, r in self.reasons.items() if p in new_position}
        self.frame = self.frame.iloc[keep].reset_index(drop=True)
        return int(mask.sum())

    def rejected(self) -> np.ndarray:
        bad = np.zeros(len(self.frame), dtype=bool)
        bad[list(self.reasons)] = True
        return bad

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not self.reasons:  # the common case: no copy of a large clean table
            return self.frame.reset_index(drop=True), self.frame.iloc[:0].assign(reject_reason=pd.Series(dtype=object))
        bad = self.rejected()
        positions = np.flatnonzero(bad)
        rejected = self.frame.iloc[positions].assign(reject_reason=[self.reasons[p] for p in positions])
        return self.frame.loc[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def _show(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _map_columns(raw: pd.DataFrame, source: TableSource, table: str, check: _Checker) -> pd.DataFrame | None:
    """Rename the user's columns to contract roles; report absent mapped or required columns."""
    roles = TABLE_ROLES[table]
    renamed: dict[str, str] = {}
    ok = True
    for role, required in roles.items():
        column = source.columns.get(role, role)
        if column in raw.columns:
            renamed[column] = role
        elif role in source.columns:
            check.table_error("mapped column absent", f"column '{column}' mapped to role '{role}' is absent", role)
            ok = False
        elif required:
            check.table_error("required column absent", f"required column '{role}' is absent", role)
            ok = False
    if not ok:
        return None
    frame = raw[list(renamed)].rename(columns=renamed)
    frame.insert(0, ROW, np.arange(1, len(frame) + 1, dtype="int32" if len(frame) < 2**31 - 1 else "int64"))
    return frame


def parse_timestamps(values: pd.Series, *, timezone: str = "UTC") -> pd.Series:
    """Timestamps as tz-aware UTC; values without a zone are read in `timezone`; unparseable become NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        naive = values
        zoned = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    else:
        text = values.astype("string").str.strip()
        has_zone = text.str.contains(_ZONE_SUFFIX, regex=True).fillna(False).astype(bool)
        zoned = pd.to_datetime(text.where(has_zone), errors="coerce", format="mixed", utc=True)
        naive = pd.to_datetime(text.where(~has_zone), errors="coerce", format="mixed")
    localized = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    return zoned.astype("datetime64[ns, UTC]").fillna(localized.astype("datetime64[ns, UTC]"))


# An explicit zone at the end of an ISO timestamp: Z, +02:00, -0500.
_ZONE_SUFFIX = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _stripped_codes(values: pd.Series) -> pd.Series:
    """Text with few distinct values among many rows (an event's lead and type) as a categorical, stripped once
    per distinct value: a fraction of the memory of 50M strings."""
    categorical = values.astype("category")
    text = categorical.cat.categories.astype("string")
    stripped = text.str.strip()
    if stripped.equals(text) and text.is_monotonic_increasing:  # already clean and sorted: no per-row work
        return categorical.cat.rename_categories(text)
    levels, inverse = np.unique(stripped.to_numpy(dtype=object), return_inverse=True)
    # new code per old code, with -1 (missing) taking the appended last entry: one int32 array per row, no more
    lookup = np.append(inverse, -1).astype("int32")
    new_codes = lookup[categorical.cat.codes.to_numpy()]
    return pd.Series(pd.Categorical.from_codes(new_codes, categories=pd.Index(levels, dtype="string")),
                     index=values.index)  # fmt: skip


def _isin(values: pd.Series, allowed: pd.Index) -> pd.Series:
    """`values.isin(allowed)`; for a categorical, decided once per category and looked up by code."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values.isin(allowed)
    per_category = np.append(values.cat.categories.isin(allowed), False)  # code -1 (missing) -> the last entry
    return pd.Series(per_category[values.cat.codes.to_numpy()], index=values.index)


def _check_table(
    raw: pd.DataFrame, source: TableSource, table: str, *, timezone: str
) -> tuple[pd.DataFrame | None, _Checker]:
    check = _Checker(table, raw)
    if raw.empty:
        check.table_error("empty table", "the table has no rows")
        return None, check
    frame = _map_columns(raw, source, table, check)
    if frame is None:
        return None, check
    check.frame = frame
    check.reasons = {}

    for role, required in TABLE_ROLES[table].items():
        if required and role in frame:
            check.flag(frame[role].isna(), role, "missing value", "missing value")
    for role in TIME_COLUMNS[table]:
        if role in frame:
            original = frame[role]
            parsed = parse_timestamps(original, timezone=timezone)
            check.flag(
                original.notna() & parsed.isna(),
                role,
                "unparseable timestamp",
                "unparseable timestamp {value!r}",
            )
            frame[role] = parsed
    for role in NUMERIC_COLUMNS.get(table, ()):
        if role in frame:
            original = frame[role]
            if pd.api.types.is_float_dtype(original.dtype):  # already numbers (Parquet, SQL): nothing to parse
                continue
            number = pd.to_numeric(original, errors="coerce")
            check.flag(original.notna() & number.isna(), role, "not a number", "not a number {value!r}")
            frame[role] = number.astype("float64")
    for role in ("lead_id", "account_id", "opportunity_id", "event_type", "status"):
        if role in frame:
            frame[role] = (
                _stripped_codes(frame[role]) if table == "events" else frame[role].astype("string").str.strip()
            )
    id_column = ID_COLUMNS.get(table)
    if id_column in frame:
        duplicated = frame[id_column].notna() & frame[id_column].duplicated(keep=False)
        check.flag(duplicated, id_column, "duplicate id", "duplicate id {value!r}")
    if table == "opportunities":
        _check_opportunities(frame, source, check)
    if table == "leads" and "sales_accepted_at" in frame:
        check.flag(
            frame["sales_accepted_at"] < frame["created_at"],
            "sales_accepted_at",
            "accepted before created",
            "accepted by sales at {value} before the lead was created",
            severity="warning",
            reject=False,
        )
    return frame, check


def _check_opportunities(frame: pd.DataFrame, source: TableSource, check: _Checker) -> None:
    lookup = {
        str(value).strip().lower(): status
        for status, values in (source.status_values or DEFAULT_STATUS_VALUES).items()
        for value in values
    }
    status = frame["status"].str.lower().map(lookup)
    check.flag(
        frame["status"].notna() & status.isna(),
        "status",
        "unknown status",
        f"unknown status {{value!r}} (expected one of {sorted(lookup)})",
    )
    frame["status"] = status.astype("string")
    if "closed_at" not in frame:
        frame["closed_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    closed = frame["status"].isin(["won", "lost"])
    check.flag(
        closed & frame["closed_at"].isna(),
        "closed_at",
        "closed without closed_at",
        "won/lost but no closed_at",
    )
    check.flag(
        frame["closed_at"] < frame["created_at"],
        "closed_at",
        "closed before created",
        "closed at {value} before it was created",
    )


def _check_references(
    frame: pd.DataFrame,
    check: _Checker,
    column: str,
    valid: pd.Index,
    seen: pd.Index,
    parent: str,
    *,
    severity: str = "error",
) -> None:
    present = frame[column].notna()
    known = _isin(frame[column], seen)
    unknown = present & ~known
    rejected_parent = present & known & ~_isin(frame[column], valid)
    reject = severity == "error"
    check.flag(
        unknown,
        column,
        f"unknown {parent[:-1]}",
        f"unknown {parent[:-1]} {{value!r}} (not in {parent})",
        severity=severity,
        reject=reject,
    )
    check.flag(
        rejected_parent,
        column,
        f"{parent[:-1]} rejected",
        f"{parent[:-1]} {{value!r}} was rejected (see {parent} problems)",
        severity=severity,
        reject=reject,
    )


def _check_as_of(table: str, check: _Checker, as_of: pd.Timestamp) -> int:
    """The as-of view: what was known at `as_of`. Rows created after it leave the table (they do not exist yet:
    neither an error nor a reject); a deal closed after it is still open then; a sales acceptance after it has not
    happened yet. Returns how many rows left."""
    frame = check.frame
    if table == "opportunities":
        later = (frame["closed_at"] > as_of).to_numpy()
        frame.loc[later, "status"] = "open"
        frame.loc[later, "closed_at"] = pd.NaT
    if table == "leads" and "sales_accepted_at" in frame:
        frame.loc[(frame["sales_accepted_at"] > as_of).to_numpy(), "sales_accepted_at"] = pd.NaT
    time_column = {"leads": "created_at", "events": "occurred_at", "opportunities": "created_at"}.get(table)
    if time_column is None:
        return 0
    return check.leave_view((frame[time_column] > as_of).fillna(False).to_numpy(dtype=bool))


def _as_of_view(frames: dict[str, pd.DataFrame], checkers: dict[str, _Checker], as_of: pd.Timestamp) -> dict:
    """Apply the as-of view to every table; events and deals of leads that left the view leave with them."""
    before = pd.Index(frames["leads"]["lead_id"].dropna().unique()) if "leads" in frames else None
    left = {name: _check_as_of(name, checkers[name], as_of) for name in frames}
    frames.update({name: checkers[name].frame for name in frames})
    if before is not None:
        gone = before.difference(pd.Index(frames["leads"]["lead_id"].dropna().unique()))
        for child in ("events", "opportunities"):
            if child in frames and len(gone):
                left[child] += checkers[child].leave_view(_isin(frames[child]["lead_id"], gone).to_numpy(dtype=bool))
                frames[child] = checkers[child].frame
    left = {name: count for name, count in left.items() if count}
    if left:
        log.info("as of %s: rows created after it left the view (%s)", as_of.isoformat(),
                 ", ".join(f"{name} {count:,}" for name, count in left.items()))  # fmt: skip
    return left


def _latest_timestamp(frames: dict[str, pd.DataFrame]) -> pd.Timestamp:
    latest = [
        frame[column].max()
        for table, frame in frames.items()
        for column in TIME_COLUMNS[table]
        if column in frame and frame[column].notna().any()
    ]
    return max(latest) if latest else pd.Timestamp.now(tz="UTC").floor("s")


def load_crm(settings: Settings, *, as_of: pd.Timestamp | None = None) -> CrmData:
    """Read, normalise and validate every configured table of a CRM-mode project."""
    assert settings.tables is not None
    sources = {name: getattr(settings.tables, name) for name in TABLE_ROLES if getattr(settings.tables, name)}
    raw = {
        name: read_source(source, name=name, base_dir=settings.base_dir, dictionary_columns=_repeated(source, name))
        for name, source in sources.items()
    }
    return validate_frames(raw, settings, as_of=as_of)


def _repeated(source: TableSource, table: str) -> tuple[str, ...]:
    """Source columns whose few distinct values repeat over many rows: an event's lead and type."""
    roles = ("lead_id", "event_type") if table == "events" else ()
    return tuple(source.columns.get(role, role) for role in roles)


def validate_frames(raw: dict[str, pd.DataFrame], settings: Settings, *, as_of: pd.Timestamp | None = None) -> CrmData:
    """Normalise and validate tables already read (from files, SQL, or one partition of a distributed engine)."""
    assert settings.tables is not None
    frames: dict[str, pd.DataFrame] = {}
    checkers: dict[str, _Checker] = {}
    for name, table in raw.items():
        frame, checker = _check_table(table, getattr(settings.tables, name), name, timezone=settings.timezone)
        checkers[name] = checker
        if frame is not None:
            frames[name] = frame

    as_of = as_of if as_of is not None else _as_utc(settings.as_of)
    explicit_as_of = as_of is not None
    as_of = as_of if explicit_as_of else _latest_timestamp(frames)
    after_as_of = _as_of_view(frames, checkers, as_of)

    if "leads" in frames:
        leads = frames["leads"]
        seen = pd.Index(leads["lead_id"].dropna().unique())
        valid = pd.Index(leads.loc[~checkers["leads"].rejected(), "lead_id"])
        for child in ("events", "opportunities"):
            if child in frames:
                _check_references(frames[child], checkers[child], "lead_id", valid, seen, "leads")
        if "accounts" in frames and "account_id" in leads:
            accounts = frames["accounts"]
            account_ids = pd.Index(accounts["account_id"].dropna().unique())
            valid_accounts = pd.Index(accounts.loc[~checkers["accounts"].rejected(), "account_id"])
            _check_references(
                leads, checkers["leads"], "account_id", valid_accounts, account_ids, "accounts", severity="warning"
            )

    data = CrmData(tables={}, as_of=as_of, after_as_of=after_as_of)
    for name, checker in checkers.items():
        data.problems.extend(checker.problems)
        if name in frames:
            clean, rejected = checker.split()
            data.tables[name] = clean.drop(columns=ROW)
            if len(rejected):
                data.rejects[name] = rejected
    return data


def _as_utc(value: object) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def summarise(data: CrmData) -> dict[str, object]:
    """Rows, date ranges, open vs closed leads and the conversion rate among closed ones."""
    summary: dict[str, object] = {"as_of": data.as_of.isoformat(), "tables": {}}
    for name, frame in data.tables.items():
        info: dict[str, object] = {"rows": len(frame), "rejected": len(data.rejects.get(name, []))}
        for column in TIME_COLUMNS[name]:
            if column in frame and frame[column].notna().any():
                info[f"{column}_range"] = [frame[column].min().isoformat(), frame[column].max().isoformat()]
        summary["tables"][name] = info
    if "leads" in data.tables and "opportunities" in data.tables:
        summary.update(lead_outcomes(data.tables["leads"], data.tables["opportunities"]))
    return summary


def lead_outcomes(leads: pd.DataFrame, opportunities: pd.DataFrame) -> dict[str, object]:
    """A lead is closed once one of its opportunities closed won or lost, and converted if one was won."""
    status = opportunities["status"]
    won = leads["lead_id"].isin(opportunities.loc[status == "won", "lead_id"])
    closed = won | leads["lead_id"].isin(opportunities.loc[status == "lost", "lead_id"])
    n_closed, n_won = int(closed.sum()), int(won.sum())
    return {
        "leads_open": len(leads) - n_closed,
        "leads_closed": n_closed,
        "leads_won": n_won,
        "conversion_rate_closed": round(n_won / n_closed, 4) if n_closed else None,
    }
