"""`leadscore validate`: run the contract checks, write the rejects and print a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd

from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.config import Settings
from leadscore.pipelines.grading import dark_fit_features, fit_reach_warning
from leadscore.pipelines.intake.ground import ground_problems
from leadscore.pipelines.intake.validation import CrmData, Problem, load_crm, summarise
from leadscore.pipelines.intake.vendors import VENDORS, field_table, found_in
from leadscore.pipelines.outputs.rejects import write_rejects
from leadscore.pipelines.outputs.targets import check_outputs

SHOWN_PER_RULE = 5


def export_lines(settings: Settings) -> list[str]:
    """A vendor preset's field table (`init --from` prints the same): the fields its files have, and what each
    missing one costs."""
    vendor = VENDORS.get(settings.exports.vendor or "")
    if vendor is None or settings.tables is None:
        return []
    sources = [getattr(settings.tables, name) for name in TABLE_ROLES] + list(settings.exports.more_events)
    files = {s.object: settings.resolve(s.path) for s in sources if s is not None and s.object and s.path}
    return field_table(vendor, found_in(vendor, files))


def fit_reach(settings: Settings, data: CrmData) -> str | None:
    """A warning when the fit rules can never grade a lead A or B with the columns that hold values."""
    tables = data.tables

    def has(table: str, column: str) -> bool:
        return table in tables and column in tables[table] and bool(tables[table][column].notna().any())

    custom = {f.name: f.table for f in settings.custom_fields()}
    return fit_reach_warning(settings.grades, dark_fit_features(settings.grades, has, custom=custom))


def format_problems(problems: list[Problem]) -> list[str]:
    """A few examples per (table, column, rule), then how many more."""
    lines, shown = [], Counter()
    totals = Counter((p.table, p.column, p.rule) for p in problems)
    for problem in problems:
        key = (problem.table, problem.column, problem.rule)
        shown[key] += 1
        if shown[key] <= SHOWN_PER_RULE:
            lines.append(f"  {problem.severity}: {problem.message}")
        elif shown[key] == SHOWN_PER_RULE + 1:
            lines.append(f"  ... and {totals[key] - SHOWN_PER_RULE} more '{problem.rule}' in {key[0]}.{key[1]}")
    return lines


def run_validation(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None,
    echo: Callable[[str], None],
    collect: dict | None = None,
    strict: bool = False,
) -> int:
    """Print the summary and problems, write the rejects; return the exit code: 1 when the other verbs would refuse
    the tables (or, `strict`, on any error). `collect` receives the figures."""
    collect = {} if collect is None else collect
    if settings.mode != "crm":
        return run_flat_validation(settings, echo=echo)
    check_outputs(settings)  # the rejects' folder, before any table is read
    data = load_crm(settings, as_of=as_of)  # a table that cannot be read at all stops here (pipelines.errors)
    summary = summarise(data)
    echo(f"as of {summary['as_of']}")
    for name, info in summary["tables"].items():
        ranges = "  ".join(f"{k[:-6]} {v[0][:10]}..{v[1][:10]}" for k, v in info.items() if k.endswith("_range"))
        aside = data.set_aside.get(name, 0)
        kinds = f" ({aside:,} set aside)" if aside else ""
        echo(f"  {name:<14}{info['rows']:>10,} rows  {info['rejected']:>7,} rejected{kinds}  {ranges}")
    if "leads_open" in summary:
        rate = summary["conversion_rate_closed"]
        echo(
            f"  leads: {summary['leads_open']:,} open, {summary['leads_closed']:,} closed, "
            f"{summary['leads_won']:,} won; conversion among closed: {'n/a' if rate is None else f'{rate:.1%}'}"
        )
    for line in export_lines(settings):
        echo(line)
    fit_warning = fit_reach(settings, data)
    for line in format_problems(data.problems) + ([f"  warning: {fit_warning}"] if fit_warning else []):
        echo(line)
    rejects = write_rejects(data, settings)
    for name, path in rejects.items():
        echo(f"  wrote {name}: {path}")
    refusals = ground_problems(data, settings)
    for refusal in refusals:
        echo(f"  refused: {refusal}" + (f"\n    hint: {refusal.hint}" if refusal.hint else ""))
    echo(
        f"{len(data.errors)} error(s), {len(data.warnings)} warning(s), {sum(data.set_aside.values()):,} row(s) set "
        "aside; " + ("the other verbs refuse these tables" if refusals else "the other verbs run on the valid rows")
    )
    collect.update(
        summary,
        errors=len(data.errors),
        warnings=len(data.warnings),
        set_aside=dict(data.set_aside),
        refusals=[str(r) for r in refusals],
        rejects_files=rejects,
        problems=[p.__dict__ for p in data.problems[:100]],
    )
    return 1 if refusals or (strict and data.errors) else 0


def run_flat_validation(settings: Settings, *, echo: Callable[[str], None]) -> int:
    """Flat mode: the export's problems (absent columns, labels, numbers, ids, times, leaking names) and a summary."""
    from leadscore.pipelines.intake.flat_checks import flat_problems
    from leadscore.pipelines.intake.flat_source import flat_location, load_flat_export

    f = settings.flat
    frame = load_flat_export(settings)
    problems = flat_problems(frame, f, where=flat_location(settings))
    echo(f"{flat_location(settings)}: {len(frame):,} rows, {len(frame.columns)} columns")
    for line in flat_summary_lines(frame, f):
        echo(line)
    for problem in problems:
        echo(f"  {problem.severity}: {problem.message}")
    errors = sum(p.severity == "error" for p in problems)
    echo(f"{errors} error(s), {len(problems) - errors} warning(s)")
    return 1 if errors else 0


def flat_summary_lines(frame: pd.DataFrame, f) -> list[str]:
    """The outcome and open counts, the features, and how a row is identified in the scores."""
    from leadscore.features.flat import flat_counts
    from leadscore.pipelines.intake.flat_checks import identifying_candidates, open_rule

    lines = []
    present = [c for c in (f.label_column, f.status_column) if c]
    if all(c in frame for c in present):
        n = flat_counts(frame, f.spec())
        rate = f"{n.positive / n.labelled:.1%}" if n.labelled else "n/a"
        lines.append(
            f"  {n.labelled:,} labelled ({n.positive:,} positive, {rate}), {n.open:,} open ({open_rule(f)}: "
            "scored by predict, never trained)"
        )
    lines.append(
        f"  features: {len(f.categorical)} categorical, {len(f.numeric)} numeric; leaking excluded: "
        f"{[c for c in f.leaking if c in frame.columns]}"
    )
    if not f.id_column:
        shown = f.identify_columns or identifying_candidates(frame, f)
        carried = "carried into the scores" if f.identify_columns else "candidates for flat.identify_columns"
        lines.append(f"  no id column: lead_id is the row number in the file (1 = first data row); {carried}: {shown}")
    return lines
