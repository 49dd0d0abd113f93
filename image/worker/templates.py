"""Named templates: API-format workflows in ``image/workflows/`` plus documented parameters.

Owns: the list of templates the job contract accepts, each parameter's type, range and
default, where each parameter lands in the graph (node id + input name), the model groups a
template needs (checked against ``models.toml`` by the tests), and turning
``{"template", "params"}`` into a graph ComfyUI accepts: the nodes it inserts (a
``LoraLoaderModelOnly`` chain per LoRA target, the upscale chain of ``flux_txt2img``'s
``upscale``, ``LatentFromBatch`` to re-run one image of a batch) and the parameters that
reproduce each output. Raises :class:`ParamError` with a message a person can act on. Knows
nothing about HTTP, R2 or where a LoRA file comes from (:mod:`worker.loras` does).
"""

from __future__ import annotations

import copy
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

SEED_MAX = 2**64 - 1
#: Most LoRAs one job may stack (each becomes one ``LoraLoaderModelOnly`` per target).
MAX_LORAS = 4
#: LoRA strength range a job may ask for (ComfyUI itself allows -100..100).
LORA_STRENGTH = (0.0, 2.0)
#: The upscale model (``upscale_models/`` of ``models.toml``, group ``upscale``) and its factor.
UPSCALE_MODEL = "RealESRGAN_x4plus.safetensors"
UPSCALE_MODEL_FACTOR = 4
#: Factors a job may ask for: 4 is the model's output; 2 is that output halved (core
#: ``ImageScaleBy``, lanczos), since no Real-ESRGAN x2 file could be confirmed upstream.
UPSCALE_FACTORS = (2, 4)
#: Largest image the upscale model may produce (8192 x 8192): a 2048 x 2048 input, whatever
#: the factor (a 2x job halves the model's 4x output afterwards).
MAX_UPSCALED_PIXELS = 8192 * 8192
WAN_NEGATIVE = (
    "blurry, low quality, static, overexposed, worst quality, jpeg artifacts, deformed, "
    "extra fingers, bad hands, bad anatomy, text, watermark, subtitles"
)


class ParamError(ValueError):
    """A template or one of its parameters is wrong; the message says how to fix it."""


