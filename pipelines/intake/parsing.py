"""Parsing cell values strictly: timestamps (one format per column), ids and category labels.

Every value that cannot be read gets a reason instead of silently becoming missing; a column whose day/month
order nothing settles is refused rather than read half one way and half the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.schemas import NUMBER_MISSING

EARLIEST = pd.Timestamp("1900-01-01", tz="UTC")
LATEST = pd.Timestamp("2200-01-01", tz="UTC")  # nanosecond timestamps end in 2262; CRM dates never get near

# a time of day, on a 24-hour clock or a 12-hour one with AM/PM (Salesforce's US export: `02/23/26 08:55 PM`)
_TIME = r"(?:[T ,]+(\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)(?:\s*([AaPp])\.?[Mm]\.?)?)?"
_YMD = re.compile(rf"^(\d{{4}})[-/.](\d{{1,2}})[-/.](\d{{1,2}}){_TIME}$")
# day/month/year or month/day/year; a two-digit year is read as POSIX strptime's %y does (69-99: 19xx, else 20xx)
_DMY = re.compile(rf"^(\d{{1,2}})[/.-](\d{{1,2}})[/.-](\d{{4}}|\d{{2}}){_TIME}$")
_CENTURY_PIVOT = 69
# A zone at the end: Z, UTC, GMT, or an offset (+02:00, -0500, -05, UTC+01:00). An offset is looked for only after a
# time (a value with a colon): in 31-12-2024 the -2024 is a year, not an offset.
_ZONE = re.compile(r"\s*(?:(?P<utc>Z|UTC|GMT)|(?:UTC|GMT)?(?P<offset>[+-]\d{2}(?::?\d{2})?))$", re.IGNORECASE)
_MONTH_NAME = r"(?i)\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b"


@dataclass
class ParsedTimes:
    """UTC timestamps; per row the reason a present value could not be read (else missing); notes on choices."""

    values: pd.Series
    reasons: pd.Series
    notes: list[str]


def parse_time_column(values: pd.Series, *, timezone: str = "UTC", fmt: str | None = None) -> ParsedTimes:
    """Timestamps as tz-aware UTC (ns). Values without a zone are read in `timezone`.

    Text is read as ISO 8601 (a `Z`, ` UTC` or `+02:00` suffix sets the zone), as day/month/year or
    month/day/year when the column's values settle the order, or with month names; `fmt` (a strftime format)
    overrides all of that. Years outside 1900-2199 are refused.
    """
    index = values.index
    notes: list[str] = []
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        reasons = _no_reasons(index, timezone)
        aware = values if isinstance(values.dtype, pd.DatetimeTZDtype) else _localize(values, timezone, reasons)
        return ParsedTimes(_in_range(aware.dt.tz_convert("UTC"), reasons), reasons, notes)
    reasons = pd.Series(pd.NA, index=index, dtype="string")
    text = values.astype("string").str.strip()
    text = text.mask((text == "") | text.isin(NUMBER_MISSING))  # "NULL" in a date column: no date
    present = text.notna()
    parsed = pd.Series(pd.NaT, index=index, dtype="datetime64[us, UTC]")
    if fmt is not None:
        aware = "%z" in fmt or "%Z" in fmt
        result = pd.to_datetime(text, format=fmt, errors="coerce", utc=aware)
        if not aware:
            result = _localize(result, timezone, reasons)
        parsed = result.astype("datetime64[us, UTC]")
        reasons = reasons.mask(present & parsed.isna() & reasons.isna(), f"does not match timestamp_format {fmt!r}")
        return ParsedTimes(_in_range(parsed, reasons), reasons, notes)

    zone = text.str.extract(_ZONE)
    zone.loc[~text.str.contains(":", regex=False).fillna(False).astype(bool), "offset"] = pd.NA
    offset = zone["offset"].fillna(zone["utc"].notna().map({True: "+00:00", False: pd.NA}))
    offset = offset.astype("string").str.replace(r"^([+-]\d{2})(\d{2})$", r"\1:\2", regex=True)
    offset = offset.str.replace(r"^([+-]\d{2})$", r"\1:00", regex=True)
    matched = zone["utc"].notna() | zone["offset"].notna()
    body = text.where(~matched, text.str.replace(_ZONE, "", regex=True)).str.strip()

    iso = _assemble(body.str.extract(_YMD), year=0, month=1, day=2)
    dmy_parts = body.str.extract(_DMY)
    order, order_reason, note = _day_month_order(dmy_parts, body)
    if note:
        notes.append(note)
    if order is not None:
        iso = iso.fillna(_assemble(dmy_parts, year=2, month=order[0], day=order[1]))
        two_digit = dmy_parts[2].str.len() == 2
        if two_digit.any():
            example = body[two_digit.fillna(False).astype(bool)].iloc[0]
            notes.append(
                f"read two-digit years as 20xx (19xx from {_CENTURY_PIVOT}), e.g. {example!r}; a timestamp_format "
                '(e.g. "%m/%d/%y %I:%M %p") makes the reading explicit'
            )
    elif order_reason is not None:
        reasons = reasons.mask(order_reason.notna(), order_reason)

    named = present & iso.isna() & body.str.contains(_MONTH_NAME, regex=True).fillna(False).astype(bool)
    if named.any():
        guessed = pd.to_datetime(body.where(named), format="mixed", errors="coerce")
        iso = iso.fillna(guessed.dt.strftime("%Y-%m-%d %H:%M:%S.%f").astype("string"))

    zoned = iso.notna() & offset.notna()
    if zoned.any():
        parsed.loc[zoned] = pd.to_datetime(iso[zoned] + offset[zoned], format="ISO8601", errors="coerce", utc=True)
    naive = iso.notna() & offset.isna()
    if naive.any():
        local = pd.to_datetime(iso[naive], format="ISO8601", errors="coerce")
        parsed.loc[naive] = _localize(local, timezone, reasons).astype("datetime64[us, UTC]")
    reasons = reasons.mask(present & parsed.isna() & reasons.isna(), "unparseable timestamp")
    return ParsedTimes(_in_range(parsed, reasons), reasons, notes)


def _assemble(parts: pd.DataFrame, *, year: int, month: int, day: int) -> pd.Series:
    """ISO text from extracted (year, month, day, time) groups; missing where the pattern did not match."""

    def pad(column: int) -> pd.Series:
        return parts[column].astype("string").str.zfill(2)

    date = _full_year(parts[year].astype("string")) + "-" + pad(month) + "-" + pad(day)
    time = _24_hour(parts[3].astype("string"), parts[4].astype("string").str.lower())
    # midnight when no time is given: an ISO date with a zone offset needs a time before the offset
    return (date + " " + time.str.replace(",", ".", regex=False).fillna("00:00")).astype("string")


def _full_year(year: pd.Series) -> pd.Series:
    short = year.str.len() == 2
    if not short.any():
        return year
    number = pd.to_numeric(year.where(short), errors="coerce").astype("float64")
    full = (number + np.where(number >= _CENTURY_PIVOT, 1900, 2000)).astype("Int64").astype("string")
    return year.where(~short, full)


def _24_hour(time: pd.Series, half: pd.Series) -> pd.Series:
    """`08:55` with `p` -> `20:55`, `12:10` with `a` -> `00:10`; without AM/PM the time is left as it is."""
    marked = half.notna() & time.notna()
    if not marked.any():
        return time
    hour = pd.to_numeric(time.where(marked).str.split(":").str[0], errors="coerce").astype("float64")
    hour = (hour % 12) + np.where((half == "p").fillna(False).to_numpy(dtype=bool), 12, 0)
    rest = time.where(marked).str.split(":", n=1).str[1]
    return time.where(~marked, hour.astype("Int64").astype("string").str.zfill(2) + ":" + rest)


def _day_month_order(parts: pd.DataFrame, body: pd.Series):
    """Which of the first two numbers of d/m/y-like values is the month: settled by a value above 12.

    Returns ((month_group, day_group) or None, per-row reasons when unsettled, a note on what was chosen).
    """
    matched = parts[0].notna()
    if not matched.any():
        return None, None, None
    first, second = parts[0].astype("float64"), parts[1].astype("float64")
    day_first = matched & (first > 12) & (second <= 12)
    month_first = matched & (second > 12) & (first <= 12)
    if day_first.any() and not month_first.any():
        return (1, 0), None, f"read day first: {body[day_first].iloc[0]!r} settles the order"
    if month_first.any() and not day_first.any():
        return (0, 1), None, f"read month first: {body[month_first].iloc[0]!r} settles the order"
    reasons = pd.Series(pd.NA, index=parts.index, dtype="string")
    if day_first.any():  # both orders occur in one column
        example = f"{body[day_first].iloc[0]!r} vs {body[month_first].iloc[0]!r}"
        return None, reasons.mask(matched, f"day/month order differs between rows ({example})"), None
    if (first == second).where(matched, True).all():
        return (0, 1), None, None  # 05/05/2024 reads the same either way
    unsettled = "ambiguous day/month order (no value above 12 settles it)"
    return None, reasons.mask(matched & (first != second), unsettled), None


def _ambiguous(timezone: str) -> str:
    return f"ambiguous local time in {timezone} (daylight-saving change)"


_OUT_OF_RANGE = "year out of range (1900-2199)"


def _no_reasons(index: pd.Index, timezone: str) -> pd.Series:
    """All-missing reasons for values already stored as timestamps: only the two reasons such a value can get, as a
    categorical (one byte per row; 50M text NAs would take 0.4 GB beside the events)."""
    levels = pd.Index([_ambiguous(timezone), _OUT_OF_RANGE], dtype="string")
    codes = np.full(len(index), -1, dtype="int8")
    return pd.Series(pd.Categorical.from_codes(codes, categories=levels), index=index)


def _localize(naive: pd.Series, timezone: str, reasons: pd.Series) -> pd.Series:
    """Wall-clock times in `timezone` as UTC; a time that a DST change makes ambiguous gets a reason."""
    localized = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
    lost = naive.notna() & localized.isna()
    if lost.any():
        reasons.loc[lost & reasons.isna()] = _ambiguous(timezone)
    return localized


def _in_range(parsed: pd.Series, reasons: pd.Series) -> pd.Series:
    """Nanosecond UTC timestamps; years outside 1900-2199 are refused (with their reason) instead of overflowing."""
    outside = parsed.notna() & ((parsed < EARLIEST) | (parsed >= LATEST))
    if outside.any():
        reasons.loc[outside] = _OUT_OF_RANGE
        parsed = parsed.mask(outside)
    return parsed.astype("datetime64[ns, UTC]")


# -- ids and category labels ----------------------------------------------------------------------------------
_INTEGRAL_TEXT = r"^([+-]?\d+)\.0*$"


def normalise_id_text(text: pd.Series) -> pd.Series:
    """Ids as text: surrounding blanks stripped, integral floats written as integers (`321.0` -> `321`), blank ->
    missing. Spreadsheets and Parquet float columns write `321.0` for an id that another table writes `321`."""
    text = text.astype("string").str.strip().str.replace(_INTEGRAL_TEXT, r"\1", regex=True)
    return text.mask(text == "")


def normalise_ids(values: pd.Series) -> pd.Series:
    """`normalise_id_text` for any column: numbers, text or categoricals (per category, not per row)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return recode_categories(values, normalise_id_text)
    if pd.api.types.is_float_dtype(values.dtype):
        finite = np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        integral = finite & (np.mod(values.fillna(0.5).to_numpy(dtype="float64"), 1) == 0)
        as_int = values.where(integral).astype("Int64").astype("string")
        return as_int.where(integral, values.astype("string")).astype("string")
    if pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("string")
    return normalise_id_text(values)


