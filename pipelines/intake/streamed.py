"""The events table never held whole: read in batches, spilled once to one Parquet file per partition of leads (a
stable hash of the lead id), then validated partition by partition against the other tables.

The checks, their problems and the rejected rows are those of reading the table whole (`validation`): the checks of a
row on its own run on each batch as it is read (their verdicts travel with the spilled rows), the checks against the
leads and the as-of on each partition. What needs every event (the default as-of's sample of timestamps, the latest
timestamp, the event types' counts) is gathered on the way. Memory: one batch, then one partition, at a time.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.pipelines.config import Settings, TableSource
from leadscore.pipelines.intake.files import PARQUET_SUFFIXES
from leadscore.pipelines.intake.partitions import LeadRouter, partition_of
from leadscore.pipelines.intake.validation import (
    ROW,
    SET_ASIDE,
    CrmData,
    LeadView,
    Problem,
    _check_table,
    _Checker,
    _sparse_numbers,
    _value_counts,
    sample_step,
    validate_events_part,
    vocabulary_problem,
)
from leadscore.pipelines.memory import release_unused_memory

log = logging.getLogger(__name__)

BATCH_ROWS = 250_000  # events read at a time from the source (1M rows peaked 0.6 GiB above the batch before)
SPILL_ROWS = 2_000_000  # spilled rows held before they are written out, one file per partition (about 0.15 GB)
_REASON, _KIND = "_leadscore_reject_reason", "_leadscore_reject_kind"
# the checks run on each partition, in the order `validate_frames` runs them: their problems are listed in this order
_PARTITION_RULES = (
    "in the future",
    "far beyond the data",
    "unknown lead",
    "lead set aside",
    "lead rejected",
    "before lead created",
)


def parquet_batches(path: Path, *, columns: tuple[str, ...], batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """A Parquet file `batch_rows` at a time (`columns` dictionary-encoded, timestamps in ns), at least one frame."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leadscore.pipelines.intake.files import _timestamps_in_ns

    file = pq.ParquetFile(path, read_dictionary=[c for c in columns if c in pq.read_schema(path).names])
    empty = True
    for batch in row_group_batches(file, batch_rows):
        empty = False
        yield _timestamps_in_ns(pa.Table.from_batches([batch])).to_pandas()
    if empty:
        yield file.schema_arrow.empty_table().to_pandas()


def row_group_batches(file, batch_rows: int) -> Iterator:
    """A Parquet file's record batches, `batch_rows` at most, read one row group at a time: one reader over the
    whole file (`ParquetFile.iter_batches`) kept Arrow memory growing with the batches read (about 0.1 GB per 10M
    rows of events, pyarrow 25), a reader per row group gives it back."""
    for group in range(file.num_row_groups):
        yield from file.iter_batches(batch_size=batch_rows, row_groups=[group])


