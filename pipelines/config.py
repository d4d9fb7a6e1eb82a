"""Typed project settings read once from a TOML file at the entry point and passed down.

Every section forbids unknown keys, so a typo is an error naming the key and the file rather than a
silently ignored setting. Relative paths are resolved against the folder holding the config file.
"""

from __future__ import annotations

import logging
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadscore.features.context import FeatureParams
from leadscore.features.custom import CustomField
from leadscore.features.derived import CATEGORICAL_PARTS
from leadscore.features.flat import FlatSpec, value_keys
from leadscore.features.registry import all_features, feature_set, without_known_at
from leadscore.features.schemas import SALES_TOUCH_EVENTS, TABLE_ROLES, TIME_COLUMNS, event_type_key
from leadscore.features.spine import CutoffPolicy
from leadscore.models.factory import ModelSettings
from leadscore.models.grade_rules import ColumnEngagementRules, GradeRules
from leadscore.models.leakage import LeakThresholds
from leadscore.pipelines.errors import ConfigError, UsageError

log = logging.getLogger(__name__)
__all__ = ["PRESETS", "ConfigError", "Settings", "load_settings", "with_project_defaults", "write_project_config"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # a value of the wrong type is an error, never coerced


class CustomFieldSettings(_Section):
    """One of the CRM's own lead or account columns, used as a feature."""

    column: str | None = Field(None, description="the column in the file; default: the field's key")
    type: Literal["categorical", "numeric", "timestamp"] = Field(
        description="timestamp: validated and read by tables.leads.derived, not a feature itself"
    )
    description: str = Field(min_length=3, description="one line: the business meaning, used in the reasons")

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("the description is one line (it is the reason text)")
        return value.strip()


class LeadDerivedColumn(_Section):
    """CRM mode: a feature computed from the lead's own timestamps: `created_at`, or a custom field of type
    timestamp. Sales' own timestamps (acceptance, first touch, rejection) are never features."""

    date_part: Literal["weekday", "month", "hour", "day_of_month", "year"] | None = None
    of: str | None = Field(None, description="date_part: created_at or a timestamp custom field")
    days_between: tuple[str, str] | None = Field(None, description="[start, end]: end - start in days", strict=False)
    description: str = Field(min_length=3, description="one line: the business meaning, used in the reasons")

    @model_validator(mode="after")
    def _one_kind(self) -> LeadDerivedColumn:
        if (self.date_part is None) == (self.days_between is None):
            raise ValueError("give either 'date_part' with 'of', or 'days_between'")
        if self.date_part is not None and not self.of:
            raise ValueError("'date_part' needs 'of' (the lead's time role)")
        return self

    @property
    def inputs(self) -> list[str]:
        return [self.of] if self.of else list(self.days_between)


def _one_source(path: str | None, sql_url: str | None, sql_table: str | None) -> None:
    """A table is read from a file or from a SQL table, never both, never neither."""
    if (path is None) == (sql_url is None):
        raise ValueError("give exactly one of 'path' or 'sql_url'")
    if sql_url is not None and not sql_table:
        raise ValueError("'sql_table' is required with 'sql_url'")


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
    custom: dict[str, CustomFieldSettings] = Field(
        default_factory=dict, description="leads and accounts: feature name -> one of your own columns"
    )
    derived: dict[str, LeadDerivedColumn] = Field(
        default_factory=dict, description="leads: feature name -> date part of / days between the lead's timestamps"
    )
    known_at: dict[str, str] = Field(
        default_factory=dict,
        description="leads: field (role or custom field) -> column holding when it was filled in; the field is read "
        "only from then on",
    )
    missing_values: list[str] = Field(
        default_factory=list,
        description='text that means missing in this table (e.g. "n/a", "-"); only an empty cell otherwise, and '
        "pandas' NA words in number and time columns",
    )
    where: str | None = Field(
        None,
        description="rows to keep, on the export's own column names (as text), e.g. \"`Deal Stage` != "
        "'Prospecting'\"; the others are set aside in the rejects",
    )
    object: str | None = Field(
        None, description="with exports.vendor: the CRM object this file exports (its UI labels read as API names)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> TableSource:
        _one_source(self.path, self.sql_url, self.sql_table)
        return self


class Tables(_Section):
    leads: TableSource
    accounts: TableSource | None = None
    events: TableSource | None = None
    opportunities: TableSource
    opportunity_history: TableSource | None = None  # `--level opportunity`: changes of stage, amount, close date

    @model_validator(mode="after")
    def _known_roles(self) -> Tables:
        for name in TABLE_ROLES:
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
            if source.custom and name not in ("leads", "accounts"):
                raise ValueError(f"tables.{name}.custom: custom fields belong to the leads or accounts table")
            if source.derived and name != "leads":
                raise ValueError(f"tables.{name}.derived: derived features are computed from the leads table")
            if source.known_at and name != "leads":
                raise ValueError(f"tables.{name}.known_at: only the leads table's fields have a known_at time")
        self._check_custom_names()
        self._check_known_at()
        return self

    def _check_known_at(self) -> None:
        """known_at keys are lead attributes: a contract role (neither its id nor a timestamp) or a custom field."""
        leads = self.leads
        fields = [r for r in TABLE_ROLES["leads"] if r != "lead_id" and r not in TIME_COLUMNS["leads"]]
        fields += [k for k, f in leads.custom.items() if f.type != "timestamp"]
        unknown = sorted(set(leads.known_at) - set(fields))
        if unknown:
            raise ValueError(f"tables.leads.known_at: {unknown} are not lead fields; fields: {fields}")

    def _check_custom_names(self) -> None:
        import re

        known = set(all_features())
        seen: set[str] = set()
        for table in ("leads", "accounts"):
            source = getattr(self, table)
            for key in [*source.custom, *source.derived] if source is not None else ():
                if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                    raise ValueError(
                        f"tables.{table}.custom.{key}: a feature name is lower case letters, digits "
                        "and _ (e.g. lead_origin)"
                    )
                if key in known or key in TABLE_ROLES[table] or key in seen:
                    raise ValueError(
                        f"tables.{table}.custom.{key}: the name is taken (a built-in feature, a "
                        "contract role or another custom field): choose another"
                    )
                seen.add(key)
        leads = self.leads
        times = {"created_at"} | {k for k, f in leads.custom.items() if f.type == "timestamp"}
        for key, spec in leads.derived.items():
            unknown = [c for c in spec.inputs if c not in times]
            if unknown:
                raise ValueError(
                    f"tables.leads.derived.{key}: {unknown} is not created_at or a custom field of type "
                    "timestamp (sales' own timestamps are never features)"
                )


class DerivedColumn(_Section):
    """A column computed from the export: a date part of a timestamp, or the days between two timestamps."""

    date_part: Literal["weekday", "month", "hour", "day_of_month", "year"] | None = None
    of: str | None = Field(None, description="date_part: the timestamp column")
    days_between: tuple[str, str] | None = Field(
        None, description="[start column, end column]: end - start in days", strict=False
    )

    @model_validator(mode="after")
    def _one_kind(self) -> DerivedColumn:
        if (self.date_part is None) == (self.days_between is None):
            raise ValueError("give either 'date_part' with 'of', or 'days_between'")
        if self.date_part is not None and not self.of:
            raise ValueError("'date_part' needs 'of' (the timestamp column)")
        return self


class LabelFrom(_Section):
    """The label (and its time) from a second table by key, e.g. won deals joined to qualified leads."""

    path: str = Field(description="CSV or Parquet file of outcomes, relative to the config file")
    separator: str = ","
    encoding: str | None = None
    key: str = Field(description="column of the flat table holding the key")
    outcome_key: str | None = Field(None, description="the key's column in the outcome table; default: `key`")
    outcome_time: str = Field(description="column of the outcome table: when the outcome happened")
    outcome_column: str | None = Field(
        None, description="column of the outcome table with its status; none: every row is a positive outcome"
    )
    positive_values: list[str] = Field(default_factory=lambda: ["won"])
    horizon_days: float = Field(gt=0, description="an outcome counts within this many days after the row's time")


class FlatSettings(_Section):
    """One row per lead with a label column: most CRM exports and public datasets."""

    path: str | None = Field(None, description="CSV or Parquet file, relative to the config file")
    sql_url: str | None = Field(None, description="instead of `path`: a database (SQLAlchemy URL)")
    sql_table: str | None = None
    separator: str = ","
    id_column: str | None = Field(None, description="none: a row is known by its row number (1 = first data row)")
    identify_columns: list[str] = Field(
        default_factory=list, description="columns copied into the scores file to match rows back (e.g. a title)"
    )
    label_column: str
    positive_values: list[str | int | float | bool] = Field(default_factory=lambda: [1, "1", "yes", True])
    negative_values: list[str | int | float | bool] = Field(
        default_factory=lambda: [0, "0", "no", False], description="any other label value is an error"
    )
    open_values: list[str | int | float | bool] = Field(
        default_factory=list,
        description="values meaning still open (in status_column if set, else the label): never trained, scored",
    )
    status_column: str | None = Field(
        None, description="a status column whose open_values make a row open whatever its label says"
    )
    encoding: str | None = Field(None, description="CSV text encoding; default: detected (UTF-8, BOM, UTF-16)")
    time_column: str | None = Field(None, description="row order is the time order when absent (see order_column)")
    order_column: str | None = Field(
        None,
        description="without a time column: the column that orders rows in time, e.g. a sequential lead number "
        "(numbers, else text); the holdout is its latest rows",
    )
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=list, description="placeholders read as missing")
    leaking: list[str] = Field(default_factory=list, description="known only after the outcome: excluded")
    directions: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict, description="numeric column -> business direction (+1 / -1): monotone constraints"
    )
    engagement: ColumnEngagementRules | None = Field(
        None, description="engagement grade from the export's columns; with [grades.fit] on its columns: grades"
    )
    derived: dict[str, DerivedColumn] = Field(
        default_factory=dict, description="new column name -> how it is computed; declare it to use it"
    )
    label_from: LabelFrom | None = Field(
        None, description="the label column computed from a second table (needs time_column)"
    )

    @model_validator(mode="after")
    def _features_declared(self) -> FlatSettings:
        _one_source(self.path, self.sql_url, self.sql_table)
        if not self.categorical and not self.numeric:
            raise ValueError("declare at least one feature column in 'categorical' or 'numeric'")
        undeclared = sorted(set(self.directions) - set(self.numeric))
        if undeclared:
            raise ValueError(f"directions: only numeric columns take a direction, not {undeclared}")
        overlap = sorted(set(self.leaking) & (set(self.categorical) | set(self.numeric)))
        if overlap:
            raise ValueError(f"columns both declared as features and as leaking: {overlap}")
        if self.order_column and self.time_column:
            raise ValueError("give time_column or order_column, not both: the time column orders the rows")
        if self.label_from is not None and not self.time_column:
            raise ValueError("label_from needs time_column: an outcome counts within the horizon after the row's time")
        roles = [
            self.label_column,
            *(c for c in (self.id_column, self.time_column, self.status_column) if c),
            *self.categorical,
            *self.numeric,
        ]
        twice = sorted({c for c in roles if roles.count(c) > 1})
        if twice:
            raise ValueError(
                f"column(s) declared more than once (label, id, time, status, categorical, numeric): {twice}"
            )
        self._open_values_apart()
        return self

    def _open_values_apart(self) -> None:
        """An open value that is also an outcome would make a row both trained and scored."""
        if self.status_column and not self.open_values:
            raise ValueError("status_column needs open_values: the statuses that mean still open")
        if self.status_column:
            return  # open values are statuses there, not labels
        both = value_keys(self.open_values) & value_keys([*self.positive_values, *self.negative_values])
        if both:
            raise ValueError(f"open_values also listed as positive or negative values: {sorted(both)}")

    def spec(self) -> FlatSpec:
        """The flat builder's view of these settings."""
        return FlatSpec(
            label_column=self.label_column,
            categorical=tuple(self.categorical),
            numeric=tuple(self.numeric),
            positive_values=tuple(self.positive_values),
            id_column=self.id_column,
            time_column=self.time_column,
            order_column=self.order_column,
            missing_values=tuple(self.missing_values),
            leaking=tuple(self.leaking),
            open_values=tuple(self.open_values),
            status_column=self.status_column,
        )


