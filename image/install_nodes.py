#!/usr/bin/env python3
"""Build-time installer: ComfyUI and its custom nodes, exactly as ``nodes.toml`` locks them.

Owns: reading and checking the lock, fetching each repository at its commit (never a branch
or tag, and the checked-out HEAD must equal the lock), installing every package's
requirements in one pip run held by the constraint files, and building a ``cuda_extension``
package into a wheel. Used only by the Dockerfile; the lock is the one place a pin lives.

    install_nodes.py install            ComfyUI into COMFYUI_DIR, custom nodes into custom_nodes/
    install_nodes.py wheel NAME --out D  build the cuda_extension NAME into a wheel in D
    install_nodes.py list               print kind, name and commit of every package

Exit codes: 0 done, 1 a command (git, pip) failed, 2 bad usage or a bad lock.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("comfyui", "custom_node", "cuda_extension")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PIP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class LockError(ValueError):
    """The lock file is malformed; the message names the package and the field."""


class CommandError(RuntimeError):
    """A git or pip command failed."""


@dataclass(frozen=True)
class Package:
    """One ``[[package]]`` of ``nodes.toml``."""

    name: str
    kind: str
    repo: str
    commit: str
    branch: str
    date: datetime
    needed_by: tuple[str, ...]
    requirements: str
    extra: tuple[str, ...]
    head: str = ""
    """The branch head when the pin was checked (``pins.py`` re-checks it live)."""
    head_date: datetime | None = None
    submodules: bool = False


def _field(raw: dict[str, object], key: str, kind: type, where: str) -> object:
    if key not in raw:
        raise LockError(f"{where}: missing `{key}`")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise LockError(f"{where}: `{key}` must be a {kind.__name__}, got {value!r}")
    return value


def _strings(raw: dict[str, object], key: str, where: str) -> tuple[str, ...]:
    value = _field(raw, key, list, where)
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise LockError(f"{where}: `{key}` must be a list of non-empty strings")
    return tuple(value)


def _dated(raw: dict[str, object], key: str, where: str) -> datetime:
    text = str(_field(raw, key, str, where))
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise LockError(f"{where}: {key} must be ISO 8601, got {text!r}") from exc
    if value.tzinfo is None:
        raise LockError(f"{where}: {key} needs a UTC offset, got {text!r}")
    return value


def _matching(raw: dict[str, object], key: str, pattern: re.Pattern[str], where: str) -> str:
    value = str(_field(raw, key, str, where))
    if not pattern.fullmatch(value):
        raise LockError(f"{where}: {key} must be {_SHAPES[key]}, got {value!r}")
    return value


_SHAPES = {
    "repo": "https://github.com/<owner>/<name>",
    "commit": "a full 40-hex commit",
    "head": "the full 40-hex branch head",
}


#: Every field a ``[[package]]`` table may have.
_FIELDS = frozenset(
    {
        "name",
        "kind",
        "repo",
        "commit",
        "branch",
        "date",
        "head",
        "head_date",
        "needed_by",
        "requirements",
        "extra",
        "submodules",
    }
)


def _named(raw: dict[str, object], index: int) -> tuple[str, str]:
    """The package's name and the ``where`` its messages start with; unknown fields refused."""
    name = str(_field(raw, "name", str, f"nodes.toml package #{index + 1}"))
    where = f"nodes.toml package {name!r}"
    if not _NAME.fullmatch(name):
        raise LockError(f"{where}: name must be a plain folder name")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise LockError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return name, where


def _kind(raw: dict[str, object], where: str) -> str:
    kind = str(_field(raw, "kind", str, where))
    if kind not in KINDS:
        raise LockError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _branch(raw: dict[str, object], where: str) -> str:
    branch = str(_field(raw, "branch", str, where))
    if not branch.strip() or branch.startswith("refs/"):
        raise LockError(f"{where}: branch must name the upstream default branch")
    return branch