@dataclass
class PartitionFiles:
    """Each partition's rows in `folder`, appended a batch at a time: the pieces are held until `SPILL_ROWS` rows
    wait, then each partition's written as one more file of its own. An open Parquet writer keeps about 6 kB of
    metadata per row group: one writer per partition, written once per batch, held 4 GB at 290 partitions x 2,400
    batches (10M leads); files closed as they are written hold none."""

    folder: Path
    stem: str
    partitions: int
    schema: object = None
    dictionary: tuple[str, ...] = ()  # columns read back dictionary-encoded (pandas categoricals)
    pieces: dict = field(default_factory=dict)  # partition -> Arrow tables waiting to be written
    waiting: int = 0
    flushes: int = 0

    def paths(self, part: int) -> list[Path]:
        """Partition `part`'s files, in the order they were written."""
        return sorted(self.folder.glob(f"{self.stem}-{part:05d}-*.parquet"))

    def append(self, frame: pd.DataFrame, parts: np.ndarray, *, now: bool = False) -> None:
        """`frame`'s rows to their partitions (`parts`); `now`: each partition's rows written at once, one piece at a
        time (a frame as large as the spill's wait: holding its pieces too would double it)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.schema is None:
            # dictionary columns written as their values: a batch's dictionary holds every lead of the batch, and a
            # partition read back would hold every lead of the book as a category (1M categories for 35k leads)
            self.dictionary = tuple(f.name for f in table.schema if pa.types.is_dictionary(f.type))
            self.schema = pa.schema([_plain(f) for f in table.schema], metadata=table.schema.metadata)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(self.partitions + 1))
        for part in range(self.partitions):
            if bounds[part] < bounds[part + 1]:
                piece = table.take(order[bounds[part] : bounds[part + 1]]).cast(self.schema)  # a piece's copy at a time
                if now:
                    pq.write_table(piece, self.folder / f"{self.stem}-{part:05d}-{self.flushes:05d}.parquet")
                else:
                    self.pieces.setdefault(part, []).append(piece)
                del piece
        self.waiting += 0 if now else len(table)
        self.flushes += 1 if now else 0
        if self.waiting >= SPILL_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for part, pieces in self.pieces.items():
            pq.write_table(pa.concat_tables(pieces), self.folder / f"{self.stem}-{part:05d}-{self.flushes:05d}.parquet")
        self.pieces, self.waiting = {}, 0
        self.flushes += 1
        release_unused_memory()

    def close(self) -> None:
        self.flush()

    def read(self, part: int, columns: list[str] | None = None) -> pd.DataFrame | None:
        """Partition `part` (None when it has no rows), its dictionary columns as categoricals of its own values."""
        paths = self.paths(part)
        if not paths:
            return None
        dictionary = [c for c in self.dictionary if columns is None or c in columns]
        return pd.read_parquet([str(p) for p in paths], columns=columns, read_dictionary=dictionary)

    def remove(self, part: int) -> None:
        for path in self.paths(part):
            path.unlink()


def _plain(field_):
    import pyarrow as pa

    return field_.with_type(field_.type.value_type) if pa.types.is_dictionary(field_.type) else field_


@dataclass
class SpilledEvents:
    """The events spilled by partition (`spill_events`), checked row by row; `validate` finishes the checks."""

    files: PartitionFiles
    rows: int
    time_sample: np.ndarray  # the strided sample of the event times `validation._bulk_end` takes of a whole table
    problems: list[list[Problem]]  # each batch's problems
    usable: bool = True

    def latest_before(self, limit: pd.Timestamp) -> pd.Timestamp | None:
        """The latest event time at or before `limit` (rows rejected for other reasons count, as when read whole)."""
        cap, latest = limit.as_unit("ns").value, []
        for part in range(self.files.partitions):
            frame = self.files.read(part, columns=["occurred_at"])
            if frame is not None:
                ns = frame["occurred_at"].array.asi8
                ns = ns[(ns != np.iinfo(np.int64).min) & (ns <= cap)]
                latest += [int(ns.max())] if len(ns) else []
        return pd.Timestamp(max(latest), tz="UTC") if latest else None

    def validate(self, view: LeadView) -> EventValidation:
        """Every partition checked against the leads and the as-of; its clean rows routed to their lead's partition of
        leads (`LeadRouter`: by account) in `clean/`. The spill is by the lead id's own hash, so that each partition's
        checks see its own leads only; the clean rows go where their lead's account is scored."""
        router = view.router
        clean = PartitionFiles(self.files.folder.parent / "clean", "clean", self.files.partitions)
        clean.folder.mkdir(parents=True, exist_ok=True)
        result = EventValidation(clean=clean, router=router)
        result.problems = _merged_batch_problems(self.problems)
        if not self.usable:
            return result
        found, counts = [], None
        views = _views_by_partition(view, self.files.partitions)
        for part in range(self.files.partitions):
            frame = self.files.read(part)
            if frame is None:
                continue
            check, left = validate_events_part(frame.drop(columns=[_REASON, _KIND]), _restored(frame), views(part))
            found.extend(check.problems)
            part_counts = _value_counts(check.frame["event_type"])
            counts = part_counts if counts is None else counts.add(part_counts, fill_value=0)
            result.add_part(part, check, left)
            self.files.remove(part)  # the disk holds the events once
            del frame, check
            release_unused_memory()
        rank = {rule: i for i, rule in enumerate(_PARTITION_RULES)}
        result.problems += sorted(found, key=lambda p: (rank.get(p.rule, len(rank)), p.row or 0))
        vocabulary = vocabulary_problem(counts, view.known_types) if counts is not None else None
        result.problems += [vocabulary] if vocabulary is not None else []
        clean.close()
        shutil.rmtree(self.files.folder, ignore_errors=True)
        return result


