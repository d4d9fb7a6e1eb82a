"""Publishing outputs: checked before the work, written completely, then put in place together.

* `check_output` refuses, before any heavy work, an unsupported suffix, a target that resolves to an input, a
  folder in the way and a place the user cannot write to.
* `publish` writes every file of one run to a temporary file beside its target, then records the renames in a
  journal and performs them. A run killed while writing leaves the previous outputs untouched (its temporary
  files are removed by the next run); a run killed between two renames is completed by the next run from the
  journal, so the files published side by side always come from one run.
* Files get the permissions the umask allows (`mkstemp` alone would make them 0600, so a BI service reading them
  would lose access).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from leadscore.pipelines.errors import DataError, UsageError, from_os_error

log = logging.getLogger(__name__)

JOURNAL_PREFIX = ".leadscore-publish-"
TEMP_MARK = ".leadscore-"
Writer = Callable[[Path], None]


def file_mode() -> int:
    """The permissions a new file gets under the current umask (0o666 minus the masked bits)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_output(
    path: Path | None,
    *,
    option: str,
    suffixes: Iterable[str],
    inputs: Iterable[Path] = (),
    folder: bool = False,
) -> None:
    """Refuse an output target before any work: wrong suffix, an input's path, a folder in the way, no write access.

    `folder=True` for outputs that are folders (sample-data, Spark results).
    """
    if path is None:
        return
    path = Path(path)
    suffixes = tuple(suffixes)
    if not folder and not path.name.lower().endswith(suffixes):
        raise UsageError(
            f"unsupported file type '{path.suffix or path.name}'",
            where=f"{option} {path}",
            hint=f"use a file name ending in {' or '.join(suffixes)}",
        )
    target = path.resolve()
    for source in inputs:
        source = Path(source)
        same = target == source.resolve() or (source.exists() and path.exists() and os.path.samefile(source, path))
        inside = folder and source.resolve().is_relative_to(target) and target != Path(target.anchor)
        if same or (inside and path.exists()):
            raise UsageError(
                f"resolves to an input ({source}): writing there would destroy it",
                where=f"{option} {path}",
                hint="write the output to another file or folder",
            )
    if not folder and path.is_dir():
        raise UsageError("is a folder", where=f"{option} {path}", hint="give a file name inside it")
    existing = path if folder and path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"'{existing}' is a file, not a folder", where=f"{option} {path}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"no permission to write in '{existing}'", where=f"{option} {path}", hint="choose a folder you can write to"
        )