class ExportSettings(_Section):
    """Conventions of a CRM's exports that differ from the contract, applied to the tables before validation
    (the presets set them: `leadscore init DIR --preset salesforce|hubspot`)."""

    opportunity_id_on_lead: str | None = Field(
        None,
        description="lead column holding its opportunity's id (Salesforce: ConvertedOpportunityId); the "
        "opportunities then need no lead column",
    )
    lead_id_list_separator: str | None = Field(
        None, description="the opportunities' lead column lists several ids (HubSpot associations): the first counts"
    )
    lead_status_column: str | None = Field(None, description="lead column with the lead's status")
    lost_lead_statuses: list[str] = Field(
        default_factory=list, description="lead statuses meaning closed without a deal: a lost outcome"
    )
    lost_at_column: str | None = Field(None, description="lead column dating that outcome, e.g. LastModifiedDate")
    close_date_expected_while_open: bool = Field(
        False,
        description="an open deal's close date is a forecast (Salesforce CloseDate, HubSpot closedate): "
        "ignored until the deal is won or lost",
    )
    event_type_values: dict[str, list[str]] = Field(
        default_factory=dict, description="contract event type -> values of the export's type column"
    )
    more_events: list[TableSource] = Field(
        default_factory=list, description="further activity exports (each with its own column map) added to events"
    )
    vendor: Literal["salesforce", "hubspot"] | None = Field(
        None, description="the CRM that wrote the export: UI labels are read as API names (tables' `object`)"
    )
    won_column: str | None = Field(
        None, description="opportunity column true for won deals (Salesforce IsWon, HubSpot hs_is_closed_won)"
    )
    closed_column: str | None = Field(
        None, description="opportunity column true for closed deals (IsClosed, hs_is_closed): before stage names"
    )
    converted_column: str | None = Field(
        None,
        description="lead column true once converted (IsConverted): a converted lead whose deal is not in the "
        "export is set aside, not scored as open",
    )

    @model_validator(mode="after")
    def _lost_needs_columns(self) -> ExportSettings:
        if self.lost_lead_statuses and not (self.lead_status_column and self.lost_at_column):
            raise ValueError("lost_lead_statuses needs lead_status_column and lost_at_column")
        return self