def _needed_by(raw: dict[str, object], where: str) -> tuple[str, ...]:
    needed_by = _strings(raw, "needed_by", where)
    if not needed_by:
        raise LockError(f"{where}: needed_by is empty: a package nothing needs is not installed")
    return needed_by


def _extra(raw: dict[str, object], where: str) -> tuple[str, ...]:
    extra = _strings(raw, "extra", where)
    for item in extra:
        if not _PIP_NAME.fullmatch(item):
            raise LockError(f"{where}: extra lists bare names (versions live in constraints.txt)")
    return extra


def _head_date(raw: dict[str, object], date: datetime, where: str) -> datetime:
    """When the branch head was checked; a pin a year or more behind it is refused."""
    head_date = _dated(raw, "head_date", where)
    if (head_date - date).days >= 365:
        raise LockError(
            f"{where}: the pin is {(head_date - date).days} days older than its branch head; "
            "move it (docs/worker-image.md, 'Move a pin')"
        )
    return head_date


def _submodules(raw: dict[str, object], kind: str, where: str) -> bool:
    submodules = bool(_field(raw, "submodules", bool, where)) if "submodules" in raw else False
    if submodules and kind != "cuda_extension":
        raise LockError(f"{where}: submodules applies to cuda_extension packages only")
    return submodules


def parse_package(raw: dict[str, object], index: int) -> Package:
    """Check one ``[[package]]`` table; raise :class:`LockError` naming what is wrong.

    Fields are checked in a fixed order; the first problem found is the one reported.
    """
    name, where = _named(raw, index)
    kind = _kind(raw, where)
    repo = _matching(raw, "repo", _REPO, where)
    commit = _matching(raw, "commit", _COMMIT, where)
    branch = _branch(raw, where)
    date = _dated(raw, "date", where)
    needed_by = _needed_by(raw, where)
    requirements = str(_field(raw, "requirements", str, where))
    extra = _extra(raw, where)
    head = _matching(raw, "head", _COMMIT, where)
    return Package(
        name=name,
        kind=kind,
        repo=repo,
        commit=commit,
        branch=branch,
        date=date,
        needed_by=needed_by,
        requirements=requirements,
        extra=extra,
        head=head,
        head_date=_head_date(raw, date, where),
        submodules=_submodules(raw, kind, where),
    )