def _views_by_partition(view: LeadView, partitions: int):
    """`view` for one partition at a time: only the leads of that partition (its events name no other), so that each
    partition's checks look ids up among its own leads rather than the whole book's."""
    of = {name: partition_of(pd.Series(getattr(view, name)), partitions) for name in ("gone", "valid", "seen", "aside")}
    created_of = partition_of(pd.Series(view.created.index), partitions)

    def of_partition(part: int) -> LeadView:
        subsets = {name: getattr(view, name)[of[name] == part] for name in of}
        return replace(view, created=view.created[created_of == part], **subsets)

    return of_partition


def _restored(frame: pd.DataFrame) -> _Checker:
    """The verdicts of the row-by-row checks, as they travelled with the spilled rows, in a checker again."""
    check = _Checker("events", frame.drop(columns=[_REASON, _KIND]))
    reasons = frame[_REASON]
    has = np.flatnonzero(reasons.notna().to_numpy())
    check.reasons = dict(zip(has.tolist(), reasons.iloc[has].tolist(), strict=True))
    kind = frame[_KIND].iloc[has].to_numpy()
    check.aside = set(has[kind == SET_ASIDE].tolist())
    check.broken = set(has[kind == "error"].tolist())
    return check


def _merged_batch_problems(batches: list[list[Problem]]) -> list[Problem]:
    """The batches' problems in the order a whole table lists them: by check (in the order the checks first met a
    problem, each batch running them in the same order), then by row; a problem of the whole table once."""
    order: list[tuple] = []
    for problems in batches:
        previous = -1
        for problem in problems:
            key = (problem.column, problem.rule, problem.severity)
            if key not in order:
                order.insert(previous + 1, key)
            previous = order.index(key)
    rank = {key: i for i, key in enumerate(order)}
    seen, merged = set(), []
    for problem in (p for problems in batches for p in problems):
        if problem.row is None:
            if (problem.column, problem.rule, problem.message) in seen:
                continue
            seen.add((problem.column, problem.rule, problem.message))
        merged.append(problem)
    return sorted(merged, key=lambda p: (rank[(p.column, p.rule, p.severity)], p.row or 0))


@dataclass
class EventValidation:
    """The events' verdicts gathered over the partitions; the clean rows are in `clean`, by their lead's partition."""

    clean: PartitionFiles
    router: LeadRouter
    problems: list[Problem] = field(default_factory=list)
    rejects: list[pd.DataFrame] = field(default_factory=list)
    clean_rows: int = 0
    after_as_of: int = 0
    set_aside: int = 0

    def add_part(self, part: int, check: _Checker, left: int) -> None:
        clean, rejected = check.split()
        clean = clean.drop(columns=ROW)
        if len(clean):
            self.clean.append(clean, self.router.of(clean["lead_id"]), now=True)
        self.clean_rows += len(clean)
        self.after_as_of += left
        self.set_aside += len(check.aside)
        if len(rejected):
            self.rejects.append(rejected)

    def add_to(self, data: CrmData) -> None:
        """Into `data`: the problems, the rejects (in row order, as read whole), the counts; the clean rows stay in
        their partition files (`data.events`)."""
        data.problems.extend(self.problems)
        if self.rejects:
            data.rejects["events"] = pd.concat(self.rejects, ignore_index=True).sort_values(ROW, ignore_index=True)
        if self.set_aside:
            data.set_aside["events"] = self.set_aside
        if self.after_as_of:
            data.after_as_of["events"] = data.after_as_of.get("events", 0) + self.after_as_of
        data.events = EventParts(self.clean, self.clean_rows, self.router)