class SpineSettings(_Section):
    """When each lead is scored during training (cutoff policy) and how far ahead the label looks."""

    # the defaults are the spine's own (features.spine.CutoffPolicy): one place for each
    policy: Literal["fixed_delay", "snapshots"] = Field(
        CutoffPolicy.policy,
        description="snapshots: every every_days over the whole open life; fixed_delay: one cutoff",
    )
    delay_days: float = Field(CutoffPolicy.delay_days, ge=0)
    every_days: float = Field(CutoffPolicy.every_days, gt=0)
    max_snapshots: int = Field(
        CutoffPolicy.max_snapshots, ge=1, description="rows kept per lead (a seeded draw among its open cutoffs)"
    )
    horizon_days: float = Field(CutoffPolicy.horizon_days, gt=0)
    max_age_days: float | None = Field(
        CutoffPolicy.max_age_days, gt=0, description="last cutoff after creation; default: no limit"
    )


class AccountSettings(_Section):
    """`--level account`: the account spine and the account model's data minimums. A key left unset is derived from
    the book (models/account_defaults.py) and said in `train`'s output; a key given is used as given."""

    delay_days: float = Field(CutoffPolicy.delay_days, ge=0, description="first cutoff after the account's first lead")
    every_days: float | None = Field(None, gt=0, description="snapshot spacing; default: horizon / 3")
    max_snapshots: int | None = Field(None, ge=1, description="rows kept per account; default: about 2,000 rows in all")
    horizon_days: float | None = Field(
        None, gt=0, description="default: 80th percentile of first-lead-to-win days, halved until both classes fit"
    )
    min_positives: int | None = Field(None, ge=1, description="default: a quarter of the accounts, 10 to model's")
    min_negatives: int | None = Field(None, ge=1, description="default: as min_positives")


