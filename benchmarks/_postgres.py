"""A throwaway PostgreSQL cluster, made the way `.ci/run` makes one, for benchmarks that need a
database shared by several processes (benchmarks/workers.py).

A temp dir, `initdb` with trust auth, the server on a free port of 127.0.0.1 with its socket in
the temp dir and durability off (nothing here outlives the run), stopped and removed on exit.
As root, the server runs as the `postgres` system user, since it refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = [
    "clone_database",
    "drop_database",
    "find_pg_bin",
    "free_port",
    "throwaway_cluster",
    "with_database",
]

# The same server options as .ci/run: enough connections for a Prefect server, N workers and the
# cycle; no fsync, since the cluster is thrown away.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c max_connections=200 "
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/N/bin holding initdb, pg_ctl and postgres."""
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        version = candidate.parent.name
        if version.isdigit() and all((candidate / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            found.append((int(version), candidate))
    if not found:
        raise SystemExit(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt install postgresql)"
        )
    return max(found)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_cluster(pg_bin: Path | None = None) -> Iterator[str]:
    """Start a cluster and yield its superuser URL (`postgresql://postgres@127.0.0.1:PORT/postgres`);
    stop it and remove its files when the block ends, however it ends."""
    pg_bin = pg_bin or find_pg_bin()
    root = Path(tempfile.mkdtemp(prefix="arrears-pg-"))
    data, log = root / "data", root / "postgres.log"
    as_pg: list[str] = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            subprocess.run(
                [
                    *("useradd", "--system", "--user-group", "--no-create-home"),
                    *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "postgres"),
                ],
                check=True,
            )
        shutil.chown(root, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_pg, *args], cwd=root, check=check, capture_output=True, text=True, timeout=300
        )

    started = False
    try:
        pg(
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        port = 0
        for _ in range(3):  # a free port may be taken between the probe and the start
            port = free_port()
            options = f"-p {port} -c unix_socket_directories={root} {SERVER_OPTIONS}"
            done = pg(
                *(str(pg_bin / "pg_ctl"), "start", "-D", str(data), "-l", str(log)),
                *("-w", "-t", "60", "-o", options),
                check=False,
            )
            if done.returncode == 0:
                started = True
                break
            pg(str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", check=False)
        if not started:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{tail}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            stopped = pg(
                str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30", check=False
            )
            if stopped.returncode != 0:
                pg(str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", check=False)
        shutil.rmtree(root, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` of the same server."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _admin(url: str) -> Engine:
    from sqlalchemy import create_engine

    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )


def clone_database(admin_url: str, template: str | None, prefix: str = "arrears_bench") -> str:
    """A new database (a copy of `template`, or empty), its URL. PostgreSQL copies a template
    file by file: far faster than importing the portfolio again."""
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = _admin(admin_url)
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    engine = _admin(admin_url)
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    engine.dispose()
