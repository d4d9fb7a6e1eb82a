"""Publishing outputs: every file, folder and table of one run put in place together, or none of them.

A `Publication` gathers one run's outputs (files, Spark folders, SQL tables, stale files to remove) and puts them
in place in two phases, with a journal in the project's output folder listing every step before it is taken:

1. staging: each file is written under a temporary name beside its target (uuid4: a name no other run can reuse,
   whatever its PID) and fsynced; each SQL table is loaded into a staging table. A failure or a kill here leaves
   every earlier output as it was; the temporaries are removed at once, or by the next start of any verb.
2. commit: a commit line ends the journal (fsynced); the old files are kept as hard-linked backups, the renames
   follow (folders fsynced), then each database's step runs in one transaction. A failure here restores the
   backups; a kill here is rolled forward by the next start of any verb, which finds the journal in the output
   folder whichever folders the files went to.

The journal is locked (`flock`) while its run lives: a journal nobody holds belongs to a dead run. Files get the
permissions the umask allows (a temporary file alone would be 0600, and a BI service reading them would lose
access).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadscore.pipelines.errors import DataError, UsageError, from_os_error
from leadscore.pipelines.outputs.targets import guard

log = logging.getLogger(__name__)

JOURNAL_PREFIX = ".leadscore-publish-"
TEMP_MARK = ".leadscore-"
Writer = Callable[[Path], None]


def file_mode() -> int:
    """The permissions a new file gets under the current umask (0o666 minus the masked bits)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def journal_dir(settings) -> Path:
    """Where a project's publications keep their journals: its output folder, so that any verb finds them."""
    return settings.output_dir


def project_publication(settings) -> Publication:
    """A publication of this project's outputs: its journal in the output folder, every file it writes checked
    against what the project reads or owns."""
    return Publication(journal_dir(settings), guard=guard(settings))


def recover_project(settings) -> list[str]:
    """Finish (or roll back) the publications of this project that a killed run left: every verb starts with it."""
    return recover([journal_dir(settings)])


@dataclass
class SqlStep:
    """One database's part of a publication.

    `load(connection)` fills the staging tables while staging; `apply` runs in one transaction at commit and ends
    by dropping the staging tables, so the step is still to do exactly while its first staging table exists (which
    makes it safe to repeat); `discard` drops them when the run is rolled back.
    """

    url: str
    where: str
    staging: list[str]
    load: Callable[[object], None]
    apply: list[str]
    discard: list[str]

    def entry(self) -> dict:
        return {
            "url": self.url,
            "where": self.where,
            "staging": self.staging,
            "apply": self.apply,
            "discard": self.discard,
        }