def category_key(text: pd.Series) -> pd.Series:
    """A label compared by meaning, not spelling: case, surrounding blanks, and runs of spaces, dashes and
    underscores do not count (`Product Login`, `product-login`, `PRODUCT_LOGIN` -> `product_login`)."""
    key = text.astype("string").str.strip().str.lower().str.replace(r"[\s\-_]+", "_", regex=True)
    return key.mask(key == "")


def recode_categories(values: pd.Series, normalise: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """A categorical whose categories went through `normalise` (merging those that become equal), decided once
    per category and applied by code: for 50M events this is a few thousand string operations."""
    categorical = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
    text = categorical.cat.categories.astype("string")
    normalised = normalise(pd.Series(text)).reset_index(drop=True)
    if normalised.equals(pd.Series(text)) and text.is_monotonic_increasing:  # already clean: no per-row work
        # the same codes under the text categories, shared rather than copied (50M events' codes take 0.2 GB)
        same = pd.Categorical.from_codes(categorical.array.codes, dtype=pd.CategoricalDtype(text), validate=False)
        return pd.Series(same, index=categorical.index, name=categorical.name, copy=False)
    missing = normalised.isna().to_numpy()
    levels, inverse = np.unique(normalised.fillna("").to_numpy(dtype=object), return_inverse=True)
    inverse = np.where(missing, -1, inverse)
    if "" in levels and missing.any():  # '' only stood for missing: drop it and shift the codes above it
        empty = int(np.flatnonzero(levels == "")[0])
        levels = np.delete(levels, empty)
        inverse = np.where(inverse > empty, inverse - 1, inverse)
    # new code per old code, with -1 (missing) taking the appended last entry: one int32 array per row, no more
    # (int8 when the categories allow: 50M event types would otherwise take an int32 temporary of 0.2 GB)
    lookup = np.append(inverse, -1).astype("int8" if len(levels) < 127 else "int32")
    new_codes = lookup[categorical.array.codes]
    return pd.Series(
        pd.Categorical.from_codes(new_codes, categories=pd.Index(levels, dtype="string")), index=values.index
    )


def parse_as_of(value: str | None, *, option: str = "--as-of") -> pd.Timestamp | None:
    """A point in time given on the command line (ISO date or timestamp, UTC unless it says otherwise)."""
    if value is None:
        return None
    from leadscore.pipelines.errors import UsageError

    try:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    except (ValueError, OverflowError):
        raise UsageError(f"{option}: not a date or timestamp: {value!r}") from None
    if not EARLIEST <= stamp < LATEST:
        raise UsageError(f"{option}: {value!r} is outside the years {EARLIEST.year}-{LATEST.year - 1}")
    return stamp
