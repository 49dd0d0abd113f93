"""Every workflow and template validates against the real node definitions at the locked commits.

The definitions are image/node_facts.json, read from ComfyUI's /object_info with the custom
nodes of image/nodes.toml (see its `read_from`); model-file inputs must name files that
image/models.toml provides, in the folder that loader lists, in a group the template needs.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from worker import loras, templates

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "image" / "workflows"
MANIFEST = ROOT / "image" / "models.toml"
FACTS = json.loads((ROOT / "image" / "node_facts.json").read_text())
NODES: dict[str, Any] = FACTS["nodes"]
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


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "INT": (int,),
    "FLOAT": (int, float),
    "STRING": (str,),
    "BOOLEAN": (bool,),
}


def _widget_problem(spec: dict[str, Any], value: Any) -> str | None:
    kind = spec["type"]
    wrong_bool = isinstance(value, bool) and kind != "BOOLEAN"
    if wrong_bool or not isinstance(value, _PY_TYPES[kind]):
        return f"{value!r} is not a {kind}"
    if kind in {"INT", "FLOAT"}:
        if not math.isfinite(value):
            return f"{value!r} is not finite"
        if "min" in spec and value < spec["min"]:
            return f"{value} is below the node's min {spec['min']}"
        if "max" in spec and value > spec["max"]:
            return f"{value} is above the node's max {spec['max']}"
    return None


def _link_problem(graph: dict[str, Any], declared: dict[str, Any], value: list[Any]) -> str | None:
    source_id, index = value
    source = graph.get(source_id)
    if source is None or source["class_type"] not in NODES:
        return f"links to unknown node {source_id}"
    outputs = NODES[source["class_type"]]["outputs"]
    if not 0 <= index < len(outputs):
        return f"node {source_id} has no output {index}"
    if declared["type"] not in {outputs[index], "*"}:
        return f"wants {declared['type']}, gets {outputs[index]}"
    return None


def _combo_problem(declared: dict[str, Any], value: Any, groups: tuple[str, ...]) -> str | None:
    if declared.get("input_files"):
        return None if isinstance(value, str) else f"an input file name, got {value!r}"
    if "folder" not in declared:
        return None if value in declared["options"] else f"{value!r} not in {declared['options']}"
    manifest = _manifest()
    path = f"{declared['folder']}/{value}"
    problem = None
    if declared["folder"] == "loras" and value.startswith(f"{loras.CACHE_SUBDIR}/"):
        # A job's bucket LoRA: fetched into the cache folder, never in models.toml.
        if Path(value).suffix != ".safetensors":
            problem = f"{value}: bucket LoRAs are .safetensors"
    elif value in declared["options"]:
        pass  # a built-in choice such as VAELoader's pixel_space
    elif Path(value).suffix not in declared["extensions"]:
        problem = f"{value} has an extension the loader skips"
    elif path not in manifest:
        problem = f"{path} is not in image/models.toml"
    elif not manifest[path] & set(groups):
        problem = (
            f"{path} is in groups {sorted(manifest[path])}, "
            f"none of which the template needs ({groups})"
        )
    return problem


def validate(graph: dict[str, Any], groups: tuple[str, ...]) -> list[str]:
    """Problems ComfyUI (at the locked commits) or the model manifest would have with ``graph``."""
    problems: list[str] = []
    has_output = False
    for node_id, node in graph.items():
        where = f"node {node_id} ({node.get('class_type')})"
        spec = NODES.get(node["class_type"])
        if spec is None:
            problems.append(f"{where}: not a node of the locked packages")
            continue
        has_output |= spec["output_node"]
        inputs = spec["inputs"]
        missing = [n for n, s in inputs.items() if s["required"] and n not in node["inputs"]]
        if missing:
            problems.append(f"{where}: lacks required input(s) {missing}")
        for name, value in node["inputs"].items():
            declared = inputs.get(name)
            if declared is None:
                problem: str | None = "no such input"
            elif isinstance(value, list):  # a link: [source node id, output index]
                problem = _link_problem(graph, declared, value)
            elif declared["type"] == "COMBO":
                problem = _combo_problem(declared, value, groups)
            else:
                problem = _widget_problem(declared, value)
            if problem is not None:
                problems.append(f"{where}.{name}: {problem}")
    if not has_output:
        problems.append("no output node")
    return problems


def test_every_workflow_file_belongs_to_a_template() -> None:
    """No orphan workflow files and no template pointing at a missing file."""
    on_disk = {p.name for p in WORKFLOWS.glob("*.json")}
    used = {variant.workflow for _, _, variant in VARIANTS}
    assert on_disk == used


def test_the_contract_templates_exist() -> None:
    """The job contract's templates, the TurboDiffusion pair included, are all served."""
    assert set(templates.TEMPLATES) == {
        "flux_txt2img",
        "flux_img2img",
        "remove_background",
        "wan22_t2v",
        "wan22_turbo_i2v",
        "wan22_turbo_t2v",
        "upscale",
    }


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_each_workflow_validates_against_the_locked_node_definitions(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """Node names, inputs, required inputs, types, ranges, COMBO values and model files."""
    _, _, variant = item
    assert validate(_graph(variant), variant.groups) == []


@pytest.mark.parametrize("item", VARIANTS, ids=_ids)
def test_templates_rendered_at_their_parameter_bounds_still_validate(
    item: tuple[templates.Template, str, templates.Variant],
) -> None:
    """Each parameter's minimum and maximum lands inside what the node accepts."""
    template, variant_name, variant = item
    base: dict[str, Any] = {"prompt": "p"} if "prompt" in {p.name for p in template.params} else {}
    if template.image_param:
        base[template.image_param] = "input.png"
    if template.name == "wan22_t2v":
        base["fast"] = variant_name == "fast"
    for param in template.params:
        values: list[Any] = []
        if param.minimum is not None and param.maximum is not None:
            values = [param.minimum, param.maximum]
            if param.kind is int:
                values = [int(v) for v in values]
                while param.rule is not None and param.rule(values[1]):
                    values[1] -= 1
                while param.rule is not None and param.rule(values[0]):
                    values[0] += 1
                if param.multiple_of:
                    values = [v - v % param.multiple_of for v in values]
        if param.name == "aspect_ratio":
            values = list(templates.TURBO_720P)
        for value in values:
            rendered = templates.render(template, {**base, param.name: value})
            if rendered.variant is not variant:
                continue
            assert validate(rendered.graph, rendered.groups) == [], f"{param.name}={value}"


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
            assert input_name in NODES[graph[node_id]["class_type"]]["inputs"]


def test_the_validator_catches_what_comfyui_would_refuse() -> None:
    """A wrong COMBO value, an out-of-range INT, a missing file or input each show up."""
    variant = templates.TEMPLATES["wan22_turbo_i2v"].variants["default"]
    good = _graph(variant)
    cases: list[tuple[str, str, Any, str]] = [
        ("26", "num_steps", 8, "not in [1, 2, 3, 4]"),
        ("26", "num_frames", 400, "above the node's max"),
        ("26", "resolution", "1080p", "not in"),
        ("20", "model_name", "TurboWan2.2-I2V-A14B-high-720P.pth", "not in image/models.toml"),
        ("24", "vae_name", "wan_2.1_vae.ckpt", "extension the loader skips"),
        ("26", "image", ["20", 0], "wants IMAGE, gets MODEL"),
    ]
    for node_id, name, value, message in cases:
        graph = copy.deepcopy(good)
        graph[node_id]["inputs"][name] = value
        assert any(message in p for p in validate(graph, variant.groups)), (name, value)
    graph = copy.deepcopy(good)
    del graph["26"]["inputs"]["sigma_max"]
    assert any("lacks required" in p for p in validate(graph, variant.groups))
    assert any("none of which" in p for p in validate(good, ("flux_dev_fp8",)))


def test_turbo_templates_run_the_distilled_720p_path() -> None:
    """4 rCM steps, SLA attention, the int8 experts, 720p 16:9 by default, 81 frames."""
    for name in ("wan22_turbo_i2v", "wan22_turbo_t2v"):
        template = templates.TEMPLATES[name]
        params = {"prompt": "p", **({"image": "a.png"} if template.image_param else {})}
        graph = templates.render(template, params).graph
        sampler = graph["26"]["inputs"]
        assert (sampler["num_steps"], sampler["resolution"], sampler["num_frames"]) == (
            4,
            "720p",
            81,
        )
        assert (sampler["width"], sampler["height"]) == (1280, 720)
        for loader in ("20", "21"):
            assert graph[loader]["inputs"]["attention_type"] == "sla"
            assert graph[loader]["inputs"]["model_name"].endswith("-quant.pth")
    t2v = templates.render(
        templates.TEMPLATES["wan22_turbo_t2v"], {"prompt": "a fox", "aspect_ratio": "9:16"}
    ).graph
    assert (t2v["5"]["inputs"]["width"], t2v["5"]["inputs"]["height"]) == (720, 1280)
    assert t2v["26"]["inputs"]["image"] == ["7", 0]
    assert t2v["2"]["inputs"]["text"] == t2v["23"]["inputs"]["text"] == "a fox"


def test_flux_img2img_scales_its_input_to_the_megapixels_parameter() -> None:
    """The input image passes ImageScaleToTotalPixels (default 1.0 MP) before VAEEncode."""
    template = templates.TEMPLATES["flux_img2img"]
    graph = templates.render(template, {"prompt": "p", "image": "x.png"}).graph
    scale = graph["6"]["inputs"]["pixels"]
    assert graph[scale[0]]["class_type"] == "ImageScaleToTotalPixels"
    assert graph[scale[0]]["inputs"]["image"] == ["5", 0]
    assert graph[scale[0]]["inputs"]["megapixels"] == 1.0
    graph = templates.render(template, {"prompt": "p", "image": "x.png", "megapixels": 0.5}).graph
    assert graph[scale[0]]["inputs"]["megapixels"] == 0.5
    with pytest.raises(templates.ParamError, match="megapixels must be <= 2"):
        templates.render(template, {"prompt": "p", "image": "x.png", "megapixels": 20})


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
    graph = templates.render(template, {"prompt": "first", "seed": 1}).graph
    again = templates.render(template, {"prompt": "second", "seed": 2}).graph
    assert graph["2"]["inputs"]["text"] == "first"
    assert again["2"]["inputs"]["text"] == "second"
    assert json.loads((WORKFLOWS / "flux_txt2img.json").read_text())["6"]["inputs"]["seed"] == 0


def test_omitted_seed_is_random_and_within_range() -> None:
    """Without a seed each job gets its own, inside ComfyUI's seed range."""
    seeds = {templates.check_params(templates.TEMPLATES["flux_txt2img"], {"prompt": "x"})["seed"]}
    seeds.add(templates.check_params(templates.TEMPLATES["flux_txt2img"], {"prompt": "x"})["seed"])
    assert len(seeds) == 2
    assert all(0 <= s <= templates.SEED_MAX for s in seeds)


def test_the_comfyui_double_agrees_with_the_real_definitions() -> None:
    """Each class the test double knows is recorded and has the real inputs, types and
    outputs (no leniency): the double serves no node the facts do not describe."""
    from tests.fakes.comfyui import NODE_CLASSES  # noqa: PLC0415 - only this test needs it

    unrecorded = sorted(set(NODE_CLASSES) - set(NODES))
    assert not unrecorded, f"the double serves nodes node_facts.json lacks: {unrecorded}"
    for name, fake in NODE_CLASSES.items():
        real = NODES[name]
        # Fewer outputs is stricter, not more lenient; extra ones must be the real ones.
        assert list(fake.outputs) == real["outputs"][: len(fake.outputs)], name
        assert real["output_node"] or not fake.output_node, name
        for input_name, inp in {**fake.required, **fake.optional}.items():
            assert input_name in real["inputs"], f"{name}.{input_name}"
            declared = real["inputs"][input_name]
            assert (inp.type == "COMBO") == (declared["type"] == "COMBO"), name
            if inp.type != "COMBO":
                assert inp.type == declared["type"], f"{name}.{input_name}"
            # A choice or a number the real node refuses must be refused by the double too.
            if inp.options:
                extra = set(inp.options) - set(declared.get("options", []))
                assert not extra, f"{name}.{input_name}: the real node refuses {sorted(extra)}"
            where = f"{name}.{input_name}"
            if "min" in declared:
                assert inp.min is not None, where
                assert inp.min >= declared["min"], where
            if "max" in declared:
                assert inp.max is not None, where
                assert inp.max <= declared["max"], where
        real_required = {n for n, s in real["inputs"].items() if s["required"]}
        assert real_required <= set(fake.required), f"{name} accepts graphs ComfyUI refuses"


def test_every_template_and_parameter_is_in_the_docs_table() -> None:
    """docs/worker-image.md's template table has a row per template naming every parameter
    and every model group it needs (the job contract users read)."""
    docs = (ROOT / "docs" / "worker-image.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in docs.splitlines()
        if line.startswith("| `") and line.count("|") == 5
    }
    for template in templates.TEMPLATES.values():
        row = rows.get(template.name)
        assert row is not None, f"no row for template {template.name}"
        for param in template.params:
            assert f"`{param.name}`" in row, f"{template.name}: {param.name} undocumented"
        for variant in template.variants.values():
            for group in variant.groups:
                assert f"`{group}`" in row, f"{template.name}: group {group} undocumented"


# -- graphs the templates build on top of the workflow files ---------------------------------
def _lora(name: str, strength: float = 0.8, *targets: str) -> templates.LoraUse:
    return templates.LoraUse(f"{loras.CACHE_SUBDIR}/{name}.safetensors", strength, targets)


def _chain(graph: dict[str, Any], node: str, input_name: str) -> list[tuple[str, float]]:
    """(lora_name, strength) of the LoRA loaders feeding ``node.input_name``, nearest last."""
    found: list[tuple[str, float]] = []
    source = graph[node]["inputs"][input_name]
    while graph[source[0]]["class_type"] == "LoraLoaderModelOnly":
        inputs = graph[source[0]]["inputs"]
        found.insert(0, (inputs["lora_name"], inputs["strength_model"]))
        source = inputs["model"]
    return found


def test_flux_loras_become_a_chain_between_the_checkpoint_and_the_sampler() -> None:
    """Two LoRAs: checkpoint MODEL -> LoRA 1 -> LoRA 2 -> KSampler, and ComfyUI accepts it."""
    for name, sampler in (("flux_txt2img", "6"), ("flux_img2img", "7")):
        template = templates.TEMPLATES[name]
        params = {"prompt": "p", **({"image": "x.png"} if template.image_param else {})}
        rendered = templates.render(template, params, [_lora("a", 0.8), _lora("b", 1.5)])
        graph = rendered.graph
        assert _chain(graph, sampler, "model") == [
            ("bucket/a.safetensors", 0.8),
            ("bucket/b.safetensors", 1.5),
        ]
        first = next(n for n in graph.values() if n["inputs"].get("strength_model") == 0.8)
        assert first["inputs"]["model"] == ["1", 0]
        assert [i for _, i in rendered.lora_nodes] == [0, 1]
        assert validate(graph, rendered.groups) == []


def test_wan_loras_go_to_the_experts_they_name_after_the_speed_loras() -> None:
    """`both` patches the high and the low noise expert; `high` only the high one; in the
    fast path they come after the lightx2v 4-step LoRAs, in the full path after the UNETs."""
    template = templates.TEMPLATES["wan22_t2v"]
    uses = [_lora("style", 1.0), _lora("motion", 0.5, "high")]
    for fast in (True, False):
        rendered = templates.render(template, {"prompt": "p", "fast": fast}, uses)
        graph = rendered.graph
        high, low = _chain(graph, "5", "model"), _chain(graph, "6", "model")
        speed = [("wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors", 1.0)]
        assert high == (speed if fast else []) + [
            ("bucket/style.safetensors", 1.0),
            ("bucket/motion.safetensors", 0.5),
        ]
        assert [n for n, _ in low][-1:] == ["bucket/style.safetensors"]
        assert "bucket/motion.safetensors" not in [n for n, _ in low]
        assert validate(graph, rendered.groups) == []


def test_templates_without_a_model_to_patch_refuse_loras_and_the_count_is_capped() -> None:
    """Turbo (its own int8 model), background removal and upscale say why; 5 LoRAs is 1 too
    many; an expert a template lacks is named."""
    for name in ("wan22_turbo_i2v", "wan22_turbo_t2v", "remove_background", "upscale"):
        template = templates.TEMPLATES[name]
        params = {"prompt": "p", "image": "x.png"}
        params = {k: v for k, v in params.items() if k in {p.name for p in template.params}}
        with pytest.raises(templates.ParamError, match=f"template {name} takes no loras"):
            templates.render(template, params, [_lora("a")])
    flux = templates.TEMPLATES["flux_txt2img"]
    too_many = [_lora(str(i)) for i in range(templates.MAX_LORAS + 1)]
    with pytest.raises(templates.ParamError, match=f"at most {templates.MAX_LORAS}"):
        templates.render(flux, {"prompt": "p"}, too_many)
    with pytest.raises(templates.ParamError, match="targets high"):
        templates.render(flux, {"prompt": "p"}, [_lora("a", 1.0, "high")])


def test_flux_upscale_puts_real_esrgan_between_decode_and_save() -> None:
    """`upscale` 4 inserts UpscaleModelLoader(x4plus) + ImageUpscaleWithModel and needs the
    `upscale` model group; 2 adds ImageScaleBy 0.5 (lanczos) after it; 0 leaves the graph as
    it was; 3 is refused."""
    template = templates.TEMPLATES["flux_txt2img"]
    plain = templates.render(template, {"prompt": "p", "seed": 1})
    assert plain.graph["8"]["inputs"]["images"] == ["7", 0]
    assert plain.groups == ("flux_dev_fp8",)
    for factor in templates.UPSCALE_FACTORS:
        rendered = templates.render(template, {"prompt": "p", "upscale": factor})
        graph = rendered.graph
        saved = graph[graph["8"]["inputs"]["images"][0]]
        if factor == 2:
            assert saved["class_type"] == "ImageScaleBy"
            assert (saved["inputs"]["scale_by"], saved["inputs"]["upscale_method"]) == (
                0.5,
                "lanczos",
            )
            saved = graph[saved["inputs"]["image"][0]]
        assert saved["class_type"] == "ImageUpscaleWithModel"
        assert saved["inputs"]["image"] == ["7", 0]
        model = graph[saved["inputs"]["upscale_model"][0]]["inputs"]["model_name"]
        assert model == "RealESRGAN_x4plus.safetensors"
        assert rendered.groups == ("flux_dev_fp8", "upscale")
        assert validate(graph, rendered.groups) == []
        assert validate(graph, ("flux_dev_fp8",)) != []  # the upscale group is really needed
    with pytest.raises(templates.ParamError, match="upscale must be one of 0, 2, 4"):
        templates.render(template, {"prompt": "p", "upscale": 3})


def test_the_upscale_template_halves_the_x4_output_for_2x_and_caps_the_model_output() -> None:
    """scale 4 saves the x4plus output; scale 2 saves it through ImageScaleBy 0.5 (lanczos);
    both validate. The model makes 4x either way, so a 2048x2048 input is the largest for both
    scales (its 8192x8192 output is the cap)."""
    template = templates.TEMPLATES["upscale"]
    for scale in templates.UPSCALE_FACTORS:
        rendered = templates.render(template, {"image": "in.png", "scale": scale})
        graph = rendered.graph
        assert graph["2"]["inputs"]["model_name"] == "RealESRGAN_x4plus.safetensors"
        assert graph["1"]["inputs"]["image"] == "in.png"
        saved = graph[graph["4"]["inputs"]["images"][0]]
        if scale == 4:
            assert graph["4"]["inputs"]["images"] == ["3", 0]
        else:
            assert saved["class_type"] == "ImageScaleBy"
            assert saved["inputs"] == {
                "image": ["3", 0],
                "upscale_method": "lanczos",
                "scale_by": 0.5,
            }
        assert validate(graph, rendered.groups) == []
    for scale in templates.UPSCALE_FACTORS:
        values = templates.render(template, {"image": "in.png", "scale": scale}).values
        templates.check_image(template, values, 2048, 2048)
        with pytest.raises(templates.ParamError, match=r"8196x8192.* over the"):
            templates.check_image(template, values, 2049, 2048)
    with pytest.raises(templates.ParamError, match="scale must be one of 2, 4"):
        templates.render(template, {"image": "in.png", "scale": 3})


def test_batch_index_draws_the_noise_of_that_position_of_the_seeds_batch() -> None:
    """batch_index N with batch_size B: an empty latent of N+B images, LatentFromBatch picks
    N..N+B-1 (it sets the latent's batch_index, which KSampler's prepare_noise follows)."""
    template = templates.TEMPLATES["flux_txt2img"]
    rendered = templates.render(template, {"prompt": "p", "seed": 7, "batch_index": 2})
    graph = rendered.graph
    pick = graph[graph["6"]["inputs"]["latent_image"][0]]
    assert pick["class_type"] == "LatentFromBatch"
    assert pick["inputs"] == {"samples": ["5", 0], "batch_index": 2, "length": 1}
    assert graph["5"]["inputs"]["batch_size"] == 3
    assert validate(graph, rendered.groups) == []
    plain = templates.render(template, {"prompt": "p", "seed": 7, "batch_size": 4}).graph
    assert plain["6"]["inputs"]["latent_image"] == ["5", 0]


def test_each_output_of_a_batch_gets_the_params_that_remake_it_alone() -> None:
    """Image N of a batch: same seed, batch_index N, batch_size 1 (not seed + N); other
    templates echo their params unchanged."""
    flux = templates.render(
        templates.TEMPLATES["flux_txt2img"], {"prompt": "p", "seed": 42, "batch_size": 4}
    )
    for index in range(4):
        params = templates.output_params(flux, index)
        assert (params["seed"], params["batch_index"], params["batch_size"]) == (42, index, 1)
        assert params["prompt"] == "p"
        again = templates.render(templates.TEMPLATES["flux_txt2img"], params)
        assert again.graph["6"]["inputs"]["seed"] == 42
    wan = templates.render(templates.TEMPLATES["wan22_t2v"], {"prompt": "p", "seed": 5})
    assert templates.output_params(wan, 0) == wan.values
    assert wan.values["steps"] == 4  # the variant's defaults are part of what made it