@dataclass
class _Journal:
    """The append-only plan of one publication: one JSON object a line, fsynced, locked while its run lives."""

    path: Path
    handle: object = None
    lines: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, folder: Path, run: str) -> _Journal:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{JOURNAL_PREFIX}{run}.json"
        staged = folder / f".{path.name}{TEMP_MARK}{run}.new"  # not a journal's name until it is locked
        handle = open(staged, "x", encoding="utf-8")  # noqa: SIM115 - held open for the lock until the end
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.chmod(staged, 0o600)  # SQL steps carry their database URL
        os.replace(staged, path)
        _sync_folder(folder)
        return cls(path, handle)

    def add(self, line: dict) -> None:
        self.handle.write(json.dumps(line) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.lines.append(line)

    def close(self, *, remove: bool) -> None:
        if remove:
            self.path.unlink(missing_ok=True)
            _sync_folder(self.path.parent)
        self.handle.close()


class Publication:
    """One run's outputs, put in place together by `commit()` or not at all (`abort()`).

    Use as a context manager: the block stages the outputs and the publication commits when it ends without an
    exception, and is rolled back when it raises.
    """

    def __init__(self, journal_folder: Path | None = None, *, guard: Callable[[Path], None] | None = None) -> None:
        self.run = uuid.uuid4().hex
        self.journal_folder = Path(journal_folder) if journal_folder is not None else None
        self.guard = guard
        self.journal: _Journal | None = None
        self.entries: list[dict] = []
        self.sql: list[SqlStep] = []
        self.done = False

    # -- staging ---------------------------------------------------------------------------------------------
    def _begin(self, near: Path) -> _Journal:
        """The journal, opened (after recovering the folder's interrupted runs) by the first staged output."""
        if self.journal is None:
            folder = self.journal_folder or near
            recover([folder])
            try:
                self.journal = _Journal.open(folder, self.run)
            except OSError as exc:
                raise from_os_error(exc, doing=f"start publishing (journal in {folder})") from None
        return self.journal

    def _make_parent(self, target: Path) -> None:
        missing = []
        folder = target.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            self.journal.add({"dir": str(folder)})  # removed again if the run is rolled back
            folder.mkdir()

    def stage(self, target: Path, *, folder: bool = False) -> Path:
        """The temporary path the content of `target` is to be written to (a file, or a folder with `folder`)."""
        target = Path(target)
        if self.guard is not None:
            self.guard(target)
        if any(Path(e["target"]) == target for e in self.entries if "target" in e):
            raise UsageError("two outputs of this run go to the same file", where=str(target))
        journal = self._begin(target.parent)
        temp = target.with_name(f".{target.name}{TEMP_MARK}{self.run}.tmp")
        entry = {"target": str(target), "temp": str(temp), "backup": str(temp.with_suffix(".old")), "folder": folder}
        try:
            self._make_parent(target)
            journal.add(entry)
        except OSError as exc:
            raise from_os_error(exc, doing=f"create the folder for {target}") from None
        self.entries.append(entry)
        return temp

    def write(self, target: Path, writer: Writer) -> Path:
        """Write `target`'s content now, under its temporary name (fsynced, with the umask's permissions)."""
        temp = self.stage(target)
        try:
            writer(temp)
            os.chmod(temp, file_mode())
            sync_path(temp)
        except OSError as exc:
            raise from_os_error(exc, doing=f"write {target}") from None
        return temp

    def write_together(self, targets: list[Path], writer: Callable[[list[Path]], None]) -> list[Path]:
        """Write several targets' content in one pass (`writer` gets their temporary paths, in order): the scores
        and their history, appended a block at a time."""
        temps = [self.stage(target) for target in targets]
        try:
            writer(temps)
            for temp in temps:
                os.chmod(temp, file_mode())
                sync_path(temp)
        except OSError as exc:
            raise from_os_error(exc, doing=f"write {', '.join(map(str, targets))}") from None
        return temps

    def staged_folder(self, target: Path) -> Path:
        """A folder (e.g. Spark's Parquet output) written by the caller under the returned temporary name."""
        return self.stage(target, folder=True)

    def staged_path(self, target: Path) -> Path:
        """Where a staged output is until the commit (to read it back, e.g. scores for the history)."""
        for entry in self.entries:
            if entry.get("target") == str(Path(target)):
                return Path(entry["temp"])
        raise KeyError(target)

    def delete(self, path: Path) -> None:
        """A stale output of an earlier run with no counterpart in this one: removed in the same step."""
        path = Path(path)
        if not path.exists():
            return
        entry = {"delete": str(path), "backup": str(path.with_name(f".{path.name}{TEMP_MARK}{self.run}.old"))}
        self._begin(path.parent).add(entry)
        self.entries.append(entry)

    def add_sql(self, step: SqlStep) -> None:
        """Load a database's staging tables now; the step itself runs at commit."""
        import sqlalchemy as sa

        self._begin(Path.cwd()).add({"sql": step.entry()})
        self.sql.append(step)
        engine = sa.create_engine(step.url)
        try:
            with engine.begin() as connection:
                step.load(connection)
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"cannot write {step.where}: {str(exc).splitlines()[0]}") from None
        finally:
            engine.dispose()

    # -- commit or roll back -----------------------------------------------------------------------------------
    def commit(self) -> None:
        """Put everything staged in place; on a failure restore what was there before and raise."""
        if self.done or self.journal is None:
            self.done = True
            return
        self.journal.add({"commit": True})
        moved: list[dict] = []
        applied = 0
        try:
            for entry in self.entries:
                _move_into_place(entry, backup=True)
                moved.append(entry)
            _sync_folders(self.entries)
            for step in self.sql:
                _apply_sql(step.entry())
                applied += 1
        except Exception as exc:
            if self.sql and applied:
                self.done = True
                self.journal.close(remove=False)  # committed in part: the next start of any verb completes it
                raise DataError(
                    f"published in part ({exc}); the rest is completed by the next start of any leadscore verb",
                    where=self.sql[applied].where,
                ) from None
            self.journal.add({"abort": True})
            _restore(reversed(moved))
            self._roll_back()
            if isinstance(exc, OSError):
                raise from_os_error(exc, doing="put the outputs in place") from None
            raise
        _finish(self.journal.lines)
        self.done = True
        self.journal.close(remove=True)

    def abort(self) -> None:
        """Remove everything staged; the earlier outputs stay as they were."""
        if self.done:
            return
        self.done = True
        if self.journal is not None:
            self._roll_back()

    def _roll_back(self) -> None:
        _roll_back(self.journal.lines)
        self.journal.close(remove=True)

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


# -- the steps, shared by a live run and by recovery -------------------------------------------------------------
def sync_path(path: Path) -> None:
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                sync_path(child)
        _sync_folder(path)
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems cannot sync a folder: the renames are as durable as they allow
        pass
    finally:
        os.close(descriptor)


def _sync_folders(entries: Iterable[dict]) -> None:
    for folder in {Path(e.get("target") or e["delete"]).parent for e in entries if "target" in e or "delete" in e}:
        _sync_folder(folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(entry: dict, *, backup: bool) -> None:
    """Rename one staged output over its target (or remove a stale one), keeping the old content as the backup.

    Safe to repeat: a step already taken (its temporary gone) is skipped.
    """
    old = Path(entry["backup"])
    if "delete" in entry:
        path = Path(entry["delete"])
        if path.exists():
            os.replace(path, old)
        return
    temp, target = Path(entry["temp"]), Path(entry["target"])
    if not temp.exists():
        return
    entry["existed"] = target.exists()
    if entry["folder"]:
        if entry["existed"]:
            _remove(old)
            os.rename(target, old)
        os.rename(temp, target)
        return
    if backup and entry["existed"] and not old.exists():
        with contextlib.suppress(OSError):  # no hard links there: the rename goes on without a backup
            os.link(target, old)  # a second name for the old content: no copy, and restorable
    os.replace(temp, target)


def _restore(entries: Iterable[dict]) -> None:
    """Undo `_move_into_place` for the entries already moved: the backups go back under their names."""
    for entry in entries:
        old = Path(entry["backup"])
        target = Path(entry.get("target") or entry["delete"])
        if old.exists():
            if entry.get("folder") and target.exists():
                _remove(target)
            os.replace(old, target)
        elif entry.get("existed") is False:
            _remove(target)  # there was nothing before this run's file


def _apply_sql(step: dict) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(step["url"])
    try:
        with engine.begin() as connection:
            if not sa.inspect(connection).has_table(step["staging"][0]):
                return  # applied already: its transaction dropped the staging tables
            for statement in step["apply"]:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _discard_sql(step: dict) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(step["url"])
    try:
        with engine.begin() as connection:
            for statement in step["discard"]:
                connection.execute(sa.text(statement))
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not drop the staging tables of %s: %s", step["where"], str(exc).splitlines()[0])
    finally:
        engine.dispose()


def _finish(lines: list[dict]) -> None:
    """After a commit: the backups and removed files go for good."""
    for line in lines:
        if "backup" in line:
            _remove(Path(line["backup"]))


def _roll_back(lines: list[dict]) -> None:
    """Before a commit (or after a failed one, backups restored): temporaries, staging tables and new folders go."""
    for line in lines:
        if "temp" in line:
            _remove(Path(line["temp"]))
        if "sql" in line:
            _discard_sql(line["sql"])
    for line in reversed(lines):
        if "dir" in line:
            with contextlib.suppress(OSError):  # not empty: another run's files are there too
                Path(line["dir"]).rmdir()


def _roll_forward(lines: list[dict]) -> None:
    entries = [line for line in lines if "target" in line or "delete" in line]
    for entry in entries:
        _move_into_place(entry, backup=False)
    _sync_folders(entries)
    for line in lines:
        if "sql" in line:
            _apply_sql(line["sql"])
    _finish(lines)


def _read_journal(path: Path) -> list[dict]:
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            break  # a line torn by the kill: the steps after it were never taken
    if lines and "renames" in lines[0]:  # an older journal: one object, written once its files were complete
        old = lines[0]
        lines = [{"target": t, "temp": s, "backup": f"{s}.old", "folder": False} for s, t in old["renames"]]
        lines += [{"delete": d, "backup": f"{d}{TEMP_MARK}old"} for d in old.get("deletes", [])]
        lines.append({"commit": True})
    return lines


def recover(folders: Iterable[Path]) -> list[str]:
    """Finish what killed runs left in these journal folders: roll committed ones forward, the others back.

    A journal whose lock is held belongs to a live run and is left alone. Returns what was recovered, one line each.
    """
    done = []
    for folder in {Path(f) for f in folders}:
        if not folder.is_dir():
            continue
        for path in folder.glob(f".{JOURNAL_PREFIX}*.new"):  # a journal its run never got to lock and name
            with open(path, encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                path.unlink(missing_ok=True)
        for path in sorted(folder.glob(f"{JOURNAL_PREFIX}*.json")):
            try:
                with open(path, encoding="utf-8") as handle:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # its run is publishing right now
                    done.append(_recover_one(path))
            except FileNotFoundError:
                continue  # finished by its own run meanwhile
    return [line for line in done if line]


def _recover_one(path: Path) -> str:
    lines = _read_journal(path)
    targets = ", ".join(
        line.get("target") or line.get("delete") or line["sql"]["where"]
        for line in lines
        if {"target", "delete", "sql"} & set(line)
    )
    committed = any(line.get("commit") for line in lines)
    aborted = any(line.get("abort") for line in lines)
    try:
        if committed and not aborted:
            _roll_forward(lines)
            message = f"completed an interrupted publication of {targets}"
        else:
            if aborted:
                _restore(line for line in lines if "backup" in line and Path(line["backup"]).exists())
            _roll_back(lines)
            message = f"rolled back an interrupted publication of {targets}" if targets else ""
    except Exception as exc:  # noqa: BLE001 - recovery must not stop the verb that runs it; it is retried next time
        log.warning("could not finish an interrupted publication (%s): %s; retried at the next start", path, exc)
        return ""
    path.unlink(missing_ok=True)
    _sync_folder(path.parent)
    if message:
        log.warning(message)
    return message


# -- convenience ------------------------------------------------------------------------------------------------
def publish(
    files: Mapping[Path, Writer],
    *,
    delete: Iterable[Path] = (),
    journal_folder: Path | None = None,
    guard: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write every file (each `writer(tmp)` fills a temporary file), then put them all in place as one unit.

    `delete` names stale outputs of an earlier run that this run has no counterpart for (e.g. a rejects file for a
    table that now has no rejects): they go in the same step, so no file from an older run survives beside this
    run's files.
    """
    with Publication(journal_folder, guard=guard) as publication:
        for target, writer in files.items():
            publication.write(Path(target), writer)
        for stale in delete:
            publication.delete(Path(stale))
    return [Path(t) for t in files]


def sql_tables_step(frames: Mapping[str, object], url: str) -> SqlStep:
    """Several SQL tables replaced in one transaction at commit, each loaded into its staging table first."""
    import sqlalchemy as sa

    run = uuid.uuid4().hex[:12]
    staging = {table: f"{table}__leadscore_{run}" for table in frames}
    engine = sa.create_engine(url)
    quote = engine.dialect.identifier_preparer.quote
    shown = engine.url.render_as_string(hide_password=True)
    engine.dispose()
    apply = []
    for table, stage in staging.items():
        apply += [f"DROP TABLE IF EXISTS {quote(table)}", f"ALTER TABLE {quote(stage)} RENAME TO {quote(table)}"]

    def load(connection) -> None:
        for table, frame in frames.items():
            frame.to_sql(staging[table], connection, if_exists="replace", index=False)

    return SqlStep(
        url=url,
        where=f"{shown} table {', '.join(frames)}",
        staging=list(staging.values()),
        load=load,
        apply=apply,
        discard=[f"DROP TABLE IF EXISTS {quote(stage)}" for stage in staging.values()],
    )
