"""PgBouncer in transaction mode on loopback, in front of a PostgreSQL with trust auth:
its own port and its own configuration in a temporary directory. Used by the benches
(``--pgbouncer``) and by tests/scale/test_pgbouncer.py.

    bouncer = PgBouncer(upstream="postgres://postgres@127.0.0.1:5432").start()
    bouncer.url("tenure")  # postgres://postgres@127.0.0.1:<port>/tenure
    bouncer.stop()

Clients must leave prepared statements off (``DATABASE_PREPARE_THRESHOLD`` empty): a
server connection serves other clients between transactions.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

NOT_INSTALLED = (
    "pgbouncer is not installed (Debian: apt-get install -y pgbouncer; "
    "tests/ensure_services.py installs it)."
)


def binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    def __init__(self, *, upstream: str, pool_size: int = 20, max_clients: int = 2000) -> None:
        parsed = urlparse(upstream)
        self.host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 5432
        self.user = parsed.username or "postgres"
        self.pool_size = pool_size
        self.max_clients = max_clients
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tenure-pgbouncer-"))
        self.proc: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def config(self) -> str:
        return "\n".join(
            [
                "[databases]",
                f"* = host={self.host} port={self.upstream_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {self.dir / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                f"max_client_conn = {self.max_clients}",
                # Django and psycopg send these at connect; PgBouncer need not track them.
                "ignore_startup_parameters = extra_float_digits,options",
                f"logfile = {self.dir / 'pgbouncer.log'}",
                f"pidfile = {self.dir / 'pgbouncer.pid'}",
                "",
            ]
        )

    def start(self, timeout: float = 15) -> PgBouncer:
        exe = binary()
        if exe is None:
            raise RuntimeError(NOT_INSTALLED)
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(self.config())
        argv = [exe, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root: as the postgres system user instead.
            shutil.chown(self.dir, "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres")
            argv[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port}: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
