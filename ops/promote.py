"""Promotion: pin the image digest staging tested in a stack file, keeping the file's comments.

Owns: extracting ``sha256:<64 hex>`` from a digest or a full image reference, and rewriting
(or adding) the ``<project>:image.digest`` line of ``Pulumi.<stack>.yaml`` as text, so the
PR diff is exactly one line and every comment survives. The project name comes from the
``Pulumi.yaml`` beside the stack file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

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


def pin_digest(stack_file: Path, digest: str, *, project: str | None = None) -> PinResult:
    """Set ``<project>:image.digest`` in ``stack_file`` to ``digest``; returns what changed."""
    digest = extract_digest(digest)
    if not stack_file.is_file():
        raise PromoteError(f"{stack_file}: no such stack file")
    project = project or project_name(stack_file)
    key = f"{project}:{CONFIG_KEY}"
    text = stack_file.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    line_re = re.compile(rf"^(?P<indent>\s+){re.escape(key)}:(?P<value>.*?)(?P<eol>\r?\n?)$")
    previous = None
    for index, line in enumerate(lines):
        match = line_re.match(line)
        if match:
            previous = str(yaml.safe_load(match["value"]) or "") or None
            lines[index] = f"{match['indent']}{key}: {digest}{match['eol'] or chr(10)}"
            break
    else:
        lines = _insert(lines, key, digest)
    new_text = "".join(lines)
    parsed = yaml.safe_load(new_text) or {}
    if not isinstance(parsed, dict) or (parsed.get("config") or {}).get(key) != digest:
        raise PromoteError(f"{stack_file}: could not pin {key} without breaking the YAML")
    changed = new_text != text
    if changed:
        stack_file.write_text(new_text, encoding="utf-8")
    return PinResult(str(stack_file), key, digest, previous, changed)


def _insert(lines: list[str], key: str, digest: str) -> list[str]:
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
            return [*lines[:end], f"{indent}{key}: {digest}\n", *lines[end:]]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return [*lines, "config:\n", f"  {key}: {digest}\n"]