@dataclass(frozen=True)
class Param:
    """One documented template parameter."""

    name: str
    kind: type
    """``str``, ``int``, ``float`` or ``bool``."""
    doc: str
    _: KW_ONLY
    default: Any = None
    """None with ``required`` False means "keep the workflow's value"."""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    rule: Callable[[Any], str | None] | None = None
    """Extra check returning a problem description, or None."""

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to the parameter's type, or raise :class:`ParamError`."""
        value = self._coerce(value)
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"params.{self.name} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(f"params.{self.name} must be <= {self.maximum:g}, got {value}")
        if self.multiple_of and value % self.multiple_of:
            raise ParamError(
                f"params.{self.name} must be a multiple of {self.multiple_of}, got {value}"
            )
        if self.rule is not None and (problem := self.rule(value)):
            raise ParamError(f"params.{self.name} {problem}, got {value}")
        return value

    def _coerce(self, value: Any) -> Any:
        expected = self.kind.__name__
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ParamError(f"params.{self.name} must be true or false, got {value!r}")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParamError(f"params.{self.name} must be an integer, got {value!r}")
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"params.{self.name} must be an integer, got {value!r}")
            return int(value)
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParamError(f"params.{self.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParamError(f"params.{self.name} must be a finite number, got {value!r}")
            return float(value)
        if not isinstance(value, str):
            raise ParamError(f"params.{self.name} must be a {expected}, got {value!r}")
        return value


Binding = tuple[str, str, Callable[[Any], Any] | None]
"""(node id, input name, transform of the parameter value or None)."""


def _at(node_id: str, input_name: str) -> tuple[Binding, ...]:
    """A parameter that lands unchanged in one input of one node."""
    return ((node_id, input_name, None),)


Edit = Callable[[dict[str, Any], Mapping[str, Any]], tuple[str, ...]]
"""A change a parameter makes to the graph's shape; returns model groups it adds."""


@dataclass(frozen=True)
class Variant:
    """One workflow file of a template and where each parameter goes in it."""

    workflow: str
    """File name in the workflows folder."""
    bindings: Mapping[str, tuple[Binding, ...]]
    groups: tuple[str, ...]
    """Model groups (``models.toml``) this variant needs."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Defaults that differ from the template-wide ones (e.g. steps)."""
    lora_targets: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Where LoRAs go: target name (``model``; WAN: ``high``/``low``) -> (node id, input) of
    the node whose ``MODEL`` input the LoRA chain is spliced into. Empty: no LoRAs."""
    edits: tuple[Edit, ...] = ()
    """Graph changes driven by parameters (upscale chain, batch pick), in order."""


@dataclass(frozen=True)
class LoraUse:
    """One LoRA as the graph needs it."""

    lora_name: str
    """The name ``LoraLoaderModelOnly`` lists (relative to the ``loras`` folder)."""
    strength: float
    targets: tuple[str, ...] = ()
    """Target names of the variant (empty: all of them)."""


@dataclass(frozen=True)
class Rendered:
    """A template turned into a graph, with what the job result reports about it."""

    graph: dict[str, Any]
    variant: Variant
    values: dict[str, Any]
    """Every parameter that made the graph (defaults and the drawn seed included)."""
    groups: tuple[str, ...]
    """Model groups the graph needs (the variant's plus those of its edits)."""
    lora_nodes: tuple[tuple[str, int], ...] = ()
    """(node id, index into the job's loras) of every inserted ``LoraLoaderModelOnly``."""


@dataclass(frozen=True)
class Template:
    """A named template the job contract accepts."""

    name: str
    summary: str
    params: tuple[Param, ...]
    variants: Mapping[str, Variant]
    """Variant name -> variant; ``choose`` picks one from the checked parameters."""
    choose: Callable[[Mapping[str, Any]], str] = lambda _params: "default"
    image_param: str | None = None
    """The parameter naming an uploaded image, if the template reads one."""
    no_loras: str | None = None
    """Why the template takes no LoRAs (None: its variants say where they go)."""
    image_rule: Callable[[Mapping[str, Any], int, int], str | None] | None = None
    """Extra check of the input image's width and height (known once it is fetched)."""

    def param(self, name: str) -> Param:
        """The parameter called ``name``."""
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def lora_target_names(self) -> tuple[str, ...]:
        """Every LoRA target any variant offers (``model``, or ``high``/``low`` for WAN)."""
        names: dict[str, None] = {}
        for variant in self.variants.values():
            names.update(dict.fromkeys(variant.lora_targets))
        return tuple(names)


def workflows_dir() -> Path:
    """Folder of the workflow files (``WORKFLOWS_DIR``, else ``image/workflows``)."""
    override = os.environ.get("WORKFLOWS_DIR", "").strip()
    return Path(override) if override else Path(__file__).resolve().parent.parent / "workflows"


@cache
def _load(path: Path) -> dict[str, Any]:
    graph = json.loads(path.read_text())
    if not isinstance(graph, dict):
        raise ParamError(f"workflow {path.name} is not an API-format graph")
    return graph


def load_workflow(file_name: str) -> dict[str, Any]:
    """A fresh copy of one workflow file."""
    return copy.deepcopy(_load(workflows_dir() / file_name))


def _frames_rule(value: int) -> str | None:
    return None if (value - 1) % 4 == 0 else "must be 4n+1 (e.g. 49, 81, 121)"


def _half(value: int) -> int:
    return value // 2


_PROMPT = Param("prompt", str, "What to generate.", required=True)
_NEGATIVE = Param("negative_prompt", str, "What to avoid (ignored by FLUX at cfg 1).")
_SEED = Param(
    "seed", int, "Noise seed; random when omitted.", minimum=0, maximum=SEED_MAX, default=None
)
_IMAGE = Param(
    "image",
    str,
    "Name of an entry in `images`; defaults to the only image when exactly one is sent.",
)
_FPS = Param("fps", int, "Frames per second of the MP4.", default=16, minimum=1, maximum=60)
_FLUX_STEPS = Param("steps", int, "Sampling steps.", default=20, minimum=1, maximum=100)
_FLUX_GUIDANCE = Param("guidance", float, "FLUX guidance.", default=3.5, minimum=0, maximum=30)


def _side(name: str, default: int, maximum: int) -> Param:
    """``width`` or ``height`` in pixels: 256 up to ``maximum``, a multiple of 16."""
    return Param(
        name,
        int,
        f"{name.capitalize()} in pixels.",
        default=default,
        minimum=256,
        maximum=maximum,
        multiple_of=16,
    )


def _factor_rule(*allowed: int) -> Callable[[int], str | None]:
    def rule(value: int) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(map(str, allowed))}"

    return rule


def _new_id(graph: Mapping[str, Any], wanted: str) -> str:
    if wanted in graph:
        raise ValueError(f"workflow already has a node {wanted!r}")  # a template bug
    return wanted


def _pick_from_batch(latent: str, consumer: tuple[str, str]) -> Edit:
    """``batch_index`` N: draw the noise of images N.. of the batch (``LatentFromBatch``).

    KSampler draws one noise tensor for the whole latent batch from the seed; a latent that
    carries ``batch_index`` gets exactly the noise those batch positions had, so image N of
    an earlier batch is made again alone.
    """

    def edit(graph: dict[str, Any], values: Mapping[str, Any]) -> tuple[str, ...]:
        index, size = int(values.get("batch_index") or 0), int(values.get("batch_size") or 1)
        if index:
            graph[latent]["inputs"]["batch_size"] = index + size
            node_id = _new_id(graph, "pick")
            graph[node_id] = {
                "class_type": "LatentFromBatch",
                "inputs": {"samples": [latent, 0], "batch_index": index, "length": size},
                "_meta": {"title": f"Images {index}..{index + size - 1} of the seed's batch"},
            }
            node, name = consumer
            graph[node]["inputs"][name] = [node_id, 0]
        return ()

    return edit


def _to_factor(graph: dict[str, Any], image: list[Any], factor: int) -> list[Any]:
    """``image`` (the upscale model's output) at ``factor``: as it is for the model's own
    factor, else through an ``ImageScaleBy`` (lanczos) that brings it down to ``factor``."""
    if factor == UPSCALE_MODEL_FACTOR:
        return image
    node_id = _new_id(graph, "upscale_to")
    graph[node_id] = {
        "class_type": "ImageScaleBy",
        "inputs": {
            "image": image,
            "upscale_method": "lanczos",
            "scale_by": factor / UPSCALE_MODEL_FACTOR,
        },
        "_meta": {"title": f"x{UPSCALE_MODEL_FACTOR} down to x{factor} (lanczos)"},
    }
    return [node_id, 0]


def _upscale_before(consumer: tuple[str, str]) -> Edit:
    """``upscale`` 2 or 4: Real-ESRGAN between the decoded image and ``consumer``."""

    def edit(graph: dict[str, Any], values: Mapping[str, Any]) -> tuple[str, ...]:
        factor = int(values.get("upscale") or 0)
        if not factor:
            return ()
        node, name = consumer
        loader, upscale = _new_id(graph, "upscale_model"), _new_id(graph, "upscale")
        graph[loader] = {
            "class_type": "UpscaleModelLoader",
            "inputs": {"model_name": UPSCALE_MODEL},
            "_meta": {"title": f"Real-ESRGAN x{UPSCALE_MODEL_FACTOR}"},
        }
        graph[upscale] = {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": [loader, 0], "image": graph[node]["inputs"][name]},
            "_meta": {"title": f"Upscale x{UPSCALE_MODEL_FACTOR} (tiled)"},
        }
        graph[node]["inputs"][name] = _to_factor(graph, [upscale, 0], factor)
        return ("upscale",)

    return edit


def _scaled_to(consumer: tuple[str, str], scale_param: str) -> Edit:
    """The upscale template's ``scale``: ``consumer`` gets the model's output at that factor."""

    def edit(graph: dict[str, Any], values: Mapping[str, Any]) -> tuple[str, ...]:
        node, name = consumer
        factor = int(values.get(scale_param) or UPSCALE_MODEL_FACTOR)
        graph[node]["inputs"][name] = _to_factor(graph, graph[node]["inputs"][name], factor)
        return ()

    return edit


def _upscaled_size_rule(scale_param: str) -> Callable[[Mapping[str, Any], int, int], str | None]:
    def rule(values: Mapping[str, Any], width: int, height: int) -> str | None:
        model = UPSCALE_MODEL_FACTOR
        if width * height * model * model <= MAX_UPSCALED_PIXELS:
            return None
        factor = int(values.get(scale_param) or model)
        halved = "" if factor == model else f" before it is brought down to {factor}x"
        return (
            f"is {width}x{height}: the x{model} upscale model makes {width * model}x"
            f"{height * model}{halved}, over the {MAX_UPSCALED_PIXELS} pixels (8192x8192) it "
            f"may make; send an image of at most {MAX_UPSCALED_PIXELS // model**2} pixels "
            "(2048x2048)"
        )

    return rule


_NO_LORAS_TURBO = (
    "TurboDiffusion's loader returns its own int8 model, not a ComfyUI MODEL a "
    "LoraLoaderModelOnly can patch; use wan22_t2v for LoRAs"
)

_FLUX_TXT2IMG = Template(
    name="flux_txt2img",
    summary="FLUX.1-dev fp8 text to image.",
    params=(
        _PROMPT,
        _NEGATIVE,
        _SEED,
        _side("width", 1024, 2048),
        _side("height", 1024, 2048),
        _FLUX_STEPS,
        _FLUX_GUIDANCE,
        Param("batch_size", int, "Images per job.", default=1, minimum=1, maximum=4),
        Param(
            "batch_index",
            int,
            "Make images N.. of the seed's batch (what an output's `params` say to re-run "
            "one image of a batch alone).",
            default=0,
            minimum=0,
            maximum=60,
        ),
        Param(
            "upscale",
            int,
            "Upscale the result 2x or 4x with Real-ESRGAN (0: no).",
            default=0,
            minimum=0,
            maximum=4,
            rule=_factor_rule(0, *UPSCALE_FACTORS),
        ),
    ),
    variants={
        "default": Variant(
            workflow="flux_txt2img.json",
            groups=("flux_dev_fp8",),
            lora_targets={"model": ("6", "model")},
            edits=(_pick_from_batch("5", ("6", "latent_image")), _upscale_before(("8", "images"))),
            bindings={
                "prompt": _at("2", "text"),
                "negative_prompt": _at("4", "text"),
                "seed": _at("6", "seed"),
                "width": _at("5", "width"),
                "height": _at("5", "height"),
                "batch_size": _at("5", "batch_size"),
                "steps": _at("6", "steps"),
                "guidance": _at("3", "guidance"),
            },
        )
    },
)

_FLUX_IMG2IMG = Template(
    name="flux_img2img",
    summary="FLUX.1-dev fp8 image to image: the input image is re-noised by `strength`.",
    params=(
        _PROMPT,
        _NEGATIVE,
        _SEED,
        _IMAGE,
        Param(
            "strength",
            float,
            "Denoise strength, 0 keeps the image.",
            default=0.65,
            minimum=0,
            maximum=1,
        ),
        _FLUX_STEPS,
        _FLUX_GUIDANCE,
        Param(
            "megapixels",
            float,
            "The input is scaled to this many megapixels (aspect kept) before sampling, so a "
            "phone photo does not run out of memory.",
            default=1.0,
            minimum=0.25,
            maximum=2.0,
        ),
    ),
    image_param="image",
    variants={
        "default": Variant(
            workflow="flux_img2img.json",
            groups=("flux_dev_fp8",),
            lora_targets={"model": ("7", "model")},
            bindings={
                "prompt": _at("2", "text"),
                "negative_prompt": _at("4", "text"),
                "seed": _at("7", "seed"),
                "image": _at("5", "image"),
                "strength": _at("7", "denoise"),
                "steps": _at("7", "steps"),
                "guidance": _at("3", "guidance"),
                "megapixels": _at("10", "megapixels"),
            },
        )
    },
)

_REMOVE_BACKGROUND = Template(
    name="remove_background",
    summary="BiRefNet background removal (core ComfyUI nodes); a PNG with alpha.",
    params=(_IMAGE,),
    image_param="image",
    no_loras="BiRefNet is a segmentation model, not a diffusion model",
    variants={
        "default": Variant(
            workflow="remove_background.json",
            groups=("background_removal",),
            bindings={"image": _at("1", "image")},
        )
    },
)

_WAN_SAMPLERS: dict[str, tuple[Binding, ...]] = {
    "seed": (("12", "noise_seed", None), ("13", "noise_seed", None)),
    "steps": (
        ("12", "steps", None),
        ("12", "end_at_step", _half),
        ("13", "steps", None),
        ("13", "start_at_step", _half),
    ),
    "cfg": (("12", "cfg", None), ("13", "cfg", None)),
}
_WAN_COMMON: dict[str, tuple[Binding, ...]] = {
    "prompt": _at("8", "text"),
    "negative_prompt": _at("9", "text"),
    "width": _at("11", "width"),
    "height": _at("11", "height"),
    "frames": _at("11", "length"),
    "fps": _at("15", "fps"),
}

_WAN22_T2V = Template(
    name="wan22_t2v",
    summary=(
        "WAN 2.2 T2V A14B at 720p with native nodes: `fast` (default) adds the lightx2v "
        "4-step LoRAs (4 steps, cfg 1); `fast: false` runs the full 20-step path."
    ),
    params=(
        _PROMPT,
        Param("negative_prompt", str, "What to avoid.", default=WAN_NEGATIVE),
        _SEED,
        _side("width", 1280, 1280),
        _side("height", 720, 1280),
        Param(
            "frames", int, "Frames, 4n+1.", default=81, minimum=5, maximum=161, rule=_frames_rule
        ),
        _FPS,
        Param(
            "steps",
            int,
            "Total steps, split evenly between the two experts.",
            minimum=2,
            maximum=60,
        ),
        Param("cfg", float, "Classifier-free guidance.", minimum=1, maximum=20),
        Param("fast", bool, "Use the 4-step LoRA path.", default=True),
    ),
    choose=lambda params: "fast" if params.get("fast", True) else "full",
    variants={
        "fast": Variant(
            workflow="wan22_t2v.json",
            groups=("wan22_t2v", "wan22_t2v_fast"),
            bindings={**_WAN_COMMON, **_WAN_SAMPLERS},
            defaults={"steps": 4, "cfg": 1.0},
            # After the lightx2v 4-step LoRAs, before the shift.
            lora_targets={"high": ("5", "model"), "low": ("6", "model")},
        ),
        "full": Variant(
            workflow="wan22_t2v_full.json",
            groups=("wan22_t2v",),
            bindings={**_WAN_COMMON, **_WAN_SAMPLERS},
            defaults={"steps": 20, "cfg": 3.5},
            lora_targets={"high": ("5", "model"), "low": ("6", "model")},
        ),
    },
)

#: TurboDiffusion's 720p sizes per aspect ratio (its VIDEO_RES_SIZE_INFO["720p"]); the
#: text-to-video first frame is drawn at the same size.
TURBO_720P: dict[str, tuple[int, int]] = {
    "16:9": (1280, 720),
    "9:16": (720, 1280),
    "4:3": (960, 720),
    "3:4": (720, 960),
    "1:1": (960, 960),
}


def _turbo_frames_rule(value: int) -> str | None:
    return None if (value - 1) % 8 == 0 else "must be 8n+1 (e.g. 49, 81, 121)"


def _aspect_rule(value: str) -> str | None:
    return None if value in TURBO_720P else f"must be one of {', '.join(TURBO_720P)}"


_TURBO_PARAMS = (
    Param(
        "frames",
        int,
        "Frames, 8n+1 (81 = 5 s at 16 fps).",
        default=81,
        minimum=9,
        maximum=161,
        rule=_turbo_frames_rule,
    ),
    _FPS,
    Param(
        "steps",
        int,
        "rCM sampling steps (the checkpoints are distilled for 1-4).",
        default=4,
        minimum=1,
        maximum=4,
    ),
    Param(
        "aspect_ratio",
        str,
        "16:9, 9:16, 4:3, 3:4 or 1:1 at 720p.",
        default="16:9",
        rule=_aspect_rule,
    ),
)
_TURBO_BINDINGS: dict[str, tuple[Binding, ...]] = {
    "prompt": _at("23", "text"),
    "seed": _at("26", "seed"),
    "frames": _at("26", "num_frames"),
    "steps": _at("26", "num_steps"),
    "aspect_ratio": (
        ("26", "aspect_ratio", None),
        ("26", "width", lambda a: TURBO_720P[a][0]),
        ("26", "height", lambda a: TURBO_720P[a][1]),
    ),
    "fps": (("27", "fps", float),),
}

_WAN22_TURBO_I2V = Template(
    name="wan22_turbo_i2v",
    summary=(
        "WAN 2.2 I2V A14B at 720p with TurboDiffusion (rCM 4 steps, SLA attention, int8 "
        "W8A8 experts): the input image is the first frame."
    ),
    params=(_PROMPT, _SEED, _IMAGE, *_TURBO_PARAMS),
    image_param="image",
    no_loras=_NO_LORAS_TURBO,
    variants={
        "default": Variant(
            workflow="wan22_turbo_i2v.json",
            groups=("turbodiffusion",),
            bindings={**_TURBO_BINDINGS, "image": _at("25", "image")},
        )
    },
)

_WAN22_TURBO_T2V = Template(
    name="wan22_turbo_t2v",
    summary=(
        "Text to video at 720p: FLUX.1-dev draws the first frame from the prompt, then "
        "TurboDiffusion's WAN 2.2 I2V animates it (TurboDiffusion has no WAN 2.2 T2V model)."
    ),
    params=(
        _PROMPT,
        _SEED,
        *_TURBO_PARAMS,
        Param(
            "image_steps", int, "FLUX steps for the first frame.", default=20, minimum=1, maximum=50
        ),
    ),
    no_loras=_NO_LORAS_TURBO,
    variants={
        "default": Variant(
            workflow="wan22_turbo_t2v.json",
            groups=("flux_dev_fp8", "turbodiffusion"),
            bindings={
                **_TURBO_BINDINGS,
                "prompt": (("2", "text", None), ("23", "text", None)),
                "seed": (("6", "seed", None), ("26", "seed", None)),
                "aspect_ratio": (
                    *_TURBO_BINDINGS["aspect_ratio"],
                    ("5", "width", lambda a: TURBO_720P[a][0]),
                    ("5", "height", lambda a: TURBO_720P[a][1]),
                ),
                "image_steps": _at("6", "steps"),
            },
        )
    },
)

_UPSCALE = Template(
    name="upscale",
    summary=(
        "Real-ESRGAN x4plus (core UpscaleModelLoader + ImageUpscaleWithModel, which works in "
        "512 px tiles, so a 2048x2048 input fits a 24 GB card); 2x is its 4x output halved "
        "with lanczos (core ImageScaleBy)."
    ),
    params=(
        _IMAGE,
        Param(
            "scale",
            int,
            "2 or 4.",
            default=2,
            minimum=2,
            maximum=4,
            rule=_factor_rule(*UPSCALE_FACTORS),
        ),
    ),
    image_param="image",
    no_loras="Real-ESRGAN is an upscaling model, not a diffusion model",
    image_rule=_upscaled_size_rule("scale"),
    variants={
        "default": Variant(
            workflow="upscale.json",
            groups=("upscale",),
            edits=(_scaled_to(("4", "images"), "scale"),),
            bindings={"image": _at("1", "image")},
        )
    },
)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        _FLUX_TXT2IMG,
        _FLUX_IMG2IMG,
        _REMOVE_BACKGROUND,
        _WAN22_T2V,
        _WAN22_TURBO_I2V,
        _WAN22_TURBO_T2V,
        _UPSCALE,
    )
}


