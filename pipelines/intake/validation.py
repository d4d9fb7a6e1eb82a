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

from leadscore.features.keys import is_in
from leadscore.features.schemas import (
    ID_COLUMNS,
    KNOWN_AT_SUFFIX,
    NUMBER_MISSING,
    NUMERIC_COLUMNS,
    SALES_TOUCH_EVENTS,
    STATUSES,
    TABLE_ROLES,
    TIME_COLUMNS,
)
from leadscore.pipelines.config import Settings, TableSource
from leadscore.pipelines.intake.parsing import (
    category_key,
    normalise_id_text,
    normalise_ids,
    parse_time_column,
    recode_categories,
)
from leadscore.pipelines.intake.partitions import LeadRouter
from leadscore.pipelines.intake.sources import SET_ASIDE_COLUMN
from leadscore.pipelines.memory import release_unused_memory

log = logging.getLogger(__name__)

ROW = "source_row"
# A row out of the tool's scope (a deal no lead converted into, an activity of a contact, a row the user's
# `tables.<name>.where` leaves out) is set aside: written to the rejects with its reason, but not a broken row, so
# it does not count against `validation.max_rejected_share`.
SET_ASIDE = "set aside"
DEFAULT_STATUS_VALUES = {status: [status] for status in STATUSES}
NON_NEGATIVE = ("employee_count", "annual_revenue", "amount")


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
    set_aside: dict[str, int] = field(default_factory=dict)  # of the rejects: rows out of scope, not broken
    data_end: pd.Timestamp | None = None  # the latest timestamp in the tables, when the as-of was given
    events: object | None = None  # the clean events held in partition files (`intake.streamed.EventParts`)

    def rows(self, table: str) -> int:
        """The clean rows of `table`, wherever they are held."""
        if table == "events" and self.events is not None:
            return self.events.rows
        return len(self.tables[table])

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def broken_rows(self, table: str) -> int:
        """Rejected rows of `table` that are broken: rejected by an error (not set aside as out of scope, nor kept
        from use by a warning, such as an event dated before its lead)."""
        rejects = self.rejects.get(table)
        return 0 if rejects is None else int((rejects["reject_kind"] == "error").sum())

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
        self.aside: set[int] = set()  # positions of rows set aside (out of scope): never judged further
        self.broken: set[int] = set()  # positions of rows rejected by an error (a warning may reject a row too)

    def table_error(self, rule: str, message: str, column: str | None = None) -> None:
        self.problems.append(Problem(self.table, column, None, None, rule, f"{self.table}: {message}"))

    def flag(
        self,
        mask: pd.Series | np.ndarray,
        column: str,
        rule: str,
        what: str,
        *,
        severity: str = "error",
        reject: bool = True,
    ) -> None:
        """Record one problem per row where `mask` holds; `what` may use {value}."""
        if not (isinstance(mask, np.ndarray) and mask.dtype == bool):  # a boolean array is used as it is
            mask = mask.fillna(False).to_numpy(dtype=bool)
        if self.aside:  # a row out of scope is judged no further (one reason is enough)
            mask = mask.copy()
            mask[list(self.aside)] = False
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
                    f"{self.table}{'.' + column if column else ''} row {row}: {what.format(value=shown)}",
                    severity,
                )
            )
        if reject:
            reason = f"{column}: {rule}" if column else rule
            for position in np.flatnonzero(mask):
                self.reasons[position] = f"{self.reasons[position]}; {reason}" if position in self.reasons else reason
            if severity in (SET_ASIDE, "error"):
                (self.aside if severity == SET_ASIDE else self.broken).update(int(p) for p in np.flatnonzero(mask))

    def flag_once(
        self,
        mask: pd.Series,
        column: str,
        rule: str,
        what: str,
        *,
        severity: str = "error",
        reject: bool = True,
    ) -> None:
        """One problem for all rows where `mask` holds, `what` given {count} and {values} (the values with their
        counts): for a value repeated over thousands of rows, one line instead of one per row."""
        mask = mask.fillna(False).to_numpy(dtype=bool) if isinstance(mask, pd.Series) else mask
        if self.aside:
            mask = mask.copy()
            mask[list(self.aside)] = False
        if not mask.any():
            return
        counts = self.frame.loc[mask, column].astype("string").value_counts()
        shown = ", ".join(f"{value!r} ({n:,})" for value, n in counts.head(10).items())
        shown += f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        message = f"{self.table}.{column}: " + what.format(count=f"{int(mask.sum()):,}", values=shown)
        self.problems.append(Problem(self.table, column, None, shown, rule, message, severity))
        if reject:
            for position in np.flatnonzero(mask):
                old = self.reasons.get(position)
                self.reasons[position] = f"{old}; {column}: {rule}" if old else f"{column}: {rule}"
            if severity == "error":
                self.broken.update(int(p) for p in np.flatnonzero(mask))

    def leave_view(self, mask: np.ndarray) -> int:
        """Take rows out of the table (not rejected: they do not exist at this point in time); keep the reasons
        of the other rows at their new positions. A row already rejected stays, so that it reaches the rejects."""
        mask = mask & ~self.rejected()
        if not mask.any():
            return 0
        keep = np.flatnonzero(~mask)
        new_position = {old: new for new, old in enumerate(keep)}
        self.reasons = {new_position[p]: r for p, r in self.reasons.items() if p in new_position}
        self.aside = {new_position[p] for p in self.aside if p in new_position}
        self.broken = {new_position[p] for p in self.broken if p in new_position}
        self.frame = self.frame.iloc[keep].reset_index(drop=True)
        return int(mask.sum())

    def rejected(self) -> np.ndarray:
        bad = np.zeros(len(self.frame), dtype=bool)
        bad[list(self.reasons)] = True
        return bad

    def split(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not self.reasons:  # the common case: no copy of a large clean table
            nothing = pd.Series(dtype=object)
            empty = self.frame.iloc[:0].assign(reject_reason=nothing, reject_kind=nothing)
            return self.frame.reset_index(drop=True), empty
        bad = self.rejected()
        positions = np.flatnonzero(bad)
        rejected = self.frame.iloc[positions].assign(
            reject_reason=[self.reasons[p] for p in positions],
            reject_kind=[_kind(p, self.aside, self.broken) for p in positions],
        )
        return self.frame.loc[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def _kind(position: int, aside: set[int], broken: set[int]) -> str:
    """Why a row is out: set aside (out of scope), an error (broken), or a warning that keeps it from use."""
    return SET_ASIDE if position in aside else "error" if position in broken else "warning"


def _show(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _map_columns(
    raw: pd.DataFrame, source: TableSource, table: str, check: _Checker, rows: np.ndarray | None = None
) -> pd.DataFrame | None:
    """Rename the user's columns to contract roles; report absent mapped or required columns. `rows`: the rows'
    numbers in the whole table when `raw` is one batch of it (default 1..n)."""
    roles = TABLE_ROLES[table]
    picked: dict[str, str] = {}  # role -> the source column holding it
    ok = True
    for role, required in roles.items():
        column = source.columns.get(role, role)
        if column in raw.columns:
            picked[role] = column
        elif role in source.columns and source.object is not None and not required:
            # a vendor's export holds the fields the user ticked: an optional one absent costs its use, not the run
            check.problems.append(
                Problem(
                    table,
                    role,
                    None,
                    None,
                    "optional column absent",
                    f"{table}: column '{column}' (role '{role}') is not in this {source.object} export: left empty",
                    "warning",
                )
            )
        elif role in source.columns:
            check.table_error("mapped column absent", f"column '{column}' mapped to role '{role}' is absent", role)
            ok = False
        elif required:
            check.table_error("required column absent", f"required column '{role}' is absent", role)
            ok = False
    for key, custom in source.custom.items():
        if (custom.column or key) not in raw.columns:
            check.table_error(
                "custom field column absent", f"column '{custom.column or key}' of custom field '{key}' is absent", key
            )
            ok = False
    for key, column in source.known_at.items():
        if column not in raw.columns:
            check.table_error(
                "known_at column absent", f"column '{column}' (when '{key}' was filled in) is absent", key
            )
            ok = False
    if not ok:
        return None
    renamed: dict[str, str] = {}
    for role, column in picked.items():
        renamed.setdefault(column, role)  # a column's first role names it
    frame = raw[list(renamed)].rename(columns=renamed)
    for role, column in picked.items():  # one column may hold two roles (a deal's id that is also its lead's id)
        if role not in frame:
            frame[role] = frame[renamed[column]]
    frame = frame[list(picked)] if len(renamed) < len(picked) else frame
    for key, custom in source.custom.items():  # a copy: one source column may also be mapped to a role
        frame[key] = raw[custom.column or key].to_numpy()
    for key, column in source.known_at.items():
        frame[key + KNOWN_AT_SUFFIX] = raw[column].to_numpy()
    if rows is None:
        rows = np.arange(1, len(frame) + 1, dtype="int32" if len(frame) < 2**31 - 1 else "int64")
    frame.insert(0, ROW, rows)
    return frame


def parse_timestamps(values: pd.Series, *, timezone: str = "UTC", fmt: str | None = None) -> pd.Series:
    """Timestamps as tz-aware UTC; values without a zone are read in `timezone`; unreadable ones become NaT
    (`pipelines.intake.parsing.parse_time_column` gives the reason for each)."""
    return parse_time_column(values, timezone=timezone, fmt=fmt).values


def _stripped_codes(values: pd.Series) -> pd.Series:
    """Text with few distinct values among many rows (an event's lead and type) as a categorical, stripped once
    per distinct value: a fraction of the memory of 50M strings."""
    return recode_categories(values, normalise_id_text)


def _normalise_labels(frame: pd.DataFrame, table: str) -> None:
    """Ids and category labels compared by meaning before any check or join (see `pipelines.intake.parsing`)."""
    for role in ("lead_id", "account_id", "opportunity_id"):
        if role in frame:
            # an event's lead repeats over millions of rows: normalised once per distinct id, kept as codes
            frame[role] = _stripped_codes(frame[role]) if table == "events" else normalise_ids(frame[role])
    if "event_type" in frame:
        frame["event_type"] = recode_categories(frame["event_type"], category_key)
    if "status" in frame:
        status = frame["status"].astype("string").str.strip()
        frame["status"] = status.mask(status == "")


def _parse_time_role(
    frame: pd.DataFrame, check: _Checker, role: str, *, timezone: str, fmt: str | None, table: str
) -> None:
    original = frame[role]
    parsed = parse_time_column(original, timezone=timezone, fmt=fmt)
    for reason in parsed.reasons.dropna().unique():
        hint = ""
        if "day/month" in reason:
            hint = f'; set tables.{table}.timestamp_format (e.g. "%d/%m/%Y" or "%m/%d/%Y")'
        check.flag(parsed.reasons == reason, role, str(reason).split(" (")[0], f"{reason} {{value!r}}{hint}")
    for note in parsed.notes:
        check.problems.append(Problem(table, role, None, None, "timestamp format", f"{table}.{role}: {note}", "info"))
    frame[role] = parsed.values


def _number_missing(values: pd.Series) -> pd.Series:
    """A number column's "NA", "null", "n/a" ... as missing (text columns keep them: see NUMBER_MISSING)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values
    return values.mask(values.astype("string").str.strip().isin(NUMBER_MISSING).fillna(False))


def _parse_number_role(frame: pd.DataFrame, check: _Checker, role: str) -> None:
    """Numbers parsed from text and range-checked: no text, no infinity, no negative counts or amounts."""
    original = frame[role]
    if pd.api.types.is_float_dtype(original.dtype):  # already numbers (Parquet, SQL): nothing to parse
        number = original
    else:
        original = _number_missing(original)
        number = pd.to_numeric(original, errors="coerce")
        check.flag(original.notna() & number.isna(), role, "not a number", "not a number {value!r}")
        number = number.astype("float64")
    check.flag(np.isinf(number), role, "not a finite number", "not a finite number {value!r}")
    if role in NON_NEGATIVE:
        check.flag(number < 0, role, "negative", "negative value {value!r} (a count or an amount)")
    frame[role] = number.astype("float64")


SPARSE_FROM_MISSING = 0.9  # share of missing values from which a contract number column is held sparse


def _sparse_numbers(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """The events' `value` held sparse when mostly missing: one event in twenty carries a value in the sample data,
    and 57M dense values take 0.46 GB, sparse ones a twentieth of that. Readers see the same numbers (missing as
    NaN). The other tables are small: their columns stay as they are."""
    for role in NUMERIC_COLUMNS.get(table, ()) if table == "events" else ():
        if role in frame and len(frame) and frame[role].isna().mean() >= SPARSE_FROM_MISSING:
            frame[role] = pd.arrays.SparseArray(frame[role].to_numpy(dtype="float64"), fill_value=np.nan)
    return frame


def _check_table(
    raw: pd.DataFrame, source: TableSource, table: str, *, timezone: str, rows: np.ndarray | None = None
) -> tuple[pd.DataFrame | None, _Checker]:
    """The checks of one table on its own (mapping, parsing, ranges, duplicates); `rows` as `_map_columns`."""
    check = _Checker(table, raw)
    if raw.empty:
        check.table_error("empty table", "the table has no rows")
        return None, check
    frame = _map_columns(raw, source, table, check, rows)
    if frame is None:
        return None, check
    check.frame = frame
    check.reasons = {}

    _set_aside_out_of_scope(raw, source, table, check)
    _normalise_labels(frame, table)
    for role, required in TABLE_ROLES[table].items():
        if required and role in frame:
            if role == "lead_id" and table != "leads":
                check.flag(
                    frame[role].isna(),
                    role,
                    "no lead",
                    "linked to no lead (a deal or an activity of a contact, not of a lead): set aside",
                    severity=SET_ASIDE,
                )
                continue
            check.flag(frame[role].isna(), role, "missing value", "missing value")
    for role in TIME_COLUMNS[table]:
        if role in frame:
            _parse_time_role(frame, check, role, timezone=timezone, fmt=source.timestamp_format, table=table)
    for role in NUMERIC_COLUMNS.get(table, ()):
        if role in frame:
            _parse_number_role(frame, check, role)
    for key, custom in source.custom.items():  # custom fields are checked like the contract's own columns
        if custom.type == "numeric":
            _parse_number_role(frame, check, key)
        elif custom.type == "timestamp":
            _parse_time_role(frame, check, key, timezone=timezone, fmt=source.timestamp_format, table=table)
    for key in source.known_at:
        _parse_time_role(
            frame, check, key + KNOWN_AT_SUFFIX, timezone=timezone, fmt=source.timestamp_format, table=table
        )
        _check_known_at(frame, check, key)
    id_column = ID_COLUMNS.get(table)
    if id_column in frame:
        duplicated = frame[id_column].notna() & frame[id_column].duplicated(keep=False)
        check.flag(duplicated, id_column, "duplicate id", "duplicate id {value!r}")
    if table == "opportunities":
        _check_opportunities(frame, source, check, timezone=timezone)
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


def _check_known_at(frame: pd.DataFrame, check: _Checker, field: str) -> None:
    """A value with no time it was filled in is never read (no cutoff can know it): counted in one warning."""
    if field not in frame:
        return
    timeless = int((frame[field].notna() & frame[field + KNOWN_AT_SUFFIX].isna()).sum())
    if timeless:
        check.problems.append(
            Problem(
                check.table,
                field,
                None,
                None,
                "value without its known_at time",
                f"leads.{field}: {timeless:,} value(s) with no time they were filled in "
                f"(tables.leads.known_at.{field}): read as not yet known at every cutoff",
                "warning",
            )
        )


def _set_aside_out_of_scope(raw: pd.DataFrame, source: TableSource, table: str, check: _Checker) -> None:
    """Rows the export conventions marked (a converted lead whose deal is not in the export, ...) and rows the
    user's `tables.<table>.where` leaves out: set aside, each with its reason."""
    if SET_ASIDE_COLUMN in raw:
        reasons = raw[SET_ASIDE_COLUMN].astype("string")
        for reason in reasons.dropna().unique():
            check.flag((reasons == reason).fillna(False).to_numpy(dtype=bool), "", reason, reason, severity=SET_ASIDE)
    if source.where:
        keep = rows_kept_by(raw, source.where, key=f"tables.{table}.where")
        what = f"left out by tables.{table}.where ({source.where})"
        check.flag(~keep, "", f"tables.{table}.where", what, severity=SET_ASIDE)


def rows_kept_by(raw: pd.DataFrame, where: str, *, key: str) -> np.ndarray:
    """The rows a `where` expression keeps, evaluated on the export's own column names (as text, as read; a name
    with spaces is written in backticks): e.g. "`Deal Stage` != 'Prospecting'"."""
    from leadscore.pipelines.errors import ConfigError

    try:
        kept = raw.drop(columns=[SET_ASIDE_COLUMN], errors="ignore").eval(where, engine="python")
    except Exception as exc:  # pandas raises many kinds for a bad expression; all mean the same to the user
        raise ConfigError(f"{key}: cannot evaluate {where!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(kept, pd.Series) or not (pd.api.types.is_bool_dtype(kept.dtype) or kept.dtype == object):
        raise ConfigError(f"{key}: {where!r} must be a condition (true for the rows to keep), not a value")
    return kept.fillna(False).to_numpy(dtype=bool)


def _status_key(values: pd.Series) -> pd.Series:
    """A stage compared by its letters and digits only: HubSpot's label "Closed Won" and its id `closedwon` meet."""
    return category_key(values).str.replace("_", "", regex=False)


_FINAL_WORDS = r"won|lost|closed|dead|disqualified|unqualified"


def _check_opportunities(frame: pd.DataFrame, source: TableSource, check: _Checker, *, timezone: str) -> None:
    """Status values as open / won / lost. A value no list names is read as open, counted once per value in a
    warning, unless it reads like a final stage (won, lost, closed...): those rows are rejected, also counted once."""
    values = source.status_values or DEFAULT_STATUS_VALUES
    lookup = {
        key: status
        for status, listed in values.items()
        for key in _status_key(pd.Series([str(v) for v in listed], dtype="string"))
    }
    keys = _status_key(frame["status"])
    status = keys.map(lookup)
    unknown = frame["status"].notna() & status.isna()
    if unknown.any():
        final = unknown & keys.str.contains(_FINAL_WORDS, regex=True).fillna(False)
        listed = f"status_values: {sorted(lookup)}" if source.status_values else "open, won, lost"
        check.flag_once(
            final,
            "status",
            "unknown final status",
            "{count} row(s) with a closing status no list names, rejected: {values}; add them to "
            f"tables.opportunities.status_values (known: {listed})",
        )
        check.flag_once(
            unknown & ~final,
            "status",
            "unknown status read as open",
            "{count} row(s) with a stage no list names, read as open: {values}; list them under "
            "tables.opportunities.status_values.open to silence this (or under won / lost)",
            severity="warning",
            reject=False,
        )
        status = status.mask(unknown & ~final, "open")
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
    _close_dates_as_days(frame, check, timezone=timezone)
    check.flag(
        frame["closed_at"] < frame["created_at"],
        "closed_at",
        "closed before created",
        "closed at {value} before it was created",
    )


def _close_dates_as_days(frame: pd.DataFrame, check: _Checker, *, timezone: str) -> None:
    """A close date written as a calendar day (Salesforce's CloseDate) against a creation instant (CreatedDate, in
    UTC): the day may be in another zone, so a deal closed on its creation's day, or the day before by the clock
    of another zone, closed when it was created, not before."""
    closed = frame["closed_at"]
    if not closed.notna().any():
        return
    local = closed.dt.tz_convert(timezone)
    is_day = (local == local.dt.normalize()).fillna(False)  # midnight sharp: a calendar day (rows we built have times)
    created = frame["created_at"]
    same_day = is_day & (closed < created) & (closed + pd.Timedelta(days=2) > created)
    if same_day.any():
        frame.loc[same_day, "closed_at"] = created[same_day]
        check.problems.append(
            Problem(
                check.table,
                "closed_at",
                None,
                None,
                "close day before creation instant",
                f"{check.table}.closed_at: {int(same_day.sum()):,} close date(s) on the creation's day (or the day "
                "before, by another zone's clock) read as closed when created",
                "info",
            )
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
    aside: pd.Index | None = None,
) -> None:
    """Rows whose parent is unknown, rejected or set aside. With `aside` (the parents set aside), a row of an
    unknown parent is set aside too: it belongs to no row of the parent table (an activity of a contact)."""
    # boolean arrays combined in place: for 50M events each intermediate mask is 50 MB
    present = frame[column].notna().to_numpy(dtype=bool)
    unknown = ~is_in(frame[column], seen).to_numpy(dtype=bool)
    # `valid` is a subset of `seen` without repeats: of the same size, it is the same set and no parent was rejected
    rejected_parent = None
    if len(valid) != len(seen):
        rejected_parent = ~is_in(frame[column], valid).to_numpy(dtype=bool)
        rejected_parent &= present
        rejected_parent &= ~unknown
    unknown &= present
    del present
    name = parent[:-1]
    if aside is not None:
        check.flag(unknown, column, f"unknown {name}", f"{{value!r}} is not in {parent}: set aside", severity=SET_ASIDE)
        if len(aside) and rejected_parent is not None:
            of_aside = is_in(frame[column], aside).to_numpy(dtype=bool) & rejected_parent
            rejected_parent &= ~of_aside
            what = f"its {name} {{value!r}} was set aside"
            check.flag(of_aside, column, f"{name} set aside", what, severity=SET_ASIDE)
    else:
        reject = severity == "error"
        what = f"unknown {name} {{value!r}} (not in {parent})"
        check.flag(unknown, column, f"unknown {name}", what, severity=severity, reject=reject)
    if rejected_parent is None:
        return
    check.flag(
        rejected_parent,
        column,
        f"{name} rejected",
        f"{name} {{value!r}} was rejected (see {parent} problems)",
        severity=severity,
        reject=severity == "error",
    )


def _check_as_of(table: str, check: _Checker, as_of: pd.Timestamp) -> int:
    """The as-of view: what was known at `as_of`. Rows created after it leave the table (they do not exist yet:
    neither an error nor a reject); a deal closed after it is still open then; a sales acceptance or rejection after
    it has not happened yet. Returns how many rows left."""
    frame = check.frame
    if table == "opportunities":
        later = (frame["closed_at"] > as_of).to_numpy()
        frame.loc[later, "status"] = "open"
        frame.loc[later, "closed_at"] = pd.NaT
    if table == "leads" and "sales_accepted_at" in frame:
        frame.loc[(frame["sales_accepted_at"] > as_of).to_numpy(), "sales_accepted_at"] = pd.NaT
    for known_at in [c for c in frame if table == "leads" and c.endswith(KNOWN_AT_SUFFIX)]:
        # a field filled in after as_of was not yet known then: neither its value nor its time
        field, later = known_at.removesuffix(KNOWN_AT_SUFFIX), (frame[known_at] > as_of).fillna(False).to_numpy(bool)
        frame.loc[later, known_at] = pd.NaT
        if field in frame:
            frame[field] = frame[field].mask(later)
    if table == "leads" and "sales_rejected_at" in frame:  # a later rejection, and its reason, are not known yet
        later = (frame["sales_rejected_at"] > as_of).to_numpy()
        frame.loc[later, "sales_rejected_at"] = pd.NaT
        if "rejection_reason" in frame:
            frame.loc[later, "rejection_reason"] = None
    time_column = {
        "leads": "created_at",
        "events": "occurred_at",
        "opportunities": "created_at",
        "opportunity_history": "changed_at",  # a change after as_of has not happened yet
    }.get(table)
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
                left[child] += checkers[child].leave_view(is_in(frames[child]["lead_id"], gone).to_numpy(dtype=bool))
                frames[child] = checkers[child].frame
    left = {name: count for name, count in left.items() if count}
    if left:
        log.info(
            "as of %s: rows created after it left the view (%s)",
            as_of.isoformat(),
            ", ".join(f"{name} {count:,}" for name, count in left.items()),
        )
    return left


# The default as-of must not move because of one mistyped row: timestamps in the future of the wall clock, or far
# beyond the bulk of the data (more than the larger of OUTLIER_MIN_GAP and OUTLIER_SPAN_SHARE of the data's span
# after its OUTLIER_TAIL quantile), are rejected with their reason instead of being taken as "now".
OUTLIER_MIN_TIMESTAMPS = 20  # fewer than this: no bulk to speak of, only the wall clock applies
OUTLIER_TAIL = 0.01
OUTLIER_MIN_GAP = pd.Timedelta(days=90)
OUTLIER_SPAN_SHARE = 0.25
_SAMPLE_PER_COLUMN = 250_000
_CHUNK_ROWS = 2_000_000


def _wall_clock() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _ns(values: pd.Series) -> np.ndarray:
    """The int64 nanoseconds behind a UTC timestamp column, without a copy."""
    return np.asarray(values.array.asi8)


def sample_step(rows: int) -> int:
    """The stride of a column's sample for the default as-of: at most _SAMPLE_PER_COLUMN values."""
    return max(1, -(-rows // _SAMPLE_PER_COLUMN))


def _bulk_end(
    frames: dict[str, pd.DataFrame], extra: np.ndarray | None = None
) -> tuple[pd.Timestamp, pd.Timedelta] | None:
    """The (1 - OUTLIER_TAIL) quantile of every timestamp (a strided sample of each column, and the `extra` sample
    of a table held elsewhere) and how far beyond it a timestamp may lie; None when there are too few timestamps to
    tell an outlier."""
    samples = [] if extra is None else [extra]
    for table, frame in frames.items():
        for column in TIME_COLUMNS[table]:
            if column in frame:
                ns = _ns(frame[column])
                step = sample_step(len(ns))
                sample = ns[::step]
                samples.append(sample[sample != np.iinfo(np.int64).min])
    combined = np.concatenate(samples) if samples else np.array([], dtype="int64")
    if len(combined) < OUTLIER_MIN_TIMESTAMPS:
        return None
    low, high = np.quantile(combined, [OUTLIER_TAIL, 1 - OUTLIER_TAIL], method="lower")
    end = pd.Timestamp(int(high), tz="UTC")
    return end, max(OUTLIER_MIN_GAP, (end - pd.Timestamp(int(low), tz="UTC")) * OUTLIER_SPAN_SHARE)


@dataclass(frozen=True)
class TimeLimit:
    """What the default as-of may be: no later than the wall clock `now`, nor far beyond the `bulk` of the data."""

    now: pd.Timestamp
    bulk: tuple[pd.Timestamp, pd.Timedelta] | None

    @property
    def limit(self) -> pd.Timestamp:
        return min(self.now, self.bulk[0] + self.bulk[1]) if self.bulk is not None else self.now


def time_limit(
    frames: dict[str, pd.DataFrame], *, now: pd.Timestamp | None = None, extra: np.ndarray | None = None
) -> TimeLimit:
    return TimeLimit(now if now is not None else _wall_clock(), _bulk_end(frames, extra))


def flag_beyond(values: pd.Series, check: _Checker, column: str, limit: TimeLimit) -> np.ndarray:
    """Reject the rows dated after the wall clock or far beyond the data; return where values lie beyond."""
    beyond = (values > limit.limit).to_numpy(dtype=bool)
    if not beyond.any():
        return beyond
    future = (values > limit.now).to_numpy(dtype=bool)
    when = limit.now.isoformat(timespec="seconds")
    what = f"dated {{value}}, after the wall clock ({when}): not used for the default as_of"
    check.flag(future, column, "in the future", what)
    if limit.bulk is not None:
        what = (
            f"dated {{value}}, more than {limit.bulk[1].days} days after {1 - OUTLIER_TAIL:.0%} of all timestamps "
            f"(up to {limit.bulk[0].date()}): a typo? not used for the default as_of"
        )
        check.flag(beyond & ~future, column, "far beyond the data", what)
    return beyond


def _latest_timestamp(
    frames: dict[str, pd.DataFrame],
    checkers: dict[str, _Checker] | None = None,
    *,
    now: pd.Timestamp | None = None,
    events=None,
) -> pd.Timestamp:
    """The default as-of: the latest timestamp that is neither after the wall clock nor far beyond the bulk of the
    data. With `checkers`, rows holding such timestamps are rejected with the reason (they are not used). `events`:
    the events held elsewhere, partition by partition (`intake.streamed.SpilledEvents`), counted in too."""
    limit = time_limit(frames, now=now, extra=None if events is None else events.time_sample)
    latest = []
    for table, frame in frames.items():
        for column in TIME_COLUMNS[table]:
            if column not in frame or not frame[column].notna().any():
                continue
            values = frame[column]
            beyond = (values > limit.limit).to_numpy(dtype=bool)
            if beyond.any():
                if checkers is not None:
                    flag_beyond(values, checkers[table], column, limit)
                values = values[~beyond]
            if values.notna().any():
                latest.append(values.max())
    if events is not None and (latest_event := events.latest_before(limit.limit)) is not None:
        latest.append(latest_event)
    return max(latest) if latest else limit.now.floor("s")


def lead_created(leads: pd.DataFrame) -> pd.Series:
    """Each lead's creation time by lead id."""
    return leads.dropna(subset=["lead_id"]).drop_duplicates("lead_id").set_index("lead_id")["created_at"]


def _check_event_times(events: pd.DataFrame, created: pd.Series, check: _Checker) -> None:
    """Events dated before their lead was created (`created`: by lead id) are rejected (a warning): they cannot be
    the lead's engagement."""
    lead = events["lead_id"]
    if not isinstance(lead.dtype, pd.CategoricalDtype):
        early = events["occurred_at"] < lead.map(created)
    else:
        early = _before_created_by_code(lead, events["occurred_at"], created)
    check.flag(
        early,
        "occurred_at",
        "before lead created",
        "dated {value}, before its lead was created: not counted as engagement",
        severity="warning",
    )


def _before_created_by_code(lead: pd.Series, occurred: pd.Series, created: pd.Series) -> pd.Series:
    """`occurred < created[lead]` for 50M events without an event-sized copy of the creation times: looked up by
    category code, a few million events at a time."""
    nat = np.iinfo(np.int64).min
    codes = lead.array.codes  # a view: `cat.codes` would copy 50M codes
    occurred_ns = _ns(occurred)
    # code -1 (missing lead) takes the appended NaT
    created_ns = np.append(np.asarray(created.reindex(lead.cat.categories.astype("string")).array.asi8), nat)
    early = np.zeros(len(codes), dtype=bool)
    for start in range(0, len(codes), _CHUNK_ROWS):
        window = slice(start, start + _CHUNK_ROWS)
        when, since = occurred_ns[window], created_ns[codes[window]]
        early[window] = (when != nat) & (since != nat) & (when < since)
    return pd.Series(early, index=lead.index)


def _value_counts(values: pd.Series) -> pd.Series:
    """`values.value_counts()`; a categorical's codes are counted a few million at a time, where pandas would widen
    all 50M of them to int64 at once."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values.value_counts()
    codes, levels = values.array.codes, values.cat.categories
    counts = np.zeros(len(levels) + 1, dtype="int64")  # slot 0 counts code -1 (missing), left out as pandas does
    for start in range(0, len(codes), _CHUNK_ROWS):
        counts += np.bincount(codes[start : start + _CHUNK_ROWS].astype(np.intp) + 1, minlength=len(levels) + 1)
    return pd.Series(counts[1:], index=levels).sort_values(ascending=False, kind="stable")


def _check_event_vocabulary(events: pd.DataFrame, check: _Checker, known: set[str]) -> None:
    """Event types outside the vocabulary are kept but feed no feature: counted in one warning, never silent."""
    problem = vocabulary_problem(_value_counts(events["event_type"]), known)
    if problem is not None:
        check.problems.append(problem)


def vocabulary_problem(counts: pd.Series, known: set[str]) -> Problem | None:
    """The one warning for the event types outside the vocabulary, from the rows per type (`counts`)."""
    counts = counts.astype("int64")
    counts = counts.iloc[np.lexsort((counts.index.astype(str), -counts.to_numpy()))]  # most first, then by name
    unknown = counts[~counts.index.isin(sorted(known)) & (counts > 0)]
    if not len(unknown):
        return None
    listed = ", ".join(f"'{name}' ({n:,})" for name, n in unknown.head(10).items())
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return Problem(
        "events",
        "event_type",
        None,
        None,
        "unknown event type",
        f"events.event_type: {int(unknown.sum()):,} row(s) with event types outside the vocabulary, kept but "
        f"used by no feature: {listed}{more} (case, spaces and dashes are already ignored)",
        "warning",
    )


def known_event_types(settings: Settings) -> set[str]:
    """The event vocabulary: the types the features read (the contract's plus any the config weights, marks
    high-intent or grades; `FeatureParams.event_types`), and the sales touches, which monitor reads and no feature
    does. Any other type reaches no builder, so the warning's "used by no feature" holds."""
    return set(settings.feature_params().event_types) | set(SALES_TOUCH_EVENTS)


def load_crm(settings: Settings, *, as_of: pd.Timestamp | None = None, events=None) -> CrmData:
    """Read, normalise and validate every configured table of a CRM-mode project. An optional table whose file is
    absent is left out with a warning (`pipelines.intake.exports.without_missing_files`).

    `events`: the events already spilled by partition of leads (`intake.streamed.spill_source`), never held whole:
    validated partition by partition; `data.events` then names their clean partition files."""
    from leadscore.pipelines.intake.exports import apply_export_conventions, read_export_table, without_missing_files

    assert settings.tables is not None
    settings, missing = without_missing_files(settings)
    sources = {name: getattr(settings.tables, name) for name in TABLE_ROLES if getattr(settings.tables, name)}
    if events is not None:
        sources.pop("events", None)
    raw = {
        name: read_export_table(source, name=name, settings=settings, dictionary_columns=_repeated(source, name))
        for name, source in sources.items()
    }
    tables = apply_export_conventions(raw, settings)
    del raw  # `tables` alone holds the tables as read: validation lets each go once it is checked
    data = validate_frames(tables, settings, as_of=as_of, events=events, consume=True)
    if data.data_end is not None:
        check_as_of_within_data(data.as_of, data.data_end, option="--as-of" if as_of is not None else "as_of (config)")
    for note in missing:
        table = note.split("'")[1]
        data.problems.append(Problem(table, None, None, None, "file not found", note, "warning"))
    release_unused_memory()
    return data


def check_as_of_within_data(as_of: pd.Timestamp, data_end: pd.Timestamp, *, option: str) -> None:
    """Refuse an as-of after the end of the data (its latest timestamp, the default as-of): nothing is known after
    it, so training labels would count outcomes not yet known as lost, and the scores, due-by times and the score
    history would be dated in the future."""
    if as_of > data_end:
        from leadscore.pipelines.errors import UsageError

        raise UsageError(
            f"{as_of:%Y-%m-%d %H:%M:%S} UTC is after the end of the data: the latest timestamp in the tables is "
            f"{data_end:%Y-%m-%d %H:%M:%S} UTC; nothing is known after it, and the scores and the score history "
            "would be dated in the future",
            where=option,
            hint=f"give a time up to {data_end:%Y-%m-%dT%H:%M:%S} (e.g. {data_end:%Y-%m-%d}), or leave it out: the "
            "default as-of is the end of the data",
        )


def _repeated(source: TableSource, table: str) -> tuple[str, ...]:
    """Source columns whose few distinct values repeat over many rows: an event's lead and type."""
    roles = ("lead_id", "event_type") if table == "events" else ()
    return tuple(source.columns.get(role, role) for role in roles)


def validate_frames(
    raw: dict[str, pd.DataFrame],
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    events=None,
    consume: bool = False,
) -> CrmData:
    """Normalise and validate tables already read (from files, SQL, or one partition of a distributed engine).

    `events`: the events table spilled to partition files (`intake.streamed.SpilledEvents`), validated here one
    partition at a time against the other tables, with the same checks and the same rejects as when read whole.
    `consume`: each table taken out of `raw` once checked, so that a table as read is not held beside its checked
    copy for the rest of validation (0.4 GiB of raw leads at 1M leads, held while the events were validated).
    """
    assert settings.tables is not None
    frames: dict[str, pd.DataFrame] = {}
    checkers: dict[str, _Checker] = {}
    for name in list(raw):
        table = raw.pop(name) if consume else raw[name]
        frame, checker = _check_table(table, getattr(settings.tables, name), name, timezone=settings.timezone)
        del table
        checkers[name] = checker
        if frame is not None:
            frames[name] = frame
        release_unused_memory()  # each table's temporaries before the next table's

    as_of = as_of if as_of is not None else _as_utc(settings.as_of)
    explicit_as_of = as_of is not None
    # the end of the data as the default as-of takes it (outliers aside), here without rejecting the outliers
    now = _wall_clock()
    # the limit the events' partitions are judged by: taken, as `_latest_timestamp` takes it, before the as-of view
    limit = time_limit(frames, now=now, extra=events.time_sample) if events is not None and not explicit_as_of else None
    data_end = _latest_timestamp(frames, now=now, events=events) if explicit_as_of else None
    as_of = as_of if explicit_as_of else _latest_timestamp(frames, checkers, now=now, events=events)
    gone_before = pd.Index(frames["leads"]["lead_id"].dropna().unique()) if "leads" in frames else None
    after_as_of = _as_of_view(frames, checkers, as_of)

    if "leads" in frames:
        leads = frames["leads"]
        seen = pd.Index(leads["lead_id"].dropna().unique())
        lead_check = checkers["leads"]
        valid = pd.Index(leads.loc[~lead_check.rejected(), "lead_id"])
        aside = pd.Index(leads["lead_id"].iloc[sorted(lead_check.aside)].dropna().unique())
        for child in ("events", "opportunities"):
            if child in frames:
                _check_references(frames[child], checkers[child], "lead_id", valid, seen, "leads", aside=aside)
        if "accounts" in frames and "account_id" in leads:
            accounts = frames["accounts"]
            account_ids = pd.Index(accounts["account_id"].dropna().unique())
            valid_accounts = pd.Index(accounts.loc[~checkers["accounts"].rejected(), "account_id"])
            _check_references(
                leads, checkers["leads"], "account_id", valid_accounts, account_ids, "accounts", severity="warning"
            )
        if "events" in frames:
            _check_event_times(frames["events"], lead_created(leads), checkers["events"])
    if "events" in frames:
        _check_event_vocabulary(frames["events"], checkers["events"], known_event_types(settings))
    if "opportunity_history" in frames and "opportunities" in frames:
        _check_deal_references(
            frames["opportunity_history"], checkers["opportunity_history"], checkers["opportunities"]
        )

    data = CrmData(tables={}, as_of=as_of, after_as_of=after_as_of, data_end=data_end)
    streamed = None
    if events is not None and "leads" in frames:
        lead_view = LeadView(
            as_of=as_of,
            limit=limit,
            gone=gone_before.difference(pd.Index(frames["leads"]["lead_id"].dropna().unique())),
            valid=valid,
            seen=seen,
            aside=aside,
            created=lead_created(frames["leads"]),
            known_types=known_event_types(settings),
            router=LeadRouter.of_leads(
                leads.loc[~lead_check.rejected(), "lead_id"],
                leads.loc[~lead_check.rejected(), "account_id"] if "account_id" in leads else None,
                events.files.partitions,
            ),
        )
        streamed = events.validate(lead_view)
    for name, checker in checkers.items():
        if streamed is not None and name == "opportunities":  # where the events' problems come, read whole
            streamed.add_to(data)
            streamed = None
        data.problems.extend(checker.problems)
        if name in frames:
            clean, rejected = checker.split()
            data.tables[name] = _sparse_numbers(clean.drop(columns=ROW), name)
            if len(rejected):
                data.rejects[name] = rejected
            if checker.aside:
                data.set_aside[name] = len(checker.aside)
    if streamed is not None:
        streamed.add_to(data)
    release_unused_memory()
    return data


def _check_deal_references(history: pd.DataFrame, check: _Checker, deals: _Checker) -> None:
    """History rows of deals not in the opportunities table (or set aside there, or gone from the as-of view) are
    set aside: they describe no deal that is scored; those of a rejected deal are rejected with it."""
    frame = deals.frame
    seen = pd.Index(frame["opportunity_id"].dropna().unique())
    valid = pd.Index(frame.loc[~deals.rejected(), "opportunity_id"].dropna().unique())
    aside = pd.Index(frame["opportunity_id"].iloc[sorted(deals.aside)].dropna().unique())
    _check_references(history, check, "opportunity_id", valid, seen, "opportunities", aside=aside)


@dataclass(frozen=True)
class LeadView:
    """What validating the events needs from the validated leads, partition by partition."""

    as_of: pd.Timestamp
    limit: TimeLimit | None  # None: the as-of was given, and no timestamp is rejected as an outlier
    gone: pd.Index  # leads created after the as-of: their events leave the view with them
    valid: pd.Index
    seen: pd.Index
    aside: pd.Index
    created: pd.Series
    known_types: set[str]
    router: LeadRouter | None = None  # where the valid leads' events are scored: their account's partition


def validate_events_part(frame: pd.DataFrame, check: _Checker, view: LeadView) -> tuple[_Checker, int]:
    """The checks of events that need the other tables, on one partition of the events (already through
    `_check_table`), in the order `validate_frames` runs them; returns the checker and the rows out of the view."""
    if view.limit is not None and frame["occurred_at"].notna().any():
        flag_beyond(frame["occurred_at"], check, "occurred_at", view.limit)
    left = _check_as_of("events", check, view.as_of)
    if len(view.gone):
        left += check.leave_view(is_in(check.frame["lead_id"], view.gone).to_numpy(dtype=bool))
    _check_references(check.frame, check, "lead_id", view.valid, view.seen, "leads", aside=view.aside)
    _check_event_times(check.frame, view.created, check)
    return check, left


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
