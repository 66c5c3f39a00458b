"""A minimal PEP 517 build backend (wheel and sdist) so the client installs with a
plain ``pip install clients/python``, offline, needing no build dependency."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PACKAGE = "tenure_client"


def _meta() -> dict:
    return tomllib.loads((HERE / "pyproject.toml").read_text())["project"]


def _dist() -> tuple[str, str]:
    meta = _meta()
    return meta["name"].replace("-", "_"), meta["version"]


def _metadata() -> str:
    meta = _meta()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {meta['name']}",
        f"Version: {meta['version']}",
        f"Summary: {meta['description']}",
        f"Requires-Python: {meta['requires-python']}",
    ]
    lines += [f"Requires-Dist: {dep}" for dep in meta.get("dependencies", [])]
    for extra, deps in meta.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {dep}; extra == "{extra}"' for dep in deps]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings=None) -> list[str]:
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    name, version = _dist()
    wheel_name = f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{PACKAGE}/{p.name}": p.read_bytes() for p in sorted((HERE / PACKAGE).glob("*.py"))
    }
    files[f"{info}/METADATA"] = _metadata().encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tenure_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(n, d) for n, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as whl:
        for n, d in files.items():
            whl.writestr(n, d)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None) -> str:
    name, version = _dist()
    base = f"{name}-{version}"
    with tarfile.open(Path(sdist_directory) / f"{base}.tar.gz", "w:gz") as tar:
        for path in ["pyproject.toml", "README.md", "_build/tenure_build.py",
                     *[f"{PACKAGE}/{p.name}" for p in sorted((HERE / PACKAGE).glob("*.py"))]]:
            tar.add(HERE / path, arcname=f"{base}/{path}")
        pkg_info = _metadata().encode()
        entry = tarfile.TarInfo(f"{base}/PKG-INFO")
        entry.size = len(pkg_info)
        tar.addfile(entry, io.BytesIO(pkg_info))
    return f"{base}.tar.gz"