def check_params(template: Template, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Type- and range-check ``raw``; return the values to apply (defaults filled in)."""
    known = {p.name for p in template.params}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ParamError(
            f"template {template.name} has no parameter {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for param in template.params:
        if param.name in raw and raw[param.name] is not None:
            values[param.name] = param.check(raw[param.name])
        elif param.required:
            raise ParamError(f"template {template.name} needs params.{param.name}: {param.doc}")
        elif param.default is not None:
            values[param.name] = param.default
    if "seed" in known and "seed" not in values:
        values["seed"] = secrets.randbelow(2**53)
    if "prompt" in values and not values["prompt"].strip():
        raise ParamError("params.prompt must not be empty")
    return values


def render(template: Template, raw: Mapping[str, Any], loras: Sequence[LoraUse] = ()) -> Rendered:
    """The graph for ``template`` with ``raw`` parameters and ``loras`` applied."""
    values = check_params(template, raw)
    variant = template.variants[template.choose(values)]
    for name, value in variant.defaults.items():
        values.setdefault(name, value)
    graph = load_workflow(variant.workflow)
    for name, value in values.items():
        for node_id, input_name, transform in variant.bindings.get(name, ()):
            graph[node_id]["inputs"][input_name] = transform(value) if transform else value
    groups = list(variant.groups)
    for edit in variant.edits:
        groups.extend(edit(graph, values))
    lora_nodes = _insert_loras(template, variant, graph, loras)
    return Rendered(graph, variant, values, tuple(dict.fromkeys(groups)), lora_nodes)


def _insert_loras(
    template: Template, variant: Variant, graph: dict[str, Any], loras: Sequence[LoraUse]
) -> tuple[tuple[str, int], ...]:
    """Splice one ``LoraLoaderModelOnly`` per LoRA into each target's model input."""
    if not loras:
        return ()
    if template.no_loras or not variant.lora_targets:
        raise ParamError(
            f"template {template.name} takes no loras: {template.no_loras or 'no model input'}"
        )
    if len(loras) > MAX_LORAS:
        raise ParamError(f"input.loras has {len(loras)} entries; at most {MAX_LORAS} per job")
    for index, lora in enumerate(loras):
        unknown = sorted(set(lora.targets) - set(variant.lora_targets))
        if unknown:
            raise ParamError(
                f"loras[{index}] targets {', '.join(unknown)}, but template {template.name} "
                f"has {', '.join(variant.lora_targets)}"
            )
    inserted: list[tuple[str, int]] = []
    for target, (node, input_name) in variant.lora_targets.items():
        source = graph[node]["inputs"][input_name]
        for index, lora in enumerate(loras):
            if lora.targets and target not in lora.targets:
                continue
            node_id = _new_id(graph, f"lora_{target}_{index + 1}")
            graph[node_id] = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {
                    "model": source,
                    "lora_name": lora.lora_name,
                    "strength_model": lora.strength,
                },
                "_meta": {"title": f"Job LoRA {index + 1} ({target})"},
            }
            source = [node_id, 0]
            inserted.append((node_id, index))
        graph[node]["inputs"][input_name] = source
    return tuple(inserted)


def check_image(template: Template, values: Mapping[str, Any], width: int, height: int) -> None:
    """Refuse an input image the template cannot handle (:class:`ParamError`)."""
    if template.image_rule is not None and (problem := template.image_rule(values, width, height)):
        raise ParamError(f"input image {values.get(template.image_param or 'image')!r} {problem}")


def output_params(rendered: Rendered, index: int) -> dict[str, Any]:
    """The params that make output ``index`` (in its node's list) again, alone.

    A batched template's images share one seed; image N of the batch is reproduced by that
    seed with ``batch_index`` N and ``batch_size`` 1 (not by seed + N).
    """
    params = dict(rendered.values)
    if "batch_size" in params:
        params["batch_index"] = int(params.get("batch_index") or 0) + index
        params["batch_size"] = 1
    return params


def get_template(name: object) -> Template:
    """The template called ``name`` or a :class:`ParamError` listing the known ones."""
    if not isinstance(name, str) or name not in TEMPLATES:
        raise ParamError(
            f"unknown template {name!r}; known templates: {', '.join(sorted(TEMPLATES))}"
        )
    return TEMPLATES[name]
