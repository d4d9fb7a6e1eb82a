"""The training set: spine -> point-in-time features (CRM tables or a flat export), with its manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import build_features, feature_specs, features_of_tables
from leadscore.features.flat import FlatSpec, flat_training_set
from leadscore.features.registry import all_features
from leadscore.features.spine import CutoffPolicy, build_spine, scoring_spine
from leadscore.pipelines.config import Settings
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.intake.exports import without_missing_files
from leadscore.pipelines.intake.flat_checks import check_flat_table, open_rule
from leadscore.pipelines.intake.flat_source import flat_location, flat_table_source, load_flat_export
from leadscore.pipelines.intake.ground import load_valid_crm
from leadscore.pipelines.intake.sources import read_source
from leadscore.pipelines.intake.validation import CrmData
from leadscore.pipelines.memory import release_unused_memory
from leadscore.pipelines.outputs.files import frame_writer
from leadscore.pipelines.outputs.publish import Publication, publish

log = logging.getLogger(__name__)
KEY_COLUMNS = ("lead_id", "cutoff_time", "converted")
# the time order of the rows, explicit: flat rows without a time column keep their order through a Parquet file
ORDER_COLUMN = "row_order"
# lead age and recency: where old and dormant leads sit; the training rows must cover the scored leads on them
COVERAGE_FEATURES = ("lead_age_days", "events_days_since_last")


@dataclass
class TrainingSet:
    frame: pd.DataFrame
    feature_names: list[str]
    manifest: dict = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)


def input_fingerprint(settings: Settings) -> str:
    """A content hash of every input table (file bytes, or the rows of a SQL table); optional files that are absent
    are left out, as `load_crm` leaves them out."""
    digest = hashlib.sha256()
    settings, _ = without_missing_files(settings)
    sources = (
        [("flat", settings.flat.path if settings.flat.path is not None else flat_table_source(settings))]
        if settings.mode == "flat"
        else [(n, getattr(settings.tables, n)) for n in ("leads", "accounts", "events", "opportunities")]
    )
    # the second tables a project reads: the flat label's outcomes, further activity exports
    if settings.mode == "flat" and settings.flat.label_from is not None:
        sources.append(("flat.label_from", settings.flat.label_from.path))
    sources += [(f"exports.more_events[{i}]", s) for i, s in enumerate(settings.exports.more_events)]
    for name, source in sources:
        if source is None:
            continue
        digest.update(name.encode())
        path = source if isinstance(source, str) else source.path
        if path is not None:
            with open(settings.resolve(path), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            frame = read_source(source, name=name, base_dir=settings.base_dir)
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def content_fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """A hash of what the tables hold, not of how they were stored: the same rows in another order, another file
    format or compression, with integers written as decimals or times in another unit give the same key. Each row is
    hashed over its columns in name order (numbers as float64, times as UTC nanoseconds, text and categories by
    value), and the row hashes are sorted."""
    digest = hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        columns = sorted(str(c) for c in frame.columns)
        digest.update(f"{name}:{','.join(columns)}:{len(frame)};".encode())
        canonical = pd.DataFrame({c: _canonical(frame[c]) for c in columns}, index=pd.RangeIndex(len(frame)))
        rows = pd.util.hash_pandas_object(canonical, index=False).to_numpy() if columns else np.zeros(0, "uint64")
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()


def _canonical(column: pd.Series) -> pd.Series:
    values = column.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):  # the same instants in any unit or time zone
        return pd.to_datetime(values, utc=True).dt.as_unit("ns")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values


def crm_training_set(settings: Settings, data: CrmData) -> TrainingSet:
    t = data.tables
    policy = settings.cutoff_policy()
    spine, stats = build_spine(t["leads"], t["opportunities"], policy, as_of=data.as_of)
    names = settings.selected_features()
    log.info(
        "spine: %d rows (%d positives, %d censored); building %d features",
        stats.rows,
        stats.positives,
        stats.censored,
        len(names),
    )
    frame = lead_rows(settings, data, names, spine)
    frame.insert(frame.columns.get_loc("converted") + 1, ORDER_COLUMN, np.arange(len(frame), dtype="int64"))
    specs = feature_specs(settings.feature_params())
    manifest = {
        "mode": "crm",
        "as_of": data.as_of.isoformat(),
        "spine": asdict(stats),
        "cutoff_policy": asdict(policy),
        "cutoff_range": _range(frame["cutoff_time"]),
        "rejected_rows": {name: len(rows) for name, rows in data.rejects.items()},
        "sample_weight": "1 / (rows kept for the lead); the model scales the weights to average 1",
        "coverage": scoring_coverage(settings, data, frame),
        "new_lead_base_rate": new_lead_base_rate(data, policy),
        "content_sha256": content_fingerprint(data.tables),
    }
    late = settings.filled_late()
    if late:
        # said by `train` and `build-training-set` (filled_late_lines), and kept in the manifest MLflow logs
        manifest["filled_late"] = {"kept": settings.features.feature_set in settings.features.sets, "features": late}
    categorical = [n for n in names if specs[n].kind == "categorical"]
    return TrainingSet(frame, names, manifest, categorical)


TRAINING_BLOCK_LEADS = 100_000  # leads whose spine rows get their features together


def features_by_block(
    spine: pd.DataFrame, tables: dict, names: list[str], params, *, block_leads: int = TRAINING_BLOCK_LEADS
) -> pd.DataFrame:
    """`build_features` over blocks of leads (`by_lead_blocks`), in the spine's row order."""

    def build(part: pd.DataFrame, scoped: dict) -> pd.DataFrame:
        return features_of_tables(part, scoped, feature_names=names, params=params)

    return by_lead_blocks(spine, tables, build, block_leads=block_leads)


