"""The `leadscore` command line: one thin function per verb; the work happens in the pipeline modules."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from leadscore.pipelines.errors import OneErrorPath, UsageError

app = typer.Typer(
    cls=OneErrorPath,
    help="Predictive lead scoring: train on closed deals, score open leads, explain the scores.\n\n"
    "Exit codes: 0 done (possibly with warnings), 1 a data error, 2 a usage error, 3 monitor: an alert fired.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags without a <bool> placeholder, [engine] printed as written
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Project config file (leadscore.toml).")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Point in time (ISO date or timestamp, UTC).")]
EngineOption = Annotated[
    str | None, typer.Option("--engine", help="local (pandas) or spark; default: [engine] name in the config.")
]
LevelOption = Annotated[
    str,
    typer.Option(
        "--level", help="lead (one row per lead), account (per account with open leads) or opportunity (per open deal)."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable summary on stdout; everything else goes to stderr.")
]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"leadscore {metadata.version('leadscore')}")
        raise typer.Exit()


def _with_json(verb):
    """A verb that returns its summary: with --json the summary is stdout's only content (JSON, one object), and
    whatever else the verb prints goes to stderr; a nonzero `exit_code` in the summary is the process's exit code."""

    @functools.wraps(verb)
    def run(**kwargs):
        if kwargs.get("json_out"):
            stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                summary = verb(**kwargs)
            typer.echo(json.dumps(summary, indent=2, sort_keys=True, default=str), file=stdout)
        else:
            summary = verb(**kwargs)
        code = (summary or {}).get("exit_code", 0)
        if code:
            raise typer.Exit(code)

    return run


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    # LightGBM's OpenMP threads spin at every barrier: on 2 busy cores 100 rounds on 316k rows took 123 s, 8.9 s
    # passive. Set before any verb loads LightGBM; an OMP_WAIT_POLICY already set is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(config: Path, engine: str | None = None):
    """The project's settings; first, whatever a killed run of this project left half published is finished."""
    from leadscore.pipelines.config import load_settings
    from leadscore.pipelines.outputs.publish import recover_project

    settings = load_settings(config).with_engine(engine)
    recover_project(settings)
    return settings


def _as_of(value: str | None):
    from leadscore.pipelines.intake.parsing import parse_as_of

    return parse_as_of(value)


def _level(level: str, settings, *, levels=("lead", "account", "opportunity"), **unsupported) -> str:
    """The level asked for (one of `levels`), after checking it can run with the options given."""
    if level not in levels:
        raise UsageError(f"--level: use {' or '.join(repr(v) for v in levels)}, not {level!r}")
    if level != "lead":
        from leadscore.pipelines.verbs.levels import check_level

        check_level(settings, level, **unsupported)
    return level


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Project folder to create.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing leadscore.toml.")] = False,
    preset: Annotated[
        str | None, typer.Option("--preset", help="salesforce or hubspot: a config for that CRM's standard exports.")
    ] = None,
    from_dir: Annotated[
        Path | None, typer.Option("--from", help="Folder of the CRM's export files: the preset fitted to them.")
    ] = None,
) -> None:
    """Write DIR/leadscore.toml, a commented default config whose tables live in DIR/data/.

    \b
    Example:
      leadscore init demo
      leadscore init acme --preset salesforce --from ~/Downloads/salesforce-export
    """
    from leadscore.pipelines.verbs.init import run_init

    target = run_init(directory, preset=preset, from_dir=from_dir, force=force, echo=typer.echo)
    typer.echo(f"wrote {target}")
    if from_dir is not None:
        typer.echo(f"next: leadscore validate --config {target}")
        return
    if preset:
        typer.echo(
            f"next: put your {preset} exports in {directory / 'data'} (file names in the config), then "
            f"leadscore validate --config {target}"
        )
        return
    typer.echo(f"next: leadscore sample-data --out {directory / 'data'} && leadscore validate --config {target}")


