"""Make sure PostgreSQL and Redis answer on loopback before the suite runs.

Starts them when they are installed but stopped; otherwise fails with one
clear message saying what is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(port: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.3)
    return False


def start_postgres() -> str | None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or not shutil.which("pg_ctlcluster"):
        return "PostgreSQL is not installed (no /etc/postgresql and no pg_ctlcluster)."
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
    )
    return None if wait_for(5432) else "PostgreSQL did not start on 127.0.0.1:5432."


def start_redis() -> str | None:
    if not shutil.which("redis-server"):
        return "Redis is not installed (no redis-server on PATH)."
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
            "--save", "", "--appendonly", "no",
        ],
        check=False,
        capture_output=True,
    )  # fmt: skip
    return None if wait_for(6379) else "Redis did not start on 127.0.0.1:6379."


def ensure_pgbouncer() -> str | None:
    """PgBouncer (Debian's package) for the scale-out test (tests/scale): installed when
    absent and this runs as root with apt-get; the test starts its own instance."""
    if shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer"):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "PgBouncer is not installed: install the Debian package 'pgbouncer'."
    print("Installing PgBouncer for the scale-out test (Debian package)...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], check=False, env=env)
    if not os.path.exists("/usr/sbin/pgbouncer"):
        return "PgBouncer could not be installed (apt-get install pgbouncer failed)."
    # The package's own service is not used (the test runs one on a port of its own).
    subprocess.run(["service", "pgbouncer", "stop"], check=False, capture_output=True)
    return None


def main() -> int:
    problems = []
    if not port_open(5432) and (problem := start_postgres()):
        problems.append(problem)
    if not port_open(6379) and (problem := start_redis()):
        problems.append(problem)
    if problem := ensure_pgbouncer():
        problems.append(problem)
    if problems:
        print(
            "The test suite needs PostgreSQL and Redis on 127.0.0.1 (and PgBouncer):",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("PostgreSQL (5432) and Redis (6379) are up; PgBouncer is installed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
