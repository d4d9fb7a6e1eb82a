"""Typed project settings read once from a TOML file at the entry point and passed down.

Every section forbids unknown keys, so a typo is an error naming the key and the file rather than a
silently ignored setting. Relative paths are resolved against the folder holding the config file.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.schemas import TABLE_ROLES
from models.factory import ModelSettings
from models.grade_rules import GradeRules


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TableSource(_Section):
    """Where one canonical table lives and how its columns map onto the contract's roles."""

    path: str | None = Field(None, description="CSV or Parquet file, relative to the config file")
    sql_url: str | None = Field(None, description="SQLAlchemy URL, e.g. sqlite:///crm.db")
    sql_table: str | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="contract role -> source column")
    status_values: dict[str, list[str]] | None = Field(
        None, description="opportunities only: source values meaning won / lost / open"
    )
    encoding: str | None = Field(None, description="CSV text encoding; default: detected (UTF-8, BOM, UTF-16)")
    timestamp_format: str | None = Field(
        None, description="strftime format of this table's timestamps, e.g. %d/%m/%Y; settles day/month order"
    )

    @model_validator(mode="after")
    def _one_source(self) -> TableSource:
        if (self.path is None) == (self.sql_url is None):
            raise ValueError("give exactly one of 'path' or 'sql_url'")
        if self.sql_url is not None and not self.sql_table:
            raise ValueError("'sql_table' is required with 'sql_url'")
        return self


class Tables(_Section):
    leads: TableSource
    accounts: TableSource | None = None
    events: TableSource | None = None
    opportunities: TableSource

    @model_validator(mode="after")
    def _known_roles(self) -> Tables:
        for name in ("leads", "accounts", "events", "opportunities"):
            source = getattr(self, name)
            if source is None:
                continue
            unknown = sorted(set(source.columns) - set(TABLE_ROLES[name]))
            if unknown:
                raise ValueError(
                    f"tables.{name}.columns: unknown role(s) {unknown}; known roles: {list(TABLE_ROLES[name])}"
                )
            if source.status_values is not None and name != "opportunities":
                raise ValueError(f"tables.{name}.status_values: only the opportunities table has a status")
        return self


class FlatSettings(_Section):
    """One row per lead with a label column: most CRM exports and public datasets."""

    path: str | None = Field(None, description="CSV or Parquet file, relative to the config file")
    sql_url: str | None = Field(None, description="instead of `path`: a database (SQLAlchemy URL)")
    sql_table: str | None = None
    separator: str = ","
    id_column: str | None = None
    label_column: str
    positive_values: list[str | int | float | bool] = Field(default_factory=lambda: [1, "1", "yes", True])
    negative_values: list[str | int | float | bool] = Field(
        default_factory=lambda: [0, "0", "no", False], description="any other label value is an error"
    )
    encoding: str | None = Field(None, description="CSV text encoding; default: detected (UTF-8, BOM, UTF-16)")
    time_column: str | None = Field(None, description="row order is the time order when absent")
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=list, description="placeholders read as missing")
    leaking: list[str] = Field(default_factory=list, description="known only after the outcome: excluded")
    directions: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict, description="numeric column -> business direction (+1 / -1): monotone constraints"
    )

    @model_validator(mode="after")
    def _features_declared(self) -> FlatSettings:
        if (self.path is None) == (self.sql_url is None):
            raise ValueError("give exactly one of 'path' or 'sql_url'")
        if self.sql_url is not None and not self.sql_table:
            raise ValueError("'sql_table' is required with 'sql_url'")
        if not self.categorical and not self.numeric:
            raise ValueError("declare at least one feature column in 'categorical' or 'numeric'")
        undeclared = sorted(set(self.directions) - set(self.numeric))
        if undeclared:
            raise ValueError(f"directions: only numeric columns take a direction, not {undeclared}")
        overlap = sorted(set(self.leaking) & (set(self.categorical) | set(self.numeric)))
        if overlap:
            raise ValueError(f"columns both declared as features and as leaking: {overlap}")
        return self


class SpineSettings(_Section):
    """When each lead is scored during training (cutoff policy) and how far ahead the label looks."""

    policy: Literal["fixed_delay", "snapshots"] = "fixed_delay"
    delay_days: float = Field(7.0, ge=0)
    every_days: float = Field(30.0, gt=0)
    max_snapshots: int = Field(6, ge=1)
    horizon_days: float = Field(90.0, gt=0)