def load_lock(path: Path) -> list[Package]:
    """All packages of the lock, checked; exactly one ComfyUI, names unique."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"cannot read {path}: {exc}") from exc
    raw = data.get("package")
    if not isinstance(raw, list) or not raw:
        raise LockError(f"{path}: no [[package]] tables")
    packages = [parse_package(entry, i) for i, entry in enumerate(raw)]
    names = [p.name for p in packages]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LockError(f"{path}: duplicate package name(s) {', '.join(duplicates)}")
    if sum(p.kind == "comfyui" for p in packages) != 1:
        raise LockError(f"{path}: exactly one package must be kind = 'comfyui'")
    return packages


def _say(message: str) -> None:
    sys.stderr.write(f"[install_nodes] {message}\n")
    sys.stderr.flush()


def _run(argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    _say(f"$ {' '.join(argv)}")
    done = subprocess.run(list(argv), cwd=cwd, env=env, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        raise CommandError(f"{' '.join(argv[:3])} failed (exit {done.returncode}): {detail}")
    return done.stdout


def fetch(package: Package, target: Path, *, keep_git: bool = False) -> None:
    """Check ``package.repo`` out at exactly ``package.commit`` into ``target``."""
    if target.exists():
        raise CommandError(f"{target} already exists; refusing to install {package.name} over it")
    target.mkdir(parents=True)
    _run(["git", "init", "-q", str(target)])
    _run(["git", "-C", str(target), "fetch", "-q", "--depth", "1", package.repo, package.commit])
    _run(["git", "-C", str(target), "checkout", "-q", "FETCH_HEAD"])
    head = _run(["git", "-C", str(target), "rev-parse", "HEAD"]).strip()
    if head != package.commit:
        raise CommandError(f"{package.name}: checked out {head}, the lock says {package.commit}")
    if package.submodules:
        _run(
            [
                "git",
                "-C",
                str(target),
                "submodule",
                "update",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ]
        )
    if not keep_git:
        shutil.rmtree(target / ".git")


def _constraint_args(constraints: Sequence[Path]) -> list[str]:
    args: list[str] = []
    for path in constraints:
        if not path.is_file():
            raise CommandError(f"constraint file {path} is missing")
        args += ["-c", str(path)]
    return args


def install(
    packages: Sequence[Package], comfyui_dir: Path, pip: Sequence[str], constraints: Sequence[Path]
) -> None:
    """Fetch ComfyUI and every custom node, then install all their requirements at once."""
    pip_args = [*pip, "install", "--no-cache-dir", *_constraint_args(constraints)]
    requirement_files: list[Path] = []
    extras: list[str] = []
    for package in packages:
        if package.kind == "cuda_extension":
            continue
        if package.kind == "comfyui":
            target = comfyui_dir
        else:
            target = comfyui_dir / "custom_nodes" / package.name
        fetch(package, target)
        if package.requirements:
            path = target / package.requirements
            if not path.is_file():
                raise CommandError(f"{package.name}: {package.requirements} is not in the package")
            requirement_files.append(path)
        extras.extend(package.extra)
    argv = list(pip_args)
    for path in requirement_files:
        argv += ["-r", str(path)]
    argv += extras
    _run(argv)


def build_wheel(
    package: Package, out: Path, pip: Sequence[str], constraints: Sequence[Path]
) -> None:
    """Build a ``cuda_extension`` package (with its submodules) into a wheel in ``out``."""
    if package.kind != "cuda_extension":
        raise CommandError(f"{package.name} is a {package.kind}, not a cuda_extension")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{package.name}-") as scratch:
        source = Path(scratch) / package.name
        fetch(package, source, keep_git=True)
        _run(
            [
                *pip,
                "wheel",
                "--no-cache-dir",
                "--no-deps",
                "--no-build-isolation",
                *_constraint_args(constraints),
                "-w",
                str(out),
                str(source),
            ],
            env=dict(os.environ),
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line described in the module docstring."""
    parser = argparse.ArgumentParser(
        prog="install_nodes.py", description="Install ComfyUI and custom nodes from nodes.toml."
    )
    parser.add_argument("--lock", type=Path, default=HERE / "nodes.toml")
    parser.add_argument(
        "--constraint",
        type=Path,
        action="append",
        help="pip constraint file (repeatable; default: torch.txt and constraints.txt beside it)",
    )
    parser.add_argument("--pip", default=f"{sys.executable} -m pip", help="pip command")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("install", help="install ComfyUI and every custom node")
    run.add_argument(
        "--comfyui-dir", type=Path, default=Path(os.environ.get("COMFYUI_DIR", "/opt/ComfyUI"))
    )
    wheel = sub.add_parser("wheel", help="build a cuda_extension package into a wheel")
    wheel.add_argument("name")
    wheel.add_argument("--out", type=Path, required=True)
    sub.add_parser("list", help="print kind, name and commit of every package")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        packages = load_lock(args.lock)
    except LockError as exc:
        _say(f"ERROR: {exc}")
        return 2
    constraints = args.constraint or [
        args.lock.parent / "torch.txt",
        args.lock.parent / "constraints.txt",
    ]
    pip = args.pip.split()
    try:
        if args.command == "list":
            for package in packages:
                sys.stdout.write(f"{package.kind}\t{package.name}\t{package.commit}\n")
        elif args.command == "install":
            install(packages, args.comfyui_dir, pip, constraints)
        else:
            chosen = [p for p in packages if p.name == args.name]
            if not chosen:
                _say(f"ERROR: no package {args.name!r} in {args.lock}")
                return 2
            build_wheel(chosen[0], args.out, pip, constraints)
    except CommandError as exc:
        _say(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
