"""PostgreSQL and Redis for the deployment tier: the Debian packages' binaries, each on a free loopback port in a
temporary directory, started and stopped by the tests (``.ci/run`` installs the packages when they are missing).

PostgreSQL refuses to run as root: as root, the data directory is handed to the ``postgres`` user (created by the
Debian package) and ``initdb``/``pg_ctl`` run under ``runuser``. Durability is off (fsync, synchronous_commit):
this is a throw-away metadata DB.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.airflow_processes import free_port

PG_USER = "airflow"


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them in /usr/lib/postgresql/<version>/bin, off the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"{name} not found: install the Debian package postgresql (.ci/run does)")
    return found[-1]


def missing() -> list[str]:
    """The services whose binaries this machine lacks (the tier fails with this list rather than skipping)."""
    out = []
    try:
        _pg_bin("initdb")
    except RuntimeError:
        out.append("postgresql")
    if not shutil.which("redis-server"):
        out.append("redis-server")
    return out


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A running PostgreSQL server; yields the SQLAlchemy URL of its database ``airflow``."""
    base = Path(tempfile.mkdtemp(prefix="fc-deploy-pg-"))
    data, port = base / "data", free_port()
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 180}
    subprocess.run(
        _as_owner(
            [_pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]
        ),
        **run,  # type: ignore[call-overload]
    )
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    ctl = _pg_bin("pg_ctl")
    subprocess.run(
        _as_owner([ctl, "-D", str(data), "-o", options, "-l", str(base / "postgres.log"), "-w", "start"]),
        **run,  # type: ignore[call-overload]
    )
    try:
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres")
        ) as conn:
            conn.autocommit = True
            conn.cursor().execute("CREATE DATABASE airflow")
        yield f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/airflow"
    finally:
        subprocess.run(_as_owner([ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), check=False)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """A running redis-server (no persistence); yields its URL."""
    base = Path(tempfile.mkdtemp(prefix="fc-deploy-redis-"))
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with open(base / "redis.log", "wb") as log:
        proc = subprocess.Popen([*cmd, "--dir", str(base)], stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 30
        while True:
            ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                break
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"redis-server did not start: {(base / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)