@dataclass(frozen=True)
class EventParts:
    """The validated events, in Parquet files by partition of leads (`router`: their lead's account's partition)."""

    files: PartitionFiles
    rows: int
    router: LeadRouter

    @property
    def partitions(self) -> int:
        return self.files.partitions

    def read(self, part: int) -> pd.DataFrame:
        """The clean events of partition `part` (none: an empty frame of the same columns)."""
        frame = self.files.read(part)
        if frame is not None:
            return _sparse_numbers(frame, "events")
        others = sorted(self.files.folder.glob("clean-*.parquet"))
        return pd.read_parquet(others[0]).iloc[:0] if others else pd.DataFrame(columns=["lead_id", "occurred_at"])


def streamable(source: TableSource | None, settings: Settings) -> bool:
    """Whether the events can be read a batch at a time: a Parquet file, and no vendor's export conventions (those
    read the tables whole)."""
    if source is None or source.path is None or settings.exports.vendor or settings.exports.more_events:
        return False
    return Path(source.path).suffix.lower() in PARQUET_SUFFIXES


def event_rows(source: TableSource, settings: Settings) -> int:
    """The rows of the events file, from its footer (nothing read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(_path(source, settings)).metadata.num_rows


def _path(source: TableSource, settings: Settings) -> Path:
    path = Path(source.path or "")
    return path if path.is_absolute() else settings.base_dir / path


def spill_source(source: TableSource, settings: Settings, *, partitions: int, folder: Path) -> SpilledEvents:
    """`spill_events` of the events table the settings name, with the export settings that apply row by row."""
    from leadscore.pipelines.intake.exports import map_event_types, with_missing

    def prepared(raw: pd.DataFrame) -> pd.DataFrame:
        raw = with_missing(raw, source.missing_values) if source.missing_values else raw
        types = settings.exports.event_type_values
        type_column = source.columns.get("event_type", "event_type")
        return map_event_types(raw, type_column, types) if types and type_column in raw else raw

    return spill_events(
        source,
        path=_path(source, settings),
        partitions=partitions,
        folder=folder,
        timezone=settings.timezone,
        prepare=prepared,
    )


def spill_events(
    source: TableSource, *, path: Path, partitions: int, folder: Path, timezone: str, prepare=None
) -> SpilledEvents:
    """Read the events table at `path` a batch at a time, check each row on its own and append the rows, with their
    verdicts, to their partition's file in `folder`."""
    from leadscore.pipelines.intake.files import check_parquet_input

    check_parquet_input(path, name="events")
    files = PartitionFiles(folder / "spilled", "events", partitions)
    files.folder.mkdir(parents=True, exist_ok=True)
    columns = tuple(source.columns.get(role, role) for role in ("lead_id", "event_type"))
    total = _row_count(path)
    step, offset, samples, problems = sample_step(total), 0, [], []
    for raw in parquet_batches(path, columns=columns):
        raw = prepare(raw) if prepare is not None else raw
        rows = np.arange(offset + 1, offset + len(raw) + 1, dtype="int64")
        frame, check = _check_table(raw, source, "events", timezone=timezone, rows=rows)
        problems.append(check.problems)
        if frame is None:  # a problem of the whole table (a column absent, no rows): the same in every batch
            files.close()
            return SpilledEvents(files, total, np.array([], dtype="int64"), problems, usable=False)
        ns = frame["occurred_at"].array.asi8
        sampled = ns[(rows - 1) % step == 0]
        samples.append(sampled[sampled != np.iinfo(np.int64).min])
        files.append(_with_verdicts(frame, check), partition_of(frame["lead_id"], partitions))
        offset += len(raw)
        del raw, frame, check
        release_unused_memory()
    files.close()
    log.info("events: %s rows spilled to %d partitions in %s", f"{total:,}", partitions, files.folder)
    return SpilledEvents(files, total, np.concatenate(samples), problems)


def _with_verdicts(frame: pd.DataFrame, check: _Checker) -> pd.DataFrame:
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    kind = pd.Series(pd.NA, index=frame.index, dtype="string")
    if check.reasons:
        at = np.fromiter(check.reasons, dtype="int64")
        reason.iloc[at] = [check.reasons[p] for p in at]
        kind.iloc[at] = [SET_ASIDE if p in check.aside else "error" if p in check.broken else "warning" for p in at]
    return frame.assign(**{_REASON: reason, _KIND: kind})


def _row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
