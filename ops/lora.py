"""``python -m ops lora upload|list``: the studio's own LoRAs in the output bucket.

Owns: checking a LoRA file before it leaves the laptop (a ``.safetensors`` whose header
parses and whose tensors lie inside the file, at most the worker's default ``LORA_MAX_BYTES``),
uploading it under ``loras/<first 16 hex of its sha256>/<file name>`` with its sha256 as
object metadata (the worker verifies the download against it), never over another object
(``If-None-Match: *``: the same file again is "already uploaded", a different file gets a
different key), and listing what is under ``loras/`` with the job snippet that uses each.

The key sits at the bucket's root, outside ``R2_PREFIX``: the bucket's lifecycle rule
expires generated objects under the prefix, and a style model must outlive them. The R2
client and the file checks are the worker's own (``worker.r2``, ``worker.loras``), so what is
uploaded is exactly what a worker accepts.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

#: The worker's default ``LORA_MAX_BYTES``: a bigger file would be refused by the job.
MAX_BYTES = 2 * 2**30
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class LoraCommandError(Exception):
    """The command cannot run as asked (bad file, missing settings); the message says why."""


@dataclass(frozen=True)
class Uploaded:
    """What ``upload`` did."""

    key: str
    sha256: str
    bytes: int
    created: bool
    """False when the same file was already there."""

    def snippet(self, strength: float = 0.8) -> dict[str, Any]:
        """The ``loras`` entry of a job that uses it."""
        return {"key": self.key, "strength": strength}


@dataclass(frozen=True)
class Listed:
    """One LoRA in the bucket."""

    key: str
    bytes: int
    sha256: str | None
    last_modified: str


def worker_modules() -> tuple[ModuleType, ModuleType]:
    """``worker.r2`` and ``worker.loras`` (the worker package lives in ``image/``)."""
    image_dir = str(Path(__file__).resolve().parents[1] / "image")
    if image_dir not in sys.path:
        sys.path.append(image_dir)
    from worker import loras, r2  # noqa: PLC0415 - after the path is known

    return r2, loras


def settings_from(env: Mapping[str, str]) -> Any:
    """The bucket settings from ``R2_*`` (a :class:`LoraCommandError` naming what is missing)."""
    r2, _ = worker_modules()
    try:
        return r2.R2Settings.from_env(env)
    except r2.R2ConfigError as exc:
        raise LoraCommandError(
            str(exc).split(". ")[0] + ": export R2_ENDPOINT, R2_BUCKET, R2_ACCESS_KEY_ID and "
            "R2_SECRET_ACCESS_KEY (a token that may write the bucket for upload; the app's "
            "read token is enough for list), or pass --outputs for endpoint and bucket"
        ) from exc


def key_for(path: Path, sha256: str, name: str | None = None) -> str:
    """``loras/<16 hex of sha256>/<name>``: one key per content, readable in listings."""
    _, loras = worker_modules()
    stem = _SAFE.sub("_", (name or path.name).removesuffix(".safetensors")).strip("._-")
    key = f"{loras.KEY_PREFIX}{sha256[:16]}/{stem or 'lora'}.safetensors"
    if not loras.KEY_PATTERN.fullmatch(key):
        raise LoraCommandError(f"cannot make a valid key from the name {name or path.name!r}")
    return str(key)


def check_file(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Refuse what a worker would refuse; return the file's sha256."""
    _, loras = worker_modules()
    if not path.is_file():
        raise LoraCommandError(f"{path}: no such file")
    if path.suffix != ".safetensors":
        raise LoraCommandError(
            f"{path}: LoRAs must be .safetensors files (a .ckpt/.pt is a pickle that can run "
            "code when loaded; convert it first)"
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise LoraCommandError(
            f"{path} is {size} bytes; workers take LoRAs up to {max_bytes} bytes (LORA_MAX_BYTES)"
        )
    problem = loras.safetensors_problem(path)
    if problem is not None:
        raise LoraCommandError(f"{path} is not a valid safetensors file: {problem}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def upload(
    client: Any, bucket: str, path: Path, *, sha256: str, name: str | None = None
) -> Uploaded:
    """Put ``path`` under ``loras/`` with ``sha256`` (what :func:`check_file` returned for
    it); never over another object."""
    r2, _ = worker_modules()
    key = key_for(path, sha256, name)
    size = path.stat().st_size
    headers: dict[str, Any] = {
        "ContentType": "application/octet-stream",
        "ContentDisposition": "attachment",
        "Metadata": {"sha256": sha256},
    }
    with path.open("rb") as handle:

        def read_at(offset: int, length: int) -> bytes:
            return os.pread(handle.fileno(), length, offset)

        try:
            r2.create_object(
                client, bucket=bucket, key=key, read_at=read_at, size=size, headers=headers
            )
        except r2.ObjectExistsError:
            there = client.head_object(Bucket=bucket, Key=key)
            if (there.get("Metadata") or {}).get("sha256") != sha256:
                raise LoraCommandError(
                    f"{key} already holds other bytes (no matching sha256); it is never "
                    "overwritten: upload with --name to get another key"
                ) from None
            return Uploaded(key=key, sha256=sha256, bytes=size, created=False)
    return Uploaded(key=key, sha256=sha256, bytes=size, created=True)


def list_loras(client: Any, bucket: str) -> list[Listed]:
    """Every ``.safetensors`` under ``loras/``, with the sha256 recorded at upload."""
    _, loras = worker_modules()
    found: list[Listed] = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=loras.KEY_PREFIX)
    for page in pages:
        for item in page.get("Contents", []):
            key = str(item["Key"])
            if not key.endswith(".safetensors"):
                continue
            head = client.head_object(Bucket=bucket, Key=key)
            sha = (head.get("Metadata") or {}).get("sha256")
            found.append(
                Listed(
                    key=key,
                    bytes=int(item["Size"]),
                    sha256=sha if isinstance(sha, str) else None,
                    last_modified=item["LastModified"].isoformat(timespec="seconds"),
                )
            )
    return sorted(found, key=lambda entry: entry.key)


def describe_error(exc: Exception) -> str:
    """One line for an S3/botocore failure: the call's error code and what to check."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = error.get("Code", "error")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = (
            ": the token may not do this (upload needs write access to the bucket)"
            if status == 403 or code == "AccessDenied"
            else ""
        )
        return f"R2 answered {status} {code}: {error.get('Message', '')}{hint}".strip()
    return f"{type(exc).__name__}: {exc}"