class OpportunitySettings(_Section):
    """`--level opportunity`: the deal spine (cutoffs over each deal's open life) and how far ahead a win counts."""

    delay_days: float = Field(1.0, ge=0, description="first cutoff after the deal was created")
    every_days: float = Field(7.0, gt=0, description="snapshot spacing over the deal's open life")
    max_snapshots: int = Field(6, ge=1, description="rows kept per deal (a seeded draw among its open cutoffs)")
    horizon_days: float = Field(90.0, gt=0, description="a win within this many days of the cutoff counts")
    max_age_days: float | None = Field(None, gt=0, description="last cutoff after the deal's creation; default: none")


class FeatureSettings(_Section):
    feature_set: str = "default"
    half_life_days: float = Field(14.0, gt=0)
    event_weights: dict[str, float] = Field(default_factory=dict, description="decayed-engagement weights")
    high_intent_events: list[str] = Field(default_factory=lambda: ["pricing_page_view", "demo_request"])
    free_email_domains: list[str] = Field(default_factory=list, description="added to the built-in list")
    sets: dict[str, list[str]] = Field(default_factory=dict, description="named feature lists of your own")
    max_features: int = Field(
        1000, ge=1, description="refuse to train on more features (flat mode: declared columns): bounded work"
    )
    # leak guards at `train` (models/leakage.py); the defaults are LeakThresholds' own: one place for each
    allow_suspect: list[str] = Field(
        default_factory=list, description="suspect features kept on purpose: named in train, never block promotion"
    )
    suspect_roc_auc: float = Field(
        LeakThresholds.roc_auc, gt=0.5, le=1, description="a feature alone above this holdout ROC AUC is suspect"
    )
    suspect_group_rows: int = Field(
        LeakThresholds.group_rows, ge=1, description="rows of a group converting at 0 % or 100 % that make it suspect"
    )
    suspect_group_expected: float = Field(
        LeakThresholds.group_expected,
        gt=0,
        description="... when the overall rate would have given it at least this many of the other outcome",
    )
    suspect_missing_gap: float = Field(
        LeakThresholds.missing_gap,
        gt=0,
        le=1,
        description="missing shares of the scored leads and the training rows further apart make a feature suspect",
    )

    def leak_thresholds(self) -> LeakThresholds:
        """The leak guards' thresholds."""
        return LeakThresholds(
            roc_auc=self.suspect_roc_auc,
            group_rows=self.suspect_group_rows,
            group_expected=self.suspect_group_expected,
            missing_gap=self.suspect_missing_gap,
        )


