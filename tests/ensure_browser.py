"""Install Debian's Chromium and ChromeDriver for the browser tests when absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    if os.path.exists(CHROMIUM):
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            f"Browser tests need Chromium at {CHROMIUM}: install the Debian packages "
            "'chromium' and 'chromium-driver'.",
            file=sys.stderr,
        )
        return 1
    print("Installing Chromium for the browser tests (Debian packages)...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env
    )
    return 0 if os.path.exists(CHROMIUM) else 1


if __name__ == "__main__":
    sys.exit(main())
