"""Conformance: the project's description of RunPod's v2 bodies matches the published spec.

`components/runpod/schema.py` is what the emulator and the providers rely on; this module
reads `../shared/reference/runpod-openapi-v2.json` (present beside our checkouts and in
CI, absent in a plain clone, where these tests skip naming it), flattens each spec schema
into the same vocabulary (`$ref` resolved, `allOf` merged, `anyOf [X, null]` as a
nullable X, the `if`/`then` rules RunPod uses as `required_unless` and `when`) and
compares field by field: types, enums, bounds, patterns, required, closed objects. It also
compares every described call's success status and documented error statuses.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.runpod.schema import (
    NOT_IN_SPEC,
    OPERATIONS,
    SCHEMAS,
    AnyJson,
    Array,
    Boolean,
    Integer,
    Number,
    Object,
    OneOf,
    Schema,
    String,
    StringMap,
    When,
)

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "reference" / "runpod-openapi-v2.json"


@cache
def spec() -> dict[str, Any]:
    """The spec, or a skip that names the missing file."""
    if not SPEC_PATH.is_file():
        pytest.skip(f"conformance check needs {SPEC_PATH} (absent in a plain clone)")
    return dict(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


# -- the spec in the project's vocabulary --------------------------------------------------

_NO_CONSTRAINT = AnyJson()


def _deref(node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node["$ref"]
    assert ref.startswith("#/components/schemas/"), ref
    return spec()["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]


def normalize(node: Mapping[str, Any]) -> Schema:
    """One spec schema as the vocabulary of `components.runpod.schema`."""
    node = dict(node)
    parts: list[Schema] = []
    if "$ref" in node:
        parts.append(normalize(_deref(node)))
        node.pop("$ref")
    for sub in node.pop("allOf", []):
        parts.append(normalize(sub))
    for key in ("anyOf", "oneOf"):
        if key in node:
            parts.append(_union(node.pop(key), node.pop("discriminator", None)))
    parts.append(_plain(node))
    merged: Schema = _NO_CONSTRAINT
    for part in parts:
        merged = merge(merged, part)
    # `unevaluatedProperties: false` beside an `allOf` closes the merged object.
    if isinstance(merged, Object) and node.get("unevaluatedProperties") is False:
        merged = dataclasses.replace(merged, closed=True)
    return merged


def _union(options: list[Mapping[str, Any]], discriminator: Any) -> Schema:
    nulls = [o for o in options if o.get("type") == "null"]
    rest = [normalize(o) for o in options if o.get("type") != "null"]
    if len(rest) == 1:
        return dataclasses.replace(rest[0], nullable=True) if nulls else rest[0]  # type: ignore[call-arg]
    tag = discriminator.get("propertyName") if isinstance(discriminator, Mapping) else None
    return OneOf(variants=tuple(rest), discriminator=tag, nullable=bool(nulls))


def _kind(node: Mapping[str, Any]) -> tuple[str | None, bool]:
    kind = node.get("type")
    nullable = isinstance(kind, list) and "null" in kind
    if isinstance(kind, list):
        (kind,) = [k for k in kind if k != "null"]
    if kind is None and ("properties" in node or "if" in node):
        kind = "object"
    if kind is None and "enum" in node:
        kind = "string"
    return kind, nullable


def _plain(node: Mapping[str, Any]) -> Schema:
    kind, nullable = _kind(node)
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return StringMap(values=normalize(node["additionalProperties"]), nullable=nullable)
    if kind == "object":
        return _object(node, nullable)
    if kind is None and "required" in node:  # e.g. Endpoint.workers: allOf [...] + required
        return Object(properties={}, required=frozenset(node["required"]))
    if kind is None:
        return _NO_CONSTRAINT
    return _scalar(kind, node, nullable)


def _scalar(kind: str, node: Mapping[str, Any], nullable: bool) -> Schema:
    if kind == "string":
        enum = node.get("enum")
        return String(
            enum=tuple(e for e in enum if e is not None) if enum else None,
            pattern=node.get("pattern"),
            min_length=node.get("minLength"),
            max_length=node.get("maxLength"),
            nullable=nullable,
        )
    if kind in ("integer", "number"):
        cls = Integer if kind == "integer" else Number
        return cls(minimum=node.get("minimum"), maximum=node.get("maximum"), nullable=nullable)
    if kind == "array":
        return Array(
            items=normalize(node.get("items", {})),
            min_items=node.get("minItems"),
            max_items=node.get("maxItems"),
            unique_items=bool(node.get("uniqueItems")),
            nullable=nullable,
        )
    assert kind == "boolean", kind
    return Boolean(nullable=nullable)


def _object(node: Mapping[str, Any], nullable: bool) -> Object:
    required_unless: dict[str, str] = {}
    when: list[When] = []
    condition, then = node.get("if"), node.get("then")
    if isinstance(condition, Mapping) and isinstance(then, Mapping):
        if "not" in condition:
            (waiver,) = condition["not"]["required"]
            (name,) = then["required"]
            required_unless[name] = waiver
        else:
            (tag,) = condition["required"]
            when.append(
                When(
                    field=tag,
                    equals=condition["properties"][tag]["const"],
                    then={k: normalize(v) for k, v in then["properties"].items()},
                )
            )
    return Object(
        properties={k: normalize(v) for k, v in node.get("properties", {}).items()},
        required=frozenset(node.get("required", ())),
        closed=node.get("additionalProperties") is False
        or node.get("unevaluatedProperties") is False,
        min_properties=node.get("minProperties"),
        required_unless=required_unless,
        dependent_required={k: tuple(v) for k, v in node.get("dependentRequired", {}).items()},
        when=tuple(when),
        nullable=nullable,
    )


def merge(left: Schema, right: Schema) -> Schema:
    """Both schemas at once (an `allOf`), in the flattened vocabulary."""
    if isinstance(left, AnyJson):
        return right
    if isinstance(right, AnyJson):
        return left
    if isinstance(left, Object) and isinstance(right, Object):
        properties = dict(left.properties)
        for name, sub in right.properties.items():
            properties[name] = merge(properties[name], sub) if name in properties else sub
        return Object(
            properties=properties,
            required=left.required | right.required,
            closed=left.closed or right.closed,
            min_properties=left.min_properties or right.min_properties,
            required_unless={**left.required_unless, **right.required_unless},
            dependent_required={**left.dependent_required, **right.dependent_required},
            when=left.when + right.when,
            nullable=left.nullable and right.nullable,
        )
    assert type(left) is type(right), f"cannot merge {left!r} with {right!r}"
    values: dict[str, Any] = {}
    for item in dataclasses.fields(left):
        a, b = getattr(left, item.name), getattr(right, item.name)
        if item.name == "nullable":
            values[item.name] = a and b
        elif item.name in ("items", "values"):
            values[item.name] = merge(a, b)
        else:
            assert a is None or b is None or a == b or a is False or b is False, (item.name, a, b)
            values[item.name] = b if a is None or a is False else a
    return type(left)(**values)


def differences(ours: Any, theirs: Any, path: str = "$") -> Iterator[str]:
    """Readable differences between two descriptions."""
    if type(ours) is not type(theirs):
        yield f"{path}: ours is {type(ours).__name__}, the spec's is {type(theirs).__name__}"
        return
    if isinstance(ours, Object):
        yield from _property_differences(ours, theirs, path)
    for item in dataclasses.fields(ours):
        a, b = getattr(ours, item.name), getattr(theirs, item.name)
        if item.name == "properties":
            continue
        if item.name in ("items", "values"):
            yield from differences(a, b, f"{path}[]")
        elif item.name == "variants":
            if len(a) != len(b):
                yield f"{path}: {len(a)} variants, the spec has {len(b)}"
            for index, (x, y) in enumerate(zip(a, b, strict=False)):
                yield from differences(x, y, f"{path}<{index}>")
        elif a != b:
            yield f"{path}: {item.name} is {a!r}, the spec says {b!r}"


def _property_differences(ours: Object, theirs: Object, path: str) -> Iterator[str]:
    for name in sorted(set(ours.properties) | set(theirs.properties)):
        if name not in theirs.properties:
            yield f"{path}.{name}: not in the spec"
        elif name not in ours.properties:
            yield f"{path}.{name}: missing from our description"
        else:
            yield from differences(ours.properties[name], theirs.properties[name], f"{path}.{name}")


# -- the checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(SCHEMAS) - NOT_IN_SPEC))
def test_described_body_matches_the_spec(name: str) -> None:
    """Fields, types, enums, bounds, required and closedness equal the spec's, for each body."""
    schemas = spec()["components"]["schemas"]
    assert name in schemas, f"{name} is not a schema of the spec"
    assert list(differences(SCHEMAS[name], normalize(schemas[name]))) == []


