"""Writing output files atomically: CSV (safe for spreadsheets), Parquet and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.outputs.publish import Publication, publish


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (see `outputs.publish`).

    The rename is atomic on one file system, so a crash leaves either the old file or the new one,
    never half of one; the file gets the permissions the umask allows. A verb's outputs go through one
    `project_publication` instead, so that they are put in place together.
    """
    publish({Path(path): write})
    return Path(path)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (=, +, -, @, tab, CR first) get a leading apostrophe."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
            if risky.any():
                out[column] = text.mask(risky, "'" + text)
    return out


def neutralise_carriage_returns(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells with a carriage return get a line feed instead: the CSV writer quotes a cell holding a line feed,
    but not one holding a bare CR, which readers take for the end of the row."""
    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            text = values.astype("string")
            has_cr = text.str.contains("\r", regex=False).fillna(False).astype(bool)
            if has_cr.any():
                out = out.copy() if out is frame else out
                out[column] = text.mask(
                    has_cr, text.str.replace("\r\n", "\n", regex=False).str.replace("\r", "\n", regex=False)
                )
    return out


def frame_writer(frame: pd.DataFrame, path: Path) -> Callable[[Path], None]:
    """A function writing `frame` to a given file in the format `path`'s suffix names (CSV or Parquet).

    CSV text cells are neutralised against spreadsheet formula injection and bare carriage returns.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        safe = neutralise_carriage_returns(neutralise_formulas(frame))
        return lambda tmp: safe.to_csv(tmp, index=False, lineterminator="\n")
    if suffix in {".parquet", ".pq"}:
        return lambda tmp: frame.to_parquet(tmp, index=False)
    raise UsageError(f"cannot write '{path}': use a .csv or .parquet file name")


def write_frame(frame: pd.DataFrame, path: Path, publication: Publication | None = None) -> Path:
    """Write a DataFrame as CSV or Parquet (by suffix), atomically and reproducibly; into `publication` when given
    (in place when it commits)."""
    if publication is not None:
        publication.write(Path(path), frame_writer(frame, path))
        return Path(path)
    return write_atomically(path, frame_writer(frame, path))


def write_json(data: dict, path: Path, publication: Publication | None = None) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if publication is not None:
        publication.write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return Path(path)
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
