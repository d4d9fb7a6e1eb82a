"""Expected failures as one kind of exception, and the one place the CLI turns them into a message.

A `LeadscoreError` names where the problem is (file or table, column, row or line), what is wrong and, when we
know it, how to fix it. Data errors exit 1, usage errors exit 2; a traceback is shown only with `-v`.
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback

import typer
import typer.core
from typer.exceptions import Abort, Exit, TyperException

log = logging.getLogger(__name__)

DATA_ERROR = 1
USAGE_ERROR = 2


class LeadscoreError(Exception):
    """An expected failure: the message names the culprit; `hint` says how to fix it."""

    exit_code = DATA_ERROR

    def __init__(
        self,
        cause: str,
        *,
        where: str | None = None,
        column: str | None = None,
        row: int | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.cause, self.where, self.column, self.row, self.line, self.hint = cause, where, column, row, line, hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        place = [self.where] if self.where else []
        if self.column is not None:
            place.append(f"column '{self.column}'")
        if self.row is not None:
            place.append(f"row {self.row}")
        if self.line is not None:
            place.append(f"line {self.line}")
        return f"{', '.join(place)}: {self.cause}" if place else self.cause


class DataError(LeadscoreError, ValueError):
    """The input data (or the place outputs go) cannot be used as it is: exit 1."""


class UsageError(LeadscoreError, ValueError):
    """The command line or the config asks for something impossible: exit 2."""

    exit_code = USAGE_ERROR


class ConfigError(UsageError):
    """A config file that cannot be used; the message names the file and the offending key."""


def from_os_error(exc: OSError, *, doing: str) -> DataError:
    """A DataError naming the file and the system's reason (disk full, permission denied, read-only ...)."""
    hints = {
        errno.ENOSPC: "free some space on that disk or write elsewhere",
        errno.EDQUOT: "free some space on that disk or write elsewhere",
        errno.EACCES: "check the folder's permissions or choose another place",
        errno.EPERM: "check the folder's permissions or choose another place",
        errno.EROFS: "the file system is read-only: choose another place",
    }
    where = exc.filename or None
    return DataError(
        f"cannot {doing}: {exc.strerror or exc}", where=str(where) if where else None, hint=hints.get(exc.errno)
    )


def render(exc: LeadscoreError) -> str:
    text = f"error: {exc.message}"
    if exc.hint:
        text += f"\nhint: {exc.hint}"
    return text


class OneErrorPath(typer.core.TyperGroup):
    """Runs a verb and turns every failure into one message and an exit code; the traceback only with -v."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):  # help, exit codes and typer's own usage errors pass as they are
            raise
        except Exception as exc:  # the one error path: every failure ends here
            error = _as_leadscore_error(exc)
            if _verbose(ctx):
                traceback.print_exception(exc, file=sys.stderr)
            typer.echo(render(error), err=True)
            raise Exit(error.exit_code) from None


def _as_leadscore_error(exc: Exception) -> LeadscoreError:
    if isinstance(exc, LeadscoreError):
        return exc
    if isinstance(exc, OSError):
        return from_os_error(exc, doing="read or write a file")
    origin = type(exc).__module__.split(".")[0]
    if origin in {"mlflow", "sqlalchemy"}:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DataError(
            f"the {'MLflow store' if origin == 'mlflow' else 'database'} failed: {first}",
            hint="check mlflow.tracking_uri (or the database URL) in the config and that the store "
            "is reachable and writable",
        )
    if isinstance(exc, MemoryError):
        return DataError("out of memory", hint="lower output.chunk_size or use a machine with more memory")
    return DataError(
        f"unexpected {type(exc).__name__}: {exc}",
        hint="this is a bug in leadscore or an input it does not yet recognise; rerun with -v for the traceback",
    )


def _verbose(ctx) -> bool:
    return bool(ctx.params.get("verbose"))
