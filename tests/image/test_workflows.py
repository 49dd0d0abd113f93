"""The API-format workflows and the templates that load them are consistent with the image."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from worker import templates

from tests.fakes.comfyui import NODE_CLASSES

WORKFLOWS = Path(__file__).resolve().parents[2] / "image" / "workflows"
MANIFEST = Path(__file__).resolve().parents[2] / "image" / "models.toml"
VARIANTS = [
    (template, variant_name, variant)
    for template in templates.TEMPLATES.values()
    for variant_name, variant in template.variants.items()
]


def _ids(item: tuple[templates.Template, str, templates.Variant]) -> str:
    return f"{item[0].name}:{item[1]}"


def _graph(variant: templates.Variant) -> dict[str, Any]:
    return json.loads((WORKFLOWS / variant.workflow).read_text())


def _manifest() -> dict[str, set[str]]:
    """Model path (relative to MODELS_DIR) -> groups, from image/models.toml."""
    data = tomllib.loads(MANIFEST.read_text())
    return {entry["path"]: set(entry["groups"]) for entry in data["model"]}


def test_every_workflow_file_belongs_to_a_template() -> None:
    """No orphan workflow files and no template pointing at a missing file."""
    on_disk = {p.name for p in WORKFLOWS.glob("*.json")}
    used = {variant.workflow for _, _, variant in VARIANTS}
    assert on_disk == used


def test_the_contract_templates_exist() -> None:
    """The job contract's four template names are all served."""
    assert set(templates.TEMPLATES) == {
        "flux_txt2img",
        "flux_img2img",
        "remove_background",
        "wan22_t2v",
    }


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_class_types_are_known_core_or_pinned_custom_nodes(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """Every node class is in the list of core and pinned custom nodes."""
    for node_id, node in _graph(item[2]).items():
        assert node["class_type"] in NODE_CLASSES, f"node {node_id}: {node['class_type']}"


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_links_point_at_existing_nodes_outputs_of_the_right_type(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """[source, index] links name an existing node, an existing output, and the right type."""
    graph = _graph(item[2])
    for node_id, node in graph.items():
        spec = NODE_CLASSES[node["class_type"]]
        declared = {**spec.required, **spec.optional}
        for name, value in node["inputs"].items():
            assert name in declared, f"node {node_id} has unknown input {name}"
            if not isinstance(value, list):
                continue
            source_id, index = value
            assert source_id in graph, f"node {node_id}.{name} links to missing {source_id}"
            outputs = NODE_CLASSES[graph[source_id]["class_type"]].outputs
            assert 0 <= index < len(outputs), f"node {node_id}.{name}: no output {index}"
            assert outputs[index] == declared[name].type, f"node {node_id}.{name} type"
        missing = set(spec.required) - set(node["inputs"])
        assert not missing, f"node {node_id} lacks {missing}"
    assert any(NODE_CLASSES[n["class_type"]].output_node for n in graph.values())


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_every_model_file_is_in_the_manifest_in_a_required_group(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """Each loader's file is in models.toml under a group the template declares it needs."""
    manifest = _manifest()
    _, _, variant = item
    named = 0
    for node_id, node in _graph(variant).items():
        spec = NODE_CLASSES[node["class_type"]]
        for name, inp in {**spec.required, **spec.optional}.items():
            if inp.folder is None or name not in node["inputs"]:
                continue
            named += 1
            path = f"{inp.folder}/{node['inputs'][name]}"
            assert path in manifest, f"node {node_id}: {path} is not in image/models.toml"
            assert manifest[path] & set(variant.groups), (
                f"node {node_id}: {path} is in groups {sorted(manifest[path])}, "
                f"none of which {variant.workflow} requires ({variant.groups})"
            )
    assert named, "a template that loads no model file is suspicious"


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_every_parameter_binding_points_at_a_real_input(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """Template bindings name existing nodes and inputs, and only documented parameters."""
    template, _, variant = item
    graph = _graph(variant)
    names = {p.name for p in template.params}
    for param, bindings in variant.bindings.items():
        assert param in names, f"binding for undocumented parameter {param}"
        for node_id, input_name, _transform in bindings:
            assert input_name in graph[node_id]["inputs"], f"{param} -> {node_id}.{input_name}"


def test_wan_fast_and_full_paths_differ_as_documented() -> None:
    """Fast: two 4-step LoRAs, shift 5, cfg 1; full: no LoRA, shift 8, 20 steps, cfg 3.5."""
    fast = _graph(templates.TEMPLATES["wan22_t2v"].variants["fast"])
    full = _graph(templates.TEMPLATES["wan22_t2v"].variants["full"])
    loras = [n for n in fast.values() if n["class_type"] == "LoraLoaderModelOnly"]
    assert len(loras) == 2
    assert not [n for n in full.values() if n["class_type"] == "LoraLoaderModelOnly"]
    assert {n["inputs"]["shift"] for n in fast.values() if "shift" in n["inputs"]} == {5.0}
    assert {n["inputs"]["shift"] for n in full.values() if "shift" in n["inputs"]} == {8.0}
    assert (fast["12"]["inputs"]["steps"], fast["12"]["inputs"]["cfg"]) == (4, 1.0)
    assert (full["12"]["inputs"]["steps"], full["12"]["inputs"]["cfg"]) == (20, 3.5)
    for graph in (fast, full):
        latent = graph["11"]["inputs"]
        assert (latent["width"], latent["height"], latent["length"]) == (1280, 720, 81)
        assert graph["16"]["inputs"]["filename_prefix"].startswith("video/")


def test_rendering_applies_parameters_without_touching_the_files() -> None:
    """render() returns a fresh graph; the cached workflow stays as shipped."""
    template = templates.TEMPLATES["flux_txt2img"]
    graph, _ = templates.render(template, {"prompt": "first", "seed": 1})
    again, _ = templates.render(template, {"prompt": "second", "seed": 2})
    assert graph["2"]["inputs"]["text"] == "first"
    assert again["2"]["inputs"]["text"] == "second"
    assert json.loads((WORKFLOWS / "flux_txt2img.json").read_text())["6"]["inputs"]["seed"] == 0


def test_omitted_seed_is_random_and_within_range() -> None:
    """Without a seed each job gets its own, inside ComfyUI's seed range."""
    seeds = {templates.check_params(templates.TEMPLATES["flux_txt2img"], {"prompt": "x"})["seed"]}
    seeds.add(templates.check_params(templates.TEMPLATES["flux_txt2img"], {"prompt": "x"})["seed"])
    assert len(seeds) == 2
    assert all(0 <= s <= templates.SEED_MAX for s in seeds)
