"""The `leadscore` command line: one thin function per verb; the work happens in the pipeline modules."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated

import typer

from leadscore.pipelines.errors import OneErrorPath

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
    str, typer.Option("--level", help="lead (one row per lead) or account (one row per account with open leads).")
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
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings(config: Path):
    from leadscore.pipelines.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _as_of(value: str | None):
    if value is None:
        return None
    import pandas as pd

    from leadscore.pipelines.intake.parsing import EARLIEST, LATEST

    try:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    except (ValueError, OverflowError):
        raise _fail(f"--as-of: not a date or timestamp: {value!r}") from None
    if not EARLIEST <= stamp < LATEST:
        raise _fail(f"--as-of: {value!r} is outside the years {EARLIEST.year}-{LATEST.year - 1}")
    return stamp


def _valid_crm(settings, as_of: str | None):
    """The validated CRM tables; stop with the error count when validation found errors."""
    from leadscore.pipelines.intake.validation import load_crm

    data = load_crm(settings, as_of=_as_of(as_of))
    if data.errors:
        first = data.errors[0].message
        more = f" (and {len(data.errors) - 1:,} more)" if len(data.errors) > 1 else ""
        raise _fail(f"{len(data.errors):,} validation error(s), first: {first}{more}; run `leadscore validate` "
                    "for the list and the rejected rows", 1)  # fmt: skip
    return data


def _check_out(path: Path | None, option: str, suffixes: tuple[str, ...], settings=None, *, folder=False) -> None:
    """Refuse an unusable output target before any heavy work (suffix, an input's path, no write access)."""
    from leadscore.pipelines.outputs.publish import check_output, input_paths

    check_output(path, option=option, suffixes=suffixes, inputs=input_paths(settings) if settings else (),
                 folder=folder)  # fmt: skip


def _load_model(settings, uri: str | None):
    """(model, its pyfunc wrapper, registered name, version) for a model URI (default: the champion)."""
    from leadscore.pipelines.outputs import tracking

    uri = uri or f"models:/{settings.mlflow.registered_model}@champion"
    try:
        tracking.use_store(settings)
        model, wrapper = tracking.load_conversion_model(uri)
        name, version = tracking.resolve_version(uri)
    except Exception as exc:  # MLflow raises several types for a missing model
        raise _fail(f"cannot load model {uri}: {exc}. Run `leadscore train` first.", 1) from None
    return model, wrapper, name or uri, version


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Project folder to create.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing leadscore.toml.")] = False,
    preset: Annotated[
        str | None, typer.Option("--preset", help="salesforce or hubspot: a config for that CRM's standard exports.")
    ] = None,
) -> None:
    """Write DIR/leadscore.toml, a commented default config whose tables live in DIR/data/.

    \b
    Example:
      leadscore init demo
      leadscore init acme --preset salesforce
    """
    presets = ("salesforce", "hubspot")
    if preset is not None and preset not in presets:
        raise _fail(f"--preset: {preset!r} is not one of {', '.join(presets)}")
    target = directory / "leadscore.toml"
    if target.exists() and not force:
        raise _fail(f"{target} exists; use --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"templates/presets/{preset}.toml" if preset else "templates/leadscore.toml"
    template = resources.files("leadscore.pipelines").joinpath(name)
    with resources.as_file(template) as source:
        text = source.read_text(encoding="utf-8")
    if preset:  # the project's name, from its folder: its own experiment and registered model
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", directory.resolve().name).strip("-._") or preset
        text = text.replace("\nmode = ", f'\nname = "{name}"\nmode = ', 1)
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")
    if preset:
        typer.echo(f"next: put your {preset} exports in {directory / 'data'} (file names in the config), then "
                   f"leadscore validate --config {target}")  # fmt: skip
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
    from tqdm import tqdm

    from leadscore.pipelines.sample_data import SampleSpec, generate

    if fmt not in {"parquet", "csv"}:
        raise _fail(f"--format: use parquet or csv, not {fmt!r}")
    _check_out(out, "--out", (), folder=True)
    spec = SampleSpec(n_leads=leads, seed=seed, end=end)
    with tqdm(total=leads, unit="lead", desc="sample-data", disable=None) as bar:
        counts = generate(out, spec, fmt=fmt, progress=bar.update)
    for name, rows in counts.items():
        typer.echo(f"{name:>14}: {rows:>11,} rows -> {out / f'{name}.{fmt}'}")


@app.command()
@_with_json
def validate(config: ConfigOption, as_of: AsOfOption = None, json_out: JsonOption = False) -> dict:
    """Load every table, normalise timestamps to UTC and report each problem; exit 1 on errors.

    \b
    Example:
      leadscore validate --config demo/leadscore.toml --json
    """
    from leadscore.pipelines.verbs.validate import run_validation

    settings = _settings(config)
    summary: dict = {}
    code = run_validation(settings, as_of=_as_of(as_of), echo=typer.echo, collect=summary)
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
    from leadscore.pipelines.verbs.training_set import build_training_set as build
    from leadscore.pipelines.verbs.training_set import coverage_lines, write_training_set

    settings = _with_engine(_settings(config), engine)
    spark_folder = settings.engine.name == "spark" and settings.mode == "crm"
    _check_out(out, "--out", (".parquet",), settings, folder=spark_folder)
    _as_of(as_of)
    if spark_folder:
        from leadscore.pipelines.outputs.files import write_json
        from leadscore.pipelines.spark_engine import training_set_spark

        target = out or settings.output_dir / "training_set_parquet"
        manifest = training_set_spark(settings, as_of=_as_of(as_of), out=target)
        write_json(manifest, target.with_name(target.name + ".manifest.json"))
        typer.echo(
            f"training set on Spark: {manifest['rows']:,} rows, {manifest['positives']:,} positives, "
            f"{manifest['censored']:,} censored -> {target}"
        )
        return
    data = None
    if settings.mode == "crm":
        data = _valid_crm(settings, as_of)
    training = build(settings, data=data)
    path, manifest = write_training_set(training, out or settings.output_dir / "training_set.parquet")
    m = training.manifest
    typer.echo(
        f"training set: {m['rows']:,} rows, {m['positives']:,} positives ({m['positive_rate']:.1%}), "
        f"{len(m['features'])} features -> {path}"
    )
    if "spine" in m:
        sp = m["spine"]
        typer.echo(
            f"censored (horizon not over by as_of, whatever happened in it; never labelled): {sp['censored']:,}; "
            f"snapshots over the cap per lead left out: {sp.get('thinned', 0):,}"
        )
        for line in coverage_lines(m.get("coverage")):
            typer.echo(line)
    if m.get("excluded_leaking_columns"):
        typer.echo(f"excluded as leaking: {', '.join(m['excluded_leaking_columns'])}")
    typer.echo(f"manifest -> {manifest}")


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
    from leadscore.pipelines.outputs.files import write_frame
    from leadscore.pipelines.verbs.grade import analyze_closed_deals, grade_open_leads, read_previous

    settings = _with_engine(_settings(config), engine)
    if settings.mode != "crm":
        raise _fail("grading needs the CRM tables (mode = 'crm')")
    if _account_level(level, settings):
        return _grade_accounts(settings, as_of, out)
    _check_out(out, "--out", (".csv", ".parquet"), settings, folder=settings.engine.name == "spark")
    _as_of(as_of)
    if settings.engine.name == "spark":
        from leadscore.pipelines.spark_engine import grade_spark

        target = out or settings.output_dir / "grades_parquet"
        summary = grade_spark(settings, as_of=_as_of(as_of), out=target)
        typer.echo(f"graded {summary['graded']:,} open leads as of {summary['as_of']} on Spark -> {target}")
        return
    data = _valid_crm(settings, as_of)
    model = None
    if settings.grades.stages.sql_min_probability is not None:  # stages then read the champion's probability
        model = _load_model(settings, None)[0]
    graded = grade_open_leads(settings, data, previous=read_previous(previous or out), model=model)
    path = write_frame(graded, out or settings.output_dir / "grades.csv")
    typer.echo(f"graded {len(graded):,} open leads as of {data.as_of.isoformat()} -> {path}")
    typer.echo(graded["cell"].value_counts().sort_index().to_frame("leads").T.to_string())
    typer.echo(graded["stage"].value_counts().to_frame("leads").T.to_string())
    if analyze:
        analysis, _ = analyze_closed_deals(settings, data)
        typer.echo("")
        for line in analysis.lines():
            typer.echo(line)


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
    from leadscore.models.conversion import TooLittleDataError
    from leadscore.pipelines.verbs.train import train as run_training
    from leadscore.pipelines.verbs.training_set import coverage_lines, read_training_set

    settings = _settings(config)
    if _account_level(level, settings, training_set=training_set):
        return _train_accounts(settings, as_of, promote)
    data = None
    prebuilt = None
    if training_set is not None:
        from leadscore.pipelines.intake.files import check_parquet_input

        check_parquet_input(training_set, name="training set")
        try:
            prebuilt = read_training_set(training_set)
        except FileNotFoundError as exc:
            raise _fail(str(exc)) from None
        typer.echo("training on a prebuilt training set: the rules-only baseline is left out")
    elif settings.mode == "crm":
        data = _valid_crm(settings, as_of)
    try:
        result = run_training(settings, promote_anyway=promote, data=data, training=prebuilt)
    except TooLittleDataError as exc:
        raise _fail(f"too little data to train: {exc}", 1) from None
    model, split, deployed = result.model, result.split, result.deployed
    typer.echo(
        f"recipe evaluated: fit on {len(split.dev):,} rows, scored on the latest {len(split.holdout):,} (fully "
        f"observed) rows (best iteration {model.best_iteration_}, calibration: {model.calibration_method_})"
    )
    typer.echo("holdout metrics (model and baselines):")
    typer.echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    typer.echo(
        f"deployed: the same recipe refit on all {deployed.n_train_:,} rows (best iteration "
        f"{deployed.best_iteration_}, calibration: {deployed.calibration_method_}); it carries the figures above"
    )
    for line in coverage_lines(result.training.manifest.get("coverage")):
        typer.echo(line)
    typer.echo(f"registered {settings.mlflow.registered_model} version {result.version} (alias challenger)")
    typer.echo(result.decision)
    typer.echo(f"MLflow run {result.run_id} in {settings.tracking_uri}")
    return {"verb": "train", "registered_model": settings.mlflow.registered_model, "version": result.version,
            "decision": result.decision, "run_id": result.run_id, "tracking_uri": settings.tracking_uri,
            "dev_rows": len(split.dev), "holdout_rows": len(split.holdout),
            "holdout": {scorer: {k: float(v) for k, v in row.dropna().items()}
                        for scorer, row in result.metrics.iterrows()}}  # fmt: skip


@app.command()
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
) -> None:
    """Walk-forward retraining over history: per-period and pooled metrics beside the baselines, in MLflow.

    \b
    Example:
      leadscore backtest --config demo/leadscore.toml --start 2025-01-01 --every 60d
    """
    import pandas as pd
    from tqdm import tqdm

    from leadscore.models.conversion import TooLittleDataError
    from leadscore.models.grades import grade_spine
    from leadscore.pipelines.verbs.backtest import log_backtest, row_steps, run_backtest, time_steps
    from leadscore.pipelines.verbs.training_set import build_training_set

    settings = _settings(config)
    _check_steps(start, every)
    data = _valid_crm(settings, as_of) if settings.mode == "crm" else None
    training = build_training_set(settings, data=data)
    n = len(training.frame)
    if every.endswith("d"):
        if training.frame["cutoff_time"].isna().all():
            raise _fail("--every in days needs cutoff times; this data is row-ordered: give a number of rows")
        step_start = _as_of(start)
        steps = time_steps(
            training.frame["cutoff_time"],
            start=step_start,
            every=pd.Timedelta(days=float(every[:-1])),
            horizon=pd.Timedelta(days=settings.spine.horizon_days if settings.mode == "crm" else 0),
        )
    else:
        first = float(start)
        steps = row_steps(n, start=int(first * n) if first < 1 else int(first), every=int(every))
    cells = None
    if data is not None:
        cells = grade_spine(training.frame[["lead_id", "cutoff_time", "converted"]], data.tables, settings.grades,
                            settings.feature_params())["cell"]
    try:
        with tqdm(total=len(steps), unit="step", desc="backtest", disable=None) as bar:
            result = run_backtest(settings, training, steps, cells=cells, progress=bar.update)
    except TooLittleDataError as exc:
        raise _fail(str(exc), 1) from None
    table = result.per_period.pivot(index="period", columns="scorer", values="roc_auc")
    table.insert(0, "rows", result.per_period.groupby("period", sort=False)["rows"].first())
    typer.echo("ROC AUC per period:")
    typer.echo(table.to_string(float_format=lambda v: f"{v:.4f}"))
    typer.echo("\npooled over all periods:")
    typer.echo(result.pooled.to_string(float_format=lambda v: f"{v:.4f}"))
    from leadscore.pipelines.verbs.capacity import backtest_capture, capture_text

    capture = backtest_capture(settings, data, training.frame, result.predictions, capacity=capacity)
    if capture is not None:
        typer.echo("\n" + capture_text(capture[1], capture[0]))
    else:
        typer.echo("\nno capture table: set [grades.capacity] or give --capacity N (leads per week)")
    run_id = log_backtest(settings, result, params={"start": start, "every": every, "steps": len(steps)},
                          capture=None if capture is None else capture[:2])  # fmt: skip
    typer.echo(f"MLflow run {run_id} (one child run per period) in {settings.tracking_uri}")


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
    engine: EngineOption = None,
    level: LevelOption = "lead",
    json_out: JsonOption = False,
) -> dict | None:
    """Score every lead open at a date: probability, score, grade, stage, action, due-by and top reasons.

    \b
    Example:
      leadscore predict --config demo/leadscore.toml --out demo/output/scores.csv
    """
    from tqdm import tqdm

    from leadscore.pipelines.intake.ground import check_ground, check_model_fits_crm, check_open_leads
    from leadscore.pipelines.intake.ground import withhold_leads_with_rejected_deals as withhold
    from leadscore.pipelines.intake.validation import load_crm
    from leadscore.pipelines.outputs.files import frame_writer
    from leadscore.pipelines.outputs.publish import check_sql_output, publish, write_sql_tables
    from leadscore.pipelines.verbs.predict import log_scoring_run, rejects_path, score_open_leads

    settings = _with_engine(_settings(config), engine)
    flat = settings.mode == "flat"
    if flat and settings.engine.name == "spark":
        raise _fail("flat mode scores on this machine: --engine local")
    if out is not None and to_sql is not None:
        raise _fail("give --out or --to-sql, not both")
    as_of_stamp = _as_of(as_of)
    if _account_level(level, settings, to_sql=to_sql, contributions=contributions):
        return _predict_accounts(settings, as_of_stamp, model, out, top)
    spark = settings.engine.name == "spark"
    target = out or settings.output_dir / ("scores_parquet" if spark else "scores.csv")
    url = sql_url or settings.output.sql_url
    if to_sql is not None:
        if not url:
            raise _fail("--to-sql needs --sql-url or output.sql_url in the config")
        check_sql_output(settings, url, to_sql)
    else:
        _check_out(target, "--out", (".csv", ".parquet"), settings, folder=spark)
        if not spark:
            _check_out(rejects_path(Path(target)), "--out (its rejects file)", (".csv",), settings)
    _check_out(contributions, "--contributions", (".parquet",), settings)
    if spark:
        if settings.grades.capacity is not None:
            typer.echo("warning: grades.capacity is applied by the local engine only; Spark scores are not limited",
                       err=True)  # fmt: skip
        return _predict_on_spark(settings, model, out, as_of_stamp)
    conversion, wrapper, name, version = _load_model(settings, model)
    model_uri = model or f"models:/{settings.mlflow.registered_model}@champion"
    if flat:
        from leadscore.pipelines.verbs.flat_predict import score_flat_open_leads

        result = score_flat_open_leads(settings, conversion, wrapper, model_name=name, model_version=version,
                                       model_uri=model_uri, as_of=as_of_stamp,
                                       keep_contributions=contributions is not None)  # fmt: skip
        scored_as_of = result.scores["as_of"].iloc[0]
    else:
        check_model_fits_crm(conversion, model_uri, custom=tuple(f.name for f in settings.custom_fields()))
        data = load_crm(settings, as_of=as_of_stamp)
        check_ground(data, settings)
        if data.errors:  # every table's rejected rows, with their reasons, as `validate` writes them
            from leadscore.pipelines.verbs.validate import write_rejects

            written = ", ".join(write_rejects(data, settings).values())
            typer.echo(f"warning: {len(data.errors)} row(s) rejected by validation, with their reasons in {written}",
                       err=True)  # fmt: skip
        data = withhold(data)
        check_open_leads(data)
        with tqdm(total=len(data.tables["leads"]), unit="lead", desc="predict", disable=None) as bar:
            result = score_open_leads(settings, data, conversion, wrapper, model_name=name, model_version=version,
                                      chunk_size=settings.output.chunk_size, drop_events=True,
                                      keep_contributions=contributions is not None, progress=bar.update)  # fmt: skip
        scored_as_of = data.as_of
    capacity = None
    if settings.grades.capacity is not None:
        from leadscore.pipelines.verbs.capacity import apply_capacity

        if flat:
            typer.echo("warning: grades.capacity is applied in CRM mode only; flat scores are not limited", err=True)
        else:
            result.scores, capacity = apply_capacity(settings, data, result.scores)
    # the scores, their rejects (and the contributions) of one run are published together, or not at all
    if to_sql is not None:
        where = write_sql_tables({to_sql: result.scores, f"{to_sql}_rejects": result.rejects}, url)
        if contributions is not None:
            publish({Path(contributions): frame_writer(result.contributions, contributions)})
    else:
        files = {Path(target): frame_writer(result.scores, target),
                 rejects_path(Path(target)): frame_writer(result.rejects, rejects_path(Path(target)))}  # fmt: skip
        if contributions is not None:
            files[Path(contributions)] = frame_writer(result.contributions, contributions)
        publish(files)
        where = target
    from leadscore.pipelines.outputs.history import append_history

    history = append_history(settings, result.scores)
    s = result.summary
    typer.echo(
        f"scored {s['scored']:,} open leads as of {scored_as_of.isoformat()} with {name} v{version or '?'} -> {where}"
    )
    typer.echo(f"rejected: {s['rejected']:,}; mean probability {s['mean_probability']}")
    if history:
        typer.echo(f"score history: this run's {s['scored']:,} rows -> {history}")
    if s["leads_per_cell"]:
        typer.echo("leads per cell: " + ", ".join(f"{k} {v:,}" for k, v in s["leads_per_cell"].items()))
        typer.echo("leads per stage: " + ", ".join(f"{k} {v:,}" for k, v in s["leads_per_stage"].items()))
    elif flat:
        typer.echo("no grades: set [grades.fit] on the export's columns and [flat.engagement] to grade and route")
    if capacity is not None:
        from leadscore.pipelines.verbs.capacity import capture_lines

        typer.echo("\n".join(capture_lines(capacity)))
    run_id = log_scoring_run(settings, result, model_name=name, model_version=version, as_of=scored_as_of)
    typer.echo(f"drift (PSI per feature and score) and the summary logged to MLflow run {run_id}")
    drifted = result.drift[result.drift > settings.output.drift_threshold]
    if len(drifted):
        typer.echo(
            f"warning: drift against the training population (PSI > {settings.output.drift_threshold}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in drifted.head(8).items()),
            err=True,
        )
    typer.echo(f"\ntop {top} leads:")
    columns = ["lead_id", "score", "cell", "stage", "action", "due_by", "reasons_positive"]
    if capacity is not None:
        columns.insert(5, "handoff")
    shown = result.scores.head(top)[columns]
    typer.echo(shown.to_string(index=False, max_colwidth=110))
    return {"verb": "predict", **s, "as_of": scored_as_of.isoformat(), "model_name": name, "model_version": version,
            "output": str(where), "history": history, "run_id": run_id,
            "drift_warnings": {k: round(float(v), 4) for k, v in drifted.items()},
            **({"capacity": capacity} if capacity is not None else {})}  # fmt: skip


