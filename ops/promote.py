"""Promotion: only a digest that passed staging's gates reaches prod, pinned in one line.

Owns:

- the **gate record**: when staging's smoke and canary pass, a record tied to the digest they
  tested (digest, the gates' results, the run URL, the commit) is stored in GHCR next to the
  image, as an OCI artifact tagged ``sha256-<hex>.gates`` (the tag scheme cosign uses for
  signatures). Why there: it is keyed by the digest itself, lives and is deleted with the
  image, and every workflow reaches it with its own ``GITHUB_TOKEN`` (``packages: write`` in
  staging, ``read`` elsewhere): no other store, no other secret. Writing the same record
  again (a re-run) rewrites the same tag: harmless;
- **verification**: a digest may go to prod only when the registry has the image and a
  passing record for exactly that digest; the refusal says which is missing;
- **pinning**: rewriting (or adding) the ``<project>:image.digest`` line of
  ``Pulumi.<stack>.yaml`` as text, so the PR diff is exactly one line and every comment
  survives; the project name comes from the ``Pulumi.yaml`` beside the stack file.

The record is not signed: anything that can write to the package can write one, which
includes a same-repository pull request whose (edited) workflow asks for ``packages: write``.
The ``production`` environment's reviewers stay the authority; the record stops mistakes (a
digest that failed, or was never tested), not a hostile committer. docs/rollout.md ("Who can
forge a record") gives the two ways to close that.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ops.registry import OCI_MANIFEST, Registry
from ops.stack_file import stack_values

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
CONFIG_KEY = "image.digest"


class PromoteError(ValueError):
    """The digest or the stack file is not usable."""


def extract_digest(value: str) -> str:
    """``sha256:<hex>`` out of a digest or ``ghcr.io/owner/name@sha256:<hex>``."""
    found = DIGEST.findall(value.strip().lower())
    if len(found) != 1:
        raise PromoteError(f"expected exactly one sha256:<64 hex> digest, got {value!r}")
    return str(found[0])


def project_name(stack_file: Path) -> str:
    """The ``name:`` of the ``Pulumi.yaml`` next to ``stack_file``."""
    project_file = stack_file.parent / "Pulumi.yaml"
    if not project_file.is_file():
        raise PromoteError(f"no Pulumi.yaml next to {stack_file}")
    data = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise PromoteError(f"{project_file} has no project name")
    return name


@dataclass(frozen=True)
class PinResult:
    """What :func:`pin_digest` did."""

    file: str
    key: str
    digest: str
    previous: str | None
    changed: bool


def set_key(text: str, key: str, value: str) -> tuple[str, str | None]:
    """``text`` with the config line ``key: value`` set (added at the end of ``config:`` when
    absent); every other line is kept. Returns the new text and the previous value."""
    lines = text.splitlines(keepends=True)
    line_re = re.compile(rf"^(?P<indent>\s+){re.escape(key)}:(?P<value>.*?)(?P<eol>\r?\n?)$")
    previous = None
    for index, line in enumerate(lines):
        match = line_re.match(line)
        if match:
            previous = str(yaml.safe_load(match["value"]) or "") or None
            lines[index] = f"{match['indent']}{key}: {value}{match['eol'] or chr(10)}"
            break
    else:
        lines = _insert(lines, key, value)
    new_text = "".join(lines)
    parsed = yaml.safe_load(new_text) or {}
    if not isinstance(parsed, dict) or str((parsed.get("config") or {}).get(key)) != value:
        raise PromoteError(f"could not set {key} without breaking the YAML")
    return new_text, previous


def pin_digest(stack_file: Path, digest: str, *, project: str | None = None) -> PinResult:
    """Set ``<project>:image.digest`` in ``stack_file`` to ``digest``; returns what changed."""
    digest = extract_digest(digest)
    if not stack_file.is_file():
        raise PromoteError(f"{stack_file}: no such stack file")
    project = project or project_name(stack_file)
    key = f"{project}:{CONFIG_KEY}"
    text = stack_file.read_text(encoding="utf-8")
    try:
        new_text, previous = set_key(text, key, digest)
    except PromoteError as error:
        raise PromoteError(f"{stack_file}: {error}") from None
    changed = new_text != text
    if changed:
        stack_file.write_text(new_text, encoding="utf-8")
    return PinResult(str(stack_file), key, digest, previous, changed)


def _insert(lines: list[str], key: str, value: str) -> list[str]:
    """Add the key at the end of the ``config:`` block, creating the block if needed."""
    for index, line in enumerate(lines):
        if line.rstrip() == "config:":
            end = index + 1
            indent = None
            while end < len(lines) and (
                lines[end].startswith((" ", "\t")) or not lines[end].strip()
            ):
                body = lines[end].lstrip()
                if indent is None and body.strip() and not body.startswith("#"):
                    indent = lines[end][: len(lines[end]) - len(body)]
                end += 1
            indent = indent or "  "
            while end > index + 1 and not lines[end - 1].strip():
                end -= 1
            if end > 0 and not lines[end - 1].endswith("\n"):
                lines[end - 1] += "\n"
            return [*lines[:end], f"{indent}{key}: {value}\n", *lines[end:]]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return [*lines, "config:\n", f"  {key}: {value}\n"]


# --------------------------------------------------------------------------- gate records

RECORD_SCHEMA = "comfyui-runpod/gates/v1"
RECORD_MEDIA_TYPE = "application/vnd.comfyui-runpod.gates.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
_RECORD_TAG = re.compile(r"^sha256-([0-9a-f]{64})\.gates$")
_ANNOTATION = "io.github.comfyui-runpod.gates"


class PromotionRefusedError(PromoteError):
    """The digest may not go to prod; the message says why and what to do."""


def record_tag(digest: str) -> str:
    """The tag a digest's gate record lives under: ``sha256-<hex>.gates``."""
    return f"{extract_digest(digest).replace(':', '-')}.gates"