def by_lead_blocks(
    spine: pd.DataFrame, tables: dict, build, *, block_leads: int = TRAINING_BLOCK_LEADS
) -> pd.DataFrame:
    """`build(rows, tables)` (a frame row for row with `rows`: features, grades) over blocks of `block_leads` leads
    (every cutoff of a lead in one block), put back in the spine's row order. Why: the point-in-time joins a feature
    context keeps grow with its rows and live until its last column (316k snapshot rows: about 1 GiB; 3.16M rows: an
    11.9 GiB peak); block by block they are freed. A block sees what any builder reads, as predict's chunks do: the
    leads of its leads' accounts, their deals, its own events."""
    from leadscore.features.keys import positions
    from leadscore.pipelines.verbs.scoring import account_scope

    lead_ids = pd.Index(spine["lead_id"].unique())
    if len(lead_ids) <= block_leads:
        return build(spine, tables)
    block_of_lead = np.arange(len(lead_ids)) // block_leads
    block = block_of_lead[positions(spine["lead_id"], lead_ids)]
    events = tables.get("events")
    if events is not None:  # -1: an event of a lead outside the spine
        lookup, lead = np.append(block_of_lead, -1), events["lead_id"]
        if isinstance(lead.dtype, pd.CategoricalDtype):  # each distinct lead once, then by code (-1: missing)
            event_block = np.append(lookup[positions(lead.cat.categories, lead_ids)], -1)[lead.array.codes]
        else:
            event_block = lookup[positions(lead, lead_ids)]
    parts, order = [], []
    for i in range(int(block_of_lead[-1]) + 1):
        rows = np.flatnonzero(block == i)
        part = spine.iloc[rows]
        scoped = {**tables, **account_scope(tables["leads"], tables["opportunities"], part["lead_id"])}
        if events is not None:
            scoped["events"] = events.iloc[np.flatnonzero(event_block == i)]
        parts.append(build(part, scoped))
        order.append(rows)
        release_unused_memory()
    return _in_spine_order(parts, np.argsort(np.concatenate(order), kind="stable"))


def _in_spine_order(parts: list[pd.DataFrame], order: np.ndarray) -> pd.DataFrame:
    """Blocks one under the other, rows taken in `order`, one column at a time (never a second copy of the whole
    frame); a categorical column stays categorical over the union of the blocks' levels (pandas would make it
    object)."""
    from pandas.api.types import union_categoricals

    columns = {}
    for column in parts[0].columns:
        pieces = [part.pop(column) for part in parts]  # each block's column is freed once joined
        if all(isinstance(piece.dtype, pd.CategoricalDtype) for piece in pieces):
            joined = pd.Series(union_categoricals(pieces, sort_categories=True))
        else:
            joined = pd.concat(pieces, ignore_index=True)
        columns[column] = joined.take(order).reset_index(drop=True)
    return pd.DataFrame(columns)


def filled_late_lines(manifest: dict) -> list[str]:
    """The features reading lead fields that sales fills in later, without the time each was filled in: left out of
    a built-in feature set, or kept (a set of your own asked for them) with today's values at every past cutoff."""
    late = manifest.get("filled_late")
    if not late:
        return []
    fields = sorted({f for listed in late["features"].values() for f in listed})
    features = ", ".join(late["features"])
    settle = f"give tables.leads.known_at (the column saying when each was filled in) for {', '.join(fields)}"
    if late["kept"]:
        return [
            f"warning: {features} read {', '.join(fields)}, which sales fills in after the lead is created, with "
            f"no known_at time: today's values are read at every past cutoff (a leak); {settle}"
        ]
    return [
        f"warning: left out of the feature set: {features} ({', '.join(fields)} are filled in by sales after the "
        f"lead is created, and their values of today would leak into past cutoffs); {settle} to use them"
    ]


def spine_as_of(settings: Settings, data: CrmData, as_of: pd.Timestamp) -> pd.DataFrame:
    """The labelled, weighted spine that `train --as-of` would build on that date, read from tables that run later.

    The same rows as from the tables cut at `as_of`: cutoffs are proposed up to `as_of`, a lead is open at a cutoff
    when no deal closed at or before it, thinning ranks only the open cutoffs up to `as_of`, and a row is labelled
    only when its horizon ended by `as_of` (so by deals closed by then); weights count the rows kept by then. No
    later deal, cutoff or row can enter (tests/test_pipelines/test_backtest_steps.py)."""
    t = data.tables
    spine, _ = build_spine(t["leads"], t["opportunities"], settings.cutoff_policy(), as_of=as_of)
    return spine


def with_rows(
    settings: Settings,
    data: CrmData,
    training: TrainingSet,
    spine: pd.DataFrame,
    *,
    key: str = "lead_id",
    build: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> tuple[TrainingSet, np.ndarray]:
    """The training set with the rows of `spine` it lacks appended (their features built), and the position of each
    `spine` row in it. A row's features look only before its cutoff, so a (`key`, cutoff) already built is reused
    whatever the as-of date it was built for; labels and weights stay the caller's. `build`: the training rows of a
    spine (default: the lead features of `training`)."""
    frame = training.frame
    keys = pd.MultiIndex.from_frame(frame[[key, "cutoff_time"]])
    position = keys.get_indexer(pd.MultiIndex.from_frame(spine[[key, "cutoff_time"]]))
    missing = spine[position < 0].reset_index(drop=True)
    if len(missing):
        # a lead row's label and weight are the caller's: only its keys are built on
        lead_keys = missing[list(KEY_COLUMNS)]
        extra = build(missing) if build else lead_rows(settings, data, training.feature_names, lead_keys)
        if ORDER_COLUMN in frame:
            extra[ORDER_COLUMN] = np.arange(len(frame), len(frame) + len(extra), dtype="int64")
        position[position < 0] = np.arange(len(frame), len(frame) + len(extra))
        frame = pd.concat([frame, extra.reindex(columns=frame.columns)], ignore_index=True)
    grown = TrainingSet(frame, training.feature_names, training.manifest, training.categorical)
    return grown, position


def lead_rows(settings: Settings, data: CrmData, names: list[str], spine: pd.DataFrame) -> pd.DataFrame:
    """The spine's rows with their lead features `names`, built block by block of leads (`features_by_block`)."""
    return features_by_block(spine, data.tables, names, settings.feature_params())


def new_lead_base_rate(data: CrmData, policy: CutoffPolicy) -> dict:
    """What a lead converts at on arrival: of the leads scored at their first cutoff (`delay_days` after creation)
    whose horizon has passed, the share won within it. The priority bands are set against it: the open leads' own
    rate is no yardstick, most of them being old leads that did not convert."""
    first = replace(policy, policy="fixed_delay", max_snapshots=1)
    _, stats = build_spine(data.tables["leads"], data.tables["opportunities"], first, as_of=data.as_of)
    return _rate(stats.positives, stats.rows, f"leads at {policy.delay_days:g} day(s) after creation")


def _rate(conversions: int, leads: int, who: str) -> dict:
    return {
        "rate": round(conversions / leads, 6) if leads else None,
        "leads": int(leads),
        "conversions": int(conversions),
        "definition": f"{who}: share converted within the horizon",
    }


def base_rate_of(training: TrainingSet) -> dict:
    """The training set's base rate of new leads: from its manifest, else (a training set written before it was
    recorded) from each lead's earliest row, the nearest a training set comes to the lead on arrival."""
    if training.manifest.get("new_lead_base_rate"):
        return training.manifest["new_lead_base_rate"]
    frame = training.frame.sort_values("cutoff_time", kind="stable") if "cutoff_time" in training.frame else None
    first = (frame if frame is not None else training.frame).drop_duplicates("lead_id")
    return _rate(int(first["converted"].sum()), len(first), "each lead's earliest training row")


def scoring_coverage(settings: Settings, data: CrmData, frame: pd.DataFrame) -> dict:
    """For lead age and recency: the training rows' range and the share of the leads `predict` would score at
    `as_of` that fall outside it (a model cannot know what it has never seen: trees extrapolate flat)."""
    t = data.tables
    spine = scoring_spine(t["leads"], t["opportunities"], as_of=data.as_of)
    missing = [c for c in COVERAGE_FEATURES if c not in frame]
    training = frame
    if missing and len(frame):
        extra = build_features(
            frame[["lead_id", "cutoff_time"]],
            leads=t["leads"],
            events=t.get("events"),
            feature_names=missing,
            params=settings.feature_params(),
        )
        training = frame.assign(**{c: extra[c].to_numpy() for c in missing})
    scored = build_features(
        spine,
        leads=t["leads"],
        events=t.get("events"),
        feature_names=list(COVERAGE_FEATURES),
        params=settings.feature_params(),
    )
    report: dict = {"scored_leads": len(scored)}
    for column in COVERAGE_FEATURES:
        values = pd.to_numeric(training[column], errors="coerce") if len(training) else pd.Series(dtype=float)
        lo, hi = (float(values.min()), float(values.max())) if values.notna().any() else (np.nan, np.nan)
        v = pd.to_numeric(scored[column], errors="coerce")
        outside = ((v < lo) | (v > hi)) if np.isfinite(lo) else v.notna()
        report[column] = {
            "training_range": [round(lo, 2), round(hi, 2)] if np.isfinite(lo) else None,
            "scored_median": round(float(v.median()), 2) if v.notna().any() else None,
            "scored_outside_share": round(float(outside.mean()), 4) if len(v) else 0.0,
        }
    return report


def coverage_lines(coverage: dict | None) -> list[str]:
    """The coverage report in words, one line per feature."""
    if not coverage:
        return []
    lines = []
    for column in COVERAGE_FEATURES:
        c = coverage.get(column)
        if c and c["training_range"] is not None:
            lo, hi = c["training_range"]
            lines.append(
                f"coverage: {c['scored_outside_share']:.1%} of the {coverage['scored_leads']:,} leads scored "
                f"at as_of lie outside the training range of {column} [{lo:g}, {hi:g}] "
                f"(scored median {c['scored_median']})"
            )
    return lines


def flat_rows_lines(manifest: dict) -> list[str]:
    """Flat mode: the rows trained on and the open rows left out (predict scores those)."""
    if manifest.get("mode") != "flat" or "unlabelled_rows" not in manifest:
        return []
    return [
        f"flat export: {manifest['rows']:,} rows trained ({manifest['positives']:,} positive), "
        f"{manifest['unlabelled_rows']:,} open ({manifest.get('open_rule', 'empty label')}: not trained, scored by "
        "predict)"
    ]


def flat_spec(settings: Settings) -> FlatSpec:
    return settings.flat.spec()


def flat_training_set_from(settings: Settings) -> TrainingSet:
    f = settings.flat
    raw = load_flat_export(settings)  # the file or SQL table, plus the columns derived in config
    check_flat_table(raw, f, where=flat_location(settings))
    result = flat_training_set(raw, flat_spec(settings))
    frame = result.training_set
    manifest = {
        "mode": "flat",
        "unlabelled_rows": result.unlabelled,
        "open_rule": open_rule(f),
        "row_id": f.id_column or "row number (1 = first data row)",
        "excluded_leaking_columns": result.excluded_leaking,
        "time_order": f.time_column or (f"column {f.order_column}" if f.order_column else "row order"),
        "cutoff_range": _range(frame["cutoff_time"]) if f.time_column else None,
        # a flat row is a lead seen once, at its own time
        "new_lead_base_rate": _rate(int(frame["converted"].sum()), len(frame), "training rows (one per lead)"),
        "content_sha256": content_fingerprint({"flat": frame}),
    }
    return TrainingSet(frame, result.feature_names, manifest, list(f.categorical))


def build_training_set(settings: Settings, *, data: CrmData | None = None) -> TrainingSet:
    """The training set for either mode, with its manifest."""
    check_feature_count(settings)
    if settings.mode == "flat":
        training = flat_training_set_from(settings)
    else:
        training = crm_training_set(settings, data if data is not None else load_valid_crm(settings))
    frame = training.frame
    training.manifest.update(
        rows=len(frame),
        positives=int(frame["converted"].sum()),
        positive_rate=round(float(frame["converted"].mean()), 6) if len(frame) else None,
        horizon_days=settings.spine.horizon_days if settings.mode == "crm" else None,
        feature_set=settings.features.feature_set if settings.mode == "crm" else "flat",
        features=training.feature_names,
        categorical_features=training.categorical,
        input_sha256=input_fingerprint(settings),
    )
    return training


def sample_time(training: TrainingSet) -> pd.Series | None:
    """The rows' cutoff times (their time order), or None for row-ordered flat data."""
    times = training.frame["cutoff_time"]
    return None if times.isna().all() else times


def sample_weight(training: TrainingSet) -> pd.Series | None:
    """Per-row weights of the spine (every lead counts the same), or None (flat data: every row counts once)."""
    return training.frame.get("sample_weight")


def fit_recipe(model, training: TrainingSet, rows: np.ndarray, features: list[str]):
    """Fit an unfitted model (a recipe) on the given rows, in time order, with their times and weights."""
    frame = training.frame
    every = len(rows) == len(frame) and bool((np.diff(rows) == 1).all())  # no copy of the rows for a fit on all
    times, weights = sample_time(training), sample_weight(training)
    return model.fit(
        frame[features] if every else frame[features].iloc[rows],  # the columns first: one copy, of the features
        frame["converted"].iloc[rows],
        sample_time=None if times is None else times.iloc[rows],
        sample_weight=None if weights is None else weights.iloc[rows],
    )


def check_feature_count(settings: Settings) -> None:
    """Refuse, before any work, more features than `features.max_features`: training time grows with them (10,000
    declared columns took six minutes with no end in sight)."""
    f = settings.flat
    count = len(f.categorical) + len(f.numeric) if settings.mode == "flat" else len(settings.selected_features())
    cap = settings.features.max_features
    if count > cap:
        where = "flat.categorical + flat.numeric" if settings.mode == "flat" else "the feature set"
        raise UsageError(
            f"{count:,} features ({where}), more than features.max_features = {cap:,}",
            hint="declare the columns that matter, or raise features.max_features knowing that training time grows "
            "with it",
        )


def manifest_file(out: Path, *, folder: bool = False) -> Path:
    """Where a training set's manifest goes: `<name>.manifest.json` beside the file (`<folder>.manifest.json`)."""
    out = Path(out)
    return out.with_name((out.name if folder else out.stem) + ".manifest.json")


def write_training_set(training: TrainingSet, out: Path, publication: Publication | None = None) -> tuple[Path, Path]:
    """The Parquet file and, beside it, `<name>.manifest.json`, published together (into `publication` if given):
    never a manifest describing another run's table."""
    out = Path(out)
    manifest_path = manifest_file(out)
    text = json.dumps(training.manifest, indent=2, sort_keys=True, default=str) + "\n"
    files = {out: frame_writer(training.frame, out), manifest_path: lambda tmp: tmp.write_text(text, encoding="utf-8")}
    if publication is None:
        publish(files)
    else:
        for path, writer in files.items():
            publication.write(path, writer)
    return out, manifest_path


def _range(times: pd.Series) -> list[str] | None:
    times = times.dropna()
    return [times.min().isoformat(), times.max().isoformat()] if len(times) else None


def read_training_set(path: Path) -> TrainingSet:
    """A training set written by `build-training-set` (a Parquet file, or the Spark engine's folder) with its
    manifest beside it."""
    path = Path(path)
    manifest_path = path.with_name((path.stem if path.is_file() else path.name) + ".manifest.json")
    if not manifest_path.exists():
        raise FileNotFoundError(f"no manifest beside the training set: {manifest_path}")
    import json

    manifest = json.loads(manifest_path.read_text())
    frame = pd.read_parquet(path)
    frame["converted"] = frame["converted"].astype("int8")
    # the written order is the time order; without the order column (older files) cutoff then lead id
    order = ["cutoff_time", ORDER_COLUMN] if ORDER_COLUMN in frame else ["cutoff_time", "lead_id"]
    if ORDER_COLUMN not in frame and frame["cutoff_time"].isna().all():
        log.warning("%s has no %s column and no cutoff times: rows keep the file's order", path, ORDER_COLUMN)
        order = []
    if order:
        frame = frame.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)
    specs = all_features()
    names = manifest["features"]
    categorical = manifest.get("categorical_features") or [
        n for n in names if n in specs and specs[n].kind == "categorical"
    ]
    manifest.setdefault("input_sha256", hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy()).hexdigest())
    manifest.setdefault("content_sha256", content_fingerprint({"training_set": frame}))
    manifest.setdefault("feature_set", "from " + path.name)
    return TrainingSet(frame, names, manifest, categorical)