@pytest.mark.parametrize(
    ("method", "path"),
    sorted(key for key in OPERATIONS if not key[1].startswith("/v2/account/secrets")),
)
def test_described_call_matches_the_spec(method: str, path: str) -> None:
    """Success status, request and response bodies, and documented error statuses."""
    operation = OPERATIONS[(method, path)]
    described = spec()["paths"][path][method.lower()]
    responses = described["responses"]
    assert str(operation.success) in responses
    assert all(str(code) in responses for code in operation.also_success)
    documented = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
    assert operation.errors == documented - {401, 403, 429}
    request = described.get("requestBody", {}).get("content", {}).get("application/json", {})
    request_ref = request.get("schema", {}).get("$ref", "")
    assert (operation.request or "") == request_ref.rsplit("/", 1)[-1]
    success = responses[str(operation.success)].get("content", {}).get("application/json", {})
    response_ref = success.get("schema", {}).get("$ref", "")
    assert (operation.response or "") == response_ref.rsplit("/", 1)[-1]


def test_secret_calls_are_absent_from_the_spec_snapshot() -> None:
    """The secrets description comes from the docs because the snapshot has no such paths."""
    assert not any(path.startswith("/v2/account/secrets") for path in spec()["paths"])
    assert not NOT_IN_SPEC & set(spec()["components"]["schemas"])


def test_the_comparison_catches_a_drifted_description() -> None:
    """A wrong bound, a missing field and a lost closedness are each reported."""
    volume = normalize(spec()["components"]["schemas"]["CreateNetworkVolumeRequest"])
    assert isinstance(volume, Object)
    drifted = dataclasses.replace(
        volume,
        properties={
            **{k: v for k, v in volume.properties.items() if k != "type"},
            "size": Integer(minimum=1, maximum=4096),
        },
        closed=False,
    )
    found = list(differences(drifted, volume))
    assert "$.type: missing from our description" in found
    assert "$.size: minimum is 1, the spec says 10" in found
    assert "$: closed is False, the spec says True" in found