def _temp_for(target: Path, run: str) -> Path:
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{run}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(folders: Iterable[Path]) -> None:
    """Finish what a killed run left behind in `folders`: complete journaled renames, remove stale temporaries."""
    for folder in {Path(f) for f in folders}:
        if not folder.is_dir():
            continue
        for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*.json")):
            try:
                entry = json.loads(journal.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if _pid_alive(int(entry.get("pid", 0))) and entry.get("pid") != os.getpid():
                continue  # another run is publishing right now
            for temp, target in entry["renames"]:
                if Path(temp).exists():
                    os.replace(temp, target)
            for stale in entry.get("deletes", []):
                Path(stale).unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
            log.warning("completed an interrupted publication of %s", ", ".join(t for _, t in entry["renames"]))
        for temp in folder.glob(f".*{TEMP_MARK}*.tmp"):
            pid = temp.name.rsplit(TEMP_MARK, 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                temp.unlink(missing_ok=True)


def publish(files: Mapping[Path, Writer], *, delete: Iterable[Path] = ()) -> list[Path]:
    """Write every file (each `writer(tmp)` fills a temporary file), then put them all in place as one unit.

    `delete` names stale outputs of an earlier run that this run has no counterpart for (e.g. a rejects file
    for a table that now has no rejects): they go in the same step, so no file from an older run survives
    beside this run's files.
    """
    targets = [Path(t) for t in files]
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise from_os_error(exc, doing=f"create the folder for {target}") from None
    recover({t.parent for t in targets})
    run, mode = uuid.uuid4().hex[:12], file_mode()
    temps = {target: _temp_for(target, run) for target in targets}
    journal = targets[0].parent / f"{JOURNAL_PREFIX}{run}.json" if targets else None
    try:
        for target, writer in files.items():
            temp = temps[Path(target)]
            writer(temp)
            os.chmod(temp, mode)
        if journal is not None:
            entry = {
                "pid": os.getpid(),
                "renames": [[str(temps[t]), str(t)] for t in targets],
                "deletes": [str(d) for d in delete],
            }
            staged = _temp_for(journal, run)
            staged.write_text(json.dumps(entry), encoding="utf-8")
            os.replace(staged, journal)  # from here on the publication completes, now or in the next run
    except OSError as exc:
        _discard(temps.values())
        raise from_os_error(exc, doing=f"write {', '.join(str(t) for t in targets)}") from None
    except BaseException:
        _discard(temps.values())
        raise
    for target in targets:
        os.replace(temps[target], target)
    for stale in delete:
        Path(stale).unlink(missing_ok=True)
    if journal is not None:
        journal.unlink(missing_ok=True)
    return targets


def _discard(paths: Iterable[Path]) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def input_paths(settings) -> list[Path]:
    """Every file the project reads: the tables, the flat file, SQLite databases behind SQL URLs, the MLflow store."""
    paths: list[Path] = []
    if settings.mode == "flat" and settings.flat is not None and settings.flat.path is not None:
        paths.append(settings.resolve(settings.flat.path))
        if settings.flat.label_from is not None:
            paths.append(settings.resolve(settings.flat.label_from.path))
    paths += [settings.resolve(s.path) for s in settings.exports.more_events if s.path is not None]
    if settings.tables is not None:
        for name in ("leads", "accounts", "events", "opportunities"):
            source = getattr(settings.tables, name)
            if source is None:
                continue
            if source.path is not None:
                paths.append(settings.resolve(source.path))
            elif source.sql_url and source.sql_url.startswith("sqlite:///"):
                paths.append(settings.resolve(source.sql_url.removeprefix("sqlite:///")))
    if settings.tracking_uri.startswith("sqlite:///"):
        paths.append(settings.resolve(settings.tracking_uri.removeprefix("sqlite:///")))
    return paths


def check_sql_output(settings, url: str, table: str) -> None:
    """Refuse a SQL output table that is one of the project's input tables."""
    for name in ("leads", "accounts", "events", "opportunities"):
        source = getattr(settings.tables, name, None) if settings.tables is not None else None
        if (
            source is not None
            and source.sql_url == url
            and (source.sql_table or "").lower() in {table.lower(), f"{table}_rejects".lower()}
        ):
            raise UsageError(
                f"is the input table '{name}': writing there would destroy it",
                where=f"--to-sql {table}",
                hint="choose another table name",
            )


def write_sql_tables(frames: Mapping[str, object], url: str) -> str:
    """Replace several SQL tables in one transaction (each through a staging table): all of them or none."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            quote = engine.dialect.identifier_preparer.quote
            for table, frame in frames.items():
                staging = f"{table}__leadscore_tmp"
                frame.to_sql(staging, connection, if_exists="replace", index=False)
                connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {quote(table)}"))
                connection.execute(sqlalchemy.text(f"ALTER TABLE {quote(staging)} RENAME TO {quote(table)}"))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        raise DataError(
            f"cannot write the tables {', '.join(frames)}: {str(exc).splitlines()[0]}", where=shown
        ) from None
    finally:
        engine.dispose()
    return f"{url} table {', '.join(frames)}"


def check_target(
    path: Path | None, option: str, suffixes: tuple[str, ...], settings=None, *, folder: bool = False
) -> None:
    """Refuse an unusable output target before any heavy work (suffix, an input's path, no write access)."""
    check_output(
        path, option=option, suffixes=suffixes, inputs=input_paths(settings) if settings else (), folder=folder
    )
