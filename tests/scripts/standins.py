"""Stand-ins for the tools the project's scripts call, and a throwaway copy of the repository.

The scripts under ``scripts/`` are run for real (bash, sed, python's venv and pip), with
stand-ins first on ``PATH`` for whatever would touch the internet or the machine: ``curl``
(online: serves a stand-in Pulumi installer; offline: fails like curl does), ``python3``
(refuses ``-m pip`` outside a venv, like a PEP 668 "externally managed" Python), ``uv`` and
``pulumi`` (record their arguments). Each stand-in appends its argv to ``$STANDIN_LOG``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: System directories only: bash, coreutils, sed, but no uv or pulumi of the developer's.
SYSTEM_PATH = "/usr/bin:/bin"
PROJECT_PYTHON = sys.executable


def executable(path: Path, text: str) -> Path:
    """Write ``text`` (dedented) to ``path`` and make it executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def copy_repository(dest: Path, *parts: str) -> Path:
    """Copy the named files and folders of the repository into ``dest`` (a fresh clone)."""
    for part in parts:
        source = ROOT / part
        target = dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return dest


def logging_tool(bin_dir: Path, name: str, body: str = "exit 0") -> Path:
    """A stand-in ``name`` that records ``name argv...`` in ``$STANDIN_LOG``, then runs ``body``."""
    return executable(
        bin_dir / name,
        f"""
        #!/bin/sh
        echo "{name} $*" >> "$STANDIN_LOG"
        {textwrap.dedent(body).strip()}
        """,
    )


def offline_curl(bin_dir: Path) -> Path:
    """``curl`` on a machine without network: exit 6, as curl does for an unresolved host."""
    return logging_tool(bin_dir, "curl", 'echo "curl: (6) Could not resolve host" >&2\nexit 6')


def pep668_python(bin_dir: Path) -> Path:
    """A ``python3`` whose system pip refuses to install (PEP 668); everything else is real."""
    return logging_tool(
        bin_dir,
        "python3",
        f"""
        if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
          echo "error: externally-managed-environment" >&2
          echo "This environment is externally managed (stand-in of a PEP 668 Python)." >&2
          exit 1
        fi
        exec "{PROJECT_PYTHON}" "$@"
        """,
    )


def fake_uv_wheel(wheel_dir: Path, version: str) -> tuple[Path, str]:
    """A wheel named uv whose ``uv`` script records its argv; returns (path, sha256 hex)."""
    script = '#!/bin/sh\necho "uv $*" >> "$STANDIN_LOG"\nexit 0\n'
    dist = f"uv-{version}"
    files = {
        f"{dist}.data/scripts/uv": script,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: uv\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record_name = f"{dist}.dist-info/RECORD"
    record = []
    for name, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{name},sha256={encoded},{len(text.encode())}")
    record.append(f"{record_name},,")
    files[record_name] = "\n".join(record) + "\n"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheel = wheel_dir / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, text)
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def run_env(bin_dir: Path, log: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: stand-ins first on PATH, then system directories only."""
    env = {
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": str(log.parent / "home"),
        "STANDIN_LOG": str(log),
        "LANG": "C.UTF-8",
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
    }
    env.update(extra)
    return env


def logged(log: Path) -> list[str]:
    """Lines the stand-ins recorded, in order."""
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []
