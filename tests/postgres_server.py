"""A throwaway PostgreSQL server for the tests: a temporary data folder, a free loopback port, trust auth.

Standard library only, so that `.ci/run` can use it with the system Python before the virtualenv exists:

    python3 tests/postgres_server.py start   # prints the URL, then the folder to pass to `stop`
    python3 tests/postgres_server.py stop FOLDER

initdb refuses to run as root: as root, the server runs as the unprivileged `nobody` user through runuser.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

DATABASE = "leadscore"


def bindir() -> Path | None:
    """The folder of initdb / pg_ctl (`pg_config --bindir`, else PATH); None when PostgreSQL is not installed."""
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        folder = Path(found.stdout.strip())
        if found.returncode == 0 and (folder / "initdb").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, cwd="/", check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")


def start() -> tuple[str, Path]:
    """Start a server; return its SQLAlchemy URL (psycopg 3) and the folder that `stop` needs."""
    binaries = bindir()
    if binaries is None:
        raise RuntimeError("no PostgreSQL binaries found (pg_config --bindir, initdb on PATH)")
    folder = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody", "nogroup")
    data, port = folder / "data", _free_port()
    _run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"])
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options, "-w", "start"])
    _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE])
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}", folder


def stop(folder: Path) -> None:
    """Stop the server started in `folder` and delete the folder."""
    binaries = bindir()
    if binaries is not None and (Path(folder) / "data" / "postmaster.pid").exists():
        _run([str(binaries / "pg_ctl"), "-D", str(Path(folder) / "data"), "-m", "fast", "-w", "stop"])
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"]:
        url, where = start()
        print(url)
        print(where)
    elif sys.argv[1:2] == ["stop"] and len(sys.argv) == 3:
        stop(Path(sys.argv[2]))
    else:
        sys.exit("usage: postgres_server.py start | stop FOLDER")