class OutputSettings(_Section):
    dir: str = "output"
    sql_url: str | None = Field(None, description="database for `predict --to-sql TABLE`")
    chunk_size: int = Field(25_000, ge=1, description="leads scored at a time by predict")
    partitions: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto",
        description="partitions of leads predict streams through (a hash of the lead id; events read partition by "
        "partition): 1 = one pass with every table in memory; auto = one per partition_events events",
    )
    partition_events: int = Field(
        2_000_000, ge=1, description="with partitions = auto: events per partition (fewer events: one pass)"
    )
    drift_threshold: float = Field(0.25, gt=0, description="PSI above which predict warns of drift")
    crm_fields: dict[Literal["salesforce", "hubspot"], dict[str, str]] = Field(
        default_factory=dict,
        description='`predict --crm-import`: your field names, e.g. { salesforce = { score = "Score__c" } }',
    )


class ValidationSettings(_Section):
    """How much broken input the verbs tolerate."""

    max_rejected_share: float | dict[str, float] = Field(
        0.02,
        description="every verb stops when validation rejects a larger share of a table's rows as broken (rows set "
        "aside as out of scope do not count); one share, or one per table, e.g. {events = 0.1}",
    )

    @field_validator("max_rejected_share")
    @classmethod
    def _shares(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        shares = value if isinstance(value, dict) else {"": value}
        unknown = sorted(set(shares) - set(TABLE_ROLES) - {""})
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; tables: {list(TABLE_ROLES)}")
        if any(not 0 <= share <= 1 for share in shares.values()):
            raise ValueError("a share is between 0 and 1")
        return value

    def limit(self, table: str) -> float:
        """The share of `table`'s rows that may be rejected as broken (default 0.02 for a table a dict leaves out)."""
        shares = self.max_rejected_share
        return shares if isinstance(shares, float | int) else shares.get(table, 0.02)


class HistorySettings(_Section):
    """Where every `predict` appends its scores: a Parquet dataset partitioned by as-of date, or a SQL table."""

    enabled: bool = True
    path: str | None = Field(None, description="Parquet dataset folder; default: <output.dir>/history")
    sql_url: str | None = Field(None, description="instead of `path`: a database (SQLAlchemy URL)")
    sql_table: str = Field("score_history", description="table for `sql_url`")
    contributions_kept: int = Field(
        10, ge=0, le=100, description="per lead and run, this many largest contributions kept to explain score moves"
    )


class MonitorSettings(_Section):
    """`leadscore monitor`: how sales' feedback is read, and the alert thresholds."""

    acceptance_window_days: float = Field(30.0, gt=0, description="sales' decision counts within this after handover")
    min_live_leads: int = Field(
        200, ge=1, description="leads with a matured outcome needed before the live ROC AUC counts (one per lead)"
    )
    acceptance_drop_points: float = Field(10.0, gt=0, description="alert: latest week below the earlier by more")
    live_roc_auc_floor: float = Field(0.65, ge=0, le=1, description="alert: the champion's live ROC AUC below it")
    sla_compliance_target: float = Field(0.8, ge=0, le=1, description="alert: share touched within SLA below it")
    score_drift_psi: float = Field(0.25, gt=0, description="alert: PSI of a run's scores vs training above it")
    movers: int = Field(10, ge=0, description="the latest run's biggest score moves listed (0: none)")

    @model_validator(mode="before")
    @classmethod
    def _minimum_in_leads(cls, values: object) -> object:
        """`min_live_outcomes` (counted per score before) is read as `min_live_leads`, with a warning."""
        if isinstance(values, dict) and "min_live_outcomes" in values:
            values = dict(values)
            if "min_live_leads" in values:
                raise ValueError("give monitor.min_live_leads only (min_live_outcomes is its old name)")
            values["min_live_leads"] = values.pop("min_live_outcomes")
            log.warning("monitor.min_live_outcomes is now monitor.min_live_leads: the minimum counts leads")
        return values


class MlflowSettings(_Section):
    tracking_uri: str | None = Field(None, description="default: sqlite:///<config folder>/mlflow.db")
    artifact_dir: str = Field("mlartifacts", description="artifact folder for a new experiment (local store)")
    experiment: str = Field("leadscore", description="default: the project's name when it has one")
    registered_model: str = Field("leadscore-conversion", description="default: <project name>-conversion")


class EngineSettings(_Section):
    """Where the per-lead work runs: this machine (pandas) or Spark, with the same builders, rules and model."""

    name: Literal["local", "spark"] = "local"
    spark_master: str = Field("local[2]", description="e.g. spark://host:7077, yarn, k8s://...")
    partitions: int = Field(8, ge=1, description="buckets of leads (hash of account, else lead id)")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")


class Settings(_Section):
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="project name: its MLflow experiment and registered model (<name>-conversion)",
    )
    mode: Literal["crm", "flat"] = "crm"
    as_of: datetime | None = Field(None, description="end of the data; default: the latest timestamp seen")
    timezone: str = Field("UTC", description="zone of timestamps written without one")
    tables: Tables | None = None
    flat: FlatSettings | None = None
    exports: ExportSettings = Field(default_factory=ExportSettings)
    spine: SpineSettings = Field(default_factory=SpineSettings)
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    opportunities: OpportunitySettings = Field(default_factory=OpportunitySettings)
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
    config_file: Path | None = Field(None, exclude=True)  # never an output's target

    @field_validator("as_of", mode="before")
    @classmethod
    def _a_point_in_time(cls, value: object) -> object:
        """A TOML date or datetime, or ISO text; a number is refused (2025 would be read as seconds after 1970)."""
        if value is None or isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"not an ISO date or timestamp: {value!r}") from None
        raise ValueError(f'a date (e.g. 2025-06-30 or "2025-06-30T00:00:00Z"), not {value!r}')

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

    @model_validator(mode="after")
    def _no_sales_touch_feeds_a_feature(self) -> Settings:
        """Sales' own touches are never features: naming one as the lead's activity would silently do nothing."""
        named = {
            "features.event_weights": list(self.features.event_weights),
            "features.high_intent_events": self.features.high_intent_events,
            **{
                f"grades.engagement.categories.{k}.events": c.events
                for k, c in self.grades.engagement.categories.items()
            },
        }
        for key, types in named.items():
            touches = sorted({event_type_key(t) for t in types} & set(SALES_TOUCH_EVENTS))
            if touches:
                raise ValueError(
                    f"{key}: {touches} are sales' own touches, never the lead's activity (no feature reads them)"
                )
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

    def with_engine(self, engine: str | None) -> Settings:
        """These settings with the engine a command line chose (None: the config's own)."""
        if engine is None:
            return self
        if engine not in {"local", "spark"}:
            raise UsageError(f"--engine: use 'local' or 'spark', not {engine!r}")
        return self.model_copy(update={"engine": self.engine.model_copy(update={"name": engine})})

    def custom_fields(self) -> tuple[CustomField, ...]:
        """The CRM's own lead and account columns declared in `tables.<leads|accounts>.custom`, then the derived
        lead columns of `tables.leads.derived`."""
        if self.mode != "crm" or self.tables is None:
            return ()
        fields = [
            CustomField(key, table, field.type, field.description)
            for table in ("leads", "accounts")
            if getattr(self.tables, table) is not None
            for key, field in getattr(self.tables, table).custom.items()
            if field.type != "timestamp"  # an input of derived features, not a feature itself
        ]
        for key, spec in self.tables.leads.derived.items():
            derive = ("date_part", spec.date_part, spec.of) if spec.date_part else ("days_between", *spec.days_between)
            kind = "categorical" if spec.date_part in CATEGORICAL_PARTS else "numeric"
            fields.append(CustomField(key, "leads", kind, spec.description, derive))
        return tuple(fields)

    def feature_params(self) -> FeatureParams:
        """What the feature builders read from the config."""
        f = self.features
        return FeatureParams(
            half_life_days=f.half_life_days,
            event_weights=dict(f.event_weights),
            high_intent_events=tuple(f.high_intent_events),
            free_email_domains=tuple(f.free_email_domains),
            custom_fields=self.custom_fields(),
            declared_events=tuple(t for c in self.grades.engagement.categories.values() for t in c.events),
            known_at=self.known_at_fields(),
        )

    def known_at_fields(self) -> tuple[str, ...]:
        """The lead fields whose leads table says when each was filled in (`tables.leads.known_at`)."""
        return tuple(self.tables.leads.known_at) if self.mode == "crm" and self.tables is not None else ()

    def filled_late(self) -> dict[str, list[str]]:
        """The features of the configured set that read lead fields sales fills in later without a known_at time,
        each with those fields: a built-in set leaves them out, a set of your own keeps them (both warned about)."""
        specs = all_features()
        every_field = tuple(f for spec in specs.values() for f in spec.filled_late)
        wanted = feature_set(self.features.feature_set, self.features.sets, known_at=every_field)
        return {n: f for n, f in without_known_at(specs, self.known_at_fields()).items() if n in wanted}

    def opportunity_policy(self) -> CutoffPolicy:
        """When the opportunity spine scores each deal during training (`[opportunities]`)."""
        o = self.opportunities
        return CutoffPolicy(
            "snapshots",
            o.delay_days,
            o.every_days,
            o.max_snapshots,
            o.horizon_days,
            max_age_days=o.max_age_days,
            seed=self.model.random_state,
        )

    def cutoff_policy(self) -> CutoffPolicy:
        """When the spine scores each lead during training."""
        s = self.spine
        return CutoffPolicy(
            s.policy,
            s.delay_days,
            s.every_days,
            s.max_snapshots,
            s.horizon_days,
            max_age_days=s.max_age_days,
            seed=self.model.random_state,
        )

    def selected_features(self) -> list[str]:
        """The configured feature set, then the custom fields (in every set: declaring one means using it)."""
        names = feature_set(self.features.feature_set, self.features.sets, known_at=self.known_at_fields())
        return names + [f.name for f in self.custom_fields() if f.name not in names]