@app.command()
def explain(
    config: ConfigOption,
    model: Annotated[str | None, typer.Option("--model", help="Model URI; default models:/NAME@champion.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write.")] = None,
) -> None:
    """Write a self-contained HTML report for analysts: what drives conversion, grades, model vs rules.

    \b
    Example:
      leadscore explain --config demo/leadscore.toml --out demo/output/report.html
    """
    import matplotlib

    matplotlib.use("Agg")  # the report is rendered to files, never to a screen
    from leadscore.pipelines.outputs.files import write_atomically
    from leadscore.pipelines.reports.analyst import build_report, load_review, log_to_run

    settings = _settings(config)
    _check_out(out, "--out", (".html", ".htm"), settings)
    from leadscore.pipelines.errors import LeadscoreError

    try:
        review = load_review(settings, model_uri=model)
    except LeadscoreError:
        raise  # bad input data: its own message, not "cannot load the model"
    except Exception as exc:  # a missing model surfaces as one of several MLflow errors
        raise _fail(f"cannot load the model: {exc}. Run `leadscore train` first.", 1) from None
    page, images, tables = build_report(review)
    target = out or settings.output_dir / "report.html"
    write_atomically(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    run_id = log_to_run(review, images, tables)
    typer.echo(f"report: {target.resolve()}")
    if run_id:
        typer.echo(f"images and tables logged to MLflow run {run_id}")


def _check_steps(start: str, every: str) -> None:
    """--start and --every are readable (a date and days, or rows) before any data is loaded."""
    import pandas as pd

    try:
        if every.endswith("d"):
            if float(every[:-1]) <= 0:
                raise ValueError
            pd.Timestamp(start)
        elif int(every) <= 0 or float(start) < 0:
            raise ValueError
    except ValueError:
        raise _fail(f"--start {start!r} / --every {every!r}: use a date and days (e.g. 2025-01-01, 30d) or a row "
                    "share / number and a number of rows (e.g. 0.8, 1000)") from None  # fmt: skip


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
    import matplotlib

    matplotlib.use("Agg")  # the report is rendered to files, never to a screen
    from leadscore.pipelines.reports.monitor import summary_lines
    from leadscore.pipelines.verbs.monitor import run_monitor

    settings = _settings(config)
    if settings.mode != "crm":
        raise _fail("monitor reads the outcomes of scored leads from a CRM (mode = 'crm')", 1)
    result = run_monitor(settings, since=_as_of(since), out=out)
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"\nreport: {result.report_path.resolve()}")
    typer.echo(f"tables, plots and the report logged to MLflow run {result.run_id}")
    return {"verb": "monitor", "exit_code": result.exit_code, "alerts": result.alerts, "notes": result.notes,
            "champion": result.champion, "matured_outcomes": len(result.outcomes),
            "data_end": result.data_end.isoformat(), "report": str(result.report_path.resolve()),
            "run_id": result.run_id}  # fmt: skip


