"""`leadscore build-training-set`: spine -> point-in-time features -> Parquet file plus a manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.context import FeatureParams
from features.flat import FlatSpec, flat_training_set
from features.registry import all_features, feature_set
from features.spine import CutoffPolicy, build_spine
from pipelines.config import Settings, TableSource
from pipelines.flat_checks import check_flat_table
from pipelines.io import frame_writer, read_file, read_source
from pipelines.publish import publish
from pipelines.validation import CrmData, load_crm

log = logging.getLogger(__name__)
KEY_COLUMNS = ("lead_id", "cutoff_time", "converted")


@dataclass
class TrainingSet:
    frame: pd.DataFrame
    feature_names: list[str]
    manifest: dict = field(default_factory=dict)
    categorical: list[str] = field(default_factory=list)


def feature_params(settings: Settings) -> FeatureParams:
    f = settings.features
    return FeatureParams(
        half_life_days=f.half_life_days,
        event_weights=dict(f.event_weights),
        high_intent_events=tuple(f.high_intent_events),
        free_email_domains=tuple(f.free_email_domains),
    )


def cutoff_policy(settings: Settings) -> CutoffPolicy:
    s = settings.spine
    return CutoffPolicy(s.policy, s.delay_days, s.every_days, s.max_snapshots, s.horizon_days)


def selected_features(settings: Settings) -> list[str]:
    return feature_set(settings.features.feature_set, settings.features.sets)


def input_fingerprint(settings: Settings) -> str:
    """A content hash of every input table (file bytes, or the rows of a SQL table)."""
    digest = hashlib.sha256()
    sources = (
        [("flat", settings.flat.path if settings.flat.path is not None else flat_source(settings))]
        if settings.mode == "flat"
        else [(n, getattr(settings.tables, n)) for n in ("leads", "accounts", "events", "opportunities")]
    )
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


def crm_training_set(settings: Settings, data: CrmData) -> TrainingSet:
    t = data.tables
    policy = cutoff_policy(settings)
    spine, stats = build_spine(t["leads"], t["opportunities"], policy, as_of=data.as_of)
    names = selected_features(settings)
    log.info(
        "spine: %d rows (%d positives, %d censored); building %d features",
        stats.rows,
        stats.positives,
        stats.censored,
        len(names),
    )
    frame = build_features(
        spine,
        leads=t["leads"],
        accounts=t.get("accounts"),
        events=t.get("events"),
        opportunities=t["opportunities"],
        feature_names=names,
        params=feature_params(settings),
    )
    specs = all_features()
    manifest = {
        "mode": "crm",
        "as_of": data.as_of.isoformat(),
        "spine": asdict(stats),
        "cutoff_policy": asdict(policy),
        "cutoff_range": _range(frame["cutoff_time"]),
        "rejected_rows": {name: len(rows) for name, rows in data.rejects.items()},
    }
    categorical = [n for n in names if specs[n].kind == "categorical"]
    return TrainingSet(frame, names, manifest, categorical)


def flat_spec(settings: Settings) -> FlatSpec:
    f = settings.flat
    return FlatSpec(
        label_column=f.label_column,
        categorical=tuple(f.categorical),
        numeric=tuple(f.numeric),
        positive_values=tuple(f.positive_values),
        id_column=f.id_column,
        time_column=f.time_column,
        missing_values=tuple(f.missing_values),
        leaking=tuple(f.leaking),
    )


def flat_source(settings: Settings) -> TableSource:
    """The flat table as a table source (a file, or a SQL table read in chunks like the CRM tables)."""
    f = settings.flat
    return TableSource(path=f.path, sql_url=f.sql_url, sql_table=f.sql_table, encoding=f.encoding)


def flat_training_set_from(settings: Settings) -> TrainingSet:
    f = settings.flat
    if f.path is not None:
        path = settings.resolve(f.path)
        raw = read_file(path, name="flat", separator=f.separator, encoding=f.encoding)
    else:
        raw, path = read_source(flat_source(settings), name="flat", base_dir=settings.base_dir), f.sql_table
    check_flat_table(raw, f, where=f"flat table ({path})")
    result = flat_training_set(raw, flat_spec(settings))
    frame = result.training_set
    manifest = {
        "mode": "flat",
        "unlabelled_rows": result.unlabelled,
        "excluded_leaking_columns": result.excluded_leaking,
        "time_order": f.time_column or "row order",
        "cutoff_range": _range(frame["cutoff_time"]) if f.time_column else None,
    }
    return TrainingSet(frame, result.feature_names, manifest, list(f.categorical))


def build_training_set(settings: Settings, *, data: CrmData | None = None) -> TrainingSet:
    """The training set for either mode, with its manifest."""
    if settings.mode == "flat":
        training = flat_training_set_from(settings)
    else:
        training = crm_training_set(settings, data if data is not None else load_crm(settings))
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


def write_training_set(training: TrainingSet, out: Path) -> tuple[Path, Path]:
    """The Parquet file and, beside it, `<name>.manifest.json`; both written atomically."""
    out = Path(out)
    manifest_path = out.with_name(out.stem + ".manifest.json")
    text = json.dumps(training.manifest, indent=2, sort_keys=True, default=str) + "\n"
    # the table and its manifest are published together: never a manifest describing another run's table
    publish({out: frame_writer(training.frame, out),
             manifest_path: lambda tmp: tmp.write_text(text, encoding="utf-8")})  # fmt: skip
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
    frame = frame.sort_values(["cutoff_time", "lead_id"], kind="stable").reset_index(drop=True)
    specs = all_features()
    names = manifest["features"]
    categorical = manifest.get("categorical_features") or [n for n in names if n in specs
                                                           and specs[n].kind == "categorical"]  # fmt: skip
    manifest.setdefault("input_sha256", hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy()).hexdigest())
    manifest.setdefault("feature_set", "from " + path.name)
    return TrainingSet(frame, names, manifest, categorical)
