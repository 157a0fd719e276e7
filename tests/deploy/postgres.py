"""A private PostgreSQL server for one test: its own data directory, loopback only, a random port.

The binaries come from the Debian packages (``apt-get install postgresql``; ``.ci/run`` installs them
when missing), which keep them under ``/usr/lib/postgresql/<major>/bin`` rather than on ``PATH``.
``initdb`` and ``postgres`` refuse to run as root, so as root the server runs as the unprivileged
``postgres`` user the package creates (``runuser``), in a temp dir that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
# Password authentication, but md5 rather than SCRAM: Dagster's Postgres storage opens a new connection for
# each query (NullPool; only the webserver keeps one), and SCRAM's 4096 PBKDF2 rounds cost the client ~2 ms
# of CPU per connection, seconds of a stack test's daemon and run workers; md5 costs a fifth of that.
AUTH = "md5"
# the password initdb stores (SCRAM, PostgreSQL's default) is stored again as md5 once the server runs
SERVER_OPTIONS = ("-c", "password_encryption=md5")


def store_password(cursor, user: str, password: str) -> None:
    """Store ``user``'s password again, hashed as the server's ``password_encryption`` says (md5)."""
    cursor.execute(f'ALTER ROLE "{user}" PASSWORD %s', (password,))


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the newest Debian major."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivatePostgres:
    """``with PrivatePostgres(bin_dir) as pg:`` gives a running server and a database ``dagster``."""

    bin_dir: Path
    user: str = "nbpro"
    password: str = "nbpro-test-only"
    db_name: str = "dagster"
    host: str = "127.0.0.1"
    port: int = 0
    workdir: Path | None = None

    def _cmd(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVER_USER, "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.workdir / "server.log" if self.workdir else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr or proc.stdout}{tail}")

    def __enter__(self) -> PrivatePostgres:
        # not under pytest's tmp_path: that tree is 0700 root and the server user could not enter it
        self.workdir = Path(tempfile.mkdtemp(prefix="nbpro-pg-"))
        data, sockets = self.workdir / "data", self.workdir / "sock"
        sockets.mkdir()
        pwfile = self.workdir / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, the server needs the unprivileged user {SERVER_USER!r} "
                    "(apt-get install postgresql creates it; or run the tests as a normal user)"
                ) from None
            for path in (self.workdir, sockets, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        try:
            self._run(
                str(self.bin_dir / "initdb"),
                "-D", str(data),
                "-U", self.user,
                f"--pwfile={pwfile}",
                f"--auth={AUTH}",
                "--encoding=UTF8",
                "--no-sync",
            )  # fmt: skip
            options = " ".join(
                [f"-c listen_addresses={self.host} -p {self.port} -k {sockets}", "-c fsync=off", *SERVER_OPTIONS]
            )
            self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.workdir / "server.log"),
                "-o", options, "-w", "-t", "60", "start",
            )  # fmt: skip
            self._create_database()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**self.connect_kwargs("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                store_password(cur, self.user, self.password)
                cur.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            conn.close()

    def connect_kwargs(self, db_name: str | None = None) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": db_name or self.db_name,
        }

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db_name,
        }

    def __exit__(self, *exc: object) -> None:
        if self.workdir is None:
            return
        data = self.workdir / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
