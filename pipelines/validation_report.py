"""`leadscore validate`: run the contract checks, write the rejects and print a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd

from features.schemas import TABLE_ROLES
from pipelines.config import Settings
from pipelines.io import frame_writer
from pipelines.publish import publish
from pipelines.validation import CrmData, Problem, load_crm, summarise

SHOWN_PER_RULE = 5


def write_rejects(data: CrmData, settings: Settings) -> dict[str, str]:
    """Write one CSV of rejected rows (with reasons) per table, and all problems; return the paths."""
    folder = settings.output_dir / "rejects"
    files = {folder / f"{n}.csv": frame_writer(frame, folder / f"{n}.csv") for n, frame in data.rejects.items()}
    if data.problems:
        problems = pd.DataFrame([p.__dict__ for p in data.problems]).astype({"value": "string"})
        files[folder / "problems.csv"] = frame_writer(problems, folder / "problems.csv")
    # one run's rejects replace the last run's as a unit: a table without rejects now loses its old file
    stale = [folder / f"{name}.csv" for name in (*TABLE_ROLES, "problems")]
    stale = [path for path in stale if path not in files and path.exists()]
    if files:
        publish(files, delete=stale)
    for path in stale if not files else ():
        path.unlink()
    return {path.stem: str(path) for path in files}


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
    settings: Settings, *, as_of: pd.Timestamp | None, echo: Callable[[str], None], collect: dict | None = None
) -> int:
    """Print the summary and problems, write the rejects; return the exit code. `collect` receives the figures."""
    collect = {} if collect is None else collect
    if settings.mode != "crm":
        echo("flat mode: nothing to validate beyond loading; use build-training-set")
        return 0
    data = load_crm(settings, as_of=as_of)  # a table that cannot be read at all stops here (pipelines.errors)
    summary = summarise(data)
    echo(f"as of {summary['as_of']}")
    for name, info in summary["tables"].items():
        ranges = "  ".join(f"{k[:-6]} {v[0][:10]}..{v[1][:10]}" for k, v in info.items() if k.endswith("_range"))
        echo(f"  {name:<14}{info['rows']:>10,} rows  {info['rejected']:>7,} rejected  {ranges}")
    if "leads_open" in summary:
        rate = summary["conversion_rate_closed"]
        echo(
            f"  leads: {summary['leads_open']:,} open, {summary['leads_closed']:,} closed, "
            f"{summary['leads_won']:,} won; conversion among closed: {'n/a' if rate is None else f'{rate:.1%}'}"
        )
    for line in format_problems(data.problems):
        echo(line)
    rejects = write_rejects(data, settings)
    for name, path in rejects.items():
        echo(f"  wrote {name}: {path}")
    echo(f"{len(data.errors)} error(s), {len(data.warnings)} warning(s)")
    collect.update(summary, errors=len(data.errors), warnings=len(data.warnings), rejects_files=rejects,
                   problems=[p.__dict__ for p in data.problems[:100]])  # fmt: skip
    return 1 if data.errors else 0