def _with_engine(settings, engine: str | None):
    if engine is None:
        return settings
    if engine not in {"local", "spark"}:
        raise _fail(f"--engine: use 'local' or 'spark', not {engine!r}")
    return settings.model_copy(update={"engine": settings.engine.model_copy(update={"name": engine})})


def _predict_on_spark(settings, model_uri: str | None, out: Path | None, as_of) -> dict:
    from leadscore.pipelines.spark_engine import predict_spark

    conversion, wrapper, name, version = _load_model(settings, model_uri)
    target = out or settings.output_dir / "scores_parquet"
    summary = predict_spark(settings, conversion, wrapper, model_name=name, model_version=version,
                            as_of=as_of, out=target)  # fmt: skip
    typer.echo(
        f"scored {summary['scored']:,} open leads as of {summary['as_of']} on Spark "
        f"({settings.engine.spark_master}) -> {target} (rejected: {summary['rejected']:,})"
    )
    import pandas as pd

    from leadscore.pipelines.outputs.history import HISTORY_COLUMNS, append_history

    history = append_history(settings, pd.read_parquet(target, columns=HISTORY_COLUMNS))
    if history:
        typer.echo(f"score history: this run's rows -> {history}")
    return {"verb": "predict", "engine": "spark", **summary, "model_name": name, "model_version": version,
            "output": str(target), "history": history}  # fmt: skip


