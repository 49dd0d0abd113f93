"""The model manifest, ``models.toml``: where it is, what it lists, which files a run selects.

Owns: the manifest's path (``MODEL_MANIFEST`` or the ``models.toml`` beside this package),
strict parsing into :class:`ModelEntry` values (every problem listed at once), choosing
entries by ``MODEL_GROUPS`` or Hearmeman-style ``download_<x>=true`` toggles, and the
lenient file-name -> groups table the handler uses for its missing-model hints.

Deliberately does not: download, hash or verify anything (``worker.models`` does), or
decide which groups a workflow needs (``worker.templates`` does).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: ``models.toml`` beside the worker package (``/opt/worker/models.toml`` in the image).
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "models.toml"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: Hearmeman-style switches and the groups they select; ``download_<group>`` works as well.
TOGGLES: Mapping[str, tuple[str, ...]] = {
    "download_wan22": ("wan22_t2v", "wan22_t2v_fast"),
    "download_wan22_fast": ("wan22_t2v_fast",),
    "download_turbodiffusion": ("turbodiffusion",),
    "download_steady_dancer": ("steadydancer",),
    "download_steadydancer": ("steadydancer",),
    "download_flux": ("flux_dev_fp8",),
    "download_background_removal": ("background_removal",),
}
_TRUE = {"1", "true", "yes", "on"}


class ManifestError(ValueError):
    """``models.toml`` is malformed or a selection names an unknown group."""


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One file of the manifest."""

    name: str
    """Unique id used in logs and the final table."""
    url: str
    """Where to GET the file."""
    path: str
    """Destination relative to ``MODELS_DIR`` (ComfyUI folder names)."""
    size: int | None = None
    """Bytes, when known in advance."""
    sha256: str | None = None
    """Lower-case hex sha256, when known in advance."""
    groups: tuple[str, ...] = ()
    """``MODEL_GROUPS`` names that select this file."""
    gated: bool = False
    """The hub wants ``HF_TOKEN`` and an accepted licence."""


def manifest_path(env: Mapping[str, str] | None = None) -> Path:
    """``MODEL_MANIFEST`` when set (and not blank), else :data:`DEFAULT_MANIFEST`."""
    override = (os.environ if env is None else env).get("MODEL_MANIFEST", "").strip()
    return Path(override) if override else DEFAULT_MANIFEST


def _tables(path: Path) -> list[Any]:
    """The ``[[model]]`` tables of ``path``; :class:`ManifestError` when it cannot be read."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"cannot read model manifest {path}: {exc}") from exc
    tables = data.get("model", [])
    return tables if isinstance(tables, list) else []


def _problems(where: str, raw: Mapping[str, Any]) -> list[str]:
    """What is wrong with one ``[[model]]`` table that has every required key."""
    problems: list[str] = []
    rel = str(raw["path"])
    if rel.startswith("/") or ".." in Path(rel).parts:
        problems.append(f"{where}: path must be relative to MODELS_DIR, got {rel!r}")
    elif not rel.strip() or rel.rsplit("/", 1)[-1].strip() in ("", ".", ".."):
        problems.append(
            f"{where}: path must name a file (e.g. diffusion_models/x.safetensors), got {rel!r}"
        )
    sha = raw.get("sha256")
    if sha is not None and not _SHA256.match(str(sha)):
        problems.append(f"{where}: sha256 must be 64 lower-case hex digits")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        problems.append(f"{where}: size must be a non-negative integer of bytes")
    if not urlsplit(str(raw["url"])).scheme.startswith("http"):
        problems.append(f"{where}: url must be http(s)")
    return problems


def load_manifest(path: Path) -> list[ModelEntry]:
    """Parse and validate ``path``; raise :class:`ManifestError` listing every problem."""
    problems: list[str] = []
    entries: list[ModelEntry] = []
    seen_names: set[str] = set()
    seen_paths: set[str] = set()
    for index, raw in enumerate(_tables(path)):
        where = f"model #{index + 1} ({raw.get('name', '?')})"
        missing = [key for key in ("name", "url", "path", "groups") if key not in raw]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        problems += _problems(where, raw)
        rel = str(raw["path"])
        if raw["name"] in seen_names or rel in seen_paths:
            problems.append(f"{where}: duplicate name or path")
        seen_names.add(raw["name"])
        seen_paths.add(rel)
        entries.append(
            ModelEntry(
                name=str(raw["name"]),
                url=str(raw["url"]),
                path=rel,
                size=raw.get("size"),
                sha256=raw.get("sha256"),
                groups=tuple(raw["groups"]),
                gated=bool(raw.get("gated", False)),
            )
        )
    if problems:
        raise ManifestError(f"model manifest {path} is invalid: " + "; ".join(problems))
    return entries


@lru_cache(maxsize=4)
def groups_by_file(path: Path) -> dict[str, tuple[str, ...]]:
    """File name (without its folder) -> the groups that install it, for error hints.

    Lenient on purpose: a hint must never fail a job, so an unreadable manifest gives an
    empty table and a malformed entry is passed over.
    """
    try:
        tables = _tables(path)
    except ManifestError:
        return {}
    found: dict[str, tuple[str, ...]] = {}
    for entry in tables:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            found[entry["path"].rsplit("/", 1)[-1]] = tuple(entry.get("groups", ()))
    return found


def groups_from_env(env: Mapping[str, str]) -> list[str]:
    """Groups chosen by ``MODEL_GROUPS`` (comma list) plus any ``download_<x>=true`` toggle."""
    chosen = [g.strip() for g in env.get("MODEL_GROUPS", "").split(",") if g.strip()]
    for key, value in sorted(env.items()):
        if not key.lower().startswith("download_") or value.strip().lower() not in _TRUE:
            continue
        chosen.extend(TOGGLES.get(key.lower(), (key.lower().removeprefix("download_"),)))
    return list(dict.fromkeys(chosen))


def select(entries: Sequence[ModelEntry], groups: Iterable[str]) -> list[ModelEntry]:
    """Entries in any of ``groups``; raise :class:`ManifestError` for an unknown group."""
    wanted = list(groups)
    known = {g for entry in entries for g in entry.groups}
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise ManifestError(
            f"unknown model group(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [entry for entry in entries if set(entry.groups) & set(wanted)]
