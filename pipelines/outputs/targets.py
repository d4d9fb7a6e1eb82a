"""Output targets, checked before any work: no output over anything the tool reads or owns.

`owned_paths` lists what a project reads or owns: its input tables (also `exports.more_events`, the flat export and
`flat.label_from`, SQLite files behind SQL URLs), the config, the MLflow store and its artifact roots, the score
history, the output database. `check_target` refuses an output that is one of them under any name (`..`, a
symlink, a hard link, a name differing only in case), that lies inside one of the folders, or that is a parent
folder of one of them; and a place that cannot be written, found by creating a file there (permissions, a
read-only or immutable folder: what `os.access` cannot tell root). `check_outputs` is what every writing verb
calls first: its targets, the journal folder, the validation rejects and, for `predict`, the score history.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import unquote, urlparse

from leadscore.features.schemas import TABLE_ROLES
from leadscore.pipelines.errors import DataError, UsageError

SQLITE_URL = re.compile(r"^sqlite(?:\+\w+)?:///(?P<database>[^?]*)")
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
REJECT_NAMES = (*TABLE_ROLES, "problems")


@dataclass(frozen=True)
class Owned:
    """A path the project reads or owns; `tree`: everything inside it is owned too; `key` groups them (a writer
    of the history may write inside the history, and nowhere else that is owned)."""

    path: Path
    what: str
    key: str
    tree: bool = False


@dataclass(frozen=True)
class Target:
    """One output of a verb: its path, the option or setting that named it, its allowed suffixes."""

    path: Path | None
    option: str
    suffixes: tuple[str, ...] = ()
    folder: bool = False


# -- what the project reads or owns ----------------------------------------------------------------------------
def sqlite_files(url: str | None, base_dir: Path | None = None) -> list[Path]:
    """The file a SQLite URL names; a relative one both from the config's folder and from the current folder (the
    database library reads it from the latter; a user may mean the former)."""
    match = SQLITE_URL.match(url or "")
    if match is None or match["database"] in {"", ":memory:"}:
        return []
    path = Path(unquote(match["database"])).expanduser()
    if path.is_absolute():
        return [path]
    return [Path.cwd() / path] + ([base_dir / path] if base_dir is not None else [])


def _database(url: str | None, what: str, key: str, base_dir: Path) -> list[Owned]:
    """A SQLite database's file and the side files SQLite keeps beside it, under `key` (a database of several
    tables: a SQL output may go into it under another table name, a file output never)."""
    files = sqlite_files(url, base_dir)
    return [Owned(Path(f"{f}{side}"), what, key) for f in files for side in ("", *SQLITE_SIDE_FILES)]


def _inputs(settings) -> list[Owned]:
    base = settings.base_dir
    owned: list[Owned] = []

    def source(src, what: str) -> None:
        if src is None:
            return
        if getattr(src, "path", None) is not None:
            owned.append(Owned(settings.resolve(src.path), what, "input"))
        owned.extend(_database(getattr(src, "sql_url", None), f"the database of {what}", "input_db", base))

    if settings.tables is not None:
        for name in TABLE_ROLES:
            source(getattr(settings.tables, name), f"an input (table '{name}')")
    for i, extra in enumerate(settings.exports.more_events):
        source(extra, f"an input (exports.more_events[{i}])")
    if settings.flat is not None:
        source(settings.flat, "an input (the flat export)")
        source(settings.flat.label_from, "an input (flat.label_from)")
    return owned


def _artifact_roots(store: Path) -> list[Path]:
    """The local artifact folders of every experiment in a SQLite MLflow store (read without MLflow: fast)."""
    if not store.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT artifact_location FROM experiments").fetchall()
    except sqlite3.Error:
        return []
    roots = []
    for (location,) in rows:
        parsed = urlparse(location or "")
        if parsed.scheme == "file":
            roots.append(Path(unquote(parsed.path)))
        elif parsed.scheme == "" and location:
            roots.append(Path(location).resolve())
    return roots


def _mlflow(settings) -> list[Owned]:
    uri = settings.tracking_uri
    owned = _database(uri, "the MLflow store", "mlflow", settings.base_dir)
    if not uri.startswith(("sqlite:", "http:", "https:", "databricks", "postgresql", "mysql", "mssql")):
        local = Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else settings.resolve(uri)
        owned.append(Owned(local, "the MLflow store", "mlflow", tree=True))
    roots = [settings.resolve(settings.mlflow.artifact_dir)]
    for store in sqlite_files(uri, settings.base_dir):
        roots += _artifact_roots(store)
    owned += [Owned(root, "the MLflow artifact root", "mlflow", tree=True) for root in dict.fromkeys(roots)]
    return owned


def owned_paths(settings) -> list[Owned]:
    """Everything the project reads or owns: no output may be written over, inside or around them."""
    owned = _inputs(settings)
    config = getattr(settings, "config_file", None)
    if config is not None:
        owned.append(Owned(Path(config), "the config", "config"))
    owned += _mlflow(settings)
    if settings.history.sql_url:
        owned += _database(settings.history.sql_url, "the score history's database", "history_db", settings.base_dir)
    else:
        owned.append(Owned(settings.history_dir, "the score history", "history", tree=True))
    owned += _database(settings.output.sql_url, "the output database (output.sql_url)", "output_db", settings.base_dir)
    return owned


# -- the checks ------------------------------------------------------------------------------------------------
def _folded(path: Path) -> PurePath:
    return PurePath(str(path).casefold())  # one name on a case-insensitive file system (macOS, Windows)


def _refuse_owned(path: Path, option: str, owned: Iterable[Owned], allow: Iterable[str] = ()) -> None:
    target, allow = path.resolve(), tuple(allow)
    folded = _folded(target)
    for item in owned:
        if item.key in allow:
            continue
        source = item.path.resolve()
        cause = None
        same_file = path.exists() and item.path.exists() and os.path.samefile(path, item.path)
        if target == source or same_file:
            cause = f"resolves to {item.what} ({item.path}): writing there would destroy it"
        elif _folded(source) == folded:
            cause = f"differs only in case from {item.what} ({item.path}): one file on a case-insensitive disk"
        elif item.tree and folded.is_relative_to(_folded(source)):
            cause = f"is inside {item.what} ({item.path}), which leadscore keeps"
        elif _folded(source).is_relative_to(folded) and target != Path(target.anchor):
            cause = f"is a parent folder of {item.what} ({item.path})"
        if cause:
            raise UsageError(cause, where=f"{option} {path}", hint="write the output to another file or folder")


def _probe(folder: Path, option: str, path: Path) -> None:
    """Create and remove a file in `folder`: the one sure test that the outputs can be written there."""
    probe = folder / f".leadscore-probe-{uuid.uuid4().hex}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        denied = exc.errno in {errno.EACCES, errno.EPERM, errno.EROFS}
        cause = f"no permission to write in '{folder}'" if denied else f"cannot write in '{folder}'"
        raise UsageError(
            f"{cause} ({exc.strerror})", where=f"{option} {path}", hint="choose a folder you can write to"
        ) from None


def check_writable(path: Path, option: str, *, folder: bool = False) -> None:
    """The place `path` would be written: an existing folder (or one that can be created) we can write in."""
    if not folder and path.is_dir():
        raise UsageError("is a folder", where=f"{option} {path}", hint="give a file name inside it")
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"'{existing}' is a file, not a folder", where=f"{option} {path}")
    _probe(existing, option, path)
    if folder and path.is_dir():
        _probe(path, option, path)


def check_target(
    path: Path | None,
    option: str,
    suffixes: tuple[str, ...],
    settings=None,
    *,
    folder: bool = False,
    allow: Iterable[str] = (),
) -> None:
    """Refuse an unusable output target before any heavy work: a wrong suffix, anything the project reads or owns
    (or a folder around or inside one), a folder in the way, a place that cannot be written.

    `folder=True` for outputs that are folders (sample-data, Spark results); `allow` names kinds of owned paths
    this writer keeps itself (the history's writer: "history").
    """
    if path is None:
        return
    path = Path(path)
    if settings is not None:  # first: "is a parent folder of an input" says more than "unsupported file type"
        _refuse_owned(path, option, owned_paths(settings), allow)
    if not folder and suffixes and not path.name.lower().endswith(tuple(suffixes)):
        raise UsageError(
            f"unsupported file type '{path.suffix or path.name}'",
            where=f"{option} {path}",
            hint=f"use a file name ending in {' or '.join(suffixes)}",
        )
    check_writable(path, option, folder=folder)


def guard(settings):
    """The check every file a publication of this project writes passes (a net under the checks before the work):
    nothing the project reads or owns, except inside the history for the history's own files."""
    owned = owned_paths(settings)
    history = settings.history_dir.resolve()

    def check(path: Path) -> None:
        allow = ("history",) if path.resolve().is_relative_to(history) else ()
        _refuse_owned(path, "output", owned, allow)

    return check


def rejects_targets(settings) -> list[Target]:
    """The validation rejects every verb may write: one CSV per table and the problems, in <output.dir>/rejects."""
    folder = settings.output_dir / "rejects"
    return [Target(folder / f"{name}.csv", "output.dir (validation rejects)", (".csv",)) for name in REJECT_NAMES]


def check_outputs(settings, *targets: Target, history: bool = False) -> None:
    """What every writing verb checks before any work: each of its targets, that no two are one file, the journal
    folder, the validation rejects and (`history`) the score history."""
    targets = [t for t in targets if t.path is not None]
    seen: dict[str, Target] = {}
    for target in [*targets, *rejects_targets(settings)]:
        key = str(_folded(Path(target.path).resolve()))
        if key in seen:
            raise UsageError(
                f"is also {seen[key].option}: two outputs of this run would go to one file",
                where=f"{target.option} {target.path}",
            )
        seen[key] = target
    for target in targets:
        check_target(target.path, target.option, target.suffixes, settings, folder=target.folder)
    journal = settings.output_dir / ".leadscore-publish-journal"  # stands for the journals written there
    _refuse_owned(journal, "output.dir", owned_paths(settings))
    check_writable(journal, "output.dir")
    for target in rejects_targets(settings):
        _refuse_owned(target.path, target.option, owned_paths(settings))
    check_writable(settings.output_dir / "rejects" / "leads.csv", "output.dir (validation rejects)")
    if history:
        check_history(settings)


def check_history(settings) -> None:
    """The score history can take this run's rows: its folder (and every partition) or its database is writable."""
    h = settings.history
    if not h.enabled:
        return
    if h.sql_url:
        check_sql_target(settings, h.sql_url, h.sql_table, option="history.sql_url")
        return
    root = settings.history_dir
    check_target(root, "history.path", (), settings, folder=True, allow=("history",))
    for partition in sorted(root.glob("as_of_date=*")) if root.is_dir() else ():
        _probe(partition, "history.path", partition)


def same_database(url: str, other: str | None, base_dir: Path) -> bool:
    """Two URLs naming one database (one SQLite file under any name, or the same URL)."""
    if not other:
        return False
    if url == other:
        return True
    mine, theirs = sqlite_files(url, base_dir), sqlite_files(other, base_dir)
    return any(
        a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
        for a in mine
        for b in theirs
    )


def _input_tables(settings) -> list[tuple[str, str, str]]:
    sources = []
    if settings.tables is not None:
        sources += [(name, getattr(settings.tables, name)) for name in TABLE_ROLES]
    sources += [(f"exports.more_events[{i}]", s) for i, s in enumerate(settings.exports.more_events)]
    if settings.flat is not None:
        sources.append(("flat", settings.flat))
    return [(name, s.sql_url, s.sql_table or "") for name, s in sources if s is not None and s.sql_url]


SQL_DATABASES = ("input_db", "history_db", "output_db")


def check_sql_target(settings, url: str, table: str, *, option: str, tables: Iterable[str] | None = None) -> None:
    """Refuse SQL output tables (`tables`, default `table` alone) that are an input table or the score history, or a
    database that is the MLflow store or a file the project reads; check the database can be written: a SQLite
    file's folder must exist, another database must answer."""
    names = {t.lower() for t in (tables if tables is not None else [table])}
    taken = [(f"the input table '{name}'", u, t) for name, u, t in _input_tables(settings)]
    h = settings.history
    if h.enabled and h.sql_url and option != "history.sql_url":
        taken.append(("the score history", h.sql_url, h.sql_table))
    for what, taken_url, taken_table in taken:
        if same_database(url, taken_url, settings.base_dir) and taken_table.lower() in names:
            cause = f"is {what}: writing there would destroy it"
            raise UsageError(cause, where=f"{option} {table}", hint="choose another table name")
    if same_database(url, settings.tracking_uri, settings.base_dir):
        raise UsageError(
            "is the MLflow store: leadscore keeps its own tables there", where=option, hint="use another database"
        )
    files = sqlite_files(url, settings.base_dir)
    if files:
        database = files[0]  # where the database library will open it
        if not database.parent.is_dir():
            raise UsageError(
                f"the folder '{database.parent}' of the SQLite file does not exist",
                where=option,
                hint="create the folder or correct the URL",
            )
        _refuse_owned(database, option, owned_paths(settings), SQL_DATABASES)
        check_writable(database, option)
        return
    _check_reachable(url, option)


def _check_reachable(url: str, option: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise DataError(f"cannot connect: {str(exc).splitlines()[0]}", where=f"{option} {shown}") from None
    finally:
        engine.dispose()