_UNION_TAGS = {"float", "int", "str", "bool", "datetime", "date", "list", "dict"}


def _describe(error: dict) -> str:
    # pydantic names the member of a union it tried (`max_rejected_share.float`): the user's key is the part before
    parts = [
        str(p) for p in error["loc"] if not (str(p) in _UNION_TAGS or "[" in str(p) or str(p).startswith("function"))
    ]
    key = ".".join(parts) or "(top level)"
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
        lines = "\n".join(dict.fromkeys(f"  {_describe(err)}" for err in exc.errors()))
        raise ConfigError(f"{path}: invalid configuration\n{lines}") from None
    settings = settings.model_copy(update={"base_dir": path.resolve().parent, "config_file": path})
    return with_project_defaults(with_sqlite_paths_resolved(settings))


def sqlite_url_resolved(url: str | None, base_dir: Path) -> str | None:
    """A relative SQLite URL (`sqlite:///crm.db`) taken from the config's folder, like relative paths; absolute ones
    (`sqlite:////data/crm.db`), in-memory databases and other databases unchanged."""
    prefix = "sqlite:///"
    if url is None or not url.startswith(prefix):
        return url
    rest = url[len(prefix) :]
    path, _, query = rest.partition("?")
    if not path or path == ":memory:" or Path(path).is_absolute():
        return url
    return f"{prefix}{(base_dir / path).resolve()}" + (f"?{query}" if query else "")


