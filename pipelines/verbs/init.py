"""`leadscore init DIR --preset salesforce|hubspot --from EXPORT_DIR`: the preset fitted to the files a user has.

The preset's TOML is edited, its comments kept: each table points at the export file that holds its object (found
by its headers, API names or UI labels, and its file name), optional tables and columns the export lacks are left
out, and fit rules whose inputs are all absent are dropped with the others' weights rescaled. The printed field table
says what was found and what each missing field costs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import tomlkit

from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.config import Settings, write_project_config
from leadscore.pipelines.errors import UsageError
from leadscore.pipelines.grading import dark_fit_features, fit_reach_warning
from leadscore.pipelines.intake.vendors import VENDORS, FoundObject, field_table, find_objects

__all__ = ["run_init"]

REQUIRED_TABLES = ("leads", "opportunities")
# exports keys that name a column of one object, and the keys that go with them when it is absent
EXPORT_COLUMNS = {
    "opportunity_id_on_lead": ("leads", ()),
    "lead_status_column": ("leads", ("lost_lead_statuses", "lost_at_column")),
    "lost_at_column": ("leads", ("lost_lead_statuses", "lead_status_column")),
    "converted_column": ("leads", ()),
    "won_column": ("opportunities", ("closed_column",)),
    "closed_column": ("opportunities", ()),
}


def run_init(
    directory: Path,
    *,
    preset: str | None,
    from_dir: Path | None,
    force: bool,
    echo: Callable[[str], None],
) -> Path:
    """Write DIR/leadscore.toml (fitted to EXPORT_DIR's files with `from_dir`) and print what was found."""
    if from_dir is None:
        return write_project_config(directory, preset=preset, force=force)
    if preset is None:
        raise UsageError("--from needs --preset (salesforce or hubspot): the export's vendor")
    if not from_dir.is_dir():
        raise UsageError(f"--from: {from_dir} is not a folder (give the folder holding the export's files)")
    target = write_project_config(directory, preset=preset, force=force)
    vendor = VENDORS[preset]
    found = find_objects(vendor, from_dir)
    doc = tomlkit.parse(target.read_text(encoding="utf-8"))
    _fit_tables(doc, found, target.parent)
    _fit_exports(doc, found)
    notes = _fit_grades(doc, target.parent)
    target.write_text(tomlkit.dumps(doc), encoding="utf-8")
    for line in [*field_table(vendor, found), *notes]:
        echo(line)
    return target


def _tables_of(doc) -> list[tuple[str, object]]:
    """(name, TOML table) for every table of the config that exports a vendor object."""
    tables = [(name, doc["tables"][name]) for name in list(doc["tables"]) if "object" in doc["tables"][name]]
    more = doc.get("exports", {}).get("more_events", [])
    return tables + [(f"exports.more_events[{i}]", item) for i, item in enumerate(more)]


def _fit_tables(doc, found: dict[str, FoundObject], project: Path) -> None:
    for name, table in _tables_of(doc):
        item = found[str(table["object"])]
        if item.path is None:
            if name in REQUIRED_TABLES:
                fields = ", ".join(" / ".join(f.names()) for f in item.spec.fields[:2])
                raise UsageError(
                    f"no file in the export holds {item.spec.name} records (looked for the headers {fields})",
                    where="--from",
                    hint=f"export the {item.spec.name} object as CSV into that folder",
                )
            continue
        table["path"] = Path(os.path.relpath(item.path, project)).as_posix()
        if item.encoding:
            table["encoding"] = item.encoding
        columns = table.get("columns", {})
        roles = TABLE_ROLES["events" if name.startswith("exports.") else name]
        for role in [r for r, column in columns.items() if column not in item.headers and not roles.get(r)]:
            del columns[role]
        custom = table.get("custom", {})
        for key in [k for k, spec in custom.items() if spec.get("column", k) not in item.headers]:
            del custom[key]
    _drop_absent(doc, found)


def _drop_absent(doc, found: dict[str, FoundObject]) -> None:
    """Optional tables without a file go; when the main activity file is absent the first further one takes its
    place (`exports.more_events` adds to the events table)."""
    tables, exports = doc["tables"], doc.get("exports", {})
    more = exports.get("more_events")
    if more is not None:
        kept = [item for item in more if found[str(item["object"])].path is not None]
        more.clear()
        more.extend(kept)
    for name in [n for n in list(tables) if "object" in tables[n] and found[str(tables[n]["object"])].path is None]:
        del tables[name]
    if "events" not in tables and more:
        tables["events"] = more.pop(0)
    if more is not None and not more:
        del exports["more_events"]


def _fit_exports(doc, found: dict[str, FoundObject]) -> None:
    exports, tables = doc.get("exports", {}), doc["tables"]
    headers = {name: found[str(tables[name]["object"])].headers for name in tables if "object" in tables[name]}
    for key, (table, companions) in EXPORT_COLUMNS.items():
        if key in exports and exports[key] not in headers.get(table, {}):
            for name in (key, *companions):
                exports.pop(name, None)


def _fit_grades(doc, project: Path) -> list[str]:
    """Drop fit categories whose features can only be missing; rescale the others' weights to 100."""
    settings = Settings.model_validate(doc.unwrap()).model_copy(update={"base_dir": project})
    mapped = {
        name: set(getattr(settings.tables, name).columns) for name in ("leads", "accounts") if _has(settings, name)
    }
    custom = {f.name: f.table for f in settings.custom_fields()}
    has = lambda table, column: column in mapped.get(table, ()) or custom.get(column) == table  # noqa: E731
    dark = dark_fit_features(settings.grades, has, custom=custom)
    categories = doc.get("grades", {}).get("fit", {}).get("categories")
    if not dark or categories is None:
        return []
    gone = [name for name in list(categories) if categories[name]["feature"] in dark]
    if len(gone) == len(categories):
        return [f"fit rules: every fit feature is missing ({', '.join(dark)}): every lead will be graded D"]
    for name in gone:
        del categories[name]
    total = sum(float(c["weight"]) for c in categories.values())
    names = list(categories)
    for name in names[:-1]:
        categories[name]["weight"] = round(float(categories[name]["weight"]) * 100 / total, 2)
    categories[names[-1]]["weight"] = round(100 - sum(float(categories[n]["weight"]) for n in names[:-1]), 2)
    lines = [f"fit rules: dropped {', '.join(gone)} (no column for {', '.join(dark)}); the others' weights rescaled"]
    warning = fit_reach_warning(Settings.model_validate(doc.unwrap()).grades, [])
    return lines + ([f"warning: {warning}"] if warning else [])


def _has(settings: Settings, name: str) -> bool:
    return getattr(settings.tables, name) is not None