def image_repository(stack_file: Path) -> str:
    """``owner/name`` of the stack's image (its Pulumi.yaml defaults when unset)."""
    from components.config import SCHEMA_BY_NAME  # noqa: PLC0415

    values = stack_values(stack_file)
    owner = values.get("image.owner", "").strip()
    if not owner:
        raise PromoteError(f"{stack_file} sets no image.owner: the image's repository is unknown")
    name = values.get("image.name") or str(SCHEMA_BY_NAME["image.name"].default)
    return f"{owner}/{name.strip()}"


def pinned_digest(stack_file: Path) -> str:
    """The ``image.digest`` a stack file pins; refuses a file that pins none."""
    pinned = stack_values(stack_file).get("image.digest", "").strip()
    if not pinned:
        raise PromotionRefusedError(
            f"{stack_file} pins no image.digest: prod only runs a digest staging passed "
            "(ops pin-digest)"
        )
    return extract_digest(pinned)


@dataclass(frozen=True)
class GateRecord:
    """What staging proved about one digest."""

    digest: str
    passed: bool
    created: str
    document: dict[str, Any]


def build_record(
    digest: str,
    *,
    repository: str,
    smoke: Mapping[str, Any],
    canary: Mapping[str, Any],
    run_url: str,
    commit: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The record of a passing staging run; refuses gates that did not pass."""
    digest = extract_digest(digest)
    failed = [
        name for name, doc in (("smoke", smoke), ("canary", canary)) if doc.get("ok") is not True
    ]
    if failed:
        raise PromotionRefusedError(
            f"{' and '.join(failed)} did not pass for {digest}: no record is written, so this "
            "digest cannot be promoted"
        )
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "schema": RECORD_SCHEMA,
        "digest": digest,
        "repository": repository,
        "passed": True,
        "gates": {
            "smoke": {"ok": True, "checks": list(smoke.get("checks") or [])},
            "canary": {
                "ok": True,
                "gates": canary.get("gates"),
                "summary": canary.get("summary"),
                "checks": list(canary.get("checks") or []),
            },
        },
        "runUrl": run_url,
        "commit": commit,
        "createdAt": created,
    }


def write_record(registry: Registry, record: Mapping[str, Any]) -> str:
    """Store ``record`` as the artifact tagged ``sha256-<hex>.gates``; return the tag."""
    digest = extract_digest(str(record["digest"]))
    if not registry.has_manifest(digest):
        raise PromotionRefusedError(
            f"{registry.host}/{registry.repository} has no image {digest}: nothing to record"
        )
    body = json.dumps(record, sort_keys=True, indent=2).encode()
    config = registry.put_blob(b"{}")
    layer = registry.put_blob(body)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": RECORD_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": RECORD_MEDIA_TYPE, "digest": layer, "size": len(body)}],
        "annotations": {
            "org.opencontainers.image.created": str(record["createdAt"]),
            f"{_ANNOTATION}.digest": digest,
            f"{_ANNOTATION}.passed": "true" if record.get("passed") is True else "false",
        },
    }
    tag = record_tag(digest)
    registry.put_manifest(tag, manifest)
    return tag


def read_record(registry: Registry, digest: str) -> GateRecord | None:
    """The record stored for ``digest``, or None; a malformed one raises."""
    digest = extract_digest(digest)
    manifest = registry.manifest(record_tag(digest))
    if manifest is None:
        return None
    layers = [
        layer
        for layer in manifest.get("layers") or []
        if isinstance(layer, dict) and layer.get("mediaType") == RECORD_MEDIA_TYPE
    ]
    if len(layers) != 1:
        raise PromotionRefusedError(f"the record {record_tag(digest)} holds no gate document")
    try:
        document = json.loads(registry.blob(str(layers[0].get("digest"))))
    except ValueError as exc:
        raise PromotionRefusedError(f"the record {record_tag(digest)} is not JSON") from exc
    if not isinstance(document, dict) or document.get("schema") != RECORD_SCHEMA:
        raise PromotionRefusedError(
            f"the record {record_tag(digest)} is not a {RECORD_SCHEMA} document"
        )
    return GateRecord(
        digest=str(document.get("digest")),
        passed=document.get("passed") is True,
        created=str(document.get("createdAt") or ""),
        document=document,
    )


def verify(registry: Registry, digest: str) -> GateRecord:
    """The passing record of an image the registry has; refuses otherwise, saying which."""
    digest = extract_digest(digest)
    where = f"{registry.host}/{registry.repository}"
    reasons = []
    if not registry.has_manifest(digest):
        reasons.append(
            f"{where} has no image {digest} (never pushed there, or deleted): pin a digest "
            "staging built"
        )
    record = read_record(registry, digest)
    if record is None:
        reasons.append(
            f"no gate record for {digest} ({where}:{record_tag(digest)} is missing): staging's "
            "smoke and canary never passed with this image; deploy it to staging first"
        )
    elif not record.passed or record.digest != digest:
        reasons.append(
            f"the gate record {record_tag(digest)} does not say {digest} passed "
            f"(digest {record.digest}, passed {record.passed})"
        )
    if reasons or record is None:
        raise PromotionRefusedError("; ".join(reasons))
    return record


def latest_passing(registry: Registry) -> GateRecord:
    """The newest passing record in the repository (what promotion pins)."""
    candidates = []
    for tag in registry.tags():
        match = _RECORD_TAG.match(tag)
        if not match:
            continue
        manifest = registry.manifest(tag) or {}
        notes = manifest.get("annotations") or {}
        if notes.get(f"{_ANNOTATION}.passed") == "true":
            created = str(notes.get("org.opencontainers.image.created") or "")
            candidates.append((created, f"sha256:{match[1]}"))
    if not candidates:
        raise PromotionRefusedError(
            f"{registry.host}/{registry.repository} holds no passing gate record: no digest "
            "has passed staging's smoke and canary yet"
        )
    for _, digest in sorted(candidates, reverse=True):
        try:
            return verify(registry, digest)
        except PromotionRefusedError:
            continue  # e.g. the image itself was deleted: take the next newest
    raise PromotionRefusedError(
        f"{registry.host}/{registry.repository}: every passing record names an image the "
        "registry no longer has"
    )