def with_sqlite_paths_resolved(settings: Settings) -> Settings:
    """Every SQL URL of the config with a relative SQLite file resolved against the config's folder."""

    def fixed(section, base: Path):
        if section is None or getattr(section, "sql_url", None) is None:
            return section
        return section.model_copy(update={"sql_url": sqlite_url_resolved(section.sql_url, base)})

    base = settings.base_dir
    update: dict = {"output": fixed(settings.output, base), "history": fixed(settings.history, base)}
    tracking = sqlite_url_resolved(settings.mlflow.tracking_uri, base)
    update["mlflow"] = settings.mlflow.model_copy(update={"tracking_uri": tracking})
    if settings.flat is not None:
        update["flat"] = fixed(settings.flat, base)
    if settings.tables is not None:
        tables = {n: fixed(getattr(settings.tables, n), base) for n in TABLE_ROLES}
        update["tables"] = settings.tables.model_copy(update=tables)
        more = [fixed(s, base) for s in settings.exports.more_events]
        update["exports"] = settings.exports.model_copy(update={"more_events": more})
    return settings.model_copy(update=update)


def with_project_defaults(settings: Settings) -> Settings:
    """One project, one registry: the store is the config folder's (`mlflow.db`), and a project with a `name` gets
    its own experiment and registered model (`<name>-conversion`) unless the config sets them, so two named projects
    sharing a folder (like configs/*.toml) never promote or load each other's champion. Configs of one project
    without a name (variants in one folder) share its registry on purpose."""
    if not settings.name:
        return settings
    given = settings.mlflow.model_fields_set
    mlflow = settings.mlflow.model_copy(
        update={
            key: value
            for key, value in (("experiment", settings.name), ("registered_model", f"{settings.name}-conversion"))
            if key not in given
        }
    )
    return settings.model_copy(update={"mlflow": mlflow})


PRESETS = ("salesforce", "hubspot")


def write_project_config(directory: Path, *, preset: str | None = None, force: bool = False) -> Path:
    """Write DIR/leadscore.toml from the commented default template, or a CRM preset named after the folder."""
    import re
    from importlib import resources

    if preset is not None and preset not in PRESETS:
        raise UsageError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    target = directory / "leadscore.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"templates/presets/{preset}.toml" if preset else "templates/leadscore.toml"
    text = resources.files("leadscore.pipelines").joinpath(name).read_text(encoding="utf-8")
    if preset:  # the project's name, from its folder: its own experiment and registered model
        project = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-._") or preset
        text = text.replace("\nmode = ", f'\nname = "{project}"\nmode = ', 1)
    target.write_text(text, encoding="utf-8")
    return target