class FeatureSettings(_Section):
    feature_set: str = "default"
    half_life_days: float = Field(14.0, gt=0)
    event_weights: dict[str, float] = Field(default_factory=dict, description="decayed-engagement weights")
    high_intent_events: list[str] = Field(default_factory=lambda: ["pricing_page_view", "demo_request"])
    free_email_domains: list[str] = Field(default_factory=list, description="added to the built-in list")
    sets: dict[str, list[str]] = Field(default_factory=dict, description="named feature lists of your own")


class OutputSettings(_Section):
    dir: str = "output"
    sql_url: str | None = Field(None, description="database for `predict --to-sql TABLE`")
    chunk_size: int = Field(50_000, ge=1, description="leads scored at a time by predict")
    drift_threshold: float = Field(0.25, gt=0, description="PSI above which predict warns of drift")


class ValidationSettings(_Section):
    """How much broken input the scoring tolerates."""

    max_rejected_share: float = Field(
        0.02, ge=0, le=1, description="predict stops when validation rejects more of leads or opportunities"
    )


class HistorySettings(_Section):
    """Where every `predict` appends its scores: a Parquet dataset partitioned by as-of date, or a SQL table."""

    enabled: bool = True
    path: str | None = Field(None, description="Parquet dataset folder; default: <output.dir>/history")
    sql_url: str | None = Field(None, description="instead of `path`: a database (SQLAlchemy URL)")
    sql_table: str = Field("score_history", description="table for `sql_url`")


class MonitorSettings(_Section):
    """`leadscore monitor`: how sales' feedback is read, and the alert thresholds."""

    acceptance_window_days: float = Field(30.0, gt=0, description="sales' decision counts within this after handover")
    min_live_outcomes: int = Field(200, ge=1, description="matured outcomes needed before the live ROC AUC counts")
    acceptance_drop_points: float = Field(10.0, gt=0, description="alert: latest week below the earlier by more")
    live_roc_auc_floor: float = Field(0.65, ge=0, le=1, description="alert: the champion's live ROC AUC below it")
    sla_compliance_target: float = Field(0.8, ge=0, le=1, description="alert: share touched within SLA below it")
    score_drift_psi: float = Field(0.25, gt=0, description="alert: PSI of a run's scores vs training above it")


class MlflowSettings(_Section):
    tracking_uri: str | None = Field(None, description="default: sqlite:///<config folder>/mlflow.db")
    artifact_dir: str = Field("mlartifacts", description="artifact folder for a new experiment (local store)")
    experiment: str = "leadscore"
    registered_model: str = "leadscore-conversion"


class EngineSettings(_Section):
    """Where the per-lead work runs: this machine (pandas) or Spark, with the same builders, rules and model."""

    name: Literal["local", "spark"] = "local"
    spark_master: str = Field("local[2]", description="e.g. spark://host:7077, yarn, k8s://...")
    partitions: int = Field(8, ge=1, description="buckets of leads (hash of account, else lead id)")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")


class Settings(_Section):
    mode: Literal["crm", "flat"] = "crm"
    as_of: datetime | None = Field(None, description="end of the data; default: the latest timestamp seen")
    timezone: str = Field("UTC", description="zone of timestamps written without one")
    tables: Tables | None = None
    flat: FlatSettings | None = None
    spine: SpineSettings = Field(default_factory=SpineSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    grades: GradeRules = Field(default_factory=GradeRules)
    model: ModelSettings = Field(default_factory=ModelSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    base_dir: Path = Field(Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _mode_has_its_section(self) -> Settings:
        if self.mode == "crm" and self.tables is None:
            raise ValueError("mode 'crm' needs a [tables] section")
        if self.mode == "flat" and self.flat is None:
            raise ValueError("mode 'flat' needs a [flat] section")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output.dir)

    @property
    def history_dir(self) -> Path:
        return self.resolve(self.history.path) if self.history.path else self.output_dir / "history"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.resolve('mlflow.db')}"


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing required key"
    elif "input" in error and not isinstance(error["input"], dict):
        message = f"{message} (got {error['input']!r})"
    return f"{key}: {message}"


def load_settings(path: str | Path) -> Settings:
    """Read and validate a config file; raise ConfigError listing every problem with its key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(f"  {_describe(err)}" for err in exc.errors())
        raise ConfigError(f"{path}: invalid configuration\n{lines}") from None
    return settings.model_copy(update={"base_dir": path.resolve().parent})