@app.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Option("--out", help="Folder for the generated tables.")],
    leads: Annotated[int, typer.Option("--leads", min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the output is identical per seed.")] = 42,
    end: Annotated[str, typer.Option("--end", help="Last day of the data.")] = "2025-12-31",
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Generate a realistic synthetic B2B SaaS CRM (accounts, leads, events, opportunities).

    \b
    Example:
      leadscore sample-data --out demo/data --leads 20000
    """
    from leadscore.pipelines.sample_data import SampleSpec, write_sample

    counts = write_sample(out, SampleSpec(n_leads=leads, seed=seed, end=end), fmt=fmt)
    for name, rows in counts.items():
        typer.echo(f"{name:>14}: {rows:>11,} rows -> {out / f'{name}.{fmt}'}")


@app.command()
@_with_json
def validate(
    config: ConfigOption,
    as_of: AsOfOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 on any error, not only when verbs would stop.")
    ] = False,
    json_out: JsonOption = False,
) -> dict:
    """Load every table, normalise timestamps to UTC and report each problem; exit 1 when the other verbs would
    refuse the tables (a table unusable, or more broken rows than validation.max_rejected_share).

    \b
    Example:
      leadscore validate --config demo/leadscore.toml --json
    """
    from leadscore.pipelines.verbs.validate import run_validation

    summary: dict = {}
    code = run_validation(_settings(config), as_of=_as_of(as_of), echo=typer.echo, collect=summary, strict=strict)
    return {"verb": "validate", "exit_code": code, **summary}


@app.command("build-training-set")
def build_training_set(
    config: ConfigOption,
    out: Annotated[Path | None, typer.Option("--out", help="Parquet file (Spark: folder) to write.")] = None,
    as_of: AsOfOption = None,
    engine: EngineOption = None,
) -> None:
    """Build the point-in-time training set from closed outcomes, with a manifest beside it.

    \b
    Example:
      leadscore build-training-set --config demo/leadscore.toml --out demo/output/training_set.parquet
    """
    from leadscore.pipelines.verbs.build_training_set import run_build_training_set

    run_build_training_set(_settings(config, engine), out=out, as_of=_as_of(as_of), echo=typer.echo)


@app.command()
def grade(
    config: ConfigOption,
    as_of: AsOfOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="CSV or Parquet file for the graded open leads.")] = None,
    previous: Annotated[
        Path | None, typer.Option("--previous", help="An earlier grade output: stages never move back behind it.")
    ] = None,
    analyze: Annotated[bool, typer.Option("--analyze", help="Also check the rules against closed deals.")] = False,
    engine: EngineOption = None,
    level: LevelOption = "lead",
) -> None:
    """Grade every open lead with the rules only (fit A-D, engagement 1-4, cell, stage, action, due-by).

    \b
    Example:
      leadscore grade --config demo/leadscore.toml --out demo/output/grades.csv --analyze
    """
    from leadscore.pipelines.verbs import accounts
    from leadscore.pipelines.verbs.grade import run_grade

    settings = _settings(config, engine)
    if settings.mode == "crm" and _level(level, settings, levels=("lead", "account")) == "account":
        accounts.run_grade_accounts(settings, as_of=_as_of(as_of), out=out, echo=typer.echo)
        return
    run_grade(settings, as_of=_as_of(as_of), out=out, previous=previous, analyze=analyze, echo=typer.echo)


@app.command()
@_with_json
def train(
    config: ConfigOption,
    as_of: AsOfOption = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the new model champion whatever the gate says.")
    ] = False,
    training_set: Annotated[
        Path | None,
        typer.Option("--training-set", help="Train on a prebuilt training set (file or Spark folder) instead."),
    ] = None,
    level: LevelOption = "lead",
    json_out: JsonOption = False,
) -> dict:
    """Train on closed deals, evaluate on a time-ordered holdout beside the baselines, log and register in MLflow.

    \b
    Example:
      leadscore train --config demo/leadscore.toml --as-of 2025-06-30
    """
    from leadscore.pipelines.verbs.accounts import run_train_accounts
    from leadscore.pipelines.verbs.opportunities import run_train_opportunities
    from leadscore.pipelines.verbs.train import run_train

    settings = _settings(config)
    chosen = _level(level, settings, training_set=training_set)
    if chosen != "lead":
        run = run_train_accounts if chosen == "account" else run_train_opportunities
        return run(settings, as_of=_as_of(as_of), promote=promote, echo=typer.echo)
    return run_train(settings, as_of=_as_of(as_of), promote=promote, training_set=training_set, echo=typer.echo)


@app.command()
@_with_json
def backtest(
    config: ConfigOption,
    start: Annotated[
        str, typer.Option("--start", help="First step: a date (CRM), or a row share / row number (flat).")
    ],
    every: Annotated[str, typer.Option("--every", help="Step length: e.g. 30d, or a number of rows (flat).")] = "30d",
    as_of: AsOfOption = None,
    capacity: Annotated[
        int | None,
        typer.Option("--capacity", min=0, help="Leads per week for the capture table; default grades.capacity."),
    ] = None,
    level: LevelOption = "lead",
    json_out: JsonOption = False,
) -> dict:
    """Walk-forward retraining over history: per-period and pooled metrics beside the baselines, in MLflow.

    \b
    Example:
      leadscore backtest --config demo/leadscore.toml --start 2025-01-01 --every 60d
    """
    from leadscore.pipelines.verbs.backtest import check_steps, run_walk_forward

    settings = _settings(config)
    check_steps(start, every)
    chosen = _level(level, settings, levels=("lead", "opportunity"), capacity=capacity)
    when = _as_of(as_of)
    return run_walk_forward(
        settings, start=start, every=every, as_of=when, capacity=capacity, level=chosen, echo=typer.echo
    )


@app.command()
@_with_json
def predict(
    config: ConfigOption,
    as_of: AsOfOption = None,
    model: Annotated[str | None, typer.Option("--model", help="Model URI; default models:/NAME@champion.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="CSV or Parquet file for the scores.")] = None,
    to_sql: Annotated[str | None, typer.Option("--to-sql", help="Write the scores to this SQL table instead.")] = None,
    sql_url: Annotated[str | None, typer.Option("--sql-url", help="Database URL; default output.sql_url.")] = None,
    contributions: Annotated[
        Path | None, typer.Option("--contributions", help="Parquet file for the full SHAP contribution matrix.")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Leads to show at the end.")] = 10,
    crm_import: Annotated[
        str | None, typer.Option("--crm-import", help="salesforce or hubspot: also an import file in its shape.")
    ] = None,
    engine: EngineOption = None,
    level: LevelOption = "lead",
    json_out: JsonOption = False,
) -> dict | None:
    """Score every lead open at a date: probability, score, grade, stage, action, due-by and top reasons.

    \b
    Example:
      leadscore predict --config demo/leadscore.toml --out demo/output/scores.csv
    """
    from leadscore.pipelines.verbs.accounts import run_predict_accounts
    from leadscore.pipelines.verbs.opportunity_scores import run_predict_opportunities
    from leadscore.pipelines.verbs.predict import PredictTargets, check_options, run_predict

    settings = _settings(config, engine)
    check_options(settings, out=out, to_sql=to_sql)
    when = _as_of(as_of)
    chosen = _level(level, settings, to_sql=to_sql, contributions=contributions, crm_import=crm_import)
    if chosen != "lead":
        run = run_predict_accounts if chosen == "account" else run_predict_opportunities
        return run(settings, as_of=when, model_uri=model, out=out, top=top, echo=typer.echo)
    targets = PredictTargets(out, to_sql, sql_url, contributions, crm_import)
    return run_predict(settings, targets, as_of=when, model_uri=model, top=top, echo=typer.echo)


@app.command()
@_with_json
def explain(
    config: ConfigOption,
    model: Annotated[str | None, typer.Option("--model", help="Model URI; default models:/NAME@champion.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write.")] = None,
    level: LevelOption = "lead",
    json_out: JsonOption = False,
) -> dict:
    """Write a self-contained HTML report for analysts: what drives conversion, grades, model vs rules.

    \b
    Example:
      leadscore explain --config demo/leadscore.toml --out demo/output/report.html
    """
    from leadscore.pipelines.verbs.explain import run_explain

    settings = _settings(config)
    chosen = _level(level, settings, levels=("lead", "opportunity"))
    return run_explain(settings, model_uri=model, out=out, level=chosen, echo=typer.echo)


@app.command()
@_with_json
def monitor(
    config: ConfigOption,
    since: Annotated[str | None, typer.Option("--since", help="Only scoring runs on or after this date.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="HTML report; default output/monitor.html.")] = None,
    json_out: JsonOption = False,
) -> dict:
    """Close the loop: realized conversion by score band, live model record, sales acceptance, SLA compliance.

    Exit code 0: no alert fired; 3: at least one alert fired (thresholds in [monitor]); 1: cannot monitor.

    \b
    Example:
      leadscore monitor --config demo/leadscore.toml --since 2025-07-01 --json
    """
    from leadscore.pipelines.verbs.monitor import run_monitor_verb

    return run_monitor_verb(_settings(config), since=_as_of(since), out=out, echo=typer.echo)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # `python -m leadscore.pipelines.cli` as well as the `leadscore` entry point
    main()