def _account_level(level: str, settings, **unsupported) -> bool:
    """True for --level account (CRM mode, this machine); refuses options the account level does not take."""
    if level not in {"lead", "account"}:
        raise _fail(f"--level: use 'lead' or 'account', not {level!r}")
    if level == "lead":
        return False
    if settings.mode != "crm":
        raise _fail("--level account needs the CRM tables (mode = 'crm'): accounts come from leads.account_id")
    if settings.engine.name == "spark":
        raise _fail("--level account runs on this machine: --engine local")
    given = [name.replace("_", "-") for name, value in unsupported.items() if value is not None]
    if given:
        raise _fail(f"--level account does not take --{', --'.join(given)}")
    return True


def _train_accounts(settings, as_of: str | None, promote: bool) -> dict:
    from leadscore.models.conversion import TooLittleDataError
    from leadscore.pipelines.verbs.accounts import ACCOUNT_MODEL, account_settings, train_accounts

    data = _valid_crm(settings, as_of)
    try:
        out = train_accounts(settings, data, promote_anyway=promote)
    except TooLittleDataError as exc:
        raise _fail(f"too little data to train: {exc}", 1) from None
    result = out.result
    split, name = result.split, account_settings(settings).mlflow.registered_model
    typer.echo(f"account model evaluated: fit on {len(split.dev):,} account rows, scored on the latest "
               f"{len(split.holdout):,} (fully observed) rows (best iteration {result.model.best_iteration_})")
    typer.echo(f"holdout metrics ({ACCOUNT_MODEL}: the account model; rollup_*: 1 - prod(1 - p_lead) over the "
               "account's open leads):")  # fmt: skip
    typer.echo(result.metrics.to_string(float_format=lambda v: f"{v:.4f}"))
    for scorer, note in out.rollups.items():
        typer.echo(f"  {scorer}: {note}")
    typer.echo(f"registered {name} version {out.version} (alias challenger)")
    typer.echo(out.decision)
    typer.echo(f"MLflow run {out.run_id} in {settings.tracking_uri}")
    return {"verb": "train", "level": "account", "registered_model": name, "version": out.version,
            "decision": out.decision, "run_id": out.run_id, "dev_rows": len(split.dev),
            "holdout_rows": len(split.holdout), "rollups": out.rollups,
            "holdout": {scorer: {k: float(v) for k, v in row.dropna().items()}
                        for scorer, row in result.metrics.iterrows()}}  # fmt: skip


