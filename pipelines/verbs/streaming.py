"""Predict partition by partition, for books too large to hold: the open leads split by their account
(`intake.partitions.LeadRouter`: a stable hash of the account id, else of the lead id; the clean events are routed the
same way), each partition's leads, deals and accounts read back from their own files (`TableParts`) and scored in
chunks as `scoring.score_open_leads` scores the whole book, its rows sorted and set aside in a temporary Parquet file
with each lead's account; then the partitions merged in the order of the whole run (probability, highest first, then
lead id) and written a block at a time to the scores file and the score history. Only the sort keys (probability,
lead id) of every lead are held at once: no table, feature matrix, SHAP values or output frame of the whole book.

Every value is the one-pass value: a lead's features see only its own events and its account's leads and deals (all
in its partition), the percentile and drift are taken over every scored lead.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.keys import positions
from leadscore.features.spine import scoring_spine
from leadscore.models.scores import percentile_in_run
from leadscore.pipelines.config import Settings
from leadscore.pipelines.intake.partitions import TableParts, partition_of
from leadscore.pipelines.intake.streamed import row_group_batches
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.memory import release_unused_memory, repeated_text_as_categories
from leadscore.pipelines.outputs.files import frame_writer, neutralise_carriage_returns, neutralise_formulas
from leadscore.pipelines.outputs.history import history_rows, previous_runs, run_file
from leadscore.pipelines.verbs.movement import MovementTally, with_explained, with_movement
from leadscore.pipelines.verbs.scoring import (
    OUTPUT_COLUMNS,
    Gathered,
    RunLabels,
    _drift,
    _rejects,
    _score,
    _timed,
    add_run_columns,
    band_cutoffs,
    explained_of,
    rejects_path,
    score_chunks,
)

log = logging.getLogger(__name__)

BLOCK_ROWS = 25_000  # scores written at a time


def read_rows(partitions: int) -> int:
    """Rows read at a time from each partition's sorted scores while merging (their files' row groups): every
    partition holds up to twice this many at once, and a scored row with its reasons and contributions takes about
    1.3 kB, so it shrinks as the partitions grow in number (2,048 rows x 87 partitions held 0.4 GB at 3M leads): about
    a block's share of each partition, at least 128 rows."""
    return max(128, min(2_048, BLOCK_ROWS // max(partitions, 1)))


_COUNTED = ("cell", "stage", "band", "action")  # the summary's leads per ...
# what a lead's movement needs of its previous production run, carried beside its scored row as previous_<column>
_PREVIOUS = ("as_of", "score", "margin", "model_name", "model_version", "top_contributions")


def partitions_for(settings: Settings, events: int) -> int:
    """How many partitions predict splits the leads into: `output.partitions`, or with "auto" one per
    `output.partition_events` events (a book with fewer events: 1, today's single pass)."""
    wanted = settings.output.partitions
    return max(1, math.ceil(events / settings.output.partition_events)) if wanted == "auto" else int(wanted)


@dataclass
class Partitioned:
    """Pass one's result: each partition's scored rows (sorted) in `folder`, and every lead's sort key."""

    folder: Path
    gathered: Gathered  # drift counts, rows outside the training range and timings, over every partition
    probability: list[np.ndarray] = field(default_factory=list)
    lead_id: list = field(default_factory=list)  # Arrow string arrays, one per partition
    failed: list[pd.Series] = field(default_factory=list)  # leads whose probability is not finite

    def path(self, part: int) -> Path:
        return self.folder / f"scored-{part:05d}.parquet"


@dataclass
class StreamedResult:
    """What `Scored` holds for the one-pass run, less the scores themselves (they are in the files)."""

    head: pd.DataFrame  # the run's best rows, for the summary printed
    rejects: pd.DataFrame
    drift: pd.Series
    summary: dict
    timings: dict[str, float]
    outside_range: pd.Series

    @property
    def scores(self) -> pd.DataFrame:
        return self.head


def score_partitions(
    settings: Settings,
    data: CrmData,
    model,
    wrapper,
    *,
    lead_side: dict[str, TableParts],
    folder: Path,
    progress: Callable[[int], None] | None = None,
) -> Partitioned:
    """Pass one: every partition of open leads scored (`scoring.score_chunks`, as the single pass) from its own leads,
    deals, accounts (`lead_side`) and events, and set aside, sorted, in `folder`, with each lead's account; with the
    score history on, each lead's previous production run beside it."""
    import pyarrow as pa

    result, cutoffs = Partitioned(folder, Gathered(wrapper_profile(wrapper))), band_cutoffs(settings, wrapper)
    for part, part_data in _partitions_of(data, lead_side):
        with _timed(result.gathered.timings, "spine"):
            spine = scoring_spine(part_data.tables["leads"], part_data.tables["opportunities"], as_of=data.as_of)
            spine = spine.sort_values("lead_id", kind="stable").reset_index(drop=True)
        if not len(spine):  # nothing to set aside: the partition's place in the merge stays, empty
            result.probability.append(np.array([], dtype="float64"))
            result.lead_id.append(pa.array([], pa.string()))
            continue
        events = data.events.read(part)
        parts, _ = score_chunks(
            settings,
            part_data,
            spine,
            events,
            model,
            wrapper,
            gathered=result.gathered,
            chunk_size=settings.output.chunk_size,
            cutoffs=cutoffs,
            progress=progress,
        )
        del events
        _set_aside(settings, part_data, parts, part=part, into=result)
        del part_data
    return result


def spill_lead_side(data: CrmData, folder: Path) -> dict[str, TableParts]:
    """The leads, their deals and the accounts taken out of `data` and written by partition (`data.events.router`:
    an account's leads, their deals and the account together), so that no table of the book is held while scoring."""
    router, partitions = data.events.router, data.events.partitions
    held = {
        "leads": router.of(data.tables["leads"]["lead_id"]),
        "opportunities": router.of(data.tables["opportunities"]["lead_id"]),
    }
    if "accounts" in data.tables:
        held["accounts"] = partition_of(data.tables["accounts"]["account_id"], partitions)
    spilled = {}
    for name, parts in held.items():
        frame = data.tables.pop(name)
        spilled[name] = TableParts.write(frame, parts, partitions=partitions, folder=folder / name)
        del frame
    release_unused_memory()
    return spilled


def _partitions_of(data: CrmData, lead_side: dict[str, TableParts]):
    """Each partition's number and its CRM: the leads of the accounts routed there, their deals and accounts, so that
    a chunk's account scope is looked up among its partition's leads, not the book's."""
    for part in range(data.events.partitions):
        yield part, replace(data, tables={**data.tables, **{name: t.read(part) for name, t in lead_side.items()}})


def _set_aside(settings: Settings, data: CrmData, parts: list[pd.DataFrame], *, part: int, into: Partitioned) -> None:
    """One partition's scored chunks, sorted, with their previous runs, into its file; its sort keys kept."""
    import pyarrow as pa

    with _timed(into.gathered.timings, "assembly"):
        scored = pd.concat(parts, ignore_index=True)
        parts.clear()
        finite = np.isfinite(scored["probability"].to_numpy(dtype="float64"))
        into.failed.append(scored.loc[~finite, "lead_id"])
        scored = _sorted(scored.loc[finite])
        scored["account_id"] = _accounts_of(scored["lead_id"], data.tables["leads"])
        if settings.history.enabled:
            scored = _with_previous(scored, previous_runs(settings, data.as_of, scored["lead_id"].astype("string")))
        scored.to_parquet(into.path(part), index=False, row_group_size=read_rows(data.events.partitions))
        into.probability.append(scored["probability"].to_numpy(dtype="float64"))
        into.lead_id.append(pa.array(scored["lead_id"].astype("string")))
    release_unused_memory()


def _accounts_of(lead_id: pd.Series, leads: pd.DataFrame) -> pd.Series:
    """Each scored lead's account (as text: the partitions' files share one type), as the merge adds it."""
    if "account_id" not in leads:
        return pd.Series(pd.NA, index=lead_id.index, dtype="string")
    at = positions(lead_id, pd.Index(leads["lead_id"]))  # every scored lead is in its partition's leads
    return pd.Series(leads["account_id"].array.take(at, allow_fill=True), index=lead_id.index).astype("string")


def _with_previous(scored: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Each scored lead's previous production run (`previous_runs`) beside it, as previous_<column>."""
    matched = previous.set_index("lead_id")[list(_PREVIOUS)].reindex(scored["lead_id"].astype("string").to_numpy())
    return scored.assign(**{f"previous_{c}": matched[c].array for c in _PREVIOUS})


def _previous_of(block: pd.DataFrame) -> pd.DataFrame:
    """The previous runs carried beside a block's rows (taken out of it), as `previous_runs` gives them."""
    columns = {c: block.pop(f"previous_{c}") for c in _PREVIOUS}
    found = columns["as_of"].notna().to_numpy()
    return pd.DataFrame({"lead_id": block["lead_id"].astype("string"), **columns})[found].reset_index(drop=True)


def wrapper_profile(wrapper) -> dict:
    return getattr(wrapper, "reference_profile", {}) or {}


def _sorted(scored: pd.DataFrame) -> pd.DataFrame:
    """By probability (highest first), then lead id: the order of the scores file (`scoring._sorted_by_score`)."""
    order = _order(scored["probability"].to_numpy(dtype="float64"), scored["lead_id"].astype("string"))
    return scored.take(order).reset_index(drop=True)


def _order(probability: np.ndarray, lead_id) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = lead_id if isinstance(lead_id, pa.ChunkedArray | pa.Array) else pa.array(lead_id)
    keys = pa.table({"probability": probability, "lead_id": ids})
    return pc.sort_indices(keys, sort_keys=[("probability", "descending"), ("lead_id", "ascending")]).to_numpy()


class _SortedReader:
    """One partition's sorted scores, handed out from the top a given number of rows at a time."""

    def __init__(self, path: Path, rows: int) -> None:
        import pyarrow.parquet as pq

        self.batches = row_group_batches(pq.ParquetFile(path), rows) if path.exists() else iter(())
        self.buffer: list = []
        self.buffered = 0

    def take(self, rows: int) -> pd.DataFrame:
        import pyarrow as pa

        while self.buffered < rows:
            batch = next(self.batches)
            self.buffer.append(batch)
            self.buffered += batch.num_rows
        table = pa.Table.from_batches(self.buffer)
        self.buffer = table.slice(rows).to_batches()
        self.buffered -= rows
        return table.slice(0, rows).to_pandas()


def merged_blocks(settings: Settings, data: CrmData, done: Partitioned, model, wrapper, labels: RunLabels, *, account):
    """Pass two: the scored rows of every partition in the run's order, with score, percentile, account (given back
    the leads table's type, `account`) and the run's labels (`scoring.add_run_columns`), `BLOCK_ROWS` at a time."""
    import pyarrow as pa

    probability = np.concatenate(done.probability) if done.probability else np.array([], dtype="float64")
    order = _order(
        probability, pa.chunked_array([ids.cast(pa.large_string()) for ids in done.lead_id], pa.large_string())
    )
    part_of = np.repeat(np.arange(len(done.probability), dtype="int32"), [len(p) for p in done.probability])[order]
    probability = probability[order]
    del order
    score = _score(model, wrapper, probability)
    percentile = percentile_in_run(probability)
    rows = read_rows(data.events.partitions)
    readers = [_SortedReader(done.path(part), rows) for part in range(len(done.probability))]
    for start in range(0, len(probability), BLOCK_ROWS):
        block_parts = part_of[start : start + BLOCK_ROWS]
        counts = np.bincount(block_parts, minlength=len(readers))
        pieces = [readers[p].take(int(n)) for p, n in enumerate(counts) if n]
        stacked = pd.concat(pieces, ignore_index=True)
        inverse = np.empty(len(block_parts), dtype="int64")
        inverse[np.argsort(block_parts, kind="stable")] = np.arange(len(block_parts))
        block = stacked.take(inverse).reset_index(drop=True)
        window = slice(start, start + BLOCK_ROWS)
        accounts = block.pop("account_id")
        owners = pd.DataFrame({"lead_id": block["lead_id"]})
        if account is not None:  # leads without accounts: the single pass's missing account, as it writes it
            owners["account_id"] = accounts.astype(account)
        add_run_columns(block, owners, labels, score=score[window], percentile=percentile[window])
        yield block
        del block, stacked, pieces
        release_unused_memory()  # each block's pages back before the next block is read (0.5 GB kept at 1M leads)


def output_blocks(settings: Settings, blocks, model, *, tally: MovementTally | None):
    """Each merged block as the single pass publishes it: the scores (with their movement against the previous runs
    when `tally` is given) and the history's rows (with each lead's margin and top contributions)."""
    for block in blocks:
        explained = explained_of(block)
        previous = _previous_of(block) if "previous_as_of" in block else None
        scores = block[OUTPUT_COLUMNS]
        if tally is not None:
            scores = with_movement(settings, scores, explained, model, previous=previous, tally=tally)
        yield scores, with_explained(scores, explained)


class BlockWriter:
    """Scores appended a block at a time to one CSV or Parquet file (the format `path`'s suffix names), as
    `outputs.files.frame_writer` writes them whole."""

    def __init__(self, temp: Path, *, csv: bool) -> None:
        self.temp, self.csv = temp, csv
        self.handle = open(temp, "w", encoding="utf-8", newline="") if csv else None  # noqa: SIM115 - closed in close
        self.parquet = None

    def write(self, block: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.csv:
            safe = neutralise_carriage_returns(neutralise_formulas(block))
            safe.to_csv(self.handle, index=False, header=self.handle.tell() == 0, lineterminator="\n")
            return
        table = pa.Table.from_pandas(block, preserve_index=False)
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.temp, table.schema)
        self.parquet.write_table(table.cast(self.parquet.schema))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.parquet is not None:
            self.parquet.close()


class RunSummary:
    """The summary `scoring.summarise` gives, gathered a block at a time."""

    def __init__(self) -> None:
        self.counts = {column: Counter() for column in _COUNTED}
        self.rows, self.total, self.head = 0, 0.0, None

    def add(self, block: pd.DataFrame, *, top: int) -> None:
        for column in _COUNTED:
            self.counts[column].update(block[column].value_counts().to_dict())
        self.rows += len(block)
        self.total += float(block["probability"].sum())
        if self.head is None:
            self.head = block.head(top).copy()

    def summary(self, rejects: pd.DataFrame, drift: pd.Series, cutoffs) -> dict:
        cell = self.counts["cell"]
        stage, band, action = (self.counts[c] for c in ("stage", "band", "action"))
        return {
            "scored": self.rows,
            "rejected": len(rejects),
            "mean_probability": round(self.total / self.rows, 4) if self.rows else None,
            "leads_per_cell": dict(sorted(cell.items())),
            "leads_per_stage": dict(sorted(stage.items(), key=lambda kv: -kv[1])),
            "leads_per_band": {b: int(n) for b, n in sorted(band.items(), key=lambda kv: -kv[1])},
            "leads_per_action": {a: int(n) for a, n in sorted(action.items(), key=lambda kv: -kv[1])},
            "max_psi": round(float(drift.max()), 4) if len(drift) else None,
            "bands": None if cutoffs is None else asdict(cutoffs),
        }


def finish(settings: Settings, data: CrmData, done: Partitioned, wrapper, run: RunSummary) -> StreamedResult:
    """The run's rejects, drift (every scored lead's probability) and summary, once every block is written."""
    failed = pd.concat(done.failed, ignore_index=True) if done.failed else pd.Series([], dtype="string")
    rejects = _rejects(data, failed)
    gathered = done.gathered
    with _timed(gathered.timings, "drift"):
        probability = pd.DataFrame({"probability": np.concatenate(done.probability) if done.probability else []})
        drift = _drift(gathered.profile, gathered.drift_counts, probability)
    summary = run.summary(rejects, drift, band_cutoffs(settings, wrapper))
    head = run.head if run.head is not None else pd.DataFrame(columns=OUTPUT_COLUMNS)
    return StreamedResult(head, rejects, drift, summary, gathered.timings, gathered.outside_range())


def say_validation_rejects(settings: Settings, data: CrmData, echo: Callable[..., None]) -> None:
    """The warning predict prints when validation left rows out."""
    if data.rejects:
        rejected = sum(len(r) for r in data.rejects.values())
        written = ", ".join(str(settings.output_dir / "rejects" / f"{name}.csv") for name in data.rejects)
        echo(f"warning: {rejected:,} row(s) rejected by validation, with their reasons in {written}", err=True)


def predict_in_partitions(
    settings: Settings,
    model,
    wrapper,
    labels: RunLabels,
    *,
    as_of,
    partitions: int,
    target: Path,
    production: bool,
    publication,
    echo: Callable[..., None],
    top: int = 10,
) -> tuple[StreamedResult, pd.Timestamp, str, str | None, dict | None]:
    """`leadscore predict` partition by partition: the events spilled and validated by partition (in a temporary
    folder of $TMPDIR, removed at the end), the partitions scored, then merged into the scores file and the score
    history, staged in `publication`. Returns the result, the as-of, where the scores and the history go, and the
    score movement's counts (None without a score history)."""
    import tempfile

    from tqdm import tqdm

    from leadscore.pipelines.intake.ground import check_open_leads, load_valid_crm

    with tempfile.TemporaryDirectory(prefix="leadscore-partitions-") as work:
        start = time.perf_counter()
        data = load_valid_crm(settings, as_of=as_of, publication=publication, partitions=partitions, spill=Path(work))
        say_validation_rejects(settings, data, echo)
        check_open_leads(data)
        data.tables["leads"] = repeated_text_as_categories(data.tables["leads"])  # one type for every partition
        leads = len(data.tables["leads"])
        account = data.tables["leads"]["account_id"].dtype if "account_id" in data.tables["leads"] else None
        lead_side = spill_lead_side(data, Path(work) / "lead_side")
        log.info("predict: %d partitions, loaded and validated in %.1f s", partitions, time.perf_counter() - start)
        with tqdm(total=leads, unit="lead", desc="predict", disable=None) as bar:
            done = score_partitions(
                settings, data, model, wrapper, lead_side=lead_side, folder=Path(work), progress=bar.update
            )
        history = history_target(settings, data.as_of, labels) if settings.history.enabled else None
        tally = MovementTally() if history is not None else None  # movement needs the history, as in one pass
        run = RunSummary()

        def write(temps: list[Path]) -> None:
            scores = BlockWriter(temps[0], csv=target.suffix.lower() == ".csv")
            rows = BlockWriter(temps[1], csv=False) if history is not None else None
            blocks = merged_blocks(settings, data, done, model, wrapper, labels, account=account)
            for block, explained in output_blocks(settings, blocks, model, tally=tally):
                scores.write(block)
                if rows is not None:
                    rows.write(history_rows(explained, production=production))
                run.add(block, top=top)
            scores.close()
            if rows is not None:
                rows.close()

        with _timed(done.gathered.timings, "assembly"):
            publication.write_together([target, *([history] if history is not None else [])], write)
            release_unused_memory()
        result = finish(settings, data, done, wrapper, run)
    publication.write(rejects_path(target), frame_writer(result.rejects, rejects_path(target)))
    if tally is not None:
        tally.note_unexplained()
    where = None if history is None else str(settings.history_dir)
    return result, data.as_of, str(target), where, None if tally is None else tally.summary()


def history_target(settings: Settings, as_of: pd.Timestamp, labels: RunLabels) -> Path:
    """The one file of this run in the Parquet score history (`outputs.history.run_file`)."""
    return run_file(settings.history_dir, as_of, labels.model_name, labels.model_version)