def _lead_champion(settings):
    """(model, wrapper) of the lead champion and its name, or (None, '') when there is none."""
    from leadscore.pipelines.outputs import tracking

    try:
        tracking.use_store(settings)
        uri = f"models:/{settings.mlflow.registered_model}@champion"
        model, wrapper = tracking.load_conversion_model(uri)
        name, version = tracking.resolve_version(uri)
    except Exception:  # MLflow raises several types for a missing model
        return None, ""
    return (model, wrapper), f"{name} v{version}"


def _predict_accounts(settings, as_of, model_uri: str | None, out: Path | None, top: int) -> dict:
    from leadscore.pipelines.intake.ground import check_ground
    from leadscore.pipelines.intake.ground import withhold_leads_with_rejected_deals as withhold
    from leadscore.pipelines.intake.validation import load_crm
    from leadscore.pipelines.outputs.files import frame_writer
    from leadscore.pipelines.outputs.publish import publish
    from leadscore.pipelines.verbs.accounts import account_settings, score_open_accounts
    from leadscore.pipelines.verbs.predict import rejects_path

    target = Path(out or settings.output_dir / "account_scores.csv")
    _check_out(target, "--out", (".csv", ".parquet"), settings)
    _check_out(rejects_path(target), "--out (its rejects file)", (".csv",), settings)
    model, wrapper, name, version = _load_model(account_settings(settings), model_uri)
    data = load_crm(settings, as_of=as_of)
    check_ground(data, settings)
    data = withhold(data)
    lead_model, lead_name = _lead_champion(settings)
    if lead_model is None:
        typer.echo("warning: no lead champion: open leads are listed by id, without their score", err=True)
    result = score_open_accounts(settings, data, model, wrapper, model_name=name, model_version=version,
                                 lead_model=lead_model, lead_model_name=lead_name)  # fmt: skip
    rejects = result.rejects
    publish({target: frame_writer(result.scores, target), rejects_path(target): frame_writer(rejects,
             rejects_path(target))})  # fmt: skip
    s = result.summary
    typer.echo(f"scored {s['scored']:,} of {s['accounts_with_open_leads']:,} accounts with open leads as of "
               f"{data.as_of.isoformat()} with {name} v{version or '?'} -> {target}")  # fmt: skip
    typer.echo(f"rejected: {len(rejects):,}; mean probability {s['mean_probability']}")
    if s["accounts_per_cell"]:
        typer.echo("accounts per cell: " + ", ".join(f"{k} {v:,}" for k, v in s["accounts_per_cell"].items()))
    typer.echo(f"\ntop {top} accounts:")
    shown = result.scores.head(top)[["account_id", "score", "cell", "open_leads", "reasons_positive"]]
    typer.echo(shown.to_string(index=False, max_colwidth=80))
    return {"verb": "predict", **s, "rejected": len(rejects), "as_of": data.as_of.isoformat(), "model_name": name,
            "model_version": version, "lead_model": lead_name, "output": str(target)}  # fmt: skip


def _grade_accounts(settings, as_of: str | None, out: Path | None) -> None:
    from leadscore.pipelines.outputs.files import write_frame
    from leadscore.pipelines.verbs.accounts import grade_open_accounts

    target = Path(out or settings.output_dir / "account_grades.csv")
    _check_out(target, "--out", (".csv", ".parquet"), settings)
    data = _valid_crm(settings, as_of)
    lead_model, _ = _lead_champion(settings)
    graded = grade_open_accounts(settings, data, lead_model=lead_model)
    path = write_frame(graded, target)
    typer.echo(f"graded {len(graded):,} accounts with open leads as of {data.as_of.isoformat()} -> {path}")
    typer.echo(graded["cell"].value_counts().sort_index().to_frame("accounts").T.to_string())


def main() -> None:  # pragma: no cover - console entry point
    app()
